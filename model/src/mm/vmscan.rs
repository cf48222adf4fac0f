//! Reclaim of a page-cache folio, in `shrink_folio_list()`'s order (KERNEL.md
//! §5.2, §5.7): isolate (a reference), trylock, `try_to_unmap`, `pageout`,
//! `filemap_release_folio` (buffers go if *they* are clean: the page's refcount is
//! not consulted), then `__remove_mapping`, which freezes the refcount to the
//! expected value *before* testing dirty: a GUP holder that dirtied the page and
//! dropped its reference is seen either way, and one still holding its reference
//! makes the freeze fail.
//!
//! Simplifications, one line each:
//! - one folio per call, chosen by (file, index), not by LRU age;
//! - pageout never runs on a page with an extra reference (kswapd keeps it), so
//!   reclaim cleans a GUP-held page only after the flusher did;
//! - `pageout()` writes synchronously and reclaim goes on with the clean page
//!   (the kernel keeps it for a later pass once writeback ends);
//! - anonymous reclaim (swap cache, the maybe-pinned skip of feb889fb40fa) is not
//!   modelled yet.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::state::mem::pg;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Pfn;

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
}
