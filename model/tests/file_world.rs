//! The file world, sequentially: the seed's four cases (pin_user_pages.rst: DIO
//! with FOLL_PIN, RDMA with FOLL_PIN | FOLL_LONGTERM, an MMU-notifier driver
//! that pins nothing, a struct-page-only FOLL_GET user) against writeback and
//! reclaim, and the page_mkwrite / page_mkclean cycle itself. Std backend.

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::{Ctx, Ledger};
use gupcheck_model::invariant::Invariant;
use gupcheck_model::mm::vmscan::Reclaimed;
use gupcheck_model::state::fs::{Cached, FileSpec, FsFlavour};
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::state::mem::pg;
use gupcheck_model::types::Errno;
use gupcheck_model::types::Pfn;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};

const EFAULT: i64 = -(Errno::EFAULT as i64);

/// Page 0..2: a shared mapping of a two-page file, cached as `cached`; page 4:
/// anonymous. With the MMU-notifier driver.
fn world(preset: PresetId, flavour: FsFlavour, cached: Cached) -> World<Std> {
    let populate = if cached == Cached::No {
        Populate::None
    } else {
        Populate::PageCache
    };
    let layout = Layout {
        files: vec![FileSpec {
            pages: 2,
            flavour,
            cached,
        }],
        notifier: true,
        ..Layout::one(vec![
            Region::file(0, 2, 0, true, populate),
            Region::anon(4, 1, Populate::Anon),
        ])
    };
    let cfg = WorldConfig {
        fanout_bits: 2,
        nr_frames: 40,
        nr_tables: 8,
        preset,
        trace: false,
        ..WorldConfig::small(Arch::Ipi)
    };
    World::build(cfg, &layout).unwrap()
}

fn cached_page(w: &World<Std>, index: usize) -> Option<Pfn> {
    w.inodes[0].i_pages.lock()[index]
}

fn flags(w: &World<Std>, p: Pfn) -> u32 {
    w.mem.frame(p).flags.read_once()
}

fn store(w: &World<Std>, c: &mut Ctx, addr: u64) -> u64 {
    w.user_access(c, 0, addr, true).unwrap().unwrap()
}

