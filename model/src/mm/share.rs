//! KSM (mm/ksm.c). Sharing an exclusive anonymous page:
//! `folio_try_share_anon_rmap_pte()` (`page_try_share_anon_rmap`,
//! 6c287605fd56, 5.19) as KSM uses it in `write_protect_page` (KERNEL.md
//! §5.4). The clearing side: (A1) clear the PTE and flush, (A2) back off if
//! the page may be pinned, (A3) clear PageAnonExclusive, (A4) restore a
//! read-only PTE. The GUP-fast side pins, rechecks the PTE and, for a
//! read-only pin, backs off from a page that is not exclusive. Only full
//! barriers on both sides (088b8aa537c2, 6.1) make either A2 see the pin or
//! GUP-fast see the cleared flag: before, the TLB flush was trusted to order
//! them, which is not an IPI under RCU table freeing.
//!
//! Merging (`try_to_merge_one_page`): lock the page, `write_protect_page`,
//! then either the page becomes a KSM page itself or `replace_page` points
//! the PTE at the KSM page of the same content (read-only, not exclusive) and
//! drops the old page's mapping. A KSM page is never reused by a write fault
//! from 5.9 (1a0cf26323c8 removed `reuse_ksm_page`; `do_wp_page` in
//! memory.rs), and from 5.19 a read-only pin unshares it (it is never
//! exclusive).
//!
//! Simplifications, one line each:
//! - the stable tree is a list of (content, KSM page) searched by content; no unstable tree;
//! - a page with no match in the stable tree becomes a KSM page at once (the kernel waits for a second page in the unstable tree);
//! - a page of a large folio is not merged (KSM splits the THP first: not modelled), nor MADV_UNMERGEABLE (`break_ksm`);
//! - one MMU-notifier range covers `write_protect_page` and `replace_page`;
//! - no `mm_tlb_flush_pending()` (the model has no TLB): a PTE already
//!   read-only, clean and not exclusive is left as it is;
//! - RCU mode stands for an IPI-less architecture with arm64's relaxed
//!   `ptep_get_and_clear` (`xchg_relaxed`, as every PTE and PMD clear of the
//!   model in that mode: `PageTable::get_and_clear`) and a flush that orders
//!   nothing (weaker than arm64, whose flush ends in `dsb(ish)`); under IPI
//!   (x86) it is a fully ordered `xchg`.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::preset::ReuseRule;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What the sharer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shared {
    NotMapped,
    /// Someone holds an extra reference (KSM's `page_count` check).
    KeptReferenced,
    /// `folio_maybe_dma_pinned()`: A2 backed off.
    KeptPinned,
    /// Write-protected and no longer exclusive.
    #[serde(rename = "shared")]
    WriteProtected,
}

/// What KSM's merge of one page did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merged {
    /// `write_protect_page` kept the page as it was (or found nothing to merge).
    Kept(Shared),
    /// Already a KSM page, or a page of a large folio.
    Skipped,
    /// No KSM page of this content: the page became one (`stable_tree_insert`).
    Promoted,
    /// The KSM page found differs after all (`pages_identical`), or the PTE
    /// changed after `write_protect_page` (`replace_page`'s `pte_same`).
    Raced,
    /// The PTE now maps the KSM page (`replace_page`).
    Replaced(Pfn),
}

impl<B: Backend> World<B> {
    /// KSM's `write_protect_page()` alone, for the anonymous page mapped at
    /// `addr` in `mm`.
    pub(crate) fn ksm_write_protect_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Res<Shared> {
        ctx.step(&self.ghost, "ksm: write_protect_page", addr);
        let r = self.with_ksm_page(ctx, mm, addr, |w, ctx, slot, idx, pte, head| {
            w.share_locked(ctx, slot, idx, pte, head).map(|(s, _)| s)
        })?;
        Ok(r.unwrap_or(Shared::NotMapped))
    }

