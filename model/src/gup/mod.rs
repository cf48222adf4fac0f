//! get_user_pages and pin_user_pages: the entry points (slow.rs, fast.rs), the
//! release calls (release.rs), and the reference arithmetic they share (here).
//!
//! Reference arithmetic per preset (KERNEL.md §1.2):
//! - FOLL_GET: `_refcount += refs` on the head.
//! - FOLL_PIN, small folio or a folio without an exact pincount:
//!   `_refcount += refs * GUP_PIN_COUNTING_BIAS` (3faa52c03f44).
//! - FOLL_PIN, folio with an exact pincount (47e29d32afba; 5232c63f46fd for every
//!   large folio): `_refcount += refs`, `_pincount += refs`.
//! - The seed: a pin is a get. The v11 series: the bias per subpage on the head,
//!   whatever the size (the overflow its own documentation warned of).
//! - 6.5 (c8070b787519): a pin of the shared zero page touches no counter.

pub mod api;
pub(crate) mod entry;
pub(crate) mod fast;
pub(crate) mod release;
pub(crate) mod rules;
pub(crate) mod slow;

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::flags::{Flag, Foll};
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::{Invariant, Res};
use crate::preset::LongtermScope;
use crate::preset::{LongtermCheck, PinAtomics, PinCounting};
use crate::state::mem::Zone;
use crate::state::world::World;
use crate::types::Pfn;

/// Kernel return value: a page count or -errno.
pub type Ret = i64;

impl<B: Backend> World<B> {
    /// `try_get_folio()` (`try_get_compound_head()` before 5.18): the speculative
    /// reference of GUP-fast. Refuses a negative count (CVE-2019-11487 hardening),
    /// never raises a zero one (`folio_ref_try_add`), and since c24d37322548
    /// rechecks that the page still belongs to the folio it counted on. `delta` is
    /// the refcount to add; the hold is recorded as speculative.
    fn try_get_folio(&self, ctx: &mut Ctx, page: Pfn, delta: i64) -> Res<Option<Pfn>> {
        let delta = i32::try_from(delta).map_err(|_| {
            ctx.violation(
                Invariant::RefcountBounds,
                format!("a grab of {delta} references does not fit the counter"),
            )
        })?;
        loop {
            let head = self.mem.page_folio(page);
            ctx.step(&self.ghost, "try_get_folio", u64::from(head));
            if self.mem.folio_ref_count(head) < 0 {
                // WARN_ON_ONCE(folio_ref_count(folio) < 0): refuse.
                return Ok(None);
            }
            if self.cfg.has(Mutation::GrabPlainIncrement) {
                self.mem.folio_ref_add(ctx, &self.ghost, head, delta)?;
                let gen = self.ghost.frame(head).gen();
                ctx.hold(head, gen, HoldKind::Speculative, i64::from(delta));
            } else if !self.mem.folio_ref_try_add(ctx, &self.ghost, head, delta)? {
                return Ok(None);
            }
            if self.cfg.p().head_recheck
                && !self.cfg.has(Mutation::NoHeadRecheck)
                && self.mem.page_folio(page) != head
            {
                ctx.step(
                    &self.ghost,
                    "try_get_folio: folio changed, retry",
                    u64::from(head),
                );
                self.mem.folio_put_refs(
                    ctx,
                    &self.ghost,
                    head,
                    delta,
                    Some(HoldKind::Speculative),
                )?;
                continue;
            }
            return Ok(Some(head));
        }
    }

