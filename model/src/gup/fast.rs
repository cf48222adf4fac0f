//! GUP-fast: the lockless walk (`gup_fast_fallback` -> `gup_fast` ->
//! `gup_fast_pgd_range` ... `gup_fast_pte_range`, leaves `gup_fast_pmd_leaf` /
//! `gup_fast_pud_leaf`), and the entry points built on it.
//!
//! Why it is safe without mmap_lock (the comment above GUP-fast in mm/gup.c):
//! page tables cannot be freed under it (interrupts off: tlb.rs); each entry is read
//! once and the next level derived from that value; data pages are protected by
//! the speculative reference, which never raises a zero count, followed by the
//! recheck: "(1) pin the page, then (2) check the PTE has not changed". Everyone
//! racing with it "(1) clears the PTE, then (2) checks whether the page is pinned".
//! THP collapse also needs the PMD recheck (70cbc3cc78a9): the walker may sit in a
//! PTE table that is being freed while its PTEs still look valid.

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind, Stamp};
use crate::invariant::{Invariant, Res};
use crate::mm::walk::walk_step;
use crate::preset::LongtermCheck;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;
use crate::types::{PAGE_SHIFT, PAGE_SIZE};

use super::Ret;
use crate::flags::{Flag, Foll, Rules};
use crate::gup::api::{GupApi, GupCall};
use crate::gup::entry::gup_wrappers;

/// Where the PTE table of a walk was reached from (for the PMD recheck).
#[derive(Clone, Copy)]
struct PmdSnap {
    slot: u32,
    idx: usize,
    val: Pte,
    stamp: Stamp,
}

gup_wrappers! {
    /// `get_user_pages_fast(start, nr_pages, gup_flags, pages)`.
    get_user_pages_fast = GetUserPagesFast (start, nr_pages, gup_flags, pages);
    /// `get_user_pages_fast_only()` (5.9+; `__get_user_pages_fast` before): never
    /// falls back to the slow path; never negative before 6.3.
    get_user_pages_fast_only = GetUserPagesFastOnly (start, nr_pages, gup_flags, pages);
    /// `pin_user_pages_fast(start, nr_pages, gup_flags, pages)`.
    pin_user_pages_fast = PinUserPagesFast (start, nr_pages, gup_flags, pages);
    /// `pin_user_pages_fast_only()` (5.9+).
    pin_user_pages_fast_only = PinUserPagesFastOnly (start, nr_pages, gup_flags, pages);
}

impl<B: Backend> World<B> {
    /// The fast path alone; 6.1 and before clamped a negative result to 0 (latest
    /// returns what the fast path returned: KERNEL.md §2.3).
    pub(super) fn fast_only(
        &self,
        ctx: &mut Ctx,
        start: u64,
        nr_pages: i64,
        flags: Foll,
        pages: Option<&mut Vec<Pfn>>,
    ) -> Res<Ret> {
        let r = self.internal_get_user_pages_fast(ctx, start, nr_pages, flags, pages)?;
        Ok(if self.cfg.p().valid_gup_args {
            r
        } else {
            r.max(0)
        })
    }

    /// The flags the fast path accepts, per era (`internal_get_user_pages_fast` /
    /// `gup_fast_fallback`).
    pub(crate) fn fast_flag_mask(&self) -> Foll {
        use Flag::*;
        match self.cfg.p().rules {
            // The seed patch: WRITE | LONGTERM | PIN exactly.
            Rules::Seed => Foll::of(&[Write, Longterm, Pin]),
            Rules::V5_7 => Foll::of(&[Write, Longterm, Force, Pin, Get]),
            Rules::V5_11 => Foll::of(&[Write, Longterm, Force, Pin, Get, FastOnly]),
            Rules::V6_1 => Foll::of(&[Write, Longterm, Force, Pin, Get, FastOnly, Nofault]),
            Rules::Latest => Foll::of(&[
                Write,
                Longterm,
                Force,
                Pin,
                Get,
                FastOnly,
                Nofault,
                PciP2pdma,
                HonorNumaFault,
            ]),
        }
    }

