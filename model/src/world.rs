//! The World: one instance of the modelled machine (memory, page tables, address
//! spaces, walkers, ghost state), and the builder that lays out a populated address
//! space directly, without running faults (small worlds for model checkers).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Condvar, KAtomic, Mutex, Std};
use crate::config::{WorldConfig, PAGE_SHIFT, PAGE_SIZE};
use crate::device::{NotifierDev, NotifierState};
use crate::file::{Cached, FileSpec, FsFlavour, Inode};
use crate::ghost::{Ctx, Ghost, HoldKind, Invariant, Ledger, Res, Violation};
use crate::mem::{pg, Frame, FreeLists, Memory, Order, Pfn, Zone};
use crate::mm::{vm, Mm, Vma, VmaKind};
use crate::pgtable::{PageTable, Pte};
use crate::rmap::RmapEntry;
use crate::tlb::Walkers;

pub struct World<B: Backend> {
    pub cfg: WorldConfig,
    pub mem: Memory<B>,
    /// Page-table storage, by slot.
    pub tables: Box<[PageTable<B>]>,
    pub mms: Box<[Mm<B>]>,
    pub walkers: Walkers<B>,
    /// The page wait queue (`folio_wait_table`): sleepers on PG_locked.
    pub page_waitq: Mutex<B, ()>,
    pub page_waitq_cv: Condvar<B>,
    /// The swap device: a slot holds a swapped-out page's two data words.
    pub swap: Mutex<B, Vec<Option<[u64; 2]>>>,
    /// Page tables freed under RCU table freeing, waiting for their grace period:
    /// (slot, walkers that must leave first). `tlb_remove_table_rcu` callbacks.
    pub rcu_pending: Mutex<B, Vec<RcuTable>>,
    /// How many are pending: a hint that spares allocations a lock when none is.
    rcu_pending_hint: std::sync::atomic::AtomicUsize,
    /// Files: page cache and disk (file.rs).
    pub inodes: Box<[Inode<B>]>,
    /// `i_mmap_rwsem` / the anon_vma lock, for one purpose: rmap walkers
    /// (page_mkclean, try_to_unmap) hold it for read while they walk page tables
    /// they reached through the rmap; `free_pgtables` holds it for write.
    pub rmap_walk_lock: crate::backend::RwLock<B, ()>,
    /// The driver with an MMU interval notifier, if the layout has one.
    pub notifier: Option<NotifierDev<B>>,
    pub ghost: Ghost,
}

/// A page table waiting for its grace period, and the walkers it waits for.
pub type RcuTable = (u32, Vec<(usize, u32)>);

/// How a region of the layout starts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Populate {
    /// Nothing mapped: the first access faults.
    None,
    /// Read-faulted: every page maps the shared zero page.
    ZeroPage,
    /// Write-faulted: exclusive anonymous base pages.
    Anon,
    /// PMD-mapped anonymous THPs (the region must be PMD-aligned).
    Thp,
    /// PTE-mapped anonymous THPs: PMD-order folios, one PTE per subpage,
    /// writable and clean as a split or a migration before 6.1 leaves them
    /// (the region must be PMD-aligned).
    ThpPte,
    /// PUD-mapped hugetlb-like folios (never split or collapsed; PUD-aligned).
    Hugetlb,
    /// Swapped out: each PTE is a swap entry, the data in a swap slot.
    Swapped,
    /// A file region mapping the file's cached pages: writable and dirty where
    /// the page is dirty and the mapping shared and writable, else read-only.
    PageCache,
}

/// One VMA of the initial layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Start, in pages from the bottom of the address space.
    pub start_page: u64,
    pub pages: u64,
    pub writable: bool,
    pub kind: VmaKind,
    pub populate: Populate,
}

impl Region {
    pub fn anon(start_page: u64, pages: u64, populate: Populate) -> Self {
        Region {
            start_page,
            pages,
            writable: true,
            kind: VmaKind::AnonPrivate,
            populate,
        }
    }
    /// A mapping of file `inode` from its first page (pgoff 0).
    pub fn file(start_page: u64, pages: u64, inode: u32, shared: bool, populate: Populate) -> Self {
        let base = start_page;
        Region {
            start_page,
            pages,
            writable: true,
            kind: if shared {
                VmaKind::FileShared { inode, base }
            } else {
                VmaKind::FilePrivate { inode, base }
            },
            populate,
        }
    }
    pub fn start(&self) -> u64 {
        self.start_page * PAGE_SIZE
    }
    pub fn end(&self) -> u64 {
        (self.start_page + self.pages) * PAGE_SIZE
    }
    pub fn vma(&self) -> Vma {
        let mut flags = vm::READ | vm::MAYREAD | vm::MAYWRITE;
        if self.writable {
            flags |= vm::WRITE;
        }
        if matches!(self.kind, VmaKind::FileShared { .. }) {
            flags |= vm::SHARED;
        }
        Vma {
            start: self.start(),
            end: self.end(),
            flags,
            kind: self.kind,
        }
    }
}

/// The address spaces of a world, each a list of regions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub mms: Vec<Vec<Region>>,
    /// Free PMD-order folios to provide beyond the layout's own THPs.
    #[serde(default)]
    pub spare_pmd_folios: usize,
    /// Free PUD-order (hugetlb-like) folios beyond the layout's own.
    #[serde(default)]
    pub spare_pud_folios: usize,
    /// Files, by inode number.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// A driver with an MMU interval notifier over every address space.
    #[serde(default)]
    pub notifier: bool,
}

