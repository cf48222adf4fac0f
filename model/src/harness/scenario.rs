//! The scenario catalogue: a layout plus one op list per thread, and the world
//! shape it wants. Every engine runs the same scenarios.

use serde::{Deserialize, Serialize};

use crate::config::{Arch, CounterScale, Mutation, WorldConfig};
use crate::gup::api::GupApi;
use crate::harness::ops::{FlagSel, ReleaseApi};
use crate::harness::ops::{Op, OPS_VERSION};
use crate::preset::PresetId;
use crate::state::fs::{Cached, FileSpec, FsFlavour};
use crate::state::layout::{HugeSize, Layout, Populate, Region};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub version: u32,
    pub layout: Layout,
    pub threads: Vec<Vec<Op>>,
    /// World shape (fan-out, frames, tables); arch and mutations come from the run.
    pub world: WorldConfig,
    /// The race window of the scenario's ordering-only bugs, for counting how
    /// often a sequentially consistent engine's executions reach it.
    #[serde(default)]
    pub window: Option<Window>,
}

/// A race window: thread `thread` between its steps `open` (empty: its start)
/// and `close`, with a `racer` step of another thread in between.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub thread: usize,
    pub open: String,
    pub racer: String,
    pub close: String,
}

impl Window {
    fn new(thread: usize, open: &str, racer: &str, close: &str) -> Option<Window> {
        Some(Window {
            thread,
            open: open.into(),
            racer: racer.into(),
            close: close.into(),
        })
    }

    /// Whether an execution's trace (in global order) passed through the window.
    pub(crate) fn hit(&self, trace: &[crate::ghost::Step]) -> bool {
        let mine = |name: &str| -> Vec<u64> {
            trace
                .iter()
                .filter(|s| s.thread == self.thread && s.name == name)
                .map(|s| s.seq)
                .collect()
        };
        let open = if self.open.is_empty() {
            0
        } else {
            match mine(&self.open).first() {
                Some(&o) => o,
                None => return false,
            }
        };
        let Some(close) = mine(&self.close).into_iter().find(|&c| c > open) else {
            return false;
        };
        trace.iter().any(|s| {
            s.thread != self.thread && s.name == self.racer && s.seq > open && s.seq < close
        })
    }
}

impl Scenario {
    /// The world of one run of this scenario under the latest preset.
    pub fn config(&self, arch: Arch, mutations: &[Mutation]) -> WorldConfig {
        self.config_for(PresetId::Latest, arch, mutations)
    }

    /// The world of one run of this scenario.
    pub fn config_for(&self, preset: PresetId, arch: Arch, mutations: &[Mutation]) -> WorldConfig {
        let mut c = self.world.clone();
        c.preset = preset;
        c.arch = arch;
        c.mutations = mutations.to_vec();
        c.nr_cpus = c.nr_cpus.max(self.threads.len() + 1);
        c
    }
}

/// `munmap_vs_lockless_walker`: the first design-card race at its core. One thread
/// unmaps a populated region (its PTE table becomes empty and is freed), maps it
/// again and touches it, so last-in first-out reuse hands the freed frames out
/// again; another walks the same address without locks, grabs a speculative
/// reference, rechecks and reads the page. A second region keeps the upper tables
/// alive, so exactly one PTE table is freed.
///
/// Clean in both arch modes. `walker_skips_registration` walks a freed table in
/// both; `walker_plain_get` resurrects a freed page under RCU only.
pub fn munmap_vs_lockless_walker() -> Scenario {
    Scenario {
        name: "munmap_vs_lockless_walker".into(),
        about: "lockless walker (irqs off, speculative ref, recheck) against munmap freeing pages and the PTE table".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 2, Populate::Anon),
            Region::anon(2, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                Op::Munmap { mm: 0, region: 0 },
                Op::Mmap { mm: 0, region: 0 },
                Op::Touch { mm: 0, page: 0, write: true },
            ],
            vec![Op::LocklessPeek { mm: 0, page: 0 }],
        ],
        world: small_world(12, 8),
        // The walker has announced itself and read the PMD when munmap unhooks
        // the PTE table: the barrier decides whether the free waits for it.
        window: Window::new(1, "local_irq_save", "free_pgd_range: clear entry", "gup_fast_pte_range: read pte"),
    }
}

/// `fault_vs_lockless_walker`: a write fault publishes a fresh page while a walker
/// looks the address up without locks. The frame it gets was just freed by an
/// unmap of a page the same thread had written (last in, first out), so its old
/// contents are still there: the walker must see either nothing, or the zeroed
/// page (`__folio_mark_uptodate`'s smp_wmb orders the zeroing before the PTE), or
/// the new store, never the frame's previous contents.
///
/// Clean in both arch modes; `fault_no_wmb` is found by loom only.
pub(crate) fn fault_vs_lockless_walker() -> Scenario {
    Scenario {
        name: "fault_vs_lockless_walker".into(),
        about: "lockless walker against a write fault that publishes a recycled frame".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 1, Populate::None),
            Region::anon(1, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                Op::Touch {
                    mm: 0,
                    page: 1,
                    write: true,
                },
                Op::Munmap { mm: 0, region: 1 },
                Op::Touch {
                    mm: 0,
                    page: 0,
                    write: true,
                },
            ],
            vec![Op::LocklessPeek { mm: 0, page: 0 }],
        ],
        world: small_world(12, 8),
        // The walker reads the page the fault published: the smp_wmb decides
        // whether it can see the frame's previous contents.
        window: Window::new(1, "", "do_anonymous_page: set_pte_at", "read page"),
    }
}

/// `gup_fast_vs_munmap`: the first design-card race with the real fast path.
/// One thread pins a page with `pin_user_pages_fast` and unpins it; the other
/// unmaps it (its PTE table stays: a neighbour keeps it), faults a copy-on-write
/// page elsewhere, which reuses the freed frame (last in, first out), then maps
/// the address again and touches it.
///
/// A pin taken before the zap may return a page that is no longer mapped (GUP
/// promises "not freed", not "still mapped"). What must never happen: a reference
/// raised from zero, a walk through a freed table, or a returned page that was
/// freed and reused between the walk and the grab.
pub fn gup_fast_vs_munmap() -> Scenario {
    Scenario {
        name: "gup_fast_vs_munmap".into(),
        about: "pin_user_pages_fast against munmap, a reusing fault elsewhere and a remap".into(),
        version: OPS_VERSION,
        layout: reuse_layout(),
        threads: vec![
            unmap_reuse_remap(true),
            vec![
                gup(GupApi::PinUserPagesFast, 0, 1, FlagSel::WRITE),
                release(ReleaseApi::Matching),
            ],
        ],
        world: small_world(11, 6),
        window: None,
    }
}

