//! The World: one instance of the modelled machine (memory, page tables, address
//! spaces, walkers, ghost state), and the builder that lays out a populated address
//! space directly, without running faults (small worlds for model checkers).

use crate::backend::{Backend, Condvar, KAtomic, Mutex, Std};
use crate::config::{Mutation, WorldConfig};
use crate::ghost::{Ctx, Ghost};
use crate::invariant::Res;
use crate::state::device::{NotifierDev, NotifierState};
use crate::state::fs::Inode;
use crate::state::mem::{pg, Frame, FreeLists, Memory, Order, Zone};
use crate::state::mm::{Mm, Vma};
use crate::state::pgtable::{PageTable, Pte};
use crate::state::rmap::RmapEntry;
use crate::state::tlb::Walkers;
use crate::types::Pfn;
use crate::types::PAGE_SHIFT;

pub struct World<B: Backend> {
    pub cfg: WorldConfig,
    pub mem: Memory<B>,
    /// Page-table storage, by slot.
    pub tables: Box<[PageTable<B>]>,
    pub mms: Box<[Mm<B>]>,
    pub walkers: Walkers<B>,
    /// The page wait queue (`folio_wait_table`): sleepers on PG_locked.
    pub page_waitq: Mutex<B, ()>,
    pub page_waitq_cv: Condvar<B>,
    /// The swap device and the swap cache, by slot (swap.rs).
    pub swap: Mutex<B, Vec<Option<crate::state::swap::SwapSlot>>>,
    /// KSM's stable tree, simplified to a list of (content, KSM page): no
    /// node holds a reference; a page freed or reused since is stale (share.rs).
    pub ksm_stable: Mutex<B, Vec<([u64; 2], Pfn)>>,
    /// Page tables freed under RCU table freeing, waiting for their grace period:
    /// (slot, walkers that must leave first). `tlb_remove_table_rcu` callbacks.
    pub rcu_pending: Mutex<B, Vec<RcuTable>>,
    /// How many are pending: a hint that spares allocations a lock when none is.
    rcu_pending_hint: std::sync::atomic::AtomicUsize,
    /// Files: page cache and disk (file.rs).
    pub inodes: Box<[Inode<B>]>,
    /// `i_mmap_rwsem` / the anon_vma lock, for one purpose: rmap walkers
    /// (page_mkclean, try_to_unmap) hold it for read while they walk page tables
    /// they reached through the rmap; `free_pgtables` holds it for write.
    pub rmap_walk_lock: crate::backend::RwLock<B, ()>,
    /// The driver with an MMU interval notifier, if the layout has one.
    pub notifier: Option<NotifierDev<B>>,
    pub ghost: Ghost,
}

/// A page table waiting for its grace period, and the walkers it waits for.
pub type RcuTable = (u32, Vec<(usize, u32)>);

/// How many large folios a world carves out of its frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeFolios {
    pub pmd: usize,
    pub pud: usize,
}

