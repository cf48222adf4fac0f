//! The historical bugs the fork and COW actors reach (KERNEL.md §7), each as
//! (scenario, the preset without the fix, the preset with it): the first is
//! found with the invariant the bug breaks and its artifact replays, the
//! second is clean under the same engine.

use gupcheck_loom_tests::{pct, LOOM_BOUND_2};
use gupcheck_model::harness::artifact::Artifact;
use gupcheck_model::harness::scenario::by_name;
use gupcheck_model::{run, Arch, Engine, Invariant, Mutation, Outcome, PresetId, Scenario};

use PresetId::*;

struct Bug {
    id: &'static str,
    scenario: &'static str,
    broken: PresetId,
    fixed: PresetId,
    mutation: Option<Mutation>,
    invariant: Invariant,
}

const BUGS: [Bug; 8] = [
    Bug {
        id: "#4 GUP-fast vs fork (57efa1fe5957)",
        scenario: "gup_fast_vs_fork",
        broken: V5_10,
        fixed: V5_11,
        mutation: None,
        invariant: Invariant::CoherentPin,
    },
    Bug {
        id: "#9 CVE-2020-29374 vmsplice + fork (17839856fd58)",
        scenario: "vmsplice_fork",
        broken: V5_7,
        fixed: V5_8,
        mutation: None,
        invariant: Invariant::NoLeakAfterFork,
    },
    Bug {
        id: "#10 vmsplice + fork on a THP (\"COW fixes part 1\", 5.18)",
        scenario: "vmsplice_fork_thp",
        broken: V5_11,
        fixed: V6_1,
        mutation: None,
        invariant: Invariant::NoLeakAfterFork,
    },
    Bug {
        id: "#10 as one feature delta: THP reuse by mapcount",
        scenario: "vmsplice_fork_thp",
        broken: Latest,
        fixed: Latest,
        mutation: Some(Mutation::ThpReuseByMapcount),
        invariant: Invariant::NoLeakAfterFork,
    },
    Bug {
        id: "#12 clear_refs on pinned pages (9348b73c2e1b, then 6c287605fd56)",
        scenario: "clear_refs_on_pinned",
        broken: V5_10,
        fixed: V6_1,
        mutation: None,
        invariant: Invariant::CoherentPin,
    },
    Bug {
        id: "#13 DIO with FOLL_GET across fork",
        scenario: "fork_with_dma_in_flight",
        broken: Latest,
        fixed: Latest,
        mutation: Some(Mutation::DioUsesFollGet),
        invariant: Invariant::CoherentPin,
    },
    Bug {
        id: "#16 zero-page pins overflow its count (c8070b787519)",
        scenario: "zero_page_pin",
        broken: V6_1,
        fixed: Latest,
        mutation: None,
        invariant: Invariant::RefcountBounds,
    },
    Bug {
        id: "fork of a pinned page before 5.9 (70e806e4e645)",
        scenario: "fork_with_dma_in_flight",
        broken: V5_8,
        fixed: V5_10,
        mutation: None,
        invariant: Invariant::CoherentPin,
    },
];

/// PCT's seed in every shuttle case here.
const SEED: u64 = 11;

/// `sc` on `preset`, `arch` and `muts` under `engine` breaks `invariant`, and
/// the failure's artifact, through JSON as a file carries it, replays it
/// `replays` times. `bug` heads a failure.
fn found_and_replays(
    bug: &str,
    sc: &Scenario,
    (preset, arch, muts): (PresetId, Arch, &[Mutation]),
    engine: &Engine,
    invariant: Invariant,
    replays: usize,
) {
    let what = format!("{bug}: {} ({}, {arch:?}, {muts:?})", sc.name, preset.name());
    let o = run(sc, &sc.config_for(preset, arch, muts), engine).unwrap();
    let f = o
        .failure
        .unwrap_or_else(|| panic!("{what}: {} did not find it", engine.name()));
    assert_eq!(f.violation.invariant, invariant, "{what}");
    let art = Artifact::new(sc, preset, arch, muts, engine, f);
    let art = Artifact::parse(&serde_json::to_string(&art).unwrap()).unwrap();
    for _ in 0..replays {
        let (_, same) = art.replay().unwrap();
        assert!(same, "{what}: the artifact did not replay");
    }
}

