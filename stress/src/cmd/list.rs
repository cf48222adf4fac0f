//! `gupcheck list`: the axes of the matrix, one line each.

use crate::ui::say;
use gupcheck_model::harness::expect::Expect;
use gupcheck_model::harness::scenario;
use gupcheck_model::{Invariant, Mutation, PresetId};
use std::process::ExitCode;

pub fn run() -> Result<ExitCode, String> {
    say!("scenarios:");
    for s in scenario::catalogue() {
        say!("  {:<28} {}", s.name, s.about);
    }
    say!("presets:");
    for p in PresetId::ALL {
        say!("  {:<28} {}", p.name(), p.preset().about);
    }
    say!("arch modes:");
    say!(
        "  {:<28} TLB flush by IPI: frees of tables and data pages wait for walkers",
        "ipi"
    );
    say!(
        "  {:<28} RCU table freeing: only table frees wait (a grace period)",
        "rcu"
    );
    say!("mutations:");
    for m in Mutation::ALL {
        say!("  {:<28} {}", m.name(), m.describe());
    }
    say!("invariants:");
    for i in Invariant::ALL.into_iter().filter(|i| !i.is_finding_class()) {
        say!("  {:<28} {}", i.name(), i.meaning());
    }
    say!("finding classes:");
    for i in Invariant::ALL.into_iter().filter(|i| i.is_finding_class()) {
        say!("  {:<28} {}", i.name(), i.meaning());
    }
    say!("expectation classes (model/expectations.json):");
    for (name, meaning) in Expect::CLASSES {
        say!("  {:<28} {}", name, meaning);
    }
    Ok(ExitCode::SUCCESS)
}
