//! File THP collapse (KERNEL.md §5.5): khugepaged's `collapse_file()` and
//! `retract_page_tables()` (mm/khugepaged.c), what `collapse_huge_page()`
//! runs for a file VMA (`khugepaged_scan_mm_slot` -> `hpage_collapse_scan_file`).
//!
//! `collapse_file()`: lock every cached page of a PMD-aligned range, take a
//! reference and the LRU isolation's, drop clean buffers, unmap it from every
//! mapping (`try_to_unmap`), then, under the xa lock, check that only those
//! three references are left (`folio_ref_count() != 3` -> SCAN_PAGE_COUNT: a
//! GUP pin makes collapse fail); copy, point `i_pages` at the new pages,
//! `retract_page_tables()`, unlock the new pages, and free the old ones.
//! `retract_page_tables()`: for each VMA mapping the range with no anonymous
//! pages, under the PMD lock and the PTE lock, `pmdp_collapse_flush()` (clear
//! the PMD, flush), then free the now empty PTE table: `pte_free_defer()` after
//! an RCU grace period from 6.6 (1d65b771bc08); before, `pte_free()` at once
//! (`collapse_and_free_pmd`), after `tlb_remove_table_sync_one()` from
//! 6.1-stable (2ba99c5e0881, bug #7; the model's 6.1 preset predates it).
//!
//! The GUP-fast question: a walker that read the old PMD can still be in the
//! retracted table. The old pages' PTEs were cleared by `try_to_unmap` *before*
//! the refcount check, so GUP-fast's pin-then-recheck-the-PTE and collapse's
//! clear-then-check-the-count is the usual handshake: either collapse sees the
//! pin and backs off, or the PTE recheck sees the cleared PTE. The retracted
//! table holds only none PTEs, so the PMD recheck (70cbc3cc78a9) is not what
//! keeps file collapse safe; the table's lifetime is (#7 under RCU before the
//! sync, which 1d65b771bc08's `pte_free_defer` keeps for good).
//!
//! Simplifications, one line each:
//! - the new folio is one base page per index, not one PMD-order folio: the
//!   model's page cache holds base pages only (writeback, reclaim, hole punch
//!   and migration work on base pages), so later faults map it by PTEs (the
//!   kernel maps a PMD-order page-cache folio by a PMD where `do_set_pmd` may);
//! - the range must be fully cached (no `page_cache_sync_readahead`), and a
//!   dirty or writeback page fails the collapse (no `filemap_flush`); whether
//!   the file is open for writing (`inode_is_open_for_write`) is not modelled;
//! - no LRU: the isolation reference is a plain reference;
//! - 6.1 froze each old page at 3 and stored the new folio index by index
//!   inside the loop; the model checks the count and stores once, as latest
//!   does (the 6.5 rework of collapse_file's control flow; hash not checked),
//!   in every era: a GUP-fast grab fails either way;
//! - `retract_page_tables` takes each mm's `mmap_lock` for write, blocking,
//!   and so runs after the new pages are unlocked and the old ones leave the
//!   file (the kernel keeps the new folio locked across it, taking
//!   `mmap_write_trylock` before 6.6 and no `mmap_lock` since 1d65b771bc08,
//!   whose locked table walkers recheck the PMD, which the model's do not): a
//!   fault that maps a new page first keeps its table; GUP-fast takes neither
//!   lock, so its race is the kernel's;
//! - the VMAs come from each mm's VMA list (the model has no `i_mmap` tree),
//!   and `vma->anon_vma` is read as "a PTE in the range is not none" (after
//!   `try_to_unmap`, only a private mapping's anonymous copies are left).

use crate::backend::{Backend, KAtomic};
use crate::config::Arch;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::mm::thp::Collapsed;
use crate::state::mem::{pg, Order};
use crate::state::mm::VmaKind;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

