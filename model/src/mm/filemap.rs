//! File-backed memory: inodes with a page cache and a disk, file faults (read
//! fill, the shared write fault through `->page_mkwrite`, the private write fault
//! that copies), buffer heads, and `folio_mark_dirty`.
//!
//! Two filesystem flavours (KERNEL.md §5.2): *buffer-head* (ext4-like: a dirty
//! page must have buffers, attached by `->page_mkwrite`, stripped by reclaim once
//! clean) and *iomap* (per-folio state allocated on demand: a page dirtied behind
//! the filesystem's back is written normally).
//!
//! Simplifications, one line each:
//! - one page per block, the disk holds the same two data words a page holds;
//! - the page cache (`i_pages`) is a vector under its lock; lookups take the lock
//!   (the kernel's are RCU walks with `folio_try_get`), so they never see a frozen
//!   count: reclaim freezes and removes under the same lock;
//! - a file never changes size: truncation is a hole punch of one page
//!   (`punch_hole`), and an index past the end is SIGBUS, here -EFAULT;
//! - buffers are all-or-nothing per page and dirty exactly when the page is.

use crate::backend::{Backend, KAtomic};
use crate::ghost::{Ctx, FileWriteRec, HoldKind};
use crate::invariant::{Invariant, Res};
use crate::state::fs::FsFlavour;
use crate::state::mem::{pg, Order, Zone};
use crate::state::mm::{FaultFlags, Vma, VmaKind};
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// `folio->mapping` of a page-cache folio: (inode, index), read racily.
    pub(crate) fn folio_file(&self, head: Pfn) -> Option<(u32, u32)> {
        let f = self.mem.frame(head);
        let m = f.mapping.read_once();
        (m != 0).then(|| (m - 1, f.index.read_once()))
    }

    /// `filemap_get_folio()`: the cached folio at `index` with a reference for the
    /// caller (a plain add: the page cache's own reference keeps it alive under
    /// the lock).
    pub(crate) fn filemap_get_folio(
        &self,
        ctx: &mut Ctx,
        inode: u32,
        index: u32,
    ) -> Res<Option<Pfn>> {
        let ino = &self.inodes[inode as usize];
        let cache = ino.i_pages.lock();
        let Some(head) = cache.get(index as usize).copied().flatten() else {
            return Ok(None);
        };
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(cache);
        Ok(Some(head))
    }

    /// `filemap_fault()`: the cached folio, or a new one added to the page cache
    /// locked and then read from disk (`filemap_add_folio`: the cache takes its
    /// own reference), under `invalidate_lock` shared so a hole punch cannot
    /// slip between the insertion and the read. Returns the folio *locked*
    /// (VM_FAULT_LOCKED) and still in the file, with a reference for the caller.
    pub(crate) fn filemap_fault(
        &self,
        ctx: &mut Ctx,
        inode: u32,
        index: u32,
    ) -> Res<Result<Pfn, Errno>> {
        let ino = &self.inodes[inode as usize];
        if index >= ino.nr_pages() {
            return Ok(Err(Errno::EFAULT));
        }
        for _attempt in 0..3 {
            if let Some(head) = self.filemap_get_folio(ctx, inode, index)? {
                // folio_lock_or_retry(): waits for a read in progress.
                self.folio_lock(ctx, head);
                if self.mem.frame(head).mapping.read_once() == inode + 1 {
                    return Ok(Ok(head));
                }
                // Truncated meanwhile: look again.
                self.folio_unlock(ctx, head);
                self.mem
                    .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
                continue;
            }
            let inv = ino.invalidate_lock.read();
            self.rcu_reclaim(ctx)?;
            let pin = ctx.memalloc_pin;
            let Some(new) = self
                .mem
                .alloc_folio_where(ctx, &self.ghost, Order::Base, 0, |z| {
                    !pin || z == Zone::Normal
                })
            else {
                return Ok(Err(Errno::ENOMEM));
            };
            // __folio_set_locked(): the page is still ours alone.
            self.mem.frame(new).flags.or(pg::LOCKED);
            let mut cache = ino.i_pages.lock();
            if cache[index as usize].is_some() {
                // Someone else added it first: use theirs.
                drop(cache);
                drop(inv);
                self.mem.frame(new).flags.fetch_andnot(pg::LOCKED);
                self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
                continue;
            }
            self.set_folio_file(new, Some((inode, index)));
            // The allocation's reference becomes the cache's; the caller gets
            // another.
            self.mem.folio_ref_add(ctx, &self.ghost, new, 1)?;
            ctx.hold(new, self.ghost.frame(new).gen(), HoldKind::Get, 1);
            cache[index as usize] = Some(new);
            drop(cache);
            ctx.step(&self.ghost, "filemap_add_folio", u64::from(new));
            // The read, under the page lock: whoever finds the page waits for it.
            let data = ino.disk.lock()[index as usize];
            for (w, v) in data.into_iter().enumerate() {
                self.write_page(new, w, v);
            }
            drop(inv);
            ctx.step(&self.ghost, "filemap_read_folio", u64::from(new));
            return Ok(Ok(new));
        }
        Ok(Err(Errno::EAGAIN))
    }

    /// `folio_mark_dirty()` (`set_page_dirty`): PG_dirty. On a buffer-head
    /// filesystem a page-cache page dirtied without buffers is the bug the seed's
    /// documentation describes (ext4 `BUG_ON(!page_has_buffers)` at writeback).
    pub(crate) fn folio_mark_dirty(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        let file = self.folio_file(head);
        let old = self.mem.frame(head).flags.fetch_or(pg::DIRTY);
        ctx.step(&self.ghost, "folio_mark_dirty", u64::from(head));
        if let Some((inode, index)) = file {
            let ino = &self.inodes[inode as usize];
            if ino.flavour == FsFlavour::BufferHead && old & pg::HAS_BUFFERS == 0 {
                return Err(ctx.violation(
                    Invariant::DirtyWithoutBuffers,
                    format!(
                        "page {head} (inode {inode}, index {index}) was dirtied without buffers: ext4_writepage will BUG (or, since cc5095747edf, skip it and lose the data)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `create_empty_buffers()` via `folio_attach_private()`: PG_private and one
    /// reference for the buffers. Page lock held.
    fn folio_attach_buffers(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        let f = self.mem.frame(head);
        if f.flags.read_once() & pg::HAS_BUFFERS != 0 {
            return Ok(());
        }
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        f.flags.or(pg::HAS_BUFFERS);
        ctx.step(&self.ghost, "create_empty_buffers", u64::from(head));
        Ok(())
    }

    /// `do_page_mkwrite()` -> `->page_mkwrite` (`block_page_mkwrite` /
    /// `iomap_page_mkwrite`): under the page lock, check the page is still in the
    /// file, attach buffers (buffer-head flavour), mark it dirty. Returns with the
    /// page *locked* (VM_FAULT_LOCKED): writeback cannot clean it before the
    /// caller has made the PTE writable and `fault_dirty_shared_page` has run.
    /// `Ok(false)` is VM_FAULT_NOPAGE (the page left the file; unlocked).
    pub(crate) fn do_page_mkwrite(&self, ctx: &mut Ctx, head: Pfn, inode: u32) -> Res<bool> {
        self.folio_lock(ctx, head);
        if self.mem.frame(head).mapping.read_once() != inode + 1 {
            self.folio_unlock(ctx, head);
            return Ok(false);
        }
        let r = (|| {
            if self.inodes[inode as usize].flavour == FsFlavour::BufferHead {
                self.folio_attach_buffers(ctx, head)?;
            }
            self.folio_mark_dirty(ctx, head)
        })();
        if let Err(v) = r {
            self.folio_unlock(ctx, head);
            return Err(v);
        }
        ctx.step(&self.ghost, "do_page_mkwrite", u64::from(head));
        Ok(true)
    }

    /// `fault_dirty_shared_page()`: dirty again (writeback may not run before the
    /// unlock, but the PTE is writable now) and unlock the page.
    fn fault_dirty_shared_page(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        let r = self.folio_mark_dirty(ctx, head);
        self.folio_unlock(ctx, head);
        r
    }

    /// The fault handlers of a file VMA (`do_fault`, `do_wp_page`'s shared case):
    /// `do_read_fault`, `do_shared_fault`, `do_cow_fault`, `wp_page_shared`.
    pub(crate) fn do_file_fault(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
        ff: FaultFlags,
    ) -> Res<Result<(), Errno>> {
        let (inode, shared) = match vma.kind {
            VmaKind::FileShared { inode, .. } => (inode, true),
            VmaKind::FilePrivate { inode, .. } => (inode, false),
            VmaKind::AnonPrivate | VmaKind::HugetlbPrivate { .. } => {
                unreachable!("file fault on an anonymous VMA")
            }
        };
        let index = vma.file_index(addr);
        if pte.present() {
            // A shared mapping has nothing to unshare (do_wp_page returns 0).
            if !(ff.write || ff.unshare) || pte.write() || (shared && !ff.write) {
                return Ok(Ok(()));
            }
            return if shared {
                self.wp_page_shared(ctx, inode, addr, slot, idx, pte)
            } else {
                // A private mapping breaks COW into an anonymous copy.
                self.do_wp_page(ctx, mm, vma, addr, slot, idx, pte, ff)
            };
        }
        if pte.is_migration() {
            // do_swap_page() on a migration entry: wait, then retry.
            self.migration_entry_wait(ctx, slot, idx);
            return Ok(Ok(()));
        }
        if !pte.is_none() {
            // Swap entries of file pages (shmem) are not modelled.
            return Ok(Err(Errno::EFAULT));
        }
        // The folio comes back locked (VM_FAULT_LOCKED).
        let page = match self.filemap_fault(ctx, inode, index)? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let write = ff.write && !ff.unshare;
        if write && !shared {
            // do_cow_fault(): copy into an anonymous page; the cache page is only
            // read.
            let r = self.cow_fill(ctx, mm, vma, addr, slot, idx, page);
            self.folio_unlock(ctx, page);
            self.mem
                .folio_put_refs(ctx, &self.ghost, page, 1, Some(HoldKind::Get))?;
            return r;
        }
        if write {
            // do_shared_fault(): unlock, then ->page_mkwrite (which locks again)
            // before the PTE is writable.
            self.folio_unlock(ctx, page);
            if !self.do_page_mkwrite(ctx, page, inode)? {
                self.mem
                    .folio_put_refs(ctx, &self.ghost, page, 1, Some(HoldKind::Get))?;
                return Ok(Ok(()));
            }
        }
        // finish_fault(): a read fault maps read-only even in a shared writable
        // mapping, so the first store faults into ->page_mkwrite (writenotify).
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if !t.read(idx).is_none() {
            drop(g);
            self.folio_unlock(ctx, page);
            self.mem
                .folio_put_refs(ctx, &self.ghost, page, 1, Some(HoldKind::Get))?;
            return Ok(Ok(()));
        }
        self.add_rmap(page, RmapEntry::pte(mm, addr));
        t.set(idx, Pte::mk_page(page, write, write));
        // Our reference is now the mapping's.
        ctx.hold(page, self.ghost.frame(page).gen(), HoldKind::Get, -1);
        drop(g);
        if write {
            self.fault_dirty_shared_page(ctx, page)?;
        } else {
            self.folio_unlock(ctx, page);
        }
        ctx.step(
            &self.ghost,
            if write {
                "do_shared_fault: set_pte_at"
            } else {
                "do_read_fault: set_pte_at"
            },
            addr,
        );
        Ok(Ok(()))
    }

    /// `do_cow_fault()`'s copy: a new exclusive anonymous page with the file
    /// page's contents, mapped writable.
    fn cow_fill(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        slot: u32,
        idx: usize,
        src: Pfn,
    ) -> Res<Result<(), Errno>> {
        let Some(new) = self.anon_copy_of(ctx, Some(src))? else {
            return Ok(Err(Errno::ENOMEM));
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        if !t.read(idx).is_none() {
            drop(g);
            self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
            return Ok(Ok(()));
        }
        self.add_rmap(new, RmapEntry::pte(mm, addr));
        t.set(idx, Pte::mk_page(new, vma.writable(), true));
        drop(g);
        ctx.step(&self.ghost, "do_cow_fault: set_pte_at", addr);
        Ok(Ok(()))
    }

    /// `wp_page_shared()`: a write to a read-only PTE of a shared file mapping (the
    /// first store after a read fault, or after writeback cleaned it). Hold the
    /// page, call `->page_mkwrite` with the PTL dropped, then, the page still
    /// locked, make the PTE writable and dirty if it did not change
    /// (`finish_mkwrite_fault` -> `wp_page_reuse`).
    fn wp_page_shared(
        &self,
        ctx: &mut Ctx,
        inode: u32,
        addr: u64,
        slot: u32,
        idx: usize,
        pte: Pte,
    ) -> Res<Result<(), Errno>> {
        let t = &self.tables[slot as usize];
        let Some(g) = t.lock_if_same(idx, pte) else {
            return Ok(Ok(()));
        };
        let page = pte.pfn();
        self.mem.folio_ref_add(ctx, &self.ghost, page, 1)?;
        ctx.hold(page, self.ghost.frame(page).gen(), HoldKind::Get, 1);
        drop(g);
        if self.do_page_mkwrite(ctx, page, inode)? {
            // finish_mkwrite_fault(), the page still locked; if the PTE changed
            // meanwhile, VM_FAULT_NOPAGE: unlock and let the access retry.
            let g = t.ptl.lock();
            let same = t.read(idx) == pte;
            if same {
                t.set(idx, pte.with(Pte::WRITE | Pte::DIRTY));
                ctx.step(&self.ghost, "wp_page_reuse", addr);
            }
            drop(g);
            if same {
                self.fault_dirty_shared_page(ctx, page)?;
            } else {
                self.folio_unlock(ctx, page);
            }
        }
        self.mem
            .folio_put_refs(ctx, &self.ghost, page, 1, Some(HoldKind::Get))?;
        Ok(Ok(()))
    }

    /// FALLOC_FL_PUNCH_HOLE of one page: `truncate_pagecache_range` (unmap it from
    /// every mapping, then, under the page lock, drop its buffers and dirtiness
    /// and delete it from the page cache) and free the block. Writes to it
    /// before are gone; a GUP holder keeps an orphan page that belongs to no
    /// file, which its release may still dirty (harmlessly: no mapping).
    pub fn punch_hole(&self, ctx: &mut Ctx, inode: u32, index: u32) -> Res<()> {
        ctx.step(&self.ghost, "truncate_pagecache_range", u64::from(index));
        let ino = &self.inodes[inode as usize];
        let _inv = ino.invalidate_lock.write();
        if let Some(head) = self.filemap_get_folio(ctx, inode, index)? {
            self.folio_lock(ctx, head);
            let r = self.delete_from_page_cache(ctx, head, inode, index);
            self.folio_unlock(ctx, head);
            self.mem
                .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
            r?;
        }
        ino.disk.lock()[index as usize] = [0, 0];
        self.ghost.unmapped(None);
        let seq = self.ghost.tick();
        ctx.ledger.punches.push(FileWriteRec {
            seq,
            inode,
            index,
            value: 0,
            by_device: false,
        });
        Ok(())
    }

    /// `truncate_inode_folio()` with the folio locked: unmap, `folio_invalidate`
    /// (buffers go whatever their state), `folio_cancel_dirty`,
    /// `filemap_remove_folio` (the cache's reference goes).
    fn delete_from_page_cache(&self, ctx: &mut Ctx, head: Pfn, inode: u32, index: u32) -> Res<()> {
        if self.mem.frame(head).mapping.read_once() != inode + 1 {
            return Ok(());
        }
        self.try_to_unmap(ctx, head)?;
        let f = self.mem.frame(head);
        if f.flags.fetch_andnot(pg::HAS_BUFFERS | pg::DIRTY) & pg::HAS_BUFFERS != 0 {
            self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        }
        let mut cache = self.inodes[inode as usize].i_pages.lock();
        cache[index as usize] = None;
        self.set_folio_file(head, None);
        drop(cache);
        ctx.step(&self.ghost, "filemap_remove_folio", u64::from(head));
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(())
    }

    /// Records (ghost) that `value`, just written to `head`, reached the file the
    /// page belongs to at this moment, if any (a page truncated away holds no
    /// file's data). Returns that file position.
    pub(crate) fn record_file_write(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        value: u64,
        by_device: bool,
    ) -> Option<(u32, u32)> {
        let file = self.ghost.file_of(head)?;
        let seq = self.ghost.tick();
        ctx.ledger.file_wrote(FileWriteRec {
            seq,
            inode: file.0,
            index: file.1,
            value,
            by_device,
        });
        Some(file)
    }
}
