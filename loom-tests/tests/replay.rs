//! Failure artifacts replay exactly: a shuttle failure from its recorded
//! decisions, 100 times out of 100; a loom failure by bound and iteration.

use gupcheck_loom_tests::{pct, LOOM_BOUND_2, SHUTTLE_ITERS};
use gupcheck_model::harness::artifact::Artifact;
use gupcheck_model::harness::scenario::{gup_fast_vs_munmap, munmap_vs_lockless_walker};
use gupcheck_model::{run, Arch, Engine, Failure, Mutation, PresetId, Scenario};

/// PCT's failure on GUP-fast against munmap without its PTE recheck.
fn skipped_recheck() -> (Scenario, [Mutation; 1], Engine, Failure) {
    let sc = gup_fast_vs_munmap();
    let m = [Mutation::SkipPteRecheck];
    let engine = pct(5);
    let o = run(&sc, &sc.config(Arch::Rcu, &m), &engine).unwrap();
    let f = o.failure.expect("PCT finds the skipped recheck");
    (sc, m, engine, f)
}

#[test]
fn a_shuttle_artifact_replays_the_same_violation_100_times() {
    let (sc, m, engine, f) = skipped_recheck();
    assert!(f.schedule.as_ref().is_some_and(|s| !s.tasks.is_empty()));
    let art = Artifact::new(&sc, PresetId::Latest, Arch::Rcu, &m, &engine, f.clone());
    // Through JSON, as a file would carry it.
    let art = Artifact::parse(&serde_json::to_string(&art).unwrap()).unwrap();
    for i in 0..100 {
        let (o, same) = art.replay().unwrap();
        assert!(same, "replay {i} did not reproduce");
        let g = o.failure.unwrap();
        assert_eq!(g.violation, f.violation, "replay {i}");
        assert_eq!(g.trace, f.trace, "replay {i}: a different interleaving");
    }
}

#[test]
fn a_replay_of_the_fixed_protocol_does_not_reproduce() {
    let (sc, _, engine, f) = skipped_recheck();
    // The same schedule against the protocol with its recheck.
    let art = Artifact::new(&sc, PresetId::Latest, Arch::Rcu, &[], &engine, f);
    let (o, same) = art.replay().unwrap();
    assert!(!same && o.failure.is_none());
}

#[test]
fn a_loom_artifact_replays_by_bound_and_iteration() {
    let sc = munmap_vs_lockless_walker();
    let m = [Mutation::WalkerSkipsRegistration];
    let engine = LOOM_BOUND_2;
    let f = run(&sc, &sc.config(Arch::Rcu, &m), &engine)
        .unwrap()
        .failure
        .unwrap();
    let art = Artifact::new(&sc, PresetId::Latest, Arch::Rcu, &m, &engine, f.clone());
    let (o, same) = art.replay().unwrap();
    assert!(same);
    assert_eq!(o.failure.unwrap().iteration, f.iteration);
}

#[test]
fn malformed_artifacts_are_refused_in_one_line() {
    for bad in ["", "{", "[]", r#"{"format": 99}"#, "not json"] {
        let e = Artifact::parse(bad).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn minimisation_keeps_the_violation_with_no_more_switches() {
    use gupcheck_model::harness::engine::{minimise, replay_shuttle, switches};
    let sc = gupcheck_model::harness::scenario::gup_unlocked_vs_munmap();
    let m = [Mutation::StaleVmaAfterRetry];
    let cfg = sc.config(Arch::Rcu, &m);
    let engine = Engine::ShuttleRandom {
        iterations: SHUTTLE_ITERS,
        seed: 1,
    };
    let f = run(&sc, &cfg, &engine).unwrap().failure.expect("found");
    let min = minimise(&sc, &cfg, &f, 200).unwrap();
    assert_eq!(min.switches_before, switches(f.schedule.as_ref().unwrap()));
    assert!(min.switches_after <= min.switches_before);
    assert!(
        min.switches_after < min.switches_before,
        "this schedule has slack to remove"
    );
    let o = replay_shuttle(&sc, &cfg, min.failure.schedule.as_ref().unwrap()).unwrap();
    assert_eq!(
        o.failure.unwrap().violation.invariant,
        f.violation.invariant
    );
}

#[test]
fn byte_schedules_find_races_and_their_failures_replay() {
    use gupcheck_model::harness::engine::{replay_shuttle, run_bytes};
    let sc = gupcheck_model::harness::scenario::gup_unlocked_vs_munmap();
    let m = [Mutation::StaleVmaAfterRetry];
    let cfg = sc.config(Arch::Rcu, &m);
    // Empty input: the fair fallback runs each thread to completion, no race.
    assert!(run_bytes(&sc, &cfg, &[]).unwrap().failure.is_none());
    // Search byte strings until one schedules the race (fuzzing does this with
    // coverage guidance). Runs of one value keep one task running, as a fuzzer's
    // repeated-byte mutations do.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let found = (0..2_000).find_map(|_| {
        let mut bytes = Vec::new();
        for _ in 0..4 {
            let r = next();
            bytes.extend(std::iter::repeat_n(r as u8, (r >> 8) as usize % 48 + 1));
        }
        run_bytes(&sc, &cfg, &bytes).unwrap().failure
    });
    let f = found.expect("some byte string schedules the race");
    let o = replay_shuttle(&sc, &cfg, f.schedule.as_ref().unwrap()).unwrap();
    assert_eq!(o.failure.unwrap().violation, f.violation);
}