impl<B: Backend> World<B> {
    /// An empty world: frame 0 is the shared zero page; PUD-order then PMD-order
    /// folios are carved at aligned frame numbers from the top of memory; the rest
    /// are base pages, the lowest `cma_frames` in CMA and the next `movable_frames`
    /// in ZONE_MOVABLE. Every mm gets its PGD.
    pub fn new(cfg: WorldConfig, large: LargeFolios) -> Result<Self, String> {
        cfg.validate()?;
        let fanout = cfg.fanout();
        let mut free = FreeLists::default();
        let mut top = cfg.nr_frames;
        let mut carve = |count: usize, order: u32, what: &str| -> Result<Vec<Pfn>, String> {
            let nr = 1usize << order;
            let mut heads = Vec::new();
            for _ in 0..count {
                let start = top.saturating_sub(nr) & !(nr - 1);
                if start < 1 || start + nr > top {
                    return Err(format!(
                        "{} frames cannot hold {count} {what} folios of {nr} pages",
                        cfg.nr_frames
                    ));
                }
                heads.push(start as Pfn);
                top = start;
            }
            // Pop order is ascending frame numbers: deterministic layouts.
            heads.reverse();
            Ok(heads)
        };
        free.pud = carve(large.pud, cfg.pud_order(), "PUD-order")?;
        free.pmd = carve(large.pmd, cfg.pmd_order(), "PMD-order")?;
        if top <= 1 + cfg.cma_frames + cfg.movable_frames {
            return Err(format!(
                "{} frames leave no normal base page beside the large folios, CMA and movable frames",
                cfg.nr_frames
            ));
        }
        free.order0 = (1..top as Pfn).rev().collect();
        free.tables = (0..cfg.nr_tables as u32).rev().collect();
        // Frame 0 is the zero page; CMA frames come first, then movable ones.
        let zone = |pfn: usize| match pfn.wrapping_sub(1) {
            i if i < cfg.cma_frames => Zone::Cma,
            i if i < cfg.cma_frames + cfg.movable_frames => Zone::Movable,
            _ => Zone::Normal,
        };
        let frames: Box<[Frame<B>]> = (0..cfg.nr_frames).map(|p| Frame::new(zone(p))).collect();
        let mem = Memory {
            frames,
            free: Mutex::new(free),
            counter: cfg.counter,
            pmd_order: cfg.pmd_order(),
            pud_order: cfg.pud_order(),
            zero_pfn: 0,
        };
        let ghost = Ghost::new(cfg.nr_frames, cfg.nr_tables, cfg.fanout(), B::MODEL_CHECKED);
        // The zero page: reserved, one permanent reference, never freed.
        mem.prep_folio(0, 0, pg::RESERVED);
        ghost.frame_allocated(0);
        let tables: Box<[PageTable<B>]> =
            (0..cfg.nr_tables).map(|_| PageTable::new(fanout)).collect();
        let mut w = World {
            walkers: Walkers::new(cfg.nr_cpus),
            page_waitq: Mutex::new(()),
            page_waitq_cv: Condvar::new(),
            rcu_pending: Mutex::new(Vec::new()),
            swap: Mutex::new(Vec::new()),
            ksm_stable: Mutex::new(Vec::new()),
            rcu_pending_hint: std::sync::atomic::AtomicUsize::new(0),
            inodes: Box::new([]),
            rmap_walk_lock: crate::backend::RwLock::new(()),
            notifier: None,
            mms: Box::new([]),
            cfg,
            mem,
            tables,
            ghost,
        };
        let mut boot = Ctx::new(usize::MAX, 0, false);
        let mut mms = Vec::new();
        for id in 0..w.cfg.nr_mms {
            let pgd = w
                .alloc_table(&mut boot)
                .ok_or("no page-table slot or frame left for a PGD")?;
            mms.push(Mm::new(id as u32, pgd));
        }
        w.mms = mms.into_boxed_slice();
        Ok(w)
    }

    /// A world with the state of `img` (built on the std backend), constructed
    /// without a single backend operation: under loom and shuttle the layout then
    /// costs no scheduling decisions, only object creation. `img` must be
    /// quiescent (freshly built).
    pub fn from_image(img: &World<Std>) -> World<B> {
        let frames = img
            .mem
            .frames
            .iter()
            .map(|f| Frame {
                refcount: B::AtomicI32::new(f.refcount.read_once()),
                mapcount: B::AtomicI32::new(f.mapcount.read_once()),
                entire_mapcount: B::AtomicI32::new(f.entire_mapcount.read_once()),
                pincount: B::AtomicI32::new(f.pincount.read_once()),
                flags: B::AtomicU32::new(f.flags.read_once()),
                compound_head: B::AtomicU32::new(f.compound_head.read_once()),
                data: [
                    B::AtomicU64::new(f.data[0].read_once()),
                    B::AtomicU64::new(f.data[1].read_once()),
                ],
                mapping: B::AtomicU32::new(f.mapping.read_once()),
                index: B::AtomicU32::new(f.index.read_once()),
                rmap: Mutex::new(f.rmap.lock().clone()),
                zone: f.zone,
            })
            .collect();
        let free = img.mem.free.lock();
        let mem = Memory {
            frames,
            free: Mutex::new(FreeLists {
                order0: free.order0.clone(),
                pmd: free.pmd.clone(),
                pud: free.pud.clone(),
                tables: free.tables.clone(),
            }),
            counter: img.mem.counter,
            pmd_order: img.mem.pmd_order,
            pud_order: img.mem.pud_order,
            zero_pfn: img.mem.zero_pfn,
        };
        drop(free);
        let tables = img
            .tables
            .iter()
            .map(|t| PageTable {
                entries: t
                    .entries
                    .iter()
                    .map(|e| B::AtomicU64::new(e.read_once()))
                    .collect(),
                ptl: Mutex::new(()),
            })
            .collect();
        let mms = img
            .mms
            .iter()
            .map(|m| Mm {
                id: m.id,
                mmap_lock: crate::backend::RwLock::new(m.mmap_lock.read().clone()),
                pgd: m.pgd,
                write_protect_seq: B::AtomicU32::new(m.write_protect_seq.read_once()),
                flags: B::AtomicU32::new(m.flags.read_once()),
            })
            .collect();
        World {
            cfg: img.cfg.clone(),
            mem,
            tables,
            mms,
            walkers: Walkers::new(img.cfg.nr_cpus),
            page_waitq: Mutex::new(()),
            page_waitq_cv: Condvar::new(),
            swap: Mutex::new(img.swap.lock().clone()),
            ksm_stable: Mutex::new(img.ksm_stable.lock().clone()),
            rcu_pending: Mutex::new(Vec::new()),
            rcu_pending_hint: std::sync::atomic::AtomicUsize::new(0),
            inodes: img
                .inodes
                .iter()
                .map(|i| Inode {
                    id: i.id,
                    flavour: i.flavour,
                    i_pages: Mutex::new(i.i_pages.lock().clone()),
                    disk: Mutex::new(i.disk.lock().clone()),
                    invalidate_lock: crate::backend::RwLock::new(()),
                })
                .collect(),
            rmap_walk_lock: crate::backend::RwLock::new(()),
            notifier: img.notifier.as_ref().map(|n| {
                let st = n.lock.lock();
                NotifierDev {
                    lock: Mutex::new(NotifierState {
                        seq: st.seq,
                        active: st.active,
                        ptes: st.ptes.clone(),
                    }),
                    done: Condvar::new(),
                }
            }),
            ghost: img.ghost.snapshot(B::MODEL_CHECKED),
        }
    }

