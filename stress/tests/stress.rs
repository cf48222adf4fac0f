//! `gupcheck stress`: a clean run reports its throughput, a broken protocol is
//! found on real threads and handed to shuttle as a replaying artifact, and bad
//! input is a one-line error.

use std::process::Command;

fn gupcheck(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(args)
        .output()
        .expect("runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn report(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("stress-report.json")).expect("a report");
    serde_json::from_str(&text).expect("valid JSON")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "gupcheck-stress-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_latest_preset_runs_clean_and_reports() {
    let out = tmp("clean");
    let (code, err) = gupcheck(&[
        "stress",
        "--duration",
        "2s",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = report(&out);
    assert_eq!(r["ended"], "deadline");
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    assert!(r["violation"].is_null(), "{r}");
}

#[test]
fn a_mutation_is_found_and_its_artifact_replays() {
    let out = tmp("found");
    let (code, err) = gupcheck(&[
        "stress",
        "--duration",
        "60s",
        "--threads",
        "2",
        "--mutation",
        "put_page_on_pin",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let r = report(&out);
    assert_eq!(r["ended"], "violation");
    let v = &r["violation"];
    assert_eq!(v["invariant"], "matched release", "{r}");
    let e = &v["explanation"];
    assert_eq!(e["kind"], "reproduced", "{r}");
    assert_eq!(e["replays"], true, "{r}");
    assert!(e["ops_after"].as_u64() <= e["ops_before"].as_u64(), "{r}");
    let art = e["artifact"].as_str().unwrap();
    let (code, err) = gupcheck(&["replay", art]);
    assert_eq!(code, 1, "the artifact reproduces: {err}");
}

#[test]
fn bad_stress_input_is_a_one_line_error() {
    for (args, needle) in [
        (&["stress", "--mix", "foo=1"][..], "unknown op class"),
        (&["stress", "--mix", "gup"][..], "bad --mix item"),
        (&["stress", "--preset", "4.19"][..], "unknown preset"),
        (
            &["stress", "--disjoint", "--mix", "fork=1"][..],
            "own pages",
        ),
        (
            &[
                "stress",
                "--mix",
                "gup=0,release=0,user=0,dma=0,mm=0,file=0,fork=0,thp=0,migrate=0",
            ][..],
            "no op class",
        ),
    ] {
        let (code, err) = gupcheck(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, err) = gupcheck(&["stress", "--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad duration"), "{err}");
}
