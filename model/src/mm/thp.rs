//! THP split and collapse (KERNEL.md §5.5).
//!
//! Split of a PMD mapping (`__split_huge_pmd_locked`): `pmdp_invalidate` and
//! the flush, then one PTE per subpage in the table deposited for it, each
//! holding a folio reference and inheriting the head's PageAnonExclusive. It
//! runs for a partial munmap, for a write fault the era will not resolve at PMD
//! level (`do_huge_pmd_wp_page` falls back, 3917c80280c9), and for fork of a
//! maybe-pinned THP (`copy_huge_pmd` splits and retries at PTE level).
//! The era's THP reuse rule is bug #10's subject: before "COW fixes part 1"
//! (5.18) a PMD write fault reused the folio when its mapcount was 1, ignoring
//! GUP references, as #9 did for base pages before 5.8.
//!
//! Collapse: khugepaged's `collapse_huge_page`: under
//! `mmap_lock` for write and the anon_vma lock, clear the PMD that points to a
//! PTE table and flush (`pmdp_collapse_flush`), sync with GUP-fast walkers, then,
//! under the PTE table's lock, read the PTEs and check every base page is
//! referenced by its mapping alone (`__collapse_huge_page_isolate`); copy them
//! into a new PMD-sized folio, install it as a huge leaf, free the base pages
//! and the old PTE table.
//! GUP-fast walks without `mmap_lock`: under IPI the flush waits for it; under
//! RCU table freeing only `tlb_remove_table_sync_one()` right after the flush
//! does (6.1-stable). Before that sync, bugs #6 (70cbc3cc78a9: the PMD recheck
//! after pinning a PTE) and #7 (a walker still inside the old table when it is
//! freed) live there. With the sync, every walker that read the old PMD has
//! left before the refcounts are checked, so anonymous collapse no longer
//! needs the PMD recheck.
//!
//! Simplifications, one line each:
//! - the whole PMD range must be mapped by anonymous base pages (no none or
//!   swap PTEs, no sharing with another process);
//! - the huge folio is allocated before `mmap_lock` is taken, and given back
//!   if the collapse fails;
//! - the scan (`hpage_collapse_scan_pmd`) runs under `mmap_lock` for write,
//!   just before the collapse (the kernel scans under it for read, then drops it);
//! - the base pages are neither locked nor isolated from the LRU: the model's
//!   anonymous rmap walkers (split, migration, KSM) hold `mmap_lock`, which
//!   collapse holds for write;
//! - the PTE table a split fills is allocated at split time (the kernel
//!   deposits it when the THP is mapped: `pgtable_trans_huge_deposit`);
//! - while PMD-mapped, PageAnonExclusive is kept on every subpage alike (the
//!   kernel keeps it on the head and copies it at split);
//! - a THP write fault that cannot reuse always splits and copies one subpage
//!   (3917c80280c9, 5.8); before 5.8 the kernel copied the whole THP;
//! - a PMD split keeps the PMD's dirty bit in every PTE, in every era;
//! - a file VMA goes to file collapse (`collapse_file`,
//!   `retract_page_tables`: collapse_file.rs), whose new "THP" is one base
//!   page per index: page-cache folios are base pages, so no file THP is ever
//!   PMD-mapped or split.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Arch;
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::preset::ReuseRule;
use crate::state::mem::{pg, Order};
use crate::state::mm::{FaultFlags, Vma, VmaKind};
use crate::state::pgtable::{PageTable, Pte};
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What khugepaged did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collapsed {
    Collapsed,
    /// Not a fully populated, PTE-mapped anonymous range; for a file, not a
    /// PMD-aligned range fully cached by clean, unlocked pages.
    NotSuitable,
    /// A base page had an extra reference (a GUP holder): left as it was
    /// (seen by the scan) or restored (seen at isolation).
    KeptReferenced,
}

