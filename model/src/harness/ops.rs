//! Operations as data: every action a modelled thread can take is an `Op`.
//!
//! Ops name pages and regions by selectors within the layout (taken modulo what
//! exists), so arbitrary bytes decode into meaningful sequences, and an all-zero
//! input decodes into `Nop`. The same op lists are a loom test, a shuttle test, a
//! fuzz input and a JSON reproducer. The encoding is versioned (`OPS_VERSION`).

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic};
use crate::config::Mutation;
use crate::flags::{Flag, Foll};
use crate::ghost::Ctx;
use crate::ghost::FileWriteRec;
use crate::ghost::Handle;
use crate::ghost::Stamp;
use crate::gup::api::{GupApi, GupCall};
use crate::invariant::{Invariant, Res};
use crate::preset::PinCounting;
use crate::state::layout::Layout;
use crate::state::mem::pg;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// Version of the op encoding; bump when a variant changes meaning.
pub const OPS_VERSION: u32 = 7;

/// The FOLL_* flags a caller may pass, as a selector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub struct FlagSel {
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub longterm: bool,
    #[serde(default)]
    pub force: bool,
}

impl FlagSel {
    pub const WRITE: FlagSel = FlagSel {
        write: true,
        longterm: false,
        force: false,
    };
    pub(crate) fn foll(self) -> Foll {
        let mut f = Foll::NONE;
        if self.write {
            f = f.with(Flag::Write);
        }
        if self.longterm {
            f = f.with(Flag::Longterm);
        }
        if self.force {
            f = f.with(Flag::Force);
        }
        f
    }
}

/// How a GUP result is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseApi {
    /// The call that matches how the pages were taken: put_page for a get,
    /// unpin_user_pages for a pin (put_user_pages in the seed).
    Matching,
    /// Dirty then release: unpin_user_pages_dirty_lock(make_dirty), or
    /// set_page_dirty_lock + put_page for a get (the DIO pattern).
    DirtyLock,
    /// unpin_user_page_range_dirty_lock over the handle's first page.
    RangeDirtyLock,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Does nothing (what zero bytes decode to).
    Nop,
    /// A user load or store; faults if the PTE does not allow it.
    Touch { mm: u8, page: u16, write: bool },
    /// `munmap()` of a layout region.
    Munmap { mm: u8, region: u8 },
    /// `mmap()` of a layout region again (anonymous, unpopulated).
    Mmap { mm: u8, region: u8 },
    /// A GUP-fast-style lockless lookup that reads the page under a speculative
    /// reference (walk.rs).
    LocklessPeek { mm: u8, page: u16 },
    /// A GUP call on `nr` pages from a layout page; the result becomes a handle.
    Gup {
        api: GupApi,
        mm: u8,
        page: u16,
        nr: u8,
        flags: FlagSel,
    },
    /// Bad input: a raw address, count and flag word (decoded by the era's
    /// values; unknown bits reach the call as FOLL_* it must refuse), optionally
    /// with no pages array.
    GupRaw {
        api: GupApi,
        mm: u8,
        start: u64,
        nr_pages: i64,
        raw_flags: u32,
        no_pages: bool,
    },
    /// Releases what an earlier GUP op of this thread took (handle = the
    /// `handle % n`-th GUP result still held).
    Release { handle: u8, how: ReleaseApi },
    /// `page_maybe_dma_pinned()` on a handle's first page: a pin this thread holds
    /// must read as pinned (no false negatives).
    MaybeDmaPinned { handle: u8 },
    /// A device writes into a handle's pages through the pin (DMA), not through
    /// PTEs.
    DmaWrite { handle: u8 },
    /// `filemap_fdatawrite()` of a layout file: every dirty page is cleaned
    /// (page_mkclean) and written.
    Writeback { file: u8 },
    /// Reclaim of one cached page of a layout file (`shrink_folio_list`).
    Reclaim { file: u8, index: u16 },
    /// FALLOC_FL_PUNCH_HOLE of one page of a layout file (truncation).
    PunchHole { file: u8, index: u16 },
    /// The MMU-notifier driver maps a page for its device (no pin).
    NotifierMap { mm: u8, page: u16 },
    /// The MMU-notifier driver's device writes through its mappings.
    NotifierWrite,
    /// `fork()` of this thread's address space into the (empty) address space
    /// `child`.
    Fork { child: u8 },
    /// From here on this thread runs in address space `mm` (a thread of that
    /// process: `current->mm`).
    UseMm { mm: u8 },
    /// Reads a handle's first page through the GUP reference (a pipe after
    /// vmsplice, a DIO write): what this process may see.
    ReadHandle { handle: u8 },
    /// A pinned page stays the page mapped at the pinned address: a store
    /// through the address must show in the page the pin holds.
    CheckCoherent { handle: u8 },
    /// `echo 4 > /proc/pid/clear_refs` on an address space.
    ClearRefs { mm: u8 },
    /// KSM write-protects a page and clears its exclusivity
    /// (`write_protect_page`, `folio_try_share_anon_rmap_pte`); with `merge`,
    /// merges it (`try_to_merge_one_page`: it becomes a KSM page, or its PTE
    /// maps the KSM page of the same content).
    KsmShare {
        mm: u8,
        page: u16,
        #[serde(default)]
        merge: bool,
    },
    /// khugepaged collapses the PMD range containing a page into a THP (a
    /// file VMA's range: `collapse_file`, then `retract_page_tables`).
    Collapse { mm: u8, page: u16 },
    /// `split_huge_page()` of the THP mapping a page.
    Split { mm: u8, page: u16 },
    /// Migration of the page mapped at a page: compaction of an anonymous
    /// base page or a page-cache page, `migrate_pages()` of a PMD-mapped THP.
    Migrate { mm: u8, page: u16 },
    /// A user load that checks where the value came from: a value another
    /// address space wrote after a fork between them is a leak (cow.c's
    /// "Basic COW after fork()").
    Load { mm: u8, page: u16 },
    /// cow.c's check for pinned pages, whatever the era promised: a store
    /// through the pinned address must be visible through the pin ("Longterm
    /// R/O pin is not reliable" otherwise).
    CheckPinSees { handle: u8 },
    /// `munmap()` of `nr` pages from a layout page (may cut a THP).
    MunmapPages { mm: u8, page: u16, nr: u8 },
    /// `madvise(MADV_PAGEOUT)` of a page: reclaim of the anonymous page
    /// mapped there (swap cache, unmap, write to a swap slot).
    Pageout { mm: u8, page: u16 },
}

