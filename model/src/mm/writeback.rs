//! Writeback: `folio_clear_dirty_for_io` -> `folio_mkclean` (rmap walk, per-PTE
//! PTL, clear and flush, write-protect and clean) -> PG_writeback -> the disk
//! (KERNEL.md §5.2). This is the second race of the design card: GUP-fast reads a
//! writable PTE, page_mkclean write-protects it, GUP-fast's recheck must see that.
//!
//! Simplifications, one line each:
//! - `->writepage` is synchronous: the disk is written and PG_writeback ends
//!   before the page lock is dropped;
//! - the rmap walk holds `rmap_walk_lock` for read (`i_mmap_rwsem`: page-table
//!   freeing waits for it), copies the folio's mappings under the rmap lock,
//!   then takes each PTL;
//! - file folios are base pages (no PMD-mapped page cache).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::{Invariant, Res};
use crate::state::fs::FsFlavour;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What writeback did with one page, and what it could see of pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub index: u32,
    /// It was dirty and went to disk.
    pub written: bool,
    /// `folio_maybe_dma_pinned()` when writeback cleaned it: what a filesystem
    /// could act on (mainline does not, KERNEL.md §5.2).
    pub maybe_pinned: bool,
}

impl<B: Backend> World<B> {
    /// `folio_mkclean()` -> `page_vma_mkclean_one()` for each mapping: under the
    /// PTL, a PTE that is dirty or writable is cleared and flushed
    /// (`ptep_clear_flush`; under IPI the flush waits for interrupts-off
    /// walkers), then set write-protected and clean. Returns whether any PTE was
    /// cleaned (the kernel's `cleaned` count), dirty or only writable.
    pub(crate) fn folio_mkclean(&self, ctx: &mut Ctx, head: Pfn) -> Res<bool> {
        let mut cleaned = false;
        self.rmap_walk_ptes(ctx, head, |ctx, e, slot, idx| {
            let t = &self.tables[slot as usize];
            let _g = t.ptl.lock();
            let pte = t.read(idx);
            if pte.present() && pte.pfn() == head && (pte.write() || pte.dirty()) {
                let old = t.get_and_clear(idx, self.cfg.arch);
                self.ghost.pte_cleaned(slot, idx);
                ctx.step(&self.ghost, "page_mkclean_one: ptep_clear_flush", e.addr);
                if flush_waits_for_walkers(self.cfg.arch) {
                    self.walkers.sync(ctx, &self.ghost, "flush_tlb_page: IPI");
                }
                t.set(idx, old.without(Pte::WRITE | Pte::DIRTY));
                ctx.step(&self.ghost, "page_mkclean_one: wrprotect", e.addr);
                cleaned = true;
            }
            Ok(())
        })?;
        Ok(cleaned)
    }

    /// `folio_clear_dirty_for_io()` (page locked): `if (folio_mkclean(folio))
    /// folio_mark_dirty(folio)`: any PTE cleaned, even one only writable,
    /// re-dirties the folio; then test-and-clear PG_dirty.
    pub(crate) fn folio_clear_dirty_for_io(&self, ctx: &mut Ctx, head: Pfn) -> Res<bool> {
        if self.folio_mkclean(ctx, head)? {
            self.folio_mark_dirty(ctx, head)?;
        }
        let old = self.mem.frame(head).flags.fetch_andnot(pg::DIRTY);
        if old & pg::DIRTY == 0 {
            return Ok(false);
        }
        self.ghost.written_back(head);
        ctx.step(&self.ghost, "folio_clear_dirty_for_io", u64::from(head));
        Ok(true)
    }

    /// `->writepage` of a locked, cleaned folio: PG_writeback, the disk write,
    /// `folio_end_writeback`.
    pub(crate) fn writepage(&self, ctx: &mut Ctx, head: Pfn, inode: u32, index: u32) -> Res<()> {
        if self.cfg.has(Mutation::WritepageSkipped) {
            // PG_dirty is already clear: nothing will ever write this data.
            ctx.step(&self.ghost, "writepage: skipped", u64::from(head));
            return Ok(());
        }
        let f = self.mem.frame(head);
        let flags = f.flags.fetch_or(pg::WRITEBACK);
        let ino = &self.inodes[inode as usize];
        if ino.flavour == FsFlavour::BufferHead && flags & pg::HAS_BUFFERS == 0 {
            f.flags.fetch_andnot(pg::WRITEBACK);
            return Err(ctx.violation(
                Invariant::DirtyWithoutBuffers,
                format!("ext4_writepage: page {head} (inode {inode}, index {index}) is dirty without buffers"),
            ));
        }
        let data = [self.mem.read_data(head, 0), self.mem.read_data(head, 1)];
        ino.disk.lock()[index as usize] = data;
        ctx.step(&self.ghost, "submit_bio: write", u64::from(index));
        f.flags.fetch_andnot(pg::WRITEBACK);
        ctx.step(&self.ghost, "folio_end_writeback", u64::from(head));
        Ok(())
    }