/// What `split_huge_page` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Split,
    /// Not a THP mapped by this address space alone.
    NotSuitable,
    /// References beyond the mappings (a GUP holder), or a page that may be
    /// pinned: -EAGAIN / -EBUSY. Refused by `can_split_folio` the folio is
    /// untouched; refused later, its PMD mappings stay split (as in the kernel:
    /// `unmap_folio` split them).
    KeptReferenced,
    NoMemory,
}

impl<B: Backend> World<B> {
    /// The PMD table slot and index for `addr`, for a caller holding
    /// `mmap_lock`; `None` if an upper level is missing or a leaf.
    pub(crate) fn locked_pmd_slot(&self, mm: usize, addr: u64) -> Option<(u32, usize)> {
        let mut slot = self.mms[mm].pgd;
        for level in [4, 3] {
            let e = self.tables[slot as usize].read(self.cfg.index(addr, level));
            if !e.present() || e.leaf() {
                return None;
            }
            slot = e.table_slot();
        }
        Some((slot, self.cfg.index(addr, 2)))
    }

    /// Whether `pmd` maps a transparent huge page (not a hugetlb-like folio).
    pub(crate) fn is_thp_leaf(&self, pmd: Pte) -> bool {
        pmd.present()
            && pmd.leaf()
            && self.mem.frame(pmd.pfn()).flags.read_once() & pg::HUGETLB == 0
    }

    /// Sets or clears PageAnonExclusive on every subpage of folio `head`.
    pub(crate) fn set_folio_exclusive(&self, head: Pfn, exclusive: bool) {
        for p in head..head + self.mem.folio_nr_pages(head) {
            let f = &self.mem.frame(p).flags;
            if exclusive {
                f.or(pg::ANON_EXCLUSIVE);
            } else {
                f.andnot(pg::ANON_EXCLUSIVE);
            }
        }
    }

    /// `split_huge_pmd()` of the PMD range containing `addr` in `mm` (the
    /// caller holds `mmap_lock`): under the PMD lock, `pmdp_invalidate` and the
    /// flush (a GUP-fast walker that read the leaf fails its recheck), then a PTE
    /// per subpage, published by `pmd_populate`. The PMD mapping's reference
    /// becomes one per PTE mapping. Nothing to do if the range is not a THP leaf.
    pub(crate) fn split_huge_pmd(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Res<Result<(), Errno>> {
        let span = 1u64 << self.cfg.shift(2);
        let haddr = addr & !(span - 1);
        let Some((slot, idx)) = self.locked_pmd_slot(mm, haddr) else {
            return Ok(Ok(()));
        };
        let t = &self.tables[slot as usize];
        if !self.is_thp_leaf(t.read(idx)) {
            return Ok(Ok(()));
        }
        // pgtable_trans_huge_withdraw(): the table for the PTEs.
        let Some(pte_slot) = self.alloc_table(ctx) else {
            return Ok(Err(Errno::ENOMEM));
        };
        self.mmu_notifier_invalidate_range_start(ctx, mm, haddr, haddr + span);
        let g = t.ptl.lock();
        let pmd = t.read(idx);
        if !self.is_thp_leaf(pmd) {
            drop(g);
            self.mmu_notifier_invalidate_range_end(ctx);
            self.free_table(ctx, pte_slot)?;
            return Ok(Ok(()));
        }
        // pmdp_invalidate(): not present, then the flush.
        t.get_and_clear(idx, self.cfg.arch);
        ctx.step(
            &self.ghost,
            "__split_huge_pmd_locked: pmdp_invalidate",
            haddr,
        );
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers
                .sync(ctx, &self.ghost, "flush_pmd_tlb_range: IPI");
        }
        let head = pmd.pfn();
        let nr = self.mem.folio_nr_pages(head);
        let pt = &self.tables[pte_slot as usize];
        self.mem
            .folio_ref_add(ctx, &self.ghost, head, nr as i32 - 1)?;
        for i in 0..nr {
            let e = RmapEntry::pte(mm, haddr + u64::from(i) * PAGE_SIZE);
            self.add_rmap(head + i, e);
            pt.set(i as usize, Pte::mk_page(head + i, pmd.write(), pmd.dirty()));
        }
        self.remove_rmap(head, RmapEntry::huge(mm, haddr));
        // pmd_populate(): the filled table before the entry that publishes it.
        B::smp_wmb();
        t.set(idx, Pte::mk_table(pte_slot));
        drop(g);
        ctx.step(&self.ghost, "__split_huge_pmd_locked: pmd_populate", haddr);
        self.mmu_notifier_invalidate_range_end(ctx);
        Ok(Ok(()))
    }