    /// One step of `ksm_do_scan()` on the page at `addr` in `mm`
    /// (`cmp_and_merge_page`): search the stable tree for a KSM page of the
    /// same content, lock the page, `try_to_merge_one_page`.
    pub(crate) fn ksm_merge_page(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Merged> {
        ctx.step(&self.ghost, "ksm: cmp_and_merge_page", addr);
        let r = self.with_ksm_page(ctx, mm, addr, |w, ctx, slot, idx, pte, head| {
            let flags = w.mem.frame(head).flags.read_once();
            if flags & pg::KSM != 0 || w.mem.folio_nr_pages(head) > 1 {
                return Ok(Merged::Skipped);
            }
            let kpage = w.stable_tree_search(ctx, w.page_content(head))?;
            w.folio_lock(ctx, head);
            let r = w.try_to_merge_one_page(ctx, mm, addr, slot, idx, pte, head, kpage);
            w.folio_unlock(ctx, head);
            if let Some(k) = kpage {
                w.mem
                    .folio_put_refs(ctx, &w.ghost, k, 1, Some(HoldKind::Speculative))?;
            }
            r
        })?;
        Ok(r.unwrap_or(Merged::Kept(Shared::NotMapped)))
    }

    /// The walk KSM's scan does to a page (`follow_page` under `mmap_lock`
    /// for read): the PTE, a reference on its page held while `f` runs
    /// inside an MMU-notifier range; `None` if no anonymous page is mapped.
    fn with_ksm_page<R>(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        f: impl FnOnce(&Self, &mut Ctx, u32, usize, Pte, Pfn) -> Res<R>,
    ) -> Res<Option<R>> {
        let vmas = self.mms[mm].mmap_lock.read();
        if World::<B>::find_vma(&vmas, addr).is_none_or(|v| !v.is_anon()) {
            return Ok(None);
        }
        let Some((slot, idx)) = self.locked_pte_slot(mm, addr) else {
            return Ok(None);
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() {
            return Ok(None);
        }
        let head = self.mem.page_folio(pte.pfn());
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        self.mmu_notifier_invalidate_range_start(ctx, mm, addr, addr + PAGE_SIZE);
        let r = f(self, ctx, slot, idx, pte, head);
        self.mmu_notifier_invalidate_range_end(ctx);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        drop(vmas);
        r.map(Some)
    }

    fn page_content(&self, page: Pfn) -> [u64; 2] {
        [self.mem.read_data(page, 0), self.mem.read_data(page, 1)]
    }

    /// `stable_tree_search()` + `get_ksm_page()`: a KSM page whose content
    /// is `content`, with a reference (`folio_try_get`: the page may be
    /// being freed). A node whose page was freed, reused, or reused by a
    /// write fault (`reuse_ksm_page` before 5.9) is stale and pruned.
    fn stable_tree_search(&self, ctx: &mut Ctx, content: [u64; 2]) -> Res<Option<Pfn>> {
        let mut tree = self.ksm_stable.lock();
        while let Some(i) = tree.iter().position(|&(c, _)| c == content) {
            let k = tree[i].1;
            if self.mem.folio_ref_try_add(ctx, &self.ghost, k, 1)? {
                let f = self.mem.frame(k);
                if f.flags.read_once() & pg::KSM != 0 && self.page_content(k) == content {
                    ctx.step(&self.ghost, "ksm: stable_tree_search: found", u64::from(k));
                    return Ok(Some(k));
                }
                self.mem
                    .folio_put_refs(ctx, &self.ghost, k, 1, Some(HoldKind::Speculative))?;
            }
            tree.swap_remove(i);
        }
        Ok(None)
    }

    /// `try_to_merge_one_page()` on the locked `page`, mapped by `seen` at
    /// PTE `idx` of table `slot`: `write_protect_page`, then make it a KSM
    /// page (no `kpage`) or `replace_page` it by `kpage` if their contents
    /// are identical (`pages_identical`).
    fn try_to_merge_one_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        slot: u32,
        idx: usize,
        seen: Pte,
        page: Pfn,
        kpage: Option<Pfn>,
    ) -> Res<Merged> {
        let (shared, orig) = self.share_locked(ctx, slot, idx, seen, page)?;
        if shared != Shared::WriteProtected {
            return Ok(Merged::Kept(shared));
        }
        let Some(k) = kpage else {
            // set_page_stable_node() + stable_tree_insert(): the content
            // cannot change now (read-only, no other reference).
            self.mem.frame(page).flags.or(pg::KSM);
            self.ksm_stable.lock().push((self.page_content(page), page));
            ctx.step(&self.ghost, "ksm: stable_tree_insert", u64::from(page));
            return Ok(Merged::Promoted);
        };
        if self.page_content(page) != self.page_content(k) {
            return Ok(Merged::Raced);
        }
        self.replace_page(ctx, mm, addr, slot, idx, orig, page, k)
    }

    /// `replace_page()`: under the PTL, if the PTE is still `orig` (the
    /// read-only PTE `write_protect_page` left, `pte_same`), map `kpage`
    /// read-only and not exclusive in its place (`folio_get`,
    /// `folio_add_anon_rmap_pte`, `ptep_clear_flush`, `set_pte_at`), then
    /// drop `page`'s mapping (`folio_remove_rmap_pte`, `folio_put`).
    fn replace_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        slot: u32,
        idx: usize,
        orig: Pte,
        page: Pfn,
        kpage: Pfn,
    ) -> Res<Merged> {
        let t = &self.tables[slot as usize];
        let _g = t.ptl.lock();
        if t.read(idx) != orig {
            return Ok(Merged::Raced);
        }
        let e = RmapEntry::pte(mm, addr);
        self.mem.folio_ref_add(ctx, &self.ghost, kpage, 1)?;
        self.add_rmap(kpage, e);
        self.ptep_clear_flush(ctx, t, idx, "replace_page: ptep_clear_flush");
        t.set(idx, Pte::mk_page(kpage, false, false));
        ctx.step(&self.ghost, "replace_page: set_pte_at", addr);
        self.remove_rmap(page, e);
        // KSM's own reference keeps the page until the scan drops it.
        self.mem.folio_put_refs(ctx, &self.ghost, page, 1, None)?;
        Ok(Merged::Replaced(kpage))
    }

