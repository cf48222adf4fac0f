//! Sequential rules of the core model on the std backend: faults, the write-fault
//! reuse rule per era, munmap's freeing and table reclaim, allocator reuse, the
//! lockless walk over every leaf size, counter scale, and the invariant checks
//! themselves (each must be able to fail).

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::config::CounterScale;
use gupcheck_model::ghost::{Ctx, HoldKind, Ledger};
use gupcheck_model::mm::walk::Peek;
use gupcheck_model::state::layout::{HugeSize, Layout, Populate, Region};
use gupcheck_model::state::mem::{pg, Order, Zone};
use gupcheck_model::types::Errno;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, Invariant, Mutation, PresetId, ReuseRule, World, WorldConfig};

fn cfg(arch: Arch) -> WorldConfig {
    WorldConfig {
        fanout_bits: 2,
        nr_frames: 160,
        nr_tables: 24,
        ..WorldConfig::small(arch)
    }
}

fn world(layout: Layout) -> World<Std> {
    World::build(cfg(Arch::Rcu), &layout).expect("layout fits")
}

fn ctx() -> Ctx {
    Ctx::new(0, 1, true)
}

fn quiescent(w: &World<Std>, c: &Ctx) {
    w.check_quiescent(&c.ledger)
        .expect("quiescent invariants hold");
}

const P: u64 = PAGE_SIZE;

#[test]
fn read_fault_maps_the_zero_page_and_a_write_copies_it() {
    let w = world(Layout::one(vec![Region::anon(0, 2, Populate::None)]));
    let mut c = ctx();
    assert_eq!(w.user_access(&mut c, 0, 0, false).unwrap(), Ok(0));
    let pte = w.walk_lockless(&mut c, 0, 0).unwrap().expect("mapped").pte;
    assert!(pte.special() && !pte.write());
    assert_eq!(pte.pfn(), w.mem.zero_pfn);
    let v = w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    let pte = w.walk_lockless(&mut c, 0, 0).unwrap().expect("mapped").pte;
    assert!(pte.write() && !pte.special());
    assert_ne!(pte.pfn(), w.mem.zero_pfn);
    assert_eq!(w.user_access(&mut c, 0, 0, false).unwrap(), Ok(v));
    // The zero page keeps exactly its own reference.
    assert_eq!(w.mem.folio_ref_count(w.mem.zero_pfn), 1);
    quiescent(&w, &c);
}

#[test]
fn faults_outside_a_vma_or_against_its_protection_fail() {
    let mut r = Region::anon(0, 1, Populate::None);
    r.writable = false;
    let w = world(Layout::one(vec![r]));
    let mut c = ctx();
    assert_eq!(
        w.user_access(&mut c, 0, 5 * P, false).unwrap(),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        w.user_access(&mut c, 0, 0, true).unwrap(),
        Err(Errno::EFAULT)
    );
    assert!(w.user_access(&mut c, 0, 0, false).unwrap().is_ok());
}

/// A present read-only anon page with one extra reference (a GUP holder), written
/// by its only mapper: reuse or copy, per era.
fn write_fault_with_extra_ref(rule: ReuseRule, exclusive: bool) -> bool {
    let mut cf = cfg(Arch::Ipi);
    cf.preset = PresetId::ALL
        .into_iter()
        .find(|p| p.preset().reuse == rule)
        .expect("a preset per rule");
    let w =
        World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)])).unwrap();
    let mut c = ctx();
    let snap = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap();
    let pfn = snap.pte.pfn();
    w.tables[snap.slot as usize].set(
        snap.idx,
        snap.pte.without(gupcheck_model::state::pgtable::Pte::WRITE),
    );
    if !exclusive {
        w.mem.frame(pfn).flags.andnot(pg::ANON_EXCLUSIVE);
    }
    w.mem.folio_ref_add(&c, &w.ghost, pfn, 1).unwrap();
    let gen = w.ghost.frame(pfn).gen();
    c.hold(pfn, gen, HoldKind::Get, 1);
    w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    let after = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte;
    assert!(after.write());
    quiescent(&w, &c);
    after.pfn() == pfn
}

#[test]
fn the_reuse_rule_of_each_era_decides_copy_or_reuse() {
    // Before 5.9: mapcount 1 reuses even though a GUP reference exists (the
    // CVE-2020-29374 Missed COW).
    assert!(write_fault_with_extra_ref(ReuseRule::Mapcount, false));
    // 09854ba94c6a: any extra reference forces a copy.
    assert!(!write_fault_with_extra_ref(ReuseRule::PageCount, true));
    // 6c287605fd56: an exclusive page is reused whatever its count...
    assert!(write_fault_with_extra_ref(ReuseRule::AnonExclusive, true));
    // ...a shared one only if nobody else holds it.
    assert!(!write_fault_with_extra_ref(ReuseRule::AnonExclusive, false));
}