    /// `write_one_page()`-like: lock, clean for I/O, write. `None` if the page left
    /// the file meanwhile.
    pub(crate) fn writeback_folio(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        inode: u32,
        index: u32,
    ) -> Res<Option<Written>> {
        self.folio_lock(ctx, head);
        let r = (|| {
            if self.mem.frame(head).mapping.read_once() != inode + 1 {
                return Ok(None);
            }
            let maybe_pinned = self.folio_maybe_dma_pinned(head);
            let written = self.folio_clear_dirty_for_io(ctx, head)?;
            if written {
                self.writepage(ctx, head, inode, index)?;
            }
            Ok(Some(Written {
                index,
                written,
                maybe_pinned,
            }))
        })();
        self.folio_unlock(ctx, head);
        r
    }

    /// `filemap_fdatawrite()` -> `write_cache_pages()`: every dirty cached page of
    /// the file, each held by a reference while it is written.
    pub fn writeback_inode(&self, ctx: &mut Ctx, inode: u32) -> Res<Vec<Written>> {
        ctx.step(&self.ghost, "filemap_fdatawrite", u64::from(inode));
        let mut out = Vec::new();
        for index in 0..self.inodes[inode as usize].nr_pages() {
            let Some(head) = self.filemap_get_folio(ctx, inode, index)? else {
                continue;
            };
            let r = if self.mem.frame(head).flags.read_once() & pg::DIRTY != 0 {
                self.writeback_folio(ctx, head, inode, index)
            } else {
                Ok(None)
            };
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
            out.extend(r?);
        }
        Ok(out)
    }

    /// `rmap_walk()` over the PTE mappings of folio `head`, holding
    /// `rmap_walk_lock` (the model's `i_mmap_rwsem`): for each mapping, inside an
    /// MMU-notifier range, `one` gets the mapping and the PTE table slot and index
    /// that map its address (`page_vma_mapped_walk`); it takes the PTL itself.
    pub(crate) fn rmap_walk_ptes(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        mut one: impl FnMut(&mut Ctx, RmapEntry, u32, usize) -> Res<()>,
    ) -> Res<()> {
        let _walk = self.rmap_walk_lock.read();
        let mappings = self.mem.frame(head).rmap.lock().entries();
        for e in mappings.into_iter().filter(|e| !e.huge) {
            let mm = e.mm as usize;
            self.mmu_notifier_invalidate_range_start(ctx, mm, e.addr, e.addr + PAGE_SIZE);
            let r = match self.locked_pte_slot(mm, e.addr) {
                Some((slot, idx)) => one(ctx, e, slot, idx),
                None => Ok(()),
            };
            self.mmu_notifier_invalidate_range_end(ctx);
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{KAtomic, Std};
    use crate::config::{Arch, WorldConfig};
    use crate::ghost::Ctx;
    use crate::state::fs::{Cached, FileSpec, FsFlavour};
    use crate::state::layout::{Layout, Populate, Region};
    use crate::state::mem::pg;
    use crate::state::world::World;

    /// `folio_clear_dirty_for_io()` is a test-and-clear: it says whether the
    /// folio was dirty (callers write only then), and a clean folio stays clean.
    #[test]
    fn clear_dirty_for_io_says_whether_the_folio_was_dirty() {
        for (cached, was_dirty) in [(Cached::Clean, false), (Cached::Dirty, true)] {
            let layout = Layout {
                files: vec![FileSpec {
                    pages: 1,
                    flavour: FsFlavour::Iomap,
                    cached,
                }],
                ..Layout::one(vec![Region::file(0, 1, 0, true, Populate::None)])
            };
            let cfg = WorldConfig {
                nr_frames: 16,
                trace: false,
                ..WorldConfig::small(Arch::Ipi)
            };
            let w = World::<Std>::build(cfg, &layout).unwrap();
            let mut c = Ctx::new(0, 1, false);
            let head = w.inodes[0].i_pages.lock()[0].unwrap();
            assert_eq!(w.folio_clear_dirty_for_io(&mut c, head).unwrap(), was_dirty);
            assert_eq!(w.mem.frame(head).flags.read_once() & pg::DIRTY, 0);
        }
    }
}
