//! The expectation matrix, run: every entry of `model/expectations.json` under
//! loom (bound 2 for the design-card race scenarios, THP collapse, the
//! ordering-only mutations and the races only loom finds, bound 1 for the
//! rest), shuttle random, PCT at depths 1 to 3, DFS up
//! to a maximum (clean entries), and real threads. `clean` entries fail on any
//! violation; `found` / `known-open` entries fail if the engines stop finding
//! them, or if an engine expected to miss an ordering-only bug finds it or never
//! reaches its race window.

use gupcheck_model::harness::expect;

use gupcheck_model::harness::expect::Entry;
use gupcheck_model::Engine;

const SHUTTLE_ITERS: usize = 3_000;
const DFS_MAX: usize = 2_000;
const STD_ITERS: usize = 100;

fn engines(e: &Entry) -> Vec<Engine> {
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

fn check(filter: impl Fn(&Entry) -> bool) {
    let entries: Vec<Entry> = expect::matrix().into_iter().filter(|e| filter(e)).collect();
    assert!(!entries.is_empty(), "no matrix entry selected");
    let mut bad = Vec::new();
    for e in &entries {
        let ev = expect::evaluate(e, &engines(e)).expect("matrix entries fit their worlds");
        if let Err(why) = ev.verdict {
            bad.push(format!("{}: {why}", e.label()));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} entries disagree:\n{}",
        bad.len(),
        entries.len(),
        bad.join("\n")
    );
}

#[test]
fn clean_entries_stay_clean() {
    check(|e| e.invariant().is_none());
}

#[test]
fn found_entries_are_found_by_the_engines_that_must() {
    check(|e| e.invariant().is_some());
}
