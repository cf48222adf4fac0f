//! `gupcheck litmus`: herd7 litmus tests (C, the Linux-kernel memory model)
//! for a scenario's orderings, written as `.litmus` files, each through a temp
//! file and a rename. `herd7 -conf linux-kernel.cfg FILE` in the kernel's
//! tools/memory-model runs one; its `Result:` comment says what it should
//! answer, which a test holds to the expectation matrix.

use crate::ui::say;
use gupcheck_model::harness::artifact::write_file_atomic;
use gupcheck_model::harness::litmus;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Clone)]
pub struct LitmusArgs {
    /// A scenario with litmus tests (the gup_fast_vs_fork family).
    scenario: String,
    /// Where the .litmus files are written.
    #[arg(long, default_value = "gupcheck-litmus")]
    out: PathBuf,
}

pub fn run(a: &LitmusArgs) -> Result<ExitCode, String> {
    let tests = litmus::for_scenario(&a.scenario)?;
    for t in tests {
        let path = write_file_atomic(&a.out, &t.file_name(), t.render().as_bytes())?;
        say!(
            "{}  expected {}: {}",
            path.display(),
            t.result.name(),
            t.entries().join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
