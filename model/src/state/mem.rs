//! Physical memory: frames with `struct page` state, folios, the shared zero page
//! and the frame allocator.
//!
//! Simplifications, one line each:
//! - a frame's zone is fixed at layout; there is no buddy merging: freed folios go
//!   back to the free list of their own order, last in first out (reuse of a freed
//!   frame is what makes recheck bugs visible);
//! - `mapcount` counts PTE mappings from 0 (the kernel's `_mapcount` starts at -1);
//!   PMD mappings of a large folio are counted in the head's `entire_mapcount`;
//! - page data is two words per subpage carrying unique (writer, sequence) values.

use crate::backend::{Backend, KAtomic, Mutex};
use crate::config::CounterScale;
use crate::ghost::{Ctx, Ghost, HoldKind};
use crate::invariant::{Invariant, Res};
use crate::state::rmap::Rmap;
use crate::types::Pfn;

/// Page flags (include/linux/page-flags.h), the ones the protocol reads.
pub mod pg {
    pub const LOCKED: u32 = 1 << 0;
    pub const DIRTY: u32 = 1 << 1;
    /// Anonymous (the kernel keeps this in `folio->mapping & PAGE_MAPPING_ANON`).
    pub const ANON: u32 = 1 << 2;
    /// PG_anon_exclusive (6c287605fd56, 5.19), per subpage.
    pub const ANON_EXCLUSIVE: u32 = 1 << 3;
    /// PG_private: buffer heads attached.
    pub const HAS_BUFFERS: u32 = 1 << 4;
    pub const WRITEBACK: u32 = 1 << 5;
    /// Head of a large folio.
    pub const HEAD: u32 = 1 << 6;
    /// A page-table page.
    pub const PGTABLE: u32 = 1 << 7;
    /// PG_reserved: the shared zero page.
    pub const RESERVED: u32 = 1 << 8;
    /// hugetlb-like folio: never split or collapsed.
    pub const HUGETLB: u32 = 1 << 9;
    /// PG_swapcache: the folio is in the swap cache; its slot is in `index`
    /// (the kernel's `folio->swap`).
    pub const SWAPCACHE: u32 = 1 << 10;
    /// PG_ksm (`folio_test_ksm`: the kernel's `PAGE_MAPPING_KSM` in
    /// `folio->mapping`): a KSM page in the stable tree, never exclusive.
    pub const KSM: u32 = 1 << 11;
    /// Folio order lives in bits 16..24 of the head's flags.
    pub const ORDER_SHIFT: u32 = 16;
    pub const ORDER_MASK: u32 = 0xff << ORDER_SHIFT;
}

/// Tail pages point at their head: `compound_head` with bit 0 set in the kernel;
/// here the top bit. A split rewrites it (the race c24d37322548 rechecks for).
pub const TAIL: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Zone {
    Normal,
    Movable,
    Cma,
}

/// One `struct page` and the memory it describes.
pub struct Frame<B: Backend> {
    /// `_refcount`: signed, meaningful on the head only (tails stay 0).
    pub refcount: B::AtomicI32,
    /// PTE mappings of this subpage.
    pub mapcount: B::AtomicI32,
    /// PMD/PUD mappings of the whole folio (head only; `_entire_mapcount`).
    pub entire_mapcount: B::AtomicI32,
    /// Exact pin count of a large folio (head only; `_pincount`, 47e29d32afba / 5232c63f46fd).
    pub pincount: B::AtomicI32,
    pub flags: B::AtomicU32,
    /// `TAIL | head` for tail pages, 0 otherwise.
    pub compound_head: B::AtomicU32,
    /// Two data words of this subpage.
    pub data: [B::AtomicU64; 2],
    /// `folio->mapping` of a page-cache folio: its inode + 1 (0: none, or anon;
    /// truncation and reclaim clear it). Head only.
    pub mapping: B::AtomicU32,
    /// `folio->index`: the page's offset in its file; for a folio in the swap
    /// cache, its swap slot (`folio->swap`). Head only.
    pub index: B::AtomicU32,
    /// Reverse map of the folio (head only).
    pub rmap: Mutex<B, Rmap>,
    pub zone: Zone,
}

impl<B: Backend> Frame<B> {
    pub fn new(zone: Zone) -> Self {
        Frame {
            refcount: B::AtomicI32::new(0),
            mapcount: B::AtomicI32::new(0),
            entire_mapcount: B::AtomicI32::new(0),
            pincount: B::AtomicI32::new(0),
            flags: B::AtomicU32::new(0),
            compound_head: B::AtomicU32::new(0),
            data: [B::AtomicU64::new(0), B::AtomicU64::new(0)],
            mapping: B::AtomicU32::new(0),
            index: B::AtomicU32::new(0),
            rmap: Mutex::new(Rmap::default()),
            zone,
        }
    }
}

/// The free lists: protocol state, under one backend lock.
#[derive(Debug, Default)]
pub struct FreeLists {
    /// By order: 0, PMD order, PUD order.
    pub order0: Vec<Pfn>,
    pub pmd: Vec<Pfn>,
    pub pud: Vec<Pfn>,
    /// Page-table storage slots.
    pub tables: Vec<u32>,
}

