//! fork, and the soft-dirty write-protection of clear_refs (the other writer of
//! PTE protections that meets pinned pages: KERNEL.md §5.8).
//!
//! fork: `dup_mmap` -> `copy_page_range` -> `copy_pte_range` ->
//! `copy_present_pte` (KERNEL.md §5.3, §6), parent and child as two address
//! spaces sharing frames, with each era's protection of pinned pages:
//! none (share and write-protect everything), 5.9's early copy of maybe-pinned
//! pages in an mm that has pinned (70e806e4e645 with `has_pinned`,
//! 008cfe4418b3), 5.11's `write_protect_seq` write section against GUP-fast
//! (57efa1fe5957), and 5.19's `folio_try_dup_anon_rmap` (PageAnonExclusive,
//! 6c287605fd56).
//!
//! Simplifications, one line each:
//! - private anonymous VMAs only: file and shared VMAs are duplicated empty (the
//!   child faults them in again);
//! - swap entries are not duplicated (the child's PTE stays empty);
//! - THP leaves are copied by `copy_huge_pmd`, hugetlb leaves by
//!   `copy_hugetlb_page_range` (hugetlb.rs), inside the same `write_protect_seq`
//!   write section: 623a1ddfeb23 (5.19) put the hugetlb copy there, 5.11-5.18
//!   copied hugetlb outside it;
//! - the 5.10 and 5.11 presets copy a maybe-pinned hugetlb folio early, with
//!   their base-page rule: upstream that came with 4eae4efa2c29 (5.12);
//! - a PTE-mapped large folio is copied PTE by PTE, where the latest kernel
//!   batches (`folio_ref_add(folio, nr)`, one `folio_try_dup_anon_rmap_ptes`):
//!   the same accesses in the same order, per page.

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::Ctx;
use crate::invariant::Res;
use crate::preset::ForkCow;
use crate::state::mem::pg;
use crate::state::mm::mmf;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::PAGE_SIZE;