/// `gup_fast_across_tables`: a FOLL_PIN GUP-fast whose range crosses from one
/// PTE table into the next (`gup_fast_pmd_range` steps to the next PMD entry)
/// while munmap frees the second table's only page and the table with it, and
/// a remap faults a new one in. The walk of the second table must see either
/// the old table (kept alive by the IPI or the grace period) or the new one.
///
/// Clean in both arch modes; `pte_index_unmasked` reads past the table, which
/// the model reports as a `model crash`.
pub fn gup_fast_across_tables() -> Scenario {
    Scenario {
        name: "gup_fast_across_tables".into(),
        about: "pin_user_pages_fast over two PTE tables against munmap and remap of the second"
            .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 2, Populate::Anon),
            Region::anon(2, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                gup(GupApi::PinUserPagesFast, 0, 3, FlagSel::WRITE),
                release(ReleaseApi::Matching),
            ],
            vec![
                Op::Munmap { mm: 0, region: 1 },
                Op::Mmap { mm: 0, region: 1 },
                Op::Touch {
                    mm: 0,
                    page: 2,
                    write: true,
                },
            ],
        ],
        world: small_world(12, 8),
        window: None,
    }
}

/// Page 0 to be unmapped, page 1 keeping its PTE table, page 2 read-faulted
/// (the zero page) for a copy-on-write fault that reuses a freed frame.
fn reuse_layout() -> Layout {
    Layout::one(vec![
        Region::anon(0, 1, Populate::Anon),
        Region::anon(1, 1, Populate::Anon),
        Region::anon(2, 1, Populate::ZeroPage),
    ])
}

/// munmap page 0, a COW fault on page 2 that reuses its frame (last in, first
/// out), mmap page 0 again and touch it.
fn unmap_reuse_remap(store: bool) -> Vec<Op> {
    vec![
        Op::Munmap { mm: 0, region: 0 },
        Op::Touch {
            mm: 0,
            page: 2,
            write: true,
        },
        Op::Mmap { mm: 0, region: 0 },
        Op::Touch {
            mm: 0,
            page: 0,
            write: store,
        },
    ]
}

/// `concurrent_pin_unpin`: a FOLL_PIN user (fast path, checks the page reads as
/// pinned) and a FOLL_GET user (DIO-style: dirty, then put) on one page at once.
/// The counters must come back to the mapping's own reference.
pub(crate) fn concurrent_pin_unpin() -> Scenario {
    Scenario {
        name: "concurrent_pin_unpin".into(),
        about: "pin_user_pages_fast + unpin against get_user_pages_fast + put on one page".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![
            pin_check_release(Op::MaybeDmaPinned { handle: 0 }, ReleaseApi::DirtyLock),
            vec![
                gup(GupApi::GetUserPagesFast, 0, 1, FlagSel::WRITE),
                release(ReleaseApi::Matching),
            ],
        ],
        world: small_world(10, 6),
        window: None,
    }
}

/// `huge_page_pin_overflow`: two threads each take four whole pins of a
/// hugetlb-like folio and keep them, on an 8-bit counter with bias 4 (the seed's
/// arithmetic at a scale loom can reach: a whole pin adds 16 under the v11
/// bias-on-head counting, so the eighth overflows the counter, as a 1 GiB page
/// did after "about 8" pins; with the exact pincount it adds 4).
pub fn huge_page_pin_overflow() -> Scenario {
    pins_kept_by_two(
        "huge_page_pin_overflow",
        "whole pins of a huge folio held by two threads, on a scaled counter",
        Region::hugetlb(0, 4, HugeSize::Pud, Populate::Hugetlb),
        gup(GupApi::PinUserPagesFast, 0, 4, FlagSel::default()),
        (16, 8),
    )
}

/// Two threads that each take `pin` four times and keep the pins, on a world
/// of `frames` frames whose counter has `bits` bits and a pin bias of 4: the
/// overflows of the counting eras at a scale the model checkers reach.
fn pins_kept_by_two(
    name: &str,
    about: &str,
    region: Region,
    pin: Op,
    (frames, bits): (usize, u32),
) -> Scenario {
    Scenario {
        name: name.into(),
        about: about.into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![region]),
        threads: vec![vec![pin.clone(); 4], vec![pin; 4]],
        world: WorldConfig {
            nr_frames: frames,
            nr_tables: 6,
            counter: CounterScale { bits, pin_bias: 4 },
            ..WorldConfig::small(Arch::Ipi)
        },
        window: None,
    }
}

/// `zero_page_pin`: read-only pins of never-written anonymous memory pin the
/// shared zero page through the slow path (its PTE is special, so the fast path
/// falls back). Like vfio before 873aefb376bb, nobody unpins: on a 6-bit counter
/// with bias 4, eight pins overflow the zero page's count unless pins of the
/// zero page are no-ops (c8070b787519, 6.5).
pub fn zero_page_pin() -> Scenario {
    pins_kept_by_two(
        "zero_page_pin",
        "read-only pins of the shared zero page, never released, on a scaled counter",
        Region::anon(0, 1, Populate::ZeroPage),
        gup(GupApi::PinUserPages, 0, 1, FlagSel::default()),
        (10, 6),
    )
}

/// `gup_unlocked_vs_munmap`: `get_user_pages_unlocked` on swapped-out pages. The
/// swap-in asks for `mmap_lock` to be dropped while its I/O runs
/// (VM_FAULT_RETRY), and another thread unmaps the range in that window; the
/// retry with FOLL_TRIED must find the VMA again or stop with the prefix it has.
pub fn gup_unlocked_vs_munmap() -> Scenario {
    Scenario {
        name: "gup_unlocked_vs_munmap".into(),
        about: "get_user_pages_unlocked drops mmap_lock for swap-in I/O while munmap slips in"
            .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 2, Populate::Swapped),
            Region::anon(2, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                gup(GupApi::GetUserPagesUnlocked, 0, 2, FlagSel::default()),
                release(ReleaseApi::Matching),
            ],
            vec![Op::Munmap { mm: 0, region: 0 }],
        ],
        world: small_world(14, 8),
        window: None,
    }
}

/// A GUP call by this thread on `nr` pages of address space 0 from `page`.
fn gup(api: GupApi, page: u16, nr: u8, flags: FlagSel) -> Op {
    Op::Gup {
        api,
        mm: 0,
        page,
        nr,
        flags,
    }
}

/// Releases the thread's first GUP result.
fn release(how: ReleaseApi) -> Op {
    Op::Release { handle: 0, how }
}

/// A world with a spare address space for a fork child.
fn fork_world() -> WorldConfig {
    WorldConfig {
        nr_mms: 2,
        ..small_world(16, 12)
    }
}

/// A write pin of page 0 by `pin_user_pages_fast`, a check on it, its release.
fn pin_check_release(check: Op, how: ReleaseApi) -> Vec<Op> {
    vec![
        gup(GupApi::PinUserPagesFast, 0, 1, FlagSel::WRITE),
        check,
        release(how),
    ]
}