/// Physical memory of one world.
pub struct Memory<B: Backend> {
    pub frames: Box<[Frame<B>]>,
    pub free: Mutex<B, FreeLists>,
    pub counter: CounterScale,
    pub pmd_order: u32,
    pub pud_order: u32,
    pub zero_pfn: Pfn,
}

/// Which size class an allocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Base,
    Pmd,
    Pud,
}

impl<B: Backend> Memory<B> {
    pub fn frame(&self, pfn: Pfn) -> &Frame<B> {
        &self.frames[pfn as usize]
    }

    pub(crate) fn order_of(&self, o: Order) -> u32 {
        match o {
            Order::Base => 0,
            Order::Pmd => self.pmd_order,
            Order::Pud => self.pud_order,
        }
    }

    /// `page_folio()` / `compound_head()`: a racy READ_ONCE of the tail link. The
    /// result can change while the page is unreferenced (split, free, reuse), which
    /// is why GUP-fast rechecks after taking its reference.
    #[inline]
    pub fn page_folio(&self, pfn: Pfn) -> Pfn {
        let h = self.frame(pfn).compound_head.read_once_dep();
        if h & TAIL != 0 {
            h & !TAIL
        } else {
            pfn
        }
    }

    /// `folio_order()` of a head.
    pub fn folio_order(&self, head: Pfn) -> u32 {
        (self.frame(head).flags.read_once() & pg::ORDER_MASK) >> pg::ORDER_SHIFT
    }

    pub fn folio_nr_pages(&self, head: Pfn) -> u32 {
        1 << self.folio_order(head)
    }

    /// `folio_ref_count()`.
    pub fn folio_ref_count(&self, head: Pfn) -> i32 {
        self.counter.norm(self.frame(head).refcount.read_once())
    }

    pub(crate) fn is_zero_pfn(&self, pfn: Pfn) -> bool {
        pfn == self.zero_pfn
    }

    /// `folio_ref_try_add(folio, refs)` = `atomic_add_unless(&_refcount, refs, 0)`:
    /// never raises a zero (freed or frozen) count. Fully ordered on success.
    /// Records a speculative hold; the caller confirms or drops it.
    pub fn folio_ref_try_add(
        &self,
        ctx: &mut Ctx,
        ghost: &Ghost,
        head: Pfn,
        refs: i32,
    ) -> Res<bool> {
        let rc = &self.frame(head).refcount;
        let mut cur = rc.read_once();
        loop {
            if self.counter.norm(cur) == 0 {
                return Ok(false);
            }
            let old = rc.cmpxchg(cur, cur.wrapping_add(refs));
            if old == cur {
                let stamp = ghost.frame(head);
                ctx.grab_tick = ghost.tick();
                self.check_inc(ctx, head, old, refs)?;
                ctx.hold(head, stamp.gen(), HoldKind::Speculative, i64::from(refs));
                return Ok(true);
            }
            // Someone else changed the count: retry with what we saw (progress,
            // not a spin).
            cur = old;
        }
    }

    /// `folio_ref_add()` / `folio_get()`: a plain (unordered) increment by a caller
    /// that believes the folio is live. If the frame is free this is a resurrection.
    pub fn folio_ref_add(&self, ctx: &Ctx, ghost: &Ghost, head: Pfn, refs: i32) -> Res<()> {
        let old = self.frame(head).refcount.fetch_add_relaxed(refs);
        if !ghost.frame(head).allocated() || self.counter.norm(old) == 0 {
            return Err(ctx.violation(
                Invariant::NoResurrection,
                format!(
                    "folio {head} got a reference while its refcount was zero (freed or frozen)"
                ),
            ));
        }
        self.check_inc(ctx, head, old, refs)
    }

    /// refcount bounds on an increment: none may wrap a negative (overflowed)
    /// count back to non-negative. Racing grabs can each pass the "< 0" refusal and
    /// overshoot into the negative (atomic_add_unless only refuses zero): the
    /// kernel allows that, so it is not a violation by itself.
    fn check_inc(&self, ctx: &Ctx, head: Pfn, old_raw: i32, refs: i32) -> Res<()> {
        let old = self.counter.norm(old_raw);
        let new = self.counter.norm(old_raw.wrapping_add(refs));
        if old < 0 && new >= 0 {
            return Err(ctx.violation(
                Invariant::RefcountBounds,
                format!("folio {head} refcount wrapped from {old} back to {new}"),
            ));
        }
        Ok(())
    }

