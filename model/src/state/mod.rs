//! The machine's state: memory and folios, page tables, rmap, the walker
//! registry, address spaces, files and the notifier driver's data, the World
//! that holds them, its builder and its quiescent checks. Helpers here call
//! nothing above this floor.

pub mod check;
pub mod device;
pub mod fs;
pub mod layout;
pub mod mem;
pub mod mm;
pub mod pgtable;
pub mod rmap;
pub mod tlb;
pub mod world;