impl<B: Backend> World<B> {
    /// `hpage_collapse_scan_file()` then `collapse_file()` of the PMD-sized
    /// range of `inode` starting at index `start` (no `mmap_lock` held).
    pub(crate) fn collapse_file(
        &self,
        ctx: &mut Ctx,
        inode: u32,
        start: u32,
    ) -> Res<Result<Collapsed, Errno>> {
        let nr = self.cfg.fanout() as u32;
        let ino = &self.inodes[inode as usize];
        if start % nr != 0 || start + nr > ino.nr_pages() {
            return Ok(Ok(Collapsed::NotSuitable));
        }
        ctx.step(&self.ghost, "hpage_collapse_scan_file", u64::from(start));
        // hpage_collapse_scan_file(): a racy look (the kernel's is an RCU walk
        // of i_pages): every index cached, each page referenced by the cache,
        // its mappings and its buffers alone.
        {
            let cache = ino.i_pages.lock();
            for index in start..start + nr {
                let Some(p) = cache[index as usize] else {
                    return Ok(Ok(Collapsed::NotSuitable));
                };
                let f = self.mem.frame(p);
                let private = i32::from(f.flags.read_once() & pg::HAS_BUFFERS != 0);
                if self.mem.folio_ref_count(p) != 1 + f.mapcount.read_once() + private {
                    return Ok(Ok(Collapsed::KeptReferenced));
                }
            }
        }
        // alloc_charge_folio() + __folio_set_locked(): the new pages, locked;
        // each allocation's reference becomes the page cache's.
        self.rcu_reclaim(ctx)?;
        let mut new = Vec::new();
        for _ in 0..nr {
            let Some(p) = self
                .mem
                .alloc_folio(ctx, &self.ghost, Order::Base, pg::LOCKED)
            else {
                for p in new {
                    self.folio_unlock(ctx, p);
                    self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
                }
                return Ok(Err(Errno::ENOMEM));
            };
            new.push(p);
        }
        let mut old = Vec::new();
        let isolated = self.collapse_file_isolate(ctx, inode, start, nr, &mut old)?;
        if let Err(why) = isolated {
            // rollback: the old pages back to the LRU, unlocked; the new freed.
            // Their PTEs stay cleared: the next access faults them in again.
            for p in old {
                self.folio_unlock(ctx, p);
                self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
                self.mem
                    .folio_put_refs(ctx, &self.ghost, p, 1, Some(HoldKind::Get))?;
            }
            for p in new {
                self.folio_unlock(ctx, p);
                self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
            }
            ctx.step(&self.ghost, "collapse_file: rollback", u64::from(start));
            return Ok(Ok(why));
        }
        // "The old folios are locked, so they won't change anymore": the copy
        // (copy_mc_highpage), which carries the ghost's stamps with the data.
        for (&n, &o) in new.iter().zip(&old) {
            self.copy_highpage(n, o);
        }
        // folio_mark_uptodate(): the copy before the entries that publish it.
        B::smp_wmb();
        // xas_store(&xas, new_folio) over the range, under the xa lock.
        {
            let mut cache = ino.i_pages.lock();
            for (i, &n) in new.iter().enumerate() {
                let index = start + i as u32;
                self.set_folio_file(n, Some((inode, index)));
                cache[index as usize] = Some(n);
            }
        }
        ctx.step(&self.ghost, "collapse_file: xas_store", u64::from(start));
        // folio_unlock(new_folio): faults waiting on it map it now. (The
        // kernel unlocks after retract_page_tables; see the simplifications.)
        for &n in &new {
            self.folio_unlock(ctx, n);
        }
        // The old folios: mapping = NULL and unlock (a fault that found one
        // looks again and finds the new page). The ghost notes why each left
        // its file: a pin on it is still judged.
        for &o in &old {
            self.ghost.migrated_out_of_file(o);
            self.set_folio_file(o, None);
            self.folio_unlock(ctx, o);
        }
        self.retract_page_tables(ctx, inode, start)?;
        // folio_put_refs(folio, 3): ours, the cache's and the isolation's.
        for o in old {
            self.mem.folio_put_refs(ctx, &self.ghost, o, 2, None)?;
            self.mem
                .folio_put_refs(ctx, &self.ghost, o, 1, Some(HoldKind::Get))?;
        }
        ctx.step(&self.ghost, "collapse_file: done", u64::from(start));
        Ok(Ok(Collapsed::Collapsed))
    }

