//! fork, sequentially: what `copy_page_range` shares, what it copies at once,
//! and what the write fault does afterwards, per era. Std backend.

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::gup::api::GupApi;
use gupcheck_model::harness::ops::{FlagSel, Op, ReleaseApi, OPS_VERSION};
use gupcheck_model::harness::scenario::{Scenario, Window};
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::state::mem::pg;
use gupcheck_model::state::pgtable::Pte;
use gupcheck_model::types::Pfn;
use gupcheck_model::{run, Arch, Engine, PresetId, World, WorldConfig};

fn world(preset: PresetId) -> World<Std> {
    world_with(preset, Region::anon(0, 2, Populate::Anon))
}

/// A two-address-space world on 4-entry tables with one region.
fn world_with(preset: PresetId, region: Region) -> World<Std> {
    let cfg = WorldConfig {
        fanout_bits: 2,
        nr_frames: 48,
        nr_tables: 16,
        nr_mms: 2,
        preset,
        trace: false,
        ..WorldConfig::small(Arch::Ipi)
    };
    World::build(cfg, &Layout::one(vec![region])).unwrap()
}

/// The PTE mapping `addr` in `mm`, read at rest.
fn pte(w: &World<Std>, mm: usize, addr: u64) -> Option<Pte> {
    let mut slot = w.mms[mm].pgd;
    for level in (2..=4).rev() {
        let e = Pte(w.tables[slot as usize].entries[w.cfg.index(addr, level)].read_once());
        if !e.present() {
            return None;
        }
        slot = e.table_slot();
    }
    let e = Pte(w.tables[slot as usize].entries[w.cfg.index(addr, 1)].read_once());
    e.present().then_some(e)
}