    /// `internal_get_user_pages_fast()` / `gup_fast_fallback()`: the lockless
    /// walk, then the slow path for what it could not take.
    pub(super) fn internal_get_user_pages_fast(
        &self,
        ctx: &mut Ctx,
        start: u64,
        nr_pages: i64,
        flags: Foll,
        mut pages: Option<&mut Vec<Pfn>>,
    ) -> Res<Ret> {
        let p = self.cfg.p();
        if !flags.outside(self.fast_flag_mask()).is_empty() {
            return Ok(Errno::EINVAL.as_ret());
        }
        if flags.has(Flag::Pin) {
            self.mm_set_has_pinned_flag(ctx.mm);
        }
        // The seed's walk takes a plain reference whatever the flags (FOLL_GET is
        // implied there, not passed).
        let flags = if p.pin_is_get && !flags.has(Flag::Pin) {
            flags.with(Flag::Get)
        } else {
            flags
        };
        let start = start & !(PAGE_SIZE - 1);
        if nr_pages == 0 {
            return Ok(0);
        }
        // `len = (unsigned long)nr_pages << PAGE_SHIFT`: a negative count becomes
        // a huge length, as in the kernel.
        let len = (nr_pages as u64).wrapping_shl(PAGE_SHIFT);
        let Some(end) = start.checked_add(len).filter(|&e| e > start) else {
            // 5.x: end <= start returns 0; 5.11/6.1 check_add_overflow returns 0;
            // 6.3+ returns -EOVERFLOW.
            return Ok(if p.valid_gup_args {
                Errno::EOVERFLOW.as_ret()
            } else {
                0
            });
        };
        if end > self.cfg.va_size() {
            // !access_ok() / end > TASK_SIZE_MAX.
            return Ok(Errno::EFAULT.as_ret());
        }
        let Some(out) = pages.as_deref_mut() else {
            // Only reachable where pages == NULL was not refused (the seed's
            // get path): nothing to fill, nothing to take.
            return Ok(Errno::EFAULT.as_ret());
        };
        let before = out.len();
        // 17839856fd58 (5.8): the fast walk looks up as a write even for reads,
        // so a COW-shared page is left to the slow path, which breaks COW.
        let walk_flags = if self.cfg.p().force_cow_break {
            flags.with(Flag::Write)
        } else {
            flags
        };
        let nr_pinned = self.gup_fast(ctx, ctx.mm, start, end, walk_flags, out)? as i64;
        debug_assert_eq!(out.len() - before, nr_pinned as usize);
        if nr_pinned == nr_pages || flags.has(Flag::FastOnly) {
            return Ok(nr_pinned);
        }
        // The slow path for the rest. 6.3+: `__gup_longterm_locked(..., &locked = 0,
        // flags | FOLL_TOUCH | FOLL_UNLOCKABLE)`. Before: `__gup_longterm_unlocked`,
        // which for FOLL_LONGTERM takes mmap_lock itself and never lets a fault drop
        // it (no FOLL_TOUCH), and otherwise is get_user_pages_unlocked.
        let rest_start = start + (nr_pinned as u64) * PAGE_SIZE;
        let rest = nr_pages - nr_pinned;
        let (rest_flags, unlockable) = if p.valid_gup_args {
            (flags.with(Flag::Touch).with(Flag::Unlockable), true)
        } else if flags.has(Flag::Longterm) {
            (flags, false)
        } else {
            (flags.with(Flag::Touch), true)
        };
        let ret = self.gup_slow(ctx, ctx.mm, rest_start, rest, rest_flags, pages, unlockable)?;
        if ret < 0 {
            // "The caller has to unpin the pages we already pinned, so returning
            // -errno is not an option."
            return Ok(if nr_pinned > 0 { nr_pinned } else { ret });
        }
        Ok(ret + nr_pinned)
    }

