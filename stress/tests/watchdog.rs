//! `gupcheck stress --watchdog`: a run in which a thread waits forever (a
//! lost wake-up: `unlock_no_wake` drops `folio_unlock`'s wake-up) is stopped
//! by the watchdog, which names the stuck thread's op and last kernel step,
//! writes the report and exits 1; the run never hangs. Each run is a child
//! killed past a generous limit, so that these tests cannot hang either.

use gupcheck_model::backend::STD_WAIT_LIMIT;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far past the runs' own bounds (a 2 s watchdog, a short PCT search): only a
/// run that hangs gets there.
const KILL_AFTER: Duration = Duration::from_secs(120);

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "gupcheck-watchdog-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `gupcheck args`, killed after `KILL_AFTER`: its exit code (`None` if
/// killed), stderr and how long it ran.
fn gupcheck_bounded(args: &[&str]) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // Read as it comes: a full pipe would block the child.
    let mut pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let code = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status.code();
        }
        if t0.elapsed() > KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t0.elapsed();
    (code, reader.join().unwrap_or_default(), took)
}

/// A stress run of `unlock_no_wake` with a 2 s watchdog and `args`: it must
/// end on its own with exit 1 and a `progress` violation that names the
/// stuck workers; the report and the stuck workers' entries.
fn stuck_run(name: &str, args: &[&str]) -> (serde_json::Value, Vec<serde_json::Value>) {
    let out = tmp(name);
    let dir = out.to_str().unwrap();
    let mut all = vec![
        "stress",
        "--threads",
        "2",
        "--arch",
        "ipi",
        "--mutation",
        "unlock_no_wake",
        "--watchdog",
        "2",
        "--pct-budget",
        "300",
        "--duration",
        "60s",
        "--out",
        dir,
    ];
    all.extend(args);
    let (code, err, took) = gupcheck_bounded(&all);
    assert_ne!(
        code, None,
        "still running after {KILL_AFTER:?}: it hangs\n{err}"
    );
    assert_eq!(code, Some(1), "{err}");
    // Stopped by the watchdog, not by the std backend's wait limit (a run
    // that ends past it may have been).
    assert!(took < STD_WAIT_LIMIT, "took {took:?}\n{err}");
    assert!(err.contains("broke progress"), "{err}");
    assert!(err.contains("last kernel step"), "{err}");
    let text = std::fs::read_to_string(out.join("stress-report.json")).expect("a report");
    let r: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(r["ended"], "watchdog", "{r}");
    let v = &r["violation"];
    assert_eq!(v["invariant"], "progress", "{r}");
    assert!(v["explanation"]["kind"].is_string(), "{r}");
    let stuck = v["stuck"].as_array().cloned().unwrap_or_default();
    assert!(!stuck.is_empty(), "no stuck worker named: {r}");
    for w in &stuck {
        // The op as the report's op lists have it, and the step it sleeps in.
        let (t, i) = (
            w["thread"].as_u64().unwrap(),
            w["op_index"].as_u64().unwrap(),
        );
        assert_eq!(w["op"], v["ops"][t as usize][i as usize], "{r}");
        assert!(w["op"].is_object(), "{r}");
        assert!(w["step"].is_string(), "{r}");
    }
    let _ = std::fs::remove_dir_all(&out);
    (r, stuck)
}

/// Random epochs: some worker's op waits for a folio lock whose holder
/// unlocked without waking it.
#[test]
fn a_lost_wake_up_under_random_ops_is_reported_not_hung() {
    stuck_run("random", &[]);
}

/// The matrix's own race (`store_vs_writeback`): writeback holds the folio
/// lock, the store's fault sleeps on it and is never woken; the other
/// worker waits at the next round's start line, spinning.
#[test]
fn a_lost_wake_up_in_a_racing_shape_is_reported_not_hung() {
    let (r, stuck) = stuck_run("shape", &["--shapes", "store_vs_writeback"]);
    assert_eq!(r["violation"]["shape"], "store_vs_writeback", "{r}");
    assert!(
        stuck
            .iter()
            .any(|w| w["step"].as_str().unwrap().contains("folio_lock")),
        "{r}"
    );
}

#[test]
fn a_bad_watchdog_value_is_a_one_line_error() {
    for bad in ["0", "soon", "1e9", "nan"] {
        let (code, err, _) = gupcheck_bounded(&["stress", "--watchdog", bad]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad}: {err}");
        assert!(err.contains("bad --watchdog"), "{bad}: {err}");
    }
}
