//! The kernel's operations that race with GUP, one file per subsystem and named
//! after the kernel's: faults, mmap and munmap (`memory`), the page cache and
//! file faults (`filemap`), DMA devices and the MMU-notifier driver (`device`),
//! the lockless walk (`walk`), writeback and `page_mkclean`, reclaim (`vmscan`),
//! migration and compaction, THP split and collapse, fork and clear_refs, page
//! sharing. Each is an `impl World` over the state below.

pub mod device;
pub mod filemap;
pub mod fork;
pub mod memory;
pub mod migrate;
pub mod share;
pub mod thp;
pub mod vmscan;
pub mod walk;
pub mod writeback;