    /// The PTL-held part of `write_protect_page()`: if the PTE is writable,
    /// dirty or maps an exclusive page, clear and flush it, back off if the
    /// page has references beyond its mappings and ours or may be pinned
    /// (`folio_try_share_anon_rmap_pte`), move a dirty bit to the folio
    /// (`folio_mark_dirty`), and restore it read-only and clean. Returns the
    /// PTE it left (`orig_pte`, what `replace_page` expects to find).
    fn share_locked(
        &self,
        ctx: &mut Ctx,
        slot: u32,
        idx: usize,
        seen: Pte,
        head: Pfn,
    ) -> Res<(Shared, Pte)> {
        let t = &self.tables[slot as usize];
        let _g = t.ptl.lock();
        if t.read(idx) != seen {
            return Ok((Shared::NotMapped, seen));
        }
        let f = self.mem.frame(head);
        let exclusive = f.flags.read_once() & pg::ANON_EXCLUSIVE != 0;
        // Only a PTE that is writable, dirty or maps an exclusive page is
        // cleared. The kernel also clears while a TLB flush is pending
        // (`mm_tlb_flush_pending()`: a stale writable TLB entry may still be
        // used); the model has no TLB, a store always goes through the PTE.
        // Otherwise the page is already as KSM wants it: read-only, clean and
        // shared.
        if !(seen.write() || seen.dirty() || exclusive) {
            return Ok((Shared::WriteProtected, seen));
        }
        let old = self.ptep_clear_flush(ctx, t, idx, "ksm: ptep_clear_flush");
        // "Check that no O_DIRECT or similar I/O is in progress": the mapping's
        // reference and ours, nothing else.
        let mapcount = f.mapcount.read_once();
        let swapcache = i32::from(f.flags.read_once() & pg::SWAPCACHE != 0);
        if self.mem.folio_ref_count(head) != mapcount + 1 + swapcache {
            t.set(idx, old);
            return Ok((Shared::KeptReferenced, seen));
        }
        if exclusive && !self.ksm_try_share(ctx, head) {
            t.set(idx, old);
            return Ok((Shared::KeptPinned, seen));
        }
        // The PTE's dirty bit goes to the folio before pte_mkclean().
        if old.dirty() {
            self.folio_mark_dirty(ctx, head)?;
        }
        // (A4) a read-only, clean PTE again.
        let wp = old.without(Pte::WRITE | Pte::DIRTY);
        t.set(idx, wp);
        Ok((Shared::WriteProtected, wp))
    }

    /// `write_protect_page`'s (A2, A3); `ksm_merge_ignores_pins` clears
    /// PageAnonExclusive without asking `folio_maybe_dma_pinned`, leaving only
    /// the refcount check before it, which reads the count without the
    /// barrier that orders it after the PTE clear.
    fn ksm_try_share(&self, ctx: &mut Ctx, page: Pfn) -> bool {
        if !self.cfg.has(Mutation::KsmMergeIgnoresPins) {
            return self.folio_try_share_anon_rmap_pte(ctx, page);
        }
        self.mem.frame(page).flags.andnot(pg::ANON_EXCLUSIVE);
        ctx.step(&self.ghost, "clear anon exclusive", u64::from(page));
        true
    }

