//! `gupcheck kernel`: the model's selftests against the running kernel.
//! `selftests` runs every cow.c and gup_longterm.c case the model's table
//! has as real syscalls (anonymous base pages and THPs, MADV_COLLAPSE, page
//! cache; vmsplice, io_uring fixed buffers over O_DIRECT files,
//! process_vm_readv) and compares each result with the model's for the preset
//! nearest below `uname -r`. The planning, judging and report are plain code
//! (tested with recorded inputs anywhere); the syscalls are Linux only.
//! `stress` races real pins against the mm operations that break them.

pub mod gup_test;
pub mod plan;
pub mod probe;
#[cfg(target_os = "linux")]
mod real;
pub mod report;
pub mod stress;
pub mod vm;

use gupcheck_model::harness::kselftest::cow::{self as model, Table};
use gupcheck_model::PresetId;
use plan::{case_id, runner, Real};
use report::{Measured, Report};
use std::path::{Path, PathBuf};

/// MADV_COLLAPSE (include/uapi/asm-generic/mman-common.h, since 6.1): the
/// libc crate defines it for glibc targets only, and the static musl build
/// is the one that runs in a VM's initramfs.
#[cfg(target_os = "linux")]
pub(crate) const MADV_COLLAPSE: libc::c_int = 25;

/// What `kernel selftests` is asked.
pub struct Request {
    pub case: Option<String>,
    pub preset: Option<String>,
    /// A recorded report to re-judge instead of running the cases.
    pub from: Option<PathBuf>,
    pub dir: PathBuf,
}

/// The model's table with only the rows `case` names (its cow.c identifier,
/// "A3", or its whole text), or an error listing the known names.
pub fn select(mut t: Table, case: Option<&str>) -> Result<Table, String> {
    let Some(want) = case else { return Ok(t) };
    let matches = |suite: &str, c: &str| {
        case_id(suite, c).eq_ignore_ascii_case(want) || c.eq_ignore_ascii_case(want)
    };
    if !t.rows.iter().any(|r| matches(&r.suite, &r.case)) {
        let mut known: Vec<String> = Vec::new();
        for r in &t.rows {
            let id = case_id(&r.suite, &r.case);
            if r.not_modelled.is_none() && !known.contains(&id) {
                known.push(id);
            }
        }
        return Err(format!(
            "unknown case '{want}' (known: {})",
            known.join(", ")
        ));
    }
    t.rows.retain(|r| matches(&r.suite, &r.case));
    Ok(t)
}

/// Refuses a case name the model's table does not have.
pub fn check_case(case: Option<&str>) -> Result<(), String> {
    select(model::run_all(), case).map(|_| ())
}

/// The report of a request: the cases run on this kernel, or a recorded
/// report re-judged.
pub fn selftests(req: &Request) -> Result<Report, String> {
    let table = select(model::run_all(), req.case.as_deref())?;
    if let Some(from) = &req.from {
        let text = std::fs::read_to_string(from)
            .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let recorded = Report::parse(&text).map_err(|e| format!("{}: {e}", from.display()))?;
        let preset = preset_name(req.preset.as_deref(), &recorded.kernel)?;
        return recorded.rejudge(&preset, &table);
    }
    let release = release()?;
    let preset = preset_name(req.preset.as_deref(), &release)?;
    let real = run_real(&table, &req.dir)?;
    Report::build(&release, &preset, &table, real)
}

fn preset_name(asked: Option<&str>, release: &str) -> Result<String, String> {
    Ok(match asked {
        Some(p) => PresetId::parse(p)?.name().to_string(),
        None => probe::preset_for_release(release)?.name().to_string(),
    })
}

#[cfg(target_os = "linux")]
pub(crate) fn release() -> Result<String, String> {
    let u = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    Ok(u.release().to_string_lossy().into_owned())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn release() -> Result<String, String> {
    Err("gupcheck kernel needs Linux".into())
}

/// Every row of `table` on this kernel, in order; a row the model does not
/// model is not run.
#[cfg(target_os = "linux")]
fn run_real(table: &Table, dir: &Path) -> Result<Vec<Measured>, String> {
    let env = real::Env::probe(dir)?;
    Ok(table
        .rows
        .iter()
        .map(|r| match r.not_modelled {
            Some(_) => (Real::NotRun, String::new()),
            None => real::run(&runner(&r.suite, &r.case, &r.backing), &env),
        })
        .collect())
}

#[cfg(not(target_os = "linux"))]
fn run_real(_: &Table, _: &Path) -> Result<Vec<Measured>, String> {
    let _ = runner;
    Err("gupcheck kernel needs Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_is_picked_by_its_identifier_or_its_text() {
        let t = select(model::run_all(), Some("a3")).unwrap();
        assert!(!t.rows.is_empty());
        assert!(t.rows.iter().all(|r| r.case.starts_with("A3 ")));
        let t = select(model::run_all(), Some("R/W longterm fast pin, MAP_SHARED")).unwrap();
        assert_eq!(t.rows.len(), 2, "one row per filesystem flavour");
        let e = select(model::run_all(), Some("A99")).unwrap_err();
        assert!(e.starts_with("unknown case 'A99' (known: A1, A3,"), "{e}");
        assert!(!e.contains('\n'));
        assert!(
            !e.contains("A2,"),
            "not-modelled cases are not offered: {e}"
        );
    }
}
