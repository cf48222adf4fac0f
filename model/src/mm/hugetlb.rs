//! hugetlb: private anonymous huge folios (MAP_PRIVATE | MAP_HUGETLB, the
//! backing of cow.c's hugetlb rows), each mapped by one PMD leaf (2 MiB) or
//! one PUD leaf (1 GiB) and never split (KERNEL.md §5.3, §5.4, §8.2).
//!
//! mm/hugetlb.c: `hugetlb_fault()` -> `hugetlb_no_page()` (a zeroed folio from
//! the pool) or `hugetlb_wp()` (a write or unshare fault on a read-only leaf:
//! reuse, or copy with `copy_user_large_folio()`), and fork's
//! `copy_hugetlb_page_range()` with `hugetlb_try_dup_anon_rmap()` (5.19; an
//! early COW of a maybe-pinned folio since 4eae4efa2c29).
//!
//! `hugetlb_wp()` reuses a folio when `folio_mapcount() == 1` in every era,
//! PageAnonExclusive or not: a GUP reference (vmsplice's FOLL_GET) does not
//! stop the reuse, which is why cow.c's vmsplice cases are XFAIL ("Leak from
//! parent into child") on hugetlb. R/O pins are reliable from 5.19: the
//! unshare fault copies a folio another process maps.
//!
//! Simplifications, one line each:
//! - the pool is the free list of the folio's order (PMD-order folios are
//!   shared with THP allocations); no reservations (HPAGE_RESV_OWNER,
//!   `unmap_ref_private`), so an empty pool fails a fault (-ENOSPC:
//!   VM_FAULT_SIGBUS, -EFAULT to GUP) and a fork (-ENOMEM);
//! - no hugetlb VMA lock and no fault mutex (`hugetlb_fault_mutex_table`): the
//!   leaf's table lock serialises faults, as `huge_pte_lock` does for the leaf;
//! - PageAnonExclusive is kept on every subpage alike (the kernel keeps it on
//!   the head, which is where GUP reads it);
//! - hugetlb folios are never migrated, reclaimed, merged or split; a munmap
//!   that cuts through a mapped leaf fails with -EINVAL.

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::preset::ReuseRule;
use crate::state::mem::{pg, Order};
use crate::state::mm::{FaultFlags, HugeSize, Vma};
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// The page whose PageAnonExclusive stands for `page`: a hugetlb folio
    /// keeps the flag on its head (KERNEL.md §5.4).
    pub(crate) fn anon_exclusive_page(&self, page: Pfn) -> Pfn {
        let head = self.mem.page_folio(page);
        if self.mem.frame(head).flags.read_once() & pg::HUGETLB != 0 {
            head
        } else {
            page
        }
    }

    /// `alloc_hugetlb_folio()`: a folio of `size` from the pool, anonymous
    /// and exclusive (`hugetlb_add_new_anon_rmap` follows). `None`: the pool is
    /// empty.
    pub(crate) fn alloc_hugetlb_folio(&self, ctx: &mut Ctx, size: HugeSize) -> Res<Option<Pfn>> {
        self.rcu_reclaim(ctx)?;
        let o = match size {
            HugeSize::Pmd => Order::Pmd,
            HugeSize::Pud => Order::Pud,
        };
        let flags = pg::ANON | pg::ANON_EXCLUSIVE | pg::HUGETLB;
        Ok(self.mem.alloc_folio(ctx, &self.ghost, o, flags))
    }

    /// `copy_user_large_folio()`: every subpage of `src` into `dst`, then the
    /// smp_wmb of `__folio_mark_uptodate` before a leaf may point to `dst`.
    pub(crate) fn copy_user_large_folio(&self, dst: Pfn, src: Pfn) {
        for k in 0..self.mem.folio_nr_pages(src) {
            self.copy_highpage(dst + k, src + k);
        }
        B::smp_wmb();
    }

    /// `hugetlb_fault()` on the hugetlb VMA `vma` (the caller holds
    /// `mmap_lock` for read): no leaf is `hugetlb_no_page()`; a write or
    /// unshare fault on a read-only leaf is `hugetlb_wp()`.
    pub(crate) fn hugetlb_fault(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        ff: FaultFlags,
        size: HugeSize,
    ) -> Res<Result<(), Errno>> {
        ctx.step(&self.ghost, "hugetlb_fault", addr);
        let level = size.level();
        let haddr = addr & !((1u64 << self.cfg.shift(level)) - 1);
        let (slot, idx) = match self.ensure_table_at(ctx, mm, haddr, level) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Err(Errno::ENOMEM)),
            Err(_) => return Ok(Err(Errno::EFAULT)),
        };
        let t = &self.tables[slot as usize];
        let e = t.read(idx);
        if e.is_none() {
            return self.hugetlb_no_page(ctx, mm, vma, haddr, (slot, idx), ff, size);
        }
        if !(e.present() && e.leaf() && (ff.write || ff.unshare) && !e.write()) {
            // Present and sufficient: the access retries.
            return Ok(Ok(()));
        }
        let Some(g) = t.lock_if_same(idx, e) else {
            return Ok(Ok(()));
        };
        let old = e.pfn();
        if self.hugetlb_wp_can_reuse(old) {
            // hugetlb_wp(): reuse; an unshare fault keeps the leaf read-only.
            if !ff.unshare {
                t.set(idx, e.with(Pte::WRITE | Pte::DIRTY));
            }
            ctx.step(&self.ghost, "hugetlb_wp: reuse", haddr);
            drop(g);
            return Ok(Ok(()));
        }
        // The fault's reference keeps the old folio while it is copied with
        // the lock dropped (`folio_get(old_folio)`).
        self.mem.folio_ref_add(ctx, &self.ghost, old, 1)?;
        ctx.hold(old, self.ghost.frame(old).gen(), HoldKind::Get, 1);
        drop(g);
        let r = self.hugetlb_wp_copy(ctx, mm, vma, haddr, (slot, idx), e, ff, size);
        self.mem
            .folio_put_refs(ctx, &self.ghost, old, 1, Some(HoldKind::Get))?;
        r
    }

    /// `hugetlb_no_page()` for a private mapping: a zeroed folio from the pool,
    /// mapped exclusive; writable for a write fault (the kernel maps it
    /// read-only and calls `hugetlb_wp()` at once, which reuses it: mapcount 1),
    /// read-only for a read fault.
    #[allow(clippy::too_many_arguments)]
    fn hugetlb_no_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        haddr: u64,
        (slot, idx): (u32, usize),
        ff: FaultFlags,
        size: HugeSize,
    ) -> Res<Result<(), Errno>> {
        let Some(folio) = self.alloc_hugetlb_folio(ctx, size)? else {
            // -ENOSPC: vmf_error() makes it VM_FAULT_SIGBUS.
            return Ok(Err(Errno::EFAULT));
        };
        for p in folio..folio + self.mem.folio_nr_pages(folio) {
            self.write_page(p, 0, 0);
            self.write_page(p, 1, 0);
        }
        // __folio_mark_uptodate(): the zeroed folio before the leaf.
        B::smp_wmb();
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if !t.read(idx).is_none() {
            drop(g);
            self.mem.folio_put_refs(ctx, &self.ghost, folio, 1, None)?;
            return Ok(Ok(()));
        }
        self.add_rmap(folio, RmapEntry::huge(mm, haddr));
        let write = ff.write && vma.writable();
        t.set(idx, Pte::mk_leaf(folio, write, write));
        ctx.step(&self.ghost, "hugetlb_no_page: set_huge_pte_at", haddr);
        drop(g);
        Ok(Ok(()))
    }

    /// `hugetlb_wp()`'s reuse test, under the leaf's lock: an anonymous folio
    /// mapped once (`folio_mapcount() == 1`, never the refcount), in every era;
    /// from 5.19 it becomes exclusive again (`folio_move_anon_rmap`,
    /// `SetPageAnonExclusive`).
    fn hugetlb_wp_can_reuse(&self, head: Pfn) -> bool {
        let f = self.mem.frame(head);
        let reuse = f.flags.read_once() & pg::ANON != 0 && f.entire_mapcount.read_once() == 1;
        if reuse && self.cfg.p().reuse == ReuseRule::AnonExclusive {
            self.set_folio_exclusive(head, true);
        }
        reuse
    }

    /// `hugetlb_wp()`'s copy: a new folio from the pool holding the old one's
    /// data, then, if the leaf is unchanged, `huge_ptep_clear_flush`, the new
    /// leaf (writable unless unsharing) and the old mapping's reference dropped.
    #[allow(clippy::too_many_arguments)]
    fn hugetlb_wp_copy(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        haddr: u64,
        (slot, idx): (u32, usize),
        e: Pte,
        ff: FaultFlags,
        size: HugeSize,
    ) -> Res<Result<(), Errno>> {
        let old = e.pfn();
        let Some(new) = self.alloc_hugetlb_folio(ctx, size)? else {
            return Ok(Err(Errno::EFAULT));
        };
        self.copy_user_large_folio(new, old);
        let span = 1u64 << self.cfg.shift(size.level());
        self.mmu_notifier_invalidate_range_start(ctx, mm, haddr, haddr + span);
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if t.read(idx) != e {
            drop(g);
            self.mmu_notifier_invalidate_range_end(ctx);
            self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
            return Ok(Ok(()));
        }
        t.get_and_clear(idx, self.cfg.arch);
        ctx.step(&self.ghost, "hugetlb_wp: huge_ptep_clear_flush", haddr);
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers
                .sync(ctx, &self.ghost, "flush_hugetlb_tlb_range: IPI");
        }
        let rmap = RmapEntry::huge(mm, haddr);
        self.remove_rmap(old, rmap);
        self.add_rmap(new, rmap);
        let write = vma.writable() && !ff.unshare;
        t.set(idx, Pte::mk_leaf(new, write, write));
        drop(g);
        self.mmu_notifier_invalidate_range_end(ctx);
        ctx.step(&self.ghost, "hugetlb_wp: set_huge_pte_at", haddr);
        self.mem.folio_put_refs(ctx, &self.ghost, old, 1, None)?;
        Ok(Ok(()))
    }

    /// `copy_hugetlb_page_range()` for the leaf at `haddr` of the hugetlb VMA
    /// being forked (fork.rs calls it inside its `write_protect_seq` write
    /// section): under the child's and the parent's leaf locks, `folio_get()`
    /// (in every era: the reference comes before the pin check), then
    /// `hugetlb_try_dup_anon_rmap()` (5.19; `page_needs_cow_for_dma()` from
    /// 4eae4efa2c29): share the folio write-protected in both, or, when the
    /// era's rule says the parent may have it pinned, copy it for the child now
    /// with the locks dropped and the parent's leaf left writable.
    pub(crate) fn copy_hugetlb_leaf(
        &self,
        ctx: &mut Ctx,
        parent: usize,
        child: usize,
        haddr: u64,
        size: HugeSize,
    ) -> Res<Result<(), Errno>> {
        let level = size.level();
        let Ok(Some((slot, idx))) = self.ensure_table_at(ctx, parent, haddr, level) else {
            return Ok(Ok(()));
        };
        let (cslot, cidx) = match self.ensure_table_at(ctx, child, haddr, level) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Err(Errno::ENOMEM)),
            Err(_) => return Ok(Ok(())),
        };
        let (t, ct) = (&self.tables[slot as usize], &self.tables[cslot as usize]);
        loop {
            let cg = ct.ptl.lock();
            let g = t.ptl.lock();
            let e = t.read(idx);
            if !(e.present() && e.leaf()) {
                return Ok(Ok(()));
            }
            let head = e.pfn();
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            ctx.step(&self.ghost, "copy_hugetlb_page_range: folio_get", haddr);
            let must = self.fork_must_copy(ctx, parent, head, true);
            if !must || self.cfg.has(Mutation::HugetlbForkIgnoresPins) {
                if must {
                    // The mutation shares a folio the era would copy, as any
                    // shared folio: no longer exclusive.
                    self.set_folio_exclusive(head, false);
                }
                self.add_rmap(head, RmapEntry::huge(child, haddr));
                if e.write() {
                    t.set(idx, e.without(Pte::WRITE));
                }
                for k in 0..self.mem.folio_nr_pages(head) {
                    self.ghost.fork_installed(child, head + k);
                }
                ct.set(cidx, e.without(Pte::WRITE));
                ctx.step(
                    &self.ghost,
                    "copy_hugetlb_page_range: share wrprotected",
                    haddr,
                );
                drop(g);
                drop(cg);
                return Ok(Ok(()));
            }
            // -EBUSY: the early COW, with both locks dropped to allocate and
            // copy; the reference keeps the folio meanwhile.
            drop(g);
            drop(cg);
            ctx.step(
                &self.ghost,
                "copy_hugetlb_page_range: maybe pinned, copy",
                haddr,
            );
            let new = self.alloc_hugetlb_folio(ctx, size)?;
            if let Some(new) = new {
                self.copy_user_large_folio(new, head);
            }
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
            let Some(new) = new else {
                return Ok(Err(Errno::ENOMEM));
            };
            let cg = ct.ptl.lock();
            let g = t.ptl.lock();
            if t.read(idx) != e {
                // The source leaf changed: `goto again`.
                drop(g);
                drop(cg);
                self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
                continue;
            }
            // hugetlb_install_folio(): the child's own exclusive copy, mapped
            // writable (`make_huge_pte(vma, page, 1)`).
            self.add_rmap(new, RmapEntry::huge(child, haddr));
            ct.set(cidx, Pte::mk_leaf(new, true, true));
            for k in 0..self.mem.folio_nr_pages(new) {
                self.ghost.fork_installed(child, new + k);
            }
            ctx.step(&self.ghost, "copy_hugetlb_page_range: early COW", haddr);
            drop(g);
            drop(cg);
            return Ok(Ok(()));
        }
    }
}
