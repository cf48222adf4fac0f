//! The kernel's operations that race with GUP, one file per subsystem and named
//! after the kernel's: faults, mmap and munmap (`memory`), the page cache and
//! file faults (`filemap`), DMA devices and the MMU-notifier driver (`device`),
//! the lockless walk (`walk`), writeback and `page_mkclean`, reclaim (`vmscan`), the swap cache (`swap`),
//! migration and compaction, THP split and collapse (file collapse in `collapse_file`), fork and clear_refs, page
//! sharing, hugetlb faults and fork (`hugetlb`). Each is an `impl World` over the state below.

pub(crate) mod collapse_file;
pub(crate) mod device;
pub(crate) mod filemap;
pub(crate) mod fork;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub mod migrate;
pub(crate) mod share;
pub(crate) mod swap;
pub mod thp;
pub mod vmscan;
pub mod walk;
pub(crate) mod writeback;