    /// `do_huge_pmd_wp_page()`: a write (or unshare) fault on a read-only THP
    /// leaf. Reuse the whole folio if the era's THP rule says it is ours alone;
    /// otherwise split the PMD and let the PTE-level fault copy the one subpage
    /// (VM_FAULT_FALLBACK). `None`: no THP leaf maps `addr`.
    pub(crate) fn do_huge_pmd_wp_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        ff: FaultFlags,
    ) -> Res<Option<Result<(), Errno>>> {
        let Some((slot, idx)) = self.locked_pmd_slot(mm, addr) else {
            return Ok(None);
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pmd = t.read(idx);
        if !self.is_thp_leaf(pmd) {
            // !pmd_same(): split or unmapped since the lockless look; retry.
            return Ok(Some(Ok(())));
        }
        if pmd.write() || !(ff.write || ff.unshare) {
            return Ok(Some(Ok(())));
        }
        let rule = if self.cfg.has(Mutation::ThpReuseByMapcount) {
            // reuse_swap_page(page, NULL), before 3bff7e3f1f16.
            ReuseRule::Mapcount
        } else {
            self.cfg.p().thp_reuse
        };
        if self.wp_can_reuse(rule, pmd.pfn(), true) {
            if !ff.unshare {
                t.set(idx, pmd.with(Pte::WRITE | Pte::DIRTY));
            }
            drop(g);
            ctx.step(&self.ghost, "do_huge_pmd_wp_page: reuse", addr);
            return Ok(Some(Ok(())));
        }
        drop(g);
        ctx.step(&self.ghost, "do_huge_pmd_wp_page: fallback", addr);
        if let Err(e) = self.split_huge_pmd(ctx, mm, addr)? {
            return Ok(Some(Err(e)));
        }
        self.handle_mm_fault(ctx, mm, vma, addr, ff).map(Some)
    }

    /// `split_huge_page()` of the THP mapped at `addr` in `mm` (the caller
    /// holds `mmap_lock` for read; the kernel's callers vary): take a reference
    /// and the folio lock; refuse if references exceed mappings
    /// (`can_split_folio`); split a PMD mapping; unmap every PTE to a migration
    /// entry; freeze the refcount at the caller's one reference
    /// (`folio_ref_freeze`: a GUP reference taken since makes it fail, and a
    /// frozen count makes GUP-fast's grab fail); make every tail its own page
    /// (`__split_huge_page_tail`: flags, `smp_wmb`, clear `compound_head`,
    /// unfreeze); restore the PTEs; unlock and drop the temporary references.
    pub fn split_huge_page(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Split> {
        ctx.step(&self.ghost, "split_huge_page", addr);
        let vmas = self.mms[mm].mmap_lock.read();
        let r = self.split_huge_page_locked(ctx, mm, addr);
        drop(vmas);
        r
    }

    fn split_huge_page_locked(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Split> {
        // The folio, and our reference on it, under the lock of the entry
        // that maps it.
        let head = {
            let (slot, idx) = match self.locked_pte_slot(mm, addr) {
                Some(x) => x,
                None => match self.locked_pmd_slot(mm, addr) {
                    Some(x) => x,
                    None => return Ok(Split::NotSuitable),
                },
            };
            let t = &self.tables[slot as usize];
            let _g = t.ptl.lock();
            let e = t.read(idx);
            if !e.present() || e.special() || (e.leaf() && !self.is_thp_leaf(e)) {
                return Ok(Split::NotSuitable);
            }
            let head = self.mem.page_folio(e.pfn());
            let f = self.mem.frame(head);
            if self.mem.folio_order(head) == 0
                || f.flags.read_once() & pg::ANON == 0
                || !self.folio_mapped_only_by(head, mm)
            {
                return Ok(Split::NotSuitable);
            }
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
            head
        };
        self.folio_lock(ctx, head);
        let nr = self.mem.folio_nr_pages(head);
        let r = if nr == 1 {
            // Split by someone else while we waited for the lock.
            Ok(Split::NotSuitable)
        } else {
            self.split_locked_folio(ctx, mm, head)
        };
        if matches!(r, Ok(Split::Split)) {
            // Each tail's temporary reference and lock (the head keeps ours).
            for p in head + 1..head + nr {
                self.folio_unlock(ctx, p);
                self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
            }
        }
        self.folio_unlock(ctx, head);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        r
    }

    fn split_locked_folio(&self, ctx: &mut Ctx, mm: usize, head: Pfn) -> Res<Split> {
        let nr = self.mem.folio_nr_pages(head);
        // can_split_folio(): no references beyond the mappings and ours (a
        // racy pre-check, before anything is unmapped).
        let mapped: i32 = (head..head + nr)
            .map(|p| self.mem.frame(p).mapcount.read_once())
            .sum::<i32>()
            + self.mem.frame(head).entire_mapcount.read_once();
        if self.mem.folio_ref_count(head) != mapped + 1 {
            ctx.step(
                &self.ghost,
                "can_split_folio: extra references",
                u64::from(head),
            );
            return Ok(Split::KeptReferenced);
        }
        // unmap_folio(TTU_SPLIT_HUGE_PMD): PMD mappings first.
        let huge: Vec<RmapEntry> = self.mem.frame(head).rmap.lock().entries();
        for e in huge.into_iter().filter(|e| e.huge) {
            if let Err(e) = self.split_huge_pmd(ctx, mm, e.addr)? {
                return Ok(if e == Errno::ENOMEM {
                    Split::NoMemory
                } else {
                    Split::NotSuitable
                });
            }
        }
        let Some(recs) = self.try_to_migrate(ctx, mm, head)? else {
            return Ok(Split::KeptReferenced);
        };
        // folio_ref_freeze(folio, 1): our reference alone, or back off.
        let rc = &self.mem.frame(head).refcount;
        let raw = rc.read_once();
        if self.mem.counter.norm(raw) != 1 || rc.cmpxchg(raw, 0) != raw {
            ctx.step(
                &self.ghost,
                "split: folio_ref_freeze failed",
                u64::from(head),
            );
            self.remove_migration_ptes(ctx, &recs, |p| p)?;
            return Ok(Split::KeptReferenced);
        }
        ctx.step(&self.ghost, "split: folio_ref_freeze", u64::from(head));
        // __split_huge_page_tail(), last tail first.
        for p in (head + 1..head + nr).rev() {
            let f = self.mem.frame(p);
            f.flags.or(pg::LOCKED);
            // Page flags visible before the page is made non-compound.
            B::smp_wmb();
            f.compound_head.write_once(0);
            f.refcount.store_release(1);
            ctx.step(&self.ghost, "__split_huge_page_tail", u64::from(p));
        }
        let f = self.mem.frame(head);
        f.flags.andnot(pg::HEAD | pg::ORDER_MASK);
        f.refcount.store_release(1);
        ctx.step(
            &self.ghost,
            "__split_huge_page: unfreeze head",
            u64::from(head),
        );
        // unlock_page_lruvec() (release) then the PTL (acquire) in
        // remap_page(): RCsc locks order the tails' new compound_head before
        // the restored PTEs a lockless walker reads them through.
        B::smp_wmb();
        self.remove_migration_ptes(ctx, &recs, |p| p)?;
        Ok(Split::Split)
    }

    /// `collapse_huge_page()` of the PMD range containing `addr` in `mm`.
    pub fn collapse_huge_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Res<Result<Collapsed, Errno>> {
        let span = 1u64 << self.cfg.shift(2);
        let haddr = addr & !(span - 1);
        ctx.step(&self.ghost, "collapse_huge_page", haddr);
        // khugepaged_scan_mm_slot(): a file VMA goes to
        // hpage_collapse_scan_file() -> collapse_file() at its page offset,
        // with mmap_lock dropped first (collapse_file.rs).
        let file = {
            let vmas = self.mms[mm].mmap_lock.read();
            World::<B>::find_vma(&vmas, haddr).and_then(|v| match v.kind {
                VmaKind::FileShared { inode, base } | VmaKind::FilePrivate { inode, base }
                    if v.start <= haddr && haddr + span <= v.end =>
                {
                    Some((inode, (haddr / PAGE_SIZE - base) as u32))
                }
                _ => None,
            })
        };
        if let Some((inode, pgoff)) = file {
            return self.collapse_file(ctx, inode, pgoff);
        }
        self.rcu_reclaim(ctx)?;
        let Some(huge) =
            self.mem
                .alloc_folio(ctx, &self.ghost, Order::Pmd, pg::ANON | pg::ANON_EXCLUSIVE)
        else {
            return Ok(Err(Errno::ENOMEM));
        };
        let vmas = self.mms[mm].mmap_lock.write();
        let suitable = World::<B>::find_vma(&vmas, haddr)
            .is_some_and(|v| v.is_anon() && v.start <= haddr && haddr + span <= v.end);
        let r = if suitable {
            self.collapse_locked(ctx, mm, haddr, huge)
        } else {
            Ok(Ok(Collapsed::NotSuitable))
        };
        drop(vmas);
        if !matches!(r, Ok(Ok(Collapsed::Collapsed))) {
            self.mem.folio_put_refs(ctx, &self.ghost, huge, 1, None)?;
        }
        r
    }

    fn collapse_locked(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        haddr: u64,
        huge: Pfn,
    ) -> Res<Result<Collapsed, Errno>> {
        let Some((slot, pmd_idx)) = self.locked_pmd_slot(mm, haddr) else {
            return Ok(Ok(Collapsed::NotSuitable));
        };
        let pmd_t = &self.tables[slot as usize];
        // check_pmd_still_valid(): a PMD that points to a PTE table.
        let pmd = pmd_t.read(pmd_idx);
        if !pmd.present() || pmd.leaf() {
            return Ok(Ok(Collapsed::NotSuitable));
        }
        let pte_slot = pmd.table_slot();
        let pte_t = &self.tables[pte_slot as usize];
        // hpage_collapse_scan_pmd(), under the PTL (the kernel scans under
        // mmap_lock for read, before it takes the lock for write).
        let g = pte_t.ptl.lock();
        let scan = self.collapse_check_ptes(pte_t);
        drop(g);
        if let Err(why) = scan {
            return Ok(Ok(why));
        }
        // anon_vma_lock_write(): rmap walkers stay out until the base pages
        // are isolated. The model's one rmap lock; as in munmap, a world
        // without files has no walker that takes it (the anonymous walkers,
        // split, migration and KSM, hold mmap_lock, held here for write).
        let anon_vma = (!self.inodes.is_empty()).then(|| self.rmap_walk_lock.write());
        let end = haddr + (1u64 << self.cfg.shift(2));
        self.mmu_notifier_invalidate_range_start(ctx, mm, haddr, end);
        // pmdp_collapse_flush() under the PMD lock: GUP-fast walkers that read
        // the old PMD may still be inside the PTE table.
        let g = pmd_t.ptl.lock();
        pmd_t.get_and_clear(pmd_idx, self.cfg.arch);
        drop(g);
        ctx.step(&self.ghost, "pmdp_collapse_flush", haddr);
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_range: IPI");
        }
        self.mmu_notifier_invalidate_range_end(ctx);
        // tlb_remove_table_sync_one(), right after the flush and before
        // __collapse_huge_page_isolate() ("mm/khugepaged: fix GUP-fast
        // interaction by sending IPI", bug #7): under RCU table freeing the
        // flush does not wait for GUP-fast, so this does. A walker that read the
        // old PMD has left the old PTE table before the refcounts are checked:
        // its pin, if any, is seen there, and the table (freed below; the kernel
        // deposits it, to be freed or reused later) is no longer walked.
        if self.cfg.arch == Arch::Rcu && self.cfg.p().collapse_syncs_walkers {
            self.walkers
                .sync(ctx, &self.ghost, "tlb_remove_table_sync_one");
        }
        // pte_offset_map_lock() + __collapse_huge_page_isolate(): the PTEs,
        // read under the PTL and the anon_vma lock after the flush, are what is
        // copied; each base page referenced by its mapping alone.
        let g = pte_t.ptl.lock();
        let isolated = self.collapse_check_ptes(pte_t);
        drop(g);
        let ptes = match isolated {
            Ok(ptes) => ptes,
            Err(why) => {
                // pmd_populate() of the old table, then anon_vma_unlock_write().
                let g = pmd_t.ptl.lock();
                pmd_t.set(pmd_idx, pmd);
                drop(g);
                drop(anon_vma);
                ctx.step(&self.ghost, "collapse: not isolated, restore", haddr);
                return Ok(Ok(why));
            }
        };
        // "All pages are isolated and locked so anon_vma rmap can't run
        // anymore": anon_vma_unlock_write().
        drop(anon_vma);
        // __collapse_huge_page_copy(): then the base pages and their PTEs go.
        for (i, p) in ptes.iter().enumerate() {
            self.copy_highpage(huge + i as Pfn, p.pfn());
        }
        let g = pte_t.ptl.lock();
        let mut freed = Vec::new();
        for (i, p) in ptes.iter().enumerate() {
            pte_t.get_and_clear(i, self.cfg.arch);
            self.remove_rmap(p.pfn(), RmapEntry::pte(mm, haddr + i as u64 * PAGE_SIZE));
            freed.push(self.mem.page_folio(p.pfn()));
        }
        drop(g);
        for head in freed {
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        }
        // __folio_mark_uptodate(): the copy before the PMD that publishes it.
        B::smp_wmb();
        let g = pmd_t.ptl.lock();
        self.add_rmap(huge, RmapEntry::huge(mm, haddr));
        pmd_t.set(pmd_idx, Pte::mk_leaf(huge, true, true));
        drop(g);
        ctx.step(&self.ghost, "collapse: set_pmd_at", haddr);
        // The old PTE table. Without the sync above (before 6.1-stable) a
        // GUP-fast walker may still be inside it under RCU table freeing.
        self.free_table(ctx, pte_slot)?;
        Ok(Ok(Collapsed::Collapsed))
    }

    /// The PTE checks of `hpage_collapse_scan_pmd()` and
    /// `__collapse_huge_page_isolate()`, with the PTL held: every PTE present
    /// and mapping an anonymous base page referenced by this mapping alone
    /// (`folio_expected_ref_count() == folio_ref_count()`). Returns the PTEs,
    /// or what collapse reports instead.
    fn collapse_check_ptes(&self, pte_t: &PageTable<B>) -> Result<Vec<Pte>, Collapsed> {
        let ptes: Vec<Pte> = (0..self.cfg.fanout()).map(|i| pte_t.read(i)).collect();
        if ptes.iter().any(|p| !p.present() || p.special()) {
            return Err(Collapsed::NotSuitable);
        }
        let referenced = ptes.iter().any(|p| {
            let head = self.mem.page_folio(p.pfn());
            self.mem.frame(head).flags.read_once() & pg::ANON == 0
                || self.mem.folio_ref_count(head) != 1
        });
        if referenced {
            return Err(Collapsed::KeptReferenced);
        }
        Ok(ptes)
    }
}