/// How many large folios a world carves out of its frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeFolios {
    pub pmd: usize,
    pub pud: usize,
}

impl Layout {
    pub fn one(regions: Vec<Region>) -> Self {
        Layout {
            mms: vec![regions],
            ..Layout::default()
        }
    }
    /// Large folios the layout needs, plus the spares.
    pub fn large_folios(&self, cfg: &WorldConfig) -> LargeFolios {
        let count = |p: Populate, order: u32| -> usize {
            let per = 1u64 << order;
            self.mms
                .iter()
                .flatten()
                .filter(|r| r.populate == p)
                .map(|r| r.pages.div_ceil(per) as usize)
                .sum()
        };
        LargeFolios {
            pmd: count(Populate::Thp, cfg.pmd_order())
                + count(Populate::ThpPte, cfg.pmd_order())
                + self.spare_pmd_folios,
            pud: count(Populate::Hugetlb, cfg.pud_order()) + self.spare_pud_folios,
        }
    }
}

impl<B: Backend> World<B> {
    /// An empty world: frame 0 is the shared zero page; PUD-order then PMD-order
    /// folios are carved at aligned frame numbers from the top of memory; the rest
    /// are base pages, the lowest `cma_frames` in CMA and the next `movable_frames`
    /// in ZONE_MOVABLE. Every mm gets its PGD.
    pub fn new(cfg: WorldConfig, large: LargeFolios) -> Result<Self, String> {
        cfg.validate()?;
        let fanout = cfg.fanout();
        let mut free = FreeLists::default();
        let mut top = cfg.nr_frames;
        let mut carve = |count: usize, order: u32, what: &str| -> Result<Vec<Pfn>, String> {
            let nr = 1usize << order;
            let mut heads = Vec::new();
            for _ in 0..count {
                let start = top.saturating_sub(nr) & !(nr - 1);
                if start < 1 || start + nr > top {
                    return Err(format!(
                        "{} frames cannot hold {count} {what} folios of {nr} pages",
                        cfg.nr_frames
                    ));
                }
                heads.push(start as Pfn);
                top = start;
            }
            // Pop order is ascending frame numbers: deterministic layouts.
            heads.reverse();
            Ok(heads)
        };
        free.pud = carve(large.pud, cfg.pud_order(), "PUD-order")?;
        free.pmd = carve(large.pmd, cfg.pmd_order(), "PMD-order")?;
        if top <= 1 + cfg.cma_frames + cfg.movable_frames {
            return Err(format!(
                "{} frames leave no normal base page beside the large folios, CMA and movable frames",
                cfg.nr_frames
            ));
        }
        free.order0 = (1..top as Pfn).rev().collect();
        free.tables = (0..cfg.nr_tables as u32).rev().collect();
        // Frame 0 is the zero page; CMA frames come first, then movable ones.
        let zone = |pfn: usize| match pfn.wrapping_sub(1) {
            i if i < cfg.cma_frames => Zone::Cma,
            i if i < cfg.cma_frames + cfg.movable_frames => Zone::Movable,
            _ => Zone::Normal,
        };
        let frames: Box<[Frame<B>]> = (0..cfg.nr_frames).map(|p| Frame::new(zone(p))).collect();
        let mem = Memory {
            frames,
            free: Mutex::new(free),
            counter: cfg.counter,
            pmd_order: cfg.pmd_order(),
            pud_order: cfg.pud_order(),
            zero_pfn: 0,
        };
        let ghost = Ghost::new(cfg.nr_frames, cfg.nr_tables, cfg.fanout(), B::MODEL_CHECKED);
        // The zero page: reserved, one permanent reference, never freed.
        mem.prep_folio(0, 0, pg::RESERVED);
        ghost.frame_allocated(0);
        let tables: Box<[PageTable<B>]> =
            (0..cfg.nr_tables).map(|_| PageTable::new(fanout)).collect();
        let mut w = World {
            walkers: Walkers::new(cfg.nr_cpus),
            page_waitq: Mutex::new(()),
            page_waitq_cv: Condvar::new(),
            rcu_pending: Mutex::new(Vec::new()),
            swap: Mutex::new(Vec::new()),
            rcu_pending_hint: std::sync::atomic::AtomicUsize::new(0),
            inodes: Box::new([]),
            rmap_walk_lock: crate::backend::RwLock::new(()),
            notifier: None,
            mms: Box::new([]),
            cfg,
            mem,
            tables,
            ghost,
        };
        let mut boot = Ctx::new(usize::MAX, 0, false);
        let mut mms = Vec::new();
        for id in 0..w.cfg.nr_mms {
            let pgd = w
                .alloc_table(&mut boot)
                .ok_or("no page-table slot or frame left for a PGD")?;
            mms.push(Mm::new(id as u32, pgd));
        }
        w.mms = mms.into_boxed_slice();
        Ok(w)
    }

