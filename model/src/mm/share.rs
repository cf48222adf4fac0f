//! Sharing an exclusive anonymous page: `folio_try_share_anon_rmap_pte()`
//! (`page_try_share_anon_rmap`, 6c287605fd56, 5.19) as a KSM-like sharer uses
//! it in `write_protect_page` (KERNEL.md §5.4). The clearing side: (A1) clear
//! the PTE and flush, (A2) back off if the page may be pinned, (A3) clear
//! PageAnonExclusive, (A4) restore a read-only PTE. The GUP-fast side pins,
//! rechecks the PTE and, for a read-only pin, backs off from a page that is not
//! exclusive. Only full barriers on both sides (088b8aa537c2, 6.1) make either
//! A2 see the pin or GUP-fast see the cleared flag: before, the TLB flush was
//! trusted to order them, which is not an IPI under RCU table freeing.
//!
//! Simplifications, one line each:
//! - the sharer stops after write-protecting (no merge into a KSM page);
//! - no `mm_tlb_flush_pending()` (the model has no TLB): a PTE already
//!   read-only, clean and not exclusive is left as it is;
//! - RCU mode stands for an IPI-less architecture with arm64's relaxed
//!   `ptep_get_and_clear` (`xchg_relaxed`, as every PTE and PMD clear of the
//!   model in that mode: `PageTable::get_and_clear`) and a flush that orders
//!   nothing (weaker than arm64, whose flush ends in `dsb(ish)`); under IPI
//!   (x86) it is a fully ordered `xchg`.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
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

impl<B: Backend> World<B> {
    /// KSM's `write_protect_page()` for the anonymous page mapped at `addr` in
    /// `mm`, under `mmap_lock` for read, holding a reference on the page.
    pub(crate) fn ksm_write_protect_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Res<Shared> {
        ctx.step(&self.ghost, "ksm: write_protect_page", addr);
        let vmas = self.mms[mm].mmap_lock.read();
        if World::<B>::find_vma(&vmas, addr).is_none_or(|v| !v.is_anon()) {
            return Ok(Shared::NotMapped);
        }
        let Some((slot, idx)) = self.locked_pte_slot(mm, addr) else {
            return Ok(Shared::NotMapped);
        };
        let t = &self.tables[slot as usize];
        // follow_page(): KSM's own reference on the page.
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() {
            return Ok(Shared::NotMapped);
        }
        let page = pte.pfn();
        let head = self.mem.page_folio(page);
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        self.mmu_notifier_invalidate_range_start(ctx, mm, addr, addr + PAGE_SIZE);
        let r = self.share_locked(ctx, slot, idx, pte, head);
        self.mmu_notifier_invalidate_range_end(ctx);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        drop(vmas);
        r
    }

    /// The PTL-held part of `write_protect_page()`: if the PTE is writable,
    /// dirty or maps an exclusive page, clear and flush it, back off if the
    /// page has references beyond its mappings and ours or may be pinned
    /// (`folio_try_share_anon_rmap_pte`), move a dirty bit to the folio
    /// (`folio_mark_dirty`), and restore it read-only and clean.
    fn share_locked(
        &self,
        ctx: &mut Ctx,
        slot: u32,
        idx: usize,
        seen: Pte,
        head: crate::types::Pfn,
    ) -> Res<Shared> {
        let t = &self.tables[slot as usize];
        let _g = t.ptl.lock();
        if t.read(idx) != seen {
            return Ok(Shared::NotMapped);
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
            return Ok(Shared::WriteProtected);
        }
        let old = self.ptep_clear_flush(ctx, t, idx, "ksm: ptep_clear_flush");
        // "Check that no O_DIRECT or similar I/O is in progress": the mapping's
        // reference and ours, nothing else.
        let mapcount = f.mapcount.read_once();
        if self.mem.folio_ref_count(head) != mapcount + 1 {
            t.set(idx, old);
            return Ok(Shared::KeptReferenced);
        }
        if exclusive && !self.folio_try_share_anon_rmap_pte(ctx, head) {
            t.set(idx, old);
            return Ok(Shared::KeptPinned);
        }
        // The PTE's dirty bit goes to the folio before pte_mkclean().
        if old.dirty() {
            self.folio_mark_dirty(ctx, head)?;
        }
        // (A4) a read-only, clean PTE again.
        t.set(idx, old.without(Pte::WRITE | Pte::DIRTY));
        Ok(Shared::WriteProtected)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Std;
    use crate::config::{Arch, WorldConfig};
    use crate::ghost::take_steps;
    use crate::state::layout::{Layout, Populate, Region};

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