/// A long-term write pin of page 0 by `pin_user_pages_fast`, a store and a
/// coherence check, its release.
fn longterm_pin_check_release() -> Vec<Op> {
    let mut ops = pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::Matching);
    ops[0] = gup(
        GupApi::PinUserPagesFast,
        0,
        1,
        FlagSel {
            longterm: true,
            ..FlagSel::WRITE
        },
    );
    ops
}

/// A one-page file and a shared mapping of it, as a layout.
fn file_layout(flavour: FsFlavour, cached: Cached, populate: Populate) -> Layout {
    Layout {
        files: vec![FileSpec {
            pages: 1,
            flavour,
            cached,
        }],
        ..Layout::one(vec![Region::file(0, 1, 0, true, populate)])
    }
}

/// A device's life on one pinned page: pin (how `api` and `flags` say), write
/// through the pin, release dirtying the page (`unpin_user_pages_dirty_lock`,
/// or `set_page_dirty_lock` + `put_page` for a get).
fn dma_thread(api: GupApi, flags: FlagSel) -> Vec<Op> {
    vec![
        Op::Gup {
            api,
            mm: 0,
            page: 0,
            nr: 1,
            flags,
        },
        Op::DmaWrite { handle: 0 },
        release(ReleaseApi::DirtyLock),
    ]
}

fn file_world() -> WorldConfig {
    small_world(12, 6)
}

/// A model-checker world of `nr_frames` frames and `nr_tables` table slots.
fn small_world(nr_frames: usize, nr_tables: usize) -> WorldConfig {
    WorldConfig {
        nr_frames,
        nr_tables,
        ..WorldConfig::small(Arch::Ipi)
    }
}

/// `gup_fast_vs_page_mkclean`: the second design-card race. A DIO-style pin
/// through `pin_user_pages_fast(FOLL_WRITE)` of a dirty, writably mapped page of
/// a shared file mapping, a device write through the pin, and
/// `unpin_user_pages_dirty_lock`; against writeback of the file
/// (`folio_clear_dirty_for_io` -> `page_mkclean` -> disk).
///
/// GUP-fast must back off if page_mkclean write-protected the PTE between its
/// read and the recheck, so that the slow path's write fault calls
/// ->page_mkwrite (`skip_pte_recheck` breaks that: write pin through a writable
/// pte, under IPI too: the flush waits for the walker, which delays writeback
/// but does not make a grab after the clear valid). A pin taken *before* page_mkclean still lets the device write into a
/// page the filesystem believes clean: the gup+DMA problem the kernel never
/// fixed, `known-open` in every preset.
pub fn gup_fast_vs_page_mkclean() -> Scenario {
    Scenario {
        name: "gup_fast_vs_page_mkclean".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) + DMA + unpin_dirty_lock against writeback's page_mkclean".into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::Iomap, Cached::Dirty, Populate::PageCache),
        threads: vec![
            dma_thread(GupApi::PinUserPagesFast, FlagSel::WRITE),
            vec![Op::Writeback { file: 0 }],
        ],
        world: file_world(),
        window: None,
    }
}

/// `pin_vs_writeback_vs_reclaim`: Jan Kara's race (KERNEL.md §5.2, bug #14),
/// with FOLL_PIN. An O_DIRECT read into a shared mapping of a file page that is
/// not yet cached: `pin_user_pages(FOLL_WRITE)` faults it in, ->page_mkwrite
/// attaches buffers; the device writes; the DIO completes with
/// `unpin_user_pages_dirty_lock`. Against the flusher (writeback) and then
/// kswapd (reclaim: unmap, pageout, strip the clean buffers, `__remove_mapping`
/// refused by the pin's reference). The completion dirties a page whose buffers
/// reclaim stripped: ext4's BUG, `known-open` in every preset (FOLL_PIN made the
/// pin visible; no filesystem acts on it).
pub(crate) fn pin_vs_writeback_vs_reclaim() -> Scenario {
    Scenario {
        name: "pin_vs_writeback_vs_reclaim".into(),
        about: "DIO pin_user_pages into a shared file mapping against writeback then reclaim (buffer heads)".into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::BufferHead, Cached::No, Populate::None),
        threads: vec![
            dma_thread(GupApi::PinUserPages, FlagSel::WRITE),
            vec![
                Op::Writeback { file: 0 },
                Op::Reclaim { file: 0, index: 0 },
            ],
        ],
        world: file_world(),
        window: None,
    }
}

/// `dio_vs_reclaim_buffers`: the same race as John Hubbard's 4.4 reports, with
/// the DIO of the time: `get_user_pages_fast(FOLL_WRITE)` (FOLL_GET),
/// completion by `set_page_dirty_lock` + `put_page`, against the flusher
/// (writeback) and then kswapd (reclaim) on a cached, dirty page with buffers.
/// kswapd does not write out a page someone holds, but once the flusher has
/// cleaned it, `try_to_free_buffers` looks at the buffers, not at the page's
/// references.
pub(crate) fn dio_vs_reclaim_buffers() -> Scenario {
    Scenario {
        name: "dio_vs_reclaim_buffers".into(),
        about: "FOLL_GET DIO into a dirty shared file page against reclaim stripping its buffers"
            .into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::BufferHead, Cached::Dirty, Populate::PageCache),
        threads: vec![
            dma_thread(GupApi::GetUserPagesFast, FlagSel::WRITE),
            vec![Op::Writeback { file: 0 }, Op::Reclaim { file: 0, index: 0 }],
        ],
        world: file_world(),
        window: None,
    }
}

/// `rdma_longterm_vs_writeback`: an RDMA registration, `pin_user_pages_fast(
/// FOLL_WRITE | FOLL_LONGTERM)`, of a dirty page of a shared file mapping, a
/// device write, and the unpin; against writeback. From 6.5 the kernel refuses
/// long-term writable pins of file mappings that need dirty tracking
/// (`gup_fast_folio_allowed` falls back, `writable_file_mapping_allowed`
/// refuses): clean. Before, the pin outlives writeback and the device writes
/// into a page the filesystem believes clean: `known-open`.
pub(crate) fn rdma_longterm_vs_writeback() -> Scenario {
    Scenario {
        name: "rdma_longterm_vs_writeback".into(),
        about: "FOLL_PIN | FOLL_LONGTERM of a shared file page + DMA against writeback".into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::BufferHead, Cached::Dirty, Populate::PageCache),
        threads: vec![
            dma_thread(
                GupApi::PinUserPagesFast,
                FlagSel {
                    write: true,
                    longterm: true,
                    force: false,
                },
            ),
            vec![Op::Writeback { file: 0 }],
        ],
        world: file_world(),
        window: None,
    }
}

