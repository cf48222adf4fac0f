//! gupcheck-model: an executable model of the Linux kernel's page-pinning protocol
//! (get_user_pages, pin_user_pages, FOLL_PIN, unpin_user_page) and of the memory it
//! works on, generic over three backends (std, loom, shuttle) so every engine runs
//! the same code.
//!
//! One file per kernel concept: `mem` (frames, folios, the allocator), `pgtable`
//! (entries and tables), `rmap`, `mm` (address space, faults, mmap, munmap),
//! `tlb` (walkers, TLB flush, mmu_gather), `walk` (the lockless walk GUP-fast is
//! built on), `file` (inodes, page cache, file faults, buffers), `writeback`
//! (page_mkclean and the disk), `vmscan` (reclaim), `device` (DMA through pins,
//! the MMU-notifier driver), `ghost` (what no kernel has: generations, ledgers, traces,
//! invariants), `world` (one instance and its builder), `ops` and `scenario` (what
//! threads do), `engine` (non-generic entry points per engine).

#![allow(non_snake_case)] // smp_mb__after_atomic keeps the kernel's name

pub mod artifact;
pub mod backend;
pub mod config;
pub mod device;
pub mod engine;
pub mod expect;
pub mod file;
pub mod fork;
pub mod fuzzing;
pub mod ghost;
pub mod gup;
pub mod mem;
pub mod migrate;
pub mod mm;
pub mod ops;
pub mod pgtable;
pub mod preset;
pub mod rmap;
pub mod scenario;
pub mod selftests;
pub mod share;
pub mod thp;
pub mod tlb;
pub mod vmscan;
pub mod walk;
pub mod world;
pub mod writeback;

pub use config::{Arch, CounterScale, Mutation, ReuseRule, WorldConfig};
pub use engine::{run, Engine, Failure, Outcome};
pub use ghost::{Invariant, Violation};
pub use preset::{Preset, PresetId};
pub use scenario::Scenario;
pub use world::World;
