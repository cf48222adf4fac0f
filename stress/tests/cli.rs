//! The command line as a user meets it: bad input is one line on stderr and exit
//! code 2; a failure writes an artifact that `gupcheck replay` reproduces (exit 1).

use std::process::Command;

mod common;
use common::gupcheck;

fn one_line_error(args: &[&str], needle: &str) {
    let (code, _, err) = gupcheck(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_names_and_values_are_one_line_errors_with_exit_2() {
    one_line_error(&["explore", "no_such_scenario"], "unknown scenario");
    one_line_error(
        &["explore", "gup_fast_vs_munmap", "--preset", "4.19"],
        "unknown preset",
    );
    one_line_error(
        &["explore", "gup_fast_vs_munmap", "--arch", "sparc"],
        "unknown arch",
    );
    one_line_error(
        &["explore", "gup_fast_vs_munmap", "--mutation", "nope"],
        "unknown mutation",
    );
    one_line_error(
        &["explore", "gup_fast_vs_munmap", "--engine", "tla"],
        "unknown engine",
    );
    one_line_error(
        &["explore", "gup_fast_vs_page_mkclean", "--tolerate", "bogus"],
        "unknown invariant",
    );
    one_line_error(&["litmus", "no_such_scenario"], "unknown scenario");
    one_line_error(
        &["litmus", "gup_fast_vs_munmap"],
        "litmus tests exist for: gup_fast_vs_fork",
    );
}

#[test]
fn litmus_writes_one_file_per_test_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("gupcheck-litmus-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let (code, stdout, err) = gupcheck(&["litmus", "gup_fast_vs_fork_thp", "--out", out]);
    assert_eq!(code, 0, "{err}");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), stdout.lines().count(), "{files:?}\n{stdout}");
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        assert!(f.ends_with(".litmus"), "no temp file left: {f}");
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let name = f.trim_end_matches(".litmus");
        assert!(text.starts_with(&format!("C {name}\n")), "{text}");
        assert!(text.contains("\nexists ("), "{text}");
    }
    assert!(stdout.contains("expected Sometimes") && stdout.contains("expected Never"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tolerate_searches_past_a_known_open_outcome() {
    let dir = std::env::temp_dir().join(format!("gupcheck-tolerate-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let args = [
        "explore",
        "gup_fast_vs_page_mkclean",
        "--engine",
        "loom",
        "--arch",
        "rcu",
        "--mutation",
        "skip_pte_recheck",
        "--out",
        out,
    ];
    let (code, stdout, _) = gupcheck(&args);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("no lost write"), "{stdout}");
    let mut past = args.to_vec();
    past.extend(["--tolerate", "no_lost_write"]);
    let (code, stdout, _) = gupcheck(&past);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("broke only a tolerated invariant"),
        "{stdout}"
    );
    assert!(
        stdout.contains("write pin through a writable pte"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_or_missing_artifacts_are_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("gupcheck-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.json");
    std::fs::write(&truncated, "{\"format\": 1, \"gupcheck\": \"0.1").unwrap();
    one_line_error(
        &["replay", truncated.to_str().unwrap()],
        "not a gupcheck artifact",
    );
    one_line_error(
        &["replay", dir.join("missing.json").to_str().unwrap()],
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failure_is_written_and_replayed() {
    let dir = std::env::temp_dir().join(format!("gupcheck-art-{}", std::process::id()));
    let (code, out, err) = gupcheck(&[
        "explore",
        "gup_fast_vs_munmap",
        "--engine",
        "shuttle-pct",
        "--arch",
        "rcu",
        "--mutation",
        "skip_pte_recheck",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("VIOLATION"), "{out}");
    let cmd = out
        .lines()
        .find_map(|l| l.strip_prefix("replay:"))
        .expect("a replay command")
        .trim();
    let file = cmd.strip_prefix("gupcheck replay ").unwrap();
    let (code, out, _) = gupcheck(&["replay", file]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reproduced: no use after free"), "{out}");
    assert!(
        out.contains("gup_fast_pte_range: read pte"),
        "the interleaving is printed: {out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn list_names_every_axis() {
    let (code, out, _) = gupcheck(&["list"]);
    assert_eq!(code, 0);
    for section in [
        "scenarios:",
        "presets:",
        "arch modes:",
        "mutations:",
        "invariants:",
        "finding classes:",
    ] {
        assert!(out.contains(section), "{section}");
    }
    assert!(out.contains("gup_fast_vs_munmap") && out.contains("skip_pte_recheck"));
    // `progress` is an invariant, `model crash` a finding class.
    let (invariants, classes) = out.split_once("finding classes:").unwrap();
    assert!(invariants.contains("\n  progress "), "{invariants}");
    assert!(classes.contains("\n  model crash ") && !classes.contains("progress"));
    // The matrix's classes, open-upstream among them.
    let (_, expectations) = out.split_once("expectation classes").unwrap();
    for class in [
        "clean",
        "found",
        "known-open",
        "known-incomplete",
        "open-upstream",
    ] {
        assert!(
            expectations.contains(&format!("\n  {class} ")),
            "{expectations}"
        );
    }
}

#[test]
fn loom_records_the_bound_it_ran_with_and_bad_loom_variables_are_errors() {
    let dir = std::env::temp_dir().join(format!("gupcheck-loom-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args([
            "explore",
            "munmap_vs_lockless_walker",
            "--engine",
            "loom",
            "--bound",
            "1",
            "--arch",
            "rcu",
            "--mutation",
            "walker_skips_registration",
            "--out",
            dir.to_str().unwrap(),
        ])
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("replay:   gupcheck replay "))
        .unwrap()
        .trim()
        .to_string();
    // Replayed without the variable: the artifact carries bound 2.
    let (code, out, _) = gupcheck(&["replay", &file]);
    assert_eq!(code, 1, "{out}");
    std::fs::remove_dir_all(&dir).ok();
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(["explore", "munmap_vs_lockless_walker", "--engine", "loom"])
        .env("LOOM_MAX_BRANCHES", "lots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("LOOM_MAX_BRANCHES"), "{err}");
}

/// `gupcheck bench` speaks gup_test: kernel-style lines per repeat, the
/// ratios labelled as the model's, usage errors with exit code 2 for unknown
/// or conflicting flags, kselftest's skip (4) for what is not modelled.
#[test]
fn bench_takes_gup_test_flags() {
    for (flags, cmd) in [
        (&["-a"][..], "PIN_FAST_BENCHMARK"),
        (&["-u"][..], "GUP_FAST_BENCHMARK"),
        (&[][..], "GUP_FAST_BENCHMARK"),
        (&["-b", "-W"][..], "PIN_BASIC_TEST"),
        (&["-U", "-n", "-1"][..], "GUP_BASIC_TEST"),
        (&["-L", "-r", "2"][..], "PIN_LONGTERM_BENCHMARK"),
        (&["-a", "-t", "-n", "512"][..], "PIN_FAST_BENCHMARK"),
    ] {
        let mut args = vec!["bench", "-m", "2"];
        args.extend_from_slice(flags);
        let (code, out, err) = gupcheck(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{cmd}: Time: get:")))
            .collect();
        let repeats = if flags.contains(&"-r") { 2 } else { 1 };
        assert_eq!(lines.len(), repeats, "{args:?}: {out}");
        assert!(lines[0].ends_with(" us"), "{out}");
        assert!(out.contains("ratios only"), "{out}");
    }
    let (code, out, _) = gupcheck(&["bench", "-c", "-p", "-m", "1", "0", "19"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("dump_page: page index").count(), 2, "{out}");
    assert!(out.contains("maybe_dma_pinned:true"), "{out}");
    for bad in [
        &["bench", "-x"][..],
        &["bench", "-a", "-u"][..],
        &["bench", "-t", "-T"][..],
        &["bench", "-w", "-W"][..],
        &["bench", "-m", "0"][..],
        &["bench", "-n", "-2"][..],
    ] {
        let (code, _, err) = gupcheck(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.starts_with("gupcheck:"), "{bad:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
    }
    one_line_error(&["bench", "-m", "1", "7"], "only taken with -c");
    one_line_error(&["bench", "--preset", "4.19"], "unknown preset");
    for skip in ["-H", "-S"] {
        let (code, out, _) = gupcheck(&["bench", skip]);
        assert_eq!(code, 4, "{skip}");
        assert!(out.contains("not modelled"), "{out}");
    }
}

#[test]
fn zoo_bad_input_is_one_line_errors() {
    one_line_error(&["zoo", "--engines", "loom,tla"], "unknown engine 'tla'");
    one_line_error(&["zoo", "--budget", "soon"], "bad duration");
    one_line_error(&["zoo", "--budget", "100000000000000000000"], "30 days");
    one_line_error(&["zoo", "--out", "/proc/gupcheck"], "cannot create");
    one_line_error(&["zoo", "--only", "no such entry"], "entry matches");
    one_line_error(&["zoo", "--fuzz", "afl"], "unknown --fuzz mode");
    one_line_error(
        &[
            "zoo",
            "--fuzz",
            "libfuzzer",
            "--fuzz-bin",
            "/no/such/presets",
        ],
        "no fuzz binary",
    );
}

/// The ordering-only entry: loom finds it; shuttle and the fuzzer (which runs
/// on shuttle) cannot, being sequentially consistent. Under IPI: under RCU,
/// stress on real threads meets the ledger defect that tests/stress.rs
/// documents (`..._racing_shapes_under_rcu`), and the zoo exits 1 on it.
const ORDERING_ONLY: &str =
    "munmap_vs_lockless_walker / latest / ipi / walker_registration_no_barrier";

const PUT_PAGE: &str = "gup_fast_vs_munmap / latest / rcu / put_page_on_pin";

fn zoo_json(args: &[&str], name: &str) -> (i32, String, serde_json::Value, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("gupcheck-zoo-{name}-{}", std::process::id()));
    let mut all = vec!["zoo", "--out", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, out, err) = gupcheck(&all);
    let text = std::fs::read_to_string(dir.join("zoo.json"))
        .unwrap_or_else(|e| panic!("zoo.json: {e}\n{out}\n{err}"));
    (
        code,
        out,
        serde_json::from_str(&text).expect("valid JSON"),
        dir,
    )
}

#[test]
fn zoo_says_which_engines_find_each_entry_and_why_the_others_cannot() {
    let (code, out, rep, dir) = zoo_json(
        &[
            "--budget",
            "2s",
            "--only",
            ORDERING_ONLY,
            "--only",
            "huge_page_pin_overflow / v11 / ipi",
            "--only",
            PUT_PAGE,
            "--engines",
            "loom,shuttle-pct,fuzz,stress",
            "--fuzz",
            "random-bytes",
        ],
        "who",
    );
    assert_eq!(code, 0, "{out}");
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{out}");
    let cell = |label: &str, engine: &str| {
        let r = rows
            .iter()
            .find(|r| r["label"].as_str().unwrap().contains(label))
            .unwrap_or_else(|| panic!("no row {label}"));
        r["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["engine"] == engine)
            .unwrap()
            .clone()
    };
    let ord = |e| cell(ORDERING_ONLY, e);
    assert_eq!(ord("loom")["result"], "found", "{out}");
    assert_eq!(ord("loom")["invariant"], "no use after free");
    for e in ["shuttle-pct", "fuzz"] {
        assert_eq!(ord(e)["result"], "cannot-reach", "{e}: {out}");
        assert!(ord(e)["why"]
            .as_str()
            .unwrap()
            .contains("sequentially consistent"));
        assert!(ord(e)["runs"].as_u64().unwrap() > 0, "{e} ran: {out}");
    }
    // A misuse any schedule shows: found by the fuzzer's random bytes on the
    // random world, and by stress replaying the scenario.
    for e in ["fuzz", "stress"] {
        let c = cell(PUT_PAGE, e);
        assert_eq!(c["result"], "found", "{e}: {out}");
        assert_eq!(c["invariant"], "matched release");
        assert!(c["secs"].as_f64().unwrap() <= 2.0);
    }
    let ovf = |e| cell("huge_page_pin_overflow", e);
    assert_eq!(ovf("loom")["result"], "found", "{out}");
    assert_eq!(ovf("shuttle-pct")["result"], "found", "{out}");
    assert!(ovf("shuttle-pct")["secs"].as_f64().unwrap() < 2.5);
    assert_eq!(ovf("fuzz")["result"], "cannot-reach", "{out}");
    assert!(ovf("fuzz")["why"].as_str().unwrap().contains("counters"));
    let md = std::fs::read_to_string(dir.join("zoo.md")).unwrap();
    assert!(md.contains(ORDERING_ONLY) && md.contains("sequentially consistent"));
    let svg = std::fs::read_to_string(dir.join("zoo.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<rect x=").count(),
        12,
        "one rectangle per cell"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zoo_exits_1_when_no_engine_finds_an_entry() {
    let (code, out, rep, dir) = zoo_json(
        &[
            "--budget",
            "300ms",
            "--only",
            ORDERING_ONLY,
            "--engines",
            "shuttle-random",
        ],
        "undetected",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("UNDETECTED"), "{out}");
    assert_eq!(rep["rows"][0]["cells"][0]["result"], "cannot-reach");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C: the running cells finish, the rest are marked "not run", the files
/// are written, exit 130.
#[test]
fn zoo_interrupted_still_writes_what_it_has() {
    let dir = std::env::temp_dir().join(format!("gupcheck-zoo-int-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(["zoo", "--budget", "1s", "--engines", "loom,shuttle-random"])
        .arg("--out")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("zoo.json")).unwrap()).unwrap();
    assert_eq!(rep["interrupted"], true);
    let cells: Vec<&serde_json::Value> = rep["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["cells"].as_array().unwrap())
        .collect();
    assert!(cells.iter().any(|c| c["result"] == "not-run"));
    assert!(cells.iter().any(|c| c["result"] == "found"));
    assert!(dir.join("zoo.svg").is_file() && dir.join("zoo.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
