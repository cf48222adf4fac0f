//! The lockless page-table walk that GUP-fast is built on (`gup_fast_pgd_range`
//! down to `gup_fast_pte_range`), and a reader that uses it: look a page up, take
//! a speculative reference, recheck, read the page, drop the reference.
//!
//! Why it is safe without mmap_lock or PTL (mm/gup.c, comment above GUP-fast):
//! 1. page-table pages cannot be freed under the walker: it runs with interrupts
//!    off, and a freer waits for it (IPI flush, or RCU grace period; tlb.rs);
//! 2. each entry is read once (READ_ONCE) and the next level is derived from that
//!    snapshot, never from a second read (`pmd_offset_lockless`);
//! 3. data pages are *not* protected under RCU table freeing: the walker takes a
//!    speculative reference that never raises a zero count (`folio_try_get`), then
//!    rechecks that the entry still maps the page (c24d37322548 also rechecks the
//!    folio). Everyone racing with it clears the entry first, then inspects the
//!    refcount.

use crate::backend::Backend;
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind, Stamp};
use crate::invariant::{Invariant, Res};
use crate::state::pgtable::{level_name, Pte};
use crate::state::tlb::Walkers;
use crate::state::world::World;
use crate::types::Pfn;

/// A leaf entry found by a lockless walk, with where it was found.
#[derive(Clone, Copy, Debug)]
pub struct LeafSnapshot {
    /// The entry value as read (once).
    pub pte: Pte,
    /// 1 for a PTE, 2 for a PMD leaf, 3 for a PUD leaf.
    pub level: u32,
    /// Table slot and index of the entry, for the recheck.
    pub slot: u32,
    pub idx: usize,
    /// Generation of the table when it was reached.
    pub stamp: Stamp,
    /// The page `addr` falls in (a subpage of a huge leaf) and its generation when
    /// the entry was read (meaningless for non-present or special entries).
    pub page: Pfn,
    pub page_stamp: Stamp,
    /// The PMD entry value the PTE table was reached through (for the PMD recheck
    /// against THP collapse, 70cbc3cc78a9) and where it lives.
    pub pmd: Option<(u32, usize, Pte, Stamp)>,
}

/// What a lockless peek saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Nothing mapped, not accessible, or a special mapping.
    NotMapped,
    /// The speculative reference failed or the recheck saw a change: back off.
    BackedOff,
    /// The page was mapped and read under a reference: (pfn, value of word 0).
    Read(Pfn, u64),
}

/// A walker that panics inside its walk (a `model crash` on real threads)
/// announces interrupts back on, so the crash is reported instead of hanging
/// every later TLB flush. loom and shuttle end the execution at the panic.
struct IrqsOff<'a, B: Backend> {
    walkers: &'a Walkers<B>,
    cpu: usize,
    seq: u32,
}

impl<B: Backend> Drop for IrqsOff<'_, B> {
    fn drop(&mut self) {
        if !B::MODEL_CHECKED && std::thread::panicking() {
            self.walkers.irq_restore_after_crash(self.cpu, self.seq);
        }
    }
}

