//! `gupcheck stress`: a clean run reports its throughput, a broken protocol is
//! found on real threads (by random ops, or by a racing shape of the
//! catalogue) and handed to shuttle as a replaying artifact, and bad input is
//! a one-line error.

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

/// `gupcheck stress --threads 2` with `args`, writing into a fresh directory:
/// the exit code, stderr and the directory.
fn stress(name: &str, args: &[&str]) -> (i32, String, std::path::PathBuf) {
    let out = tmp(name);
    let dir = out.to_str().unwrap();
    let mut all = vec!["stress", "--threads", "2", "--out", dir];
    all.extend(args);
    let (code, err) = gupcheck(&all);
    (code, err, out)
}

/// A run that must end clean at its deadline: its report.
fn clean(name: &str, args: &[&str]) -> serde_json::Value {
    let (code, err, out) = stress(name, args);
    assert_eq!(code, 0, "{err}");
    let r = report(&out);
    assert_eq!(r["ended"], "deadline", "{r}");
    assert!(r["violation"].is_null(), "{r}");
    r
}

/// A run that must find `invariant`, explained by a shuttle artifact that
/// replays: its report.
fn found(name: &str, args: &[&str], invariant: &str) -> serde_json::Value {
    let (code, err, out) = stress(name, args);
    assert_eq!(code, 1, "{err}");
    let r = report(&out);
    assert_eq!(r["ended"], "violation", "{r}");
    let v = &r["violation"];
    assert_eq!(v["invariant"], invariant, "{r}");
    let e = &v["explanation"];
    assert_eq!(e["kind"], "reproduced", "{r}");
    assert_eq!(e["replays"], true, "{r}");
    assert!(e["ops_after"].as_u64() <= e["ops_before"].as_u64(), "{r}");
    r
}

#[test]
fn the_latest_preset_runs_clean_and_reports() {
    let r = clean("clean", &["--duration", "2s"]);
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn a_mutation_is_found_and_its_artifact_replays() {
    let args = ["--duration", "60s", "--mutation", "put_page_on_pin"];
    let r = found("found", &args, "matched release");
    let art = r["violation"]["explanation"]["artifact"].as_str().unwrap();
    let (code, err) = gupcheck(&["replay", art]);
    assert_eq!(code, 1, "the artifact reproduces: {err}");
}

/// A racing shape on real threads: under 5.8, fork shares write-protected a
/// page that a concurrent GUP-fast pin holds (bug #4), and the parent's next
/// store copies it away from the pin. Only a fork that lands between the pin
/// and its coherence check shows it, so the two threads must really race.
#[test]
fn a_racing_shape_is_found_on_real_threads() {
    let args = [
        "--shapes",
        "gup_fast_vs_fork",
        "--preset",
        "5.8",
        "--arch",
        "ipi",
        "--duration",
        "60s",
        "--pct-budget",
        "300",
    ];
    let r = found("shape-found", &args, "coherent pin");
    assert!(r["raced"].as_u64().unwrap() > 0, "{r}");
    let v = &r["violation"];
    assert_eq!(v["shape"], "gup_fast_vs_fork", "{r}");
    // The epoch is the scenario's two threads, as the catalogue has them.
    assert_eq!(v["ops"].as_array().unwrap().len(), 2, "{r}");
}

/// The pin-vs-pageout shape on real threads: in 5.10 reclaim unmaps a
/// pinned page into the swap cache, the owner's load maps it back read-only
/// and its store copies it away from the pin.
#[test]
fn a_pageout_of_a_pinned_page_is_found_on_real_threads() {
    let args = [
        "--shapes",
        "pin_vs_pageout",
        "--preset",
        "5.10",
        "--arch",
        "ipi",
        "--duration",
        "60s",
        "--pct-budget",
        "300",
    ];
    let r = found("pageout-found", &args, "coherent pin");
    assert_eq!(r["violation"]["shape"], "pin_vs_pageout", "{r}");
}

/// The racing shapes on the latest preset under IPI table freeing: every
/// run clean apart from the known-open outcomes.
#[test]
fn the_latest_preset_stays_clean_with_the_racing_shapes() {
    let args = ["--shapes", "racing", "--arch", "ipi", "--duration", "3s"];
    let r = clean("shapes-clean", &args);
    assert!(r["raced"].as_u64().unwrap() > 0, "{r}");
}

/// The same under RCU table freeing, where a GUP-fast back-off's release
/// races with munmap's last put: `folio_put_refs` once read the frame's
/// generation after its decrement, when the other thread might already have
/// freed the frame, and the speculative reference was never seen dropped
/// (conservation, on the unmodified protocol).
#[test]
fn the_latest_preset_stays_clean_with_the_racing_shapes_under_rcu() {
    clean(
        "shapes-clean-rcu",
        &["--shapes", "racing", "--duration", "5s"],
    );
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
        (&["stress", "--shapes", "nope"][..], "unknown scenario"),
        (&["stress", "--shapes", "random=x"][..], "bad weight"),
        (
            &["stress", "--disjoint", "--shapes", "racing"][..],
            "--shapes can only be random",
        ),
        (
            &["stress", "--shapes", "racing", "--mix", "gup=1"][..],
            "--shapes has none",
        ),
        (
            &["stress", "--shapes", "racing", "--threads", "1"][..],
            "needs 2 threads",
        ),
        (
            &[
                "stress",
                "--mix",
                "gup=0,release=0,user=0,dma=0,mm=0,file=0,fork=0,thp=0,migrate=0,swap=0,ksm=0",
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
