//! Cost of the model's fast path on real atomics: one `pin_user_pages_fast` of a
//! page plus its `unpin_user_page`, with the ledger on and traces off, beside two
//! raw `AtomicI32` read-modify-writes (what the kernel's pin and unpin cost at
//! the very least) measured in the same run.
//!
//! `cargo bench -p gupcheck-model --bench pin`

use criterion::{criterion_group, criterion_main, Criterion};
use gupcheck_model::backend::Std;
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::{Arch, PresetId, World, WorldConfig};
use std::hint::black_box;
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

fn pin_unpin(c: &mut Criterion) {
    let cfg = WorldConfig {
        fanout_bits: 9,
        nr_frames: 64,
        nr_tables: 8,
        preset: PresetId::Latest,
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    };
    let w =
        World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)])).unwrap();
    let mut ctx = Ctx::new(0, 1, false);
    let mut pages = Vec::with_capacity(1);
    let write = Foll::of(&[Flag::Write]);
    let mut g = c.benchmark_group("pin_1_page");
    g.bench_function("pin_user_pages_fast+unpin_user_page", |b| {
        b.iter(|| {
            pages.clear();
            let r = w
                .pin_user_pages_fast(&mut ctx, 0, 1, write, Some(&mut pages))
                .unwrap();
            assert_eq!(r, 1);
            w.unpin_user_page(&mut ctx, black_box(pages[0])).unwrap();
        })
    });
    let a = AtomicI32::new(1);
    g.bench_function("two_atomic_i32_rmws", |b| {
        b.iter(|| {
            black_box(a.fetch_add(1024, SeqCst));
            black_box(a.fetch_sub(1024, SeqCst));
        })
    });
    g.finish();
}

criterion_group!(benches, pin_unpin);
criterion_main!(benches);
