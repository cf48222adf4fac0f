//! `gupcheck replay`: a failure artifact, replayed.

use crate::ui::say;
use gupcheck_model::harness::artifact::{render_trace, Artifact, LOOM_VERSION, SHUTTLE_VERSION};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Clone)]
pub struct ReplayArgs {
    /// The JSON artifact `explore` wrote.
    file: PathBuf,
}

pub fn run(a: &ReplayArgs) -> Result<ExitCode, String> {
    let art = Artifact::load(&a.file)?;
    let (loom, shuttle) = (LOOM_VERSION, SHUTTLE_VERSION);
    if art.loom != loom || art.shuttle != shuttle || art.gupcheck != env!("CARGO_PKG_VERSION") {
        eprintln!(
            "gupcheck: warning: recorded with gupcheck {} (loom {}, shuttle {}), replaying with {} (loom {loom}, shuttle {shuttle}): schedules may not carry over",
            art.gupcheck,
            art.loom,
            art.shuttle,
            env!("CARGO_PKG_VERSION")
        );
    }
    let (o, same) = art.replay()?;
    say!(
        "replaying {} / {} / {} / {} ({}, recorded with gupcheck {}, loom {}, shuttle {})",
        art.scenario.name,
        art.preset.name(),
        art.arch.name(),
        if art.mutations.is_empty() {
            "-".to_string()
        } else {
            art.mutations
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(",")
        },
        art.engine.name(),
        art.gupcheck,
        art.loom,
        art.shuttle
    );
    match &o.failure {
        Some(f) => {
            say!("{}", render_trace(&f.trace));
            say!("VIOLATION: {}", f.violation);
        }
        None => say!("no violation"),
    }
    if same {
        say!("reproduced: {}", art.failure.violation.invariant);
        Ok(ExitCode::from(1))
    } else {
        say!("not reproduced (recorded: {})", art.failure.violation);
        Ok(ExitCode::SUCCESS)
    }
}
