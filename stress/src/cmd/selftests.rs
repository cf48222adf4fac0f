//! `gupcheck selftests`: the kernel's cow.c and gup_longterm.c cases over the
//! model, in every preset, against the checked-in expectation.

use crate::shard::{Header, Shard};
use crate::ui::say;
use gupcheck_model::harness::artifact::write_file_atomic;
use gupcheck_model::harness::kselftest::cow as selftests;
use gupcheck_model::harness::kselftest::cow::Table;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct SelftestsArgs {
    /// Where selftests.md and selftests.json are written.
    #[arg(long, default_value = "gupcheck-selftests")]
    out: PathBuf,
    /// Keeps part K of N (1-based): the rows whose index is K-1 modulo N.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
}

/// `selftests.json`: the table (its `presets` and `rows` are what
/// model/selftests.json holds), and what `gupcheck merge` needs.
#[derive(Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    /// Rows of the whole table, before sharding.
    pub selected: usize,
    #[serde(flatten)]
    pub table: Table,
}

pub const KIND: &str = "selftests";

/// Writes selftests.md and selftests.json into `out`: their paths.
fn write(out: &Path, r: &Report) -> Result<(PathBuf, PathBuf), String> {
    let md = selftests::markdown(&r.table);
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n";
    Ok((
        write_file_atomic(out, "selftests.md", md.as_bytes())?,
        write_file_atomic(out, "selftests.json", json.as_bytes())?,
    ))
}

/// Prints the rows that differ from the expectation (for a shard, `part`,
/// only the rows it holds); true if any does.
fn differs(table: &Table, part: bool, json: Option<&Path>) -> Result<bool, String> {
    let mut expected = selftests::expected()?;
    if part {
        let key = |r: &selftests::Row| (r.suite.clone(), r.case.clone(), r.backing.clone());
        let ran: Vec<_> = table.rows.iter().map(key).collect();
        expected.rows.retain(|r| ran.contains(&key(r)));
    }
    let diffs = selftests::differences(table, &expected);
    if diffs.is_empty() {
        say!("every row matches the expectation (model/selftests.json)");
        return Ok(false);
    }
    for d in &diffs {
        say!("MISMATCH {d}");
    }
    let copy = json.map_or(String::new(), |p| {
        format!("; if the change is intended, copy {} there", p.display())
    });
    say!(
        "{} row(s) differ from model/selftests.json{copy}",
        diffs.len()
    );
    Ok(true)
}

pub fn run(a: &SelftestsArgs) -> Result<ExitCode, String> {
    let t = Instant::now();
    let mut table = selftests::run_all();
    let selected = table.rows.len();
    // Every case together takes a fraction of a second: a shard runs them
    // all and keeps its rows, which are then the unsharded run's own.
    table.rows = Shard::select(a.shard, table.rows);
    let report = Report {
        header: Header::new(KIND, a.shard),
        selected,
        table,
    };
    let (md_path, json_path) = write(&a.out, &report)?;
    say!("{}", selftests::markdown(&report.table));
    let (of, which) = match a.shard {
        Some(s) => (format!(" of {selected}"), format!(" (shard {s})")),
        None => (String::new(), String::new()),
    };
    say!(
        "{}{of} rows{which} in {:.1} s; written to {} and {}",
        report.table.rows.len(),
        t.elapsed().as_secs_f64(),
        md_path.display(),
        json_path.display()
    );
    let part = a.shard.is_some();
    Ok(if differs(&report.table, part, Some(&json_path))? {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Shards' reports, merged: the table, written to `out` if given, and
/// whether a row differs from the expectation.
pub fn show_merged(r: &Report, out: Option<&Path>) -> Result<bool, String> {
    say!("{}", selftests::markdown(&r.table));
    let json = match out {
        Some(out) => {
            let (md, json) = write(out, r)?;
            say!(
                "{} rows; written to {} and {}",
                r.table.rows.len(),
                md.display(),
                json.display()
            );
            Some(json)
        }
        None => {
            say!("{} rows", r.table.rows.len());
            None
        }
    };
    differs(&r.table, false, json.as_deref())
}
