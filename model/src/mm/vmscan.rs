//! Reclaim, in `shrink_folio_list()`'s order (KERNEL.md §5.2, §5.7).
//!
//! A page-cache folio: isolate (a reference), trylock, `try_to_unmap`,
//! `pageout`, `filemap_release_folio` (buffers go if *they* are clean: the
//! page's refcount is not consulted), then `__remove_mapping`, which freezes
//! the refcount to the expected value *before* testing dirty: a GUP holder
//! that dirtied the page and dropped its reference is seen either way, and one
//! still holding its reference makes the freeze fail.
//!
//! An anonymous folio, reached by `madvise(MADV_PAGEOUT)` (`madvise_pageout`
//! -> `reclaim_pages` -> `shrink_folio_list`): isolate, trylock; a folio not
//! yet in the swap cache that may be pinned is kept out of it (feb889fb40fa,
//! 5.11: otherwise it is unmapped, a read fault maps it back read-only from
//! the swap cache, and under the page_count reuse rule the next store copies
//! it away from its pin), else `add_to_swap`; `try_to_unmap` ->
//! `try_to_unmap_one`: `ptep_clear_flush`, and for a PageAnonExclusive page
//! (5.19) `folio_try_share_anon_rmap_pte`, which fails if the page may be
//! pinned (the PTE is restored, the unmap fails, the folio stays in the swap
//! cache); a swap PTE, marked exclusive for an exclusive page (1493a1913e34);
//! `pageout` writes the data to the slot; `__remove_mapping` freezes the
//! refcount to the isolation's and the swap cache's references and frees the
//! folio, or, with any other reference (a GUP holder), leaves it in the swap
//! cache, where `do_swap_page` finds it again (memory.rs).
//!
//! Simplifications, one line each:
//! - one folio per call, chosen by (file, index) or by address, not by LRU age;
//! - pageout never runs on a page with an extra reference (`pageout()` keeps
//!   it: `is_page_cache_freeable`), so reclaim cleans a GUP-held page only
//!   after the flusher did;
//! - `pageout()` writes synchronously and reclaim goes on with the clean page
//!   (the kernel keeps it for a later pass once writeback ends);
//! - MADV_PAGEOUT reclaims anonymous base folios mapped once only: a THP is
//!   left alone (the kernel splits it or swaps it out whole), and so is a
//!   folio mapped by several PTEs (`folio_likely_mapped_shared`);
//! - MADV_PAGEOUT holds `mmap_lock` for read through the reclaim (as
//!   `madvise_cold_or_pageout_pte_range` does), so fork cannot map the folio
//!   elsewhere meanwhile and `try_to_unmap` walks the caller's address space
//!   alone;
//! - no swap readahead and no swap-in through the swap cache: a fault that
//!   misses the cache reads the slot into a fresh page (as a
//!   SWP_SYNCHRONOUS_IO device does).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What reclaim did with the folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reclaimed {
    NotCached,
    /// Removed from the page cache and freed.
    Freed,
    /// Someone else held the page lock (`folio_trylock` failed).
    KeptLocked,
    KeptWriteback,
    /// Mapped again, or the freeze found an extra reference (a GUP holder).
    KeptReferenced,
    /// Dirtied again after pageout, or its buffers could not be released.
    KeptDirty,
    /// Truncated (or punched out) between the lookup and the lock: only
    /// reclaim's reference is dropped.
    Truncated,
}

/// What MADV_PAGEOUT's reclaim did with an anonymous folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagedOut {
    /// Not a present anonymous base folio mapped once.
    NotSuitable,
    /// Someone else held the folio lock.
    KeptLocked,
    /// feb889fb40fa: maybe pinned, kept out of the swap cache.
    KeptPinned,
    /// `try_to_unmap` failed (an exclusive page that may be pinned): the
    /// folio stays mapped, and in the swap cache.
    UnmapFailed,
    /// `pageout()` or the freeze saw a reference beyond the isolation's and
    /// the swap cache's: unmapped, it stays in the swap cache.
    KeptReferenced,
    /// Dirtied again after pageout.
    KeptDirty,
    /// Written to its swap slot and freed.
    Freed,
}