impl Op {
    /// Kernel-flavoured name, for traces and listings.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Nop => "nop",
            Op::Touch { write: true, .. } => "user store",
            Op::Touch { write: false, .. } => "user load",
            Op::Munmap { .. } => "munmap",
            Op::Mmap { .. } => "mmap",
            Op::LocklessPeek { .. } => "lockless peek",
            Op::Gup { api, .. } | Op::GupRaw { api, .. } => api.name(),
            Op::Release { .. } => "release",
            Op::MaybeDmaPinned { .. } => "page_maybe_dma_pinned",
            Op::DmaWrite { .. } => "device dma write",
            Op::Writeback { .. } => "filemap_fdatawrite",
            Op::Reclaim { .. } => "shrink_folio_list",
            Op::PunchHole { .. } => "truncate_pagecache_range",
            Op::NotifierMap { .. } => "hmm_range_fault",
            Op::NotifierWrite => "device write (notifier)",
            Op::Fork { .. } => "fork",
            Op::UseMm { .. } => "use mm",
            Op::ReadHandle { .. } => "read through the reference",
            Op::CheckCoherent { .. } => "check pin coherence",
            Op::ClearRefs { .. } => "clear_refs_write",
            Op::KsmShare { merge: false, .. } => "ksm: write_protect_page",
            Op::KsmShare { merge: true, .. } => "ksm: try_to_merge_one_page",
            Op::Collapse { .. } => "collapse_huge_page",
            Op::Split { .. } => "split_huge_page",
            Op::Migrate { .. } => "compact_zone: migrate_pages",
            Op::Load { .. } => "user load (checked)",
            Op::CheckPinSees { .. } => "check the pin sees the store",
            Op::MunmapPages { .. } => "munmap pages",
            Op::Pageout { .. } => "madvise(MADV_PAGEOUT)",
        }
    }
}

