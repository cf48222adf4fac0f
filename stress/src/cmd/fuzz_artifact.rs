//! `gupcheck fuzz-artifact`: a fuzz input through its target on stable; a
//! finding of the thread targets becomes a replayable artifact.

use crate::ui::say;
use gupcheck_model::harness::artifact::{render_trace, Artifact};
use gupcheck_model::harness::fuzzing::Target;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Clone)]
pub struct FuzzArtifactArgs {
    /// ops | interleave | presets
    target: String,
    /// The input file.
    input: PathBuf,
    /// Where the artifact is written.
    #[arg(long, default_value = "gupcheck-artifacts")]
    out: PathBuf,
}

pub fn run(a: &FuzzArtifactArgs) -> Result<ExitCode, String> {
    let (target, input) = (&a.target, &a.input);
    let t = Target::parse(target)?;
    let data = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let Some(f) = t.check(&data) else {
        say!("{target}: {} finds nothing", input.display());
        return Ok(ExitCode::SUCCESS);
    };
    say!("{target}: {} finds {f}", input.display());
    match f.artifact {
        Some(mut art) => {
            let (path, same) = art.replay_and_write(&a.out)?;
            if !same {
                return Err(format!(
                    "the finding did not replay from its recorded schedule (written anyway: {})",
                    path.display()
                ));
            }
            say!("{}", render_trace(&art.failure.trace));
            say!("artifact: {}", path.display());
            say!("replay:   {}", Artifact::replay_command(&path));
        }
        None => say!(
            "(the ops target runs one thread on std: the input itself is the reproducer; `cargo fuzz fmt ops FILE` decodes it)"
        ),
    }
    Ok(ExitCode::from(1))
}
