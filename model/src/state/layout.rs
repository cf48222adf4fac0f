//! The layout of a world: address spaces as regions, files, and the builder that
//! lays them out directly, without running faults (small worlds for model
//! checkers, DESIGN decision 1).

use crate::backend::Condvar;
use crate::backend::Mutex;
use crate::backend::{Backend, KAtomic};
use crate::config::WorldConfig;
use crate::ghost::Ctx;
use crate::state::device::NotifierDev;
use crate::state::device::NotifierState;
use crate::state::fs::Cached;
use crate::state::fs::FileSpec;
use crate::state::fs::FsFlavour;
use crate::state::fs::Inode;
use crate::state::mem::pg;
use crate::state::mem::Order;
use crate::state::mm::mmf;
use crate::state::mm::vm;
pub use crate::state::mm::HugeSize;
use crate::state::mm::Vma;
use crate::state::mm::VmaKind;
use crate::state::pgtable::Pte;
use crate::state::rmap::RmapEntry;
use crate::state::world::LargeFolios;
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;
use serde::{Deserialize, Serialize};

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
    /// Write-faulted hugetlb folios of a hugetlb region (`Region::hugetlb`):
    /// one exclusive, writable leaf per folio (aligned to the folio size).
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
    /// A private anonymous hugetlb mapping (MAP_PRIVATE | MAP_HUGETLB) of
    /// `size` folios.
    pub fn hugetlb(start_page: u64, pages: u64, size: HugeSize, populate: Populate) -> Self {
        Region {
            kind: VmaKind::HugetlbPrivate { size },
            ..Region::anon(start_page, pages, populate)
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
    /// Free PMD-order folios to provide beyond the layout's own THPs and
    /// hugetlb folios (THP allocations and the 2 MiB hugetlb pool share them).
    #[serde(default)]
    pub spare_pmd_folios: usize,
    /// Free PUD-order folios beyond the layout's own (the 1 GiB hugetlb pool).
    #[serde(default)]
    pub spare_pud_folios: usize,
    /// Files, by inode number.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// A driver with an MMU interval notifier over every address space.
    #[serde(default)]
    pub notifier: bool,
    /// Every address space of the layout has pinned before: an earlier
    /// FOLL_PIN, long released, left MMF_HAS_PINNED set (`mm->has_pinned`
    /// 5.9-5.13; the flag is sticky for the life of the mm). Presets without
    /// it (before 5.9) never read it.
    #[serde(default)]
    pub has_pinned: bool,
}

impl Layout {
    pub fn one(regions: Vec<Region>) -> Self {
        Layout {
            mms: vec![regions],
            ..Layout::default()
        }
    }
    /// Artifacts written before hugetlb VMAs existed populate an anonymous
    /// region with PUD-mapped "hugetlb-like" folios: read those regions as the
    /// 1 GiB hugetlb mappings they stood for.
    pub fn upgrade_legacy_hugetlb(&mut self) {
        for r in self.mms.iter_mut().flatten() {
            if r.populate == Populate::Hugetlb && r.kind == VmaKind::AnonPrivate {
                r.kind = VmaKind::HugetlbPrivate {
                    size: HugeSize::Pud,
                };
            }
        }
    }
    /// Large folios the layout needs, plus the spares.
    pub(crate) fn large_folios(&self, cfg: &WorldConfig) -> LargeFolios {
        let count = |p: Populate, huge: Option<HugeSize>, order: u32| -> usize {
            let per = 1u64 << order;
            self.mms
                .iter()
                .flatten()
                .filter(|r| r.populate == p && r.vma().hugetlb() == huge)
                .map(|r| r.pages.div_ceil(per) as usize)
                .sum()
        };
        let (pmd, pud) = (cfg.pmd_order(), cfg.pud_order());
        LargeFolios {
            pmd: count(Populate::Thp, None, pmd)
                + count(Populate::ThpPte, None, pmd)
                + count(Populate::Hugetlb, Some(HugeSize::Pmd), pmd)
                + self.spare_pmd_folios,
            pud: count(Populate::Hugetlb, Some(HugeSize::Pud), pud) + self.spare_pud_folios,
        }
    }
}

impl<B: Backend> World<B> {
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
        let mut w = Self::new(cfg, large)?;
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
            if layout.has_pinned {
                w.mms[id].flags.or(mmf::HAS_PINNED);
            }
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
        if vma.hugetlb().is_some() && !matches!(r.populate, Populate::None | Populate::Hugetlb) {
            return Err(format!(
                "hugetlb region at page {} cannot be {:?}",
                r.start_page, r.populate
            ));
        }
        match r.populate {
            Populate::None => {}
            Populate::PageCache => {
                let (inode, shared) = match r.kind {
                    VmaKind::FileShared { inode, .. } => (inode, true),
                    VmaKind::FilePrivate { inode, .. } => (inode, false),
                    VmaKind::AnonPrivate | VmaKind::HugetlbPrivate { .. } => {
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
                    let offset = crate::state::swap::alloc_slot(
                        &mut swap,
                        crate::state::swap::SwapSlot::new([0, 0], 1),
                    );
                    drop(swap);
                    let entry = Pte::mk_swap(offset);
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
                let (order, level, o, extra) = match (r.populate, vma.hugetlb()) {
                    (Populate::Thp, None) => (self.cfg.pmd_order(), 2, Order::Pmd, 0),
                    (Populate::Hugetlb, Some(HugeSize::Pmd)) => {
                        (self.cfg.pmd_order(), 2, Order::Pmd, pg::HUGETLB)
                    }
                    (Populate::Hugetlb, Some(HugeSize::Pud)) => {
                        (self.cfg.pud_order(), 3, Order::Pud, pg::HUGETLB)
                    }
                    _ => {
                        return Err(format!(
                            "region at page {}: {:?} needs {} region",
                            r.start_page,
                            r.populate,
                            if r.populate == Populate::Thp {
                                "a non-hugetlb"
                            } else {
                                "a hugetlb"
                            }
                        ))
                    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Std;
    use crate::config::Arch;
    use crate::ghost::Ledger;
    use crate::invariant::Invariant;

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
                Region::hugetlb(16, 16, HugeSize::Pud, Populate::Hugetlb),
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
            has_pinned: false,
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
