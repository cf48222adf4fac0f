//! The expectation matrix, run: every entry of `model/expectations.json` under
//! loom (bound 2), shuttle random and PCT, and real threads. `clean` entries fail
//! on any violation; `found` / `known-open` entries fail if the engines stop
//! finding them, or if an engine expected to miss an ordering-only bug finds it.

use gupcheck_model::expect::{self, Entry};
use gupcheck_model::Engine;

const LOOM_BOUND: usize = 2;
const SHUTTLE_ITERS: usize = 3_000;
const STD_ITERS: usize = 100;

fn engines() -> Vec<Engine> {
    vec![
        Engine::Loom {
            preemption_bound: Some(LOOM_BOUND),
        },
        Engine::ShuttleRandom {
            iterations: SHUTTLE_ITERS,
            seed: 7,
        },
        Engine::ShuttlePct {
            iterations: SHUTTLE_ITERS,
            depth: 3,
            seed: 7,
        },
        Engine::Std {
            iterations: STD_ITERS,
        },
    ]
}

fn check(filter: impl Fn(&Entry) -> bool) {
    let entries: Vec<Entry> = expect::matrix().into_iter().filter(|e| filter(e)).collect();
    assert!(!entries.is_empty(), "no matrix entry selected");
    let mut bad = Vec::new();
    for e in &entries {
        let ev = expect::evaluate(e, &engines()).expect("matrix entries fit their worlds");
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