    /// Records a new mapping of `pfn` (its folio) at `e`: mapcount and rmap.
    /// `folio_add_new_anon_rmap` / `folio_add_anon_rmap_pte(s)` / `_pmd`.
    pub(crate) fn add_rmap(&self, pfn: Pfn, e: RmapEntry) {
        let head = self.mem.page_folio(pfn);
        if e.huge {
            self.mem.frame(head).entire_mapcount.add(1);
        } else {
            self.mem.frame(pfn).mapcount.add(1);
        }
        self.mem.frame(head).rmap.lock().add(e);
    }

    /// `folio_remove_rmap_pte` / `_pmd`: false if the mapping was not recorded.
    pub(crate) fn remove_rmap(&self, pfn: Pfn, e: RmapEntry) -> bool {
        let head = self.mem.page_folio(pfn);
        if e.huge {
            self.mem.frame(head).entire_mapcount.sub(1);
        } else {
            self.mem.frame(pfn).mapcount.sub(1);
        }
        self.mem.frame(head).rmap.lock().remove(&e)
    }

    /// `tlb_remove_table()` under RCU table freeing: queue the table behind a grace
    /// period (`call_rcu`) and return at once.
    pub(crate) fn call_rcu_table(&self, ctx: &mut Ctx, slot: u32) {
        let snap = self.walkers.snapshot();
        ctx.step(&self.ghost, "tlb_remove_table: call_rcu", u64::from(slot));
        self.rcu_pending.lock().push((slot, snap));
        self.rcu_pending_hint
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs the RCU callbacks whose grace period has elapsed (`rcu_core`), freeing
    /// their tables. Called where memory is allocated, and at quiescence.
    pub fn rcu_reclaim(&self, ctx: &mut Ctx) -> Res<()> {
        if self
            .rcu_pending_hint
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            return Ok(());
        }
        let ready: Vec<u32> = {
            let mut pending = self.rcu_pending.lock();
            let mut ready = Vec::new();
            pending.retain(|(slot, snap)| {
                let done = self.walkers.elapsed(snap);
                if done {
                    ready.push(*slot);
                }
                !done
            });
            ready
        };
        self.rcu_pending_hint
            .fetch_sub(ready.len(), std::sync::atomic::Ordering::SeqCst);
        for slot in ready {
            self.free_table(ctx, slot)?;
        }
        Ok(())
    }

    /// `rcu_barrier()` at quiescence: no walker is left, every callback runs.
    pub fn rcu_barrier(&self, ctx: &mut Ctx) -> Res<()> {
        self.rcu_reclaim(ctx)
    }