    /// A world with the state of `img` (built on the std backend), constructed
    /// without a single backend operation: under loom and shuttle the layout then
    /// costs no scheduling decisions, only object creation. `img` must be
    /// quiescent (freshly built).
    pub fn from_image(img: &World<Std>) -> World<B> {
        let frames = img
            .mem
            .frames
            .iter()
            .map(|f| Frame {
                refcount: B::AtomicI32::new(f.refcount.read_once()),
                mapcount: B::AtomicI32::new(f.mapcount.read_once()),
                entire_mapcount: B::AtomicI32::new(f.entire_mapcount.read_once()),
                pincount: B::AtomicI32::new(f.pincount.read_once()),
                flags: B::AtomicU32::new(f.flags.read_once()),
                compound_head: B::AtomicU32::new(f.compound_head.read_once()),
                data: [
                    B::AtomicU64::new(f.data[0].read_once()),
                    B::AtomicU64::new(f.data[1].read_once()),
                ],
                mapping: B::AtomicU32::new(f.mapping.read_once()),
                index: B::AtomicU32::new(f.index.read_once()),
                rmap: Mutex::new(f.rmap.lock().clone()),
                zone: f.zone,
            })
            .collect();
        let free = img.mem.free.lock();
        let mem = Memory {
            frames,
            free: Mutex::new(FreeLists {
                order0: free.order0.clone(),
                pmd: free.pmd.clone(),
                pud: free.pud.clone(),
                tables: free.tables.clone(),
            }),
            counter: img.mem.counter,
            pmd_order: img.mem.pmd_order,
            pud_order: img.mem.pud_order,
            zero_pfn: img.mem.zero_pfn,
        };
        drop(free);
        let tables = img
            .tables
            .iter()
            .map(|t| PageTable {
                entries: t
                    .entries
                    .iter()
                    .map(|e| B::AtomicU64::new(e.read_once()))
                    .collect(),
                ptl: Mutex::new(()),
            })
            .collect();
        let mms = img
            .mms
            .iter()
            .map(|m| Mm {
                id: m.id,
                mmap_lock: crate::backend::RwLock::new(m.mmap_lock.read().clone()),
                pgd: m.pgd,
                write_protect_seq: B::AtomicU32::new(m.write_protect_seq.read_once()),
                flags: B::AtomicU32::new(m.flags.read_once()),
            })
            .collect();
        World {
            cfg: img.cfg.clone(),
            mem,
            tables,
            mms,
            walkers: Walkers::new(img.cfg.nr_cpus),
            page_waitq: Mutex::new(()),
            page_waitq_cv: Condvar::new(),
            swap: Mutex::new(img.swap.lock().clone()),
            rcu_pending: Mutex::new(Vec::new()),
            rcu_pending_hint: std::sync::atomic::AtomicUsize::new(0),
            inodes: img
                .inodes
                .iter()
                .map(|i| Inode {
                    id: i.id,
                    flavour: i.flavour,
                    i_pages: Mutex::new(i.i_pages.lock().clone()),
                    disk: Mutex::new(i.disk.lock().clone()),
                    invalidate_lock: crate::backend::RwLock::new(()),
                })
                .collect(),
            rmap_walk_lock: crate::backend::RwLock::new(()),
            notifier: img.notifier.as_ref().map(|n| {
                let st = n.lock.lock();
                NotifierDev {
                    lock: Mutex::new(NotifierState {
                        seq: st.seq,
                        active: st.active,
                        ptes: st.ptes.clone(),
                    }),
                    done: Condvar::new(),
                }
            }),
            ghost: img.ghost.snapshot(B::MODEL_CHECKED),
        }
    }