/// `sc` on `preset`, `arch` and `muts` is clean under `engine`.
fn clean(
    bug: &str,
    sc: &Scenario,
    (preset, arch, muts): (PresetId, Arch, &[Mutation]),
    engine: &Engine,
) -> Outcome {
    let o = run(sc, &sc.config_for(preset, arch, muts), engine).unwrap();
    assert!(
        o.failure.is_none(),
        "{bug}: {} ({}, {arch:?}, {muts:?}) under {}: {:?}",
        sc.name,
        preset.name(),
        engine.name(),
        o.failure.map(|f| f.violation)
    );
    o
}

/// The fixed protocol, as the kernel has it now, is clean in both arch modes.
fn latest_is_clean(bug: &str, sc: &Scenario, engine: &Engine) {
    for arch in Arch::ALL {
        clean(bug, sc, (Latest, arch, &[]), engine);
    }
}

#[test]
fn each_bug_is_found_without_its_fix_replays_and_is_clean_with_it() {
    for b in &BUGS {
        let sc = by_name(b.scenario).unwrap();
        let muts: Vec<Mutation> = b.mutation.into_iter().collect();
        // A bug given as a mutation is fixed by dropping the mutation.
        let fixed_muts: &[Mutation] = if b.broken == b.fixed { &[] } else { &muts };
        for arch in Arch::ALL {
            found_and_replays(
                b.id,
                &sc,
                (b.broken, arch, &muts),
                &pct(SEED),
                b.invariant,
                10,
            );
            clean(b.id, &sc, (b.fixed, arch, fixed_muts), &pct(SEED));
        }
    }
}

/// 088b8aa537c2 (6.1), an ordering bug: only loom finds it, under RCU table
/// freeing (arm64's relaxed `ptep_get_and_clear`), and its artifact replays by
/// bound and iteration.
#[test]
fn the_anon_exclusive_barriers_are_found_by_loom_and_replay() {
    const BUG: &str = "088b8aa537c2 (anon-exclusive barriers)";
    let sc = by_name("ksm_share_vs_ro_pin").unwrap();
    let v6_0 = (V6_0, Arch::Rcu, &[][..]);
    found_and_replays(BUG, &sc, v6_0, &LOOM_BOUND_2, Invariant::PinnedIsVisible, 1);
    for preset in [V6_1, Latest] {
        clean(BUG, &sc, (preset, Arch::Rcu, &[]), &LOOM_BOUND_2);
    }
    let o = clean(BUG, &sc, v6_0, &pct(SEED));
    assert!(o.window_hits > 0, "PCT reaches the window and misses it");
}

/// The store buffering of fork's `write_protect_seq` increment (ordered by
/// `smp_wmb()` only) against GUP-fast's fully ordered pin and re-read, still
/// open upstream: loom finds it on the latest preset (the mm's first pin, a
/// PMD-mapped and a PTE-mapped THP, a hugetlb folio) and its artifact replays by bound and
/// iteration, while PCT reaches the window and misses it. On a small folio of
/// an mm that has pinned it is 5.11's, closed in 5.19 by fb3d824d1a46.
#[test]
fn fork_store_buffering_is_found_by_loom_and_replays() {
    const BUG: &str = "fork's write_protect_seq store buffering";
    let loom = Engine::Loom {
        preemption_bound: Some(1),
    };
    for name in [
        "gup_fast_vs_fork",
        "gup_fast_vs_fork_thp",
        "gup_fast_vs_fork_thp_pte",
        "gup_fast_vs_fork_hugetlb",
    ] {
        let sc = by_name(name).unwrap();
        let latest = (Latest, Arch::Rcu, &[][..]);
        found_and_replays(BUG, &sc, latest, &loom, Invariant::CoherentPin, 1);
        let o = clean(BUG, &sc, latest, &pct(SEED));
        assert!(o.window_hits > 0, "{name}: PCT reaches the window");
    }
    let sc = by_name("gup_fast_vs_fork_pinned_mm").unwrap();
    let v5_11 = (V5_11, Arch::Rcu, &[][..]);
    found_and_replays(BUG, &sc, v5_11, &loom, Invariant::CoherentPin, 1);
    clean(BUG, &sc, (V6_0, Arch::Rcu, &[]), &loom);
}