#[test]
fn foll_get_never_reads_as_pinned() {
    for preset in PresetId::ALL {
        let w = world(preset, FsFlavour::BufferHead, Cached::Dirty);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let n = w
            .get_user_pages(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1, "{}", preset.name());
        let p = pages[0];
        assert!(!w.page_maybe_dma_pinned(p), "{}", preset.name());
        let wb = w.writeback_inode(&mut c, 0).unwrap();
        assert!(
            wb.iter().all(|x| !x.maybe_pinned),
            "{}: {wb:?}",
            preset.name()
        );
        // The reference still keeps reclaim from freeing it.
        let r = w.reclaim_file_folio(&mut c, 0, 0).unwrap();
        assert_eq!(r, Reclaimed::KeptReferenced, "{}", preset.name());
        w.put_page(&mut c, p).unwrap();
        assert_eq!(
            w.reclaim_file_folio(&mut c, 0, 0).unwrap(),
            Reclaimed::Freed
        );
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn foll_pin_is_seen_by_writeback_and_reclaim() {
    for preset in PresetId::ALL {
        let w = world(preset, FsFlavour::Iomap, Cached::Dirty);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let n = w
            .pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1, "{}", preset.name());
        let p = pages[0];
        // The seed defines FOLL_PIN but counts it as a plain reference.
        let tracked = preset != PresetId::Seed;
        assert_eq!(w.page_maybe_dma_pinned(p), tracked, "{}", preset.name());
        let wb = w.writeback_inode(&mut c, 0).unwrap();
        let seen: Vec<bool> = wb
            .iter()
            .filter(|x| x.index == 0)
            .map(|x| x.maybe_pinned)
            .collect();
        assert_eq!(seen, vec![tracked], "{}: {wb:?}", preset.name());
        assert_eq!(
            w.reclaim_file_folio(&mut c, 0, 0).unwrap(),
            Reclaimed::KeptReferenced,
            "{}",
            preset.name()
        );
        w.unpin_user_pages(&mut c, &pages).unwrap();
        assert_eq!(
            w.reclaim_file_folio(&mut c, 0, 0).unwrap(),
            Reclaimed::Freed
        );
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn longterm_write_pins_of_a_shared_file_mapping_are_refused_from_6_5() {
    let lt = Foll::of(&[Flag::Write, Flag::Longterm]);
    for (preset, want) in [
        (PresetId::Seed, 1),
        (PresetId::V5_7, 1),
        (PresetId::V5_11, 1),
        (PresetId::V6_1, 1),
        (PresetId::Latest, EFAULT),
    ] {
        for fast in [false, true] {
            let w = world(preset, FsFlavour::BufferHead, Cached::Dirty);
            let mut c = Ctx::new(0, 1, false);
            let mut pages = Vec::new();
            let n = if fast {
                w.pin_user_pages_fast(&mut c, 0, 1, lt, Some(&mut pages))
            } else {
                w.pin_user_pages(&mut c, 0, 1, lt, Some(&mut pages))
            }
            .unwrap();
            assert_eq!(n, want, "{} fast={fast}", preset.name());
            // An anonymous page is fine in every era (its migration out of
            // movable and CMA memory is gup_rules' business).
            let mut anon = Vec::new();
            let n = w
                .pin_user_pages(&mut c, 4 * PAGE_SIZE, 1, lt, Some(&mut anon))
                .unwrap();
            assert_eq!(n, 1, "{} anon", preset.name());
            w.unpin_user_pages(&mut c, &pages).unwrap();
            w.unpin_user_pages(&mut c, &anon).unwrap();
            w.check_quiescent(&c.ledger).unwrap();
        }
    }
}

#[test]
fn the_notifier_driver_holds_no_pins_and_drops_its_mapping_on_munmap() {
    let w = world(PresetId::Latest, FsFlavour::Iomap, Cached::No);
    let mut c = Ctx::new(0, 1, false);
    let addr = 4 * PAGE_SIZE;
    let before: Vec<i32> = (0..40).map(|p| w.mem.folio_ref_count(p)).collect();
    let p = w.notifier_map(&mut c, 0, addr).unwrap().unwrap();
    let after: Vec<i32> = (0..40).map(|p| w.mem.folio_ref_count(p)).collect();
    assert_eq!(
        before, after,
        "mapping a page for the device takes no reference"
    );
    assert!(!w.page_maybe_dma_pinned(p));
    assert_eq!(c.ledger.pin_acquired, 0);
    w.notifier_write(&mut c).unwrap();
    assert_eq!(
        w.user_access(&mut c, 0, addr, false).unwrap(),
        Ok(w.mem.read_data(p, 0))
    );
    w.munmap(&mut c, 0, addr, PAGE_SIZE).unwrap().unwrap();
    assert!(w.notifier.as_ref().unwrap().lock.lock().ptes.is_empty());
    // Nothing left to write through: the freed page is untouched.
    w.notifier_write(&mut c).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
}

#[test]
fn page_mkclean_write_protects_and_the_next_store_faults_into_page_mkwrite() {
    let w = world(PresetId::Latest, FsFlavour::BufferHead, Cached::Clean);
    let mut c = Ctx::new(0, 1, false);
    let p = cached_page(&w, 0).unwrap();
    assert_eq!(flags(&w, p) & (pg::DIRTY | pg::HAS_BUFFERS), 0);
    let v1 = store(&w, &mut c, 0);
    assert_eq!(
        flags(&w, p) & (pg::DIRTY | pg::HAS_BUFFERS),
        pg::DIRTY | pg::HAS_BUFFERS
    );
    let wb = w.writeback_inode(&mut c, 0).unwrap();
    assert!(wb.iter().any(|x| x.index == 0 && x.written));
    assert_eq!(w.inodes[0].disk.lock()[0][0], v1);
    assert_eq!(flags(&w, p) & pg::DIRTY, 0, "clean after writeback");
    let v2 = store(&w, &mut c, 0);
    assert_ne!(
        flags(&w, p) & pg::DIRTY,
        0,
        "the store faulted and redirtied it"
    );
    assert_eq!(w.mem.read_data(p, 0), v2);
    w.check_quiescent(&c.ledger).unwrap();
}

#[test]
fn reclaim_writes_back_frees_and_the_next_fault_reads_the_disk() {
    let w = world(PresetId::Latest, FsFlavour::BufferHead, Cached::No);
    let mut c = Ctx::new(0, 1, false);
    let v = store(&w, &mut c, PAGE_SIZE);
    assert_eq!(
        w.reclaim_file_folio(&mut c, 0, 1).unwrap(),
        Reclaimed::Freed
    );
    assert_eq!(cached_page(&w, 1), None);
    assert_eq!(w.inodes[0].disk.lock()[1][0], v);
    assert_eq!(w.user_access(&mut c, 0, PAGE_SIZE, false).unwrap(), Ok(v));
    w.check_quiescent(&c.ledger).unwrap();
}

/// Jan Kara's race, one step at a time: the pin survives writeback and
/// reclaim, reclaim strips the clean buffers, and the DIO completion dirties a
/// page without buffers. A buffer-head filesystem breaks; iomap does not.
#[test]
fn dio_completion_after_reclaim_dirties_a_page_without_buffers_on_buffer_heads_only() {
    for (flavour, broken) in [(FsFlavour::BufferHead, true), (FsFlavour::Iomap, false)] {
        let w = world(PresetId::Latest, flavour, Cached::No);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let n = w
            .pin_user_pages(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1);
        let p = pages[0];
        w.writeback_inode(&mut c, 0).unwrap();
        assert_eq!(
            w.reclaim_file_folio(&mut c, 0, 0).unwrap(),
            Reclaimed::KeptReferenced
        );
        assert_eq!(
            flags(&w, p) & pg::HAS_BUFFERS,
            0,
            "{flavour:?}: no buffers left"
        );
        let r = w.unpin_user_pages_dirty_lock(&mut c, &pages, true);
        match (broken, r) {
            (true, Err(v)) => assert_eq!(v.invariant, Invariant::DirtyWithoutBuffers),
            (false, Ok(())) => w.check_quiescent(&c.ledger).unwrap(),
            (b, r) => panic!("{flavour:?}: broken={b} but the completion gave {r:?}"),
        }
    }
}

#[test]
fn a_clean_page_that_differs_from_disk_is_a_lost_write() {
    let w = world(PresetId::Latest, FsFlavour::Iomap, Cached::Clean);
    let p = cached_page(&w, 0).unwrap();
    // Scribble behind the filesystem's back: no dirty bit, no disk write.
    w.write_page(p, 0, 0xdead);
    let v = w.check_quiescent(&Ledger::default()).unwrap_err();
    assert_eq!(v.invariant, Invariant::NoLostWrite);
}

#[test]
fn a_hole_punched_under_a_dio_pin_leaves_an_orphan_page_and_zeros_on_disk() {
    for flavour in [FsFlavour::BufferHead, FsFlavour::Iomap] {
        let w = world(PresetId::Latest, flavour, Cached::Dirty);
        let mut c = Ctx::new(0, 1, false);
        let old = store(&w, &mut c, 0);
        let mut pages = Vec::new();
        w.pin_user_pages(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        let p = pages[0];
        w.punch_hole(&mut c, 0, 0).unwrap();
        assert_eq!(cached_page(&w, 0), None, "{flavour:?}");
        assert_eq!(
            w.mem.folio_ref_count(p),
            1024,
            "{flavour:?}: only the pin is left"
        );
        c.handles.push(gupcheck_model::ghost::Handle {
            pages: pages.clone(),
            pin: true,
            write: true,
            ..Default::default()
        });
        w.dma_write(&mut c, 0).unwrap();
        w.unpin_user_pages_dirty_lock(&mut c, &pages, true).unwrap();
        assert!(!w.ghost.frame(p).allocated() || w.mem.folio_ref_count(p) == 1);
        // The next access reads the punched block: zeros, not the old data.
        let now = w.user_access(&mut c, 0, 0, false).unwrap().unwrap();
        assert_eq!(now, 0, "{flavour:?}: old value {old:#x} is gone");
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// `durable after sync`: a store through the shared mapping reaches the disk
/// by the final sync; with `writepage_skipped` the sync clears PG_dirty and
/// writes nothing, and the check says so.
#[test]
fn a_final_sync_makes_the_last_store_durable() {
    use gupcheck_model::config::Mutation;
    use gupcheck_model::harness::engine::sync_and_check_durable;
    for skip in [false, true] {
        let mut w = world(PresetId::Latest, FsFlavour::Iomap, Cached::Clean);
        if skip {
            // Rebuilt with the mutation: the config is fixed at build.
            let mut cfg = w.cfg.clone();
            cfg.mutations = vec![Mutation::WritepageSkipped];
            let layout = Layout {
                files: vec![FileSpec {
                    pages: 2,
                    flavour: FsFlavour::Iomap,
                    cached: Cached::Clean,
                }],
                notifier: true,
                ..Layout::one(vec![
                    Region::file(0, 2, 0, true, Populate::PageCache),
                    Region::anon(4, 1, Populate::Anon),
                ])
            };
            w = World::build(cfg, &layout).unwrap();
        }
        let mut c = Ctx::new(0, 1, false);
        // Two stores: an untracked value is the step tick, and the first
        // one's (0) would equal the blank disk.
        store(&w, &mut c, 0);
        let v = store(&w, &mut c, 0);
        assert_ne!(v, 0);
        w.check_quiescent(&c.ledger).unwrap();
        let r = sync_and_check_durable(&w, &c.ledger);
        if skip {
            assert_eq!(r.unwrap_err().invariant, Invariant::DurableAfterSync);
            assert_eq!(w.inodes[0].disk.lock()[0][0], 0);
        } else {
            r.unwrap();
            assert_eq!(w.inodes[0].disk.lock()[0][0], v);
        }
    }
}

/// `unpin_user_pages_dirty_lock` re-dirties a page writeback cleaned while it
/// was pinned (what makes a device's late write durable); `unpin_dirty_lost`
/// forgets to.
#[test]
fn the_dirtying_unpin_redirties_a_cleaned_page() {
    use gupcheck_model::config::Mutation;
    for lost in [false, true] {
        let w = world(PresetId::Latest, FsFlavour::Iomap, Cached::Dirty);
        let mut cfg = w.cfg.clone();
        if lost {
            cfg.mutations = vec![Mutation::UnpinDirtyLost];
        }
        let layout = Layout {
            files: vec![FileSpec {
                pages: 2,
                flavour: FsFlavour::Iomap,
                cached: Cached::Dirty,
            }],
            notifier: true,
            ..Layout::one(vec![
                Region::file(0, 2, 0, true, Populate::PageCache),
                Region::anon(4, 1, Populate::Anon),
            ])
        };
        let w = World::<Std>::build(cfg, &layout).unwrap();
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        w.pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        w.writeback_inode(&mut c, 0).unwrap();
        assert_eq!(flags(&w, pages[0]) & pg::DIRTY, 0);
        w.unpin_user_pages_dirty_lock(&mut c, &pages, true).unwrap();
        assert_eq!(flags(&w, pages[0]) & pg::DIRTY != 0, !lost);
    }
}

/// Reclaim writes back and frees a dirty, mapped page nobody else holds, with
/// or without buffers (`is_page_cache_freeable`: the cache's reference and
/// isolation's, beside the buffers').
#[test]
fn reclaim_frees_a_dirty_page_with_or_without_buffers() {
    for flavour in [FsFlavour::BufferHead, FsFlavour::Iomap] {
        let w = world(PresetId::Latest, flavour, Cached::No);
        let mut c = Ctx::new(0, 1, false);
        let v = store(&w, &mut c, PAGE_SIZE);
        assert_eq!(
            w.reclaim_file_folio(&mut c, 0, 1).unwrap(),
            Reclaimed::Freed,
            "{flavour:?}"
        );
        assert_eq!(w.inodes[0].disk.lock()[1][0], v, "{flavour:?}");
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// Writeback writes dirty folios only (`folio_clear_dirty_for_io()` returns
/// false for a clean one): content that reached a page without a dirty bit
/// stays off the disk, which is why a lost dirty bit is a lost write.
#[test]
fn writeback_skips_a_clean_page() {
    let w = world(PresetId::Latest, FsFlavour::Iomap, Cached::Clean);
    let mut c = Ctx::new(0, 1, false);
    let p = cached_page(&w, 0).unwrap();
    let before = w.inodes[0].disk.lock()[0][0];
    w.write_page(p, 0, 0xdead);
    w.writeback_inode(&mut c, 0).unwrap();
    assert_eq!(w.inodes[0].disk.lock()[0][0], before);
    let v = w.check_quiescent(&c.ledger).unwrap_err();
    assert_eq!(v.invariant, Invariant::NoLostWrite);
}