impl<B: Backend> World<B> {
    /// `shrink_folio_list()` for the cached folio at `index` of `inode`.
    pub fn reclaim_file_folio(&self, ctx: &mut Ctx, inode: u32, index: u32) -> Res<Reclaimed> {
        ctx.step(&self.ghost, "shrink_folio_list", u64::from(index));
        // folio_isolate_lru(): reclaim's own reference.
        let Some(head) = self.filemap_get_folio(ctx, inode, index)? else {
            return Ok(Reclaimed::NotCached);
        };
        let f = self.mem.frame(head);
        if f.flags.fetch_or(pg::LOCKED) & pg::LOCKED != 0 {
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
            return Ok(Reclaimed::KeptLocked);
        }
        ctx.step(&self.ghost, "folio_trylock", u64::from(head));
        let r = self.shrink_locked(ctx, head, inode, index);
        if !matches!(r, Ok(Reclaimed::Freed)) {
            self.folio_unlock(ctx, head);
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        }
        r
    }

    /// The part of `shrink_folio_list()` that runs with the folio locked.
    fn shrink_locked(&self, ctx: &mut Ctx, head: Pfn, inode: u32, index: u32) -> Res<Reclaimed> {
        let f = self.mem.frame(head);
        // folio_mapping() under the lock: truncation removes a folio from its
        // file with the folio locked, so once locked a folio still in the file
        // stays there; one already gone is not reclaim's to remove.
        if f.mapping.read_once() == 0 {
            ctx.step(&self.ghost, "shrink_folio_list: truncated", u64::from(head));
            return Ok(Reclaimed::Truncated);
        }
        if f.flags.read_once() & pg::WRITEBACK != 0 {
            return Ok(Reclaimed::KeptWriteback);
        }
        self.try_to_unmap(ctx, head)?;
        if !f.rmap.lock().is_empty() {
            return Ok(Reclaimed::KeptReferenced);
        }
        // pageout(): only a page nobody else holds (is_page_cache_freeable: the
        // cache's reference and ours, beside the buffers') is cleaned and written;
        // one with an extra reference (a GUP holder) is kept for later.
        if f.flags.read_once() & pg::DIRTY != 0 {
            let buffers = i32::from(f.flags.read_once() & pg::HAS_BUFFERS != 0);
            if self.mem.folio_ref_count(head) - buffers != 2 {
                return Ok(Reclaimed::KeptReferenced);
            }
            if self.folio_clear_dirty_for_io(ctx, head)? {
                ctx.step(&self.ghost, "pageout", u64::from(head));
                self.writepage(ctx, head, inode, index)?;
            }
        }
        // filemap_release_folio() -> try_to_free_buffers(): the buffers' state
        // decides, not the page's references.
        let flags = f.flags.read_once();
        if flags & pg::HAS_BUFFERS != 0 {
            if flags & (pg::DIRTY | pg::WRITEBACK) != 0 {
                return Ok(Reclaimed::KeptDirty);
            }
            f.flags.fetch_andnot(pg::HAS_BUFFERS);
            ctx.step(&self.ghost, "try_to_free_buffers", u64::from(head));
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        }
        // __remove_mapping(): under the page-cache lock, freeze to the expected
        // count (the cache's reference and ours), then test dirty.
        let ino = &self.inodes[inode as usize];
        let mut cache = ino.i_pages.lock();
        if f.refcount.cmpxchg(2, 0) != 2 {
            drop(cache);
            ctx.step(
                &self.ghost,
                "__remove_mapping: refcount frozen? no",
                u64::from(head),
            );
            return Ok(Reclaimed::KeptReferenced);
        }
        // Our reference went with the freeze (and comes back with an unfreeze).
        let gen = self.ghost.frame(head).gen();
        ctx.hold(head, gen, HoldKind::Get, -1);
        if f.flags.read_once() & pg::DIRTY != 0 {
            f.refcount.store_release(2);
            ctx.hold(head, gen, HoldKind::Get, 1);
            drop(cache);
            return Ok(Reclaimed::KeptDirty);
        }
        cache[index as usize] = None;
        self.set_folio_file(head, None);
        drop(cache);
        ctx.step(&self.ghost, "__remove_mapping: removed", u64::from(head));
        // __folio_clear_locked, then free.
        f.flags.fetch_andnot(pg::LOCKED);
        self.mem.free_folio(ctx, &self.ghost, head)?;
        Ok(Reclaimed::Freed)
    }