#[test]
fn munmap_frees_pages_and_the_tables_no_vma_needs() {
    // Pages 0..2 share a PTE table with nothing else; page 4 lives in the next one.
    let w = world(Layout::one(vec![
        Region::anon(0, 2, Populate::Anon),
        Region::anon(4, 1, Populate::Anon),
    ]));
    let mut c = ctx();
    let a = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap();
    let b = w.walk_lockless(&mut c, 0, 4 * P).unwrap().unwrap();
    let (pa, pb) = (a.pte.pfn(), b.pte.pfn());
    let table_frame = w.ghost.table_frame(a.slot);
    assert!(w.munmap(&mut c, 0, 0, 2 * P).unwrap().is_ok());
    // RCU table freeing: the table waits for a grace period; nobody walks, so the
    // next callback run frees it.
    assert!(
        w.ghost.table(a.slot).allocated(),
        "freed only after a grace period"
    );
    w.rcu_barrier(&mut c).unwrap();
    assert!(!w.ghost.frame(pa).allocated(), "unmapped page freed");
    assert_eq!(w.mem.folio_ref_count(pa), 0);
    assert!(!w.ghost.table(a.slot).allocated(), "empty PTE table freed");
    assert!(!w.ghost.frame(table_frame).allocated(), "its frame too");
    assert!(w.ghost.table(b.slot).allocated(), "the other table stays");
    assert!(w.ghost.frame(pb).allocated());
    assert_eq!(w.walk_lockless(&mut c, 0, 0).unwrap().map(|s| s.pte), None);
    // Allocation reuses the most recently freed frame first.
    let next = w.mem.alloc_folio(&mut c, &w.ghost, Order::Base, 0).unwrap();
    assert_eq!(next, table_frame);
    w.mem
        .folio_put_refs(&mut c, &w.ghost, next, 1, None)
        .unwrap();
    quiescent(&w, &c);
}

#[test]
fn an_rcu_freed_table_waits_for_the_walkers_that_may_see_it() {
    let w = world(Layout::one(vec![
        Region::anon(0, 1, Populate::Anon),
        Region::anon(4, 1, Populate::Anon),
    ]));
    let mut walker = Ctx::new(1, 2, false);
    let mut c = ctx();
    let snap = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap();
    w.walkers.irq_save(&mut walker, &w.ghost, false);
    w.munmap(&mut c, 0, 0, P).unwrap().unwrap();
    // Allocation runs due callbacks; this one is not due while the walker walks.
    w.rcu_reclaim(&mut c).unwrap();
    assert!(w.ghost.table(snap.slot).allocated());
    assert!(w
        .reread(&mut walker, snap.slot, snap.idx, snap.stamp, "recheck")
        .is_ok());
    w.walkers.irq_restore(&mut walker, &w.ghost);
    w.rcu_reclaim(&mut c).unwrap();
    assert!(!w.ghost.table(snap.slot).allocated());
    quiescent(&w, &c);
}

#[test]
fn partial_munmap_splits_the_vma_and_keeps_the_table() {
    let w = world(Layout::one(vec![Region::anon(0, 3, Populate::Anon)]));
    let mut c = ctx();
    assert!(w.munmap(&mut c, 0, P, P).unwrap().is_ok());
    let vmas = w.mm(0).mmap_lock.read().clone();
    assert_eq!(
        vmas.iter().map(|v| (v.start, v.end)).collect::<Vec<_>>(),
        vec![(0, P), (2 * P, 3 * P)]
    );
    assert!(w.walk_lockless(&mut c, 0, 0).unwrap().is_some());
    assert!(w.walk_lockless(&mut c, 0, P).unwrap().is_none());
    assert_eq!(
        w.user_access(&mut c, 0, P, false).unwrap(),
        Err(Errno::EFAULT)
    );
    quiescent(&w, &c);
    // mmap refuses to overlap what is left, and maps the hole again.
    let vma = Region::anon(0, 2, Populate::None).vma();
    assert_eq!(w.mmap(&mut c, 0, vma).unwrap(), Err(Errno::EEXIST));
    let hole = Region::anon(1, 1, Populate::None).vma();
    assert_eq!(w.mmap(&mut c, 0, hole).unwrap(), Ok(()));
    assert!(w.user_access(&mut c, 0, P, true).unwrap().is_ok());
    quiescent(&w, &c);
}