/// Resolves selectors against a layout and the world's address spaces.
pub struct Resolver<'a> {
    layout: &'a Layout,
    nr_mms: usize,
}

impl<'a> Resolver<'a> {
    pub fn new(layout: &'a Layout, nr_mms: usize) -> Self {
        Resolver { layout, nr_mms }
    }
    /// An address space: the layout's, or a spare one (a fork child).
    pub fn mm(&self, sel: u8) -> usize {
        usize::from(sel) % self.nr_mms.max(self.layout.mms.len()).max(1)
    }
    /// The regions of `mm`: a spare address space (a fork child) has its
    /// parent's, the first address space of the layout.
    fn regions(&self, mm: usize) -> Option<&'a Vec<crate::state::layout::Region>> {
        self.layout.mms.get(mm).or(self.layout.mms.first())
    }
    /// The `sel`-th page of `mm`'s regions, in layout order.
    pub fn page(&self, mm: usize, sel: u16) -> Option<u64> {
        let regions = self.regions(mm)?;
        let total: u64 = regions.iter().map(|r| r.pages).sum();
        if total == 0 {
            return None;
        }
        let mut k = u64::from(sel) % total;
        for r in regions {
            if k < r.pages {
                return Some((r.start_page + k) * PAGE_SIZE);
            }
            k -= r.pages;
        }
        None
    }
    /// The `sel`-th file of the layout.
    pub fn file(&self, sel: u8) -> Option<u32> {
        let n = self.layout.files.len();
        (n > 0).then(|| (usize::from(sel) % n) as u32)
    }
    pub fn region(&self, mm: usize, sel: u8) -> Option<&'a crate::state::layout::Region> {
        let regions = self.regions(mm)?;
        if regions.is_empty() {
            return None;
        }
        regions.get(usize::from(sel) % regions.len())
    }
}

