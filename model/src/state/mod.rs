//! The machine's state: memory and folios, page tables, rmap, the walker
//! registry, address spaces, files, swap slots and the notifier driver's data, the World
//! that holds them, its builder and its quiescent checks. Helpers here call
//! nothing above this floor.

pub(crate) mod check;
pub(crate) mod device;
pub mod fs;
pub mod layout;
pub mod mem;
pub mod mm;
pub mod pgtable;
pub(crate) mod rmap;
pub mod swap;
pub(crate) mod tlb;
pub mod world;