    /// `gup_fast()`: the walk with interrupts off, bracketed for FOLL_PIN by the
    /// `write_protect_seq` read and retry (57efa1fe5957).
    fn gup_fast(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        end: u64,
        flags: Foll,
        pages: &mut Vec<Pfn>,
    ) -> Res<usize> {
        let p = self.cfg.p();
        let seq_check = flags.has(Flag::Pin) && p.seqcount;
        let mut seq = 0;
        if seq_check {
            // raw_read_seqcount(): odd means fork is copying; take the slow path.
            seq = self.mms[mm].write_protect_seq.read_once();
            B::smp_rmb();
            ctx.step(
                &self.ghost,
                "gup_fast: read write_protect_seq",
                u64::from(seq),
            );
            if seq & 1 == 1 {
                return Ok(0);
            }
        }
        let first = pages.len();
        let mut nr = 0usize;
        let pgd = self.mms[mm].pgd;
        self.with_irqs_off(ctx, |w, ctx| {
            let stamp = w.ghost.table(pgd);
            w.gup_fast_range(ctx, 4, pgd, stamp, start, end, flags, pages, &mut nr)
        })?;
        if seq_check && nr > 0 {
            // read_seqcount_retry(): fork ran meanwhile; the pages may now be
            // shared, so everything is unpinned (gup_fast_unpin_user_pages).
            B::smp_rmb();
            let now = self.mms[mm].write_protect_seq.read_once();
            if now != seq {
                ctx.step(
                    &self.ghost,
                    "gup_fast: seqcount retry, unpin all",
                    u64::from(now),
                );
                let taken: Vec<Pfn> = pages.drain(first..).collect();
                self.unpin_pages_grouped(ctx, &taken, HoldKind::Pin)?;
                return Ok(0);
            }
        }
        Ok(nr)
    }

    /// `gup_fast_pgd_range` / `_p4d_` / `_pud_` / `_pmd_range`: read each entry
    /// once, derive the next table from that value. `false` stops the walk (the
    /// pinned set stays a prefix).
    fn gup_fast_range(
        &self,
        ctx: &mut Ctx,
        level: u32,
        slot: u32,
        stamp: Stamp,
        mut addr: u64,
        end: u64,
        flags: Foll,
        pages: &mut Vec<Pfn>,
        nr: &mut usize,
    ) -> Res<bool> {
        let span = 1u64 << self.cfg.shift(level);
        while addr < end {
            let next = ((addr | (span - 1)) + 1).min(end);
            let idx = self.cfg.index(addr, level);
            let e = self.tables[slot as usize].read(idx);
            ctx.step(&self.ghost, walk_step(level), addr);
            self.ghost.check_table(ctx, slot, stamp)?;
            if !e.present() {
                return Ok(false);
            }
            let ok = if e.leaf() {
                if e.protnone() {
                    return Ok(false);
                }
                self.gup_fast_leaf(
                    ctx, level, slot, idx, stamp, e, addr, next, flags, pages, nr,
                )?
            } else {
                let child = e.table_slot();
                let child_stamp = self.ghost.table(child);
                if level == 2 {
                    let pmd = PmdSnap {
                        slot,
                        idx,
                        val: e,
                        stamp,
                    };
                    self.gup_fast_pte_range(
                        ctx,
                        pmd,
                        child,
                        child_stamp,
                        addr,
                        next,
                        flags,
                        pages,
                        nr,
                    )?
                } else {
                    self.gup_fast_range(
                        ctx,
                        level - 1,
                        child,
                        child_stamp,
                        addr,
                        next,
                        flags,
                        pages,
                        nr,
                    )?
                }
            };
            if !ok {
                return Ok(false);
            }
            addr = next;
        }
        Ok(true)
    }