/// `notifier_device_vs_munmap`: a driver with an MMU interval notifier (the
/// seed's third case) maps a page for its device without pinning it and its
/// device writes through that mapping; munmap invalidates it first, then frees
/// the page, which a fault elsewhere reuses (last in, first out) before the
/// range is mapped again and read. The driver's `mmu_interval_read_retry` check under
/// its lock is what keeps the device off the freed page
/// (`notifier_skips_retry`: no use after free).
pub(crate) fn notifier_device_vs_munmap() -> Scenario {
    Scenario {
        name: "notifier_device_vs_munmap".into(),
        about: "MMU-notifier driver maps and writes a page (no pin) against munmap and reuse"
            .into(),
        version: OPS_VERSION,
        layout: Layout {
            notifier: true,
            ..reuse_layout()
        },
        threads: vec![
            vec![Op::NotifierMap { mm: 0, page: 0 }, Op::NotifierWrite],
            // A load at the end, not a store: a store would race with the
            // device's write to the same page, and which lands last is the
            // user's data race, not the protocol's.
            unmap_reuse_remap(false),
        ],
        world: small_world(11, 6),
        window: None,
    }
}

/// `store_vs_writeback`: the file world's own handshake, without GUP. User
/// stores through a shared mapping (the first faults into ->page_mkwrite)
/// against writeback twice: page_mkclean write-protects, the next store faults
/// again and redirties. Clean in every preset: no store is lost, no dirty page
/// is without buffers.
pub(crate) fn store_vs_writeback() -> Scenario {
    let store = Op::Touch {
        mm: 0,
        page: 0,
        write: true,
    };
    Scenario {
        name: "store_vs_writeback".into(),
        about:
            "user stores to a shared file mapping against writeback (page_mkwrite / page_mkclean)"
                .into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::BufferHead, Cached::Clean, Populate::PageCache),
        threads: vec![
            vec![store.clone(), store],
            vec![Op::Writeback { file: 0 }, Op::Writeback { file: 0 }],
        ],
        world: file_world(),
        window: None,
    }
}

/// `gup_fast_vs_fork`: bug #4 of KERNEL.md §7 (57efa1fe5957, 5.11), on the
/// mm's first pin. One thread of the parent pins a small anonymous page with
/// `pin_user_pages_fast(FOLL_WRITE)`, checks the pin is coherent (a store
/// through the address reaches the pinned page) and unpins; another thread
/// forks. Before 5.9 fork shares every page write-protected, so the parent's
/// next store copies the page away from its pin (Wrong COW); 5.9's early copy
/// of pinned pages (70e806e4e645) checks the pin under the PTL, which
/// GUP-fast does not take: the pin can land between fork's check and its
/// write-protect. 5.11's `write_protect_seq` makes GUP-fast back off; 5.19's
/// PageAnonExclusive keeps the same scheme.
///
/// Under weak memory the seqcount is not enough: fork's increment is ordered
/// by `smp_wmb()` only, and this pin is the mm's first, so fork's
/// `test_bit(MMF_HAS_PINNED)` (`has_pinned` before 5.14) can read 0 while
/// GUP-fast's re-read of the count sees it even (store buffering). The
/// variants take one stale read each: `gup_fast_vs_fork_pinned_mm` (the
/// small folio's `_refcount`), `gup_fast_vs_fork_thp` and
/// `gup_fast_vs_fork_thp_pte` (a large folio's `_pincount`).
pub fn gup_fast_vs_fork() -> Scenario {
    Scenario {
        name: "gup_fast_vs_fork".into(),
        about:
            "pin_user_pages_fast(FOLL_WRITE) + a coherence check against fork; the mm's first pin"
                .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 1, Populate::Anon),
            Region::anon(1, 1, Populate::Anon),
        ]),
        threads: vec![
            pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::Matching),
            vec![Op::Fork { child: 1 }],
        ],
        world: fork_world(),
        window: fork_window(),
    }
}

/// The race window of the `gup_fast_vs_fork` store buffering: GUP-fast's pin
/// lands while fork is between its `raw_write_seqcount_begin()` and its read
/// of the pin state. Sequentially consistent, one of them then sees the other.
fn fork_window() -> Option<Window> {
    Window::new(
        1,
        "copy_page_range: write_seqcount_begin",
        "try_grab_folio: pin add",
        "folio_needs_cow_for_dma",
    )
}

/// `gup_fast_vs_fork_pinned_mm`: `gup_fast_vs_fork` in an mm that has pinned
/// before (MMF_HAS_PINNED already set), so fork's pin check reads the small
/// folio's `_refcount` against the bias. 5.9-5.18 read it before taking the
/// child's reference (`copy_present_page()`, then `get_page()`): store
/// buffering, as on the first pin. From 5.19 (fb3d824d1a46) `folio_get()`
/// comes first, a relaxed RMW on that same word: either GUP-fast's grab reads
/// from it (and, through fork's `smp_wmb()`, sees the odd count) or fork's
/// read is coherence-ordered after the pin. Clean on 6.0, 6.1 and latest.
pub fn gup_fast_vs_fork_pinned_mm() -> Scenario {
    Scenario {
        name: "gup_fast_vs_fork_pinned_mm".into(),
        about: "gup_fast_vs_fork in an mm that has pinned before (MMF_HAS_PINNED set)".into(),
        layout: Layout {
            has_pinned: true,
            ..gup_fast_vs_fork().layout
        },
        ..gup_fast_vs_fork()
    }
}

/// `gup_fast_vs_fork_thp`: `gup_fast_vs_fork_pinned_mm` on a PMD-mapped THP.
/// `copy_huge_pmd()` reads the large folio's `_pincount`, which GUP-fast adds
/// to with a relaxed `atomic_add` after its fully ordered grab;
/// `folio_get()` on `_refcount` does not order that read. Store buffering in
/// every era from 5.11: the finding needs no first pin.
pub fn gup_fast_vs_fork_thp() -> Scenario {
    thp_fork_variant(
        "gup_fast_vs_fork_thp",
        "gup_fast_vs_fork_pinned_mm on a PMD-mapped THP (copy_huge_pmd)",
        Populate::Thp,
    )
}

/// `gup_fast_vs_fork_hugetlb`: the same on a 2 MiB hugetlb folio, which
/// `copy_hugetlb_page_range()` shares after `folio_get()` and
/// `hugetlb_try_dup_anon_rmap()`'s read of `_pincount`, in the
/// `write_protect_seq` write section (623a1ddfeb23). As for a THP, the
/// reference orders nothing about `_pincount`: store buffering from 5.11;
/// the parent's next store copies the folio away from the pin (`hugetlb_wp`:
/// mapcount 2). One more folio in the pool for the early COW.
pub fn gup_fast_vs_fork_hugetlb() -> Scenario {
    let base = gup_fast_vs_fork_thp();
    let per = 1u64 << base.world.fanout_bits;
    let mut layout = base.layout.clone();
    layout.mms[0][0] = Region::hugetlb(0, per, HugeSize::Pmd, Populate::Hugetlb);
    layout.spare_pmd_folios = 1;
    Scenario {
        name: "gup_fast_vs_fork_hugetlb".into(),
        about: "gup_fast_vs_fork_pinned_mm on a 2 MiB hugetlb folio (copy_hugetlb_page_range)"
            .into(),
        layout,
        world: WorldConfig {
            nr_frames: 28,
            ..base.world.clone()
        },
        ..base
    }
}

