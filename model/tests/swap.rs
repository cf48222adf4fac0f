//! Anonymous reclaim and the swap cache (mm/vmscan.rs, mm/swap.rs,
//! `do_swap_page`): what `madvise(MADV_PAGEOUT)` does with an unreferenced,
//! a pinned and a GET-held page in each era, what a fault then maps, and the
//! quiescent checks that follow contents into swap slots. Sequential, std
//! backend.

use gupcheck_model::backend::Std;
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::mm::vmscan::PagedOut;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::types::Pfn;
use gupcheck_model::{Arch, Invariant, Mutation, PresetId, World, WorldConfig};

use PresetId::*;

fn world(preset: PresetId, muts: &[Mutation]) -> World<Std> {
    let cfg = WorldConfig {
        nr_frames: 16,
        nr_tables: 8,
        preset,
        mutations: muts.to_vec(),
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    };
    World::build(
        cfg,
        &Layout::one(vec![
            Region::anon(0, 1, Populate::Anon),
            Region::anon(1, 1, Populate::Anon),
        ]),
    )
    .unwrap()
}

fn ctx() -> Ctx {
    Ctx::new(0, 1, false)
}

/// The slot caching `page`, if any.
fn cached(w: &World<Std>, page: Pfn) -> bool {
    w.swap
        .lock()
        .iter()
        .flatten()
        .any(|s| s.cache == Some(page))
}