#[test]
fn a_loom_artifact_that_searched_past_a_known_open_outcome_replays() {
    let sc = gupcheck_model::harness::scenario::gup_fast_vs_page_mkclean();
    let m = [Mutation::SkipPteRecheck];
    let engine = LOOM_BOUND_2;
    let mut cfg = sc.config(Arch::Rcu, &m);
    cfg.tolerate = vec![gupcheck_model::Invariant::NoLostWrite];
    let o = run(&sc, &cfg, &engine).unwrap();
    assert!(o.tolerated > 0, "the known-open outcome came first");
    let f = o.failure.expect("loom finds the skipped recheck past it");
    assert_eq!(
        f.violation.invariant,
        gupcheck_model::Invariant::PinThroughWritablePte
    );
    let art = Artifact::new(&sc, PresetId::Latest, Arch::Rcu, &m, &engine, f.clone())
        .tolerating(&cfg.tolerate);
    let art = Artifact::parse(&serde_json::to_string(&art).unwrap()).unwrap();
    let (o, same) = art.replay().unwrap();
    assert!(same, "replayed {:?}", o.failure.map(|g| g.violation));
    // Without what it searched past, the replay stops at the known-open one.
    let (_, same) = art.tolerating(&[]).replay().unwrap();
    assert!(!same);
}

/// Artifacts `gupcheck stress` found that were errors of the harness: each must
/// now replay clean. `pin-during-munmap`: GUP-fast pinned a page a munmap then
/// zapped; the pin's "unmapped by its owner since" was read after the call, so
/// the store through the address that munmap and mmap had renewed counted as
/// an incoherent pin. `pin-check-during-munmap`: cow.c's pin check read that
/// generation before its own store, which a munmap and mmap then overtook.
/// `child-writes-shared-file`: a fork child stored into a MAP_SHARED file page
/// and the parent's private mapping of the file copied it on a write fault;
/// what goes into the page cache belongs to the file, not to a leak.
#[test]
fn stress_regressions_replay_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions/stress");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("the stress regressions") {
        let path = e.unwrap().path();
        let art =
            gupcheck_model::harness::artifact::Artifact::load(&path).expect("a valid artifact");
        let (o, _) = art.replay().expect("replays");
        assert!(
            o.failure.is_none(),
            "{}: {:?}",
            path.display(),
            o.failure.map(|f| f.violation)
        );
        n += 1;
    }
    assert!(n > 0);
}

/// `gupcheck stress` (seed 2) read a child's post-fork write through a FOLL_GET
/// reference of a hugetlb folio: hugetlb_wp() reuses by mapcount, the kernel
/// behaviour upstream cow.c marks XFAIL. It is `hugetlb get leak`, a known-open
/// class the fuzzers and stress search past, never `no leak after fork`.
#[test]
fn a_leak_through_a_hugetlb_get_is_its_own_known_open_class() {
    use gupcheck_model::harness::fuzzing::KNOWN_OPEN;
    use gupcheck_model::invariant::Invariant;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/regressions/stress/hugetlb-get-leak.json");
    let art = gupcheck_model::harness::artifact::Artifact::load(&path).unwrap();
    let (o, _) = art.clone().tolerating(&[]).replay().unwrap();
    let v = o.failure.expect("the leak").violation;
    assert_eq!(v.invariant, Invariant::HugetlbGetLeak, "{v:?}");
    assert!(KNOWN_OPEN.contains(&Invariant::HugetlbGetLeak));
    let (o, _) = art.tolerating(&KNOWN_OPEN).replay().unwrap();
    assert!(o.failure.is_none(), "{:?}", o.failure.map(|f| f.violation));
}
