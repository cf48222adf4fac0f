//! The swap cache's operations (mm/swap_state.c, mm/swapfile.c) over the
//! slots of state/swap.rs: `add_to_swap`, `swap_cache_get_folio`,
//! `delete_from_swap_cache`, `swap_duplicate` / `swap_free`,
//! `free_swap_and_cache` and `swap_writepage`. Reclaim (vmscan.rs) puts
//! folios in, faults (memory.rs `do_swap_page`) take them out.
//!
//! Lock order: folio lock, then PTL, then the swap lock; the swap lock is
//! never held across a sleeping lock (a folio is only trylocked under it).

use crate::backend::{Backend, KAtomic};
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::state::mem::pg;
use crate::state::swap::{alloc_slot, SwapSlot};
use crate::state::world::World;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// `add_to_swap()` of the locked folio `head`: `folio_alloc_swap` (a free
    /// slot, SWAP_HAS_CACHE), `add_to_swap_cache` (the cache's reference,
    /// PG_swapcache, `folio->swap`), then `folio_mark_dirty` (the contents
    /// exist nowhere else yet). Returns the slot.
    pub(crate) fn add_to_swap(&self, ctx: &mut Ctx, head: Pfn) -> Res<u32> {
        let mut swap = self.swap.lock();
        let offset = alloc_slot(&mut swap, SwapSlot::new([0, 0], 0));
        if let Some(s) = swap[offset as usize].as_mut() {
            s.cache = Some(head);
        }
        let r = self.mem.folio_ref_add(ctx, &self.ghost, head, 1);
        let f = self.mem.frame(head);
        f.index.write_once(offset);
        f.flags.or(pg::SWAPCACHE | pg::DIRTY);
        drop(swap);
        r?;
        ctx.step(&self.ghost, "add_to_swap", u64::from(offset));
        Ok(offset)
    }

    /// `swap_cache_get_folio()`: the folio cached for slot `offset`, with a
    /// reference (a GET hold of the caller's), or `None`.
    pub(crate) fn swap_cache_get_folio(&self, ctx: &mut Ctx, offset: u32) -> Res<Option<Pfn>> {
        let swap = self.swap.lock();
        let cached = swap
            .get(offset as usize)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.cache);
        let Some(head) = cached else {
            return Ok(None);
        };
        // The cache's reference keeps it alive while the lock is held.
        let r = self.mem.folio_ref_add(ctx, &self.ghost, head, 1);
        let gen = self.ghost.frame(head).gen();
        drop(swap);
        r?;
        ctx.hold(head, gen, HoldKind::Get, 1);
        ctx.step(&self.ghost, "swap_cache_get_folio", u64::from(head));
        Ok(Some(head))
    }

    /// `delete_from_swap_cache()` of the locked folio `head`, which the caller
    /// also holds (a mapping or a reference): the slot loses its cache (and is
    /// freed if no swap PTE names it), the folio PG_swapcache and the cache's
    /// reference. The folio is dirtied: its contents are no longer backed
    /// (`folio_free_swap`).
    pub(crate) fn delete_from_swap_cache(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        let Some(offset) = self.folio_swap_slot(head) else {
            return Ok(());
        };
        let mut swap = self.swap.lock();
        let slot = &mut swap[offset as usize];
        if let Some(s) = slot.as_mut() {
            s.cache = None;
            if s.count == 0 {
                *slot = None;
            }
        }
        self.mem.frame(head).flags.fetch_andnot(pg::SWAPCACHE);
        drop(swap);
        self.mem.frame(head).flags.or(pg::DIRTY);
        ctx.step(&self.ghost, "delete_from_swap_cache", u64::from(offset));
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(())
    }

    /// `swap_duplicate()`: one more swap PTE names slot `offset`.
    pub(crate) fn swap_duplicate(&self, offset: u32) {
        if let Some(s) = self.swap.lock()[offset as usize].as_mut() {
            s.count += 1;
        }
    }

    /// `swap_free()`: a swap PTE naming slot `offset` is gone (swapped in);
    /// the slot is freed once nothing names it and no folio is cached for it.
    pub(crate) fn swap_free(&self, offset: u32) {
        let mut swap = self.swap.lock();
        let slot = &mut swap[offset as usize];
        if let Some(s) = slot.as_mut() {
            s.count = s.count.saturating_sub(1);
            if s.count == 0 && s.cache.is_none() {
                *slot = None;
            }
        }
    }

    /// `free_swap_and_cache()` for a zapped swap PTE (under its PTL): the
    /// slot's count drops; once nothing names it, a cached folio leaves the
    /// swap cache if its lock can be had at once (`__try_to_reclaim_swap`);
    /// otherwise it stays there until reclaim frees it.
    pub(crate) fn free_swap_and_cache(&self, ctx: &mut Ctx, offset: u32) -> Res<()> {
        let mut swap = self.swap.lock();
        let slot = &mut swap[offset as usize];
        let Some(s) = slot.as_mut() else {
            return Ok(());
        };
        s.count = s.count.saturating_sub(1);
        if s.count > 0 {
            return Ok(());
        }
        let Some(head) = s.cache else {
            *slot = None;
            return Ok(());
        };
        // folio_trylock(): never sleep under the PTL and the swap lock.
        let f = self.mem.frame(head);
        if f.flags.fetch_or(pg::LOCKED) & pg::LOCKED != 0 {
            return Ok(());
        }
        *slot = None;
        f.flags.fetch_andnot(pg::SWAPCACHE);
        drop(swap);
        f.flags.or(pg::DIRTY);
        ctx.step(&self.ghost, "free_swap_and_cache", u64::from(offset));
        self.folio_unlock(ctx, head);
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(())
    }

    /// `swap_writepage()` of the locked, cleaned folio `head` in the swap
    /// cache: its data, and the ghost's record of it, go to the slot
    /// (synchronously).
    pub(crate) fn swap_writepage(&self, ctx: &mut Ctx, head: Pfn) {
        let Some(offset) = self.folio_swap_slot(head) else {
            return;
        };
        let data = [self.mem.read_data(head, 0), self.mem.read_data(head, 1)];
        let provenance = self.ghost.provenance(head);
        if let Some(s) = self.swap.lock()[offset as usize].as_mut() {
            s.data = data;
            s.provenance = provenance;
        }
        ctx.step(&self.ghost, "swap_writepage", u64::from(offset));
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::Std;
    use crate::config::{Arch, WorldConfig};
    use crate::ghost::{value_of, Ctx};
    use crate::mm::vmscan::PagedOut;
    use crate::state::layout::{Layout, Populate, Region};
    use crate::state::world::World;

    /// A child's page written by its parent while fork was still copying
    /// (part of the child's snapshot), paged out and read back into another
    /// frame: the content's fork history comes back with it, so the child's
    /// read is no leak.
    #[test]
    fn fork_history_follows_the_content_through_a_swap_slot() {
        let cfg = WorldConfig {
            nr_frames: 16,
            nr_tables: 10,
            nr_mms: 2,
            trace: false,
            ..WorldConfig::small(Arch::Ipi)
        };
        let w = World::<Std>::build(
            cfg,
            &Layout::one(vec![
                Region::anon(0, 1, Populate::Anon),
                Region::anon(1, 1, Populate::Anon),
            ]),
        )
        .unwrap();
        let mut c = Ctx::new(0, 1, false);
        let p = w.resolve(0, 0).unwrap();
        // (A fork at tick 0 would not count as one: start the clock.)
        w.ghost.tick();
        w.fork(&mut c, 0, 1).unwrap().unwrap();
        // The parent's write lands before fork installs the page in the child.
        let tick = w.ghost.tick();
        let v = value_of(0, tick);
        w.write_page(p, 0, v);
        w.ghost.fork_installed(1, p);
        assert!(!w.ghost.leaked_across_fork(0, 1, tick, p));
        // The parent leaves; the child pages it out and reads it back.
        w.munmap(&mut c, 0, 0, crate::types::PAGE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(w.madvise_pageout(&mut c, 1, 0).unwrap(), PagedOut::Freed);
        assert_eq!(w.user_access(&mut c, 1, 0, false).unwrap(), Ok(v));
        let q = w.resolve(1, 0).unwrap();
        assert!(!w.ghost.leaked_across_fork(0, 1, tick, q));
        // Without the history the same read would be judged a leak.
        w.ghost.set_provenance(q, [0; crate::config::MAX_MMS]);
        assert!(w.ghost.leaked_across_fork(0, 1, tick, q));
    }
}