    /// The loop of `collapse_file()` over the range: each page locked
    /// (`folio_trylock`), referenced, isolated, stripped of clean buffers
    /// (`filemap_release_folio`), unmapped (`try_to_unmap`), and then, under
    /// the xa lock, referenced only by us, the cache and the isolation.
    /// Isolated pages go to `old` (locked, with our two references) also when
    /// a later one fails, for the caller's rollback.
    fn collapse_file_isolate(
        &self,
        ctx: &mut Ctx,
        inode: u32,
        start: u32,
        nr: u32,
        old: &mut Vec<Pfn>,
    ) -> Res<Result<(), Collapsed>> {
        let ino = &self.inodes[inode as usize];
        for index in start..start + nr {
            let cache = ino.i_pages.lock();
            let Some(p) = cache[index as usize] else {
                // !folio: page_cache_sync_readahead (not modelled).
                return Ok(Err(Collapsed::NotSuitable));
            };
            let f = self.mem.frame(p);
            if f.flags.read_once() & (pg::DIRTY | pg::WRITEBACK) != 0 {
                // "khugepaged only works on read-only fd": filemap_flush(),
                // SCAN_FAIL.
                return Ok(Err(Collapsed::NotSuitable));
            }
            if f.flags.fetch_or(pg::LOCKED) & pg::LOCKED != 0 {
                // SCAN_PAGE_LOCK.
                return Ok(Err(Collapsed::NotSuitable));
            }
            // folio_get() under the xa lock: the cache's reference keeps it.
            self.mem.folio_ref_add(ctx, &self.ghost, p, 1)?;
            ctx.hold(p, self.ghost.frame(p).gen(), HoldKind::Get, 1);
            drop(cache);
            ctx.step(&self.ghost, "collapse_file: folio_trylock", u64::from(p));
            let unlock_put = |ctx: &mut Ctx| -> Res<()> {
                self.folio_unlock(ctx, p);
                self.mem
                    .folio_put_refs(ctx, &self.ghost, p, 1, Some(HoldKind::Get))
                    .map(drop)
            };
            // SCAN_TRUNCATED, or dirtied before we locked it.
            if f.mapping.read_once() != inode + 1
                || f.flags.read_once() & (pg::DIRTY | pg::WRITEBACK) != 0
            {
                unlock_put(ctx)?;
                return Ok(Err(Collapsed::NotSuitable));
            }
            // folio_isolate_lru(): its own reference.
            self.mem.folio_ref_add(ctx, &self.ghost, p, 1)?;
            // filemap_release_folio(): a clean page's buffers go.
            if f.flags.fetch_andnot(pg::HAS_BUFFERS) & pg::HAS_BUFFERS != 0 {
                ctx.step(&self.ghost, "try_to_free_buffers", u64::from(p));
                self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
            }
            // try_to_unmap(TTU_IGNORE_MLOCK | TTU_BATCH_FLUSH): every PTE
            // cleared (the model flushes each at once) and its reference
            // dropped, before the count below is read.
            if !f.rmap.lock().is_empty() {
                self.try_to_unmap(ctx, p)?;
            }
            // xas_lock_irq(); "We control three references to the folio".
            let cache = ino.i_pages.lock();
            if self.mem.folio_ref_count(p) != 3 {
                drop(cache);
                ctx.step(&self.ghost, "collapse_file: SCAN_PAGE_COUNT", u64::from(p));
                // folio_putback_lru(), then out_unlock.
                self.mem.folio_put_refs(ctx, &self.ghost, p, 1, None)?;
                unlock_put(ctx)?;
                return Ok(Err(Collapsed::KeptReferenced));
            }
            drop(cache);
            old.push(p);
        }
        Ok(Ok(()))
    }

