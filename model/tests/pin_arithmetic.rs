//! The seed's arithmetic, exactly, on the real 32-bit counter with bias 1024
//! (pin_user_pages.rst: "about 2 million pins" of a small page; "about 8
//! references" of a 1 GiB page with bias-on-head counting), through the public
//! API. The ledger stays one entry per folio however many pins it holds.

use gupcheck_model::backend::Std;
use gupcheck_model::flags::Foll;
use gupcheck_model::ghost::Ctx;
use gupcheck_model::state::layout::{HugeSize, Layout, Populate, Region};
use gupcheck_model::types::Errno;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};

const ENOMEM: i64 = -(Errno::ENOMEM as i64);

#[test]
fn the_2_pow_21st_pin_of_a_small_page_goes_negative_and_the_next_is_refused() {
    let cfg = WorldConfig {
        fanout_bits: 2,
        nr_frames: 32,
        nr_tables: 8,
        preset: PresetId::V5_7,
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    };
    let w =
        World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)])).unwrap();
    let mut c = Ctx::new(0, 1, false);
    let mut pages = Vec::with_capacity(1);
    let n = 1u32 << 21;
    for i in 1..=n {
        pages.clear();
        let r = w
            .pin_user_pages_fast(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
            .unwrap();
        assert_eq!(r, 1, "pin {i} refused");
        if i == n - 1 {
            // 1 + 1024 * (2^21 - 1) = 2^31 - 1023: still positive.
            assert_eq!(
                w.mem.folio_ref_count(pages[0]),
                (1i64 + 1024 * (i64::from(n) - 1)) as i32
            );
        }
    }
    let page = pages[0];
    // 1 + 2^31 as a signed 32-bit count.
    assert_eq!(w.mem.folio_ref_count(page), i32::MIN + 1);
    assert!(
        w.page_maybe_dma_pinned(page),
        "an overflowed count still reads as pinned"
    );
    pages.clear();
    assert_eq!(
        w.pin_user_pages_fast(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
            .unwrap(),
        ENOMEM
    );
    assert!(pages.is_empty());
    let live: Vec<_> = c.ledger.live_holds().collect();
    assert_eq!(live.len(), 1, "one ledger entry for 2^21 pins");
    assert_eq!(live[0].count, i64::from(n));
}

/// Whole pins of a 1 GiB (order-18) folio until the counter goes negative:
/// returns the pin that made it negative, after checking the next is refused.
fn whole_gib_pins_until_negative(preset: PresetId) -> u32 {
    let pud_pages = 1u64 << 18;
    let cfg = WorldConfig {
        fanout_bits: 9,
        nr_frames: (1 << 19) + 64,
        nr_tables: 8,
        preset,
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    };
    let w = World::<Std>::build(
        cfg,
        &Layout::one(vec![Region::hugetlb(
            0,
            pud_pages,
            HugeSize::Pud,
            Populate::Hugetlb,
        )]),
    )
    .unwrap();
    let mut c = Ctx::new(0, 1, false);
    let mut pages = Vec::with_capacity(pud_pages as usize);
    let mut k = 0;
    loop {
        k += 1;
        pages.clear();
        let r = w
            .pin_user_pages_fast(&mut c, 0, pud_pages as i64, Foll::NONE, Some(&mut pages))
            .unwrap();
        assert_eq!(
            r,
            pud_pages as i64,
            "{}: whole pin {k} refused",
            preset.name()
        );
        if w.mem.folio_ref_count(pages[0]) < 0 {
            break;
        }
        assert!(k < 10_000, "never went negative");
    }
    pages.clear();
    let r = w
        .pin_user_pages_fast(&mut c, PAGE_SIZE, 1, Foll::NONE, Some(&mut pages))
        .unwrap();
    assert_eq!(
        r,
        ENOMEM,
        "{}: a pin after the overflow must be refused",
        preset.name()
    );
    assert_eq!(
        c.ledger.live_holds().count(),
        1,
        "no per-subpage ledger entries"
    );
    k
}

#[test]
fn the_8th_whole_pin_of_a_1_gib_folio_overflows_under_bias_on_head() {
    assert_eq!(whole_gib_pins_until_negative(PresetId::V11), 8);
}

#[test]
fn the_8192nd_whole_pin_of_a_1_gib_folio_overflows_with_plain_or_exact_counting() {
    assert_eq!(whole_gib_pins_until_negative(PresetId::Seed), 8192);
    assert_eq!(whole_gib_pins_until_negative(PresetId::V5_7), 8192);
}

/// 5.7-5.17 counted a pin of a THP in `hpage_pinned_refcount` (compound order
/// 9 > 1), not with the bias. A small world's THP has order 1: it is counted
/// as the THP it stands for, one reference and one exact pin per pinned page.
#[test]
fn a_small_world_thp_is_pinned_with_the_exact_count_in_5_7() {
    use gupcheck_model::backend::KAtomic;
    for preset in [PresetId::V5_7, PresetId::V5_11, PresetId::Latest] {
        let cfg = WorldConfig {
            fanout_bits: 1,
            nr_frames: 24,
            nr_tables: 8,
            preset,
            trace: false,
            ..WorldConfig::small(Arch::Rcu)
        };
        let w = World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, 2, Populate::Thp)]))
            .unwrap();
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let r = w
            .pin_user_pages_fast(&mut c, 0, 2, Foll::NONE, Some(&mut pages))
            .unwrap();
        assert_eq!(r, 2, "{}", preset.name());
        let head = pages[0];
        assert_eq!(w.mem.folio_order(head), 1, "a THP of this small world");
        assert_eq!(
            w.mem.frame(head).pincount.read_once(),
            2,
            "{}: exact pincount",
            preset.name()
        );
        assert_eq!(
            w.mem.folio_ref_count(head),
            1 + 2,
            "{}: the mapping's reference and one per pinned page, no bias",
            preset.name()
        );
        assert!(w.page_maybe_dma_pinned(head), "{}", preset.name());
    }
}