/// Bugs #6 and #7 (THP collapse against GUP-fast), under RCU table freeing,
/// where the collapse's flush does not wait for the walker: each found on
/// 6.1, before collapse synced with walkers, without its fix (the PMD recheck,
/// by loom; the sync itself, by PCT, sequentially consistent: loom finds the
/// missing sync's store buffering first), replayed, and clean with it. Since
/// the sync, which comes before the refcount check, the PMD recheck is
/// redundant for anonymous collapse: latest without it is clean.
#[test]
fn collapse_bugs_are_found_without_their_fixes_and_replay() {
    const BUG: &str = "#6/#7 THP collapse vs GUP-fast";
    let sc = by_name("gup_fast_vs_thp_collapse").unwrap();
    let cases: [(PresetId, &[Mutation], Invariant, Engine); 2] = [
        (
            V6_1,
            &[Mutation::NoPmdRecheck],
            Invariant::CoherentPin,
            LOOM_BOUND_2,
        ),
        (V6_1, &[], Invariant::NoUseAfterFree, pct(SEED)),
    ];
    for (preset, muts, invariant, engine) in cases {
        found_and_replays(BUG, &sc, (preset, Arch::Rcu, muts), &engine, invariant, 1);
    }
    let synced = (Latest, Arch::Rcu, &[Mutation::NoPmdRecheck][..]);
    clean(BUG, &sc, synced, &LOOM_BOUND_2);
    latest_is_clean(BUG, &sc, &LOOM_BOUND_2);
}

/// c24d37322548 (5.13, GUP-fast vs `split_huge_page`): under RCU table
/// freeing nothing stops a split from running whole between GUP-fast's read of
/// the head and its grab; the split restores the same PTE, so only the
/// recheck of `page_folio(page)` catches the reference landing on the old
/// head. Found by PCT without the recheck (5.11; latest with
/// `no_head_recheck`), replayed, clean with it; under IPI the split's flush
/// waits for the walker, so every preset is clean. On 5.11 the THP was pinned
/// with its exact count (no bias), and the unpin of the tail, a base page by
/// then, subtracts the bias: at this seed its count goes below zero first.
#[test]
fn the_split_head_recheck_bug_is_found_under_rcu_and_replays() {
    const BUG: &str = "c24d37322548 (split head recheck)";
    let sc = by_name("gup_fast_vs_thp_split").unwrap();
    let cases: [(PresetId, &[Mutation], Invariant); 2] = [
        (V5_11, &[], Invariant::RefcountBounds),
        (
            Latest,
            &[Mutation::NoHeadRecheck],
            Invariant::MatchedRelease,
        ),
    ];
    for (preset, muts, invariant) in cases {
        let rcu = (preset, Arch::Rcu, muts);
        found_and_replays(BUG, &sc, rcu, &pct(SEED), invariant, 1);
        clean(BUG, &sc, (preset, Arch::Ipi, muts), &pct(SEED));
    }
    latest_is_clean(BUG, &sc, &pct(SEED));
}

/// Migration against a long-term pin: GUP-fast's PTE recheck is what keeps a
/// pin taken after compaction's reference check off the old page under RCU;
/// loom finds the lost pin without it, and latest is clean in both modes.
#[test]
fn migration_needs_the_pte_recheck_under_rcu() {
    const BUG: &str = "migration vs a long-term pin";
    let sc = by_name("pin_longterm_vs_migration").unwrap();
    let skip = (Latest, Arch::Rcu, &[Mutation::SkipPteRecheck][..]);
    found_and_replays(BUG, &sc, skip, &LOOM_BOUND_2, Invariant::CoherentPin, 1);
    latest_is_clean(BUG, &sc, &LOOM_BOUND_2);
}
