//! `struct mm_struct` and VMAs: the address space's data (its operations, faults,
//! mmap and munmap, are in mm/memory.rs).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic, RwLock};
use crate::types::PAGE_SIZE;

/// VMA flags (include/linux/mm.h), the ones GUP and faults read.
pub mod vm {
    pub const READ: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const SHARED: u32 = 1 << 3;
    pub const MAYREAD: u32 = 1 << 4;
    pub const MAYWRITE: u32 = 1 << 5;
    pub const IO: u32 = 1 << 14;
    pub const PFNMAP: u32 = 1 << 10;
}

/// mm->flags bits.
pub mod mmf {
    /// MMF_HAS_PINNED (5.14; `mm->has_pinned` from 008cfe4418b3, 5.9).
    pub const HAS_PINNED: u32 = 1 << 0;
}

/// What a VMA maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmaKind {
    AnonPrivate,
    /// MAP_SHARED of a file (writes reach the page cache; dirty tracking).
    /// `base` is `vm_start - vm_pgoff` in pages: unchanged when munmap splits.
    FileShared {
        inode: u32,
        base: u64,
    },
    /// MAP_PRIVATE of a file (COW on write).
    FilePrivate {
        inode: u32,
        base: u64,
    },
    /// MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB (`is_vm_hugetlb_page()`):
    /// private anonymous memory in huge folios of one size, each mapped by one
    /// leaf, faulted by `hugetlb_fault` (mm/hugetlb.rs).
    HugetlbPrivate {
        size: HugeSize,
    },
}

/// The size of a hugetlb VMA's folios (its hstate): 2 MiB is mapped by a PMD
/// leaf, 1 GiB by a PUD leaf (in a small world: the fan-out's PMD and PUD
/// spans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HugeSize {
    Pmd,
    Pud,
}

impl HugeSize {
    /// The page-table level of the leaf (2 = PMD, 3 = PUD).
    pub fn level(self) -> u32 {
        match self {
            HugeSize::Pmd => 2,
            HugeSize::Pud => 3,
        }
    }
    /// cow.c's name of the backing: "hugetlb 2048 kB" / "hugetlb 1048576 kB".
    pub fn name(self) -> &'static str {
        match self {
            HugeSize::Pmd => "hugetlb 2048 kB",
            HugeSize::Pud => "hugetlb 1048576 kB",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub flags: u32,
    pub kind: VmaKind,
}

impl Vma {
    pub(crate) fn is_anon(&self) -> bool {
        matches!(self.kind, VmaKind::AnonPrivate)
    }
    /// `is_vm_hugetlb_page()`: the hugetlb VMA's folio size.
    pub(crate) fn hugetlb(&self) -> Option<HugeSize> {
        match self.kind {
            VmaKind::HugetlbPrivate { size } => Some(size),
            _ => None,
        }
    }
    /// is_cow_mapping(): private and may be written.
    pub(crate) fn is_cow(&self) -> bool {
        self.flags & (vm::SHARED | vm::MAYWRITE) == vm::MAYWRITE
    }
    pub fn writable(&self) -> bool {
        self.flags & vm::WRITE != 0
    }
}

/// `struct mm_struct`, the parts the pinning protocol touches.
pub struct Mm<B: Backend> {
    pub id: u32,
    /// `mmap_lock`, protecting the VMA list.
    pub mmap_lock: RwLock<B, Vec<Vma>>,
    /// The PGD's table slot (never freed while the mm lives).
    pub pgd: u32,
    /// `mm->write_protect_seq` (57efa1fe5957, 5.11): odd while fork copies.
    pub write_protect_seq: B::AtomicU32,
    /// `mm->flags` (MMF_HAS_PINNED).
    pub flags: B::AtomicU32,
}

impl<B: Backend> Mm<B> {
    pub fn new(id: u32, pgd: u32) -> Self {
        Mm {
            id,
            mmap_lock: RwLock::new(Vec::new()),
            pgd,
            write_protect_seq: B::AtomicU32::new(0),
            flags: B::AtomicU32::new(0),
        }
    }
}

/// Fault flags (FAULT_FLAG_*).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultFlags {
    pub write: bool,
    /// FAULT_FLAG_UNSHARE (c89357e27f20, 5.19): break COW without making writable.
    pub unshare: bool,
    /// FAULT_FLAG_ALLOW_RETRY: the handler may ask for `mmap_lock` to be dropped
    /// while it waits for I/O (VM_FAULT_RETRY, here -EAGAIN).
    pub allow_retry: bool,
    /// FAULT_FLAG_TRIED: this is the retry.
    pub tried: bool,
}

impl Vma {
    /// `linear_page_index()`: the file page `addr` maps.
    pub(crate) fn file_index(&self, addr: u64) -> u32 {
        match self.kind {
            VmaKind::FileShared { base, .. } | VmaKind::FilePrivate { base, .. } => {
                (addr / PAGE_SIZE - base) as u32
            }
            VmaKind::AnonPrivate | VmaKind::HugetlbPrivate { .. } => 0,
        }
    }
}
