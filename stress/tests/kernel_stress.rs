//! `gupcheck kernel stress` without root or a syscall under test: bad input,
//! and a report recorded on a 6.18 kernel (kernel-stress-6.18.json, written
//! by `--json`) printed again with `--from`. The real run is
//! `sudo target/release/gupcheck kernel stress --duration 2m`; the ignored
//! tests below run it briefly, with and without a deliberate fault
//! (`cargo test --release --test kernel_stress -- --ignored`).

mod common;

use std::path::{Path, PathBuf};

fn recorded() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel-stress-6.18.json")
}

fn gupcheck(args: &[&str]) -> (i32, String, String) {
    common::gupcheck(&[&["kernel", "stress"], args].concat())
}

/// The real runs one at a time: the pin counters are system-wide, and one
/// run's registration held while another checks its quiescent point is
/// a difference no counter can attribute.
static REAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_recorded_run_prints_its_table_and_pin_counters() {
    let path = recorded();
    let (code, out, err) = gupcheck(&["--from", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("| op | group | ops | ops/s |"), "{out}");
    for op in [
        "| io_uring read_fixed | io_uring |",
        "| O_DIRECT read | o_direct |",
        "| pipe read | vmsplice |",
        "| process_vm_writev | process_vm |",
        "| fork | fork |",
        "| clear_refs | clear_refs |",
    ] {
        assert!(out.contains(op), "missing {op} in\n{out}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let pins = &r["pins"];
    assert_eq!(pins["checks"], pins["balanced"], "{pins}");
    assert!(pins["checks"].as_u64().unwrap() > 0);
    assert!(r["violation"].is_null());
    assert!(out.contains("kernel stress: 2 threads,"), "{out}");
}

/// A 2-minute run with the shared-file and hugetlb regions (8 huge pages
/// in the pool): the file ops in the table, the hugetlb get leaks counted
/// as known-open, and exit 0.
#[test]
fn the_recorded_file_and_hugetlb_run_counts_its_known_open_leaks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel-stress-6.18-files.json");
    let (code, out, err) = gupcheck(&["--from", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for op in [
        "| ftruncate down+up | truncate |",
        "| punch hole | truncate |",
        "| writeback | writeback |",
    ] {
        assert!(out.contains(op), "missing {op} in\n{out}");
    }
    assert!(
        out.contains("known-open: hugetlb get leak seen 6 times (not a violation)"),
        "{out}"
    );
    assert!(out.contains("note: io_uring: the shared-file region is no fixed buffer (Bad address"));
    assert!(out.contains("`durable after sync` checks"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(r["pins"]["checks"], r["pins"]["balanced"]);
    assert!(r["violation"].is_null());
}

#[test]
fn a_recorded_violation_exits_1_and_names_the_invariant() {
    let text = std::fs::read_to_string(recorded()).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
    r["violation"] = serde_json::json!({
        "invariant": "no leak after fork", "detail": "the child's mapping shows the parent's post-fork write",
        "epoch": 7, "worker": 1, "op": "fork", "seq": 812, "op_log": "gupcheck-kernel-stress/kernel-stress-oplog.txt"
    });
    r["ended"] = "violation".into();
    let dir = scratch("kernel-stress-violation");
    let path = dir.join("r.json");
    std::fs::write(&path, r.to_string()).unwrap();
    let (code, out, _) = gupcheck(&["--from", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(
        "kernel stress: epoch 7 broke no leak after fork: worker 1 op #812 fork: the child's mapping shows"
    ));
    assert!(out.contains("op log of every worker: gupcheck-kernel-stress/kernel-stress-oplog.txt"));
}

#[test]
fn bad_input_is_one_line_with_exit_2() {
    let dir = scratch("kernel-stress-bad");
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"ops\": 3}").unwrap();
    let missing = dir.join("missing.json");
    for (args, needle) in [
        (
            vec!["--paths", "io_uring,dma"],
            "unknown path 'dma' (known: io_uring, o_direct, vmsplice, process_vm, or all)",
        ),
        (vec!["--breakers", "swap"], "unknown breaker 'swap'"),
        (
            vec!["--breakers", "fork,punch"],
            "unknown breaker 'punch' (known: fork, munmap, mremap, dontneed, collapse, pageout, mprotect, ksm, clear_refs, truncate, writeback, migrate, or all)",
        ),
        (vec!["--paths", ""], "--paths names no path"),
        (vec!["--duration", "10x"], "bad duration '10x'"),
        (vec!["--duration", "0s"], "bad duration '0s'"),
        (vec!["--epoch", "soon"], "bad duration 'soon'"),
        (vec!["--threads", "0"], "--threads"),
        (
            vec!["--inject", "oops"],
            "unknown --inject 'oops' (known: stale-registration, stuck-child, lost-write, corrupt-file)",
        ),
        (vec!["--from", missing.to_str().unwrap()], "cannot read"),
        (
            vec!["--from", junk.to_str().unwrap()],
            "not a gupcheck kernel stress report",
        ),
    ] {
        let (code, _, err) = gupcheck(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A real run: clean, its JSON written by temp file and rename.
#[test]
#[ignore = "the real kernel (io_uring, O_DIRECT on the temp dir); run with --ignored, as root for every op"]
fn a_short_real_run_is_clean() {
    let _one = REAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("kernel-stress-real");
    let json = dir.join("k.json");
    let out_dir = dir.join("out");
    let (code, out, err) = gupcheck(&[
        "--duration",
        "3s",
        "--json",
        json.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["ended"], "deadline");
    assert_eq!(r["pins"]["checks"], r["pins"]["balanced"]);
    for op in ["ftruncate down+up", "punch hole", "writeback"] {
        assert!(
            r["by_op"].as_array().unwrap().iter().any(|k| k["op"] == op),
            "no {op} in {}",
            r["by_op"]
        );
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temp file left"
    );
}

/// The checks fire: fixed I/O through a registration whose pages were
/// replaced breaks `coherent pin` (or, when a fork meets it first, the
/// pinned pages are not the mapping's: `pinned exclusive`); a child that
/// never gets ready is caught by the watchdog; a pin's write into the
/// shared file that never lands breaks `no lost write`; a hole punched
/// after the sync behind the shadow's back breaks `durable after sync`.
/// All exit 1 with the op log written.
#[test]
#[ignore = "the real kernel; run with --ignored"]
fn injected_faults_are_caught() {
    let _one = REAL.lock().unwrap_or_else(|e| e.into_inner());
    for (fault, invariant) in [
        (
            "stale-registration",
            "broke coherent pin|broke pinned exclusive",
        ),
        ("stuck-child", "broke progress"),
        ("lost-write", "broke no lost write"),
        ("corrupt-file", "broke durable after sync"),
    ] {
        let dir = scratch(&format!("kernel-stress-{fault}"));
        let out_dir = dir.join("out");
        let (code, out, err) = gupcheck(&[
            "--duration",
            "30s",
            "--watchdog",
            "2",
            "--inject",
            fault,
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{fault}: {out}{err}");
        assert!(
            invariant.split('|').any(|i| out.contains(i)),
            "{fault}: {out}"
        );
        let log = std::fs::read_to_string(out_dir.join("kernel-stress-oplog.txt")).unwrap();
        assert!(
            log.contains("== worker 0:") && log.contains("== worker 1:"),
            "{log}"
        );
    }
}

fn replay(args: &[&str]) -> (i32, String, String) {
    common::gupcheck(&[&["kernel", "replay"], args].concat())
}

/// The recorded report with a violation and `command` in place of its own.
fn broke_with_command(dir: &Path, command: &str) -> PathBuf {
    let text = std::fs::read_to_string(recorded()).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
    r["violation"] = serde_json::json!({
        "invariant": "coherent pin", "detail": "write_fixed stored the old page",
        "epoch": 1, "worker": 0, "op": "io_uring write_fixed", "seq": 19
    });
    r["ended"] = "violation".into();
    r["command"] = command.into();
    let path = dir.join("broke.json");
    std::fs::write(&path, r.to_string()).unwrap();
    path
}

#[test]
fn replay_refuses_what_it_cannot_rerun_in_one_line() {
    let dir = scratch("kernel-replay-bad");
    let clean = recorded();
    let not_stress = broke_with_command(&dir, "gupcheck list");
    let cases: [(&Path, &str); 3] = [
        (&clean, "the run ended clean (deadline): nothing to replay"),
        (
            &not_stress,
            "cannot read the recorded command 'gupcheck list': not a kernel stress command",
        ),
        (
            Path::new("/nonexistent/r.json"),
            "cannot read /nonexistent/r.json",
        ),
    ];
    for (path, want) in cases {
        let (code, out, err) = replay(&[path.to_str().unwrap()]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains(want), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let bad_flag = broke_with_command(&dir, "gupcheck kernel stress --paths dma");
    let (code, _, err) = replay(&[bad_flag.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown path 'dma'"), "{err}");
}

/// A run broken by an injected fault leaves its report beside its op log;
/// `kernel replay` of it runs the same command (the fault included) and
/// the same worker breaks the same invariant at the same op again.
#[test]
#[ignore = "the real kernel; run with --ignored"]
fn a_broken_run_replays_from_its_report() {
    let _one = REAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("kernel-replay-real");
    let out_dir = dir.join("out");
    let (code, out, err) = gupcheck(&[
        "--duration",
        "30s",
        "--inject",
        "stale-registration",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    // Which check the stale registration meets first (coherent pin, or
    // pinned exclusive at a fork) depends on the seed's op order.
    let line = out
        .lines()
        .find(|l| l.starts_with("kernel stress: epoch "))
        .unwrap()
        .to_string();
    let report = out_dir.join("kernel-stress-report.json");
    assert!(
        out.contains(&format!(
            "replay: gupcheck kernel replay {}",
            report.display()
        )),
        "{out}"
    );
    let again = dir.join("again");
    let (code, out, err) = replay(&[report.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    // The stale registration breaks coherent pin or pinned exclusive,
    // whichever check meets it first: the replay must break one of them
    // again (the same, or "another violation").
    let again = out
        .lines()
        .find(|l| l.contains(" on attempt 1 of 5: kernel stress: epoch "))
        .unwrap_or_else(|| panic!("{line}\n{out}"));
    assert!(
        again.contains(" broke coherent pin:") || again.contains(" broke pinned exclusive:"),
        "{line}\n{again}"
    );
}
