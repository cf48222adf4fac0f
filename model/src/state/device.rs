//! The MMU-notifier driver's data: its sequence, invalidations in progress and
//! device page table (the driver's operations are in mm/device.rs).

use crate::backend::Backend;
use crate::backend::Condvar;
use crate::backend::Mutex;
use crate::types::Pfn;

/// A device PTE the notifier driver programmed: what it maps and the frame
/// generation it saw (ghost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevPte {
    pub mm: u32,
    pub addr: u64,
    pub pfn: Pfn,
    pub gen: u32,
}

/// The driver's state under its lock: the interval notifier's sequence
/// (`mmu_interval_set_seq`), the invalidations in progress, and the device's
/// page table.
#[derive(Debug, Default)]
pub struct NotifierState {
    pub seq: u64,
    pub active: u32,
    pub ptes: Vec<DevPte>,
}

pub struct NotifierDev<B: Backend> {
    pub lock: Mutex<B, NotifierState>,
    /// `mmu_interval_read_begin` sleeps here while an invalidation runs.
    pub done: Condvar<B>,
}
