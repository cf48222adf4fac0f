//! `gupcheck selftests`: the kernel's cow.c and gup_longterm.c cases over the
//! model, in every preset, against the checked-in expectation.

use crate::ui::say;
use gupcheck_model::artifact::write_file_atomic;
use gupcheck_model::selftests;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct SelftestsArgs {
    /// Where selftests.md and selftests.json are written.
    #[arg(long, default_value = "gupcheck-selftests")]
    out: PathBuf,
}

pub fn run(a: &SelftestsArgs) -> Result<ExitCode, String> {
    let t = Instant::now();
    let table = selftests::run_all();
    let md = selftests::markdown(&table);
    let json = serde_json::to_string_pretty(&table).map_err(|e| e.to_string())? + "\n";
    let md_path = write_file_atomic(&a.out, "selftests.md", md.as_bytes())?;
    let json_path = write_file_atomic(&a.out, "selftests.json", json.as_bytes())?;
    say!("{md}");
    say!(
        "{} rows in {:.1} s; written to {} and {}",
        table.rows.len(),
        t.elapsed().as_secs_f64(),
        md_path.display(),
        json_path.display()
    );
    let diffs = selftests::differences(&table, &selftests::expected()?);
    if diffs.is_empty() {
        say!("every row matches the expectation (model/selftests.json)");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &diffs {
        say!("MISMATCH {d}");
    }
    say!(
        "{} row(s) differ from model/selftests.json; if the change is intended, copy {} there",
        diffs.len(),
        json_path.display()
    );
    Ok(ExitCode::from(1))
}
