//! Releasing what GUP took: `put_page` for FOLL_GET, `unpin_user_page*` for
//! FOLL_PIN (`put_user_page*` in the seed, where both are `put_page`), the dirtying
//! variants under the page lock, and `folio_lock` itself.
//!
//! `unpin_user_pages_dirty_lock()` racing with `folio_clear_dirty_for_io()` is
//! benign in both orders (already dirty: it will be written; clean: an extra
//! writeback), as its comment in mm/gup.c says.

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::{Invariant, Res};
use crate::state::mem::pg;
use crate::state::world::World;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// `put_page()`: drops one FOLL_GET reference.
    pub fn put_page(&self, ctx: &mut Ctx, page: Pfn) -> Res<()> {
        let head = self.mem.page_folio(page);
        ctx.step(&self.ghost, "put_page", u64::from(page));
        self.gup_put_folio(ctx, head, 1, HoldKind::Get)
    }

    /// `sanity_check_pinned_pages()` (b6a2619c60b4, 5.19+): a pinned anonymous
    /// page stays exclusive until its owner unpins it; one that lost
    /// PageAnonExclusive was shared by someone who read "not pinned". (GUP-fast's
    /// own undo after a seqcount retry releases without it, as the kernel does.)
    fn sanity_check_pinned_pages(&self, ctx: &mut Ctx, pages: &[Pfn]) -> Res<()> {
        if !self.cfg.p().unshare_ro_pins {
            return Ok(());
        }
        for &p in pages {
            let f = self.mem.frame(p).flags.read_once();
            if f & pg::ANON != 0 && f & pg::ANON_EXCLUSIVE == 0 {
                return Err(ctx.violation(
                    Invariant::PinnedIsVisible,
                    format!("pinned anonymous page {p} lost PageAnonExclusive while pinned: whoever shared it read \"not pinned\""),
                ));
            }
        }
        Ok(())
    }

    /// `unpin_user_page()`: drops one FOLL_PIN (a no-op for the zero page, 6.5+).
    pub fn unpin_user_page(&self, ctx: &mut Ctx, page: Pfn) -> Res<()> {
        let head = self.mem.page_folio(page);
        ctx.step(&self.ghost, "unpin_user_page", u64::from(page));
        self.sanity_check_pinned_pages(ctx, &[page])?;
        self.gup_put_folio(ctx, head, 1, self.pin_kind())
    }

    /// `unpin_user_pages()`: consecutive entries of one folio are released with one
    /// subtraction (`gup_folio_next`, 5.12+).
    pub fn unpin_user_pages(&self, ctx: &mut Ctx, pages: &[Pfn]) -> Res<()> {
        ctx.step(&self.ghost, "unpin_user_pages", pages.len() as u64);
        self.sanity_check_pinned_pages(ctx, pages)?;
        self.unpin_pages_grouped(ctx, pages, self.pin_kind())
    }

    /// `unpin_user_pages_dirty_lock(pages, npages, make_dirty)`: dirty each folio
    /// that is clean, under its lock, then unpin.
    pub fn unpin_user_pages_dirty_lock(
        &self,
        ctx: &mut Ctx,
        pages: &[Pfn],
        make_dirty: bool,
    ) -> Res<()> {
        ctx.step(
            &self.ghost,
            "unpin_user_pages_dirty_lock",
            pages.len() as u64,
        );
        self.sanity_check_pinned_pages(ctx, pages)?;
        if !make_dirty {
            return self.unpin_pages_grouped(ctx, pages, self.pin_kind());
        }
        for (head, nr) in self.folio_groups(pages) {
            // The device may have written after writeback cleaned the page:
            // re-dirtying it here is what brings that write to the disk.
            let forget = self.cfg.has(Mutation::UnpinDirtyLost);
            if !forget && self.mem.frame(head).flags.read_once() & pg::DIRTY == 0 {
                self.set_page_dirty_lock(ctx, head)?;
            }
            self.gup_put_folio(ctx, head, nr, self.pin_kind())?;
        }
        Ok(())
    }

    /// `unpin_user_page_range_dirty_lock(page, npages, make_dirty)`: a physically
    /// contiguous range.
    pub(crate) fn unpin_user_page_range_dirty_lock(
        &self,
        ctx: &mut Ctx,
        page: Pfn,
        npages: u32,
        make_dirty: bool,
    ) -> Res<()> {
        let pages: Vec<Pfn> = (page..page.saturating_add(npages)).collect();
        self.unpin_user_pages_dirty_lock(ctx, &pages, make_dirty)
    }

    /// The seed's `put_user_page()`: still `put_page()` ("not interchangeable,
    /// despite this early implementation").
    pub(crate) fn put_user_page(&self, ctx: &mut Ctx, page: Pfn) -> Res<()> {
        self.put_page(ctx, page)
    }

    /// The seed's `put_user_pages()`.
    pub(crate) fn put_user_pages(&self, ctx: &mut Ctx, pages: &[Pfn]) -> Res<()> {
        for &p in pages {
            self.put_page(ctx, p)?;
        }
        Ok(())
    }

    /// The seed's `put_user_pages_dirty_lock(pages, npages, make_dirty)` ("mm:
    /// introduce put_user_page*(), placeholder versions", 5.3): dirty each clean
    /// page under its lock, then `put_user_page()`.
    pub(crate) fn put_user_pages_dirty_lock(
        &self,
        ctx: &mut Ctx,
        pages: &[Pfn],
        make_dirty: bool,
    ) -> Res<()> {
        ctx.step(&self.ghost, "put_user_pages_dirty_lock", pages.len() as u64);
        for &p in pages {
            let head = self.mem.page_folio(p);
            if make_dirty && self.mem.frame(head).flags.read_once() & pg::DIRTY == 0 {
                self.set_page_dirty_lock(ctx, head)?;
            }
            self.put_user_page(ctx, p)?;
        }
        Ok(())
    }

    /// What a pin is in this preset's ledger: a pin, or in the seed a get.
    pub(crate) fn pin_kind(&self) -> HoldKind {
        if self.cfg.p().pin == crate::preset::PinCounting::AsGet {
            HoldKind::Get
        } else {
            HoldKind::Pin
        }
    }

    /// Runs of consecutive entries of one folio: (head, count).
    fn folio_groups(&self, pages: &[Pfn]) -> Vec<(Pfn, i64)> {
        let mut out: Vec<(Pfn, i64)> = Vec::new();
        for &p in pages {
            let head = self.mem.page_folio(p);
            match out.last_mut() {
                Some((h, n)) if *h == head => *n += 1,
                _ => out.push((head, 1)),
            }
        }
        out
    }

    /// Releases `pages` as `kind`, one subtraction per folio run.
    pub(crate) fn unpin_pages_grouped(
        &self,
        ctx: &mut Ctx,
        pages: &[Pfn],
        kind: HoldKind,
    ) -> Res<()> {
        for (head, nr) in self.folio_groups(pages) {
            self.gup_put_folio(ctx, head, nr, kind)?;
        }
        Ok(())
    }

    /// `set_page_dirty_lock()`: `folio_mark_dirty` under the folio lock.
    pub(crate) fn set_page_dirty_lock(&self, ctx: &mut Ctx, head: Pfn) -> Res<()> {
        self.folio_lock(ctx, head);
        let r = self.folio_mark_dirty(ctx, head);
        self.folio_unlock(ctx, head);
        r
    }
}
