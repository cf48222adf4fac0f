//! The command line as a user meets it: bad input is one line on stderr and exit
//! code 2; a failure writes an artifact that `gupcheck replay` reproduces (exit 1).

use std::process::Command;

fn gupcheck(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(args)
        .output()
        .expect("runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

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
    ] {
        assert!(out.contains(section), "{section}");
    }
    assert!(out.contains("gup_fast_vs_munmap") && out.contains("skip_pte_recheck"));
}