    /// (A1) `ptep_clear_flush()` under the PTL: clear the PTE, then flush (under
    /// IPI the flush waits for interrupts-off walkers). Returns the old PTE.
    pub(crate) fn ptep_clear_flush(
        &self,
        ctx: &mut Ctx,
        t: &crate::state::pgtable::PageTable<B>,
        idx: usize,
        what: &'static str,
    ) -> Pte {
        let old = t.get_and_clear(idx, self.cfg.arch);
        ctx.step(&self.ghost, what, u64::from(old.pfn()));
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_page: IPI");
        }
        old
    }

    /// PageAnonExclusive of `page` (which exists from 5.19, 6c287605fd56;
    /// false in the eras before it).
    pub(crate) fn page_anon_exclusive(&self, page: Pfn) -> bool {
        self.cfg.p().reuse == ReuseRule::AnonExclusive
            && self.mem.frame(page).flags.read_once() & pg::ANON_EXCLUSIVE != 0
    }

    /// (A2, A3) `folio_try_share_anon_rmap_pte()` on an exclusive `page` whose
    /// PTE the caller cleared and flushed: false (back off) if the folio may be
    /// pinned; otherwise clear PageAnonExclusive.
    pub(crate) fn folio_try_share_anon_rmap_pte(&self, ctx: &mut Ctx, page: Pfn) -> bool {
        if self.cfg.p().mb_after_pin {
            B::smp_mb();
        }
        if self.folio_maybe_dma_pinned(self.mem.page_folio(page)) {
            return false;
        }
        // ClearPageAnonExclusive; smp_mb__after_atomic() as the wmb pairing
        // with GUP-fast's smp_rmb.
        self.mem.frame(page).flags.andnot(pg::ANON_EXCLUSIVE);
        ctx.step(&self.ghost, "clear anon exclusive", u64::from(page));
        if self.cfg.p().mb_after_pin {
            B::smp_mb__after_atomic();
        }
        true
    }

    /// (A2, A3) `folio_try_share_anon_rmap_pmd()` on the exclusive THP `head`
    /// whose PMD the caller invalidated and flushed: as for a PTE, for the
    /// whole folio (the model keeps PageAnonExclusive on every subpage alike).
    pub(crate) fn folio_try_share_anon_rmap_pmd(&self, ctx: &mut Ctx, head: Pfn) -> bool {
        if self.cfg.p().mb_after_pin {
            B::smp_mb();
        }
        if self.folio_maybe_dma_pinned(head) {
            return false;
        }
        self.set_folio_exclusive(head, false);
        ctx.step(&self.ghost, "clear anon exclusive", u64::from(head));
        if self.cfg.p().mb_after_pin {
            B::smp_mb__after_atomic();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Std;
    use crate::config::{Arch, WorldConfig};
    use crate::ghost::take_steps;
    use crate::preset::PresetId;
    use crate::state::layout::{Layout, Populate, Region};

    fn two_pages(preset: PresetId, mutations: Vec<Mutation>) -> World<Std> {
        let mut cfg = WorldConfig::small(Arch::Ipi);
        cfg.mutations = mutations;
        cfg.fanout_bits = 2;
        cfg.nr_frames = 32;
        cfg.preset = preset;
        World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, 2, Populate::Anon)])).unwrap()
    }

    /// Two pages of the same content: the first merged becomes the KSM page,
    /// the second is replaced by it (its page freed); a store to either
    /// copies the KSM page, which the other address keeps mapping.
    #[test]
    fn merge_replaces_the_page_and_a_store_copies_the_ksm_page() {
        for preset in [PresetId::V5_10, PresetId::Latest] {
            let w = two_pages(preset, vec![]);
            let mut c = Ctx::new(0, 1, true);
            let old = w.resolve(0, 0).unwrap();
            assert_eq!(
                w.ksm_merge_page(&mut c, 0, PAGE_SIZE).unwrap(),
                Merged::Promoted
            );
            let k = w.resolve(0, PAGE_SIZE).unwrap();
            assert_eq!(w.ksm_merge_page(&mut c, 0, 0).unwrap(), Merged::Replaced(k));
            assert_eq!(w.resolve(0, 0), Some(k));
            assert!(
                !w.ghost.frame(old).allocated(),
                "the replaced page is freed"
            );
            assert_eq!(w.mem.folio_ref_count(k), 2);
            assert_eq!(w.mem.frame(k).mapcount.read_once(), 2);
            let flags = w.mem.frame(k).flags.read_once();
            assert!(flags & pg::KSM != 0 && flags & pg::ANON_EXCLUSIVE == 0);
            w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
            assert_ne!(w.resolve(0, 0), Some(k), "{preset:?}: a KSM page is copied");
            assert_eq!(w.resolve(0, PAGE_SIZE), Some(k));
            w.check_quiescent(&c.ledger).unwrap();
        }
    }

    /// A pinned page is not merged (`write_protect_page`'s refcount check),
    /// with or without `folio_maybe_dma_pinned`.
    #[test]
    fn a_pinned_page_is_not_merged() {
        for muts in [vec![], vec![Mutation::KsmMergeIgnoresPins]] {
            let w = two_pages(PresetId::Latest, muts);
            let mut c = Ctx::new(0, 1, true);
            let mut pages = Vec::new();
            let flags = crate::flags::Foll::of(&[crate::flags::Flag::Write]);
            assert_eq!(
                w.pin_user_pages_fast(&mut c, 0, 1, flags, Some(&mut pages))
                    .unwrap(),
                1
            );
            assert_eq!(
                w.ksm_merge_page(&mut c, 0, PAGE_SIZE).unwrap(),
                Merged::Promoted
            );
            assert_eq!(
                w.ksm_merge_page(&mut c, 0, 0).unwrap(),
                Merged::Kept(Shared::KeptReferenced)
            );
            assert_eq!(w.resolve(0, 0), Some(pages[0]));
            w.unpin_user_pages(&mut c, &pages).unwrap();
            w.check_quiescent(&c.ledger).unwrap();
        }
    }

    /// Before 5.9 `reuse_ksm_page` reuses a KSM page only this PTE maps, which
    /// then stops being one: its stable-tree node is stale and the next page
    /// of that content becomes a KSM page of its own. From 5.9 it is copied.
    #[test]
    fn reuse_ksm_page_before_5_9_only() {
        for (preset, reused) in [(PresetId::V5_7, true), (PresetId::V5_10, false)] {
            let w = two_pages(preset, vec![]);
            let mut c = Ctx::new(0, 1, true);
            assert_eq!(
                w.ksm_merge_page(&mut c, 0, PAGE_SIZE).unwrap(),
                Merged::Promoted
            );
            let k = w.resolve(0, PAGE_SIZE).unwrap();
            w.user_access(&mut c, 0, PAGE_SIZE, true).unwrap().unwrap();
            assert_eq!(w.resolve(0, PAGE_SIZE) == Some(k), reused, "{preset:?}");
            if reused {
                assert_eq!(w.mem.frame(k).flags.read_once() & pg::KSM, 0);
                assert_eq!(w.ksm_merge_page(&mut c, 0, 0).unwrap(), Merged::Promoted);
                assert_eq!(w.ksm_stable.lock().len(), 1, "the stale node is pruned");
            }
            w.check_quiescent(&c.ledger).unwrap();
        }
    }

    fn cleared(steps: &[crate::ghost::Step]) -> bool {
        steps.iter().any(|s| s.name == "ksm: ptep_clear_flush")
    }

    /// `write_protect_page()`: a writable, dirty, exclusive PTE is cleared,
    /// its dirty bit moved to the folio and restored read-only and clean; the
    /// same PTE again (read-only, clean, no longer exclusive) is left alone.
    #[test]
    fn ksm_clears_only_what_needs_it_and_keeps_the_dirty_bit() {
        let mut cfg = WorldConfig::small(Arch::Ipi);
        cfg.fanout_bits = 2;
        cfg.nr_frames = 32;
        let w = World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)]))
            .unwrap();
        let mut c = Ctx::new(0, 1, true);
        let (slot, idx) = w.locked_pte_slot(0, 0).unwrap();
        let pte = w.tables[slot as usize].read(idx);
        assert!(pte.write() && pte.dirty());
        let page = pte.pfn();
        let _ = take_steps();
        let r = w.ksm_write_protect_page(&mut c, 0, 0).unwrap();
        assert_eq!(r, Shared::WriteProtected);
        assert!(cleared(&take_steps()));
        let after = w.tables[slot as usize].read(idx);
        assert_eq!(after, pte.without(Pte::WRITE | Pte::DIRTY));
        let flags = w.mem.frame(page).flags.read_once();
        assert!(
            flags & pg::DIRTY != 0,
            "the PTE's dirty bit went to the folio"
        );
        assert!(flags & pg::ANON_EXCLUSIVE == 0);
        let r = w.ksm_write_protect_page(&mut c, 0, 0).unwrap();
        assert_eq!(r, Shared::WriteProtected);
        assert!(!cleared(&take_steps()), "nothing to clear the second time");
        assert_eq!(w.tables[slot as usize].read(idx), after);
    }
}
