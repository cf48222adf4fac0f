//! Migration and compaction (KERNEL.md §5.6): unmap a folio's PTEs to
//! migration entries (`try_to_migrate_one`), check that nobody but the
//! migration holds it (`folio_migrate_mapping`'s expected refcount), copy,
//! and replace the entries with PTEs of the new folio
//! (`remove_migration_ptes`); on failure the entries go back to the old one.
//! An exclusive anonymous page is shared first (`folio_try_share_anon_rmap_pte`,
//! the A/B protocol of share.rs): a page that may be pinned makes the unmap
//! fail. Faults that meet a migration entry wait for the folio's lock
//! (`migration_entry_wait`); GUP-fast sees a non-present PTE and falls back.
//! THP split (thp.rs) uses the same unmap and remap with the same frames.
//!
//! Three kinds of folio move (THP migration since 4.14, "mm: thp: enable thp
//! migration in generic path"; page cache always):
//! - an anonymous base page, by compaction (with its pre-filter);
//! - a PMD-mapped anonymous THP, by `migrate_pages()` as `move_pages(2)` or
//!   `mbind` call it (compaction skips large folios): `set_pmd_migration_entry`
//!   invalidates the PMD and, from 5.19, shares the folio only if it is not
//!   maybe-pinned (`folio_try_share_anon_rmap_pmd`); faults and the slow
//!   path wait on the PMD migration entry (`pmd_migration_entry_wait`);
//!   `remove_migration_pmd` maps the new PMD-order folio;
//! - a page-cache folio, by compaction (no pre-filter: it has a mapping):
//!   `folio_migrate_mapping` freezes the refcount at `folio_expected_refs`
//!   (ours, the page cache's, PG_private's) under the xa lock, points
//!   `i_pages` at the new folio and moves PG_dirty; the buffers follow
//!   (`buffer_migrate_folio`); the old folio leaves the file.
//!
//! Simplifications, one line each:
//! - only the caller's address space is unmapped: a folio mapped by another
//!   address space (after fork, or a file mapped twice) is not migrated or split;
//! - the caller holds `mmap_lock` for read throughout (the kernel's rmap walk
//!   holds the anon_vma lock or `i_mmap_rwsem` instead);
//! - no PTE-mapped THP is migrated (the kernel migrates it whole, or splits it);
//! - no LRU: the isolation reference is a plain reference;
//! - a folio in the swap cache is not migrated: the swap cache's reference
//!   fails the expected-refcount check (the kernel moves the swap cache entry
//!   to the new folio);
//! - one pass (`migrate_pages` retries -EAGAIN up to 10 times; FOLL_LONGTERM's
//!   migration in slow.rs does retry);
//! - `migration_entry_wait` holds no reference on the folio it waits for: it
//!   may wait on a recycled frame (extra waiting, never a wrong result).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::state::mem::{pg, Order, Zone};
use crate::state::pgtable::{MigrationKind, Pte};
use crate::state::rmap::RmapEntry;
use crate::state::tlb::flush_waits_for_walkers;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What a migration (or a compaction pass over one page) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrated {
    Moved,
    /// Not a mapped anonymous base page, PMD-mapped anonymous THP or
    /// page-cache page of this address space alone.
    NotSuitable,
    /// The compaction pre-filter saw references beyond the mappings (a pin
    /// or any GUP reference), or the share step a possible pin.
    KeptPinned,
    /// An extra reference at the expected-refcount check: -EAGAIN.
    KeptReferenced,
    NoMemory,
}

/// One PTE, or PMD, replaced by a migration entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MigrationPte {
    pub mm: usize,
    pub addr: u64,
    pub slot: u32,
    pub idx: usize,
    pub page: Pfn,
    /// The PTE that was there.
    pub old: Pte,
    /// The migration entry that replaced it.
    pub entry: Pte,
    /// A PMD mapping of a whole THP.
    pub huge: bool,
}

/// What `try_to_migrate_one` did to one PTE or PMD.
enum Unmapped {
    /// Replaced by this migration entry.
    Entry(MigrationPte),
    /// It no longer maps the folio.
    Gone,
    /// The page may be pinned: the PTE is restored.
    MaybePinned,
}

