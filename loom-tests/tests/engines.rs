//! Engine properties on the core model's first race (a lockless walker against
//! munmap): loom explores deterministically, shuttle failures replay from their
//! seed, real threads run it clean. What each engine must find is the matrix's
//! business (matrix.rs).

use gupcheck_loom_tests::{pct, LOOM_BOUND_2};
use gupcheck_model::harness::scenario::munmap_vs_lockless_walker;
use gupcheck_model::{run, Arch, Engine, Invariant, Mutation, Outcome, Scenario};

fn go(sc: &Scenario, arch: Arch, muts: &[Mutation], e: &Engine) -> Outcome {
    run(sc, &sc.config(arch, muts), e).expect("scenario fits its world")
}

fn assert_clean(o: &Outcome) {
    assert!(o.iterations > 0, "{} ran nothing", o.engine);
    if let Some(f) = &o.failure {
        panic!(
            "{} {} on {}: unexpected violation at iteration {}: {}",
            o.scenario, o.engine, o.arch, f.iteration, f.violation
        );
    }
}

#[test]
fn loom_exploration_is_deterministic() {
    let sc = munmap_vs_lockless_walker();
    let e = LOOM_BOUND_2;
    let a = go(&sc, Arch::Rcu, &[], &e);
    let b = go(&sc, Arch::Rcu, &[], &e);
    assert!(a.iterations > 1);
    assert_eq!(a.iterations, b.iterations);
    // And a failing run fails at the same iteration with the same trace.
    let m = [Mutation::WalkerSkipsRegistration];
    let x = go(&sc, Arch::Rcu, &m, &e).failure.expect("found");
    let y = go(&sc, Arch::Rcu, &m, &e).failure.expect("found");
    assert_eq!(x.iteration, y.iteration);
    assert_eq!(x.trace, y.trace);
}

#[test]
fn shuttle_failures_replay_from_the_seed() {
    let sc = munmap_vs_lockless_walker();
    let e = pct(11);
    let m = [Mutation::WalkerSkipsRegistration];
    let x = go(&sc, Arch::Ipi, &m, &e).failure.expect("found");
    let y = go(&sc, Arch::Ipi, &m, &e).failure.expect("found");
    assert_eq!((x.iteration, &x.trace), (y.iteration, &y.trace));
}

#[test]
fn real_threads_run_the_scenario_clean() {
    let sc = munmap_vs_lockless_walker();
    for arch in Arch::ALL {
        assert_clean(&go(&sc, arch, &[], &Engine::Std { iterations: 200 }));
    }
}

/// A lost wake-up is a `progress` finding that says what each stuck thread
/// waits on, with the trace up to the deadlock, under both model checkers.
#[test]
fn a_deadlock_names_the_stuck_threads_and_keeps_its_trace() {
    let sc = gupcheck_model::harness::scenario::by_name("store_vs_writeback").unwrap();
    for e in [LOOM_BOUND_2, pct(3)] {
        let f = go(&sc, Arch::Ipi, &[Mutation::UnlockNoWake], &e)
            .failure
            .unwrap_or_else(|| panic!("{e:?}: the lost wake-up not found"));
        assert_eq!(f.violation.invariant, Invariant::Progress, "{e:?}");
        assert!(
            f.violation.detail.contains("stuck: thread")
                && f.violation.detail.contains("sleeping on PG_locked"),
            "{e:?}: {}",
            f.violation.detail
        );
        let last = f.trace.last().expect("the trace up to the deadlock");
        assert!(
            f.trace.iter().any(|s| s.name == "folio_unlock"),
            "{e:?}: the unlock that lost the wake-up is in the trace"
        );
        assert!(last.seq > 0);
    }
}
