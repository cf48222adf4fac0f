//! File THP collapse, sequentially (KERNEL.md §5.5, mm/collapse_file.rs):
//! `collapse_file()` replaces a PMD-aligned, fully cached range of the page
//! cache with copies and `retract_page_tables()` empties the PMD, so the next
//! access faults the new pages in with the same data; a page with a GUP pin
//! makes the collapse fail (`folio_ref_count() != 3`); a private mapping with
//! an anonymous copy in the range keeps its table (`vma->anon_vma`). Std
//! backend, every era that differs (6.1 frees the table at once, latest after
//! a grace period), both table-freeing modes.

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::mm::thp::Collapsed;
use gupcheck_model::state::fs::{Cached, FileSpec, FsFlavour};
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::state::pgtable::Pte;
use gupcheck_model::types::Pfn;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};

const P: u64 = PAGE_SIZE;
/// Pages per PMD at fan-out 4.
const NR: u64 = 4;

const ERAS: [(PresetId, Arch); 6] = [
    (PresetId::V5_11, Arch::Ipi),
    (PresetId::V5_11, Arch::Rcu),
    (PresetId::V6_1, Arch::Ipi),
    (PresetId::V6_1, Arch::Rcu),
    (PresetId::Latest, Arch::Ipi),
    (PresetId::Latest, Arch::Rcu),
];

/// Pages 0..4 (one PMD range at fan-out 4): a mapping of a four-page file of
/// `flavour`, every page cached clean and mapped.
fn world(preset: PresetId, arch: Arch, shared: bool, flavour: FsFlavour) -> World<Std> {
    let layout = Layout {
        files: vec![FileSpec {
            pages: NR as u32,
            flavour,
            cached: Cached::Clean,
        }],
        ..Layout::one(vec![Region::file(0, NR, 0, shared, Populate::PageCache)])
    };
    let cfg = WorldConfig {
        fanout_bits: 2,
        nr_frames: 48,
        nr_tables: 8,
        preset,
        trace: false,
        ..WorldConfig::small(arch)
    };
    World::build(cfg, &layout).unwrap()
}

fn cache(w: &World<Std>) -> Vec<Pfn> {
    w.inodes[0]
        .i_pages
        .lock()
        .iter()
        .map(|p| p.unwrap())
        .collect()
}

/// The PMD entry covering `addr` in mm 0.
fn pmd(w: &World<Std>, addr: u64) -> Pte {
    let mut slot = w.mms[0].pgd;
    for level in [4, 3] {
        let e = w.tables[slot as usize].read(w.cfg.index(addr, level));
        assert!(e.present() && !e.leaf(), "an upper table maps {addr:#x}");
        slot = e.table_slot();
    }
    w.tables[slot as usize].read(w.cfg.index(addr, 2))
}

fn name(preset: PresetId, arch: Arch) -> String {
    format!("{}/{arch:?}", preset.name())
}

/// The cache's pages are replaced by copies, the old ones freed, the PMD left
/// empty; loads fault the new pages in and read what the old ones held.
#[test]
fn collapse_replaces_the_cache_and_faults_map_the_new_pages() {
    for (preset, arch) in ERAS {
        for flavour in [FsFlavour::BufferHead, FsFlavour::Iomap] {
            let n = name(preset, arch);
            let w = world(preset, arch, true, flavour);
            let mut c = Ctx::new(0, 1, false);
            let old = cache(&w);
            let values: Vec<u64> = (0..NR)
                .map(|i| w.user_access(&mut c, 0, i * P, false).unwrap().unwrap())
                .collect();
            assert!(pmd(&w, 0).present(), "{n}: a PTE table before");
            let got = w.collapse_huge_page(&mut c, 0, P).unwrap();
            assert_eq!(got, Ok(Collapsed::Collapsed), "{n}");
            let new = cache(&w);
            for i in 0..NR as usize {
                assert_ne!(new[i], old[i], "{n}: i_pages[{i}] is a new page");
                assert!(!w.ghost.frame(old[i]).allocated(), "{n}: old page freed");
                assert_eq!(w.mem.frame(old[i]).mapping.read_once(), 0);
            }
            assert!(
                pmd(&w, 0).is_none(),
                "{n}: retract_page_tables left the PMD empty"
            );
            for i in 0..NR {
                let v = w.user_access(&mut c, 0, i * P, false).unwrap().unwrap();
                assert_eq!(v, values[i as usize], "{n}: page {i} has its data");
                assert_eq!(w.resolve(0, i * P), Some(new[i as usize]), "{n}");
            }
            assert!(pmd(&w, 0).present(), "{n}: the fault made a new table");
            // A store after the collapse goes to the new page and is synced.
            let v = w.user_access(&mut c, 0, 2 * P, true).unwrap().unwrap();
            w.rcu_barrier(&mut c).unwrap();
            w.check_quiescent(&c.ledger).unwrap();
            w.writeback_inode(&mut c, 0).unwrap();
            assert_eq!(w.inodes[0].disk.lock()[2][0], v, "{n}");
            w.check_durable(&c.ledger).unwrap();
        }
    }
}