impl<B: Backend> World<B> {
    /// Walks `mm`'s tables for `addr` without locks. The caller has interrupts off
    /// (or, under a mutation, does not). Every table access is checked against the
    /// table's generation: a walk through a freed table is a use after free.
    pub fn walk_lockless(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Option<LeafSnapshot>> {
        let mut slot = self.mms[mm].pgd;
        let mut stamp = self.ghost.table(slot);
        let mut pmd = None;
        for level in (1..=4).rev() {
            let t = &self.tables[slot as usize];
            let idx = self.cfg.index(addr, level);
            let e = t.read(idx);
            ctx.step(&self.ghost, walk_step(level), addr);
            self.ghost.check_table(ctx, slot, stamp)?;
            if !e.present() {
                return Ok(None);
            }
            if level == 1 || e.leaf() {
                let sub = (addr >> crate::types::PAGE_SHIFT)
                    & ((1u64 << (self.cfg.fanout_bits * (level - 1))) - 1);
                let page = e.pfn() + sub as Pfn;
                let page_stamp = self.ghost.frame(page.min(self.cfg.nr_frames as Pfn - 1));
                return Ok(Some(LeafSnapshot {
                    pte: e,
                    level,
                    slot,
                    idx,
                    stamp,
                    page,
                    page_stamp,
                    pmd,
                }));
            }
            if level == 2 {
                pmd = Some((slot, idx, e, stamp));
            }
            slot = e.table_slot();
            stamp = self.ghost.table(slot);
        }
        unreachable!("a walk ends at level 1")
    }

    /// Re-reads the entry a snapshot came from (the GUP-fast recheck), checking the
    /// table is still the one reached.
    pub fn reread(
        &self,
        ctx: &mut Ctx,
        slot: u32,
        idx: usize,
        stamp: Stamp,
        step: &'static str,
    ) -> Res<Pte> {
        let e = self.tables[slot as usize].read(idx);
        ctx.step(&self.ghost, step, u64::from(slot));
        self.ghost.check_table(ctx, slot, stamp)?;
        Ok(e)
    }

    /// A GUP-fast-style reader: with interrupts off, walk to `addr`, take a
    /// speculative reference on the mapped folio, recheck the entries, read the
    /// page, drop the reference. The mutations drop the interrupt-off section
    /// (`walker_skips_registration`) or use a plain `get_page` without recheck
    /// (`walker_plain_get`).
    pub fn lockless_peek(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Peek> {
        self.with_irqs_off(ctx, |w, ctx| w.peek_locked_out(ctx, mm, addr))
    }

    /// Runs a lockless walk between `local_irq_save` and `local_irq_restore`
    /// (the walker registry), as the walker mutations shape that section: none
    /// at all (`walker_skips_registration`), or without its barrier
    /// (`walker_registration_no_barrier`). The section always ends, even when the
    /// walk stops on a violation, so no freer waits forever.
    pub(crate) fn with_irqs_off<T>(
        &self,
        ctx: &mut Ctx,
        walk: impl FnOnce(&Self, &mut Ctx) -> T,
    ) -> T {
        let registered = !self.cfg.has(Mutation::WalkerSkipsRegistration);
        if registered {
            let no_barrier = self.cfg.has(Mutation::WalkerRegistrationNoBarrier);
            self.walkers.irq_save(ctx, &self.ghost, no_barrier);
        }
        let _crash = registered.then(|| IrqsOff {
            walkers: &self.walkers,
            cpu: ctx.cpu,
            seq: ctx.irq_seq,
        });
        let r = walk(self, ctx);
        if registered {
            self.walkers.irq_restore(ctx, &self.ghost);
        }
        r
    }

    fn peek_locked_out(&self, ctx: &mut Ctx, mm: usize, addr: u64) -> Res<Peek> {
        let Some(snap) = self.walk_lockless(ctx, mm, addr)? else {
            return Ok(Peek::NotMapped);
        };
        if !snap.pte.access_permitted(false) || snap.pte.special() {
            return Ok(Peek::NotMapped);
        }
        let page = snap.page;
        let head = self.mem.page_folio(page);
        if self.cfg.has(Mutation::WalkerPlainGet) {
            // Pre-4.13 x86: get_page() is safe only if the page cannot be freed
            // while interrupts are off, i.e. under IPI flushing. With no recheck, a
            // page freed and reused since the walk read its PTE is taken as is.
            let seen = snap.page_stamp;
            ctx.step(&self.ghost, "gup_fast: get_page", u64::from(head));
            self.mem.folio_ref_add(ctx, &self.ghost, head, 1)?;
            let now = self.ghost.frame(page);
            ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Speculative, 1);
            if now != seen {
                return Err(ctx.violation(
                    Invariant::NoUseAfterFree,
                    format!(
                        "folio {head} was freed and reused between the walk (generation {}) and get_page (generation {})",
                        seen.gen(),
                        now.gen()
                    ),
                ));
            }
        } else {
            ctx.step(
                &self.ghost,
                "try_get_folio: folio_ref_try_add",
                u64::from(head),
            );
            if !self.mem.folio_ref_try_add(ctx, &self.ghost, head, 1)? {
                return Ok(Peek::BackedOff);
            }
            // c24d37322548: the folio may have been split or freed and reused
            // between page_folio() and the reference.
            if self.mem.page_folio(page) != head {
                ctx.step(&self.ghost, "try_get_folio: folio changed", u64::from(head));
                self.mem
                    .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Speculative))?;
                return Ok(Peek::BackedOff);
            }
            let mut changed = false;
            if let Some((ps, pi, pv, pst)) = snap.pmd {
                changed |= self.reread(ctx, ps, pi, pst, "gup_fast_pte_range: recheck pmd")? != pv;
            }
            changed |= self.reread(
                ctx,
                snap.slot,
                snap.idx,
                snap.stamp,
                "gup_fast_pte_range: recheck pte",
            )? != snap.pte;
            if changed {
                self.mem
                    .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Speculative))?;
                return Ok(Peek::BackedOff);
            }
        }
        // The reference pins the frame's generation: what is read must have been
        // written in it (or be the zeroes of a fresh page).
        let held = self.ghost.frame(page);
        let v = self.mem.read_data(page, 0);
        ctx.step(&self.ghost, "read page", u64::from(page));
        self.ghost.check_value(ctx, page, held, v)?;
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, 1, Some(HoldKind::Speculative))?;
        Ok(Peek::Read(page, v))
    }
}

/// The step name of a lockless read at `level`.
pub(crate) fn walk_step(level: u32) -> &'static str {
    match level_name(level) {
        "pgd" => "gup_fast_pgd_range: read pgd",
        "pud" => "gup_fast_pud_range: read pud",
        "pmd" => "gup_fast_pmd_range: read pmd",
        _ => "gup_fast_pte_range: read pte",
    }
}