/// `hugetlb_cow_pin`: after fork, the parent takes a R/O pin of a hugetlb
/// folio the child shares (GUP-fast backs off: not exclusive; the slow path's
/// unshare fault makes `hugetlb_wp()` copy it, mapcount 2) while another of
/// its threads stores to it; then a store through the address must show
/// through the pin (cow.c's check). From 5.19 clean; before, nothing
/// unshares, and the store copies the folio away from the R/O pin.
pub fn hugetlb_cow_pin() -> Scenario {
    let store = Op::Touch {
        mm: 0,
        page: 0,
        write: true,
    };
    Scenario {
        name: "hugetlb_cow_pin".into(),
        about: "fork; R/O pin of the shared 2 MiB hugetlb folio (unshare) against a store".into(),
        version: OPS_VERSION,
        layout: Layout {
            spare_pmd_folios: 2,
            ..Layout::one(vec![Region::hugetlb(
                0,
                2,
                HugeSize::Pmd,
                Populate::Hugetlb,
            )])
        },
        threads: vec![
            vec![
                Op::Fork { child: 1 },
                gup(GupApi::PinUserPagesFast, 0, 1, FlagSel::default()),
                Op::CheckPinSees { handle: 0 },
                release(ReleaseApi::Matching),
            ],
            vec![store],
        ],
        world: WorldConfig {
            nr_frames: 20,
            ..fork_world()
        },
        window: None,
    }
}

/// `hugetlb_fork_pinned`: `fork_with_dma_in_flight` on a 2 MiB hugetlb
/// folio: a DIO pins it and the device writes, the process forks, the parent
/// stores and the DIO completes. Before 5.9 fork shares the pinned folio and
/// the store copies it away (`hugetlb_wp`: mapcount 2); from 5.10 here
/// (4eae4efa2c29, 5.12 upstream) `copy_hugetlb_page_range()` copies it for
/// the child at once. `hugetlb_fork_ignores_pins` drops that copy.
pub fn hugetlb_fork_pinned() -> Scenario {
    let base = fork_with_dma_in_flight();
    Scenario {
        name: "hugetlb_fork_pinned".into(),
        about: "DIO pin + device write, fork, parent store on a 2 MiB hugetlb folio".into(),
        layout: hugetlb_cow_pin().layout,
        world: hugetlb_cow_pin().world,
        ..base
    }
}

/// `gup_fast_vs_fork_thp_pte`: the same on a PTE-mapped THP, which
/// `copy_present_ptes()` copies page by page, each check reading the folio's
/// `_pincount`.
pub fn gup_fast_vs_fork_thp_pte() -> Scenario {
    thp_fork_variant(
        "gup_fast_vs_fork_thp_pte",
        "gup_fast_vs_fork_pinned_mm on a PTE-mapped THP (copy_present_ptes)",
        Populate::ThpPte,
    )
}

/// `gup_fast_vs_fork` in an mm that has pinned, the pinned page the head of
/// a THP mapped as `populate` says, beside one small page.
fn thp_fork_variant(name: &str, about: &str, populate: Populate) -> Scenario {
    let base = gup_fast_vs_fork();
    let world = WorldConfig {
        fanout_bits: 2,
        nr_frames: 24,
        ..base.world.clone()
    };
    let per = 1u64 << world.fanout_bits;
    Scenario {
        name: name.into(),
        about: about.into(),
        layout: Layout {
            has_pinned: true,
            ..Layout::one(vec![
                Region::anon(0, per, populate),
                Region::anon(per, 1, Populate::Anon),
            ])
        },
        world,
        ..base
    }
}

/// `vmsplice_fork`: CVE-2020-29374, bug #9 (Jann Horn). Played by one thread
/// taking each process's turn: the parent writes a page and forks; the child
/// vmsplice()s the shared page into a pipe (a read-only FOLL_GET reference
/// held by the pipe) and unmaps it; the parent writes again: with the page's
/// mapcount back at 1, the pre-5.8 reuse rule lets the write land in the
/// page the pipe holds; the child reads the pipe and sees the parent's
/// post-fork data. 5.8 broke COW at the lookup (17839856fd58); 5.9/5.10
/// reuse only when `page_count() == 1` (09854ba94c6a).
pub fn vmsplice_fork() -> Scenario {
    let touch = |mm: u8| Op::Touch {
        mm,
        page: 0,
        write: true,
    };
    Scenario {
        name: "vmsplice_fork".into(),
        about: "fork; child vmsplice (FOLL_GET) + munmap; parent writes; child reads the pipe"
            .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![vec![
            touch(0),
            Op::Fork { child: 1 },
            Op::UseMm { mm: 1 },
            Op::Gup {
                api: GupApi::GetUserPagesFast,
                mm: 1,
                page: 0,
                nr: 1,
                flags: FlagSel::default(),
            },
            Op::Munmap { mm: 1, region: 0 },
            Op::UseMm { mm: 0 },
            touch(0),
            Op::UseMm { mm: 1 },
            Op::ReadHandle { handle: 0 },
            release(ReleaseApi::Matching),
        ]],
        world: fork_world(),
        window: None,
    }
}

/// `vmsplice_fork_thp`: bug #10, #9 on a PMD-mapped THP. The page_count rule
/// of 5.9 covered base pages only: until "COW fixes part 1" (5.18) a THP
/// write fault reused the folio when its mapcount was 1 (`reuse_swap_page`),
/// so after the child's vmsplice (FOLL_GET on the huge leaf) and munmap the
/// parent's store lands in the page the pipe still holds. 5.8's forced COW
/// break copies for the child at GUP time; from 5.19 the parent's fault sees a
/// shared folio, splits the PMD and copies the subpage.
pub fn vmsplice_fork_thp() -> Scenario {
    let base = vmsplice_fork();
    Scenario {
        name: "vmsplice_fork_thp".into(),
        about: "vmsplice_fork on a PMD-mapped THP (bug #10)".into(),
        layout: Layout::one(vec![Region::anon(0, 2, Populate::Thp)]),
        ..base
    }
}

/// `fork_with_dma_in_flight`: a DIO into an anonymous page is in flight
/// (`pin_user_pages_fast(FOLL_WRITE)`, the device writes) when the process
/// forks; then the parent stores through the same address (the pin must still
/// be the page mapped there) and the DIO completes. Before 5.9 fork shares the
/// pinned page and the store copies it away (Wrong COW); from 5.9 fork copies
/// it for the child instead. With a DIO that takes FOLL_GET
/// (`dio_uses_foll_get`, bug #13), no era can tell, in every preset.
pub fn fork_with_dma_in_flight() -> Scenario {
    Scenario {
        name: "fork_with_dma_in_flight".into(),
        about: "DIO pin + device write, fork, parent store, DIO completion (one thread)".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 2, Populate::Anon)]),
        threads: vec![vec![
            gup(GupApi::PinUserPagesFast, 0, 1, FlagSel::WRITE),
            Op::DmaWrite { handle: 0 },
            Op::Fork { child: 1 },
            Op::CheckCoherent { handle: 0 },
            release(ReleaseApi::DirtyLock),
        ]],
        world: fork_world(),
        window: None,
    }
}