#[test]
fn a_page_out_writes_the_slot_and_a_fault_reads_it_back() {
    for p in [V5_7, V5_10, Latest] {
        let w = world(p, &[]);
        let mut c = ctx();
        let v = w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
        assert_eq!(w.madvise_pageout(&mut c, 0, 0).unwrap(), PagedOut::Freed);
        assert_eq!(w.resolve(0, 0), None);
        assert_eq!(w.swapped_word(0, 0), Some(v));
        // The store survives in the slot: no lost write at rest.
        w.check_quiescent(&c.ledger).unwrap();
        // The load reads it back into a page.
        assert_eq!(w.user_access(&mut c, 0, 0, false).unwrap(), Ok(v));
        assert!(w.resolve(0, 0).is_some_and(|f| f != 0), "{}", p.name());
        assert!(w.swap.lock().iter().all(Option::is_none), "slot freed");
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn a_slot_that_lost_the_store_is_a_lost_write() {
    let w = world(Latest, &[]);
    let mut c = ctx();
    w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    assert_eq!(w.madvise_pageout(&mut c, 0, 0).unwrap(), PagedOut::Freed);
    w.swap.lock()[0].as_mut().unwrap().data[0] = 0xbad;
    let v = w.check_quiescent(&c.ledger).unwrap_err();
    assert_eq!(v.invariant, Invariant::NoLostWrite, "{}", v.detail);
    assert!(v.detail.contains("swapped out"), "{}", v.detail);
}

#[test]
fn swap_counts_and_the_swap_cache_reference_are_conserved() {
    let w = world(Latest, &[]);
    let mut c = ctx();
    assert_eq!(w.madvise_pageout(&mut c, 0, 0).unwrap(), PagedOut::Freed);
    w.swap.lock()[0].as_mut().unwrap().count += 1;
    let v = w.check_quiescent(&c.ledger).unwrap_err();
    assert_eq!(v.invariant, Invariant::Conservation);
    assert!(v.detail.contains("swap slot 0 has count 2"), "{}", v.detail);
}

/// A write pin of page 0, then MADV_PAGEOUT, then a load and a store: where
/// the store lands, per era.
fn pin_pageout_load_store(p: PresetId, muts: &[Mutation]) -> (PagedOut, Pfn, Option<Pfn>) {
    let w = world(p, muts);
    let mut c = ctx();
    let mut pages = Vec::new();
    let n = w
        .pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
        .unwrap();
    assert_eq!(n, 1);
    let pinned = pages[0];
    let r = w.madvise_pageout(&mut c, 0, 0).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
    w.user_access(&mut c, 0, 0, false).unwrap().unwrap();
    w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    let now = w.resolve(0, 0);
    w.unpin_user_pages(&mut c, &pages).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
    (r, pinned, now)
}

#[test]
fn a_pinned_page_keeps_its_mapping_in_every_era_but_5_10() {
    // Before 5.9: unmapped into the swap cache, but the store reuses it.
    let (r, pinned, now) = pin_pageout_load_store(V5_7, &[]);
    assert_eq!((r, now), (PagedOut::KeptReferenced, Some(pinned)));
    // 5.10: unmapped into the swap cache, mapped back read-only, copied.
    let (r, pinned, now) = pin_pageout_load_store(V5_10, &[]);
    assert_eq!(r, PagedOut::KeptReferenced);
    assert_ne!(now, Some(pinned));
    // 5.11: feb889fb40fa keeps it out of the swap cache.
    let (r, pinned, now) = pin_pageout_load_store(V5_11, &[]);
    assert_eq!((r, now), (PagedOut::KeptPinned, Some(pinned)));
    let (r, pinned, now) = pin_pageout_load_store(V5_11, &[Mutation::PageoutIgnoresPins]);
    assert_eq!(r, PagedOut::KeptReferenced);
    assert_ne!(now, Some(pinned));
    // 5.19+: without feb889fb40fa's check, try_to_unmap_one's share check
    // refuses to unmap it.
    for p in [V6_0, Latest] {
        let (r, pinned, now) = pin_pageout_load_store(p, &[]);
        assert_eq!((r, now), (PagedOut::KeptPinned, Some(pinned)));
        let (r, pinned, now) = pin_pageout_load_store(p, &[Mutation::PageoutIgnoresPins]);
        assert_eq!((r, now), (PagedOut::UnmapFailed, Some(pinned)));
    }
}

#[test]
fn an_unmap_refused_leaves_the_folio_mapped_and_in_the_swap_cache() {
    let w = world(Latest, &[Mutation::PageoutIgnoresPins]);
    let mut c = ctx();
    let mut pages = Vec::new();
    w.pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
        .unwrap();
    assert_eq!(
        w.madvise_pageout(&mut c, 0, 0).unwrap(),
        PagedOut::UnmapFailed
    );
    assert_eq!(w.resolve(0, 0), Some(pages[0]));
    assert!(cached(&w, pages[0]));
    w.check_quiescent(&c.ledger).unwrap();
    w.unpin_user_pages(&mut c, &pages).unwrap();
    // Unpinned, it goes the whole way: unmapped, written, freed.
    assert_eq!(w.madvise_pageout(&mut c, 0, 0).unwrap(), PagedOut::Freed);
    w.check_quiescent(&c.ledger).unwrap();
}

/// A FOLL_GET write reference (a DIO of bug #13) reads as not pinned: the page
/// is unmapped into the swap cache. From 5.19 the swap PTE remembers it was
/// exclusive, and the load and store that follow keep the same page.
#[test]
fn a_get_reference_is_swapped_out_and_comes_back_exclusive_from_5_19() {
    for (p, same) in [(V5_7, true), (V5_11, false), (V6_0, true), (Latest, true)] {
        let w = world(p, &[]);
        let mut c = ctx();
        let mut pages = Vec::new();
        w.get_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(
            w.madvise_pageout(&mut c, 0, 0).unwrap(),
            PagedOut::KeptReferenced,
            "{}",
            p.name()
        );
        assert!(cached(&w, pages[0]));
        w.user_access(&mut c, 0, 0, false).unwrap().unwrap();
        w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
        assert_eq!(w.resolve(0, 0) == Some(pages[0]), same, "{}", p.name());
        w.put_page(&mut c, pages[0]).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn munmap_of_a_swapped_page_frees_its_slot_and_its_swap_cache_folio() {
    let w = world(Latest, &[]);
    let mut c = ctx();
    let mut pages = Vec::new();
    w.get_user_pages_fast(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
        .unwrap();
    assert_eq!(
        w.madvise_pageout(&mut c, 0, 0).unwrap(),
        PagedOut::KeptReferenced
    );
    w.munmap(&mut c, 0, 0, gupcheck_model::PAGE_SIZE)
        .unwrap()
        .unwrap();
    assert!(w.swap.lock().iter().all(Option::is_none));
    w.check_quiescent(&c.ledger).unwrap();
    w.put_page(&mut c, pages[0]).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
}

#[test]
fn only_anonymous_base_pages_mapped_once_are_paged_out() {
    let cfg = WorldConfig {
        fanout_bits: 2,
        nr_frames: 64,
        nr_tables: 16,
        nr_mms: 2,
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    };
    let w = World::<Std>::build(
        cfg,
        &Layout::one(vec![
            Region::anon(0, 4, Populate::Anon),
            Region::anon(4, 4, Populate::ThpPte),
            Region::anon(8, 1, Populate::ZeroPage),
            Region::anon(9, 1, Populate::Swapped),
        ]),
    )
    .unwrap();
    let mut c = ctx();
    let page = |i: u64| i * gupcheck_model::PAGE_SIZE;
    for i in [5, 8, 9, 12] {
        assert_eq!(
            w.madvise_pageout(&mut c, 0, page(i)).unwrap(),
            PagedOut::NotSuitable,
            "page {i}"
        );
    }
    // Shared with a fork child: left alone.
    w.fork(&mut c, 0, 1).unwrap().unwrap();
    assert_eq!(
        w.madvise_pageout(&mut c, 0, page(0)).unwrap(),
        PagedOut::NotSuitable
    );
    w.check_quiescent(&c.ledger).unwrap();
}
