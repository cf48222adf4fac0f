//! The invariants by their stable names, and a violation of one: a value that
//! travels back to the engine's edge (DESIGN decision 5), never a panic.

use serde::{Deserialize, Serialize};

/// The invariants, by their stable names (DESIGN.md "Invariants").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    NoResurrection,
    NoUseAfterFree,
    RefcountBounds,
    Conservation,
    PinnedIsVisible,
    CoherentPin,
    NoLeakAfterFork,
    PrefixResult,
    MatchedRelease,
    NoLostWrite,
    DirtyWithoutBuffers,
    PinThroughWritablePte,
    /// No thread waits forever: a deadlock or a lost wake-up.
    Progress,
    /// At rest, after every pin is released and a final sync: the disk holds
    /// the last value written to each file page.
    DurableAfterSync,
    /// Not an invariant but a finding class: the model itself panicked during
    /// an execution (an index out of range, a stale table); carried like a
    /// violation so that it is minimised, replayed and counted the same way.
    ModelCrash,
    /// Known-open, kept apart from `no leak after fork`: a FOLL_GET reference
    /// of a hugetlb folio sees the other side's post-fork writes.
    HugetlbGetLeak,
}

impl Invariant {
    pub const ALL: [Invariant; 16] = [
        Invariant::NoResurrection,
        Invariant::NoUseAfterFree,
        Invariant::RefcountBounds,
        Invariant::Conservation,
        Invariant::PinnedIsVisible,
        Invariant::CoherentPin,
        Invariant::NoLeakAfterFork,
        Invariant::PrefixResult,
        Invariant::MatchedRelease,
        Invariant::NoLostWrite,
        Invariant::DirtyWithoutBuffers,
        Invariant::PinThroughWritablePte,
        Invariant::Progress,
        Invariant::DurableAfterSync,
        Invariant::ModelCrash,
        Invariant::HugetlbGetLeak,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoResurrection => "no resurrection",
            Invariant::NoUseAfterFree => "no use after free",
            Invariant::RefcountBounds => "refcount bounds",
            Invariant::Conservation => "conservation",
            Invariant::PinnedIsVisible => "pinned is visible",
            Invariant::CoherentPin => "coherent pin",
            Invariant::NoLeakAfterFork => "no leak after fork",
            Invariant::PrefixResult => "prefix result",
            Invariant::MatchedRelease => "matched release",
            Invariant::NoLostWrite => "no lost write",
            Invariant::DirtyWithoutBuffers => "no dirty page without buffers",
            Invariant::PinThroughWritablePte => "write pin through a writable pte",
            Invariant::Progress => "progress",
            Invariant::DurableAfterSync => "durable after sync",
            Invariant::ModelCrash => "model crash",
            Invariant::HugetlbGetLeak => "hugetlb get leak",
        }
    }
    pub fn meaning(self) -> &'static str {
        match self {
            Invariant::NoResurrection => "no reference is ever raised from zero (a frozen or freed frame)",
            Invariant::NoUseAfterFree => "no access to a frame or page-table page whose generation changed since it was reached",
            Invariant::RefcountBounds => "no decrement below the holders, no increment from negative back to non-negative",
            Invariant::Conservation => "at quiescence: refcount = mappings + every holder the ledger knows; pincount = pins",
            Invariant::PinnedIsVisible => "a synchronised reader that saw 'not pinned' implies no pin in flight commits",
            Invariant::CoherentPin => "while pinned and not unmapped by its owner, the page mapped at the address is the pinned page",
            Invariant::NoLeakAfterFork => "no process observes the other's post-fork writes through a page it got via GUP",
            Invariant::PrefixResult => "GUP returns a prefix count or -errno, never both",
            Invariant::MatchedRelease => "GET is released by put, PIN by unpin",
            Invariant::NoLostWrite => "a write through a pin or a PTE reaches the disk or stays dirty",
            Invariant::DirtyWithoutBuffers => "a buffer-head filesystem never has a dirty page-cache page without buffers (ext4_writepage's BUG_ON, a skipped write since cc5095747edf)",
            Invariant::PinThroughWritablePte => "a FOLL_WRITE grab is kept only if the PTE it was taken through was present and writable after the grab (the page_mkclean rule)",
            Invariant::Progress => "no thread waits forever: loom and shuttle report a deadlock (a lost wake-up, a lock never released) with the threads that wait; real threads, a wait of 30 s on one condition; stress, no op finished for its watchdog's bound (5 s by default), naming each stuck thread's op and last step",
            Invariant::DurableAfterSync => "at rest, once every pin is released and every file written back (a final sync), the disk holds the last value written to each file page, by a store or by DMA through a pin; holds where 'no lost write' is known-open, since the final unpin re-dirties the page",
            Invariant::ModelCrash => "a finding class, not an invariant: the model panicked during an execution; the panic's message and place, minimised and replayable",
            Invariant::HugetlbGetLeak => "known-open in every era, reported apart from 'no leak after fork': hugetlb_wp() reuses a folio by its mapcount, not its refcount, so a FOLL_GET reference (vmsplice) of a hugetlb folio sees the other side's post-fork writes once that side is its only mapper; upstream cow.c marks these cases XFAIL. A pin never breaks 'no leak after fork' this way (a R/O pin unshares from 5.19)",
        }
    }
    /// A finding class rather than a property of the protocol (`model crash`).
    pub fn is_finding_class(self) -> bool {
        matches!(self, Invariant::ModelCrash)
    }
    pub fn parse(s: &str) -> Result<Invariant, String> {
        let k = s.replace(['_', '-'], " ");
        Invariant::ALL
            .into_iter()
            .find(|i| i.name() == k)
            .ok_or_else(|| format!("unknown invariant '{s}'"))
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant, as a value. It travels up to the engine's edge, which alone
/// turns it into a failure (libFuzzer aborts on any panic, shuttle installs its panic
/// hook once per process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// The model thread that saw it (`None` for a quiescent check).
    pub thread: Option<usize>,
    /// The kernel-named step during which it was seen.
    pub step: String,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.thread {
            Some(t) => write!(
                f,
                "{} (thread {t}, at {}): {}",
                self.invariant, self.step, self.detail
            ),
            // No thread: at quiescence, or the whole execution (a deadlock, a crash).
            None => write!(f, "{} (at {}): {}", self.invariant, self.step, self.detail),
        }
    }
}

pub type Res<T> = Result<T, Box<Violation>>;
