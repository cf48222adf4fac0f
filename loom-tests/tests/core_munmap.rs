//! The core model's first race under every engine: a lockless walker against
//! munmap freeing pages and page tables, in both arch modes, with the mutations
//! that break the walker's side of the protocol.

use gupcheck_model::scenario::{fault_vs_lockless_walker, munmap_vs_lockless_walker};
use gupcheck_model::{run, Arch, Engine, Invariant, Mutation, Outcome, Scenario};

const LOOM_BOUND: Option<usize> = Some(2);
const SHUTTLE_ITERS: usize = 3_000;

fn engines() -> Vec<Engine> {
    vec![
        Engine::Loom {
            preemption_bound: LOOM_BOUND,
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
    ]
}

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
fn munmap_vs_walker_is_clean_in_both_arch_modes() {
    let sc = munmap_vs_lockless_walker();
    for arch in Arch::ALL {
        for e in engines() {
            assert_clean(&go(&sc, arch, &[], &e));
        }
    }
}

#[test]
fn fault_vs_walker_is_clean_in_both_arch_modes() {
    let sc = fault_vs_lockless_walker();
    for arch in Arch::ALL {
        for e in engines() {
            assert_clean(&go(&sc, arch, &[], &e));
        }
    }
}

/// Which engines found `m` in `arch`, and the invariant each reported.
fn finders(arch: Arch, m: Mutation) -> Vec<(String, Invariant)> {
    let sc = munmap_vs_lockless_walker();
    engines()
        .iter()
        .filter_map(|e| {
            let o = go(&sc, arch, &[m], e);
            o.failure.map(|f| (o.engine, f.violation.invariant))
        })
        .collect()
}

#[test]
fn walker_skipping_registration_walks_a_freed_table_under_rcu_and_ipi() {
    for arch in Arch::ALL {
        let found = finders(arch, Mutation::WalkerSkipsRegistration);
        assert!(
            !found.is_empty(),
            "no engine found the unregistered walker under {arch:?}"
        );
        assert!(
            found
                .iter()
                .all(|(_, inv)| *inv == Invariant::NoUseAfterFree),
            "{found:?}"
        );
    }
}

#[test]
fn plain_get_page_is_safe_under_ipi_and_a_resurrection_under_rcu() {
    let under_rcu = finders(Arch::Rcu, Mutation::WalkerPlainGet);
    assert!(!under_rcu.is_empty(), "plain get_page not caught under RCU");
    // A freed page (resurrection) or one freed and already reused (use after free).
    assert!(under_rcu
        .iter()
        .all(|(_, inv)| matches!(inv, Invariant::NoResurrection | Invariant::NoUseAfterFree)));
    // Under IPI the flush waits for the walker, so get_page cannot see a free page.
    assert_eq!(finders(Arch::Ipi, Mutation::WalkerPlainGet), vec![]);
}

/// An ordering-only mutation: loom sees the missing barrier; shuttle, which is
/// sequentially consistent, cannot, whatever the schedule.
#[test]
fn missing_registration_barrier_is_found_by_loom_only() {
    let sc = munmap_vs_lockless_walker();
    let m = [Mutation::WalkerRegistrationNoBarrier];
    for arch in Arch::ALL {
        let o = go(
            &sc,
            arch,
            &m,
            &Engine::Loom {
                preemption_bound: LOOM_BOUND,
            },
        );
        let f = o.failure.expect("loom must find the missing barrier");
        assert_eq!(f.violation.invariant, Invariant::NoUseAfterFree);
        for e in &engines()[1..] {
            assert_clean(&go(&sc, arch, &m, e));
        }
    }
}

#[test]
fn loom_exploration_is_deterministic() {
    let sc = munmap_vs_lockless_walker();
    let e = Engine::Loom {
        preemption_bound: LOOM_BOUND,
    };
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
    let e = Engine::ShuttlePct {
        iterations: SHUTTLE_ITERS,
        depth: 3,
        seed: 11,
    };
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
