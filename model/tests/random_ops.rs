//! Arbitrary op sequences, decoded from pseudo-random bytes the way a fuzzer's
//! would be: decoding never panics, no op panics in any preset, and the latest
//! preset reports no violation (every release the interpreter makes is the
//! matching one, so a violation there would be a model bug). Two threads under
//! shuttle too.

use arbitrary::{Arbitrary, Unstructured};
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::Invariant;
use gupcheck_model::{run, Arch, Engine, PresetId};

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn ops(seed: u64) -> Vec<Op> {
    let b = bytes(seed, 512);
    let mut u = Unstructured::new(&b);
    (0..24)
        .map_while(|_| Op::arbitrary(&mut u).ok())
        .map(|mut op| {
            // Most raw addresses land in the layout (32 pages), some anywhere.
            if let Op::GupRaw {
                start, nr_pages, ..
            } = &mut op
            {
                if *start % 4 != 0 {
                    *start %= 32 * 4096;
                    *nr_pages %= 40;
                }
            }
            op
        })
        .collect()
}

fn scenario(threads: Vec<Vec<Op>>) -> Scenario {
    random_world(threads, false)
}

/// The same, plus files: a cached dirty iomap file mapped shared, and a
/// buffer-head file on disk only, mapped shared and private; with the
/// MMU-notifier driver.
fn file_scenario(threads: Vec<Vec<Op>>) -> Scenario {
    random_world(threads, true)
}

/// What the latest preset may report with files: the gup+DMA outcomes the
/// kernel never fixed (`known-open`), nothing else.
use gupcheck_model::harness::fuzzing::{random_world, KNOWN_OPEN};

/// Runs `sc` in `preset` / `arch` (past `tolerate`) and, for the latest preset,
/// insists on no violation.
fn check(
    sc: &Scenario,
    preset: PresetId,
    arch: Arch,
    tolerate: &[Invariant],
    e: &Engine,
    seed: u64,
) {
    let mut cfg = sc.config_for(preset, arch, &[]);
    cfg.tolerate = tolerate.to_vec();
    let o = run(sc, &cfg, e).expect("layout fits");
    if preset == PresetId::Latest {
        assert!(
            o.failure.is_none(),
            "seed {seed} {arch:?}: {:?}\nops: {:?}",
            o.failure.map(|f| f.violation),
            sc.threads
        );
    }
}

const ONE_RUN: Engine = Engine::Std { iterations: 1 };

fn shuttle(seed: u64) -> Engine {
    Engine::ShuttleRandom {
        iterations: 20,
        seed,
    }
}

#[test]
fn one_thread_any_preset_never_panics_and_latest_stays_clean() {
    for seed in 0..2000u64 {
        let sc = scenario(vec![ops(seed)]);
        for p in PresetId::ALL {
            for arch in Arch::ALL {
                check(&sc, p, arch, &[], &ONE_RUN, seed);
            }
        }
    }
}

#[test]
fn two_threads_under_shuttle_stay_clean_in_the_latest_preset() {
    for seed in 0..300u64 {
        let sc = scenario(vec![ops(2 * seed + 1000), ops(2 * seed + 1001)]);
        for arch in Arch::ALL {
            check(&sc, PresetId::Latest, arch, &[], &shuttle(seed), seed);
        }
    }
}

#[test]
fn with_files_the_latest_preset_breaks_nothing_but_the_known_open() {
    for seed in 0..1000u64 {
        let sc = file_scenario(vec![ops(seed + 5000)]);
        for p in PresetId::ALL {
            check(&sc, p, Arch::Ipi, &KNOWN_OPEN, &ONE_RUN, seed);
        }
    }
    for seed in 0..150u64 {
        let sc = file_scenario(vec![ops(2 * seed + 9000), ops(2 * seed + 9001)]);
        for arch in Arch::ALL {
            check(
                &sc,
                PresetId::Latest,
                arch,
                &KNOWN_OPEN,
                &shuttle(seed),
                seed,
            );
        }
    }
}