    /// `try_grab_folio_fast()` (6.10; `try_grab_folio` 5.18-6.9,
    /// `try_grab_compound_head` 5.7-5.17): the fast path's grab of `refs`
    /// subpages of the folio of `page`, by FOLL_GET or FOLL_PIN. The references
    /// stay speculative until `gup_fast_commit` (after the rechecks).
    pub(crate) fn try_grab_folio_fast(
        &self,
        ctx: &mut Ctx,
        page: Pfn,
        refs: i64,
        flags: Foll,
    ) -> Res<Option<Pfn>> {
        if flags.has(Flag::Get) {
            return self.try_get_folio(ctx, page, refs);
        }
        if !flags.has(Flag::Pin) {
            return Ok(None);
        }
        let p = self.cfg.p();
        if p.zero_page_pin_noop && self.mem.is_zero_pfn(page) {
            return Ok(Some(page));
        }
        let head = match p.pin_atomics {
            PinAtomics::One => {
                // One fully ordered add of the whole delta (5.7: refs pre-multiplied
                // by the bias, or refs with hpage_pincount_add after it).
                let order = self.mem.folio_order(self.mem.page_folio(page));
                let Some(head) =
                    self.try_get_folio(ctx, page, self.cfg.pin_refcount_delta(order, refs))?
                else {
                    return Ok(None);
                };
                if self.cfg.folio_has_pincount(self.mem.folio_order(head)) {
                    // hpage_pincount_add(): a relaxed atomic_add, no barrier
                    // after it until 088b8aa537c2 (6.1).
                    self.mem.frame(head).pincount.add(refs as i32);
                }
                ctx.step(&self.ghost, "try_grab_folio: pin add", u64::from(head));
                head
            }
            PinAtomics::Two => {
                // 8ea2979c1444: the reference first, so observers see the elevated
                // count before the pin; then the pincount or the rest of the bias.
                let Some(head) = self.try_get_folio(ctx, page, refs)? else {
                    return Ok(None);
                };
                // 6.10: the long-term check on the now stable folio, before it
                // looks pinned.
                if flags.has(Flag::Longterm)
                    && p.longterm_check == LongtermCheck::AfterRef
                    && !self.is_longterm_pinnable(head)
                {
                    self.mem.folio_put_refs(
                        ctx,
                        &self.ghost,
                        head,
                        refs as i32,
                        Some(HoldKind::Speculative),
                    )?;
                    return Ok(None);
                }
                let order = self.mem.folio_order(head);
                if self.cfg.folio_has_pincount(order) {
                    self.mem.frame(head).pincount.add(refs as i32);
                } else {
                    let rest = self.cfg.pin_refcount_delta(order, refs) - refs;
                    self.mem.frame(head).refcount.add(rest as i32);
                    ctx.hold(
                        head,
                        self.ghost.frame(head).gen(),
                        HoldKind::Speculative,
                        rest,
                    );
                }
                ctx.step(&self.ghost, "try_grab_folio: pin add", u64::from(head));
                head
            }
        };
        if p.mb_after_pin {
            // Pairs with the smp_mb() of folio_try_share_anon_rmap_*() (088b8aa537c2).
            B::smp_mb__after_atomic();
        }
        Ok(Some(head))
    }