impl<B: Backend> World<B> {
    /// `echo 4 > /proc/pid/clear_refs` (`clear_refs_write`, CLEAR_REFS_SOFT_DIRTY)
    /// for address space `mm`: under `mmap_lock`, write-protect and soft-clean
    /// every present anonymous PTE so the next store faults, then flush. From
    /// 5.11 a maybe-pinned page is skipped (9348b73c2e1b): write-protecting it
    /// would let the write fault copy it away from its pin (bug #12). The skip
    /// reads the pin state under the PTL, which GUP-fast does not take.
    pub(crate) fn clear_refs_soft_dirty(&self, ctx: &mut Ctx, mm: usize) -> Res<()> {
        ctx.step(&self.ghost, "clear_refs_write: soft-dirty", mm as u64);
        let vmas = self.mms[mm].mmap_lock.read();
        for vma in vmas.iter().filter(|v| v.is_anon()) {
            let mut addr = vma.start;
            while addr < vma.end {
                if let Some((slot, idx)) = self.locked_pte_slot(mm, addr) {
                    let t = &self.tables[slot as usize];
                    let g = t.ptl.lock();
                    let pte = t.read(idx);
                    let skip = !pte.present()
                        || pte.special()
                        || !pte.write()
                        || (self.cfg.p().clear_refs_skips_pinned
                            && self.page_maybe_dma_pinned(pte.pfn()));
                    if !skip {
                        t.set(idx, pte.without(Pte::WRITE | Pte::SOFT_DIRTY));
                        ctx.step(&self.ghost, "clear_soft_dirty: wrprotect", addr);
                    }
                    drop(g);
                }
                addr += PAGE_SIZE;
            }
        }
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_mm: IPI");
        }
        drop(vmas);
        Ok(())
    }

    /// `fork()` of address space `parent` into the empty address space `child`
    /// (`dup_mmap`): both `mmap_lock`s for write, the VMAs copied, the anonymous
    /// PTEs copied inside the MMU-notifier range and, where the era has it, the
    /// `write_protect_seq` write section; then the parent's TLB flush.
    pub fn fork(&self, ctx: &mut Ctx, parent: usize, child: usize) -> Res<Result<(), Errno>> {
        ctx.step(&self.ghost, "dup_mmap", child as u64);
        if parent == child || child >= self.mms.len() {
            return Ok(Err(Errno::EINVAL));
        }
        // Both mmap_locks, the lower address space first: the model's child
        // already exists, and another thread could fork the other way.
        let (pvmas, mut cvmas) = if parent < child {
            let p = self.mms[parent].mmap_lock.write();
            (p, self.mms[child].mmap_lock.write())
        } else {
            let c = self.mms[child].mmap_lock.write();
            (self.mms[parent].mmap_lock.write(), c)
        };
        if !cvmas.is_empty() {
            // The model forks into a fresh address space only.
            return Ok(Err(Errno::EBUSY));
        }
        *cvmas = pvmas.clone();
        self.ghost.forked(child, parent);
        let end = self.cfg.va_size();
        self.mmu_notifier_invalidate_range_start(ctx, parent, 0, end);
        let p = self.cfg.p();
        let seq = &self.mms[parent].write_protect_seq;
        if p.seqcount {
            // raw_write_seqcount_begin() (57efa1fe5957): `s->sequence++;
            // smp_wmb();`, odd, then the copy. The smp_wmb orders the increment
            // before the copy's stores only: nothing fully ordered stands
            // between it and the pin-state loads of the copy (the PTLs are
            // ACQUIRE, `folio_get` is relaxed), while GUP-fast's pin is fully
            // ordered before its `read_seqcount_retry`. Store buffering: both
            // may miss the other (docs/src/fork-cow.md).
            seq.add(1);
            B::smp_wmb();
            ctx.step(&self.ghost, "copy_page_range: write_seqcount_begin", 0);
            if self.cfg.has(Mutation::ForkSeqMb) {
                // The fix upstream lacks: smp_mb() after
                // raw_write_seqcount_begin() in copy_page_range() and
                // copy_hugetlb_page_range() (one section here), pairing with
                // GUP-fast's fully ordered pin (088b8aa537c2's
                // smp_mb__after_atomic, 6.1).
                B::smp_mb();
            }
        }
        let mut r = Ok(Ok(()));
        let span = 1u64 << self.cfg.shift(2);
        'vmas: for vma in pvmas
            .iter()
            .filter(|v| v.is_anon() || v.hugetlb().is_some())
        {
            if let Some(size) = vma.hugetlb() {
                let span = 1u64 << self.cfg.shift(size.level());
                let mut addr = vma.start;
                while addr < vma.end {
                    if let Err(e) = self.copy_hugetlb_leaf(ctx, parent, child, addr, size)? {
                        r = Ok(Err(e));
                        break 'vmas;
                    }
                    addr += span;
                }
                continue;
            }
            let mut addr = vma.start;
            while addr < vma.end {
                if addr % span == 0 {
                    match self.copy_huge_pmd(ctx, parent, child, addr)? {
                        Ok(true) => {
                            addr += span;
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            r = Ok(Err(e));
                            break 'vmas;
                        }
                    }
                }
                match self.copy_present_pte(ctx, parent, child, addr) {
                    Ok(Ok(())) => {}
                    other => {
                        r = other;
                        break 'vmas;
                    }
                }
                addr += PAGE_SIZE;
            }
        }
        if p.seqcount {
            B::smp_wmb();
            seq.add(1);
            ctx.step(&self.ghost, "copy_page_range: write_seqcount_end", 0);
        }
        // flush_tlb_mm(parent): the write-protected PTEs; under IPI this waits
        // for the parent's interrupts-off walkers.
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers.sync(ctx, &self.ghost, "flush_tlb_mm: IPI");
        }
        self.mmu_notifier_invalidate_range_end(ctx);
        drop(cvmas);
        drop(pvmas);
        r
    }

    /// Whether fork must not share the anonymous `page` (a whole folio's head
    /// if `whole`) with the child, by the era's rule; from 5.19 a page it
    /// shares loses PageAnonExclusive. The pin state it reads, under the PTLs
    /// only, which GUP-fast does not take: `MMF_HAS_PINNED` (`test_bit`;
    /// `atomic_read(&mm->has_pinned)` in 5.9-5.13), then
    /// `folio_maybe_dma_pinned()`: `_pincount` for a large folio, `_refcount`
    /// against the bias for a small one. 5.9-5.18: `copy_present_page()`'s
    /// test (70e806e4e645); 5.19+: `__folio_try_dup_anon_rmap()` ->
    /// `folio_needs_cow_for_dma()` (6c287605fd56).
    pub(crate) fn fork_must_copy(
        &self,
        ctx: &mut Ctx,
        parent: usize,
        page: crate::types::Pfn,
        whole: bool,
    ) -> bool {
        let head = self.mem.page_folio(page);
        let flags = self.mem.frame(page).flags.read_once();
        let has_pinned = self.mms[parent].flags.read_once() & mmf::HAS_PINNED != 0;
        let copy = flags & pg::ANON != 0
            && match self.cfg.p().fork_cow {
                ForkCow::Share => false,
                // has_pinned && page_maybe_dma_pinned() (70e806e4e645;
                // page_needs_cow_for_dma() later).
                ForkCow::EarlyCopyPinned => has_pinned && self.folio_maybe_dma_pinned(head),
                // page_try_dup_anon_rmap() (later folio_try_dup_anon_rmap_*):
                // an exclusive page that may
                // be pinned is not shared; any other loses its exclusivity
                // (ClearPageAnonExclusive: clear_bit, unordered).
                ForkCow::DupAnonRmap => {
                    let exclusive = flags & pg::ANON_EXCLUSIVE != 0;
                    if exclusive && has_pinned && self.folio_maybe_dma_pinned(head) {
                        true
                    } else {
                        if whole {
                            self.set_folio_exclusive(head, false);
                        } else if exclusive {
                            self.mem.frame(page).flags.andnot(pg::ANON_EXCLUSIVE);
                        }
                        false
                    }
                }
            };
        if self.cfg.p().fork_cow != ForkCow::Share {
            // The pin state has been read (the end of the race window of the
            // store buffering with GUP-fast: the scenarios' `Window`).
            ctx.step(&self.ghost, "folio_needs_cow_for_dma", u64::from(head));
        }
        copy
    }

    /// `copy_huge_pmd()` for the PMD range at `haddr`: under the child's and
    /// the parent's PMD locks, share a THP leaf write-protected in both. A
    /// folio the era says may be pinned is not shared: the parent's PMD is
    /// split and the range copied PTE by PTE (-EAGAIN in the kernel; 5.9's
    /// maybe-pinned test, 5.19's `page_try_dup_anon_rmap`).
    /// `Ok(false)`: not a THP leaf, or split: the PTE loop takes over.
    fn copy_huge_pmd(
        &self,
        ctx: &mut Ctx,
        parent: usize,
        child: usize,
        haddr: u64,
    ) -> Res<Result<bool, Errno>> {
        let Some((slot, idx)) = self.locked_pmd_slot(parent, haddr) else {
            return Ok(Ok(false));
        };
        let t = &self.tables[slot as usize];
        if !self.is_thp_leaf(t.read(idx)) {
            return Ok(Ok(false));
        }
        let (cslot, cidx) = match self.ensure_table_at(ctx, child, haddr, 2) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Err(Errno::ENOMEM)),
            Err(_) => return Ok(Ok(false)),
        };
        let ct = &self.tables[cslot as usize];
        let cg = ct.ptl.lock();
        let g = t.ptl.lock();
        let pmd = t.read(idx);
        if !self.is_thp_leaf(pmd) {
            return Ok(Ok(false));
        }
        let head = pmd.pfn();
        let ref_first = self.cfg.p().dup_rmap_ref_first;
        if ref_first {
            // `folio_get(src_folio)` before `folio_try_dup_anon_rmap_pmd()`
            // (fb3d824d1a46, 5.19): a relaxed RMW on `_refcount`, which does
            // not order the `_pincount` read a large folio's check makes.
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            ctx.step(&self.ghost, "copy_huge_pmd: folio_get", haddr);
        }
        if self.fork_must_copy(ctx, parent, head, true) {
            if ref_first {
                // -EBUSY: `folio_put(src_folio)`, then split and -EAGAIN.
                self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
            }
            drop(g);
            drop(cg);
            ctx.step(&self.ghost, "copy_huge_pmd: maybe pinned, split", haddr);
            return self
                .split_huge_pmd(ctx, parent, haddr)
                .map(|r| r.map(|()| false));
        }
        if !ref_first {
            // 5.9-5.18: `get_page(src_page)` after the maybe-pinned check
            // (d042035eaf5f).
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        }
        self.add_rmap(head, RmapEntry::huge(child, haddr));
        if pmd.write() {
            t.set(idx, pmd.without(Pte::WRITE));
        }
        // Stamped before the child's entry appears: no write after it may reach
        // the child.
        for k in 0..self.mem.folio_nr_pages(head) {
            self.ghost.fork_installed(child, head + k);
        }
        ct.set(cidx, pmd.without(Pte::WRITE));
        ctx.step(&self.ghost, "copy_huge_pmd: share wrprotected", haddr);
        drop(g);
        drop(cg);
        Ok(Ok(true))
    }

    /// `copy_present_pte()` for one address: under the child's and the parent's
    /// PTLs, share the page write-protected in both, or copy it for the child
    /// at once when the era says the parent may have it pinned.
    fn copy_present_pte(
        &self,
        ctx: &mut Ctx,
        parent: usize,
        child: usize,
        addr: u64,
    ) -> Res<Result<(), Errno>> {
        let Some((slot, idx)) = self.locked_pte_slot(parent, addr) else {
            return Ok(Ok(()));
        };
        if !self.tables[slot as usize].read(idx).present() {
            return Ok(Ok(()));
        }
        let (cslot, cidx) = match self.ensure_pte_table(ctx, child, addr) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Err(Errno::ENOMEM)),
            Err(_) => return Ok(Ok(())),
        };
        // copy_pte_range()'s `prealloc`: a page for an early COW is allocated
        // with both PTLs dropped (-EAGAIN, `folio_prealloc()`), then the PTE is
        // looked at again under them and the copy made there.
        let mut prealloc: Option<crate::types::Pfn> = None;
        let r = loop {
            match self.copy_present_pte_locked(
                ctx,
                parent,
                child,
                addr,
                (slot, idx),
                (cslot, cidx),
                &mut prealloc,
            )? {
                Copied::Done(r) => break r,
                Copied::NeedPage => {
                    ctx.step(&self.ghost, "copy_pte_range: -EAGAIN, folio_prealloc", addr);
                    let Some(new) = self.alloc_anon_page(ctx)? else {
                        return Ok(Err(Errno::ENOMEM));
                    };
                    prealloc = Some(new);
                }
            }
        };
        if let Some(unused) = prealloc {
            // The PTE changed meanwhile: `folio_put(prealloc)`.
            self.mem.folio_put_refs(ctx, &self.ghost, unused, 1, None)?;
        }
        Ok(r)
    }

    /// The part of `copy_present_ptes()` under the child's and the parent's
    /// PTLs. `NeedPage`: an early COW without a preallocated page.
    #[allow(clippy::too_many_arguments)]
    fn copy_present_pte_locked(
        &self,
        ctx: &mut Ctx,
        parent: usize,
        child: usize,
        addr: u64,
        (slot, idx): (u32, usize),
        (cslot, cidx): (u32, usize),
        prealloc: &mut Option<crate::types::Pfn>,
    ) -> Res<Copied> {
        let (t, ct) = (&self.tables[slot as usize], &self.tables[cslot as usize]);
        let cg = ct.ptl.lock();
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.leaf() {
            return Ok(Copied::Done(Ok(())));
        }
        let page = pte.pfn();
        if pte.special() {
            // The zero page: mapped read-only in both, no reference.
            ct.set(cidx, pte.without(Pte::WRITE));
            return Ok(Copied::Done(Ok(())));
        }
        let head = self.mem.page_folio(page);
        let ref_first = self.cfg.p().dup_rmap_ref_first;
        if ref_first {
            // `copy_present_ptes()`: `folio_get(folio)` before
            // `folio_try_dup_anon_rmap_pte()` (fb3d824d1a46, 5.19; `get_page`
            // before `page_try_dup_anon_rmap` until the folio conversion). A
            // relaxed RMW on the `_refcount` word a small folio's
            // `folio_maybe_dma_pinned()` then reads: coherence orders that
            // read after it, and a pin RMW that reads from it synchronises
            // with fork's smp_wmb. It does not order `MMF_HAS_PINNED` nor a
            // large folio's `_pincount`.
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            ctx.step(&self.ghost, "copy_present_ptes: folio_get", addr);
        }
        let copy = self.fork_must_copy(ctx, parent, page, false);
        if copy {
            if ref_first {
                // -EBUSY: `folio_put(folio)`, then `copy_present_page()`.
                self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
            }
            let Some(new) = prealloc.take() else {
                return Ok(Copied::NeedPage);
            };
            self.copy_present_page(ctx, child, addr, cslot, cidx, page, new);
            drop(g);
            drop(cg);
            return Ok(Copied::Done(Ok(())));
        }
        if !ref_first {
            // 5.9-5.18: `copy_present_page()` checked `has_pinned` and
            // `page_maybe_dma_pinned()` (70e806e4e645), then
            // `copy_present_pte()` takes `get_page(page)`.
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        }
        // Share: the child's mapping holds the reference; both PTEs read-only
        // (ptep_set_wrprotect on the parent's).
        self.add_rmap(page, RmapEntry::pte(child, addr));
        if pte.write() {
            t.set(idx, pte.without(Pte::WRITE));
        }
        self.ghost.fork_installed(child, page);
        ct.set(cidx, pte.without(Pte::WRITE));
        ctx.step(&self.ghost, "copy_present_pte: share wrprotected", addr);
        drop(g);
        drop(cg);
        Ok(Copied::Done(Ok(())))
    }

    /// `copy_present_page()`: the early COW of a maybe-pinned page, under
    /// both PTLs: the child gets its own copy in `new` now and the parent
    /// keeps the pinned page mapped writable.
    #[allow(clippy::too_many_arguments)]
    fn copy_present_page(
        &self,
        ctx: &mut Ctx,
        child: usize,
        addr: u64,
        cslot: u32,
        cidx: usize,
        src: crate::types::Pfn,
        new: crate::types::Pfn,
    ) {
        self.copy_highpage(new, src);
        // __folio_mark_uptodate(): the copy before the PTE that publishes it.
        B::smp_wmb();
        self.add_rmap(new, RmapEntry::pte(child, addr));
        self.tables[cslot as usize].set(cidx, Pte::mk_page(new, true, true));
        self.ghost.fork_installed(child, new);
        ctx.step(&self.ghost, "copy_present_page: early COW", addr);
    }
}

/// What one try of `copy_present_ptes()` under the PTLs did.
enum Copied {
    Done(Result<(), Errno>),
    NeedPage,
}