    /// `try_to_unmap()` -> `try_to_unmap_one()` for each mapping: under the PTL,
    /// `ptep_clear_flush`, move the PTE's dirty bit to the folio, drop the rmap
    /// and the mapping's reference.
    pub(crate) fn try_to_unmap(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        self.rmap_walk_ptes(ctx, head, |ctx, e, slot, idx| {
            let t = &self.tables[slot as usize];
            let g = t.ptl.lock();
            let pte = t.read(idx);
            if !pte.present() || pte.pfn() != head {
                return Ok(());
            }
            let old = t.get_and_clear(idx, self.cfg.arch);
            ctx.step(&self.ghost, "try_to_unmap_one: ptep_clear_flush", e.addr);
            if flush_waits_for_walkers(self.cfg.arch) {
                self.walkers.sync(ctx, &self.ghost, "flush_tlb_page: IPI");
            }
            let dirty = if old.dirty() {
                self.folio_mark_dirty(ctx, head)
            } else {
                Ok(())
            };
            let had = self.remove_rmap(head, e);
            drop(g);
            dirty?;
            if !had {
                return Err(ctx.violation(
                    crate::invariant::Invariant::Conservation,
                    format!(
                        "try_to_unmap of {:#x} found no rmap entry for page {head}",
                        e.addr
                    ),
                ));
            }
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
            Ok(())
        })
    }