/// `clear_refs_on_pinned`: bug #12 (9348b73c2e1b, 5.11). One thread pins a page
/// with `pin_user_pages_fast(FOLL_WRITE)`, stores through it and checks the
/// pin still is the page mapped there; another writes 4 to
/// /proc/pid/clear_refs, write-protecting the PTEs for soft-dirty tracking.
/// With the page_count reuse rule (5.9/5.10) the store then copies the pinned
/// page away. 5.11 skips maybe-pinned pages, but reads the pin state under the
/// PTL, which GUP-fast does not take: a pin landing between the check and
/// the write-protect still loses its page (known-incomplete). 5.19's
/// PageAnonExclusive reuses the exclusive page whatever its count.
pub fn clear_refs_on_pinned() -> Scenario {
    Scenario {
        name: "clear_refs_on_pinned".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) + store against clear_refs soft-dirty".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 2, Populate::Anon)]),
        threads: vec![
            pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::Matching),
            vec![Op::ClearRefs { mm: 0 }],
        ],
        world: small_world(12, 8),
        window: None,
    }
}

/// `ksm_share_vs_ro_pin`: 088b8aa537c2's example (6.1). A read-only
/// `pin_user_pages_fast` of an exclusive anonymous page whose PTE is already
/// read-only (the VMA is not writable), then its unpin; against a KSM-like
/// sharer that clears the PTE, checks the page is neither referenced nor
/// pinned, clears PageAnonExclusive and restores the same read-only PTE (so
/// GUP-fast's PTE recheck cannot see it). Only the sharer's smp_mb after the
/// clear and GUP-fast's after the pin make one of them see the other; before
/// 6.1 the TLB flush was trusted, which waits for GUP-fast only under IPI.
/// Under RCU (relaxed `ptep_get_and_clear`, no IPI) 6.0 pins a page that is
/// no longer exclusive: loom only, an ordering bug.
pub fn ksm_share_vs_ro_pin() -> Scenario {
    Scenario {
        name: "ksm_share_vs_ro_pin".into(),
        about: "read-only pin_user_pages_fast of an exclusive page against a KSM-like sharer"
            .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region {
            writable: false,
            ..Region::anon(0, 1, Populate::Anon)
        }]),
        threads: vec![
            vec![
                gup(GupApi::PinUserPagesFast, 0, 1, FlagSel::default()),
                release(ReleaseApi::Matching),
            ],
            vec![Op::KsmShare {
                mm: 0,
                page: 0,
                merge: false,
            }],
        ],
        world: small_world(10, 6),
        // The sharer clears the PTE between GUP-fast's read and its recheck:
        // sequentially consistent, the recheck sees it.
        window: Window::new(
            0,
            "gup_fast_pte_range: read pte",
            "ksm: ptep_clear_flush",
            "gup_fast_pte_range: recheck pte",
        ),
    }
}

/// A KSM merge of `page` in `mm` (`try_to_merge_one_page`).
fn ksm_merge(mm: u8, page: u16) -> Op {
    Op::KsmShare {
        mm,
        page,
        merge: true,
    }
}

/// `ksm_merge_vs_pin`: a long-term R/W `pin_user_pages_fast` of an
/// anonymous page, a store and a coherence check, against KSM merging it
/// (page 1, of the same content, becomes the KSM page first; then page 0 is
/// write-protected and `replace_page` maps the KSM page in its place). A pin
/// taken before the merge must stop it (`write_protect_page`'s refcount check
/// and, from 5.19, `folio_maybe_dma_pinned` after an `smp_mb`, 088b8aa537c2);
/// one taken after breaks COW on the read-only KSM PTE and pins a copy. Under
/// RCU without 6.1's barrier the refcount check can miss a GUP-fast pin
/// whose PTE recheck missed the clear (store buffering): the merge replaces
/// the pinned page. `ksm_merge_ignores_pins` reopens it on 6.1 and latest.
pub fn ksm_merge_vs_pin() -> Scenario {
    Scenario {
        name: "ksm_merge_vs_pin".into(),
        about: "pin_user_pages_fast(WRITE|LONGTERM) + coherence check against a KSM merge".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 2, Populate::Anon)]),
        threads: vec![
            longterm_pin_check_release(),
            vec![ksm_merge(0, 1), ksm_merge(0, 0)],
        ],
        world: small_world(10, 6),
        window: Window::new(
            0,
            "gup_fast_pte_range: read pte",
            "ksm: ptep_clear_flush",
            "gup_fast_pte_range: recheck pte",
        ),
    }
}

/// `ksm_merge_then_write`: a page shared by fork, the child's own copy of
/// it (a write pin breaks COW without changing the content), both merged
/// into one KSM page; the child takes a read-only long-term pin, the parent
/// stores, and the child loads and reads through its pin. The store must
/// copy the KSM page (`do_wp_page`: never reused from 5.9, before only by
/// `reuse_ksm_page` when nothing else maps or references it), so the child
/// never sees it (`no leak after fork`); from 5.19 the read-only pin
/// unshares the KSM page (`gup_must_unshare`: a KSM page is never
/// exclusive), before it pins the KSM page itself.
pub fn ksm_merge_then_write() -> Scenario {
    let child_pin = |flags| gup(GupApi::PinUserPages, 0, 1, flags);
    Scenario {
        name: "ksm_merge_then_write".into(),
        about: "fork, child COW, KSM merge of both, child R/O pin, parent store, child load".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![vec![
            Op::Fork { child: 1 },
            Op::UseMm { mm: 1 },
            child_pin(FlagSel::WRITE),
            release(ReleaseApi::Matching),
            Op::UseMm { mm: 0 },
            ksm_merge(0, 0),
            ksm_merge(1, 0),
            Op::UseMm { mm: 1 },
            child_pin(FlagSel {
                longterm: true,
                ..FlagSel::default()
            }),
            Op::UseMm { mm: 0 },
            Op::Touch {
                mm: 0,
                page: 0,
                write: true,
            },
            Op::Load { mm: 1, page: 0 },
            Op::ReadHandle { handle: 0 },
            release(ReleaseApi::Matching),
        ]],
        world: fork_world(),
        window: None,
    }
}

