//! DMA devices, the seed's four cases as actors (pin_user_pages.rst, KERNEL.md
//! §1.7): a device writes into pinned pages through the pin, never through PTEs
//! (`dma_write`), and a driver with an MMU interval notifier pins nothing and
//! drops its device mapping on invalidation (`NotifierDev`). DIO (FOLL_PIN), RDMA
//! (FOLL_PIN | FOLL_LONGTERM) and the struct-page-only user (FOLL_GET) are GUP
//! calls followed by these writes and a release (ops.rs).
//!
//! Simplifications, one line each:
//! - one notifier device per world, registered over every address space;
//! - one sequence for the whole device (the kernel keeps one per interval).

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, WriteRec};
use crate::invariant::{Invariant, Res};
use crate::state::device::DevPte;
use crate::state::mem::pg;
use crate::state::mm::FaultFlags;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// `mmu_notifier_invalidate_range_start()`: the driver's `->invalidate` takes
    /// its lock, bumps the sequence and drops device PTEs in [start, end) before
    /// the caller changes the CPU page tables; the invalidation stays in progress
    /// until `mmu_notifier_invalidate_range_end`. No backend operation without a
    /// registered notifier.
    pub(crate) fn mmu_notifier_invalidate_range_start(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        end: u64,
    ) {
        let Some(dev) = &self.notifier else {
            return;
        };
        let mut st = dev.lock.lock();
        st.seq += 1;
        st.active += 1;
        st.ptes
            .retain(|p| !(p.mm as usize == mm && start <= p.addr && p.addr < end));
        drop(st);
        ctx.step(&self.ghost, "mmu_notifier_invalidate_range_start", start);
    }

    /// `mmu_notifier_invalidate_range_end()`: the page tables are changed; readers
    /// waiting in `mmu_interval_read_begin` may go on.
    pub(crate) fn mmu_notifier_invalidate_range_end(&self, ctx: &mut Ctx) {
        let Some(dev) = &self.notifier else {
            return;
        };
        let mut st = dev.lock.lock();
        st.active -= 1;
        dev.done.notify_all();
        drop(st);
        ctx.step(&self.ghost, "mmu_notifier_invalidate_range_end", 0);
    }

    /// The driver maps `addr` for its device, `hmm_range_fault()`-style: read the
    /// sequence, fault the page writable and look up its pfn under `mmap_lock`
    /// (no reference is taken), then under the driver lock program the device PTE
    /// unless an invalidation ran meanwhile (`mmu_interval_read_retry`), in which
    /// case it starts again. Returns the pfn mapped, or an errno.
    pub fn notifier_map(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Result<Pfn, Errno>> {
        let Some(dev) = &self.notifier else {
            return Ok(Err(Errno::ENOSYS));
        };
        for _attempt in 0..3 {
            // mmu_interval_read_begin(): sleeps while an invalidation runs.
            let mut st = dev.lock.lock();
            while st.active > 0 {
                ctx.step(
                    &self.ghost,
                    "mmu_interval_read_begin: sleeping while an invalidation runs",
                    addr,
                );
                st = dev.done.wait(st);
            }
            let seq = st.seq;
            drop(st);
            ctx.step(&self.ghost, "mmu_interval_read_begin", addr);
            let vmas = self.mms[mm].mmap_lock.read();
            let Some(vma) = World::<B>::find_vma(&vmas, addr) else {
                return Ok(Err(Errno::EFAULT));
            };
            let mut found = self.lookup_writable(mm, addr);
            if found.is_none() {
                let ff = FaultFlags {
                    write: true,
                    ..FaultFlags::default()
                };
                if let Err(e) = self.handle_mm_fault(ctx, mm, &vma, addr, ff)? {
                    return Ok(Err(e));
                }
                found = self.lookup_writable(mm, addr);
            }
            drop(vmas);
            let Some((pfn, gen)) = found else {
                continue;
            };
            let mut st = dev.lock.lock();
            // mmu_interval_read_retry(): any invalidation since read_begin.
            if st.seq != seq && !self.cfg.has(Mutation::NotifierSkipsRetry) {
                drop(st);
                ctx.step(&self.ghost, "mmu_interval_read_retry: again", addr);
                continue;
            }
            st.ptes.push(DevPte {
                mm: mm as u32,
                addr,
                pfn,
                gen,
            });
            drop(st);
            ctx.step(&self.ghost, "device pte programmed", u64::from(pfn));
            return Ok(Ok(pfn));
        }
        Ok(Err(Errno::EAGAIN))
    }

    /// The pfn of a present, writable PTE at `addr`, read under its PTL, with the
    /// frame's generation (ghost, read right after).
    fn lookup_writable(&self, mm: usize, addr: u64) -> Option<(Pfn, u32)> {
        let (slot, idx) = self.locked_pte_slot(mm, addr)?;
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        let r =
            (pte.present() && pte.write()).then(|| (pte.pfn(), self.ghost.frame(pte.pfn()).gen()));
        drop(g);
        r
    }

    /// The notifier device writes through every device PTE it has, under the
    /// driver lock (an invalidation waits for it). A device PTE to a frame freed
    /// since it was programmed is a use after free.
    pub fn notifier_write(&self, ctx: &mut Ctx) -> Res<()> {
        let Some(dev) = &self.notifier else {
            return Ok(());
        };
        let st = dev.lock.lock();
        for p in st.ptes.iter() {
            let now = self.ghost.frame(p.pfn);
            if !now.allocated() || now.gen() != p.gen {
                return Err(ctx.violation(
                    Invariant::NoUseAfterFree,
                    format!(
                        "device wrote frame {} through a device PTE for {:#x} that the MMU notifier should have invalidated: the frame was freed since",
                        p.pfn, p.addr
                    ),
                ));
            }
            // The device PTE was programmed from a writable PTE, and every
            // change to that PTE (munmap, page_mkclean, reclaim) invalidates it
            // first: the write is the CPU's view of the page, a file's for a
            // page-cache page.
            let v = self.value_for(ctx, p.mm as usize, p.pfn);
            self.write_page(p.pfn, 0, v);
            if self.record_file_write(ctx, p.pfn, v, false).is_none() {
                let seq = self.ghost.tick();
                ctx.ledger.wrote(WriteRec {
                    seq,
                    mm: p.mm,
                    addr: p.addr,
                    value: v,
                    via_pin: None,
                });
            }
            ctx.step(&self.ghost, "device dma write", u64::from(p.pfn));
        }
        drop(st);
        Ok(())
    }

    /// A device writes into the pages of GUP result `handle` through the pin (its
    /// DMA mapping of the struct pages), never through PTEs; only pages taken
    /// with FOLL_WRITE (a device reading needs nothing more). A write into a page
    /// writeback has cleaned since the grab lands in a page the filesystem
    /// believes clean: the gup+DMA problem of the seed's documentation.
    pub fn dma_write(&self, ctx: &mut Ctx, handle: usize) -> Res<()> {
        let h = ctx.handles[handle].clone();
        if !h.write {
            return Ok(());
        }
        for (k, &page) in h.pages.iter().enumerate() {
            let head = self.mem.page_folio(page);
            if !self.ghost.frame(head).allocated() {
                return Err(ctx.violation(
                    Invariant::NoUseAfterFree,
                    format!("device wrote page {page}, freed while the GUP result still held it"),
                ));
            }
            // A caller that asked for plain references (not the #13 misuse of
            // a caller that needed a pin) was never promised its page stays
            // the parent's across fork: only FOLL_PIN is (page_needs_cow_for_dma).
            // What its device writes is not judged as a leak to a child.
            let v = if h.needs_pin {
                self.value_for(ctx, h.mm as usize, page)
            } else {
                ctx.next_value_untracked(&self.ghost)
            };
            self.write_page(page, 0, v);
            // Ghost, with the write: the file the page is in now, and how often
            // writeback has cleaned it.
            let file = self.ghost.file_of(head);
            let wb_at_write = self.ghost.wb_gen(head);
            ctx.step(&self.ghost, "device dma write", u64::from(page));
            match file {
                Some(_) => {
                    self.record_file_write(ctx, head, v, true);
                }
                None => {
                    let seq = self.ghost.tick();
                    ctx.ledger.wrote(WriteRec {
                        seq,
                        mm: h.mm,
                        addr: h.start + k as u64 * crate::types::PAGE_SIZE,
                        value: v,
                        via_pin: Some((page, self.ghost.frame(page).gen())),
                    });
                }
            }
            // DMA completion (the device's interrupt, the driver's wakeup) orders
            // the device's write before whatever the driver does next, e.g. the
            // unpin that tests PG_dirty.
            B::smp_mb();
            let Some(file) = file else { continue };
            let cleaned_since_grab = h
                .wb_gen
                .iter()
                .find(|(p, _)| *p == head)
                .is_some_and(|&(_, gen)| gen != wb_at_write);
            if cleaned_since_grab {
                // Writeback cleaned the page since the grab. Unless the page is
                // dirty again, or a writeback since the write took it to disk,
                // the write is on neither the disk nor a dirty page.
                let dirty = self.mem.frame(head).flags.read_once() & pg::DIRTY != 0;
                if !dirty && self.ghost.wb_gen(head) == wb_at_write {
                    // Known-open and tolerated: noted, and the device's life
                    // goes on to its unpin, which re-dirties the page (what
                    // `durable after sync` judges at rest).
                    if self.cfg.tolerate.contains(&Invariant::NoLostWrite) {
                        ctx.ledger.tolerated += 1;
                        ctx.step(
                            &self.ghost,
                            "device dma write: into a clean page",
                            u64::from(page),
                        );
                        continue;
                    }
                    return Err(ctx.violation(
                        Invariant::NoLostWrite,
                        format!(
                            "device wrote page {page} (inode {}, index {}) after writeback cleaned it: the filesystem believes it clean, so the write is on neither the disk nor a dirty page",
                            file.0, file.1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