    /// `pte_alloc_one` / `pmd_alloc_one`: a table slot plus the frame it occupies.
    /// Tables are freed only once empty, so a fresh slot has all entries none.
    pub(crate) fn alloc_table(&self, ctx: &mut Ctx) -> Option<u32> {
        if self.rcu_reclaim(ctx).is_err() {
            return None;
        }
        let pfn = self
            .mem
            .alloc_folio(ctx, &self.ghost, Order::Base, pg::PGTABLE)?;
        let slot = self.mem.free.lock().tables.pop();
        match slot {
            Some(s) => {
                self.ghost.table_allocated(s, pfn);
                Some(s)
            }
            None => {
                // Give the frame back: no storage for the table.
                let _ = self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None);
                None
            }
        }
    }

    /// `pte_free` / `__tlb_remove_table`: the table's generation moves on and its
    /// frame and slot return to the allocator.
    pub(crate) fn free_table(&self, ctx: &mut Ctx, slot: u32) -> Res<()> {
        let pfn = self.ghost.table_frame(slot);
        self.ghost.table_freed(slot);
        ctx.step(&self.ghost, "__tlb_remove_table", u64::from(slot));
        self.mem.free.lock().tables.push(slot);
        self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None)?;
        Ok(())
    }

    /// The PTE table and index for `addr`, allocating missing levels
    /// (`__pte_alloc`). `Ok(None)` is -ENOMEM; a huge leaf on the way is an error.
    pub(crate) fn ensure_pte_table(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Result<Option<(u32, usize)>, String> {
        self.ensure_table_at(ctx, mm, addr, 1)
    }

    /// The table at `level` (1 = PTE table, 2 = PMD table) covering `addr`, and the
    /// index of `addr` in it, allocating what is missing. Each new table is
    /// published after an smp_wmb (`pmd_install`: the zeroed table must be visible
    /// before the entry pointing to it), under the parent table's PTL.
    pub(crate) fn ensure_table_at(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        level: u32,
    ) -> Result<Option<(u32, usize)>, String> {
        let mut slot = self.mms[mm].pgd;
        for l in (level + 1..=4).rev() {
            let t = &self.tables[slot as usize];
            let i = self.cfg.index(addr, l);
            let mut e = t.read(i);
            if e.is_none() {
                let Some(new) = self.alloc_table(ctx) else {
                    return Ok(None);
                };
                let g = t.ptl.lock();
                e = t.read(i);
                if e.is_none() {
                    B::smp_wmb();
                    e = Pte::mk_table(new);
                    t.set(i, e);
                    drop(g);
                    ctx.step(&self.ghost, "pmd_install", addr);
                } else {
                    drop(g);
                    self.free_table(ctx, new).map_err(|v| v.to_string())?;
                }
            }
            if e.leaf() {
                return Err(format!(
                    "address {addr:#x} is covered by a huge leaf at level {l}"
                ));
            }
            slot = e.table_slot();
        }
        Ok(Some((slot, self.cfg.index(addr, level))))
    }

    /// The page mapped at `addr` (a subpage of a huge leaf), read at quiescence.
    pub fn resolve(&self, mm: usize, addr: u64) -> Option<Pfn> {
        let mut slot = self.mms[mm].pgd;
        for level in (1..=4).rev() {
            let e =
                Pte(self.tables[slot as usize].entries[self.cfg.index(addr, level)].read_once());
            if !e.present() {
                return None;
            }
            if level == 1 || e.leaf() {
                let sub =
                    (addr >> PAGE_SHIFT) & ((1u64 << (self.cfg.fanout_bits * (level - 1))) - 1);
                return Some(e.pfn() + sub as Pfn);
            }
            slot = e.table_slot();
        }
        None
    }

    /// `folio_maybe_dma_pinned()` / `page_maybe_dma_pinned()`: exact for a folio
    /// with a pincount, else `(unsigned)refcount >= bias` (false positives allowed,
    /// false negatives not; an overflowed count still reads as pinned).
    pub(crate) fn folio_maybe_dma_pinned(&self, head: Pfn) -> bool {
        let order = self.mem.folio_order(head);
        if self.cfg.folio_has_pincount(order) {
            return self.mem.frame(head).pincount.read_once() > 0;
        }
        let rc = self.mem.folio_ref_count(head);
        (rc as u32) >= self.cfg.counter.pin_bias as u32
    }

    /// `folio_test_swapcache()` + `folio->swap`: the swap slot of folio
    /// `head`, if it is in the swap cache (swap.rs). Stable under the folio
    /// lock.
    pub(crate) fn folio_swap_slot(&self, head: Pfn) -> Option<u32> {
        let f = self.mem.frame(head);
        (f.flags.read_once() & pg::SWAPCACHE != 0).then(|| f.index.read_once())
    }

    pub fn page_maybe_dma_pinned(&self, page: Pfn) -> bool {
        self.folio_maybe_dma_pinned(self.mem.page_folio(page))
    }

    /// The PTE table slot and index for `addr`, by a walk of the upper levels,
    /// for a caller that keeps the tables alive (`mmap_lock`, or
    /// `rmap_walk_lock`); `None` if a level is missing or a huge leaf.
    pub(crate) fn locked_pte_slot(&self, mm: usize, addr: u64) -> Option<(u32, usize)> {
        let mut slot = self.mms[mm].pgd;
        for level in (2..=4).rev() {
            let e = self.tables[slot as usize].read(self.cfg.index(addr, level));
            if !e.present() || e.leaf() {
                return None;
            }
            slot = e.table_slot();
        }
        Some((slot, self.cfg.index(addr, 1)))
    }

    /// `folio_lock()`: PG_locked, sleeping (blocking on the page wait queue) while
    /// someone else holds it.
    pub(crate) fn folio_lock(&self, ctx: &mut Ctx, head: Pfn) {
        let flags = &self.mem.frame(head).flags;
        loop {
            if flags.fetch_or(pg::LOCKED) & pg::LOCKED == 0 {
                ctx.step(&self.ghost, "folio_lock", u64::from(head));
                return;
            }
            let mut g = self.page_waitq.lock();
            while flags.read_once() & pg::LOCKED != 0 {
                // Named so a deadlock report and the stress watchdog say what
                // this thread waits on.
                ctx.step(
                    &self.ghost,
                    "folio_lock: sleeping on PG_locked",
                    u64::from(head),
                );
                g = self.page_waitq_cv.wait(g);
            }
        }
    }

    /// `folio_wait_locked()`: sleep until the folio is unlocked, without
    /// taking the lock.
    pub(crate) fn folio_wait_unlocked(&self, head: Pfn) {
        let flags = &self.mem.frame(head).flags;
        let mut g = self.page_waitq.lock();
        while flags.read_once() & pg::LOCKED != 0 {
            g = self.page_waitq_cv.wait(g);
        }
    }

    /// `folio_unlock()`: clear PG_locked, wake the waiters.
    pub(crate) fn folio_unlock(&self, ctx: &mut Ctx, head: Pfn) {
        self.mem.frame(head).flags.fetch_andnot(pg::LOCKED);
        ctx.step(&self.ghost, "folio_unlock", u64::from(head));
        if self.cfg.has(Mutation::UnlockNoWake) {
            return;
        }
        let g = self.page_waitq.lock();
        self.page_waitq_cv.notify_all();
        drop(g);
    }

    /// A fresh value written on behalf of `mm` into `page`. What goes into the
    /// page cache belongs to the file, which every mapper shares by design (a
    /// private mapping's COW copies it too): it carries no address space of
    /// origin, so `no leak after fork` never judges it.
    pub(crate) fn value_for(&self, ctx: &mut Ctx, mm: usize, page: Pfn) -> u64 {
        if self.ghost.file_of(self.mem.page_folio(page)).is_some() {
            ctx.next_value_untracked(&self.ghost)
        } else {
            ctx.next_value_in(&self.ghost, mm)
        }
    }

    /// `folio->mapping` / `folio->index`: the folio joins (or leaves) a file;
    /// the ghost follows at once.
    pub(crate) fn set_folio_file(&self, head: Pfn, file: Option<(u32, u32)>) {
        let f = self.mem.frame(head);
        match file {
            Some((inode, index)) => {
                f.index.write_once(index);
                f.mapping.write_once(inode + 1);
            }
            None => f.mapping.write_once(0),
        }
        self.ghost.set_file_of(head, file);
    }

    /// Writes a data word of a page and records the value in the ghost.
    pub fn write_page(&self, pfn: Pfn, word: usize, value: u64) {
        self.mem.write_data(pfn, word, value);
        self.ghost.wrote_value(pfn, value);
    }

    /// `copy_highpage()` (`folio_copy()` page by page): the data words of
    /// `src` into `dst`, then the ghost: the content's provenance goes with it
    /// (what fork gave each child in `src`, it holds in `dst` as of then).
    /// Every copy of a page's data to another frame goes through here.
    pub(crate) fn copy_highpage(&self, dst: Pfn, src: Pfn) {
        for w in 0..2 {
            self.write_page(dst, w, self.mem.read_data(src, w));
        }
        self.ghost.content_copied(src, dst);
    }

    /// The VMA containing `addr` in a VMA list held under mmap_lock (`vma_lookup`).
    pub(crate) fn find_vma(vmas: &[Vma], addr: u64) -> Option<Vma> {
        vmas.iter()
            .find(|v| v.start <= addr && addr < v.end)
            .copied()
    }

    pub fn mm(&self, id: usize) -> &Mm<B> {
        &self.mms[id]
    }
}