impl<B: Backend> World<B> {
    /// Executes one op. Results the kernel returns (an errno) are not violations.
    pub(crate) fn run_op(&self, ctx: &mut Ctx, layout: &Layout, op: &Op) -> Res<()> {
        let r = Resolver::new(layout, self.cfg.nr_mms);
        match *op {
            Op::Nop => {}
            Op::Touch { mm, page, write } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.user_access(ctx, mm, addr, write)?;
                }
            }
            Op::Load { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    // Judged by the page the load read: the address may map
                    // another by now.
                    if let Ok(a) = self.user_access_page(ctx, mm, addr, false)? {
                        self.check_origin(
                            ctx,
                            mm,
                            a.value,
                            a.page,
                            a.seen,
                            "read",
                            Invariant::NoLeakAfterFork,
                        )?;
                    }
                }
            }
            Op::CheckPinSees { handle } => {
                if !ctx.handles.is_empty() {
                    self.check_pin_sees(ctx, usize::from(handle) % ctx.handles.len())?;
                }
            }
            Op::MunmapPages { mm, page, nr } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let len = u64::from(nr.max(1)) * PAGE_SIZE;
                    let _ = self.munmap(ctx, mm, addr, len)?;
                }
            }
            Op::Munmap { mm, region } => {
                let mm = r.mm(mm);
                if let Some(reg) = r.region(mm, region) {
                    let _ = self.munmap(ctx, mm, reg.start(), reg.pages * PAGE_SIZE)?;
                }
            }
            Op::Mmap { mm, region } => {
                let mm = r.mm(mm);
                if let Some(reg) = r.region(mm, region) {
                    let _ = self.mmap(ctx, mm, reg.vma())?;
                }
            }
            Op::LocklessPeek { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.lockless_peek(ctx, mm, addr)?;
                }
            }
            Op::Gup {
                api,
                mm,
                page,
                nr,
                flags,
            } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    self.gup_op(ctx, api, mm, addr, i64::from(nr % 8), flags.foll(), true)?;
                }
            }
            Op::GupRaw {
                api,
                mm,
                start,
                nr_pages,
                raw_flags,
                no_pages,
            } => {
                let mm = r.mm(mm);
                // Bits no flag of the era has are passed as FOLL_MADV_POPULATE (an
                // internal flag every wrapper must refuse) beside the known ones.
                let (mut flags, unknown) = self.cfg.p().rules.decode_lossy(raw_flags);
                if unknown != 0 {
                    flags = flags.with(Flag::MadvPopulate);
                }
                self.gup_op(ctx, api, mm, start, nr_pages, flags, !no_pages)?;
            }
            Op::Release { handle, how } => self.release_op(ctx, handle, how)?,
            Op::DmaWrite { handle } => {
                if !ctx.handles.is_empty() {
                    self.dma_write(ctx, usize::from(handle) % ctx.handles.len())?;
                }
            }
            Op::Writeback { file } => {
                if let Some(inode) = r.file(file) {
                    self.writeback_inode(ctx, inode)?;
                }
            }
            Op::Reclaim { file, index } => {
                if let Some(inode) = r.file(file) {
                    let n = self.inodes[inode as usize].nr_pages().max(1);
                    self.reclaim_file_folio(ctx, inode, u32::from(index) % n)?;
                }
            }
            Op::PunchHole { file, index } => {
                if let Some(inode) = r.file(file) {
                    let n = self.inodes[inode as usize].nr_pages().max(1);
                    self.punch_hole(ctx, inode, u32::from(index) % n)?;
                }
            }
            Op::NotifierMap { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.notifier_map(ctx, mm, addr)?;
                }
            }
            Op::NotifierWrite => self.notifier_write(ctx)?,
            Op::Fork { child } => {
                let _ = self.fork(ctx, ctx.mm, r.mm(child))?;
            }
            Op::UseMm { mm } => ctx.mm = r.mm(mm),
            Op::ClearRefs { mm } => self.clear_refs_soft_dirty(ctx, r.mm(mm))?,
            Op::Collapse { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.collapse_huge_page(ctx, mm, addr)?;
                }
            }
            Op::Split { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    self.split_huge_page(ctx, mm, addr)?;
                }
            }
            Op::Migrate { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    self.compact_page(ctx, mm, addr)?;
                }
            }
            Op::Pageout { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    self.madvise_pageout(ctx, mm, addr)?;
                }
            }
            Op::KsmShare { mm, page, merge } => {
                let mm = r.mm(mm);
                match r.page(mm, page) {
                    Some(addr) if merge => {
                        self.ksm_merge_page(ctx, mm, addr)?;
                    }
                    Some(addr) => {
                        self.ksm_write_protect_page(ctx, mm, addr)?;
                    }
                    None => {}
                }
            }
            Op::ReadHandle { handle } => {
                if !ctx.handles.is_empty() {
                    self.read_handle(ctx, usize::from(handle) % ctx.handles.len())?;
                }
            }
            Op::CheckCoherent { handle } => {
                if !ctx.handles.is_empty() {
                    self.check_coherent(ctx, usize::from(handle) % ctx.handles.len())?;
                }
            }
            Op::MaybeDmaPinned { handle } => {
                if ctx.handles.is_empty() || self.cfg.p().pin == PinCounting::AsGet {
                    return Ok(());
                }
                let h = &ctx.handles[usize::from(handle) % ctx.handles.len()];
                let (Some(&page), true) = (h.pages.first(), h.pin) else {
                    return Ok(());
                };
                if self.mem.is_zero_pfn(page) && self.cfg.p().zero_page_pin_noop {
                    // c8070b787519: the zero page is never pinned (it cannot
                    // change), so it never reads as pinned either.
                    return Ok(());
                }
                if !self.page_maybe_dma_pinned(page) {
                    return Err(ctx.violation(
                        Invariant::PinnedIsVisible,
                        format!("page {page} is pinned by this thread but page_maybe_dma_pinned() says no"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One GUP call; checks the prefix-result rule and keeps the result.
    fn gup_op(
        &self,
        ctx: &mut Ctx,
        api: GupApi,
        mm: usize,
        start: u64,
        nr: i64,
        flags: Foll,
        with_pages: bool,
    ) -> Res<()> {
        // The #13 misuse: a DIO that should pin takes plain references.
        let needs_pin = api.pins();
        let api = match api {
            GupApi::PinUserPagesFast if self.cfg.has(Mutation::DioUsesFollGet) => {
                GupApi::GetUserPagesFast
            }
            other => other,
        };
        let mut pages = Vec::new();
        let out = with_pages.then_some(&mut pages);
        let me = ctx.mm;
        ctx.grabbed.clear();
        // The address space the pages come from: the remote one, or
        // current->mm. Its unmap generation is read before the call: a
        // munmap that overlaps the call (GUP-fast may grab a page the
        // munmap then zaps) is an unmap by the owner after the grab.
        let remote = matches!(api, GupApi::GetUserPagesRemote | GupApi::PinUserPagesRemote);
        let src_mm = if remote { mm } else { me };
        let unmap_gen = self.ghost.unmap_gen(src_mm);
        // get_user_pages_locked's caller holds the lock and says so.
        let mut locked = 1;
        let locked = (api == GupApi::GetUserPagesLocked).then_some(&mut locked);
        let call = GupCall::new(src_mm, start, nr, flags, out, locked);
        let ret = self.gup_entry(ctx, api, call)?;
        debug_assert_eq!(ctx.mm, me);
        // prefix result: a count of the pages filled in, or -errno with none.
        let filled = pages.len() as i64;
        // Without a pages array (a prefault) there is nothing to compare a count with.
        if (ret < 0 && filled > 0) || (with_pages && ret >= 0 && ret != filled) {
            return Err(ctx.violation(
                Invariant::PrefixResult,
                format!(
                    "{} returned {ret} with {filled} page(s) filled in",
                    api.name()
                ),
            ));
        }
        if filled > 0 {
            ctx.handles.push(Handle {
                pages,
                pin: api.pins(),
                needs_pin,
                write: flags.has(Flag::Write),
                mm: src_mm as u32,
                start,
                wb_gen: std::mem::take(&mut ctx.grabbed),
                unmap_gen,
                longterm: flags.has(Flag::Longterm),
            });
        }
        Ok(())
    }

    /// Reads the first page of GUP result `handle` through its reference. no
    /// leak after fork: a value the other side of a fork wrote after the fork
    /// must never be seen this way.
    fn read_handle(&self, ctx: &mut Ctx, handle: usize) -> Res<()> {
        let h = &ctx.handles[handle];
        let (Some(&page), reader, pinned) = (h.pages.first(), h.mm as usize, h.pin) else {
            return Ok(());
        };
        let v = self.mem.read_data(page, 0);
        let seen = self.ghost.frame(page);
        ctx.step(&self.ghost, "read through the reference", u64::from(page));
        // hugetlb_wp() reuses by mapcount: a FOLL_GET reference of a hugetlb
        // folio is not protected, a kernel behaviour cow.c marks XFAIL.
        let head = self.mem.page_folio(page);
        let class = if !pinned && self.mem.frame(head).flags.read_once() & pg::HUGETLB != 0 {
            Invariant::HugetlbGetLeak
        } else {
            Invariant::NoLeakAfterFork
        };
        // The process that obtained the reference is the one reading.
        self.check_origin(
            ctx,
            reader,
            v,
            page,
            seen,
            "read through its GUP reference",
            class,
        )
    }

    /// no leak after fork: `reader` read `v` from `page` (`how`) in the
    /// frame's life `seen`; it must not be a value the other side of a fork
    /// wrote after it.
    fn check_origin(
        &self,
        ctx: &Ctx,
        reader: usize,
        v: u64,
        page: Pfn,
        seen: Stamp,
        how: &str,
        class: Invariant,
    ) -> Res<()> {
        // Only private anonymous memory is copied at fork: a page-cache page
        // is shared with the child by design (MAP_SHARED, or MAP_PRIVATE
        // before its first write).
        if self.mem.frame(page).flags.read_once() & pg::ANON == 0 {
            return Ok(());
        }
        // Freed since the read (a load's page can be unmapped once the load
        // is done): the frame's provenance now describes another content.
        if self.ghost.frame(page) != seen {
            return Ok(());
        }
        if let Some((writer, tick)) = crate::ghost::value_origin(v) {
            if self.ghost.leaked_across_fork(writer, reader, tick, page) {
                return Err(ctx.violation(
                    class,
                    format!(
                        "mm {reader} read {v:#x} from page {page} ({how}): mm {writer} wrote it after their fork"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A page-cache page truncated or punched out of its file while a
    /// reference held it: the address faults in a new page and the pin keeps
    /// an orphan (`truncate_inode_pages_range` does not look at pins; the
    /// kernel never fixed that), so neither pin check judges it. A page that
    /// left by migration is judged: migration must refuse a referenced page.
    fn left_its_file(&self, page: Pfn) -> bool {
        let anon = self.mem.frame(page).flags.read_once() & pg::ANON != 0;
        let head = self.mem.page_folio(page);
        !anon
            && !self.mem.is_zero_pfn(page)
            && self.mem.frame(head).mapping.read_once() == 0
            && !self.ghost.left_by_migration(head)
    }

    /// cow.c's pin check: store through the pinned address; the pinned page
    /// must hold the value stored. For the pins cow.c checks, whatever the
    /// era promised: write pins, read-only pins of anonymous pages, and
    /// read-only long-term pins of anything (the zero page, private page
    /// cache); not for references that are not pins, nor after the owner
    /// unmapped the address or the page left its file (truncation, hole punch).
    fn check_pin_sees(&self, ctx: &mut Ctx, handle: usize) -> Res<()> {
        let h = ctx.handles[handle].clone();
        let Some(&page) = h.pages.first() else {
            return Ok(());
        };
        let anon = self.mem.frame(page).flags.read_once() & pg::ANON != 0;
        if !h.pin || !(h.write || h.longterm || anon) {
            return Ok(());
        }
        let mm = h.mm as usize;
        let Ok(v) = self.user_access(ctx, mm, h.start, true)? else {
            return Ok(());
        };
        // The store went where the pin looks: the address still maps the
        // pinned page (judged by frame, not by value: a device may write
        // through another pin meanwhile).
        let Some(now) = self.resolve(mm, h.start) else {
            // Unmapped (or reclaimed) by another thread since the store.
            return Ok(());
        };
        // Judged after the store: a munmap or a truncation may race with it
        // (the store then faults in a new page, legitimately).
        let unmapped = self.ghost.unmap_gen(mm) != h.unmap_gen;
        if now != page && !unmapped && !self.left_its_file(page) {
            return Err(ctx.violation(
                Invariant::CoherentPin,
                format!(
                    "a store of {v:#x} at {:#x} in mm {mm} went to page {now}, not to the pinned page {page}: the pin is not reliable",
                    h.start
                ),
            ));
        }
        Ok(())
    }

    /// coherent pin: while pinned and not unmapped by its owner, the page mapped
    /// at the pinned address is the pinned page. Checked after a store through
    /// the address (the write fault is where a Wrong COW replaces it), for what
    /// relies on it: callers that asked for a write pin (even one handed a
    /// FOLL_GET, which only FOLL_PIN makes reliable); read-only pins of
    /// anonymous memory from 5.19 (a7f226604170). R/O long-term pins of private
    /// page cache (6.2) are not checked here.
    fn check_coherent(&self, ctx: &mut Ctx, handle: usize) -> Res<()> {
        let h = ctx.handles[handle].clone();
        let Some(&page) = h.pages.first() else {
            return Ok(());
        };
        // Read-only pins are promised coherence for anonymous pages only (never
        // for the zero page, nor for page cache in a private mapping, which a
        // store copies into anonymous memory).
        let anon = self.mem.frame(page).flags.read_once() & pg::ANON != 0;
        // A caller that needed a pin for writing relies on it even if it got a
        // FOLL_GET (the #13 misuse, which finding is the point); a plain
        // get_user_pages caller was never promised it.
        let promised = (h.write && h.needs_pin) || (h.pin && self.cfg.p().unshare_ro_pins && anon);
        let mm = h.mm as usize;
        if self.user_access(ctx, mm, h.start, true)?.is_err() {
            return Ok(());
        }
        // The page mapped there now, through a PTE or a huge leaf.
        let Some(now) = self.resolve(mm, h.start) else {
            return Ok(());
        };
        let unmapped = self.ghost.unmap_gen(mm) != h.unmap_gen;
        if promised && !unmapped && now != page && !self.left_its_file(page) {
            return Err(ctx.violation(
                Invariant::CoherentPin,
                format!(
                    "after a store at {:#x} in mm {mm}, the address maps page {now} while a {} still holds page {page}: it lost its page",
                    h.start,
                    match (h.pin, h.write) {
                        (true, true) => "FOLL_WRITE pin",
                        (true, false) => "read-only pin",
                        (false, _) => "FOLL_GET reference taken for writing",
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Releases a handle the way the op says (and the mutations distort).
    fn release_op(&self, ctx: &mut Ctx, handle: u8, how: ReleaseApi) -> Res<()> {
        if ctx.handles.is_empty() {
            return Ok(());
        }
        let i = usize::from(handle) % ctx.handles.len();
        let h = ctx.handles.remove(i);
        let seed = self.cfg.p().pin_is_get;
        if h.write && how == ReleaseApi::Matching {
            // Ghost: a write reference released without dirtying the page.
            // What a device wrote through it after writeback cleaned the page
            // is lost by the caller's choice, not by the protocol.
            for &p in &h.pages {
                if let Some((inode, index)) = self.ghost.file_of(self.mem.page_folio(p)) {
                    let seq = self.ghost.tick();
                    ctx.ledger.released_clean.push(FileWriteRec {
                        seq,
                        inode,
                        index,
                        value: 0,
                        by_device: false,
                    });
                }
            }
        }
        let as_pin = if h.pin {
            !self.cfg.has(Mutation::PutPageOnPin)
        } else {
            self.cfg.has(Mutation::UnpinGet)
        };
        match (how, as_pin) {
            (ReleaseApi::Matching, true) if seed => self.put_user_pages(ctx, &h.pages),
            (_, true) if seed => self.put_user_pages_dirty_lock(ctx, &h.pages, true),
            (ReleaseApi::Matching, true) => self.unpin_user_pages(ctx, &h.pages),
            (ReleaseApi::DirtyLock, true) => self.unpin_user_pages_dirty_lock(ctx, &h.pages, true),
            (ReleaseApi::RangeDirtyLock, true) => {
                // The range call needs physically contiguous pages; otherwise the
                // caller releases page by page.
                let contiguous = h.pages.windows(2).all(|w| w[1] == w[0] + 1);
                if contiguous {
                    self.unpin_user_page_range_dirty_lock(
                        ctx,
                        h.pages[0],
                        h.pages.len() as u32,
                        true,
                    )
                } else {
                    self.unpin_user_pages_dirty_lock(ctx, &h.pages, true)
                }
            }
            (ReleaseApi::Matching, false) => {
                for &p in &h.pages {
                    self.put_page(ctx, p)?;
                }
                Ok(())
            }
            (ReleaseApi::DirtyLock | ReleaseApi::RangeDirtyLock, false) => {
                for &p in &h.pages {
                    let head = self.mem.page_folio(p);
                    self.set_page_dirty_lock(ctx, head)?;
                    self.put_page(ctx, p)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;

    #[test]
    fn zero_bytes_decode_to_nop() {
        let bytes = [0u8; 16];
        let mut u = Unstructured::new(&bytes);
        assert_eq!(Op::arbitrary(&mut u).unwrap(), Op::Nop);
    }

    #[test]
    fn ops_roundtrip_through_json() {
        let ops = vec![
            Op::Touch {
                mm: 0,
                page: 3,
                write: true,
            },
            Op::Munmap { mm: 0, region: 1 },
            Op::LocklessPeek { mm: 0, page: 0 },
        ];
        let s = serde_json::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_json::from_str(&s).unwrap();
        assert_eq!(ops, back);
    }
}
