//! The swap device and the swap cache (mm/swapfile.c, mm/swap_state.c): one
//! slot per swapped page, holding the data `swap_writepage` wrote, the
//! slot's swap count (`swap_map[offset]`: the swap PTEs naming it) and, while
//! a folio for it is in the swap cache (SWAP_HAS_CACHE), that folio. The
//! swap cache holds one reference on its folio. One backend lock stands for
//! the swap device's and the swap cache's (`si->lock`, the swap address
//! space's `i_pages` lock): the model's lookups take it where the kernel's
//! are lockless under RCU.
//!
//! Simplifications, one line each:
//! - one swap device with as many slots as are needed (no -ENOSPC), handed out
//!   lowest free first;
//! - the slot's contents are only read when no folio is cached for it (the
//!   cached folio is authoritative, as in the kernel).

use crate::config::MAX_MMS;
use crate::types::Pfn;

/// One swap slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapSlot {
    /// The two data words written to the slot (valid while no folio is
    /// cached for it).
    pub data: [u64; 2],
    /// `swap_map[offset]`: swap PTEs that name the slot.
    pub count: u32,
    /// SWAP_HAS_CACHE: the folio in the swap cache for this slot.
    pub cache: Option<Pfn>,
    /// Ghost, carried with the data: for each fork child, what fork gave it
    /// in this content (ghost.rs `provenance`), so that the content read
    /// back into another frame keeps its history. Updated under the swap
    /// lock the protocol takes anyway.
    pub provenance: [u64; MAX_MMS],
}

impl SwapSlot {
    /// A slot holding `data`, named by `count` swap PTEs, nothing cached.
    pub fn new(data: [u64; 2], count: u32) -> Self {
        SwapSlot {
            data,
            count,
            cache: None,
            provenance: [0; MAX_MMS],
        }
    }
}

/// The lowest free slot of `slots` (a new one at the end if none is free).
pub(crate) fn alloc_slot(slots: &mut Vec<Option<SwapSlot>>, slot: SwapSlot) -> u32 {
    match slots.iter().position(Option::is_none) {
        Some(i) => {
            slots[i] = Some(slot);
            i as u32
        }
        None => {
            slots.push(Some(slot));
            (slots.len() - 1) as u32
        }
    }
}
