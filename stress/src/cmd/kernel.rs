//! `gupcheck kernel`: the model against the running kernel (`selftests`, the
//! differential of cow.c and gup_longterm.c).

use crate::kernel::{self, report, Request};
use crate::ui::say;
use gupcheck_model::harness::artifact::write_file_atomic;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum KernelCmd {
    /// Every cow.c and gup_longterm.c case the model's selftests table has,
    /// run as real syscalls on this kernel and compared with the model's
    /// result for the preset nearest below `uname -r`: one table of case,
    /// backing, real result, model result, agreement and notes. Exit 1 if a
    /// case disagrees or cannot be carried out, 4 on a host that is not
    /// Linux; a missing prerequisite is a skip. Run as root for every case.
    Selftests(SelftestsArgs),
}

#[derive(clap::Args)]
pub struct SelftestsArgs {
    /// Writes the report as JSON (a temp file, then renamed).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Runs one case: its cow.c identifier (A3) or its whole text.
    #[arg(long, value_name = "NAME")]
    case: Option<String>,
    /// Compares with this preset instead of the one nearest below the kernel.
    #[arg(long, value_name = "P")]
    preset: Option<String>,
    /// Re-judges a report written by --json (another machine's, another
    /// preset) instead of running the cases.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Where the page-cache and gup_longterm cases make their files.
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

pub fn run(cmd: &KernelCmd) -> Result<ExitCode, String> {
    match cmd {
        KernelCmd::Selftests(a) => selftests(a),
    }
}

fn selftests(a: &SelftestsArgs) -> Result<ExitCode, String> {
    if a.from.is_none() && !cfg!(target_os = "linux") {
        // kselftest's skip, as `bench` does for what it cannot run.
        eprintln!("gupcheck: kernel selftests runs on Linux only (skip)");
        return Ok(ExitCode::from(4));
    }
    let report = kernel::selftests(&Request {
        case: a.case.clone(),
        preset: a.preset.clone(),
        from: a.from.clone(),
        dir: a.dir.clone(),
    })?;
    say!("{}", report.markdown());
    say!("{}", report.summary());
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("--json {}: not a file name", path.display()))?;
        let written = write_file_atomic(dir, &name.to_string_lossy(), json.as_bytes())?;
        say!("written to {}", written.display());
    }
    let failures = report.failures();
    for r in &failures {
        say!(
            "DISAGREE {} / {} / {}: real {}, model {}",
            r.suite,
            r.case,
            r.backing,
            r.real.show(),
            r.model
                .as_ref()
                .map_or("not modelled".into(), report::show_cell)
        );
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
