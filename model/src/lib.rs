//! gupcheck-model: an executable model of the Linux kernel's page-pinning protocol
//! (get_user_pages, pin_user_pages, FOLL_PIN, unpin_user_page) and of the memory it
//! works on, generic over three backends (std, loom, shuttle) so every engine runs
//! the same code.
//!
//! Floors, each importing only from those below it (`tests/source_rules.rs`
//! enforces it):
//! - vocabulary at the root: `types` (frame and error numbers, page sizes),
//!   `flags` (FOLL_*), `invariant` (the invariants' names, a violation),
//!   `backend` (the LKMM vocabulary over std, loom and shuttle), `preset` (kernel
//!   releases as feature vectors), `ghost` (what no kernel has: generations,
//!   ledgers, traces), `heartbeat` (what a real thread is doing, for stress's
//!   watchdog), `config` (one world's parameters);
//! - `state`: the machine (memory, page tables, rmap, walkers, address spaces,
//!   files, the World, its builder and quiescent checks);
//! - `mm`: the kernel's operations that race with GUP (faults, munmap, the
//!   lockless walk, files, writeback, reclaim, migration, THP, fork, sharing,
//!   devices);
//! - `gup`: the protocol (entry points, flag rules, fast and slow paths, release);
//! - `harness`: ops, scenarios, engines, expectations, artifacts, fuzzing and the
//!   kernel's selftests over the model.

#![allow(non_snake_case)] // smp_mb__after_atomic keeps the kernel's name

pub mod backend;
pub mod config;
pub mod flags;
pub mod ghost;
pub mod gup;
pub mod harness;
pub mod heartbeat;
pub mod invariant;
pub mod mm;
pub mod preset;
pub mod state;
pub mod types;

pub use config::{Arch, CounterScale, Mutation, WorldConfig, MAX_MMS};
pub use harness::engine::{run, Engine, Failure, Outcome};
pub use harness::scenario::Scenario;
pub use invariant::{Invariant, Res, Violation};
pub use preset::{Preset, PresetId, ReuseRule};
pub use state::world::World;
pub use types::{Errno, Pfn, PAGE_SHIFT, PAGE_SIZE};