#[test]
fn huge_leaves_are_walked_and_unmapped_whole() {
    // fanout 4: a PMD leaf covers 4 pages, a PUD leaf 16.
    let w = world(Layout::one(vec![
        Region::anon(4, 4, Populate::Thp),
        Region::hugetlb(16, 16, HugeSize::Pud, Populate::Hugetlb),
    ]));
    let mut c = ctx();
    let thp = w.walk_lockless(&mut c, 0, 6 * P).unwrap().unwrap();
    assert_eq!(thp.level, 2);
    assert!(thp.pte.leaf());
    assert_eq!(w.mem.folio_nr_pages(thp.pte.pfn()), 4);
    let huge = w.walk_lockless(&mut c, 0, 20 * P).unwrap().unwrap();
    assert_eq!(huge.level, 3);
    assert_eq!(w.mem.folio_nr_pages(huge.pte.pfn()), 16);
    assert!(w.mem.frame(huge.pte.pfn()).flags.read_once() & pg::HUGETLB != 0);
    // Tail pages resolve to their head.
    assert_eq!(w.mem.page_folio(huge.pte.pfn() + 5), huge.pte.pfn());
    // A store to a subpage lands in that subpage, and a peek reads it back.
    let v = w.user_access(&mut c, 0, 6 * P, true).unwrap().unwrap();
    assert_eq!(w.mem.read_data(thp.pte.pfn() + 2, 0), v);
    assert_eq!(
        w.lockless_peek(&mut c, 0, 6 * P).unwrap(),
        Peek::Read(thp.pte.pfn() + 2, v)
    );
    quiescent(&w, &c);
    assert!(w.munmap(&mut c, 0, 4 * P, 4 * P).unwrap().is_ok());
    assert!(!w.ghost.frame(thp.pte.pfn()).allocated());
    assert!(
        w.mem.free.lock().pmd.contains(&thp.pte.pfn()),
        "back on the PMD-order list"
    );
    quiescent(&w, &c);
}

#[test]
fn a_partial_munmap_splits_a_thp_pmd_and_refuses_a_hugetlb_cut() {
    let w = world(Layout::one(vec![
        Region::anon(4, 4, Populate::Thp),
        Region::hugetlb(16, 16, HugeSize::Pud, Populate::Hugetlb),
    ]));
    let mut c = ctx();
    let head = w
        .walk_lockless(&mut c, 0, 4 * P)
        .unwrap()
        .unwrap()
        .pte
        .pfn();
    let v = w.user_access(&mut c, 0, 7 * P, true).unwrap().unwrap();
    assert_eq!(
        w.munmap(&mut c, 0, 20 * P, P).unwrap(),
        Err(Errno::EINVAL),
        "hugetlb is not split"
    );
    // Unmap the second page of the THP: the PMD becomes a PTE table, the
    // folio stays whole, the other three pages stay mapped with their data.
    assert!(w.munmap(&mut c, 0, 5 * P, P).unwrap().is_ok());
    let left = w.walk_lockless(&mut c, 0, 7 * P).unwrap().unwrap();
    assert_eq!(left.level, 1, "PTE-mapped after the split");
    assert_eq!(left.pte.pfn(), head + 3);
    assert_eq!(w.mem.page_folio(head + 3), head);
    assert_eq!(w.mem.frame(head).entire_mapcount.read_once(), 0);
    assert_eq!(w.mem.folio_ref_count(head), 3, "one reference per PTE");
    assert!(w.walk_lockless(&mut c, 0, 5 * P).unwrap().is_none());
    assert_eq!(w.user_access(&mut c, 0, 7 * P, false).unwrap(), Ok(v));
    quiescent(&w, &c);
    assert!(w.munmap(&mut c, 0, 4 * P, 4 * P).unwrap().is_ok());
    assert!(!w.ghost.frame(head).allocated());
    quiescent(&w, &c);
}

