//! Heartbeats of real threads: what a stress worker is doing, readable from
//! another thread while it runs (the stress watchdog). loom and shuttle see a
//! deadlock themselves; real threads cannot tell a wait that never ends from a
//! slow one, so a watchdog watches these instead.
//!
//! Each worker writes only its own heartbeat, with plain relaxed stores (one
//! per kernel step, two per op, never a lock, an allocation or a locked RMW):
//! stress runs hundreds of thousands of ops a second.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One worker's heartbeat. Aligned to its own cache lines so that the workers'
/// stores do not bounce one line between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Heartbeat {
    /// Ops this worker finished since it started: it moves while the worker
    /// makes progress, and only then (a retry loop that never ends still takes
    /// kernel steps, but never finishes its op).
    done: AtomicU64,
    /// The op being run, as its index in the thread's list plus one; 0 between
    /// op lists.
    op: AtomicU64,
    /// The last kernel step, packed by `pack`; 0 before the first.
    step: AtomicU64,
}

/// What a heartbeat said when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    pub done: u64,
    /// The index of the op being run in its thread's list, if one is.
    pub op: Option<usize>,
    /// The last kernel step the worker took.
    pub step: Option<&'static str>,
}

thread_local! {
    /// The heartbeat `run_ops` beats on this thread, if a stress worker
    /// attached one.
    static CURRENT: RefCell<Option<Arc<Heartbeat>>> = const { RefCell::new(None) };
}

/// Bits of an address and of a length in a packed step name: user-space
/// addresses fit in 48 bits on every 64-bit target Rust supports (57-bit
/// addresses, where the kernel allows them, are recorded as unknown).
const ADDR_BITS: u32 = 48;
const LEN_BITS: u32 = 64 - ADDR_BITS;

/// A step name as one word, so that one store records it and a reader never
/// sees half of it: its address and length; 0 if they do not fit.
#[inline]
fn pack(name: &'static str) -> u64 {
    let addr = name.as_ptr().expose_provenance() as u64;
    let len = name.len() as u64;
    if addr >> ADDR_BITS == 0 && len >> LEN_BITS == 0 {
        addr | len << ADDR_BITS
    } else {
        0
    }
}

/// The step name `pack` made `word` from.
fn unpack(word: u64) -> Option<&'static str> {
    if word == 0 {
        return None;
    }
    let addr = (word & ((1 << ADDR_BITS) - 1)) as usize;
    let len = (word >> ADDR_BITS) as usize;
    let ptr = std::ptr::with_exposed_provenance::<u8>(addr);
    // SAFETY: a non-zero word is only ever stored by `pack`, from the address
    // (exposed) and length of a `&'static str`: the bytes are valid UTF-8 and
    // live for the whole program. The word is read whole, never torn.
    Some(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len)) })
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat::default()
    }

    /// Makes `beat` the heartbeat of every model thread this OS thread runs
    /// from now on (`None` detaches it).
    pub fn attach(beat: Option<Arc<Heartbeat>>) {
        CURRENT.with(|c| *c.borrow_mut() = beat);
    }

    /// This thread's heartbeat, if one is attached.
    pub(crate) fn current() -> Option<Arc<Heartbeat>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Op `i` of the thread's list starts.
    #[inline]
    pub fn enter(&self, i: usize) {
        self.op.store(i as u64 + 1, Relaxed);
    }

    /// The op under way ended (its result whatever it was).
    #[inline]
    pub fn leave(&self) {
        // One writer: a load and a store, no locked RMW.
        self.done.store(self.done.load(Relaxed) + 1, Relaxed);
        self.op.store(0, Relaxed);
    }

    /// The thread took kernel step `name`.
    #[inline]
    pub fn step(&self, name: &'static str) {
        self.step.store(pack(name), Relaxed);
    }

    /// What the worker is doing now.
    pub fn read(&self) -> Beat {
        let op = self.op.load(Relaxed);
        Beat {
            done: self.done.load(Relaxed),
            op: op.checked_sub(1).map(|i| i as usize),
            step: unpack(self.step.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_reads_back_what_was_recorded() {
        let h = Heartbeat::new();
        assert_eq!(
            h.read(),
            Beat {
                done: 0,
                op: None,
                step: None
            }
        );
        h.enter(3);
        h.step("folio_lock");
        let name = String::from("a step name built at run time").leak();
        h.step(name);
        let b = h.read();
        assert_eq!((b.done, b.op, b.step), (0, Some(3), Some(&*name)));
        h.leave();
        assert_eq!(h.read().done, 1);
        assert_eq!(h.read().op, None);
        assert_eq!(unpack(pack("")), Some(""));
    }
}
