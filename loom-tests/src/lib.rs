//! Support shared by the schedule-exploring suites in `tests/`: the engines a
//! matrix entry runs under, the name its trial goes by, and the engine settings
//! the other suites reuse.
//!
//! The suites are a crate of their own, apart from `gupcheck-model`'s
//! sequential tests, so that `cargo test -p gupcheck-model` stays quick and the
//! loom and shuttle budgets are spent in one place (README.md).

use gupcheck_model::harness::expect::{Entry, Expect};
use gupcheck_model::Engine;

/// Executions per shuttle run (random, and PCT at each depth): enough for
/// every found entry at the fixed seeds used here.
pub const SHUTTLE_ITERS: usize = 3_000;
/// The cap on shuttle's exhaustive search, which runs for clean entries only
/// (a found entry's search stops at its first failure anyway).
pub const DFS_MAX: usize = 2_000;
/// Real-thread iterations per entry.
pub const STD_ITERS: usize = 100;
/// loom at the deeper of the matrix's two bounds (`Entry::loom_bound`): two
/// preemptions, into the racing step and back, which the races these suites
/// replay need.
pub const LOOM_BOUND_2: Engine = Engine::Loom {
    preemption_bound: Some(2),
};

/// PCT at depth 3, the deepest the matrix runs, from `seed`.
pub fn pct(seed: u64) -> Engine {
    Engine::ShuttlePct {
        iterations: SHUTTLE_ITERS,
        depth: 3,
        seed,
    }
}

/// The engines a matrix entry runs under: loom at the entry's bound, shuttle
/// random and PCT at depths 1 to 3, shuttle DFS for clean entries, and real
/// threads. An entry's `found_by` / `missed_by` name engines of this list.
pub fn engines(e: &Entry) -> Vec<Engine> {
    let mut v = vec![
        Engine::Loom {
            preemption_bound: Some(e.loom_bound()),
        },
        Engine::ShuttleRandom {
            iterations: SHUTTLE_ITERS,
            seed: 7,
        },
    ];
    for depth in 1..=3 {
        v.push(Engine::ShuttlePct {
            iterations: SHUTTLE_ITERS,
            depth,
            seed: 7,
        });
    }
    if e.invariant().is_none() {
        v.push(Engine::ShuttleDfs {
            max_iterations: Some(DFS_MAX),
        });
    }
    v.push(Engine::Std {
        iterations: STD_ITERS,
    });
    v
}

/// An entry's trial name: `scenario/preset/arch/mutation` (`-` for none), then
/// `/past-INVARIANT` (`+` between several) for an entry that searches past
/// known-open outcomes, since that is all that tells some entries apart.
/// Invariant names get `_` for spaces so that a name is one shell word.
pub fn trial_name(e: &Entry) -> String {
    e.id()
}

/// `clean`, or `found` for entries that must be found (found, known-open,
/// known-incomplete, open-upstream). libtest-mimic shows it as `[kind]` before the name, and
/// filters match it too: `-- '[found]'` runs the found entries.
pub fn trial_kind(e: &Entry) -> &'static str {
    match e.expect {
        Expect::Clean => "clean",
        _ => "found",
    }
}
