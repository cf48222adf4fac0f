//! The expectation matrix, run as one trial per entry of
//! `model/expectations.json` (named by `trial_name`, e.g.
//! `gup_fast_vs_fork/latest/rcu/-`), under the engines of `engines`: loom at
//! the entry's bound, shuttle random, PCT at depths 1 to 3, DFS up to a maximum
//! (clean entries), and real threads. A `clean` trial fails on any violation; a
//! `found` / `known-open` / `known-incomplete` / `open-upstream` trial fails if
//! the engines stop finding it, or if an engine expected to miss an
//! ordering-only bug finds it or never reaches its race window.

use std::collections::BTreeSet;

use gupcheck_loom_tests::{engines, trial_kind, trial_name};
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::Entry;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let matrix = expect::matrix();
    assert!(!matrix.is_empty(), "the expectation matrix is empty");
    // Names select trials; two entries under one name could not be run apart.
    let mut names = BTreeSet::new();
    let trials = matrix
        .into_iter()
        .map(|e| {
            let name = trial_name(&e);
            assert!(
                names.insert(name.clone()),
                "two matrix entries share the trial name {name}"
            );
            let kind = trial_kind(&e);
            Trial::test(name, move || check(&e)).with_kind(kind)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Runs `e` under its engines. libtest-mimic heads a failure with the trial's
/// name; the message says how the outcomes contradict the entry.
fn check(e: &Entry) -> Result<(), Failed> {
    let ev = expect::evaluate(e, &engines(e)).map_err(|m| format!("cannot run: {m}"))?;
    Ok(ev.verdict?)
}