    /// `gup_must_unshare(NULL, flags, page)` as GUP-fast asks it (no VMA): a
    /// read-only FOLL_PIN of an anon page that is not exclusive must fall back so
    /// the slow path can unshare it (a7f226604170, 5.19).
    fn gup_fast_must_unshare(&self, flags: Foll, page: Pfn) -> bool {
        if !self.cfg.p().unshare_ro_pins || !flags.has(Flag::Pin) || flags.has(Flag::Write) {
            return false;
        }
        let f = self.mem.frame(page).flags.read_once();
        if f & pg::ANON == 0 {
            // Non-anon: only LONGTERM in a COW mapping, which needs the VMA
            // (84209e87c696, 6.2): GUP-fast cannot tell, so it falls back.
            return flags.has(Flag::Longterm) && self.cfg.p().unshare_ro_longterm_cow;
        }
        // Pairs with the barrier after clearing PageAnonExclusive (088b8aa537c2).
        B::smp_rmb();
        self.mem
            .frame(self.anon_exclusive_page(page))
            .flags
            .read_once()
            & pg::ANON_EXCLUSIVE
            == 0
    }

    /// `gup_fast_folio_allowed()` (6.5 `folio_fast_pin_allowed`, 6.10 name): a
    /// FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE grab may keep an anonymous folio
    /// only; a file folio falls back to the slow path, which refuses it
    /// (`writable_file_mapping_allowed`). Reads `folio->mapping` once.
    fn gup_fast_folio_allowed(&self, head: Pfn, flags: Foll) -> bool {
        if !self.cfg.p().longterm_file_write_refused
            || !flags.has(Flag::Pin)
            || !flags.has(Flag::Longterm)
            || !flags.has(Flag::Write)
        {
            return true;
        }
        self.mem.frame(head).mapping.read_once() == 0
            && self.mem.frame(head).flags.read_once() & pg::ANON != 0
    }

    /// `gup_fast_pte_range()`.
    fn gup_fast_pte_range(
        &self,
        ctx: &mut Ctx,
        pmd: PmdSnap,
        slot: u32,
        stamp: Stamp,
        start: u64,
        end: u64,
        flags: Foll,
        pages: &mut Vec<Pfn>,
        nr: &mut usize,
    ) -> Res<bool> {
        let p = self.cfg.p();
        let write = flags.has(Flag::Write);
        let mut addr = start;
        while addr < end {
            let idx = if self.cfg.has(Mutation::PteIndexUnmasked) {
                (addr >> PAGE_SHIFT) as usize
            } else {
                self.cfg.index(addr, 1)
            };
            let t = &self.tables[slot as usize];
            let pte = t.read(idx);
            // Ghost, with the read: when it happened.
            let read_tick = self.ghost.tick();
            ctx.step(&self.ghost, "gup_fast_pte_range: read pte", addr);
            self.ghost.check_table(ctx, slot, stamp)?;
            if pte.protnone() || !pte.access_permitted(write) || pte.special() {
                return Ok(false);
            }
            let page = pte.pfn();
            let seen = self.ghost.frame(page);
            if flags.has(Flag::Longterm)
                && flags.has(Flag::Pin)
                && p.longterm_check == LongtermCheck::BeforeRef
                && !self.is_longterm_pinnable(page)
            {
                return Ok(false);
            }
            let Some(head) = self.try_grab_folio_fast(ctx, page, 1, flags)? else {
                return Ok(false);
            };
            // Ghost, right after the grab: when page_mkclean last write-protected
            // this PTE (compared with the read and the grab below).
            let cleaned = self.ghost.cleaned(slot, idx);
            let mut changed = false;
            if p.pmd_recheck && !self.cfg.has(Mutation::NoPmdRecheck) {
                let now = self.reread(
                    ctx,
                    pmd.slot,
                    pmd.idx,
                    pmd.stamp,
                    "gup_fast_pte_range: recheck pmd",
                )?;
                changed |= now != pmd.val;
            }
            // Whether a read of the PTE after the grab confirmed it (a kept grab
            // is then valid by the recheck's own read, whatever a weak-memory
            // engine lets it read).
            let (reached, rechecked) = if self.cfg.has(Mutation::SkipPteRecheck) {
                (seen, false)
            } else {
                changed |=
                    self.reread(ctx, slot, idx, stamp, "gup_fast_pte_range: recheck pte")? != pte;
                (self.ghost.frame(page), true)
            };
            let refuse = changed
                || !self.gup_fast_folio_allowed(head, flags)
                || (!pte.write() && self.gup_fast_must_unshare(flags, page));
            if refuse {
                self.gup_put_speculative(ctx, head, 1, flags)?;
                return Ok(false);
            }
            ctx.step(
                &self.ghost,
                "gup_fast_pte_range: take page",
                u64::from(page),
            );
            // Meaningful only when the recheck is skipped (the mutation): the
            // recheck itself re-validates the page it re-reads.
            if self.ghost.frame(page) != reached {
                return Err(ctx.violation(
                    Invariant::NoUseAfterFree,
                    format!("GUP-fast returns page {page}, freed and reused since its PTE was read at {addr:#x}"),
                ));
            }
            // The page_mkclean rule: a FOLL_WRITE grab is kept only if a read
            // of the PTE after the grab found it still writable; one that nothing
            // re-read, with a page_mkclean between the read and the grab, was
            // taken through a PTE that was no longer writable.
            if write && !rechecked && read_tick < cleaned && cleaned < ctx.grab_tick {
                return Err(ctx.violation(
                    Invariant::PinThroughWritablePte,
                    format!("GUP-fast keeps a FOLL_WRITE reference on page {page}, whose PTE at {addr:#x} page_mkclean write-protected after it was read: the write bypasses ->page_mkwrite"),
                ));
            }
            self.gup_commit(ctx, head, 1, flags);
            pages.push(page);
            *nr += 1;
            addr += PAGE_SIZE;
        }
        Ok(true)
    }