/// A pin on one page (a read-only FOLL_LONGTERM pin, which GUP-fast may take
/// on a shared file page) is a fourth reference: collapse fails at that page
/// and rolls back. The cache and the PMD stay; the pinned page is unmapped
/// (try_to_unmap ran first), and the next access maps it again.
#[test]
fn a_pinned_page_makes_collapse_fail() {
    for (preset, arch) in ERAS {
        for pinned in [0u64, 2] {
            let n = format!("{} page {pinned}", name(preset, arch));
            let w = world(preset, arch, true, FsFlavour::BufferHead);
            let mut c = Ctx::new(0, 1, false);
            let old = cache(&w);
            let mut pages = Vec::new();
            let got = w
                .pin_user_pages_fast(
                    &mut c,
                    pinned * P,
                    1,
                    Foll::of(&[Flag::Longterm]),
                    Some(&mut pages),
                )
                .unwrap();
            assert_eq!(got, 1, "{n}");
            assert_eq!(pages[0], old[pinned as usize]);
            let got = w.collapse_huge_page(&mut c, 0, 0).unwrap();
            assert_eq!(got, Ok(Collapsed::KeptReferenced), "{n}");
            assert_eq!(cache(&w), old, "{n}: the cache is unchanged");
            assert!(pmd(&w, 0).present(), "{n}: the PTE table stays");
            w.user_access(&mut c, 0, pinned * P, false)
                .unwrap()
                .unwrap();
            assert_eq!(w.resolve(0, pinned * P), Some(pages[0]), "{n}");
            w.unpin_user_pages(&mut c, &pages).unwrap();
            w.rcu_barrier(&mut c).unwrap();
            w.check_quiescent(&c.ledger).unwrap();
        }
    }
}

/// A dirty page is not collapsed ("khugepaged only works on read-only fd").
#[test]
fn a_dirty_page_makes_collapse_fail() {
    for (preset, arch) in ERAS {
        let n = name(preset, arch);
        let w = world(preset, arch, true, FsFlavour::BufferHead);
        let mut c = Ctx::new(0, 1, false);
        let old = cache(&w);
        w.user_access(&mut c, 0, 3 * P, true).unwrap().unwrap();
        let got = w.collapse_huge_page(&mut c, 0, 0).unwrap();
        assert_eq!(got, Ok(Collapsed::NotSuitable), "{n}");
        assert_eq!(cache(&w), old, "{n}");
        assert!(pmd(&w, 0).present(), "{n}");
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// A private mapping with an anonymous copy in the range (`vma->anon_vma`):
/// the cache is collapsed, but the table stays, with the copy mapped; the
/// file pages fault in again from the new cache.
#[test]
fn a_private_mapping_with_an_anonymous_copy_keeps_its_table() {
    for (preset, arch) in ERAS {
        let n = name(preset, arch);
        let w = world(preset, arch, false, FsFlavour::Iomap);
        let mut c = Ctx::new(0, 1, false);
        let v = w.user_access(&mut c, 0, P, true).unwrap().unwrap();
        let copy = w.resolve(0, P).unwrap();
        let got = w.collapse_huge_page(&mut c, 0, 0).unwrap();
        assert_eq!(got, Ok(Collapsed::Collapsed), "{n}");
        assert!(pmd(&w, 0).present(), "{n}: the table with the copy stays");
        assert_eq!(w.resolve(0, P), Some(copy), "{n}");
        assert_eq!(w.user_access(&mut c, 0, P, false).unwrap(), Ok(v));
        w.user_access(&mut c, 0, 0, false).unwrap().unwrap();
        assert_eq!(w.resolve(0, 0), Some(cache(&w)[0]), "{n}");
        w.rcu_barrier(&mut c).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}
