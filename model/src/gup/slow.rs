//! The slow path: `get_user_pages*` / `pin_user_pages*` under `mmap_lock`,
//! `__get_user_pages` with `follow_page_mask` under the PTL and `faultin_page`,
//! and FOLL_LONGTERM's migrate-and-retry loop (`__gup_longterm_locked`).
//!
//! The reference is taken while holding the PTL, so the PTE cannot change and the
//! page cannot reach a zero count during the grab (hence `try_grab_folio` refuses
//! instead of using add_unless). fork holds mmap_lock for write, so the slow path
//! never races with `copy_page_range`.

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::ghost::{Ctx, HoldKind};
use crate::invariant::Res;
use crate::preset::LongtermScope;
use crate::state::mem::{pg, Zone};
use crate::state::mm::{vm, FaultFlags, Vma, VmaKind};
use crate::state::pgtable::Pte;
use crate::state::world::World;
use crate::types::Errno;
use crate::types::Pfn;
use crate::types::{PAGE_SHIFT, PAGE_SIZE};

use super::Ret;
use crate::flags::{Flag, Foll};
use crate::gup::api::{GupApi, GupCall};
use crate::gup::entry::gup_wrappers;

/// What `follow_page_mask` found.
enum Follow {
    /// `count` consecutive subpages from `page`, referenced as the flags ask.
    Pages(Pfn, i64),
    /// Not mapped as needed: fault it in.
    NoPage,
    /// Read-only and possibly shared: an unshare fault first (-EMLINK).
    Unshare,
    Err(Errno),
}

/// What `faultin_page` did.
enum Faultin {
    Done,
    /// VM_FAULT_RETRY: drop mmap_lock, then retry the page with FOLL_TRIED.
    Retry,
    Err(Errno),
}

/// `mmap_lock` held for read by this call chain, or dropped.
pub struct MmapRead<'a, B: Backend> {
    guard: Option<B::RawReadGuard<'a, Vec<Vma>>>,
    /// A fault dropped the lock at some point (VM_FAULT_RETRY).
    dropped: bool,
}

impl<'a, B: Backend> MmapRead<'a, B> {
    fn vmas(&self) -> &[Vma] {
        self.guard.as_deref().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

gup_wrappers! {
    /// `get_user_pages(start, nr_pages, gup_flags, pages)`: the caller holds
    /// `mmap_lock` (the model takes it around the call, as the caller would).
    get_user_pages = GetUserPages (start, nr_pages, gup_flags, pages);
    /// `pin_user_pages(start, nr_pages, gup_flags, pages)`: like get_user_pages,
    /// with FOLL_PIN and without FOLL_TOUCH.
    pin_user_pages = PinUserPages (start, nr_pages, gup_flags, pages);
    /// `get_user_pages_remote(mm, start, nr_pages, gup_flags, pages, locked)`.
    get_user_pages_remote = GetUserPagesRemote (mm, start, nr_pages, gup_flags, pages, locked);
    /// `pin_user_pages_remote(mm, start, nr_pages, gup_flags, pages, locked)`.
    pin_user_pages_remote = PinUserPagesRemote (mm, start, nr_pages, gup_flags, pages, locked);
    /// `get_user_pages_unlocked(start, nr_pages, pages, gup_flags)`: takes and drops
    /// `mmap_lock` itself, and lets a fault drop it meanwhile.
    get_user_pages_unlocked = GetUserPagesUnlocked (start, nr_pages, pages, gup_flags);
    /// `pin_user_pages_unlocked(start, nr_pages, pages, gup_flags)` (5.8+): before
    /// 6.3 it is get_user_pages_unlocked with FOLL_PIN, and that wrapper's checks.
    pin_user_pages_unlocked = PinUserPagesUnlocked (start, nr_pages, pages, gup_flags);
    /// `get_user_pages_locked(start, nr_pages, gup_flags, pages, locked)` (until
    /// 6.4): the caller holds the lock; it may be dropped.
    get_user_pages_locked = GetUserPagesLocked (start, nr_pages, gup_flags, pages, &mut locked);
}

impl<B: Backend> World<B> {
    fn mmap_read_lock<'w>(&'w self, ctx: &mut Ctx, mm: usize) -> MmapRead<'w, B> {
        let g = self.mms[mm].mmap_lock.read();
        ctx.step(&self.ghost, "mmap_read_lock", mm as u64);
        MmapRead {
            guard: Some(g),
            dropped: false,
        }
    }