    /// `retract_page_tables()` of the range of `inode` at index `start`: in
    /// each mm (its `mmap_lock` held for write, see the simplifications), each
    /// VMA mapping the whole range PMD-aligned, with a
    /// PTE table there (`find_pmd_or_thp_or_none`) and no anonymous pages:
    /// under the PMD lock and the PTE lock, `pmdp_collapse_flush()`; then the
    /// table is freed, after a grace period (`pte_free_defer`, 6.6) or at once
    /// (`pte_free`, after `tlb_remove_table_sync_one()` from 6.1-stable).
    pub(crate) fn retract_page_tables(&self, ctx: &mut Ctx, inode: u32, start: u32) -> Res<()> {
        let span = 1u64 << self.cfg.shift(2);
        let nr = self.cfg.fanout();
        for mm in 0..self.mms.len() {
            // mmap_lock for write (see the simplifications), then
            // i_mmap_lock_read(mapping), in munmap's order.
            let vmas = self.mms[mm].mmap_lock.write();
            let _i_mmap = self.rmap_walk_lock.read();
            for v in vmas.iter() {
                let base = match v.kind {
                    VmaKind::FileShared { inode: i, base }
                    | VmaKind::FilePrivate { inode: i, base }
                        if i == inode =>
                    {
                        base
                    }
                    _ => continue,
                };
                let addr = (base + u64::from(start)) * PAGE_SIZE;
                if addr & (span - 1) != 0 || addr < v.start || v.end < addr + span {
                    continue;
                }
                // find_pmd_or_thp_or_none() == SCAN_SUCCEED: a PTE table.
                let Some((slot, idx)) = self.locked_pmd_slot(mm, addr) else {
                    continue;
                };
                let pmd_t = &self.tables[slot as usize];
                let pmd = pmd_t.read(idx);
                if !pmd.present() || pmd.leaf() {
                    continue;
                }
                self.mmu_notifier_invalidate_range_start(ctx, mm, addr, addr + span);
                let pte_slot = pmd.table_slot();
                let pte_t = &self.tables[pte_slot as usize];
                // pmd_lock(), then the PTE lock nested.
                let pml = pmd_t.ptl.lock();
                let ptl = pte_t.ptl.lock();
                // vma->anon_vma, rechecked under the PTL.
                let anon = (0..nr).any(|i| !pte_t.read(i).is_none());
                if !anon {
                    // pmdp_collapse_flush(): clear the PMD (the flush below).
                    pmd_t.get_and_clear(idx, self.cfg.arch);
                }
                drop(ptl);
                drop(pml);
                if anon {
                    self.mmu_notifier_invalidate_range_end(ctx);
                    ctx.step(&self.ghost, "retract_page_tables: anon_vma", addr);
                    continue;
                }
                ctx.step(
                    &self.ghost,
                    "retract_page_tables: pmdp_collapse_flush",
                    addr,
                );
                if flush_waits_for_walkers(self.cfg.arch) {
                    self.walkers.sync(ctx, &self.ghost, "flush_tlb_range: IPI");
                }
                self.mmu_notifier_invalidate_range_end(ctx);
                if self.cfg.p().retract_pte_free_defer {
                    // pte_free_defer(): call_rcu; a GUP-fast walker still in
                    // the table (interrupts off) holds the grace period off.
                    self.call_rcu_table(ctx, pte_slot);
                } else {
                    // collapse_and_free_pmd(): pte_free() at once; from
                    // 6.1-stable after tlb_remove_table_sync_one().
                    if self.cfg.arch == Arch::Rcu && self.cfg.p().collapse_syncs_walkers {
                        self.walkers
                            .sync(ctx, &self.ghost, "tlb_remove_table_sync_one");
                    }
                    self.free_table(ctx, pte_slot)?;
                }
            }
        }
        Ok(())
    }
}