/// `gup_fast_vs_thp_collapse`: bugs #6 and #7. One thread pins a base page of
/// a PMD range with `pin_user_pages_fast(FOLL_WRITE)`, stores through it and
/// checks the pin is still the page mapped there; khugepaged collapses the
/// range into a THP. Under IPI the collapse's flush waits for GUP-fast. Under
/// RCU table freeing it does not, and until 6.1-stable nothing else did:
/// without 70cbc3cc78a9's PMD recheck (5.11, or 6.1 with `no_pmd_recheck`), a
/// pin taken after the collapse checked the base page's count is on a page no
/// longer mapped (#6); without syncing with walkers, GUP-fast walks the old PTE
/// table after it is freed (#7, 6.1). With the sync (latest), right after the
/// flush and before the refcount check, the walker has left before the check,
/// and `no_pmd_recheck` is clean.
pub fn gup_fast_vs_thp_collapse() -> Scenario {
    Scenario {
        name: "gup_fast_vs_thp_collapse".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) + coherence check against khugepaged collapse"
            .into(),
        version: OPS_VERSION,
        layout: Layout {
            spare_pmd_folios: 1,
            ..Layout::one(vec![Region::anon(0, 2, Populate::Anon)])
        },
        threads: vec![
            pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::Matching),
            vec![Op::Collapse { mm: 0, page: 0 }],
        ],
        world: small_world(14, 8),
        window: None,
    }
}

/// `gup_fast_vs_file_collapse`: the PMD-recheck question for file THP
/// collapse. A read-only long-term `pin_user_pages_fast` of a clean page of
/// a shared file mapping (GUP-fast may pin it: only a FOLL_WRITE long-term
/// pin of a file page is refused), a store through the address that the pin
/// must see, and the unpin; against khugepaged's `collapse_file` of the
/// range, whose `retract_page_tables` clears the PMD while GUP-fast may still
/// be in the old PTE table. `collapse_file` unmaps the old pages
/// (`try_to_unmap`) before it checks their counts, so the pin and the PTE
/// recheck meet there: the retracted table holds no PTE, and the PMD recheck
/// (`no_pmd_recheck`) is not what keeps the pin coherent. What the era
/// decides is the table's life: freed at once without syncing with walkers
/// (6.1 under RCU: a walk through a freed table, bug #7), after a grace
/// period from 6.6 (1d65b771bc08's `pte_free_defer`).
pub fn gup_fast_vs_file_collapse() -> Scenario {
    Scenario {
        name: "gup_fast_vs_file_collapse".into(),
        about: "R/O long-term pin_user_pages_fast of a shared file page + store the pin must see against khugepaged's collapse_file / retract_page_tables".into(),
        version: OPS_VERSION,
        layout: Layout {
            files: vec![FileSpec {
                pages: 2,
                flavour: FsFlavour::Iomap,
                cached: Cached::Clean,
            }],
            ..Layout::one(vec![Region::file(0, 2, 0, true, Populate::PageCache)])
        },
        threads: vec![
            vec![
                gup(
                    GupApi::PinUserPagesFast,
                    0,
                    1,
                    FlagSel {
                        longterm: true,
                        ..FlagSel::default()
                    },
                ),
                Op::CheckPinSees { handle: 0 },
                release(ReleaseApi::Matching),
            ],
            vec![Op::Collapse { mm: 0, page: 0 }],
        ],
        world: small_world(14, 8),
        window: None,
    }
}

/// `gup_fast_vs_thp_split`: `pin_user_pages_fast(FOLL_WRITE)` of a tail page
/// of a PTE-mapped THP, a store and a coherence check, against
/// `split_huge_page`. Either the pin is seen (split backs off: the freeze
/// fails or `can_split_folio` refuses), or the frozen count refuses the grab,
/// or GUP-fast grabs after the split: then `page_folio(page)` is no longer the
/// folio it read, and without c24d37322548's recheck (5.13; era-5 presets,
/// `no_head_recheck`) the reference lands on the old head while the PTE
/// recheck passes (the split restored the same PTE).
pub fn gup_fast_vs_thp_split() -> Scenario {
    Scenario {
        name: "gup_fast_vs_thp_split".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) of a THP tail page against split_huge_page".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 2, Populate::ThpPte)]),
        threads: vec![
            vec![
                gup(GupApi::PinUserPagesFast, 1, 1, FlagSel::WRITE),
                Op::CheckCoherent { handle: 0 },
                release(ReleaseApi::Matching),
            ],
            vec![Op::Split { mm: 0, page: 0 }],
        ],
        world: small_world(12, 8),
        window: Window::new(
            0,
            "try_get_folio",
            "__split_huge_page: unfreeze head",
            "gup_fast_pte_range: recheck pte",
        ),
    }
}

/// `pin_longterm_vs_migration`: `pin_user_pages_fast(FOLL_WRITE |
/// FOLL_LONGTERM)` of an anonymous page, a store and a coherence check,
/// against compaction migrating the page. Either compaction sees the pin (its
/// pre-filter, the share step, or the expected-refcount check) and leaves the
/// page, or GUP-fast's PTE recheck sees the migration entry and takes the
/// slow path, which waits for the migration and pins the new page. Without
/// the recheck (`skip_pte_recheck`) the pin stays on the old page while the
/// address maps the new one.
pub fn pin_longterm_vs_migration() -> Scenario {
    Scenario {
        name: "pin_longterm_vs_migration".into(),
        about: "pin_user_pages_fast(WRITE|LONGTERM) + coherence check against compaction".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![
            longterm_pin_check_release(),
            vec![Op::Migrate { mm: 0, page: 0 }],
        ],
        world: small_world(10, 6),
        window: Window::new(
            0,
            "gup_fast_pte_range: read pte",
            "try_to_migrate_one: ptep_clear_flush",
            "gup_fast_pte_range: recheck pte",
        ),
    }
}

/// `pin_vs_thp_migration`: `pin_user_pages_fast(FOLL_WRITE)` of a PMD-mapped
/// anonymous THP, a store and a coherence check, against `migrate_pages()` of
/// the THP (`move_pages(2)`: compaction skips large folios). A pin that got in
/// first is seen: from 5.19 by `set_pmd_migration_entry`'s share step
/// (`folio_try_share_anon_rmap_pmd`, after `pmdp_invalidate`), in every era
/// by `folio_migrate_mapping`'s expected refcount (-EAGAIN). A later one
/// fails GUP-fast's PMD recheck, or meets the PMD migration entry (not
/// present) and takes the slow path, which waits for the migration
/// (`pmd_migration_entry_wait`) and pins the new THP. Without the refcount
/// check (`migration_ignores_refcount`) the share step alone keeps the pin
/// from 5.19; before, the pin stays on the old THP.
pub fn pin_vs_thp_migration() -> Scenario {
    Scenario {
        name: "pin_vs_thp_migration".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) + coherence check against migrate_pages of a PMD-mapped THP".into(),
        version: OPS_VERSION,
        layout: Layout {
            spare_pmd_folios: 1,
            ..Layout::one(vec![Region::anon(0, 2, Populate::Thp)])
        },
        threads: vec![
            pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::Matching),
            vec![Op::Migrate { mm: 0, page: 0 }],
        ],
        world: small_world(12, 6),
        // GUP-fast has read the PMD when migration invalidates it: the share
        // step must see the pin, or the PMD recheck the migration entry.
        window: Window::new(
            0,
            "gup_fast_pmd_range: read pmd",
            "set_pmd_migration_entry: pmdp_invalidate",
            "gup_fast_pmd_leaf: recheck",
        ),
    }
}