#[test]
fn fork_shares_write_protected_and_the_first_writes_copy_or_reuse() {
    for preset in PresetId::ALL {
        let w = world(preset);
        let mut c = Ctx::new(0, 1, false);
        let page: Pfn = pte(&w, 0, 0).unwrap().pfn();
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        let (p, ch) = (pte(&w, 0, 0).unwrap(), pte(&w, 1, 0).unwrap());
        assert_eq!((p.pfn(), ch.pfn()), (page, page), "{}", preset.name());
        assert!(
            !p.write() && !ch.write(),
            "{}: both write-protected",
            preset.name()
        );
        assert_eq!(w.mem.folio_ref_count(page), 2);
        assert_eq!(w.mem.frame(page).mapcount.read_once(), 2);
        // The child writes first: it gets a copy; the parent's write then finds
        // the page its own and reuses it, whatever the era's rule.
        let v = w.user_access(&mut c, 1, 0, true).unwrap().unwrap();
        assert_ne!(pte(&w, 1, 0).unwrap().pfn(), page, "{}", preset.name());
        w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
        assert_eq!(
            pte(&w, 0, 0).unwrap().pfn(),
            page,
            "{}: reused",
            preset.name()
        );
        assert_eq!(w.user_access(&mut c, 1, 0, false).unwrap(), Ok(v));
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn a_pinned_page_is_copied_for_the_child_at_fork_from_5_9() {
    for (preset, early) in [
        (PresetId::Seed, false),
        (PresetId::V5_7, false),
        (PresetId::V5_8, false),
        (PresetId::V5_10, true),
        (PresetId::V5_11, true),
        (PresetId::V6_1, true),
        (PresetId::Latest, true),
    ] {
        let w = world(preset);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let n = w
            .pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1);
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        let (p, ch) = (pte(&w, 0, 0).unwrap(), pte(&w, 1, 0).unwrap());
        assert_eq!(p.pfn(), pages[0], "{}", preset.name());
        assert_eq!(
            ch.pfn() != pages[0],
            early,
            "{}: child's copy",
            preset.name()
        );
        assert_eq!(
            p.write(),
            early,
            "{}: parent keeps it writable",
            preset.name()
        );
        if preset >= PresetId::V6_1 {
            let f = w.mem.frame(pages[0]).flags.read_once();
            assert_ne!(
                f & pg::ANON_EXCLUSIVE,
                0,
                "{}: still exclusive",
                preset.name()
            );
        }
        w.unpin_user_pages(&mut c, &pages).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// `MMF_HAS_PINNED` only opens the test: a page of a pinning mm that is not
/// itself maybe-pinned is shared as any other (`page_needs_cow_for_dma()`,
/// `folio_needs_cow_for_dma()`); copying it would be an unnecessary COW.
#[test]
fn an_unpinned_page_of_a_pinning_mm_is_shared_at_fork() {
    const P: u64 = gupcheck_model::types::PAGE_SIZE;
    for preset in [
        PresetId::V5_10,
        PresetId::V5_11,
        PresetId::V6_1,
        PresetId::Latest,
    ] {
        let w = world(preset);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let n = w
            .pin_user_pages_fast(&mut c, 0, 1, Foll::of(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1);
        let other = pte(&w, 0, P).unwrap().pfn();
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        assert_ne!(pte(&w, 1, 0).unwrap().pfn(), pages[0], "{}", preset.name());
        assert_eq!(
            pte(&w, 1, P).unwrap().pfn(),
            other,
            "{}: the unpinned page is shared",
            preset.name()
        );
        assert_eq!(w.mem.frame(other).mapcount.read_once(), 2);
        w.unpin_user_pages(&mut c, &pages).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

fn thp_world(preset: PresetId) -> World<Std> {
    world_with(preset, Region::anon(4, 4, Populate::Thp))
}

/// The PMD leaf mapping `addr` in `mm`, read at rest.
fn pmd_leaf(w: &World<Std>, mm: usize, addr: u64) -> Option<Pte> {
    let mut slot = w.mms[mm].pgd;
    for level in (2..=4).rev() {
        let e = Pte(w.tables[slot as usize].entries[w.cfg.index(addr, level)].read_once());
        if !e.present() {
            return None;
        }
        if e.leaf() {
            return (level == 2).then_some(e);
        }
        slot = e.table_slot();
    }
    None
}

/// `copy_huge_pmd`: an unpinned THP is shared as one PMD leaf; a pinned one,
/// from 5.9, is split in the parent and copied page by page for the child,
/// the parent keeping the pinned subpage mapped writable.
#[test]
fn fork_shares_a_thp_leaf_unless_it_may_be_pinned() {
    const P: u64 = gupcheck_model::types::PAGE_SIZE;
    for (preset, early) in [
        (PresetId::V5_7, false),
        (PresetId::V5_10, true),
        (PresetId::Latest, true),
    ] {
        let w = thp_world(preset);
        let mut c = Ctx::new(0, 1, false);
        let head = pmd_leaf(&w, 0, 4 * P).unwrap().pfn();
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        let (p, ch) = (
            pmd_leaf(&w, 0, 4 * P).unwrap(),
            pmd_leaf(&w, 1, 4 * P).unwrap(),
        );
        assert_eq!((p.pfn(), ch.pfn()), (head, head), "{}", preset.name());
        assert!(!p.write() && !ch.write(), "{}", preset.name());
        assert_eq!(w.mem.frame(head).entire_mapcount.read_once(), 2);
        w.check_quiescent(&c.ledger).unwrap();

        let w = thp_world(preset);
        let mut c = Ctx::new(0, 1, false);
        let mut pages = Vec::new();
        let flags = Foll::of(&[Flag::Write]);
        let n = w
            .pin_user_pages_fast(&mut c, 5 * P, 1, flags, Some(&mut pages))
            .unwrap();
        assert_eq!(n, 1);
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        assert_eq!(
            pmd_leaf(&w, 0, 4 * P).is_none(),
            early,
            "{}: split in the parent",
            preset.name()
        );
        if early {
            let (p, ch) = (pte(&w, 0, 5 * P).unwrap(), pte(&w, 1, 5 * P).unwrap());
            assert_eq!(p.pfn(), pages[0], "{}", preset.name());
            assert!(p.write(), "{}: parent keeps the pinned page", preset.name());
            assert_ne!(ch.pfn(), pages[0], "{}: child's copy", preset.name());
        }
        w.unpin_user_pages(&mut c, &pages).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// Two threads of one process: one pins page 0 for write (`pin_user_pages`,
/// under `mmap_lock`, so fork sees the pin if it comes first), lets a device
/// write through the pin and unpins (a DIO completing); the other forks, then
/// runs `child`'s ops. A device write that lands after fork began and before
/// fork shared the page is part of the child's snapshot, in the page fork
/// shared and in every copy of it.
fn dma_while_fork_runs(name: &str, child: Vec<Op>) -> Scenario {
    dma_on_page_while_fork_runs(
        name,
        Region::anon(0, 2, Populate::Anon),
        0,
        "copy_present_pte: share wrprotected",
        child,
    )
}

/// As `dma_while_fork_runs`, on `page` of `region`; the window closes at
/// `shared`, the step where fork shares that page.
fn dma_on_page_while_fork_runs(
    name: &str,
    region: Region,
    page: u16,
    shared: &str,
    child: Vec<Op>,
) -> Scenario {
    Scenario {
        name: name.into(),
        about: "DIO pin + device write + unpin against fork; then the child's ops".into(),
        version: OPS_VERSION,
        // A free PMD-order folio for the collapse.
        layout: Layout {
            spare_pmd_folios: 1,
            ..Layout::one(vec![region])
        },
        threads: vec![
            vec![
                gup_at(GupApi::PinUserPages, 0, page),
                Op::DmaWrite { handle: 0 },
                RELEASE,
            ],
            [vec![Op::Fork { child: 1 }], child].concat(),
        ],
        world: WorldConfig {
            nr_mms: 2,
            ..WorldConfig::small(Arch::Rcu)
        },
        // The device writes while fork copies, before it shares page 0.
        window: Some(Window {
            thread: 1,
            open: "copy_page_range: write_seqcount_begin".into(),
            racer: "device dma write".into(),
            close: shared.into(),
        }),
    }
}

/// A write GUP call on page 0 of the calling thread's address space.
fn gup(api: GupApi, mm: u8) -> Op {
    gup_at(api, mm, 0)
}

/// A write GUP call on `page` of the calling thread's address space.
fn gup_at(api: GupApi, mm: u8, page: u16) -> Op {
    Op::Gup {
        api,
        mm,
        page,
        nr: 1,
        flags: FlagSel::WRITE,
    }
}

const RELEASE: Op = Op::Release {
    handle: 0,
    how: ReleaseApi::Matching,
};

/// The parent unmaps the region (no store of its own to race with the
/// device's): the child's pages are then mapped by the child alone, as
/// migration and collapse want them.
const PARENT_UNMAPS: Op = Op::Munmap { mm: 0, region: 0 };

/// no leak after fork judges a child's copy of a page fork shared by when
/// fork shared that page, whichever path copied it: the child's write fault
/// (`wp_page_copy`, here under its write pin), migration (`migrate_folio`),
/// khugepaged's collapse (`__collapse_huge_page_copy`). Judged by the copy's
/// own frame, which fork never gave the child, each was a leak.
#[test]
fn a_child_copy_of_a_page_written_while_fork_ran_is_no_leak() {
    let load = Op::Load { mm: 1, page: 0 };
    let variants = [
        dma_while_fork_runs(
            "child_write_pin_copies",
            vec![
                Op::UseMm { mm: 1 },
                gup(GupApi::PinUserPagesFast, 1),
                Op::ReadHandle { handle: 0 },
                RELEASE,
            ],
        ),
        dma_while_fork_runs(
            "child_page_migrates",
            vec![PARENT_UNMAPS, Op::Migrate { mm: 1, page: 0 }, load.clone()],
        ),
        dma_while_fork_runs(
            "child_pages_collapse",
            vec![PARENT_UNMAPS, Op::Collapse { mm: 1, page: 0 }, load],
        ),
        // A THP fork shares whole (`copy_huge_pmd`): the child's view of its
        // tail page dates from there too.
        dma_on_page_while_fork_runs(
            "child_reads_thp_tail",
            Region::anon(0, 2, Populate::Thp),
            1,
            "copy_huge_pmd: share wrprotected",
            vec![Op::Load { mm: 1, page: 1 }],
        ),
    ];
    for sc in &variants {
        for arch in Arch::ALL {
            let cfg = sc.config(arch, &[]);
            let loom = Engine::Loom {
                preemption_bound: Some(2),
            };
            let shuttle = [
                Engine::ShuttleRandom {
                    iterations: 1000,
                    seed: 1,
                },
                Engine::ShuttlePct {
                    iterations: 1000,
                    depth: 3,
                    seed: 1,
                },
            ];
            for engine in std::iter::once(loom).chain(shuttle) {
                let o = run(sc, &cfg, &engine).unwrap();
                if let Some(f) = o.failure {
                    panic!("{} {arch:?} {engine:?}: {}", sc.name, f.violation);
                }
                // Shuttle may switch at every shared access, and so lets the
                // device write inside fork's copy. loom reorders conflicting
                // accesses only, and the ghost's clock is none: it need not
                // place the device's value after fork began (its part is the
                // weak-memory orderings of the rest).
                if !matches!(engine, Engine::Loom { .. }) {
                    assert!(o.window_hits > 0, "{} {arch:?} {engine:?}", sc.name);
                }
            }
        }
    }
}

/// The child loads page 0 while another of its threads unmaps it, maps it
/// again and stores into the new page: the load is judged by the page it
/// read, not by whatever the address maps once the load is done. The
/// interleaving takes three context switches at the right places: schedules
/// are drawn from bytes, in runs that keep one thread going, as a fuzzer's
/// would be.
#[test]
fn a_child_load_is_judged_by_the_page_it_read() {
    use gupcheck_model::harness::engine::run_bytes;
    let load = |page| Op::Load { mm: 1, page };
    let mut sc = dma_while_fork_runs("child_load_vs_remap", vec![load(0), load(1)]);
    sc.threads.push(vec![
        Op::Munmap { mm: 1, region: 0 },
        Op::Mmap { mm: 1, region: 0 },
        Op::Touch {
            mm: 1,
            page: 0,
            write: true,
        },
    ]);
    // The new page is stored into between the child's two loads.
    sc.window = Some(Window {
        thread: 1,
        open: "user load".into(),
        racer: "user store".into(),
        close: "user load".into(),
    });
    let cfg = sc.config(Arch::Rcu, &[]);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut hits = 0;
    for i in 0..20_000 {
        let mut bytes = Vec::new();
        for _ in 0..6 {
            let r = next();
            bytes.extend(std::iter::repeat_n(r as u8, (r >> 8) as usize % 64 + 1));
        }
        let o = run_bytes(&sc, &cfg, &bytes).unwrap();
        if let Some(f) = o.failure {
            panic!("schedule {i}: {}", f.violation);
        }
        hits += o.window_hits;
    }
    assert!(hits > 0, "a store into the new page between the loads");
}

/// The case `gupcheck stress` shrank (latest, rcu, the random world): one
/// thread forks and, as the child, pins for write and reads through the pin;
/// the other pins, lets the device write and unpins while fork runs. The
/// child's write pin copies the page fork shared, device write included.
#[test]
fn the_shrunk_stress_case_is_no_leak() {
    use gupcheck_model::harness::fuzzing::random_world;
    let gup = |api, mm, page, nr, flags| Op::Gup {
        api,
        mm,
        page,
        nr,
        flags,
    };
    let sc = random_world(
        vec![
            vec![
                Op::Fork { child: 205 },
                Op::UseMm { mm: 215 },
                gup(GupApi::PinUserPagesFast, 192, 44094, 55, FlagSel::WRITE),
                Op::ReadHandle { handle: 63 },
            ],
            vec![
                gup(
                    GupApi::PinUserPagesFastOnly,
                    239,
                    15669,
                    38,
                    FlagSel {
                        write: true,
                        longterm: true,
                        force: true,
                    },
                ),
                Op::DmaWrite { handle: 177 },
                Op::Release {
                    handle: 82,
                    how: ReleaseApi::RangeDirtyLock,
                },
            ],
        ],
        true,
    );
    // As stress runs it: past the gup+DMA outcomes the kernel never fixed.
    let mut cfg = sc.config(Arch::Rcu, &[]);
    cfg.tolerate = gupcheck_model::harness::fuzzing::KNOWN_OPEN.to_vec();
    for engine in [
        Engine::ShuttleRandom {
            iterations: 5000,
            seed: 1,
        },
        Engine::ShuttlePct {
            iterations: 5000,
            depth: 3,
            seed: 1,
        },
    ] {
        let o = run(&sc, &cfg, &engine).unwrap();
        if let Some(f) = o.failure {
            panic!("{engine:?}: {}", f.violation);
        }
    }
}
