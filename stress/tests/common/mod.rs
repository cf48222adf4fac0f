//! What the CLI tests share: running the built binary.

use std::process::Command;

/// `gupcheck ARGS...`: its exit code, stdout and stderr.
pub fn gupcheck(args: &[&str]) -> (i32, String, String) {
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