    /// `folio_put_refs()`: `atomic_sub_return` (fully ordered); the last reference
    /// frees the folio. Returns true if it was freed.
    pub fn folio_put_refs(
        &self,
        ctx: &mut Ctx,
        ghost: &Ghost,
        head: Pfn,
        refs: i32,
        kind: Option<HoldKind>,
    ) -> Res<bool> {
        // The generation is read while the reference being dropped still keeps
        // the frame alive: after the decrement another holder's last put may
        // free it, and a real thread would book this release to its next life.
        let stamp = ghost.frame(head);
        let new_raw = self.frame(head).refcount.sub_return(refs);
        if let Some(k) = kind {
            ctx.hold(head, stamp.gen(), k, -i64::from(refs));
        }
        let new = self.counter.norm(new_raw);
        let old = self.counter.norm(new_raw.wrapping_add(refs));
        if new < 0 && old >= 0 {
            // From a sane count to below zero: more released than held. (An
            // overflowed count stays negative while its holders release.)
            return Err(ctx.violation(
                Invariant::RefcountBounds,
                format!("folio {head} refcount dropped below zero, from {old} to {new}"),
            ));
        }
        if new == 0 {
            self.free_folio(ctx, ghost, head)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `free_unref_page` / `free_frozen_pages`: the frames go back to their free
    /// list, last in first out.
    pub(crate) fn free_folio(&self, ctx: &mut Ctx, ghost: &Ghost, head: Pfn) -> Res<()> {
        if self.is_zero_pfn(head) {
            return Err(ctx.violation(
                Invariant::RefcountBounds,
                "the shared zero page was freed".to_string(),
            ));
        }
        // The generation moves on at the moment the count reached zero: any access
        // through an earlier stamp is now a use after free. The head first, before
        // the next backend read; tails once the order is known.
        ghost.frame_freed(head);
        let order = self.folio_order(head);
        let nr = 1u32 << order;
        for p in head + 1..head + nr {
            ghost.frame_freed(p);
        }
        ctx.step(ghost, "free_frozen_pages", u64::from(head));
        let mut fl = self.free.lock();
        if order == 0 {
            fl.order0.push(head);
        } else if order == self.pmd_order {
            fl.pmd.push(head);
        } else {
            fl.pud.push(head);
        }
        Ok(())
    }

    /// `alloc_pages()` / `folio_alloc()`: pops the most recently freed folio of the
    /// order and hands it out with refcount 1 (a Release store: the frame's reset
    /// state is published with it). `None` is -ENOMEM.
    pub fn alloc_folio(&self, ctx: &mut Ctx, ghost: &Ghost, o: Order, flags: u32) -> Option<Pfn> {
        self.alloc_folio_where(ctx, ghost, o, flags, |_| true)
    }

    /// A fresh exclusive anonymous base page (`folio_prealloc` for a fault); under
    /// PF_MEMALLOC_PIN (a FOLL_LONGTERM pin faulting) never from ZONE_MOVABLE/CMA.
    pub(crate) fn alloc_anon(&self, ctx: &mut Ctx, ghost: &Ghost) -> Option<Pfn> {
        let pin = ctx.memalloc_pin;
        self.alloc_folio_where(
            ctx,
            ghost,
            Order::Base,
            pg::ANON | pg::ANON_EXCLUSIVE,
            |z| !pin || z == Zone::Normal,
        )
    }

    /// `alloc_pages()` restricted to zones `accept` allows (PF_MEMALLOC_PIN keeps
    /// long-term pinned allocations out of ZONE_MOVABLE and CMA): the most recently
    /// freed acceptable folio.
    pub fn alloc_folio_where(
        &self,
        ctx: &mut Ctx,
        ghost: &Ghost,
        o: Order,
        flags: u32,
        accept: impl Fn(Zone) -> bool,
    ) -> Option<Pfn> {
        let head = {
            let mut fl = self.free.lock();
            let list = match o {
                Order::Base => &mut fl.order0,
                Order::Pmd => &mut fl.pmd,
                Order::Pud => &mut fl.pud,
            };
            let i = list.iter().rposition(|&p| accept(self.frame(p).zone))?;
            list.remove(i)
        };
        let order = self.order_of(o);
        self.prep_folio(head, order, flags);
        for p in head..head + (1 << order) {
            ghost.frame_allocated(p);
        }
        ctx.step(ghost, "alloc_pages", u64::from(head));
        Some(head)
    }

    /// `prep_new_page` + `prep_compound_page`: reset state, link tails to the head,
    /// then publish refcount 1.
    pub(crate) fn prep_folio(&self, head: Pfn, order: u32, flags: u32) {
        let nr = 1u32 << order;
        let head_flags = flags | (order << pg::ORDER_SHIFT) | if order > 0 { pg::HEAD } else { 0 };
        for p in head..head + nr {
            let f = self.frame(p);
            if p != head {
                f.flags.write_once(flags & (pg::ANON | pg::ANON_EXCLUSIVE));
                f.compound_head.write_once(TAIL | head);
            } else {
                f.flags.write_once(head_flags);
                f.compound_head.write_once(0);
            }
            f.mapcount.write_once(0);
        }
        let h = self.frame(head);
        h.mapping.write_once(0);
        h.entire_mapcount.write_once(0);
        h.pincount.write_once(0);
        h.refcount.store_release(1);
    }

    /// Writes a (writer, sequence) value into a subpage.
    pub fn write_data(&self, pfn: Pfn, word: usize, value: u64) {
        self.frame(pfn).data[word & 1].write_once(value);
    }
    pub fn read_data(&self, pfn: Pfn, word: usize) -> u64 {
        self.frame(pfn).data[word & 1].read_once()
    }
}