    /// `madvise(MADV_PAGEOUT)` of the page at `addr` in `mm`
    /// (`madvise_cold_or_pageout_pte_range` -> `reclaim_pages` ->
    /// `shrink_folio_list`), under `mmap_lock` for read.
    pub fn madvise_pageout(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<PagedOut> {
        ctx.step(&self.ghost, "madvise_pageout", addr);
        let vmas = self.mms[mm].mmap_lock.read();
        if World::<B>::find_vma(&vmas, addr).is_none_or(|v| !v.is_anon()) {
            return Ok(PagedOut::NotSuitable);
        }
        let Some((slot, idx)) = self.locked_pte_slot(mm, addr) else {
            return Ok(PagedOut::NotSuitable);
        };
        // Under the PTL: a present anonymous base folio mapped once, isolated
        // (folio_isolate_lru: reclaim's reference).
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() {
            return Ok(PagedOut::NotSuitable);
        }
        let head = self.mem.page_folio(pte.pfn());
        let f = self.mem.frame(head);
        if head != pte.pfn()
            || self.mem.folio_order(head) != 0
            || f.flags.read_once() & pg::ANON == 0
            || f.mapcount.read_once() != 1
        {
            return Ok(PagedOut::NotSuitable);
        }
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        // reclaim_pages() -> shrink_folio_list(): folio_trylock.
        let r = if f.flags.fetch_or(pg::LOCKED) & pg::LOCKED != 0 {
            Ok(PagedOut::KeptLocked)
        } else {
            ctx.step(&self.ghost, "folio_trylock", u64::from(head));
            let r = self.shrink_anon_locked(ctx, mm, head);
            if !matches!(r, Ok(PagedOut::Freed)) {
                self.folio_unlock(ctx, head);
            }
            r
        };
        if !matches!(r, Ok(PagedOut::Freed)) {
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        }
        drop(vmas);
        r
    }

    /// The part of `shrink_folio_list()` that runs with the anonymous folio
    /// `head` locked and isolated.
    fn shrink_anon_locked(&self, ctx: &mut Ctx, mm: usize, head: Pfn) -> Res<PagedOut> {
        let f = self.mem.frame(head);
        if self.folio_swap_slot(head).is_none() {
            // feb889fb40fa: "don't put pinned pages into the swap cache". An
            // unsynchronised read: GUP does not wait for reclaim.
            if self.cfg.p().pageout_skips_pinned
                && !self.cfg.has(Mutation::PageoutIgnoresPins)
                && self.folio_maybe_dma_pinned(head)
            {
                ctx.step(
                    &self.ghost,
                    "shrink_folio_list: maybe pinned, keep",
                    u64::from(head),
                );
                return Ok(PagedOut::KeptPinned);
            }
            self.add_to_swap(ctx, head)?;
        }
        if !self.try_to_unmap_anon(ctx, mm, head)? {
            return Ok(PagedOut::UnmapFailed);
        }
        // pageout(): only a folio nobody else holds (the isolation's and the
        // swap cache's references) is cleaned and written.
        if f.flags.read_once() & pg::DIRTY != 0 {
            if self.mem.folio_ref_count(head) != 2 {
                ctx.step(&self.ghost, "pageout: referenced, keep", u64::from(head));
                return Ok(PagedOut::KeptReferenced);
            }
            f.flags.fetch_andnot(pg::DIRTY);
            self.swap_writepage(ctx, head);
        }
        // __remove_mapping(): under the swap cache's lock, freeze to the
        // expected count, then test dirty.
        let mut swap = self.swap.lock();
        if f.refcount.cmpxchg(2, 0) != 2 {
            drop(swap);
            ctx.step(
                &self.ghost,
                "__remove_mapping: refcount frozen? no",
                u64::from(head),
            );
            return Ok(PagedOut::KeptReferenced);
        }
        // Our reference went with the freeze (and comes back with an unfreeze).
        let gen = self.ghost.frame(head).gen();
        ctx.hold(head, gen, HoldKind::Get, -1);
        if f.flags.read_once() & pg::DIRTY != 0 {
            f.refcount.store_release(2);
            ctx.hold(head, gen, HoldKind::Get, 1);
            drop(swap);
            return Ok(PagedOut::KeptDirty);
        }
        // __delete_from_swap_cache() + put_swap_folio(): the slot keeps what
        // the swap PTEs name.
        let offset = f.index.read_once();
        let slot = &mut swap[offset as usize];
        if let Some(s) = slot.as_mut() {
            s.cache = None;
            if s.count == 0 {
                *slot = None;
            }
        }
        f.flags.fetch_andnot(pg::SWAPCACHE | pg::LOCKED);
        drop(swap);
        ctx.step(&self.ghost, "__remove_mapping: removed", u64::from(head));
        self.mem.free_folio(ctx, &self.ghost, head)?;
        Ok(PagedOut::Freed)
    }

    /// `try_to_unmap()` of the anonymous folio `head` in the swap cache, over
    /// its mappings in `mm` (the only address space that can map it here):
    /// false if a page could not be shared (its PTE is restored).
    fn try_to_unmap_anon(&self, ctx: &mut Ctx, mm: usize, head: Pfn) -> Res<bool> {
        let Some(offset) = self.folio_swap_slot(head) else {
            return Ok(false);
        };
        let mappings = self.mem.frame(head).rmap.lock().entries();
        for e in mappings
            .into_iter()
            .filter(|e| !e.huge && e.mm as usize == mm)
        {
            let Some((slot, idx)) = self.locked_pte_slot(mm, e.addr) else {
                continue;
            };
            // Secondary MMUs (a device mapping the page through an MMU
            // notifier) are invalidated around the unmap.
            self.mmu_notifier_invalidate_range_start(ctx, mm, e.addr, e.addr + PAGE_SIZE);
            let r = self.unmap_one_anon(ctx, head, e, slot, idx, offset);
            self.mmu_notifier_invalidate_range_end(ctx);
            if !r? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One PTE of `try_to_unmap_one()` for an anonymous folio, under its PTL:
    /// clear and flush, move the dirty bit to the folio, share an exclusive
    /// page (backing off if it may be pinned), install the swap PTE, drop the
    /// mapping's reference. False: the page may be pinned, the PTE restored.
    fn unmap_one_anon(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        e: RmapEntry,
        slot: u32,
        idx: usize,
        offset: u32,
    ) -> Res<bool> {
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() || pte.pfn() != head {
            return Ok(true);
        }
        let exclusive = self.page_anon_exclusive(head);
        let old = self.ptep_clear_flush(ctx, t, idx, "try_to_unmap_one: ptep_clear_flush");
        if old.dirty() {
            self.mem.frame(head).flags.or(pg::DIRTY);
        }
        if exclusive && !self.folio_try_share_anon_rmap_pte(ctx, head) {
            t.set(idx, old);
            drop(g);
            ctx.step(
                &self.ghost,
                "try_to_unmap_one: maybe pinned, restore",
                e.addr,
            );
            return Ok(false);
        }
        self.swap_duplicate(offset);
        let marked = exclusive && self.cfg.p().swap_pte_exclusive;
        t.set(idx, Pte::mk_swap_entry(offset, marked));
        let had = self.remove_rmap(head, e);
        drop(g);
        ctx.step(&self.ghost, "try_to_unmap_one: swap entry", e.addr);
        if !had {
            return Err(ctx.violation(
                crate::invariant::Invariant::Conservation,
                format!(
                    "try_to_unmap of {:#x} found no rmap entry for page {head}",
                    e.addr
                ),
            ));
        }
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(true)
    }
}