    /// The remote path after the entry checks: 6.3+ goes straight to
    /// `__get_user_pages_locked`; before, `__get_user_pages_remote`.
    pub(super) fn gup_remote(&self, ctx: &mut Ctx, call: GupCall<'_>) -> Res<Ret> {
        if self.cfg.p().valid_gup_args {
            self.gup_remote_locked(ctx, call)
        } else {
            self.get_user_pages_remote_inner(ctx, call)
        }
    }

    /// `__get_user_pages_remote()` (before 6.3): FOLL_LONGTERM cannot drop the lock
    /// ("incompatible with FAULT_FLAG_ALLOW_RETRY because of the FS DAX check").
    fn get_user_pages_remote_inner(&self, ctx: &mut Ctx, call: GupCall<'_>) -> Res<Ret> {
        let flags = call.gup_flags.with(Flag::Touch).with(Flag::Remote);
        if flags.has(Flag::Longterm) {
            if call.locked.is_some() {
                return Ok(Errno::EINVAL.as_ret());
            }
            let (mm, start, nr) = (call.mm, call.start, call.nr_pages);
            return self.gup_slow(ctx, mm, start, nr, flags, call.pages, false);
        }
        self.gup_remote_locked(
            ctx,
            GupCall {
                gup_flags: flags,
                ..call
            },
        )
    }

    /// The caller holds `mm`'s lock; with `locked` the call may drop it and says so.
    pub(super) fn gup_remote_locked(&self, ctx: &mut Ctx, call: GupCall<'_>) -> Res<Ret> {
        let GupCall {
            mm,
            start,
            nr_pages,
            gup_flags: flags,
            pages,
            locked,
        } = call;
        let unlockable = locked.is_some();
        if let Some(l) = locked.as_deref() {
            if *l != 1 {
                return Ok(Errno::EINVAL.as_ret());
            }
        }
        let mut lock = self.mmap_read_lock(ctx, mm);
        let r = self.gup_longterm_locked(
            ctx, mm, start, nr_pages, flags, pages, &mut lock, unlockable,
        )?;
        if let Some(l) = locked {
            // __get_user_pages_locked(): "if (lock_dropped && *locked)" the lock is
            // released and the caller told so: what it read under the lock before
            // the call may no longer hold.
            if lock.dropped {
                lock.guard = None;
                *l = 0;
            } else {
                *l = 1;
            }
        }
        Ok(r)
    }

    /// Takes `mmap_lock`, runs the slow path, drops it: `__gup_longterm_unlocked`
    /// (FOLL_LONGTERM before 6.3: no fault may drop the lock) or, `unlockable`,
    /// the `locked == 0` path of 6.3+ and `get_user_pages_unlocked`, where a
    /// fault may drop and retake it.
    pub(crate) fn gup_slow(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        nr_pages: i64,
        flags: Foll,
        pages: Option<&mut Vec<Pfn>>,
        unlockable: bool,
    ) -> Res<Ret> {
        let mut lock = self.mmap_read_lock(ctx, mm);
        self.gup_longterm_locked(
            ctx, mm, start, nr_pages, flags, pages, &mut lock, unlockable,
        )
    }

