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
//! Simplifications, one line each:
//! - only the caller's address space is unmapped: a folio mapped by another
//!   address space (after fork) is not migrated or split;
//! - anonymous base folios only for migration (no page cache, no THP
//!   migration), and the caller holds `mmap_lock` for read throughout;
//! - no LRU: the isolation reference is a plain reference;
//! - a folio in the swap cache is not migrated: the swap cache's reference
//!   fails the expected-refcount check (the kernel moves the swap cache entry
//!   to the new folio);
//! - compaction makes one pass (`migrate_pages` retries -EAGAIN up to 10
//!   times; FOLL_LONGTERM's migration in slow.rs does retry);
//! - `migration_entry_wait` holds no reference on the folio it waits for: it
//!   may wait on a recycled frame (extra waiting, never a wrong result).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::preset::ReuseRule;
use crate::state::mem::{pg, Order, Zone};
use crate::state::pgtable::{MigrationKind, Pte};
use crate::state::rmap::RmapEntry;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// What a migration (or a compaction pass over one page) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrated {
    Moved,
    /// Not a mapped anonymous base page of this address space alone.
    NotSuitable,
    /// The compaction pre-filter saw references beyond the mappings (a pin
    /// or any GUP reference), or the share step a possible pin.
    KeptPinned,
    /// An extra reference at the expected-refcount check: -EAGAIN.
    KeptReferenced,
    NoMemory,
}

/// One PTE replaced by a migration entry.
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
}

/// What `try_to_migrate_one` did to one PTE.
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
    /// over its PTE mappings in `mm`: clear and flush each PTE, share an
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
        for e in mappings
            .into_iter()
            .filter(|e| !e.huge && e.mm as usize == mm)
        {
            let Some((slot, idx)) = self.locked_pte_slot(mm, e.addr) else {
                continue;
            };
            // try_to_migrate_one(): secondary MMUs (a device mapping the page
            // through an MMU notifier) are invalidated around the unmap.
            self.mmu_notifier_invalidate_range_start(ctx, mm, e.addr, e.addr + PAGE_SIZE);
            let r = self.migrate_one_pte(ctx, head, e, slot, idx);
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
        // PageAnonExclusive exists from 5.19 (6c287605fd56).
        let exclusive = self.cfg.p().reuse == ReuseRule::AnonExclusive
            && self.mem.frame(page).flags.read_once() & pg::ANON_EXCLUSIVE != 0;
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
        let kind = if old.write() {
            MigrationKind::Writable
        } else if exclusive {
            MigrationKind::ReadableExclusive
        } else {
            MigrationKind::Readable
        };
        if old.dirty() {
            // The PTE's dirty bit goes to the folio.
            self.mem.frame(head).flags.or(pg::DIRTY);
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
        }))
    }

    /// Whether every mapping of folio `head` is in address space `mm` (the
    /// only address space migration and split unmap here).
    pub(crate) fn folio_mapped_only_by(&self, head: Pfn, mm: usize) -> bool {
        let rmap = self.mem.frame(head).rmap.lock();
        rmap.entries().iter().all(|e| e.mm as usize == mm)
    }

    /// `remove_migration_ptes()`: each migration entry still in place becomes
    /// a PTE of `new_of(page)` again, with the mapping's reference, the
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
            let kind = r.entry.migration_kind();
            self.mem
                .folio_ref_add(ctx, &self.ghost, self.mem.page_folio(new), 1)?;
            if kind != Some(MigrationKind::Readable) {
                self.mem.frame(new).flags.or(pg::ANON_EXCLUSIVE);
            }
            self.add_rmap(new, RmapEntry::pte(r.mm, r.addr));
            let write = kind == Some(MigrationKind::Writable);
            let dirty = self.cfg.p().migration_keeps_dirty && r.old.dirty();
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

    /// Compaction of the anonymous page mapped at `addr` in `mm`
    /// (`isolate_migratepages_block` then `migrate_pages`), to a frame of a
    /// zone `accept` allows.
    pub fn compact_page(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Migrated> {
        ctx.step(&self.ghost, "isolate_migratepages_block", addr);
        let vmas = self.mms[mm].mmap_lock.read();
        if World::<B>::find_vma(&vmas, addr).is_none_or(|v| !v.is_anon()) {
            return Ok(Migrated::NotSuitable);
        }
        let r = self.migrate_mapped_page(ctx, mm, addr, true, |_| true);
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

    /// `migrate_folio_unmap` + `move_to_new_folio` + `remove_migration_ptes`
    /// for an isolated (referenced) anonymous base folio.
    fn migrate_isolated(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        old: Pfn,
        prefilter: bool,
        accept: impl Fn(Zone) -> bool,
    ) -> Res<Migrated> {
        if prefilter && self.mem.folio_ref_count(old) - 1 > self.mem.frame(old).mapcount.read_once()
        {
            ctx.step(
                &self.ghost,
                "compaction: extra references, skip",
                u64::from(old),
            );
            return Ok(Migrated::KeptPinned);
        }
        let Some(new) = self.mem.alloc_folio_where(
            ctx,
            &self.ghost,
            Order::Base,
            pg::ANON | pg::LOCKED,
            accept,
        ) else {
            return Ok(Migrated::NoMemory);
        };
        self.folio_lock(ctx, old);
        let r = match self.try_to_migrate(ctx, mm, old)? {
            None => Migrated::KeptPinned,
            // folio_migrate_mapping(): an anonymous folio without a mapping
            // expects the migration's own reference alone.
            Some(recs) if self.mem.folio_ref_count(old) != 1 => {
                ctx.step(
                    &self.ghost,
                    "folio_migrate_mapping: -EAGAIN",
                    u64::from(old),
                );
                self.remove_migration_ptes(ctx, &recs, |p| p)?;
                Migrated::KeptReferenced
            }
            Some(recs) => {
                self.copy_highpage(new, old);
                let dirty = self.mem.frame(old).flags.read_once() & pg::DIRTY;
                self.mem.frame(new).flags.or(dirty);
                // folio_mark_uptodate(): the copy before the PTEs that publish it.
                B::smp_wmb();
                ctx.step(&self.ghost, "migrate_folio: copied", u64::from(new));
                self.remove_migration_ptes(ctx, &recs, |_| new)?;
                Migrated::Moved
            }
        };
        self.folio_unlock(ctx, new);
        self.mem.folio_put_refs(ctx, &self.ghost, new, 1, None)?;
        self.folio_unlock(ctx, old);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::Unmapped;
    use crate::backend::Std;
    use crate::config::{Arch, WorldConfig};
    use crate::ghost::Ctx;
    use crate::state::layout::{Layout, Populate, Region};
    use crate::state::rmap::RmapEntry;
    use crate::state::world::World;
    use crate::types::PAGE_SIZE;

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
