//! Migration of a PMD-mapped THP and of a page-cache page, sequentially
//! (KERNEL.md §5.6): the data moves and the address maps the new folio; a
//! pinned folio stays where it is, by the share step (anonymous, 5.19+) or
//! the expected refcount (every era; the only guard of page cache). Std
//! backend.

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::config::Mutation;
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::mm::migrate::Migrated;
use gupcheck_model::state::fs::{Cached, FileSpec, FsFlavour};
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::state::mem::pg;
use gupcheck_model::types::Pfn;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};

const P: u64 = PAGE_SIZE;

fn cfg(preset: PresetId, mutations: Vec<Mutation>) -> WorldConfig {
    WorldConfig {
        fanout_bits: 2,
        nr_frames: 48,
        nr_tables: 8,
        preset,
        mutations,
        trace: false,
        ..WorldConfig::small(Arch::Ipi)
    }
}

/// Pages 0..4: one PMD-mapped anonymous THP (PMD order 2 at fan-out 4), and
/// a free PMD-order folio to migrate it to.
fn thp_world(preset: PresetId, mutations: Vec<Mutation>) -> World<Std> {
    let layout = Layout {
        spare_pmd_folios: 1,
        ..Layout::one(vec![Region::anon(0, 4, Populate::Thp)])
    };
    World::build(cfg(preset, mutations), &layout).unwrap()
}

/// Page 0: a shared mapping of a one-page buffer-head file, cached and dirty
/// (with buffers).
fn file_world(preset: PresetId, mutations: Vec<Mutation>) -> World<Std> {
    let layout = Layout {
        files: vec![FileSpec {
            pages: 1,
            flavour: FsFlavour::BufferHead,
            cached: Cached::Dirty,
        }],
        ..Layout::one(vec![Region::file(0, 1, 0, true, Populate::PageCache)])
    };
    World::build(cfg(preset, mutations), &layout).unwrap()
}

fn pmd(w: &World<Std>, c: &mut Ctx, addr: u64) -> gupcheck_model::state::pgtable::Pte {
    let leaf = w.walk_lockless(c, 0, addr).unwrap().unwrap();
    assert_eq!(leaf.level, 2, "a PMD leaf maps {addr:#x}");
    leaf.pte
}

fn cached(w: &World<Std>) -> Pfn {
    w.inodes[0].i_pages.lock()[0].unwrap()
}