    /// `__gup_longterm_locked()`: without FOLL_LONGTERM, `__get_user_pages_locked`;
    /// with it, allocations avoid ZONE_MOVABLE/CMA (memalloc_pin_save) and pages
    /// that may not stay pinned are migrated, then the whole range is taken again.
    pub(super) fn gup_longterm_locked<'w>(
        &'w self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        nr_pages: i64,
        flags: Foll,
        mut pages: Option<&mut Vec<Pfn>>,
        lock: &mut MmapRead<'w, B>,
        unlockable: bool,
    ) -> Res<Ret> {
        if !flags.has(Flag::Longterm) {
            return self.get_user_pages_locked_inner(
                ctx, mm, start, nr_pages, flags, pages, lock, unlockable,
            );
        }
        let saved = std::mem::replace(&mut ctx.memalloc_pin, true);
        let mut tries = 0;
        // check_and_migrate_cma_pages (before 5.13): if migration fails, the range
        // is taken again and the CMA pages stay pinned (migrate_allow = false).
        let mut migrate_allow = true;
        let r = loop {
            let first = pages.as_deref().map_or(0, |p| p.len());
            let n = self.get_user_pages_locked_inner(
                ctx,
                mm,
                start,
                nr_pages,
                flags,
                pages.as_deref_mut(),
                lock,
                unlockable,
            )?;
            if n <= 0 {
                break n;
            }
            let Some(out) = pages.as_deref_mut() else {
                break n;
            };
            if !migrate_allow {
                break n;
            }
            let taken: Vec<Pfn> = out[first..].to_vec();
            match self.check_and_migrate_movable_pages(ctx, mm, &taken, flags)? {
                Ok(()) => break n,
                Err(e) => {
                    out.truncate(first);
                    tries += 1;
                    if e != Errno::EAGAIN && self.cfg.p().longterm_scope == LongtermScope::Cma {
                        migrate_allow = false;
                    } else if e != Errno::EAGAIN || tries > 10 {
                        break e.as_ret();
                    }
                }
            }
        };
        ctx.memalloc_pin = saved;
        Ok(r)
    }

    /// `__get_user_pages_locked()`: FOLL_GET added for a legacy caller that passed
    /// pages without saying so (never for FOLL_PIN: in the seed that returns pages
    /// without a reference); MMF_HAS_PINNED for FOLL_PIN.
    fn get_user_pages_locked_inner<'w>(
        &'w self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        nr_pages: i64,
        mut flags: Foll,
        pages: Option<&mut Vec<Pfn>>,
        lock: &mut MmapRead<'w, B>,
        unlockable: bool,
    ) -> Res<Ret> {
        if pages.is_some() && !flags.has(Flag::Pin) {
            flags = flags.with(Flag::Get);
        }
        if flags.has(Flag::Pin) {
            self.mm_set_has_pinned_flag(mm);
        }
        if nr_pages <= 0 {
            return Ok(0);
        }
        let start = start & !(PAGE_SIZE - 1);
        if (nr_pages as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|l| start.checked_add(l))
            .is_none()
        {
            return Ok(Errno::EFAULT.as_ret());
        }
        // The retry loop of __get_user_pages_locked(): a fault that needs I/O asks
        // for mmap_lock to be dropped (VM_FAULT_RETRY); the lock is taken again and
        // the faulting page retried with FOLL_TRIED, then the rest.
        let mut done: i64 = 0;
        let mut tried = false;
        let mut stale: Option<Vma> = None;
        let mut pages = pages;
        while done < nr_pages {
            let at = start + (done as u64) * PAGE_SIZE;
            let (n, retry) = if tried {
                // The stale_vma_after_retry mutation keeps the VMA found before the
                // lock was dropped instead of looking it up again.
                let hint = stale
                    .take()
                    .filter(|_| self.cfg.has(Mutation::StaleVmaAfterRetry));
                self.get_user_pages_inner(
                    ctx,
                    mm,
                    at,
                    1,
                    flags.with(Flag::Tried),
                    pages.as_deref_mut(),
                    lock,
                    unlockable,
                    hint,
                )?
            } else {
                self.get_user_pages_inner(
                    ctx,
                    mm,
                    at,
                    nr_pages - done,
                    flags,
                    pages.as_deref_mut(),
                    lock,
                    unlockable,
                    None,
                )?
            };
            if n < 0 {
                return Ok(if done > 0 { done } else { n });
            }
            done += n;
            if !retry {
                if tried && done < nr_pages {
                    tried = false;
                    continue;
                }
                break;
            }
            // VM_FAULT_RETRY: drop mmap_lock while the I/O completes; anything
            // (munmap, mmap) may happen meanwhile. Then retake it and retry.
            stale = World::<B>::find_vma(lock.vmas(), start + (done as u64) * PAGE_SIZE);
            lock.guard = None;
            lock.dropped = true;
            ctx.step(&self.ghost, "mmap_read_unlock: VM_FAULT_RETRY", at);
            lock.guard = Some(self.mms[mm].mmap_lock.read());
            ctx.step(&self.ghost, "mmap_read_lock: retry with FOLL_TRIED", at);
            tried = true;
        }
        Ok(done)
    }

    /// `__get_user_pages()`: per page, the VMA and its flags, `follow_page_mask`,
    /// and `faultin_page` when it finds nothing usable. Returns the prefix taken
    /// (or -errno if none), and whether a fault asked for the lock to be dropped.
    fn get_user_pages_inner<'w>(
        &'w self,
        ctx: &mut Ctx,
        mm: usize,
        start: u64,
        nr_pages: i64,
        flags: Foll,
        mut pages: Option<&mut Vec<Pfn>>,
        lock: &mut MmapRead<'w, B>,
        unlockable: bool,
        mut vma_hint: Option<Vma>,
    ) -> Res<(Ret, bool)> {
        let mut i: i64 = 0;
        let ret_err = |i: i64, e: Errno| (if i > 0 { i } else { e.as_ret() }, false);
        while i < nr_pages {
            let addr = start + (i as u64) * PAGE_SIZE;
            let Some(vma) = vma_hint
                .take()
                .or_else(|| World::<B>::find_vma(lock.vmas(), addr))
            else {
                return Ok(ret_err(i, Errno::EFAULT));
            };
            if let Err(e) = self.check_vma_flags(&vma, flags) {
                return Ok(ret_err(i, e));
            }
            // 17839856fd58 (5.8) should_force_cow_break(): a FOLL_GET or FOLL_PIN
            // lookup in a COW mapping looks up and faults as a write, so a shared
            // page is copied for us first.
            let flags = if self.cfg.p().force_cow_break
                && vma.is_cow()
                && flags.any(Foll::of(&[Flag::Get, Flag::Pin]))
            {
                flags.with(Flag::Write)
            } else {
                flags
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > 4 {
                    // The fault keeps not producing a usable PTE (a migration entry,
                    // which the model does not resolve yet): give up.
                    return Ok(ret_err(i, Errno::EFAULT));
                }
                match self.follow_page_mask(ctx, mm, &vma, addr, flags, nr_pages - i)? {
                    Follow::Pages(page, count) => {
                        if let Some(out) = pages.as_deref_mut() {
                            out.extend(page..page + count as Pfn);
                        }
                        i += count;
                        break;
                    }
                    Follow::Err(e) => return Ok(ret_err(i, e)),
                    r @ (Follow::NoPage | Follow::Unshare) => {
                        let unshare = matches!(r, Follow::Unshare);
                        match self.faultin_page(ctx, mm, &vma, addr, flags, unshare, unlockable)? {
                            Faultin::Done => continue,
                            Faultin::Retry => return Ok((i, true)),
                            Faultin::Err(e) => return Ok(ret_err(i, e)),
                        }
                    }
                }
            }
        }
        Ok((i, false))
    }

    /// `gup_must_unshare(vma, flags, page)` (mm/internal.h): a read-only
    /// FOLL_PIN of an anon page that is not exclusive (a7f226604170), or a
    /// read-only longterm pin of a non-anon page in a COW mapping
    /// (84209e87c696). PageAnonExclusive is read after the `smp_rmb()` that
    /// pairs with `folio_try_share_anon_rmap_*()` (088b8aa537c2), as in the
    /// kernel; the PTL held here orders it anyway.
    fn gup_must_unshare(&self, vma: &Vma, flags: Foll, page: Pfn) -> bool {
        let p = self.cfg.p();
        if !p.unshare_ro_pins || !flags.has(Flag::Pin) || flags.has(Flag::Write) {
            return false;
        }
        if self.mem.frame(page).flags.read_once() & pg::ANON == 0 {
            return flags.has(Flag::Longterm) && vma.is_cow() && p.unshare_ro_longterm_cow;
        }
        B::smp_rmb();
        self.mem
            .frame(self.anon_exclusive_page(page))
            .flags
            .read_once()
            & pg::ANON_EXCLUSIVE
            == 0
    }

    /// `check_vma_flags()`.
    fn check_vma_flags(&self, vma: &Vma, flags: Foll) -> Result<(), Errno> {
        let p = self.cfg.p();
        if !p.valid_gup_args && vma.flags & (vm::IO | vm::PFNMAP) != 0 {
            return Err(Errno::EFAULT);
        }
        if flags.has(Flag::Anon) && !vma.is_anon() {
            return Err(Errno::EFAULT);
        }
        if flags.has(Flag::Write) {
            // 6.5: no FOLL_LONGTERM write pins of file mappings that need dirty
            // tracking (writable_file_mapping_allowed); every file here does.
            if p.longterm_file_write_refused
                && flags.has(Flag::Longterm)
                && flags.has(Flag::Pin)
                && matches!(vma.kind, VmaKind::FileShared { .. })
            {
                return Err(Errno::EFAULT);
            }
            if !(vma.writable() || flags.has(Flag::Force) && vma.is_cow()) {
                return Err(Errno::EFAULT);
            }
        } else if vma.flags & vm::READ == 0
            && !(flags.has(Flag::Force) && vma.flags & vm::MAYREAD != 0)
        {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// `follow_page_mask()`: walk under `mmap_lock`, then `follow_page_pte()` under
    /// the PTE table's PTL or the huge leaf under the PMD table's.
    fn follow_page_mask(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        flags: Foll,
        want: i64,
    ) -> Res<Follow> {
        let mut slot = self.mms[mm].pgd;
        for level in (1..=4).rev() {
            let t = &self.tables[slot as usize];
            let idx = self.cfg.index(addr, level);
            let e = t.read(idx);
            if !e.present() {
                return Ok(Follow::NoPage);
            }
            if level > 1 && !e.leaf() {
                slot = e.table_slot();
                continue;
            }
            let g = t.ptl.lock();
            let e = t.read(idx);
            if level > 1 && !e.leaf() {
                // follow_pmd_mask(): the leaf became a table (or went) before the
                // lock was taken; look again.
                drop(g);
                return Ok(Follow::NoPage);
            }
            let r = self.follow_leaf(ctx, vma, addr, level, e, flags, want)?;
            if let (Follow::Pages(page, _), true, true) =
                (&r, flags.has(Flag::Touch), flags.has(Flag::Write))
            {
                // FOLL_TOUCH: a write through a clean PTE dirties the page
                // (set_page_dirty), not the PTE.
                if !e.dirty() {
                    let head = self.mem.page_folio(*page);
                    if let Err(v) = self.folio_mark_dirty(ctx, head) {
                        drop(g);
                        return Err(v);
                    }
                }
            }
            drop(g);
            ctx.step(
                &self.ghost,
                if level == 1 {
                    "follow_page_pte"
                } else {
                    "follow_huge_pmd"
                },
                addr,
            );
            return Ok(r);
        }
        Ok(Follow::NoPage)
    }

    /// The checks of `follow_page_pte()` (KERNEL.md §4.3), PTL held. A huge leaf
    /// takes every subpage left in the folio at once (57edfcfd3419, 6.6; earlier
    /// eras took them one by one, with the same result).
    fn follow_leaf(
        &self,
        ctx: &mut Ctx,
        vma: &Vma,
        addr: u64,
        level: u32,
        e: Pte,
        flags: Foll,
        want: i64,
    ) -> Res<Follow> {
        if self.cfg.p().pin_is_get && flags.has(Flag::Get) && flags.has(Flag::Pin) {
            return Ok(Follow::Err(Errno::EINVAL));
        }
        if !e.present() || e.protnone() {
            return Ok(Follow::NoPage);
        }
        let per_leaf = 1u64 << (self.cfg.fanout_bits * (level - 1));
        let page = e.pfn() + ((addr >> PAGE_SHIFT) & (per_leaf - 1)) as Pfn;
        if e.special() && !self.mem.is_zero_pfn(page) {
            // vm_normal_page() == NULL, not the zero page: no struct page to return.
            return Ok(Follow::Err(Errno::EFAULT));
        }
        if flags.has(Flag::Write) && !e.write() {
            // can_follow_write_pte(): only a writable PTE (FOLL_FORCE on an
            // exclusive anon page is not modelled): break COW with a write fault.
            return Ok(Follow::NoPage);
        }
        if !e.write() && self.gup_must_unshare(vma, flags, page) {
            return Ok(Follow::Unshare);
        }
        let left_in_leaf = per_leaf - ((addr >> PAGE_SHIFT) & (per_leaf - 1));
        let refs = (want as u64).min(left_in_leaf) as i64;
        let refs = if level == 1 { 1 } else { refs };
        if self.cfg.p().pin_is_get && flags.has(Flag::Pin) && !flags.has(Flag::Get) {
            // The seed's follow_page_pte takes a reference only for FOLL_GET.
            return Ok(Follow::Pages(page, refs));
        }
        match self.try_grab_folio(ctx, page, refs, flags)? {
            Ok(_) => Ok(Follow::Pages(page, refs)),
            Err(e) => Ok(Follow::Err(e)),
        }
    }

    /// `faultin_page()`: FOLL_NOFAULT refuses; otherwise `handle_mm_fault` with
    /// FAULT_FLAG_WRITE or FAULT_FLAG_UNSHARE, and FAULT_FLAG_ALLOW_RETRY when the
    /// caller can have the lock dropped (FOLL_UNLOCKABLE / a `locked` argument).
    fn faultin_page(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        vma: &Vma,
        addr: u64,
        flags: Foll,
        unshare: bool,
        unlockable: bool,
    ) -> Res<Faultin> {
        if flags.has(Flag::Nofault) {
            return Ok(Faultin::Err(Errno::EFAULT));
        }
        ctx.step(&self.ghost, "faultin_page", addr);
        let ff = FaultFlags {
            write: flags.has(Flag::Write) && !unshare,
            unshare,
            allow_retry: unlockable,
            tried: flags.has(Flag::Tried),
        };
        let r = self.handle_mm_fault(ctx, mm, vma, addr, ff)?;
        Ok(match r {
            Ok(()) => Faultin::Done,
            Err(Errno::EAGAIN) if unlockable => Faultin::Retry,
            Err(e) => Faultin::Err(e),
        })
    }

    /// `check_and_migrate_movable_pages()` (`check_and_migrate_cma_pages` before
    /// 5.13): if any page may not stay pinned long-term, drop every page of the
    /// call, migrate the offenders and ask for a retry (-EAGAIN).
    ///
    /// Simplification: only anonymous base pages mapped once, in this address
    /// space, are migrated; anything else stays and the call fails.
    fn check_and_migrate_movable_pages(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        taken: &[Pfn],
        flags: Foll,
    ) -> Res<Result<(), Errno>> {
        let movable: Vec<Pfn> = taken
            .iter()
            .map(|&p| self.mem.page_folio(p))
            .filter(|&h| !self.is_longterm_pinnable(h))
            .collect();
        if movable.is_empty() {
            return Ok(Ok(()));
        }
        ctx.step(
            &self.ghost,
            "check_and_migrate_movable_pages",
            movable.len() as u64,
        );
        let kind = if flags.has(Flag::Pin) && self.cfg.p().pin != crate::preset::PinCounting::AsGet
        {
            HoldKind::Pin
        } else {
            HoldKind::Get
        };
        self.unpin_pages_grouped(ctx, taken, kind)?;
        let mut failed = false;
        for head in movable {
            if !self.migrate_base_page(ctx, mm, head)? {
                failed = true;
            }
        }
        Ok(Err(if failed { Errno::ENOMEM } else { Errno::EAGAIN }))
    }

    /// Moves one mapped anonymous base page to a pinnable frame
    /// (`migrate_pages(MR_LONGTERM_PIN)`, migrate.rs); false if it could not.
    fn migrate_base_page(&self, ctx: &mut Ctx, mm: usize, old: Pfn) -> Res<bool> {
        let mappings = self.mem.frame(old).rmap.lock().entries();
        let [e] = mappings.as_slice() else {
            return Ok(false);
        };
        if e.mm as usize != mm || e.huge {
            return Ok(false);
        }
        // migrate_pages() retries -EAGAIN (a transient reference) up to 10
        // times (NR_MAX_MIGRATE_PAGES_RETRY).
        for _ in 0..10 {
            match self.migrate_mapped_page(ctx, mm, e.addr, false, |z| z == Zone::Normal)? {
                crate::mm::migrate::Migrated::Moved => return Ok(true),
                crate::mm::migrate::Migrated::KeptReferenced => continue,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}
