//! The address space: `struct mm_struct`, VMAs, page faults, mmap and munmap.
//!
//! Locking as in the kernel: `mmap_lock` (read for faults and GUP, write for
//! mmap/munmap/fork/collapse), one PTL per page table for entry changes, the
//! registry of interrupts-off walkers for freeing (tlb.rs).

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind, Stamp, UnmapRec, WriteRec};
use crate::invariant::{Invariant, Res};
use crate::preset::ReuseRule;
use crate::state::mem::pg;
use crate::state::mm::FaultFlags;
use crate::state::mm::Vma;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::{flush_waits_for_walkers, MmuGather};
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// A user access: the page it went to, that frame's generation at the
/// access, the value read or written.
pub(crate) struct Access {
    pub page: Pfn,
    pub seen: Stamp,
    pub value: u64,
}

impl<B: Backend> World<B> {
    /// `handle_mm_fault()`; the caller holds `mmap_lock` for read. File VMAs go to
    /// `do_file_fault` (file.rs). `Ok(Err(errno))` is VM_FAULT_OOM / SIGSEGV /
    /// SIGBUS as an errno.
    pub(crate) fn handle_mm_fault(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        ctx.step(&self.ghost, "handle_mm_fault", addr);
        if ff.write && !vma.writable() {
            return Ok(Err(Errno::EFAULT));
        }
        if let Some(size) = vma.hugetlb() {
            return self.hugetlb_fault(ctx, mm, vma, addr, ff, size);
        }
        let (slot, idx) = match self.ensure_pte_table(ctx, mm, addr) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Err(Errno::ENOMEM)),
            // A PMD migration entry: wait for the migration, then retry
            // (__handle_mm_fault's is_swap_pmd case). A huge leaf: a THP
            // write fault is do_huge_pmd_wp_page's.
            Err(_) => {
                if self.pmd_migration_entry_wait(ctx, mm, addr) {
                    return Ok(Ok(()));
                }
                return Ok(self
                    .do_huge_pmd_wp_page(ctx, mm, vma, addr, ff)?
                    .unwrap_or(Err(Errno::EFAULT)));
            }
        };
        let t = &self.tables[slot as usize];
        let pte = t.read(idx);
        if !vma.is_anon() {
            return self.do_file_fault(ctx, mm, vma, addr, slot, idx, pte, ff);
        }
        if pte.is_none() {
            return self.do_anonymous_page(ctx, mm, vma, addr, slot, idx, ff);
        }
        if pte.is_swap() {
            return self.do_swap_page(ctx, mm, vma, addr, slot, idx, pte, ff);
        }
        if pte.present() && (ff.write || ff.unshare) && !pte.write() {
            return self.do_wp_page(ctx, mm, vma, addr, slot, idx, pte, ff);
        }
        if pte.is_migration() {
            self.migration_entry_wait(ctx, slot, idx);
        }
        // Present and sufficient, or migrated meanwhile: the access retries.
        Ok(Ok(()))
    }

    /// `do_swap_page()`: a fault on a swap entry. With FAULT_FLAG_ALLOW_RETRY
    /// the first attempt starts the I/O and asks for `mmap_lock` to be
    /// dropped while it completes (`folio_lock_or_retry`): the window in
    /// which munmap can slip in. A folio still in the swap cache is mapped
    /// again (`do_swap_page_cached`); otherwise the slot is read into a fresh
    /// page, which is certainly exclusive.
    fn do_swap_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        if ff.allow_retry && !ff.tried {
            ctx.step(&self.ghost, "do_swap_page: swap I/O, VM_FAULT_RETRY", addr);
            return Ok(Err(Errno::EAGAIN));
        }
        let offset = pte.pfn();
        if let Some(folio) = self.swap_cache_get_folio(ctx, offset)? {
            return self.do_swap_page_cached(ctx, mm, vma, addr, slot, idx, pte, ff, folio);
        }
        let Some(pfn) = self.alloc_anon_page(ctx)? else {
            return Ok(Err(Errno::ENOMEM));
        };
        let (data, provenance) = match self.swap.lock()[offset as usize].as_ref() {
            Some(s) => (s.data, s.provenance),
            None => ([0, 0], [0; crate::config::MAX_MMS]),
        };
        for (w, v) in data.into_iter().enumerate() {
            self.write_page(pfn, w, v);
        }
        // Ghost: the content comes back with what fork gave each child in it.
        self.ghost.set_provenance(pfn, provenance);
        B::smp_wmb();
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if t.read(idx) != pte {
            drop(g);
            self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None)?;
            return Ok(Ok(()));
        }
        self.add_rmap(pfn, RmapEntry::pte(mm, addr));
        let write = ff.write && vma.writable();
        t.set(idx, Pte::mk_page(pfn, write, write));
        self.swap_free(offset);
        drop(g);
        ctx.step(&self.ghost, "do_swap_page: set_pte_at", addr);
        Ok(Ok(()))
    }

    /// `do_swap_page()` on a folio found in the swap cache (referenced by
    /// this fault): lock it, check it is still this entry's and the PTE
    /// unchanged, then map it. Whether it is mapped exclusive (and, for a
    /// write fault, writable) is the era's rule: before 5.18
    /// `reuse_swap_page()` on a write fault (mapcount plus swap count at most
    /// one; the folio leaves the swap cache), else read-only; from 5.19 the
    /// swap PTE's exclusive bit (1493a1913e34), or a folio only this fault
    /// holds once a write fault freed its swap (`should_try_to_free_swap`).
    /// The fault's reference becomes the mapping's.
    fn do_swap_page_cached(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
        ff: FaultFlags,
        folio: Pfn,
    ) -> Res<Result<(), Errno>> {
        let offset = pte.pfn();
        let put = |ctx: &mut Ctx| {
            self.mem
                .folio_put_refs(ctx, &self.ghost, folio, 1, Some(HoldKind::Get))
        };
        self.folio_lock(ctx, folio);
        // Still in the swap cache for this entry (reclaim may have freed it
        // from the cache meanwhile): else the access retries.
        if self.folio_swap_slot(folio) != Some(offset) {
            self.folio_unlock(ctx, folio);
            put(ctx)?;
            return Ok(Ok(()));
        }
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if t.read(idx) != pte {
            drop(g);
            self.folio_unlock(ctx, folio);
            put(ctx)?;
            return Ok(Ok(()));
        }
        let p = self.cfg.p();
        let f = self.mem.frame(folio);
        let (write, exclusive) = if p.reuse == ReuseRule::AnonExclusive {
            self.swap_free(offset);
            let swapped = self.swap.lock()[offset as usize]
                .as_ref()
                .is_some_and(|s| s.count > 0);
            // should_try_to_free_swap(): a write fault on a folio nobody but
            // this fault and the swap cache holds.
            if ff.write && !swapped && self.mem.folio_ref_count(folio) == 2 {
                self.delete_from_swap_cache(ctx, folio)?;
            }
            let exclusive = (p.swap_pte_exclusive && pte.swp_exclusive())
                || self.mem.folio_ref_count(folio) == 1;
            if exclusive {
                f.flags.or(pg::ANON_EXCLUSIVE);
            }
            (exclusive && ff.write && vma.writable(), exclusive)
        } else {
            // reuse_swap_page() before swap_free(): this entry counts.
            let count = self.swap.lock()[offset as usize]
                .as_ref()
                .map_or(0, |s| s.count);
            let reuse = ff.write && f.mapcount.read_once() + count as i32 <= 1;
            self.swap_free(offset);
            if reuse {
                self.delete_from_swap_cache(ctx, folio)?;
            }
            (reuse && vma.writable(), reuse)
        };
        self.add_rmap(folio, RmapEntry::pte(mm, addr));
        ctx.hold(folio, self.ghost.frame(folio).gen(), HoldKind::Get, -1);
        t.set(idx, Pte::mk_page(folio, write, write));
        drop(g);
        ctx.step(
            &self.ghost,
            if exclusive {
                "do_swap_page: map swap-cache folio exclusive"
            } else {
                "do_swap_page: map swap-cache folio shared, read-only"
            },
            addr,
        );
        self.folio_unlock(ctx, folio);
        Ok(Ok(()))
    }

    /// A page for a fault, after running any RCU callbacks that are due.
    pub(crate) fn alloc_anon_page(&self, ctx: &mut Ctx) -> Res<Option<Pfn>> {
        self.rcu_reclaim(ctx)?;
        Ok(self.mem.alloc_anon(ctx, &self.ghost))
    }

    /// A new exclusive anonymous page holding a copy of `src` (zeroed for
    /// `None`: the zero page), published with `smp_wmb` (`__folio_mark_uptodate`)
    /// before any PTE may point to it. `None` is -ENOMEM.
    pub(crate) fn anon_copy_of(&self, ctx: &mut Ctx, src: Option<Pfn>) -> Res<Option<Pfn>> {
        let Some(new) = self.alloc_anon_page(ctx)? else {
            return Ok(None);
        };
        match src {
            Some(src) => self.copy_highpage(new, src),
            None => {
                for w in 0..2 {
                    self.write_page(new, w, 0);
                }
            }
        }
        B::smp_wmb();
        Ok(Some(new))
    }

    /// `do_anonymous_page()`: a read fault maps the shared zero page; a write fault
    /// allocates a zeroed, exclusive anonymous page.
    fn do_anonymous_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        let t = &self.tables[slot as usize];
        if !ff.write {
            let g = t.ptl.lock();
            if t.read(idx).is_none() {
                t.set(idx, Pte::mk_zero(self.mem.zero_pfn));
                ctx.step(&self.ghost, "do_anonymous_page: map zero page", addr);
            }
            drop(g);
            return Ok(Ok(()));
        }
        let Some(pfn) = self.alloc_anon_page(ctx)? else {
            return Ok(Err(Errno::ENOMEM));
        };
        self.write_page(pfn, 0, 0);
        self.write_page(pfn, 1, 0);
        // __folio_mark_uptodate(): the zeroed contents before the PTE is visible.
        if !self.cfg.has(Mutation::FaultNoWmb) {
            B::smp_wmb();
        }
        let g = t.ptl.lock();
        if !t.read(idx).is_none() {
            drop(g);
            self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None)?;
            return Ok(Ok(()));
        }
        self.add_rmap(pfn, RmapEntry::pte(mm, addr));
        t.set(idx, Pte::mk_page(pfn, vma.writable(), true));
        ctx.step(&self.ghost, "do_anonymous_page: set_pte_at", addr);
        drop(g);
        Ok(Ok(()))
    }

    /// The count `reuse_swap_page()` judges before 5.9 (and for THP before
    /// 5.18): the page's mapcount plus, for a folio in the swap cache, the
    /// swap PTEs naming its slot; for a page of a large folio the highest
    /// subpage mapcount plus the PMD mappings (`page_trans_huge_map_swapcount`;
    /// large folios never enter the model's swap cache). GUP references are
    /// not counted: the Missed COW of bugs #9 and #10.
    pub(crate) fn reuse_swap_page_count(&self, page: Pfn) -> i32 {
        let head = self.mem.page_folio(page);
        let nr = self.mem.folio_nr_pages(head);
        if nr == 1 {
            let swapped = self.folio_swap_slot(head).map_or(0, |offset| {
                self.swap.lock()[offset as usize]
                    .as_ref()
                    .map_or(0, |s| s.count as i32)
            });
            return self.mem.frame(page).mapcount.read_once() + swapped;
        }
        let ptes = (head..head + nr)
            .map(|p| self.mem.frame(p).mapcount.read_once())
            .max()
            .unwrap_or(0);
        ptes + self.mem.frame(head).entire_mapcount.read_once()
    }

    /// Whether a write fault may reuse the anonymous `page` (the whole folio
    /// if `whole`: a PMD mapping) in place, by `rule`; the AnonExclusive
    /// fallback re-marks it exclusive (`folio_move_anon_rmap`).
    /// A KSM page is never reused from 5.9 (`folio_test_ksm` → copy:
    /// 1a0cf26323c8 removed `reuse_ksm_page`); before, `reuse_ksm_page` took
    /// one that only this PTE maps and nobody else references, and it stopped
    /// being a KSM page (`page_move_anon_rmap`; its stable-tree node goes stale).
    pub(crate) fn wp_can_reuse(&self, rule: ReuseRule, page: Pfn, whole: bool) -> bool {
        let head = self.mem.page_folio(page);
        let flags = self.mem.frame(page).flags.read_once();
        if flags & pg::KSM != 0 {
            let f = self.mem.frame(head);
            let reuse = rule == ReuseRule::Mapcount
                && flags & pg::SWAPCACHE == 0
                && self.mem.folio_ref_count(head) == 1
                && f.mapcount.read_once() == 1;
            if reuse {
                f.flags.andnot(pg::KSM);
            }
            return reuse;
        }
        flags & pg::ANON != 0
            && match rule {
                ReuseRule::Mapcount => self.reuse_swap_page_count(page) == 1,
                ReuseRule::PageCount => self.mem.folio_ref_count(head) == 1,
                ReuseRule::AnonExclusive => {
                    flags & pg::ANON_EXCLUSIVE != 0 || {
                        let only = self.mem.folio_ref_count(head) == 1;
                        if only && whole {
                            self.set_folio_exclusive(head, true);
                        } else if only {
                            self.mem.frame(page).flags.or(pg::ANON_EXCLUSIVE);
                        }
                        only
                    }
                }
            }
    }

    /// `do_wp_page()`: a write (or unshare) fault on a present read-only PTE. Reuse
    /// the page if the era's rule says it is ours alone, else copy it
    /// (`wp_page_copy`). Simplification: the AnonExclusive fallback tests
    /// `page_count() == 1` without the page lock and swap cache.
    pub(crate) fn do_wp_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        let t = &self.tables[slot as usize];
        let Some(g) = t.lock_if_same(idx, pte) else {
            // Someone changed it: the fault is retried by the caller's access.
            return Ok(Ok(()));
        };
        let old = pte.pfn();
        let zero = pte.special() && self.mem.is_zero_pfn(old);
        if !zero && self.wp_can_reuse(self.cfg.p().reuse, old, false) {
            // wp_page_reuse(); an unshare fault keeps the PTE read-only.
            if !ff.unshare {
                t.set(idx, pte.with(Pte::WRITE | Pte::DIRTY));
            }
            ctx.step(&self.ghost, "wp_page_reuse", addr);
            drop(g);
            return Ok(Ok(()));
        }
        // The fault's own reference on the old page, taken under the PTL, keeps
        // it alive while it is copied with the lock dropped (`folio_get` in
        // do_wp_page).
        let held = if zero {
            None
        } else {
            let head = self.mem.page_folio(old);
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
            Some(head)
        };
        drop(g);
        let r = self.wp_page_copy(ctx, mm, vma, addr, slot, idx, pte, ff);
        if let Some(head) = held {
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        }
        r
    }

    /// `wp_page_copy()`: copy into a new exclusive page, then replace the PTE with
    /// clear + flush + set (`ptep_clear_flush`), and drop the old mapping's
    /// reference only after the flush.
    fn wp_page_copy(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        let old = pte.pfn();
        let zero = pte.special() && self.mem.is_zero_pfn(old);
        let Some(new) = self.anon_copy_of(ctx, (!zero).then_some(old))? else {
            return Ok(Err(Errno::ENOMEM));
        };
        let t = &self.tables[slot as usize];
        // The kernel invalidates secondary MMUs around the PTE replacement.
        self.mmu_notifier_invalidate_range_start(ctx, mm, addr, addr + PAGE_SIZE);
        let g = t.ptl.lock();
        if t.read(idx) != pte {
            drop(g);
            self.mmu_notifier_invalidate_range_end(ctx);
            self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
            return Ok(Ok(()));
        }
        t.get_and_clear(idx, self.cfg.arch);
        ctx.step(&self.ghost, "wp_page_copy: ptep_clear_flush", addr);
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_page: IPI");
        }
        let e = RmapEntry::pte(mm, addr);
        self.add_rmap(new, e);
        let write = vma.writable() && !ff.unshare;
        t.set(idx, Pte::mk_page(new, write, write));
        if !zero {
            self.remove_rmap(old, e);
        }
        drop(g);
        self.mmu_notifier_invalidate_range_end(ctx);
        ctx.step(&self.ghost, "wp_page_copy: set_pte_at", addr);
        if !zero {
            let head = self.mem.page_folio(old);
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        }
        Ok(Ok(()))
    }

    /// `mmap()` of an anonymous private or file region at a fixed address
    /// (MAP_FIXED_NOREPLACE: -EEXIST if it overlaps).
    pub fn mmap(&self, ctx: &mut Ctx, mm: usize, vma: Vma) -> Res<Result<(), Errno>> {
        ctx.step(&self.ghost, "do_mmap", vma.start);
        if vma.start >= vma.end || vma.end > self.cfg.va_size() || vma.start % PAGE_SIZE != 0 {
            return Ok(Err(Errno::EINVAL));
        }
        let mut vmas = self.mms[mm].mmap_lock.write();
        if vmas.iter().any(|v| v.start < vma.end && vma.start < v.end) {
            return Ok(Err(Errno::EEXIST));
        }
        vmas.push(vma);
        vmas.sort_by_key(|v| v.start);
        Ok(Ok(()))
    }

    /// `munmap()` (do_vmi_munmap -> unmap_region): under `mmap_lock` for write,
    /// remove the VMAs, zap the PTEs under their PTLs gathering the pages, unhook
    /// page tables no VMA needs any more (free_pgtables), then `tlb_finish_mmu`:
    /// flush, free the pages, free the tables (under RCU only after a grace period,
    /// asynchronously: munmap returns at once).
    pub fn munmap(&self, ctx: &mut Ctx, mm: usize, start: u64, len: u64) -> Res<Result<(), Errno>> {
        ctx.step(&self.ghost, "do_vmi_munmap", start);
        let end = start.saturating_add(len);
        if start % PAGE_SIZE != 0 || len == 0 || end > self.cfg.va_size() {
            return Ok(Err(Errno::EINVAL));
        }
        let mut vmas = self.mms[mm].mmap_lock.write();
        // A hugetlb VMA splits only at its folio size (`hugetlb_vm_op_split`),
        // mapped or not.
        for v in vmas.iter().filter(|v| v.start < end && start < v.end) {
            if let Some(size) = v.hugetlb() {
                let mask = (1u64 << self.cfg.shift(size.level())) - 1;
                let cut = |a: u64| v.start < a && a < v.end && a & mask != 0;
                if cut(start) || cut(end) {
                    return Ok(Err(Errno::EINVAL));
                }
            }
        }
        // A range that cuts through a huge leaf: a THP's PMD is split
        // (`__split_vma` -> `vma_adjust_trans_huge` -> `split_huge_pmd`).
        for (addr, level) in self.cut_huge_leaves(mm, start, end) {
            if level != 2 {
                return Ok(Err(Errno::EINVAL));
            }
            if let Err(e) = self.split_huge_pmd(ctx, mm, addr)? {
                return Ok(Err(e));
            }
        }
        // Split VMAs at the range boundaries and drop what lies inside.
        let mut kept = Vec::with_capacity(vmas.len() + 1);
        for v in vmas.iter() {
            if v.end <= start || v.start >= end {
                kept.push(*v);
                continue;
            }
            if v.start < start {
                kept.push(Vma { end: start, ..*v });
            }
            if v.end > end {
                kept.push(Vma { start: end, ..*v });
            }
        }
        *vmas = kept;
        let mut tlb = MmuGather::default();
        let pgd = self.mms[mm].pgd;
        self.mmu_notifier_invalidate_range_start(ctx, mm, start, end);
        let zapped = self.zap_range(ctx, mm, pgd, 4, 0, start, end, &mut tlb);
        self.mmu_notifier_invalidate_range_end(ctx);
        zapped?;
        self.ghost.unmapped(Some(mm));
        let seq = self.ghost.tick();
        ctx.ledger.unmaps.push(UnmapRec {
            seq,
            mm: mm as u32,
            start,
            end,
        });
        {
            // Tables go only once no rmap walker is inside them (unlink_file_vma /
            // unlink_anon_vmas); worlds without files have no such walker.
            let _walkers = (!self.inodes.is_empty()).then(|| self.rmap_walk_lock.write());
            self.free_pgtables(ctx, &vmas, pgd, 4, 0, start, end, &mut tlb)?;
        }
        self.tlb_finish_mmu(ctx, tlb)?;
        drop(vmas);
        Ok(Ok(()))
    }

    /// The huge leaves (address, level) that [start, end) cuts through
    /// (mmap_lock held for write).
    fn cut_huge_leaves(&self, mm: usize, start: u64, end: u64) -> Vec<(u64, u32)> {
        let mut cut: Vec<(u64, u32)> = Vec::new();
        for a in [start, end - 1] {
            let mut slot = self.mms[mm].pgd;
            for level in (2..=4).rev() {
                let e = self.tables[slot as usize].read(self.cfg.index(a, level));
                if !e.present() {
                    break;
                }
                if e.leaf() {
                    let span = 1u64 << self.cfg.shift(level);
                    let lo = a & !(span - 1);
                    if (start > lo || end < lo + span) && !cut.contains(&(lo, level)) {
                        cut.push((lo, level));
                    }
                    break;
                }
                slot = e.table_slot();
            }
        }
        cut
    }

    /// `unmap_page_range` -> `zap_pud_range` -> `zap_pmd_range` -> `zap_pte_range`:
    /// clear entries under each table's PTL and gather the mapped folios.
    /// Huge leaves are zapped whole (munmap splits the ones it cuts through first).
    fn zap_range(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        slot: u32,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        tlb: &mut MmuGather,
    ) -> Res<()> {
        let t = &self.tables[slot as usize];
        let span = 1u64 << self.cfg.shift(level);
        let mut ptl = if level <= 2 { Some(t.ptl.lock()) } else { None };
        for i in 0..self.cfg.fanout() {
            let lo = base + i as u64 * span;
            let hi = lo + span;
            if hi <= start || lo >= end {
                continue;
            }
            let e = t.read(i);
            if e.is_none() {
                continue;
            }
            if level > 1 && !e.leaf() {
                // Descend: lower tables have their own PTL.
                drop(ptl.take());
                self.zap_range(ctx, mm, e.table_slot(), level - 1, lo, start, end, tlb)?;
                ptl = if level <= 2 { Some(t.ptl.lock()) } else { None };
                continue;
            }
            let old = t.get_and_clear(i, self.cfg.arch);
            ctx.step(
                &self.ghost,
                if level == 1 {
                    "zap_pte_range: clear pte"
                } else {
                    "zap_huge_pmd: clear pmd"
                },
                lo,
            );
            if old.is_swap() {
                self.free_swap_and_cache(ctx, old.pfn())?;
                continue;
            }
            if !old.present() || old.special() {
                continue;
            }
            let pfn = old.pfn();
            let pmd = level > 1;
            if !pmd && old.dirty() && self.folio_file(self.mem.page_folio(pfn)).is_some() {
                // zap_pte_range(): a dirty file PTE dirties its folio, under the
                // PTL, before the mapping goes (user stores are made under the
                // PTL here, so 5df397dec7c4's delayed rmap removal is not needed).
                self.folio_mark_dirty(ctx, self.mem.page_folio(pfn))?;
            }
            if !self.remove_rmap(
                pfn,
                RmapEntry {
                    mm: mm as u32,
                    addr: lo,
                    huge: pmd,
                },
            ) {
                return Err(ctx.violation(
                    Invariant::Conservation,
                    format!("zap of {lo:#x} found no rmap entry for page {pfn}"),
                ));
            }
            tlb.pages.push(self.mem.page_folio(pfn));
        }
        drop(ptl);
        Ok(())
    }

    /// `free_pgtables` -> `free_pgd_range`: unhook every table under [start, end)
    /// whose whole span no remaining VMA touches, bottom-up, under the parent's PTL.
    fn free_pgtables(
        &self,
        ctx: &mut Ctx,
        vmas: &[Vma],
        slot: u32,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        tlb: &mut MmuGather,
    ) -> Res<()> {
        if level == 1 {
            return Ok(());
        }
        let t = &self.tables[slot as usize];
        let span = 1u64 << self.cfg.shift(level);
        for i in 0..self.cfg.fanout() {
            let lo = base + i as u64 * span;
            let hi = lo + span;
            if hi <= start || lo >= end {
                continue;
            }
            let e = t.read(i);
            if !e.present() || e.leaf() {
                continue;
            }
            self.free_pgtables(ctx, vmas, e.table_slot(), level - 1, lo, start, end, tlb)?;
            if vmas.iter().any(|v| v.start < hi && lo < v.end) {
                continue;
            }
            // pmd_clear() / pud_clear(): a plain store, under the parent's lock.
            // The step is logged before the unlock, which is a scheduling point.
            let g = t.ptl.lock();
            t.set(i, Pte::NONE);
            ctx.step(&self.ghost, "free_pgd_range: clear entry", lo);
            drop(g);
            tlb.tables.push(e.table_slot());
        }
        Ok(())
    }

    /// `tlb_finish_mmu()`: flush the TLB (under IPI this waits for every walker with
    /// interrupts off), free the gathered pages, then the gathered tables (under RCU
    /// only after a grace period: `tlb_remove_table` -> `tlb_remove_table_rcu`).
    pub(crate) fn tlb_finish_mmu(&self, ctx: &mut Ctx, tlb: MmuGather) -> Res<()> {
        if tlb.is_empty() {
            return Ok(());
        }
        ctx.step(&self.ghost, "tlb_flush_mmu: flush tlb", 0);
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers
                .sync(ctx, &self.ghost, "flush_tlb_mm_range: IPI");
        }
        for head in &tlb.pages {
            self.mem.folio_put_refs(ctx, &self.ghost, *head, 1, None)?;
        }
        for slot in tlb.tables {
            if flush_waits_for_walkers(self.cfg.arch) {
                // The IPI above already waited for every walker.
                self.free_table(ctx, slot)?;
            } else {
                self.call_rcu_table(ctx, slot);
            }
        }
        Ok(())
    }

    /// A user load or store at `addr` through the MMU; a missing or insufficient
    /// PTE faults (under `mmap_lock` for read) and the access is retried once.
    /// Returns the value read, or the value written.
    ///
    /// Simplification: the access itself is made under the PTL; the TLB-flush
    /// protocol is what guarantees no access through a stale TLB entry after it.
    pub fn user_access(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        write: bool,
    ) -> Res<Result<u64, Errno>> {
        Ok(self
            .user_access_page(ctx, mm, addr, write)?
            .map(|a| a.value))
    }

    /// `user_access`, with the page the access went to and that frame's
    /// generation then: once the access is done the address may map another
    /// page, and the frame may be freed.
    pub(crate) fn user_access_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        write: bool,
    ) -> Res<Result<Access, Errno>> {
        let vmas = self.mms[mm].mmap_lock.read();
        let Some(vma) = World::<B>::find_vma(&vmas, addr) else {
            return Ok(Err(Errno::EFAULT));
        };
        // The kernel retries until the access succeeds; a fault that lost a
        // race (a split, a migration) needs a few rounds.
        for _attempt in 0..4 {
            if let Some(v) = self.access_mapped(ctx, mm, addr, write)? {
                return Ok(Ok(v));
            }
            if let Err(e) = self.handle_mm_fault(
                ctx,
                mm,
                &vma,
                addr,
                FaultFlags {
                    write,
                    ..FaultFlags::default()
                },
            )? {
                return Ok(Err(e));
            }
        }
        Ok(Err(Errno::EAGAIN))
    }

    /// The access itself, if the PTE allows it; `None` means fault.
    fn access_mapped(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        write: bool,
    ) -> Res<Option<Access>> {
        let mut slot = self.mms[mm].pgd;
        let mut level = 4;
        loop {
            let t = &self.tables[slot as usize];
            let i = self.cfg.index(addr, level);
            let e = t.read(i);
            if !e.present() {
                return Ok(None);
            }
            if level == 1 || e.leaf() {
                let g = t.ptl.lock();
                let e = t.read(i);
                if !e.access_permitted(write) {
                    return Ok(None);
                }
                let sub = ((addr >> crate::types::PAGE_SHIFT)
                    & ((1u64
                        << self
                            .cfg
                            .shift(level)
                            .saturating_sub(crate::types::PAGE_SHIFT))
                        - 1)) as Pfn;
                let pfn: Pfn = e.pfn() + sub;
                let v = if write {
                    let v = self.value_for(ctx, mm, pfn);
                    self.write_page(pfn, 0, v);
                    // A store to a shared file page belongs to the file.
                    if self.record_file_write(ctx, pfn, v, false).is_none() {
                        let seq = self.ghost.tick();
                        ctx.ledger.wrote(WriteRec {
                            seq,
                            mm: mm as u32,
                            addr: addr & !(PAGE_SIZE - 1),
                            value: v,
                            via_pin: None,
                        });
                    }
                    if !e.dirty() {
                        t.set(i, e.with(Pte::DIRTY));
                    }
                    ctx.step(&self.ghost, "user store", addr);
                    v
                } else {
                    ctx.step(&self.ghost, "user load", addr);
                    self.mem.read_data(pfn, 0)
                };
                // Ghost, with the access: the life of the frame it reached.
                let seen = self.ghost.frame(pfn);
                drop(g);
                return Ok(Some(Access {
                    page: pfn,
                    seen,
                    value: v,
                }));
            }
            slot = e.table_slot();
            level -= 1;
        }
    }
}
