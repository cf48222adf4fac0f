//! Lockless walkers, TLB flushes and the mmu_gather: how freed memory waits for
//! a walker that runs with interrupts disabled.
//!
//! The kernel's protocol (mm/gup.c comment above GUP-fast, asm-generic/tlb.h):
//! the walker disables interrupts; a freer either flushes the TLB with an IPI,
//! which cannot complete while the walker has interrupts off (x86 without
//! paravirt), or defers page-table frees past a sched-RCU grace period, which an
//! interrupts-off section holds off (MMU_GATHER_RCU_TABLE_FREE).
//!
//! Model: each modelled CPU has a registry slot, odd while it walks. This is the
//! kernel's Dekker pattern with full barriers on both sides:
//!
//! ```text
//!   walker                          freer
//!   slot = odd  (local_irq_save)    clear the entry (PTL held)
//!   smp_mb()                        smp_mb()
//!   read entries                    read every slot; wait while odd
//! ```
//!
//! Either the freer sees the walker registered and waits for it, or the walker
//! sees the cleared entry. Waiting blocks on a backend Condvar, never spins.
//! Simplification: an IPI round waits for walkers of every mm (the kernel targets
//! the CPUs in `mm_cpumask`), which only makes the freer wait longer.

use crate::backend::{Backend, Condvar, KAtomic, Mutex};
use crate::config::Arch;
use crate::ghost::{Ctx, Ghost};
use crate::types::Pfn;

pub struct Walkers<B: Backend> {
    slots: Box<[B::AtomicU32]>,
    /// Freers waiting for a walker to leave (protected by the lock): a walker
    /// leaving wakes the condition variable only if someone waits.
    lock: Mutex<B, usize>,
    cv: Condvar<B>,
}

impl<B: Backend> Walkers<B> {
    pub fn new(nr_cpus: usize) -> Self {
        Walkers {
            slots: (0..nr_cpus).map(|_| B::AtomicU32::new(0)).collect(),
            lock: Mutex::new(0),
            cv: Condvar::new(),
        }
    }

    /// `local_irq_save()` before a lockless walk: announce the walk, then a full
    /// barrier so the walk's reads come after the announcement.
    /// `no_barrier` is the `walker_registration_no_barrier` mutation.
    pub fn irq_save(&self, ctx: &mut Ctx, ghost: &Ghost, no_barrier: bool) {
        ctx.step(ghost, "local_irq_save", ctx.cpu as u64);
        ctx.irq_seq = ctx.irq_seq.wrapping_add(1) | 1;
        self.slots[ctx.cpu].write_once(ctx.irq_seq);
        if !no_barrier {
            B::smp_mb();
        }
    }

    /// `local_irq_restore()`: pending IPIs are taken now; a freer waiting for this
    /// CPU is released. Under the registry lock so no wakeup is lost.
    pub fn irq_restore(&self, ctx: &mut Ctx, ghost: &Ghost) {
        ctx.step(ghost, "local_irq_restore", ctx.cpu as u64);
        ctx.irq_seq = ctx.irq_seq.wrapping_add(1);
        let g = self.lock.lock();
        self.slots[ctx.cpu].write_once(ctx.irq_seq);
        if *g > 0 {
            self.cv.notify_all();
        }
        drop(g);
    }

    /// `irq_restore` for a walker that panicked with interrupts off (`seq` is
    /// its sequence at `irq_save`): no step, no ghost, as the thread is gone.
    pub(crate) fn irq_restore_after_crash(&self, cpu: usize, seq: u32) {
        let g = self.lock.lock();
        self.slots[cpu].write_once(seq.wrapping_add(1));
        self.cv.notify_all();
        drop(g);
    }

    /// Waits for every walker that may have seen an entry cleared before this call:
    /// the IPI round of a TLB flush, or the grace period of RCU table freeing
    /// (`tlb_remove_table_sync_one()` is the same wait).
    pub fn sync(&self, ctx: &mut Ctx, ghost: &Ghost, what: &'static str) {
        ctx.step(ghost, what, 0);
        B::smp_mb();
        let mut g = self.lock.lock();
        for (cpu, slot) in self.slots.iter().enumerate() {
            if cpu == ctx.cpu {
                continue;
            }
            let seen = slot.read_once();
            if seen & 1 == 1 {
                *g += 1;
                while slot.read_once() == seen {
                    g = self.cv.wait(g);
                }
                *g -= 1;
            }
        }
        drop(g);
    }
}

impl<B: Backend> Walkers<B> {
    /// The start of a grace period (`call_rcu`): after a full barrier, the CPUs
    /// walking now and the section each is in. Freeing waits only for these.
    pub(crate) fn snapshot(&self) -> Vec<(usize, u32)> {
        B::smp_mb();
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(cpu, s)| {
                let v = s.read_once();
                (v & 1 == 1).then_some((cpu, v))
            })
            .collect()
    }

    /// Whether every walker of `snap` has left the section it was in (its
    /// interrupts-off section ended, so the grace period has elapsed for it). An
    /// acquire read: the walker's table reads happen before the free that follows.
    pub fn elapsed(&self, snap: &[(usize, u32)]) -> bool {
        snap.iter()
            .all(|&(cpu, v)| self.slots[cpu].load_acquire() != v)
    }
}

/// `struct mmu_gather`: pages and page tables unmapped by a zap, freed only after
/// the TLB flush (and, for tables under RCU freeing, after a grace period).
#[derive(Debug, Default)]
pub struct MmuGather {
    /// Folio heads whose mapping reference is dropped after the flush.
    pub pages: Vec<Pfn>,
    /// Page-table slots unhooked by free_pgtables.
    pub tables: Vec<u32>,
}

impl MmuGather {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.tables.is_empty()
    }
}

/// What a TLB flush waits for under each arch mode.
pub(crate) fn flush_waits_for_walkers(arch: Arch) -> bool {
    matches!(arch, Arch::Ipi)
}
