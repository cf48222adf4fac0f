//! THP collapse: khugepaged's `collapse_huge_page` (KERNEL.md §5.5): under
//! `mmap_lock` for write, clear the PMD that points to a PTE table and flush
//! (`pmdp_collapse_flush`), check every base page is referenced by its mapping
//! alone (`__collapse_huge_page_isolate`), copy them into a new PMD-sized folio,
//! install it as a huge leaf, free the base pages and the old PTE table.
//! GUP-fast walks without `mmap_lock`: under IPI the flush waits for it; under
//! RCU table freeing nothing does, which is where bugs #6 (70cbc3cc78a9: the PMD
//! recheck after pinning a PTE) and #7 (syncing with walkers before the old
//! table is freed) live.
//!
//! Simplifications, one line each:
//! - the whole PMD range must be mapped by anonymous base pages (no none or
//!   swap PTEs, no sharing with another process);
//! - the huge folio is allocated before `mmap_lock` is taken, and given back
//!   if the collapse fails;
//! - split (`split_huge_pmd`, `split_huge_page`) is not modelled yet.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::{Arch, PAGE_SIZE};
use crate::ghost::{Ctx, Res};
use crate::mem::{pg, Order, Pfn};
use crate::mm::Errno;
use crate::pgtable::Pte;
use crate::rmap::RmapEntry;
use crate::tlb::flush_waits_for_walkers;
use crate::world::World;

/// What khugepaged did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collapsed {
    Collapsed,
    /// Not a fully populated, PTE-mapped anonymous range.
    NotSuitable,
    /// A base page had an extra reference (a GUP holder): restored.
    KeptReferenced,
}

impl<B: Backend> World<B> {
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
        // The PMD table and the entry for haddr.
        let mut slot = self.mms[mm].pgd;
        for level in [4, 3] {
            let e = self.tables[slot as usize].read(self.cfg.index(haddr, level));
            if !e.present() || e.leaf() {
                return Ok(Ok(Collapsed::NotSuitable));
            }
            slot = e.table_slot();
        }
        let (pmd_t, pmd_idx) = (&self.tables[slot as usize], self.cfg.index(haddr, 2));
        let pmd = pmd_t.read(pmd_idx);
        if !pmd.present() || pmd.leaf() {
            return Ok(Ok(Collapsed::NotSuitable));
        }
        let pte_slot = pmd.table_slot();
        let pte_t = &self.tables[pte_slot as usize];
        let ptes: Vec<Pte> = (0..self.cfg.fanout()).map(|i| pte_t.read(i)).collect();
        if ptes.iter().any(|p| !p.present() || p.special()) {
            return Ok(Ok(Collapsed::NotSuitable));
        }
        let end = haddr + (1u64 << self.cfg.shift(2));
        self.mmu_notifier_invalidate_range_start(ctx, mm, haddr, end);
        // pmdp_collapse_flush(): GUP-fast walkers that read the old PMD may still
        // be inside the PTE table.
        let g = pmd_t.ptl.lock();
        pmd_t.get_and_clear(pmd_idx);
        drop(g);
        ctx.step(&self.ghost, "pmdp_collapse_flush", haddr);
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_range: IPI");
        }
        // __collapse_huge_page_isolate(): each base page referenced by its
        // mapping alone.
        let referenced = ptes.iter().any(|p| {
            let head = self.mem.page_folio(p.pfn());
            self.mem.frame(head).flags.read_once() & pg::ANON == 0
                || self.mem.folio_ref_count(head) != 1
        });
        if referenced {
            let g = pmd_t.ptl.lock();
            pmd_t.set(pmd_idx, pmd);
            drop(g);
            self.mmu_notifier_invalidate_range_end(ctx);
            ctx.step(&self.ghost, "collapse: page referenced, restore", haddr);
            return Ok(Ok(Collapsed::KeptReferenced));
        }
        // __collapse_huge_page_copy(): then the base pages and their PTEs go.
        for (i, p) in ptes.iter().enumerate() {
            for w in 0..2 {
                self.write_page(huge + i as Pfn, w, self.mem.read_data(p.pfn(), w));
            }
        }
        let g = pte_t.ptl.lock();
        let mut freed = Vec::new();
        for (i, p) in ptes.iter().enumerate() {
            pte_t.get_and_clear(i);
            self.remove_rmap(p.pfn(), RmapEntry::pte(mm, haddr + i as u64 * PAGE_SIZE));
            freed.push(self.mem.page_folio(p.pfn()));
        }
        drop(g);
        for head in freed {
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        }
        // folio_mark_uptodate: the copy before the PMD that publishes it.
        B::smp_wmb();
        let g = pmd_t.ptl.lock();
        self.add_rmap(huge, RmapEntry::huge(mm, haddr));
        pmd_t.set(pmd_idx, Pte::mk_leaf(huge, true, true));
        drop(g);
        ctx.step(&self.ghost, "collapse: set_pmd_at", haddr);
        self.mmu_notifier_invalidate_range_end(ctx);
        // The old PTE table: GUP-fast may still walk it under RCU table freeing
        // unless the walkers are synced first ("mm/khugepaged: fix GUP-fast
        // interaction by sending IPI", bug #7).
        if self.cfg.arch == Arch::Rcu && self.cfg.p().collapse_syncs_walkers {
            self.walkers
                .sync(ctx, &self.ghost, "tlb_remove_table_sync_one");
        }
        self.free_table(ctx, pte_slot)?;
        Ok(Ok(Collapsed::Collapsed))
    }
}