    /// Turns the speculative references of a successful fast grab into the caller's
    /// GET or PIN (the ledger's view; the counters already hold them).
    pub(crate) fn gup_commit(&self, ctx: &mut Ctx, head: Pfn, refs: i64, flags: Foll) {
        if flags.has(Flag::Pin) && self.cfg.p().zero_page_pin_noop && self.mem.is_zero_pfn(head) {
            ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Pin, refs);
            return;
        }
        let gen = self.ghost.frame(head).gen();
        let (kind, delta) = if flags.has(Flag::Pin) && self.cfg.p().pin != PinCounting::AsGet {
            (
                HoldKind::Pin,
                self.cfg
                    .pin_refcount_delta(self.mem.folio_order(head), refs),
            )
        } else {
            (HoldKind::Get, refs)
        };
        ctx.ledger.release(head, HoldKind::Speculative, delta);
        ctx.hold(head, gen, kind, refs);
        ctx.grabbed.push((head, self.ghost.wb_gen(head)));
        if kind == HoldKind::Pin && self.cfg.p().vmstat {
            ctx.ledger.pin_acquired += refs as u64;
        }
    }

    /// `gup_put_folio()` for references that are still speculative (a fast-path
    /// back-off): same refs, same flags as the grab.
    pub(crate) fn gup_put_speculative(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        refs: i64,
        flags: Foll,
    ) -> Res<()> {
        if flags.has(Flag::Pin) && self.cfg.p().zero_page_pin_noop && self.mem.is_zero_pfn(head) {
            return Ok(());
        }
        let order = self.mem.folio_order(head);
        let delta = if flags.has(Flag::Pin) {
            if self.cfg.folio_has_pincount(order) {
                self.mem.frame(head).pincount.sub(refs as i32);
            }
            self.cfg.pin_refcount_delta(order, refs)
        } else {
            refs
        };
        self.mem.folio_put_refs(
            ctx,
            &self.ghost,
            head,
            delta as i32,
            Some(HoldKind::Speculative),
        )?;
        Ok(())
    }

    /// `try_grab_folio()` (slow path, under the PTL): the page is mapped, so a
    /// count of zero or less is a bug the kernel WARNs about and refuses with
    /// -ENOMEM. Plain adds: the PTL keeps the folio alive.
    pub(crate) fn try_grab_folio(
        &self,
        ctx: &mut Ctx,
        page: Pfn,
        refs: i64,
        flags: Foll,
    ) -> Res<Result<Pfn, crate::types::Errno>> {
        let head = self.mem.page_folio(page);
        let p = self.cfg.p();
        if flags.has(Flag::Pin) && p.zero_page_pin_noop && self.mem.is_zero_pfn(page) {
            ctx.hold(head, self.ghost.frame(head).gen(), HoldKind::Pin, refs);
            return Ok(Ok(head));
        }
        if self.mem.folio_ref_count(head) <= 0 {
            return Ok(Err(crate::types::Errno::ENOMEM));
        }
        if !flags.any(Foll::of(&[Flag::Get, Flag::Pin])) {
            return Ok(Ok(head));
        }
        let order = self.mem.folio_order(head);
        let pin = flags.has(Flag::Pin) && p.pin != PinCounting::AsGet;
        let delta = if pin {
            self.cfg.pin_refcount_delta(order, refs)
        } else {
            refs
        };
        let delta32 = i32::try_from(delta).map_err(|_| {
            ctx.violation(
                Invariant::RefcountBounds,
                format!("a grab of {delta} references does not fit the counter"),
            )
        })?;
        self.mem.folio_ref_add(ctx, &self.ghost, head, delta32)?;
        if pin && self.cfg.folio_has_pincount(order) {
            self.mem.frame(head).pincount.add(refs as i32);
        }
        let gen = self.ghost.frame(head).gen();
        ctx.grabbed.push((head, self.ghost.wb_gen(head)));
        if pin {
            ctx.hold(head, gen, HoldKind::Pin, refs);
            if p.vmstat {
                ctx.ledger.pin_acquired += refs as u64;
            }
        } else {
            ctx.hold(head, gen, HoldKind::Get, refs);
        }
        ctx.step(&self.ghost, "try_grab_folio", u64::from(head));
        Ok(Ok(head))
    }

    /// `gup_put_folio()` for a committed GET or PIN: checks the caller holds what it
    /// releases (matched release), then drops it.
    pub(crate) fn gup_put_folio(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        refs: i64,
        kind: HoldKind,
    ) -> Res<()> {
        let held = ctx.ledger.held(head, kind);
        if held < refs {
            let other = match kind {
                HoldKind::Pin => HoldKind::Get,
                _ => HoldKind::Pin,
            };
            let what = if ctx.ledger.held(head, other) > 0 {
                format!("released a {other:?} of folio {head} as a {kind:?}")
            } else {
                format!("released {refs} {kind:?} reference(s) on folio {head}, holding {held}")
            };
            return Err(ctx.violation(Invariant::MatchedRelease, what));
        }
        let p = self.cfg.p();
        if kind == HoldKind::Pin && p.zero_page_pin_noop && self.mem.is_zero_pfn(head) {
            ctx.ledger.release(head, HoldKind::Pin, refs);
            return Ok(());
        }
        let order = self.mem.folio_order(head);
        let delta = if kind == HoldKind::Pin {
            if self.cfg.folio_has_pincount(order) {
                self.mem.frame(head).pincount.sub(refs as i32);
            }
            if p.vmstat {
                ctx.ledger.pin_released += refs as u64;
            }
            self.cfg.pin_refcount_delta(order, refs)
        } else {
            refs
        };
        ctx.ledger.release(head, kind, refs);
        ctx.step(&self.ghost, "gup_put_folio", u64::from(head));
        self.mem
            .folio_put_refs(ctx, &self.ghost, head, delta as i32, None)?;
        Ok(())
    }

    /// `mm_set_has_pinned_flag()`, per era.
    pub(crate) fn mm_set_has_pinned_flag(&self, mm: usize) {
        use crate::preset::HasPinned;
        use crate::state::mm::mmf::HAS_PINNED;
        let f = &self.mms[mm].flags;
        match self.cfg.p().has_pinned {
            HasPinned::None => {}
            // 008cfe4418b3: atomic_set(&mm->has_pinned, 1) on every pin, which
            // bounces the cache line between CPUs pinning in one mm.
            HasPinned::Set => f.or(HAS_PINNED),
            // 5.14: test_bit first, set_bit only once.
            HasPinned::TestBeforeSet => {
                if f.read_once() & HAS_PINNED == 0 {
                    f.or(HAS_PINNED);
                }
            }
        }
    }

    /// Whether `page` may be pinned long-term without migrating it first
    /// (`is_pinnable_page` / `folio_is_longterm_pinnable`).
    pub(crate) fn is_longterm_pinnable(&self, page: Pfn) -> bool {
        if self.mem.is_zero_pfn(page) {
            return true;
        }
        matches!(
            (self.cfg.p().longterm_scope, self.mem.frame(page).zone),
            (_, Zone::Normal) | (LongtermScope::Cma, Zone::Movable)
        )
    }
}