    /// `gup_fast_pmd_leaf()` / `gup_fast_pud_leaf()`: one grab of `refs` for all
    /// the subpages `record_subpages()` put in `pages`, then the leaf recheck.
    fn gup_fast_leaf(
        &self,
        ctx: &mut Ctx,
        level: u32,
        slot: u32,
        idx: usize,
        stamp: Stamp,
        e: Pte,
        addr: u64,
        end: u64,
        flags: Foll,
        pages: &mut Vec<Pfn>,
        nr: &mut usize,
    ) -> Res<bool> {
        let p = self.cfg.p();
        if !e.access_permitted(flags.has(Flag::Write)) || e.special() {
            return Ok(false);
        }
        let per_leaf = 1u64 << (self.cfg.fanout_bits * (level - 1));
        let first = e.pfn() + ((addr >> PAGE_SHIFT) & (per_leaf - 1)) as Pfn;
        let refs = ((end - addr) >> PAGE_SHIFT) as i64;
        if flags.has(Flag::Longterm)
            && flags.has(Flag::Pin)
            && p.longterm_check == LongtermCheck::BeforeRef
            && !self.is_longterm_pinnable(first)
        {
            return Ok(false);
        }
        let Some(head) = self.try_grab_folio_fast(ctx, first, refs, flags)? else {
            return Ok(false);
        };
        let now = self.reread(ctx, slot, idx, stamp, "gup_fast_pmd_leaf: recheck")?;
        let refuse = now != e
            || !self.gup_fast_folio_allowed(head, flags)
            || (!e.write() && self.gup_fast_must_unshare(flags, first));
        if refuse {
            self.gup_put_speculative(ctx, head, refs, flags)?;
            return Ok(false);
        }
        self.gup_commit(ctx, head, refs, flags);
        pages.extend(first..first + refs as Pfn);
        *nr += refs as usize;
        Ok(true)
    }
}