#[test]
fn split_huge_page_makes_base_pages_unless_pinned() {
    use gupcheck_model::flags::{Flag, Foll};
    use gupcheck_model::mm::thp::Split;
    let w = world(Layout::one(vec![Region::anon(4, 4, Populate::ThpPte)]));
    let mut c = ctx();
    let head = w
        .walk_lockless(&mut c, 0, 4 * P)
        .unwrap()
        .unwrap()
        .pte
        .pfn();
    let v = w.user_access(&mut c, 0, 6 * P, true).unwrap().unwrap();
    let mut pages = Vec::new();
    let n = w
        .pin_user_pages_fast(&mut c, 5 * P, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        w.split_huge_page(&mut c, 0, 4 * P).unwrap(),
        Split::KeptReferenced,
        "a pinned folio is not split"
    );
    assert_eq!(w.mem.page_folio(head + 2), head);
    w.unpin_user_pages(&mut c, &pages).unwrap();
    quiescent(&w, &c);
    assert_eq!(w.split_huge_page(&mut c, 0, 4 * P).unwrap(), Split::Split);
    for p in head..head + 4 {
        assert_eq!(w.mem.page_folio(p), p, "page {p} is its own folio");
        assert_eq!(w.mem.folio_order(p), 0);
        assert_eq!(w.mem.folio_ref_count(p), 1, "its mapping's reference");
    }
    assert_eq!(w.user_access(&mut c, 0, 6 * P, false).unwrap(), Ok(v));
    quiescent(&w, &c);
}

#[test]
fn compaction_moves_an_unpinned_page_and_keeps_a_pinned_one() {
    use gupcheck_model::flags::{Flag, Foll};
    use gupcheck_model::mm::migrate::Migrated;
    let w = world(Layout::one(vec![Region::anon(0, 2, Populate::Anon)]));
    let mut c = ctx();
    let old = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    let v = w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    assert_eq!(w.compact_page(&mut c, 0, 0).unwrap(), Migrated::Moved);
    let new = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte;
    assert_ne!(new.pfn(), old);
    assert!(
        new.write(),
        "a writable migration entry maps it writable again"
    );
    assert!(!w.ghost.frame(old).allocated(), "the old page is freed");
    assert_eq!(w.user_access(&mut c, 0, 0, false).unwrap(), Ok(v));
    quiescent(&w, &c);
    let mut pages = Vec::new();
    let flags = Foll::of(&[Flag::Write, Flag::Longterm]);
    let n = w
        .pin_user_pages_fast(&mut c, P, 1, flags, Some(&mut pages))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(w.compact_page(&mut c, 0, P).unwrap(), Migrated::KeptPinned);
    assert_eq!(
        w.walk_lockless(&mut c, 0, P).unwrap().unwrap().pte.pfn(),
        pages[0]
    );
    w.unpin_user_pages(&mut c, &pages).unwrap();
    quiescent(&w, &c);
}

#[test]
fn zones_are_laid_out_and_allocation_can_avoid_them() {
    let mut cf = cfg(Arch::Ipi);
    cf.cma_frames = 2;
    cf.movable_frames = 3;
    let w = World::<Std>::build(cf, &Layout::default()).unwrap();
    assert_eq!(w.mem.frame(1).zone, Zone::Cma);
    assert_eq!(w.mem.frame(3).zone, Zone::Movable);
    assert_eq!(w.mem.frame(6).zone, Zone::Normal);
    let mut c = ctx();
    let any = w.mem.alloc_folio(&mut c, &w.ghost, Order::Base, 0).unwrap();
    let pinnable = w
        .mem
        .alloc_folio_where(&mut c, &w.ghost, Order::Base, 0, |z| z == Zone::Normal)
        .unwrap();
    assert_ne!(
        w.mem.frame(any).zone,
        Zone::Normal,
        "first free frames are CMA"
    );
    assert_eq!(w.mem.frame(pinnable).zone, Zone::Normal);
}

#[test]
fn counter_scale_wraps_at_its_width() {
    let s = CounterScale::scaled(8, 4).unwrap();
    assert_eq!(s.norm(127), 127);
    assert_eq!(s.norm(128), -128);
    assert_eq!(s.norm(256), 0);
    assert_eq!(CounterScale::REAL.norm(i32::MIN), i32::MIN);
    assert!(CounterScale::scaled(8, 200).is_err());
    assert!(CounterScale::scaled(2, 1).is_err());
}

#[test]
fn refcount_bounds_catch_an_increment_across_the_sign_and_a_drop_below_zero() {
    let mut cf = cfg(Arch::Ipi);
    cf.counter = CounterScale::scaled(8, 4).unwrap();
    let w =
        World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)])).unwrap();
    let mut c = ctx();
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    // Take the 8-bit count to -1 (255 raw): one more speculative grab crosses back
    // to zero, which the bounds refuse.
    w.mem.frame(pfn).refcount.add(254);
    let v = w
        .mem
        .folio_ref_try_add(&mut c, &w.ghost, pfn, 1)
        .unwrap_err();
    assert_eq!(v.invariant, Invariant::RefcountBounds);
    // A put below zero.
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    let v = w
        .mem
        .folio_put_refs(&mut c, &w.ghost, pfn, 2, None)
        .unwrap_err();
    assert_eq!(v.invariant, Invariant::RefcountBounds);
}