impl<B: Backend> World<B> {
    /// `try_to_migrate()` of folio `head` (locked, referenced by the caller)
    /// over its mappings in `mm`: clear and flush each PTE or PMD, share an
    /// exclusive page (backing off if it may be pinned), install a migration
    /// entry that remembers writability and exclusivity, drop the mapping's
    /// reference. `None`: a page could not be shared; everything done so far
    /// was restored.
    pub(crate) fn try_to_migrate(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        head: Pfn,
    ) -> Res<Option<Vec<MigrationPte>>> {
        let mappings = self.mem.frame(head).rmap.lock().entries();
        let mut done = Vec::new();
        for e in mappings.into_iter().filter(|e| e.mm as usize == mm) {
            let found = if e.huge {
                self.locked_pmd_slot(mm, e.addr)
            } else {
                self.locked_pte_slot(mm, e.addr)
            };
            let Some((slot, idx)) = found else {
                continue;
            };
            let span = if e.huge {
                1u64 << self.cfg.shift(2)
            } else {
                PAGE_SIZE
            };
            // try_to_migrate_one(): secondary MMUs (a device mapping the page
            // through an MMU notifier) are invalidated around the unmap.
            self.mmu_notifier_invalidate_range_start(ctx, mm, e.addr, e.addr + span);
            let r = if e.huge {
                self.set_pmd_migration_entry(ctx, head, e, slot, idx)
            } else {
                self.migrate_one_pte(ctx, head, e, slot, idx)
            };
            self.mmu_notifier_invalidate_range_end(ctx);
            match r? {
                Unmapped::Entry(rec) => done.push(rec),
                Unmapped::Gone => {}
                Unmapped::MaybePinned => {
                    // Restored; undo the others.
                    self.remove_migration_ptes(ctx, &done, |p| p)?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(done))
    }

    /// One PTE of `try_to_migrate_one`, under its PTL.
    fn migrate_one_pte(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        e: RmapEntry,
        slot: u32,
        idx: usize,
    ) -> Res<Unmapped> {
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() || self.mem.page_folio(pte.pfn()) != head {
            return Ok(Unmapped::Gone);
        }
        let page = pte.pfn();
        let exclusive = self.page_anon_exclusive(page);
        let old = self.ptep_clear_flush(ctx, t, idx, "try_to_migrate_one: ptep_clear_flush");
        if exclusive && !self.folio_try_share_anon_rmap_pte(ctx, page) {
            t.set(idx, old);
            drop(g);
            ctx.step(
                &self.ghost,
                "try_to_migrate_one: maybe pinned, restore",
                e.addr,
            );
            return Ok(Unmapped::MaybePinned);
        }
        let kind = MigrationKind::of(old, exclusive);
        if old.dirty() {
            // The PTE's dirty bit goes to the folio: folio_mark_dirty(), the
            // filesystem's for a page-cache folio.
            if self.folio_file(head).is_some() {
                self.folio_mark_dirty(ctx, head)?;
            } else {
                self.mem.frame(head).flags.or(pg::DIRTY);
            }
        }
        let entry = Pte::mk_migration(page, kind);
        t.set(idx, entry);
        self.remove_rmap(page, e);
        drop(g);
        ctx.step(&self.ghost, "try_to_migrate_one: migration entry", e.addr);
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(Unmapped::Entry(MigrationPte {
            mm: e.mm as usize,
            addr: e.addr,
            slot,
            idx,
            page,
            old,
            entry,
            huge: false,
        }))
    }

    /// `set_pmd_migration_entry()`, `try_to_migrate_one` on a PMD mapping of
    /// the THP `head`, under the PMD lock: `pmdp_invalidate` and the flush
    /// (under IPI it waits for GUP-fast), then from 5.19 (6c287605fd56)
    /// `folio_try_share_anon_rmap_pmd` on an exclusive folio, restoring the
    /// PMD if it may be pinned; the PMD's dirty bit to the folio; a PMD
    /// migration entry that remembers writability and exclusivity; the
    /// mapping's reference dropped.
    fn set_pmd_migration_entry(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        e: RmapEntry,
        slot: u32,
        idx: usize,
    ) -> Res<Unmapped> {
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pmd = t.read(idx);
        if !self.is_thp_leaf(pmd) || pmd.pfn() != head {
            return Ok(Unmapped::Gone);
        }
        let exclusive = self.page_anon_exclusive(head);
        let old = t.get_and_clear(idx, self.cfg.arch);
        ctx.step(
            &self.ghost,
            "set_pmd_migration_entry: pmdp_invalidate",
            e.addr,
        );
        if flush_waits_for_walkers(self.cfg.arch) {
            self.walkers
                .sync(ctx, &self.ghost, "flush_pmd_tlb_range: IPI");
        }
        if exclusive && !self.folio_try_share_anon_rmap_pmd(ctx, head) {
            t.set(idx, old);
            drop(g);
            ctx.step(
                &self.ghost,
                "set_pmd_migration_entry: maybe pinned, restore",
                e.addr,
            );
            return Ok(Unmapped::MaybePinned);
        }
        let kind = MigrationKind::of(old, exclusive);
        if old.dirty() {
            self.mem.frame(head).flags.or(pg::DIRTY);
        }
        let entry = Pte::mk_pmd_migration(head, kind);
        t.set(idx, entry);
        self.remove_rmap(head, e);
        drop(g);
        ctx.step(
            &self.ghost,
            "set_pmd_migration_entry: migration entry",
            e.addr,
        );
        self.mem.folio_put_refs(ctx, &self.ghost, head, 1, None)?;
        Ok(Unmapped::Entry(MigrationPte {
            mm: e.mm as usize,
            addr: e.addr,
            slot,
            idx,
            page: head,
            old,
            entry,
            huge: true,
        }))
    }

    /// Whether every mapping of folio `head` is in address space `mm` (the
    /// only address space migration and split unmap here).
    pub(crate) fn folio_mapped_only_by(&self, head: Pfn, mm: usize) -> bool {
        let rmap = self.mem.frame(head).rmap.lock();
        rmap.entries().iter().all(|e| e.mm as usize == mm)
    }

    /// `remove_migration_ptes()`: each migration entry still in place becomes
    /// a PTE of `new_of(page)` again (`remove_migration_pte`), or a PMD of the
    /// new THP (`remove_migration_pmd`), with the mapping's reference, the
    /// remembered writability, the dirty bit from 6.1 (2e3468778dbe; clean
    /// before), and PageAnonExclusive if the entry was exclusive. With the same
    /// frame and a clean PTE the bits are the same as before: a GUP-fast PTE
    /// recheck cannot tell (c24d37322548's race).
    pub(crate) fn remove_migration_ptes(
        &self,
        ctx: &mut Ctx,
        recs: &[MigrationPte],
        new_of: impl Fn(Pfn) -> Pfn,
    ) -> Res<()> {
        for r in recs {
            let t = &self.tables[r.slot as usize];
            let g = t.ptl.lock();
            if t.read(r.idx) != r.entry {
                continue;
            }
            let new = new_of(r.page);
            let head = self.mem.page_folio(new);
            let kind = r.entry.migration_kind();
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            let anon = self.mem.frame(head).flags.read_once() & pg::ANON != 0;
            let exclusive = anon && kind != Some(MigrationKind::Readable);
            let write = kind == Some(MigrationKind::Writable);
            let dirty = self.cfg.p().migration_keeps_dirty && r.old.dirty();
            if r.huge {
                if exclusive {
                    self.set_folio_exclusive(head, true);
                }
                self.add_rmap(head, RmapEntry::huge(r.mm, r.addr));
                t.set(r.idx, Pte::mk_leaf(head, write, dirty));
                drop(g);
                ctx.step(&self.ghost, "remove_migration_pmd", r.addr);
                continue;
            }
            if exclusive {
                self.mem.frame(new).flags.or(pg::ANON_EXCLUSIVE);
            }
            self.add_rmap(new, RmapEntry::pte(r.mm, r.addr));
            t.set(r.idx, Pte::mk_page(new, write, dirty));
            drop(g);
            ctx.step(&self.ghost, "remove_migration_pte", r.addr);
        }
        Ok(())
    }

    /// `migration_entry_wait()`: a fault on a migration entry sleeps until the
    /// folio is unlocked, then the access is retried.
    pub(crate) fn migration_entry_wait(&self, ctx: &mut Ctx, slot: u32, idx: usize) {
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let e = t.read(idx);
        drop(g);
        if e.is_migration() {
            ctx.step(&self.ghost, "migration_entry_wait", u64::from(e.pfn()));
            self.folio_wait_unlocked(self.mem.page_folio(e.pfn()));
        }
    }

    /// `pmd_migration_entry_wait()`, from `__handle_mm_fault` on a PMD that is
    /// a migration entry (the caller holds `mmap_lock`): under the PMD lock,
    /// if it still is one, sleep until the THP is unlocked. Whether it was one.
    pub(crate) fn pmd_migration_entry_wait(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> bool {
        let Some((slot, idx)) = self.locked_pmd_slot(mm, addr) else {
            return false;
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let e = t.read(idx);
        drop(g);
        if !e.is_pmd_migration() {
            return false;
        }
        ctx.step(&self.ghost, "pmd_migration_entry_wait", u64::from(e.pfn()));
        self.folio_wait_unlocked(self.mem.page_folio(e.pfn()));
        true
    }

    /// What the page at `addr` in `mm` is migrated as: compaction of an
    /// anonymous base page (`isolate_migratepages_block` then
    /// `migrate_pages`), `migrate_pages()` of a PMD-mapped anonymous THP
    /// (compaction skips large folios; `move_pages(2)` and `mbind` do not),
    /// or compaction of a page-cache page, to a frame in any zone.
    pub fn compact_page(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Migrated> {
        ctx.step(&self.ghost, "isolate_migratepages_block", addr);
        let vmas = self.mms[mm].mmap_lock.read();
        let r = match World::<B>::find_vma(&vmas, addr) {
            Some(v) if v.is_anon() => match self.migrate_mapped_thp(ctx, mm, addr)? {
                Some(r) => Ok(r),
                None => self.migrate_mapped_page(ctx, mm, addr, true, |_| true),
            },
            // A file VMA maps page cache, or anonymous COW copies of it.
            Some(v) if v.hugetlb().is_none() => {
                match self.migrate_mapped_file_page(ctx, mm, addr)? {
                    Some(r) => Ok(r),
                    None => self.migrate_mapped_page(ctx, mm, addr, true, |_| true),
                }
            }
            _ => Ok(Migrated::NotSuitable),
        };
        drop(vmas);
        r
    }

    /// Migrates the anonymous base page mapped at `addr` in `mm` (the caller
    /// holds `mmap_lock`) to a new frame in a zone `accept` allows. With
    /// `prefilter`, compaction's check first skips a page with references
    /// beyond its mappings ("Migration will fail if an anonymous page is
    /// pinned").
    pub(crate) fn migrate_mapped_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        prefilter: bool,
        accept: impl Fn(Zone) -> bool,
    ) -> Res<Migrated> {
        let Some((slot, idx)) = self.locked_pte_slot(mm, addr) else {
            return Ok(Migrated::NotSuitable);
        };
        // Isolation: our reference, taken under the PTL.
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() {
            return Ok(Migrated::NotSuitable);
        }
        let old = pte.pfn();
        let head = self.mem.page_folio(old);
        let f = self.mem.frame(head);
        if head != old
            || self.mem.folio_order(head) != 0
            || f.flags.read_once() & pg::ANON == 0
            || !self.folio_mapped_only_by(head, mm)
        {
            return Ok(Migrated::NotSuitable);
        }
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        let r = self.migrate_isolated(ctx, mm, head, prefilter, accept);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        r
    }

    /// `migrate_pages()` of the anonymous THP mapped by the PMD covering
    /// `addr` in `mm` (the caller holds `mmap_lock`), isolated with a
    /// reference taken under the PMD lock. `None`: no THP leaf maps `addr`.
    fn migrate_mapped_thp(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Option<Migrated>> {
        let Some((slot, idx)) = self.locked_pmd_slot(mm, addr) else {
            return Ok(None);
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pmd = t.read(idx);
        if !self.is_thp_leaf(pmd) {
            return Ok(None);
        }
        let head = pmd.pfn();
        if self.mem.frame(head).flags.read_once() & pg::ANON == 0
            || !self.folio_mapped_only_by(head, mm)
        {
            return Ok(Some(Migrated::NotSuitable));
        }
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        ctx.step(&self.ghost, "migrate_pages: thp", addr);
        let r = self.migrate_isolated(ctx, mm, head, false, |_| true);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        r.map(Some)
    }

    /// `migrate_folio_unmap` + `move_to_new_folio` + `remove_migration_ptes`
    /// for an isolated (referenced) anonymous folio, base or PMD-order.
    fn migrate_isolated(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        old: Pfn,
        prefilter: bool,
        accept: impl Fn(Zone) -> bool,
    ) -> Res<Migrated> {
        let nr = self.mem.folio_nr_pages(old);
        if prefilter && self.mem.folio_ref_count(old) - 1 > self.mem.frame(old).mapcount.read_once()
        {
            ctx.step(
                &self.ghost,
                "compaction: extra references, skip",
                u64::from(old),
            );
            return Ok(Migrated::KeptPinned);
        }
        let order = if nr == 1 { Order::Base } else { Order::Pmd };
        let Some(new) =
            self.mem
                .alloc_folio_where(ctx, &self.ghost, order, pg::ANON | pg::LOCKED, accept)
        else {
            return Ok(Migrated::NoMemory);
        };
        self.folio_lock(ctx, old);
        // folio_migrate_mapping(): an anonymous folio without a mapping
        // expects the migration's own reference alone (a THP's too).
        let r = match self.try_to_migrate(ctx, mm, old)? {
            None => Migrated::KeptPinned,
            Some(recs)
                if self.mem.folio_ref_count(old) != 1
                    && !self.cfg.has(Mutation::MigrationIgnoresRefcount) =>
            {
                ctx.step(
                    &self.ghost,
                    "folio_migrate_mapping: -EAGAIN",
                    u64::from(old),
                );
                self.remove_migration_ptes(ctx, &recs, |p| p)?;
                Migrated::KeptReferenced
            }
            Some(recs) => {
                // folio_copy(): every subpage; folio_migrate_flags(): PG_dirty.
                for i in 0..nr {
                    self.copy_highpage(new + i, old + i);
                }
                let dirty = self.mem.frame(old).flags.read_once() & pg::DIRTY;
                self.mem.frame(new).flags.or(dirty);
                // folio_mark_uptodate(): the copy before the PTEs that publish it.
                B::smp_wmb();
                ctx.step(&self.ghost, "migrate_folio: copied", u64::from(new));
                self.remove_migration_ptes(ctx, &recs, |p| new + (p - old))?;
                Migrated::Moved
            }
        };
        self.folio_unlock(ctx, new);
        self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
        self.folio_unlock(ctx, old);
        Ok(r)
    }

    /// Compaction of the page-cache page mapped at `addr` in `mm` (the caller
    /// holds `mmap_lock`), isolated with a reference taken under the PTL. The
    /// anonymous pre-filter does not apply to a folio with a mapping.
    /// `None`: an anonymous page (a private mapping's COW copy) is mapped there.
    fn migrate_mapped_file_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Res<Option<Migrated>> {
        let Some((slot, idx)) = self.locked_pte_slot(mm, addr) else {
            return Ok(Some(Migrated::NotSuitable));
        };
        let t = &self.tables[slot as usize];
        let g = t.ptl.lock();
        let pte = t.read(idx);
        if !pte.present() || pte.special() {
            return Ok(Some(Migrated::NotSuitable));
        }
        let head = self.mem.page_folio(pte.pfn());
        let Some((inode, index)) = self.folio_file(head) else {
            return Ok(None);
        };
        if !self.folio_mapped_only_by(head, mm) {
            return Ok(Some(Migrated::NotSuitable));
        }
        self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
        ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Get, 1);
        drop(g);
        let r = self.migrate_isolated_file(ctx, mm, head, inode, index);
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Get))?;
        r.map(Some)
    }

    /// `migrate_folio_unmap` + `move_to_new_folio` (`buffer_migrate_folio` or
    /// `filemap_migrate_folio`) + `remove_migration_ptes` for an isolated
    /// page-cache folio.
    fn migrate_isolated_file(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        old: Pfn,
        inode: u32,
        index: u32,
    ) -> Res<Migrated> {
        let Some(new) = self
            .mem
            .alloc_folio(ctx, &self.ghost, Order::Base, pg::LOCKED)
        else {
            return Ok(Migrated::NoMemory);
        };
        self.folio_lock(ctx, old);
        let r = (|| {
            if self.mem.frame(old).mapping.read_once() != inode + 1 {
                // Truncated since the PTE was read.
                return Ok(Migrated::NotSuitable);
            }
            let Some(recs) = self.try_to_migrate(ctx, mm, old)? else {
                return Ok(Migrated::KeptPinned);
            };
            if !self.folio_migrate_mapping(ctx, old, new, inode, index)? {
                ctx.step(
                    &self.ghost,
                    "folio_migrate_mapping: -EAGAIN",
                    u64::from(old),
                );
                self.remove_migration_ptes(ctx, &recs, |p| p)?;
                return Ok(Migrated::KeptReferenced);
            }
            // The content and its ghost history move (copy_highpage); the
            // ghost's writeback count stays with the frame: only a GUP holder
            // compares it, and the freeze refused every holder.
            self.copy_highpage(new, old);
            // move_to_new_folio(): "src->mapping must be cleared before src
            // is freed"; the ghost's file position goes with it, and the
            // ghost notes why the page left (a pin on it is still judged).
            self.ghost.migrated_out_of_file(old);
            self.set_folio_file(old, None);
            B::smp_wmb();
            ctx.step(&self.ghost, "migrate_folio: copied", u64::from(new));
            self.remove_migration_ptes(ctx, &recs, |_| new)?;
            Ok(Migrated::Moved)
        })();
        self.folio_unlock(ctx, new);
        self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
        self.folio_unlock(ctx, old);
        r
    }

    /// `folio_migrate_mapping()` of page-cache folio `old` (locked, unmapped)
    /// to `new` (locked): under the xa lock, freeze the refcount at
    /// `folio_expected_refs()` (the migration's reference, the page cache's
    /// one per page, one for PG_private), which any GUP reference makes fail
    /// (-EAGAIN; a frozen count also refuses GUP-fast's grab); then the cache's
    /// reference, index and mapping on `new`, PG_dirty moved (cleared on
    /// `old`, set on `new`), `i_pages` pointing at `new`, and `old` unfrozen
    /// without the cache's reference. Then, outside the xa lock, the buffers
    /// move with their reference (`buffer_migrate_folio`:
    /// `folio_attach_private(dst, folio_detach_private(src))`).
    fn folio_migrate_mapping(
        &self,
        ctx: &mut Ctx,
        old: Pfn,
        new: Pfn,
        inode: u32,
        index: u32,
    ) -> Res<bool> {
        let f = self.mem.frame(old);
        let private = f.flags.read_once() & pg::HAS_BUFFERS != 0;
        let expected = 1 + 1 + i32::from(private);
        // The mutation drops the test: no freeze, the cache's reference is
        // dropped as a plain put once the entry points at the new folio.
        let check = !self.cfg.has(Mutation::MigrationIgnoresRefcount);
        let mut cache = self.inodes[inode as usize].i_pages.lock();
        if check {
            let raw = f.refcount.read_once();
            if self.mem.counter.norm(raw) != expected || f.refcount.cmpxchg(raw, 0) != raw {
                return Ok(false);
            }
            ctx.step(
                &self.ghost,
                "folio_migrate_mapping: folio_ref_freeze",
                u64::from(old),
            );
        }
        self.mem.folio_ref_add(ctx, &self.ghost, new, 1)?;
        self.set_folio_file(new, Some((inode, index)));
        if f.flags.fetch_andnot(pg::DIRTY) & pg::DIRTY != 0 {
            self.mem.frame(new).flags.or(pg::DIRTY);
        }
        cache[index as usize] = Some(new);
        if check {
            // folio_ref_unfreeze(folio, expected_count - nr).
            f.refcount.store_release(expected - 1);
        }
        drop(cache);
        if !check {
            self.mem.folio_put_refs(ctx, &self.ghost, old, 1, None)?;
        }
        ctx.step(
            &self.ghost,
            "folio_migrate_mapping: xas_store",
            u64::from(new),
        );
        if private {
            f.flags.andnot(pg::HAS_BUFFERS);
            self.mem.folio_put_refs(ctx, &self.ghost, old, 1, None)?;
            self.mem.folio_ref_add(ctx, &self.ghost, new, 1)?;
            self.mem.frame(new).flags.or(pg::HAS_BUFFERS);
            ctx.step(&self.ghost, "buffer_migrate_folio", u64::from(new));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::Unmapped;
    use crate::backend::Std;
    use crate::config::{Arch, WorldConfig};
    use crate::flags::{Flag, Foll};
    use crate::ghost::Ctx;
    use crate::state::layout::{Layout, Populate, Region};
    use crate::state::mem::{pg, Order};
    use crate::state::rmap::RmapEntry;
    use crate::state::world::World;
    use crate::types::PAGE_SIZE;

    /// A fault and a GUP call on a PMD migration entry wait for the
    /// migration (`pmd_migration_entry_wait`; GUP-fast sees the entry not
    /// present and falls back to the slow path, whose fault waits), then see
    /// the new THP. Real threads: the migration finishes only after both
    /// have had ample time to give up, had they not waited.
    #[test]
    fn a_fault_on_a_pmd_migration_entry_waits_for_the_new_thp() {
        let cfg = WorldConfig {
            fanout_bits: 2,
            nr_frames: 48,
            nr_tables: 8,
            nr_cpus: 4,
            trace: false,
            ..WorldConfig::small(Arch::Ipi)
        };
        let layout = Layout {
            spare_pmd_folios: 1,
            ..Layout::one(vec![Region::anon(0, 4, Populate::Thp)])
        };
        let w = World::<Std>::build(cfg, &layout).unwrap();
        let mut c = Ctx::new(0, 1, false);
        let v = w.user_access(&mut c, 0, PAGE_SIZE, true).unwrap().unwrap();
        let old = w.resolve(0, 0).unwrap();
        // migrate_isolated(), by hand: isolate, lock, unmap to a PMD entry.
        w.mem.folio_ref_add(&c, &w.ghost, old, 1).unwrap();
        let new = w
            .mem
            .alloc_folio(&mut c, &w.ghost, Order::Pmd, pg::ANON | pg::LOCKED)
            .unwrap();
        w.folio_lock(&mut c, old);
        let recs = w.try_to_migrate(&mut c, 0, old).unwrap().unwrap();
        assert!(recs.len() == 1 && recs[0].huge && recs[0].entry.is_pmd_migration());
        let (fault, pin) = std::thread::scope(|s| {
            let fault = s.spawn(|| {
                let mut c = Ctx::new(1, 2, false);
                let r = w.user_access(&mut c, 0, PAGE_SIZE, false).unwrap();
                (r, c.ledger)
            });
            let pin = s.spawn(|| {
                let mut c = Ctx::new(2, 3, false);
                let mut pages = Vec::new();
                let foll = Foll::of(&[Flag::Write]);
                let n = w
                    .pin_user_pages_fast(&mut c, PAGE_SIZE, 1, foll, Some(&mut pages))
                    .unwrap();
                (n, pages, c)
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!fault.is_finished() && !pin.is_finished(), "both wait");
            for i in 0..4 {
                w.copy_highpage(new + i, old + i);
            }
            w.remove_migration_ptes(&mut c, &recs, |p| new + (p - old))
                .unwrap();
            w.folio_unlock(&mut c, new);
            w.mem
                .folio_put_refs(&mut c, &w.ghost, new, 1, None)
                .unwrap();
            w.folio_unlock(&mut c, old);
            w.mem
                .folio_put_refs(&mut c, &w.ghost, old, 1, None)
                .unwrap();
            (fault.join().unwrap(), pin.join().unwrap())
        });
        assert_eq!(fault.0, Ok(v), "the fault read the new THP");
        assert_eq!(pin.0, 1);
        assert_eq!(pin.1, vec![new + 1], "the slow path pinned the new THP");
        assert_eq!(w.resolve(0, PAGE_SIZE), Some(new + 1));
        let mut pc = pin.2;
        w.unpin_user_pages(&mut pc, &pin.1).unwrap();
        c.ledger.merge(fault.1);
        c.ledger.merge(pc.ledger);
        w.check_quiescent(&c.ledger).unwrap();
    }

    /// `try_to_migrate_one()` rereads the PTE under its lock: an rmap entry
    /// that went stale (the address now maps another folio, or nothing, or
    /// the zero page) is skipped, and the PTE there is left alone.
    #[test]
    fn a_stale_rmap_entry_leaves_what_the_pte_maps_now() {
        let cfg = WorldConfig {
            nr_frames: 16,
            nr_tables: 10,
            trace: false,
            ..WorldConfig::small(Arch::Ipi)
        };
        let w = World::<Std>::build(
            cfg,
            &Layout::one(vec![
                Region::anon(0, 2, Populate::Anon),
                Region::anon(2, 1, Populate::ZeroPage),
            ]),
        )
        .unwrap();
        let mut c = Ctx::new(0, 1, false);
        let a = w.resolve(0, 0).unwrap();
        for addr in [PAGE_SIZE, 2 * PAGE_SIZE] {
            let (slot, idx) = w.locked_pte_slot(0, addr).unwrap();
            let before = w.tables[slot as usize].read(idx);
            let r = w
                .migrate_one_pte(&mut c, a, RmapEntry::pte(0, addr), slot, idx)
                .unwrap();
            assert!(matches!(r, Unmapped::Gone), "{addr:#x}");
            assert_eq!(w.tables[slot as usize].read(idx), before, "{addr:#x}");
        }
        w.check_quiescent(&c.ledger).unwrap();
    }
}