/// `pin_vs_pagecache_migration`: a DIO-style `pin_user_pages_fast(FOLL_WRITE)`
/// of a dirty page of a shared mapping of a buffer-head file, a store and a
/// coherence check, and `unpin_user_pages_dirty_lock`, against compaction
/// migrating the page-cache page. A page-cache folio has no PageAnonExclusive
/// to share: `folio_migrate_mapping`'s `folio_ref_freeze()` at
/// `folio_expected_refs()` (the migration's, the page cache's, the buffers')
/// is the only guard against a pin that got in first; a later one fails
/// GUP-fast's PTE recheck, meets the frozen count, or waits on the
/// migration entry and pins the new page. `migration_ignores_refcount`
/// migrates the pinned page in every era. What is migrated carries PG_dirty
/// and its buffers, so the final sync writes the store (`durable after sync`).
pub fn pin_vs_pagecache_migration() -> Scenario {
    Scenario {
        name: "pin_vs_pagecache_migration".into(),
        about: "pin_user_pages_fast(FOLL_WRITE) of a shared file page + coherence check + unpin_dirty_lock against compaction".into(),
        version: OPS_VERSION,
        layout: file_layout(FsFlavour::BufferHead, Cached::Dirty, Populate::PageCache),
        threads: vec![
            pin_check_release(Op::CheckCoherent { handle: 0 }, ReleaseApi::DirtyLock),
            vec![Op::Migrate { mm: 0, page: 0 }],
        ],
        world: file_world(),
        window: None,
    }
}

/// The owner's side of a R/W pin against reclaim: `pin_user_pages_fast` of
/// page 0 with `flags`, a load (a read fault maps a swapped-out page back
/// read-only), a store through the address that must land in the pinned
/// page (`coherent pin`), the device's write through the pin, and the unpin
/// dirtying the page.
fn pin_load_store_dma(flags: FlagSel) -> Vec<Op> {
    vec![
        gup(GupApi::PinUserPagesFast, 0, 1, flags),
        Op::Load { mm: 0, page: 0 },
        Op::CheckCoherent { handle: 0 },
        Op::DmaWrite { handle: 0 },
        release(ReleaseApi::DirtyLock),
    ]
}

/// `pin_vs_pageout`: a long-term R/W pin of an anonymous page, then a load,
/// a store and a device write through the pin, against `madvise(MADV_PAGEOUT)`
/// of the page. If reclaim unmaps the pinned page into the swap cache, the
/// load maps it back read-only and, under the page_count reuse rule (5.9 to
/// 5.18), the store copies it away from the pin: `coherent pin` is found in
/// 5.10. 5.11 keeps maybe-pinned pages out of the swap cache (feb889fb40fa),
/// but reads the pin without synchronising with GUP: a pin landing between
/// that check and `try_to_unmap` still goes to the swap cache
/// (known-incomplete). Before 5.9 the mapcount reuse rule keeps the page;
/// from 5.19 `try_to_unmap_one` shares an exclusive page only if it is not
/// pinned, after clearing its PTE (the GUP-fast handshake), and the swap PTE
/// remembers exclusivity.
pub fn pin_vs_pageout() -> Scenario {
    Scenario {
        name: "pin_vs_pageout".into(),
        about:
            "pin_user_pages_fast(WRITE|LONGTERM) + load, store, DMA against madvise(MADV_PAGEOUT)"
                .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![
            pin_load_store_dma(FlagSel {
                longterm: true,
                ..FlagSel::WRITE
            }),
            vec![Op::Pageout { mm: 0, page: 0 }],
        ],
        world: small_world(10, 6),
        window: None,
    }
}

/// `pin_then_pageout`: a DIO's `pin_user_pages_fast(FOLL_WRITE)`, then
/// `madvise(MADV_PAGEOUT)`, the load, the store and the device write, in
/// one thread, so that each protection is judged alone: feb889fb40fa's
/// check (5.11) keeps the pinned page out of the swap cache
/// (`pageout_ignores_pins` drops it: found in 5.11; from 5.19
/// `try_to_unmap_one`'s share check refuses to unmap it). A DIO that takes
/// FOLL_GET (`dio_uses_foll_get`, bug #13) passes both checks, since nothing
/// reads as pinned: before 5.19 the load maps it back read-only and the store
/// copies it away; from 5.19 the swap PTE remembers that the page was
/// exclusive (1493a1913e34) and the swap-cache folio comes back exclusive.
pub fn pin_then_pageout() -> Scenario {
    let mut ops = pin_load_store_dma(FlagSel::WRITE);
    ops.insert(1, Op::Pageout { mm: 0, page: 0 });
    Scenario {
        name: "pin_then_pageout".into(),
        about:
            "DIO pin_user_pages_fast(WRITE), madvise(MADV_PAGEOUT), load, store, DMA (one thread)"
                .into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![Region::anon(0, 1, Populate::Anon)]),
        threads: vec![ops],
        world: small_world(10, 6),
        window: None,
    }
}

/// Every scenario, by name.
pub fn catalogue() -> Vec<Scenario> {
    vec![
        munmap_vs_lockless_walker(),
        fault_vs_lockless_walker(),
        gup_fast_vs_munmap(),
        gup_fast_across_tables(),
        concurrent_pin_unpin(),
        huge_page_pin_overflow(),
        zero_page_pin(),
        gup_unlocked_vs_munmap(),
        gup_fast_vs_page_mkclean(),
        pin_vs_writeback_vs_reclaim(),
        dio_vs_reclaim_buffers(),
        rdma_longterm_vs_writeback(),
        notifier_device_vs_munmap(),
        store_vs_writeback(),
        gup_fast_vs_fork(),
        gup_fast_vs_fork_pinned_mm(),
        gup_fast_vs_fork_thp(),
        gup_fast_vs_fork_thp_pte(),
        vmsplice_fork(),
        vmsplice_fork_thp(),
        fork_with_dma_in_flight(),
        gup_fast_vs_fork_hugetlb(),
        hugetlb_cow_pin(),
        hugetlb_fork_pinned(),
        clear_refs_on_pinned(),
        ksm_share_vs_ro_pin(),
        gup_fast_vs_thp_collapse(),
        gup_fast_vs_file_collapse(),
        gup_fast_vs_thp_split(),
        pin_longterm_vs_migration(),
        pin_vs_thp_migration(),
        pin_vs_pagecache_migration(),
        pin_vs_pageout(),
        pin_then_pageout(),
        ksm_merge_vs_pin(),
        ksm_merge_then_write(),
    ]
}

pub fn by_name(name: &str) -> Result<Scenario, String> {
    catalogue()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = catalogue().into_iter().map(|s| s.name).collect();
            format!("unknown scenario '{name}' (known: {})", names.join(", "))
        })
}
