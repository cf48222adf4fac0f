//! The fuzz targets on stable, without cargo-fuzz: the checked-in seed corpus
//! (`corpus/<target>/`) and every regression (`corpus/regressions/<target>/`,
//! each with a `.note` naming what it broke) replay here, and a few thousand
//! pseudo-random inputs per target find nothing outside the known-open.

use arbitrary::{Arbitrary, Unstructured};
use gupcheck_model::harness::fuzzing::{
    replay_dir, run_contract, run_threads, ContractOp, Target, KNOWN_OPEN,
};
use gupcheck_model::harness::ops::Op;
use gupcheck_model::{Arch, PresetId};
use std::path::Path;

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `n` arbitrary values from pseudo-random bytes.
fn many<T: for<'a> Arbitrary<'a>>(seed: u64, n: usize) -> Vec<T> {
    let data = bytes(seed, 64 * n);
    let mut u = Unstructured::new(&data);
    (0..n).filter_map(|_| T::arbitrary(&mut u).ok()).collect()
}

#[test]
fn random_inputs_find_nothing_in_the_latest_preset() {
    for seed in 0..3000u64 {
        let ops: Vec<ContractOp> = many(seed + 1, 24);
        if let Err(f) = run_contract(&ops, PresetId::Latest) {
            panic!("ops seed {seed}: {f}\n{ops:?}");
        }
    }
    for seed in 0..300u64 {
        let threads = vec![many::<Op>(2 * seed + 1, 12), many::<Op>(2 * seed + 2, 12)];
        let schedule = bytes(seed + 7, 512);
        if let Some(f) = run_threads(
            Target::Interleave,
            PresetId::Latest,
            Arch::Rcu,
            &[],
            &KNOWN_OPEN,
            threads.clone(),
            &schedule,
        ) {
            panic!("interleave seed {seed}: {f}\n{threads:?}");
        }
    }
}

/// The reference is independent of the model and can fail: it describes the
/// latest release, so it agrees with 5.7 (the bias arrived then) and disagrees
/// with the seed patch, where a pin is a plain reference, though the model is
/// consistent there.
#[test]
fn the_contract_tells_a_release_without_the_pin_bias() {
    let pin = ContractOp::Gup {
        fast: true,
        pin: true,
        page: 1,
        nr: 2,
        write: true,
        longterm: false,
    };
    let ops = [pin, ContractOp::Release { handle: 0 }];
    assert!(run_contract(&ops, PresetId::Latest).is_ok());
    assert!(run_contract(&ops, PresetId::V5_7).is_ok());
    let f = run_contract(&ops, PresetId::Seed).expect_err("the contract sees it");
    assert!(f.detail.contains("refcount"), "{f}");
    // And the random sweep exercises the calls it checks.
    let mut taken = 0;
    for seed in 0..200u64 {
        let ops: Vec<ContractOp> = many(seed + 1, 24);
        taken += ops
            .iter()
            .filter(|o| matches!(o, ContractOp::Gup { .. }))
            .count();
    }
    assert!(taken > 500, "{taken} GUP calls in 200 sequences");
}

/// MADV_PAGEOUT of a page a FOLL_GET holds: the reference follows it into the
/// swap cache and back, and agrees with the latest preset (the swap-cache page
/// comes back exclusive, 1493a1913e34), not with 5.11, where the store after
/// the load copies it (the page_count reuse rule); then the page, released,
/// goes to its slot and a store reads it back into a fresh page.
#[test]
fn the_contract_follows_a_held_page_through_the_swap_cache() {
    let ops = [
        ContractOp::Gup {
            fast: true,
            pin: false,
            page: 1,
            nr: 1,
            write: true,
            longterm: false,
        },
        ContractOp::Pageout { page: 1 },
        ContractOp::Touch {
            page: 1,
            write: false,
        },
        ContractOp::Touch {
            page: 1,
            write: true,
        },
        ContractOp::Release { handle: 0 },
        ContractOp::Pageout { page: 1 },
        ContractOp::Touch {
            page: 1,
            write: true,
        },
        ContractOp::Munmap { region: 0 },
    ];
    if let Err(f) = run_contract(&ops, PresetId::Latest) {
        panic!("{f}");
    }
    // 5.11's store (op 3) copies the page away from the swap cache and the
    // reference: its mapping's reference is gone from the frame.
    let f = run_contract(&ops, PresetId::V5_11).expect_err("the contract sees the copy");
    assert!(f.detail.starts_with("op 3 "), "{f}");
    // And the random sweep pages out.
    let pageouts: usize = (0..200u64)
        .map(|seed| {
            many::<ContractOp>(seed + 1, 24)
                .iter()
                .filter(|o| matches!(o, ContractOp::Pageout { .. }))
                .count()
        })
        .sum();
    assert!(pageouts > 300, "{pageouts} pageouts in 200 sequences");
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_seed_corpus_replays_clean() {
    for t in Target::ALL {
        let dir = root().join("corpus").join(t.name());
        let runs = replay_dir(t, &dir).unwrap();
        assert!(!runs.is_empty(), "corpus/{} is empty", t.name());
        for (name, finding) in runs {
            // presets inputs choose their own preset: findings there are the
            // point, as long as they are what the matrix expects of that preset.
            if t != Target::Presets {
                assert!(
                    finding.is_none(),
                    "corpus/{}/{name}: {}",
                    t.name(),
                    finding.unwrap()
                );
            }
        }
    }
}

/// Each regression input still behaves as its note says: `clean` (a model
/// error since fixed) or the invariant a preset without a fix breaks.
#[test]
fn regressions_replay_as_their_notes_say() {
    for t in Target::ALL {
        let dir = root().join("corpus/regressions").join(t.name());
        for (name, finding) in replay_dir(t, &dir).unwrap() {
            let note = std::fs::read_to_string(dir.join(format!("{name}.note")))
                .unwrap_or_else(|_| panic!("regressions/{}/{name} has no .note", t.name()));
            let want = note.lines().next().unwrap_or("").trim();
            let want = want.split(':').next().unwrap_or("").trim();
            match (want, finding) {
                ("clean", None) => {}
                ("clean", Some(f)) => panic!("regressions/{}/{name}: {f}", t.name()),
                (inv, Some(f)) if f.invariant.to_string() == inv => {}
                (inv, f) => panic!(
                    "regressions/{}/{name}: expected {inv}, got {:?}",
                    t.name(),
                    f.map(|f| f.to_string())
                ),
            }
        }
    }
}