#[test]
fn a_plain_get_on_a_free_frame_is_a_resurrection() {
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let mut c = ctx();
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    w.munmap(&mut c, 0, 0, P).unwrap().unwrap();
    let v = w.mem.folio_ref_add(&c, &w.ghost, pfn, 1).unwrap_err();
    assert_eq!(v.invariant, Invariant::NoResurrection);
    // The speculative grab refuses instead.
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    w.munmap(&mut c, 0, 0, P).unwrap().unwrap();
    assert!(!w.mem.folio_ref_try_add(&mut c, &w.ghost, pfn, 1).unwrap());
}

#[test]
fn a_stale_walk_through_a_freed_table_is_a_use_after_free() {
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let mut c = ctx();
    let snap = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap();
    w.munmap(&mut c, 0, 0, P).unwrap().unwrap();
    w.rcu_barrier(&mut c).unwrap();
    let v = w
        .reread(&mut c, snap.slot, snap.idx, snap.stamp, "recheck")
        .unwrap_err();
    assert_eq!(v.invariant, Invariant::NoUseAfterFree);
}

#[test]
fn conservation_catches_leaks_and_mapcount_drift() {
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let mut c = ctx();
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    // A speculative reference never dropped.
    assert!(w.mem.folio_ref_try_add(&mut c, &w.ghost, pfn, 1).unwrap());
    let v = w.check_quiescent(&c.ledger).unwrap_err();
    assert_eq!(v.invariant, Invariant::Conservation);
    w.mem
        .folio_put_refs(&mut c, &w.ghost, pfn, 1, Some(HoldKind::Speculative))
        .unwrap();
    quiescent(&w, &c);
    // A reference nobody accounts for.
    w.mem.frame(pfn).refcount.add(1);
    assert_eq!(
        w.check_quiescent(&Ledger::default()).unwrap_err().invariant,
        Invariant::Conservation
    );
    w.mem.frame(pfn).refcount.sub(1);
    w.mem.frame(pfn).mapcount.add(1);
    assert_eq!(
        w.check_quiescent(&Ledger::default()).unwrap_err().invariant,
        Invariant::Conservation
    );
}

#[test]
fn a_store_that_does_not_reach_the_mapped_page_is_a_lost_write() {
    let w = world(Layout::one(vec![Region::anon(0, 1, Populate::Anon)]));
    let mut c = ctx();
    w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
    quiescent(&w, &c);
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    w.mem.write_data(pfn, 0, 0xdead);
    assert_eq!(
        w.check_quiescent(&c.ledger).unwrap_err().invariant,
        Invariant::NoLostWrite
    );
    // Unmapped after the store: nothing to keep.
    w.munmap(&mut c, 0, 0, P).unwrap().unwrap();
    quiescent(&w, &c);
}

#[test]
fn peek_backs_off_or_reads_but_never_leaves_a_reference() {
    for m in [vec![], vec![Mutation::WalkerPlainGet]] {
        let mut cf = cfg(Arch::Rcu);
        cf.mutations = m;
        let w = World::<Std>::build(
            cf,
            &Layout::one(vec![Region::anon(0, 2, Populate::ZeroPage)]),
        )
        .unwrap();
        let mut c = ctx();
        // The zero page is special: a peek does not take it.
        assert_eq!(w.lockless_peek(&mut c, 0, 0).unwrap(), Peek::NotMapped);
        let v = w.user_access(&mut c, 0, P, true).unwrap().unwrap();
        assert!(matches!(w.lockless_peek(&mut c, 0, P).unwrap(), Peek::Read(_, x) if x == v));
        assert!(c.ledger.live_holds().next().is_none());
        quiescent(&w, &c);
    }
}

#[test]
fn a_world_too_small_for_its_layout_is_a_clear_error() {
    let mut cf = cfg(Arch::Ipi);
    cf.nr_frames = 8;
    let e = World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 16, Populate::Anon)]))
        .err()
        .unwrap();
    assert!(e.contains("more frames"), "{e}");
    let mut cf = cfg(Arch::Ipi);
    cf.fanout_bits = 0;
    assert!(World::<Std>::build(cf, &Layout::default()).is_err());
}
