//! One file per command: its arguments, its run and its printing.

pub mod bench;
pub mod campaign;
pub mod engines;
pub mod explore;
pub mod footprint;
pub mod fuzz_artifact;
pub mod fuzz_bench;
pub mod kernel;
pub mod list;
pub mod litmus;
pub mod merge;
pub mod replay;
pub mod selftests;