#[test]
fn a_thp_migrates_whole_and_a_pmd_maps_the_new_folio() {
    for preset in [PresetId::V5_11, PresetId::V6_1, PresetId::Latest] {
        let w = thp_world(preset, vec![]);
        let mut c = Ctx::new(0, 1, false);
        let old = pmd(&w, &mut c, 0).pfn();
        let values: Vec<u64> = (0..4)
            .map(|i| w.user_access(&mut c, 0, i * P, true).unwrap().unwrap())
            .collect();
        assert_eq!(w.compact_page(&mut c, 0, P).unwrap(), Migrated::Moved);
        let new = pmd(&w, &mut c, 0);
        assert_ne!(new.pfn(), old, "{}", preset.name());
        assert_eq!(w.mem.folio_order(new.pfn()), w.mem.folio_order(old));
        assert!(
            new.write(),
            "a writable PMD migration entry maps it writable"
        );
        assert!(!w.ghost.frame(old).allocated(), "the old THP is freed");
        assert_eq!(w.mem.folio_ref_count(new.pfn()), 1, "the PMD's reference");
        if preset == PresetId::Latest {
            let f = w.mem.frame(new.pfn()).flags.read_once();
            assert_ne!(f & pg::ANON_EXCLUSIVE, 0, "exclusive again");
        }
        for (i, v) in values.into_iter().enumerate() {
            let a = i as u64 * P;
            assert_eq!(w.user_access(&mut c, 0, a, false).unwrap(), Ok(v));
            assert_eq!(w.resolve(0, a), Some(new.pfn() + i as Pfn));
        }
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// A FOLL_PIN of one subpage keeps the whole THP: from 5.19 the share step
/// refuses it (`folio_try_share_anon_rmap_pmd`: the PMD is restored), before
/// only the expected refcount does (-EAGAIN, the PMD migration entry
/// restored). Without that check (`migration_ignores_refcount`) it still
/// holds from 5.19 and not before.
#[test]
fn a_pinned_thp_stays_put() {
    for (preset, mutation, want) in [
        (PresetId::V5_11, None, Migrated::KeptReferenced),
        (PresetId::Latest, None, Migrated::KeptPinned),
        (
            PresetId::V5_11,
            Some(Mutation::MigrationIgnoresRefcount),
            Migrated::Moved,
        ),
        (
            PresetId::Latest,
            Some(Mutation::MigrationIgnoresRefcount),
            Migrated::KeptPinned,
        ),
    ] {
        let w = thp_world(preset, mutation.into_iter().collect());
        let mut c = Ctx::new(0, 1, false);
        let before = pmd(&w, &mut c, 0);
        let mut pages = Vec::new();
        let n = w
            .pin_user_pages_fast(&mut c, P, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1);
        let got = w.compact_page(&mut c, 0, 0).unwrap();
        assert_eq!(got, want, "{} {mutation:?}", preset.name());
        if want == Migrated::Moved {
            assert_ne!(w.resolve(0, P), Some(pages[0]), "the pin lost its page");
            w.unpin_user_pages(&mut c, &pages).unwrap();
            continue;
        }
        // The same PMD; before 6.1 the restored one is clean (PG_dirty has it).
        let after = pmd(&w, &mut c, 0);
        assert_eq!(after.pfn(), before.pfn(), "{}", preset.name());
        assert!(after.write());
        assert_eq!(w.resolve(0, P), Some(pages[0]));
        w.unpin_user_pages(&mut c, &pages).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
        assert_eq!(w.compact_page(&mut c, 0, 0).unwrap(), Migrated::Moved);
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// A page-cache page moves with its place in the file, its dirtiness and its
/// buffers; the old page leaves the file; the final sync writes the store.
#[test]
fn a_page_cache_page_migrates_with_its_dirt_and_buffers() {
    for preset in [PresetId::V5_11, PresetId::Latest] {
        let w = file_world(preset, vec![]);
        let mut c = Ctx::new(0, 1, false);
        let v = w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
        let old = cached(&w);
        assert_eq!(w.compact_page(&mut c, 0, 0).unwrap(), Migrated::Moved);
        let new = cached(&w);
        assert_ne!(
            new,
            old,
            "{}: i_pages points at the new page",
            preset.name()
        );
        assert_eq!(w.resolve(0, 0), Some(new));
        assert!(!w.ghost.frame(old).allocated(), "the old page is freed");
        let f = w.mem.frame(new).flags.read_once();
        assert_ne!(f & pg::DIRTY, 0, "PG_dirty moved");
        assert_ne!(f & pg::HAS_BUFFERS, 0, "the buffers moved");
        assert_eq!(
            w.mem.folio_ref_count(new),
            3,
            "the page cache's, the buffers' and the mapping's references"
        );
        assert_eq!(w.mem.frame(new).mapping.read_once(), 1);
        assert_eq!(w.user_access(&mut c, 0, 0, false).unwrap(), Ok(v));
        w.check_quiescent(&c.ledger).unwrap();
        w.writeback_inode(&mut c, 0).unwrap();
        assert_eq!(w.inodes[0].disk.lock()[0][0], v, "the sync wrote the store");
        w.check_durable(&c.ledger).unwrap();
    }
}

/// A FOLL_PIN's reference fails `folio_ref_freeze` at the expected count: the
/// page stays cached and mapped. Without the check it is migrated away from
/// the pin in every era.
#[test]
fn a_pinned_page_cache_page_stays_put() {
    for preset in [PresetId::V5_11, PresetId::Latest] {
        for mutation in [None, Some(Mutation::MigrationIgnoresRefcount)] {
            let w = file_world(preset, mutation.into_iter().collect());
            let mut c = Ctx::new(0, 1, false);
            let mut pages = Vec::new();
            let n = w
                .pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
                .unwrap();
            assert_eq!(n, 1);
            let got = w.compact_page(&mut c, 0, 0).unwrap();
            if mutation.is_some() {
                assert_eq!(got, Migrated::Moved, "{}", preset.name());
                assert_ne!(cached(&w), pages[0], "the pin lost its page");
                w.unpin_user_pages(&mut c, &pages).unwrap();
                continue;
            }
            assert_eq!(got, Migrated::KeptReferenced, "{}", preset.name());
            assert_eq!(cached(&w), pages[0]);
            assert_eq!(w.resolve(0, 0), Some(pages[0]));
            w.unpin_user_pages(&mut c, &pages).unwrap();
            w.check_quiescent(&c.ledger).unwrap();
        }
    }
}