    /// Builds a world and lays out `layout` directly: VMAs, tables, pages, rmap.
    pub fn build(cfg: WorldConfig, layout: &Layout) -> Result<Self, String> {
        if layout.mms.len() > cfg.nr_mms {
            return Err(format!(
                "layout has {} address spaces, config allows {}",
                layout.mms.len(),
                cfg.nr_mms
            ));
        }
        let large = layout.large_folios(&cfg);
        let mut w = World::new(cfg, large)?;
        w.inodes = layout
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| Inode::new(i as u32, f))
            .collect();
        if layout.notifier {
            w.notifier = Some(NotifierDev {
                lock: Mutex::new(NotifierState::default()),
                done: Condvar::new(),
            });
        }
        let mut boot = Ctx::new(usize::MAX, 0, false);
        for (i, f) in layout.files.iter().enumerate() {
            w.layout_file(&mut boot, i as u32, f)?;
        }
        for (id, regions) in layout.mms.iter().enumerate() {
            for r in regions {
                w.layout_region(&mut boot, id, r)?;
            }
        }
        Ok(w)
    }

    /// Fills a file's page cache as its spec says (each page holds the cache's
    /// reference, and a dirty page in the buffer-head flavour its buffers').
    fn layout_file(&self, boot: &mut Ctx, inode: u32, f: &FileSpec) -> Result<(), String> {
        if f.cached == Cached::No {
            return Ok(());
        }
        for index in 0..f.pages {
            let dirty = f.cached == Cached::Dirty;
            let buffers = dirty && f.flavour == FsFlavour::BufferHead;
            let mut flags = if dirty { pg::DIRTY } else { 0 };
            if buffers {
                flags |= pg::HAS_BUFFERS;
            }
            let pfn = self
                .mem
                .alloc_folio(boot, &self.ghost, Order::Base, flags)
                .ok_or("layout needs more frames for the page cache")?;
            if buffers {
                self.mem.frame(pfn).refcount.add(1);
            }
            self.set_folio_file(pfn, Some((inode, index)));
            self.inodes[inode as usize].i_pages.lock()[index as usize] = Some(pfn);
        }
        Ok(())
    }

    fn layout_region(&self, boot: &mut Ctx, mm: usize, r: &Region) -> Result<(), String> {
        if r.pages == 0 || r.end() > self.cfg.va_size() {
            return Err(format!(
                "region at page {} of {} pages does not fit the {}-bit address space",
                r.start_page,
                r.pages,
                self.cfg.va_size().trailing_zeros()
            ));
        }
        let vma = r.vma();
        {
            let mut vmas = self.mms[mm].mmap_lock.write();
            if vmas.iter().any(|v| v.start < vma.end && vma.start < v.end) {
                return Err(format!("region at page {} overlaps another", r.start_page));
            }
            vmas.push(vma);
            vmas.sort_by_key(|v| v.start);
        }
        let oom = || "layout needs more frames or page-table slots".to_string();
        match r.populate {
            Populate::None => {}
            Populate::PageCache => {
                let (inode, shared) = match r.kind {
                    VmaKind::FileShared { inode, .. } => (inode, true),
                    VmaKind::FilePrivate { inode, .. } => (inode, false),
                    VmaKind::AnonPrivate => {
                        return Err(format!(
                            "region at page {} maps the page cache but is anonymous",
                            r.start_page
                        ))
                    }
                };
                let ino = self
                    .inodes
                    .get(inode as usize)
                    .ok_or_else(|| format!("region maps inode {inode}, which the layout lacks"))?;
                for p in 0..r.pages {
                    let addr = r.start() + p * PAGE_SIZE;
                    let index = vma.file_index(addr);
                    let cached = ino.i_pages.lock().get(index as usize).copied().flatten();
                    let Some(pfn) = cached else {
                        return Err(format!(
                            "region at page {} maps index {index} of inode {inode}, which is not cached",
                            r.start_page
                        ));
                    };
                    let (slot, idx) = self.ensure_pte_table(boot, mm, addr)?.ok_or_else(oom)?;
                    let dirty = self.mem.frame(pfn).flags.read_once() & pg::DIRTY != 0;
                    let write = shared && r.writable && dirty;
                    self.mem.frame(pfn).refcount.add(1);
                    self.add_rmap(pfn, RmapEntry::pte(mm, addr));
                    self.tables[slot as usize].set(idx, Pte::mk_page(pfn, write, write));
                }
            }
            Populate::Swapped => {
                for p in 0..r.pages {
                    let addr = r.start() + p * PAGE_SIZE;
                    let (slot, idx) = self.ensure_pte_table(boot, mm, addr)?.ok_or_else(oom)?;
                    let mut swap = self.swap.lock();
                    swap.push(Some([0, 0]));
                    let entry = Pte::mk_swap((swap.len() - 1) as u32);
                    drop(swap);
                    self.tables[slot as usize].set(idx, entry);
                }
            }
            Populate::ZeroPage | Populate::Anon => {
                for p in 0..r.pages {
                    let addr = r.start() + p * PAGE_SIZE;
                    let (slot, idx) = self.ensure_pte_table(boot, mm, addr)?.ok_or_else(oom)?;
                    let pte = if r.populate == Populate::ZeroPage {
                        Pte::mk_zero(self.mem.zero_pfn)
                    } else {
                        let pfn = self.mem.alloc_anon(boot, &self.ghost).ok_or_else(oom)?;
                        self.add_rmap(pfn, RmapEntry::pte(mm, addr));
                        Pte::mk_page(pfn, r.writable, true)
                    };
                    self.tables[slot as usize].set(idx, pte);
                }
            }
            Populate::ThpPte => {
                let per = 1u64 << self.cfg.pmd_order();
                if r.start_page % per != 0 || r.pages % per != 0 {
                    return Err(format!(
                        "ThpPte region at page {} is not aligned to {per} pages",
                        r.start_page
                    ));
                }
                let mut head = 0;
                for p in 0..r.pages {
                    let addr = r.start() + p * PAGE_SIZE;
                    if p % per == 0 {
                        head = self
                            .mem
                            .alloc_folio(
                                boot,
                                &self.ghost,
                                Order::Pmd,
                                pg::ANON | pg::ANON_EXCLUSIVE,
                            )
                            .ok_or_else(oom)?;
                    } else {
                        // One reference per PTE mapping.
                        self.mem.frame(head).refcount.add(1);
                    }
                    let pfn = head + (p % per) as Pfn;
                    let (slot, idx) = self.ensure_pte_table(boot, mm, addr)?.ok_or_else(oom)?;
                    self.add_rmap(pfn, RmapEntry::pte(mm, addr));
                    self.tables[slot as usize].set(idx, Pte::mk_page(pfn, r.writable, false));
                }
            }
            Populate::Thp | Populate::Hugetlb => {
                let (order, level, o, extra) = if r.populate == Populate::Thp {
                    (self.cfg.pmd_order(), 2, Order::Pmd, 0)
                } else {
                    (self.cfg.pud_order(), 3, Order::Pud, pg::HUGETLB)
                };
                let per = 1u64 << order;
                if r.start_page % per != 0 || r.pages % per != 0 {
                    return Err(format!(
                        "{:?} region at page {} is not aligned to {per} pages",
                        r.populate, r.start_page
                    ));
                }
                for f in 0..r.pages / per {
                    let addr = r.start() + f * per * PAGE_SIZE;
                    let (slot, idx) = self
                        .ensure_table_at(boot, mm, addr, level)?
                        .ok_or_else(oom)?;
                    let head = self
                        .mem
                        .alloc_folio(boot, &self.ghost, o, pg::ANON | pg::ANON_EXCLUSIVE | extra)
                        .ok_or_else(oom)?;
                    self.add_rmap(head, RmapEntry::huge(mm, addr));
                    self.tables[slot as usize].set(idx, Pte::mk_leaf(head, r.writable, true));
                }
            }
        }
        Ok(())
    }

    /// Records a new mapping of `pfn` (its folio) at `e`: mapcount and rmap.
    /// `folio_add_new_anon_rmap` / `folio_add_anon_rmap_pte(s)` / `_pmd`.
    pub fn add_rmap(&self, pfn: Pfn, e: RmapEntry) {
        let head = self.mem.page_folio(pfn);
        if e.huge {
            self.mem.frame(head).entire_mapcount.add(1);
        } else {
            self.mem.frame(pfn).mapcount.add(1);
        }
        self.mem.frame(head).rmap.lock().add(e);
    }

    /// `folio_remove_rmap_pte` / `_pmd`: false if the mapping was not recorded.
    pub fn remove_rmap(&self, pfn: Pfn, e: RmapEntry) -> bool {
        let head = self.mem.page_folio(pfn);
        if e.huge {
            self.mem.frame(head).entire_mapcount.sub(1);
        } else {
            self.mem.frame(pfn).mapcount.sub(1);
        }
        self.mem.frame(head).rmap.lock().remove(&e)
    }

    /// `rmap_walk()` over the PTE mappings of folio `head`, holding
    /// `rmap_walk_lock` (the model's `i_mmap_rwsem`): for each mapping, inside an
    /// MMU-notifier range, `one` gets the mapping and the PTE table slot and index
    /// that map its address (`page_vma_mapped_walk`); it takes the PTL itself.
    pub fn rmap_walk_ptes(
        &self,
        ctx: &mut Ctx,
        head: Pfn,
        mut one: impl FnMut(&mut Ctx, RmapEntry, u32, usize) -> Res<()>,
    ) -> Res<()> {
        let _walk = self.rmap_walk_lock.read();
        let mappings = self.mem.frame(head).rmap.lock().entries();
        for e in mappings.into_iter().filter(|e| !e.huge) {
            let mm = e.mm as usize;
            self.mmu_notifier_invalidate_range_start(ctx, mm, e.addr, e.addr + PAGE_SIZE);
            let r = match self.locked_pte_slot(mm, e.addr) {
                Some((slot, idx)) => one(ctx, e, slot, idx),
                None => Ok(()),
            };
            self.mmu_notifier_invalidate_range_end(ctx);
            r?;
        }
        Ok(())
    }

    /// `tlb_remove_table()` under RCU table freeing: queue the table behind a grace
    /// period (`call_rcu`) and return at once.
    pub fn call_rcu_table(&self, ctx: &mut Ctx, slot: u32) {
        let snap = self.walkers.snapshot();
        ctx.step(&self.ghost, "tlb_remove_table: call_rcu", u64::from(slot));
        self.rcu_pending.lock().push((slot, snap));
        self.rcu_pending_hint
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs the RCU callbacks whose grace period has elapsed (`rcu_core`), freeing
    /// their tables. Called where memory is allocated, and at quiescence.
    pub fn rcu_reclaim(&self, ctx: &mut Ctx) -> Res<()> {
        if self
            .rcu_pending_hint
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            return Ok(());
        }
        let ready: Vec<u32> = {
            let mut pending = self.rcu_pending.lock();
            let mut ready = Vec::new();
            pending.retain(|(slot, snap)| {
                let done = self.walkers.elapsed(snap);
                if done {
                    ready.push(*slot);
                }
                !done
            });
            ready
        };
        self.rcu_pending_hint
            .fetch_sub(ready.len(), std::sync::atomic::Ordering::SeqCst);
        for slot in ready {
            self.free_table(ctx, slot)?;
        }
        Ok(())
    }

    /// `rcu_barrier()` at quiescence: no walker is left, every callback runs.
    pub fn rcu_barrier(&self, ctx: &mut Ctx) -> Res<()> {
        self.rcu_reclaim(ctx)
    }

    /// `pte_alloc_one` / `pmd_alloc_one`: a table slot plus the frame it occupies.
    /// Tables are freed only once empty, so a fresh slot has all entries none.
    pub fn alloc_table(&self, ctx: &mut Ctx) -> Option<u32> {
        if self.rcu_reclaim(ctx).is_err() {
            return None;
        }
        let pfn = self
            .mem
            .alloc_folio(ctx, &self.ghost, Order::Base, pg::PGTABLE)?;
        let slot = self.mem.free.lock().tables.pop();
        match slot {
            Some(s) => {
                self.ghost.table_allocated(s, pfn);
                Some(s)
            }
            None => {
                // Give the frame back: no storage for the table.
                let _ = self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None);
                None
            }
        }
    }

    /// `pte_free` / `__tlb_remove_table`: the table's generation moves on and its
    /// frame and slot return to the allocator.
    pub fn free_table(&self, ctx: &mut Ctx, slot: u32) -> Res<()> {
        let pfn = self.ghost.table_frame(slot);
        self.ghost.table_freed(slot);
        ctx.step(&self.ghost, "__tlb_remove_table", u64::from(slot));
        self.mem.free.lock().tables.push(slot);
        self.mem.folio_put_refs(ctx, &self.ghost, pfn, 1, None)?;
        Ok(())
    }

    /// The PTE table and index for `addr`, allocating missing levels
    /// (`__pte_alloc`). `Ok(None)` is -ENOMEM; a huge leaf on the way is an error.
    pub fn ensure_pte_table(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
    ) -> Result<Option<(u32, usize)>, String> {
        self.ensure_table_at(ctx, mm, addr, 1)
    }

    /// The table at `level` (1 = PTE table, 2 = PMD table) covering `addr`, and the
    /// index of `addr` in it, allocating what is missing. Each new table is
    /// published after an smp_wmb (`pmd_install`: the zeroed table must be visible
    /// before the entry pointing to it), under the parent table's PTL.
    pub fn ensure_table_at(
        &self,
        ctx: &mut Ctx,
        mm: usize,
        addr: u64,
        level: u32,
    ) -> Result<Option<(u32, usize)>, String> {
        let mut slot = self.mms[mm].pgd;
        for l in (level + 1..=4).rev() {
            let t = &self.tables[slot as usize];
            let i = self.cfg.index(addr, l);
            let mut e = t.read(i);
            if e.is_none() {
                let Some(new) = self.alloc_table(ctx) else {
                    return Ok(None);
                };
                let g = t.ptl.lock();
                e = t.read(i);
                if e.is_none() {
                    B::smp_wmb();
                    e = Pte::mk_table(new);
                    t.set(i, e);
                    drop(g);
                    ctx.step(&self.ghost, "pmd_install", addr);
                } else {
                    drop(g);
                    self.free_table(ctx, new).map_err(|v| v.to_string())?;
                }
            }
            if e.leaf() {
                return Err(format!(
                    "address {addr:#x} is covered by a huge leaf at level {l}"
                ));
            }
            slot = e.table_slot();
        }
        Ok(Some((slot, self.cfg.index(addr, level))))
    }

    /// Conservation at quiescence: every allocated folio's refcount equals the
    /// holders the ledger knows (mappings found by scanning the page tables, page
    /// tables, the zero page's own reference, GUP holders); mapcounts equal the
    /// mappings; every free frame has refcount zero; no speculative reference is
    /// left; every address still mapped holds the last value written to it. `ledger`
    /// is every thread's ledger, merged.
    pub fn check_quiescent(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        self.rcu_barrier(&mut Ctx::new(usize::MAX, 0, false))?;
        self.check_conservation(&ledger.holds)?;
        let pins_held: i64 = ledger
            .holds
            .iter()
            .filter(|h| h.kind == HoldKind::Pin)
            .map(|h| h.count)
            .sum();
        if pins_held == 0 && ledger.pin_acquired != ledger.pin_released {
            return Err(Box::new(Violation {
                invariant: Invariant::Conservation,
                thread: None,
                step: "quiescence".into(),
                detail: format!(
                    "no pin is held but nr_foll_pin_acquired {} != nr_foll_pin_released {}",
                    ledger.pin_acquired, ledger.pin_released
                ),
            }));
        }
        self.check_writes(ledger)?;
        self.check_files(ledger)
    }

    /// no lost write and no dirty page without buffers, for files: every cached
    /// page is dirty or matches the disk (a clean page that differs will be
    /// dropped by reclaim without a write); a buffer-head filesystem has no dirty
    /// page without buffers; the last value written to each file page is in the
    /// cached page, or on disk if none is cached.
    pub fn check_files(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        let fail = |invariant, detail: String| {
            Box::new(Violation {
                invariant,
                thread: None,
                step: "quiescence".into(),
                detail,
            })
        };
        for ino in self.inodes.iter() {
            let cache = ino.i_pages.lock().clone();
            let disk = ino.disk.lock().clone();
            for (index, p) in cache.iter().enumerate() {
                let Some(p) = *p else { continue };
                let flags = self.mem.frame(p).flags.read_once();
                let data = [self.mem.read_data(p, 0), self.mem.read_data(p, 1)];
                if flags & pg::DIRTY != 0 {
                    if ino.flavour == FsFlavour::BufferHead && flags & pg::HAS_BUFFERS == 0 {
                        return Err(fail(
                            Invariant::DirtyWithoutBuffers,
                            format!(
                                "inode {} index {index}: page {p} is dirty without buffers",
                                ino.id
                            ),
                        ));
                    }
                } else if data != disk[index] {
                    return Err(fail(
                        Invariant::NoLostWrite,
                        format!(
                            "inode {} index {index}: page {p} is clean but holds {:#x}, the disk {:#x}: reclaim will drop it unwritten",
                            ino.id, data[0], disk[index][0]
                        ),
                    ));
                }
            }
            for w in ledger.file_writes.iter().filter(|w| w.inode == ino.id) {
                let punched_after = ledger
                    .punches
                    .iter()
                    .any(|p| p.inode == w.inode && p.index == w.index && p.seq > w.seq);
                if punched_after {
                    continue;
                }
                let i = w.index as usize;
                let (now, where_) = match cache.get(i).copied().flatten() {
                    Some(p) => (self.mem.read_data(p, 0), format!("cached page {p}")),
                    None => (disk[i][0], "the disk".to_string()),
                };
                if now != w.value {
                    return Err(fail(
                        Invariant::NoLostWrite,
                        format!(
                            "inode {} index {}: {where_} holds {now:#x}, the last write was {:#x}",
                            ino.id, w.index, w.value
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// no lost write, for user stores: unless the address was unmapped after the
    /// last store to it, the page mapped there now holds the value stored.
    pub fn check_writes(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        for w in &ledger.writes {
            let unmapped_after = ledger
                .unmaps
                .iter()
                .any(|u| u.mm == w.mm && u.seq > w.seq && u.start <= w.addr && w.addr < u.end);
            if unmapped_after {
                continue;
            }
            let lost = |detail: String| {
                Box::new(Violation {
                    invariant: Invariant::NoLostWrite,
                    thread: None,
                    step: "quiescence".into(),
                    detail,
                })
            };
            let now = self.resolve(w.mm as usize, w.addr);
            if let Some((pfn, gen)) = w.via_pin {
                let same = self.ghost.frame(pfn);
                if now != Some(pfn) || !same.allocated() || same.gen() != gen {
                    continue;
                }
            }
            match now {
                None => {
                    return Err(lost(format!(
                        "mm {} address {:#x}: value {:#x} was stored, nothing is mapped now",
                        w.mm, w.addr, w.value
                    )))
                }
                Some(pfn) => {
                    let now = self.mem.read_data(pfn, 0);
                    if now != w.value {
                        return Err(lost(format!(
                            "mm {} address {:#x}: page {pfn} holds {now:#x}, the last store was {:#x}",
                            w.mm, w.addr, w.value
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The page mapped at `addr` (a subpage of a huge leaf), read at quiescence.
    pub fn resolve(&self, mm: usize, addr: u64) -> Option<Pfn> {
        let mut slot = self.mms[mm].pgd;
        for level in (1..=4).rev() {
            let e =
                Pte(self.tables[slot as usize].entries[self.cfg.index(addr, level)].read_once());
            if !e.present() {
                return None;
            }
            if level == 1 || e.leaf() {
                let sub =
                    (addr >> PAGE_SHIFT) & ((1u64 << (self.cfg.fanout_bits * (level - 1))) - 1);
                return Some(e.pfn() + sub as Pfn);
            }
            slot = e.table_slot();
        }
        None
    }

    /// conservation: see `check_quiescent`.
    pub fn check_conservation(&self, holds: &[crate::ghost::Hold]) -> Result<(), Box<Violation>> {
        let n = self.cfg.nr_frames;
        let mut pte_maps = vec![0i64; n];
        let mut pmd_maps = vec![0i64; n];
        let mut table_refs = vec![0i64; n];
        let fail = |detail: String| {
            Box::new(Violation {
                invariant: Invariant::Conservation,
                thread: None,
                step: "quiescence".into(),
                detail,
            })
        };
        for mm in self.mms.iter() {
            let vmas = mm.mmap_lock.read().clone();
            let mut stack = vec![(mm.pgd, 4u32, 0u64)];
            while let Some((slot, level, base)) = stack.pop() {
                if !self.ghost.table(slot).allocated() {
                    return Err(Box::new(Violation {
                        invariant: Invariant::NoUseAfterFree,
                        thread: None,
                        step: "quiescence".into(),
                        detail: format!("mm {} maps freed page-table slot {slot}", mm.id),
                    }));
                }
                table_refs[self.ghost.table_frame(slot) as usize] += 1;
                let t = &self.tables[slot as usize];
                let span = 1u64 << self.cfg.shift(level);
                for i in 0..self.cfg.fanout() {
                    let e = Pte(t.entries[i].read_once());
                    let lo = base + i as u64 * span;
                    if !e.present() && !e.is_swap() {
                        continue;
                    }
                    if (level == 1 || e.leaf() || e.is_swap())
                        && World::<B>::find_vma(&vmas, lo).is_none()
                    {
                        // Nothing will ever zap it: the page (or swap slot) leaks.
                        return Err(fail(format!(
                            "mm {} maps {lo:#x} outside any VMA ({e:?}): nothing will free it",
                            mm.id
                        )));
                    }
                    if e.special() || e.is_swap() {
                        continue;
                    }
                    if level == 1 {
                        pte_maps[e.pfn() as usize] += 1;
                    } else if e.leaf() {
                        pmd_maps[e.pfn() as usize] += 1;
                    } else {
                        stack.push((e.table_slot(), level - 1, lo));
                    }
                }
            }
        }
        // The page cache's reference on each cached page.
        let mut cache_refs = vec![0i64; n];
        for ino in self.inodes.iter() {
            for (index, p) in ino.i_pages.lock().iter().enumerate() {
                let Some(p) = *p else { continue };
                let f = self.mem.frame(p);
                let (m, i) = (f.mapping.read_once(), f.index.read_once());
                if m != ino.id + 1 || i as usize != index {
                    return Err(fail(format!(
                        "page {p} is cached at inode {} index {index} but its mapping says inode {} index {i}",
                        ino.id,
                        i64::from(m) - 1
                    )));
                }
                cache_refs[p as usize] += 1;
            }
        }
        let mut held = vec![0i64; n];
        let mut pins = vec![0i64; n];
        for h in holds {
            if h.count == 0 {
                continue;
            }
            if h.kind == HoldKind::Speculative {
                return Err(fail(format!(
                    "{} speculative reference(s) on folio {} never confirmed or dropped",
                    h.count, h.head
                )));
            }
            held[h.head as usize] += h.count;
            if h.kind == HoldKind::Pin {
                pins[h.head as usize] += h.count;
            }
        }
        let mut pfn = 0usize;
        while pfn < n {
            let p = pfn as Pfn;
            let f = self.mem.frame(p);
            let stamp = self.ghost.frame(p);
            let rc = i64::from(self.mem.counter.norm(f.refcount.read_once()));
            if !stamp.allocated() {
                if rc != 0 {
                    return Err(fail(format!("free frame {p} has refcount {rc}")));
                }
                pfn += 1;
                continue;
            }
            let order = self.mem.folio_order(p);
            let nr = 1usize << order;
            let flags = f.flags.read_once();
            let mut maps = pmd_maps[pfn];
            for (sub, &ptes) in pte_maps.iter().enumerate().skip(pfn).take(nr) {
                let mc = i64::from(self.mem.frame(sub as Pfn).mapcount.read_once());
                if mc != ptes {
                    return Err(fail(format!(
                        "page {sub} has mapcount {mc} but {ptes} PTE mapping(s)"
                    )));
                }
                maps += ptes;
            }
            let emc = i64::from(f.entire_mapcount.read_once());
            if emc != pmd_maps[pfn] {
                return Err(fail(format!(
                    "folio {p} has entire mapcount {emc} but {} PMD mapping(s)",
                    pmd_maps[pfn]
                )));
            }
            let exact = self.folio_has_pincount(order);
            let pin_refs = if self.cfg.p().zero_page_pin_noop && self.mem.is_zero_pfn(p) {
                0
            } else {
                self.pin_refcount_delta(order, pins[pfn])
            };
            let other = held[pfn] - pins[pfn];
            if f.mapping.read_once() != 0 && cache_refs[pfn] == 0 {
                return Err(fail(format!(
                    "page {p} has a file mapping but is in no page cache"
                )));
            }
            let permanent = i64::from(flags & pg::RESERVED != 0)
                + table_refs[pfn]
                + cache_refs[pfn]
                + i64::from(flags & pg::HAS_BUFFERS != 0);
            let expected = maps + other + pin_refs + permanent;
            let limit = 1i64 << (self.mem.counter.bits - 1);
            if expected >= limit {
                return Err(Box::new(Violation {
                    invariant: Invariant::RefcountBounds,
                    thread: None,
                    step: "quiescence".into(),
                    detail: format!(
                        "folio {p} has {expected} references ({maps} mapping(s), {other} get(s), {} pin(s)): more than a {}-bit refcount holds (it reads {rc})",
                        pins[pfn], self.mem.counter.bits
                    ),
                }));
            }
            if rc != expected {
                return Err(fail(format!(
                    "folio {p} refcount {rc}, expected {expected} ({maps} mapping(s), {other} get(s), {} pin(s), {permanent} permanent)",
                    pins[pfn]
                )));
            }
            if exact {
                let pc = i64::from(f.pincount.read_once());
                if pc != pins[pfn] {
                    return Err(fail(format!(
                        "folio {p} pincount {pc}, {} pin(s) held",
                        pins[pfn]
                    )));
                }
            }
            pfn += nr;
        }
        Ok(())
    }

    /// Writes a data word of a page and records the value in the ghost.
    pub fn write_page(&self, pfn: Pfn, word: usize, value: u64) {
        self.mem.write_data(pfn, word, value);
        self.ghost.wrote_value(pfn, value);
    }

    /// The VMA containing `addr` in a VMA list held under mmap_lock (`vma_lookup`).
    pub fn find_vma(vmas: &[Vma], addr: u64) -> Option<Vma> {
        vmas.iter()
            .find(|v| v.start <= addr && addr < v.end)
            .copied()
    }

    pub fn mm(&self, id: usize) -> &Mm<B> {
        &self.mms[id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Std;
    use crate::config::Arch;

    #[test]
    fn layout_is_populated_and_conserved() {
        let mut cfg = WorldConfig::small(Arch::Ipi);
        cfg.nr_frames = 128;
        cfg.fanout_bits = 2;
        let layout = Layout {
            mms: vec![vec![
                Region::anon(0, 3, Populate::Anon),
                Region::anon(4, 4, Populate::Thp),
                Region::anon(8, 2, Populate::ZeroPage),
                Region::anon(16, 16, Populate::Hugetlb),
                Region::file(40, 2, 0, true, Populate::PageCache),
            ]],
            spare_pmd_folios: 1,
            spare_pud_folios: 1,
            files: vec![FileSpec {
                pages: 2,
                flavour: FsFlavour::BufferHead,
                cached: Cached::Dirty,
            }],
            notifier: false,
        };
        let w = World::<Std>::build(cfg, &layout).unwrap();
        w.check_quiescent(&Ledger::default()).unwrap();
        // A corrupted refcount is caught.
        w.mem.frame(1).refcount.add(1);
        let v = w.check_quiescent(&Ledger::default()).unwrap_err();
        assert_eq!(v.invariant, Invariant::Conservation);
    }

    #[test]
    fn unaligned_thp_is_refused() {
        let mut cfg = WorldConfig::small(Arch::Ipi);
        cfg.fanout_bits = 2;
        cfg.nr_frames = 64;
        let layout = Layout::one(vec![Region::anon(1, 4, Populate::Thp)]);
        assert!(World::<Std>::build(cfg, &layout).is_err());
    }
}
