//! World parameters: table fan-out, memory size, the arch axis, counter scale and
//! mutations.

use serde::{Deserialize, Serialize};

use crate::preset::{PinCounting, Preset, PresetId};
use crate::types::PAGE_SHIFT;

/// Address spaces the ghost keeps fork ancestry for.
pub const MAX_MMS: usize = 16;

/// How page-table pages (and, under IPI, data pages) are protected from a lockless
/// walker that runs with interrupts disabled (mm/gup.c comment above GUP-fast;
/// include/asm-generic/tlb.h "Semi RCU freeing of the page directories").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86 without paravirt: a TLB flush is an IPI that cannot complete while a
    /// walker has interrupts off, so tables *and* data pages freed after the flush
    /// wait for every walker.
    Ipi,
    /// MMU_GATHER_RCU_TABLE_FREE (arm64, paravirt x86): the TLB flush does not wait;
    /// only page-table frees are deferred past a grace period, which an IRQs-off
    /// section holds off. Data pages are protected by speculative references only.
    /// Page-table entries are cleared as arm64 does, with `xchg_relaxed`, and a
    /// flush orders nothing (`PageTable::get_and_clear`).
    Rcu,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Ipi, Arch::Rcu];
    pub fn name(self) -> &'static str {
        match self {
            Arch::Ipi => "ipi",
            Arch::Rcu => "rcu",
        }
    }
    pub fn parse(s: &str) -> Result<Arch, String> {
        match s {
            "ipi" => Ok(Arch::Ipi),
            "rcu" => Ok(Arch::Rcu),
            _ => Err(format!("unknown arch mode '{s}' (expected ipi or rcu)")),
        }
    }
}

/// Width of the page refcount and the FOLL_PIN bias. The kernel's counter is a
/// signed 32-bit `atomic_t` with GUP_PIN_COUNTING_BIAS = 1024; model-checker
/// scenarios that must reach the overflow limits (CVE-2019-11487, the v11 bias
/// overflow on huge pages) shrink both so the limit is a few dozen steps away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterScale {
    /// Significant bits of the refcount: values are sign-extended from this width.
    pub bits: u32,
    /// GUP_PIN_COUNTING_BIAS at this scale.
    pub pin_bias: i32,
}

impl CounterScale {
    /// The kernel's own: 32 bits, bias 1024 (3faa52c03f44, 5.7).
    pub const REAL: CounterScale = CounterScale {
        bits: 32,
        pin_bias: 1024,
    };

    /// A small counter for loom and shuttle: `bits` wide, bias `pin_bias`.
    pub fn scaled(bits: u32, pin_bias: i32) -> Result<CounterScale, String> {
        if !(4..=32).contains(&bits) {
            return Err(format!("counter bits must be 4..=32, got {bits}"));
        }
        if pin_bias < 2 || i64::from(pin_bias) >= 1i64 << (bits - 1) {
            return Err(format!(
                "pin bias {pin_bias} does not fit a {bits}-bit signed counter"
            ));
        }
        Ok(CounterScale { bits, pin_bias })
    }

    /// The value of a raw stored counter at this width (sign-extended).
    #[inline]
    pub fn norm(self, raw: i32) -> i32 {
        let shift = 32 - self.bits;
        raw.wrapping_shl(shift).wrapping_shr(shift)
    }
}

impl Default for CounterScale {
    fn default() -> Self {
        Self::REAL
    }
}

/// A mutation: a dropped protocol step, a misuse, or a fix the kernel does not
/// have, applied on top of a preset. Each names the scenario in which it is
/// observable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// The lockless walker does not disable interrupts (no `local_irq_save`), so
    /// neither the IPI nor the RCU grace period waits for it: page-table pages can be
    /// freed under it. Observable in `munmap_vs_lockless_walker`.
    WalkerSkipsRegistration,
    /// The lockless walker takes a plain `get_page()` instead of the speculative
    /// `folio_try_get()` + recheck, as pre-4.13 x86 GUP-fast did. Safe under IPI
    /// (data pages wait for walkers), a resurrection under RCU table freeing.
    WalkerPlainGet,
    /// The walker announces its interrupts-off section without the full barrier
    /// that pairs with the freer's (the model's stand-in for the ordering an IPI
    /// or a grace period provides). An ordering-only mutation: loom finds it,
    /// sequentially consistent shuttle cannot. Observable in
    /// `munmap_vs_lockless_walker`.
    WalkerRegistrationNoBarrier,
    /// A FOLL_PIN page released with `put_page()`: 1023 references leak and the
    /// page looks pinned forever. Observable in `gup_fast_vs_munmap`.
    PutPageOnPin,
    /// A FOLL_GET page released with `unpin_user_page()`: the bias is subtracted
    /// from a count that never had it. Observable in `concurrent_pin_unpin`.
    UnpinGet,
    /// GUP-fast's speculative grab as a plain increment, which can raise a zero
    /// refcount. Observable in `gup_fast_vs_munmap` under RCU table freeing.
    GrabPlainIncrement,
    /// GUP-fast does not recheck the PTE after its grab. Observable in
    /// `gup_fast_vs_munmap` under RCU, where the freed frame is reused.
    SkipPteRecheck,
    /// `do_anonymous_page` publishes the PTE without the smp_wmb() of
    /// `__folio_mark_uptodate()`: a lockless reader can see the frame's previous
    /// contents. Ordering only (loom). Observable in `fault_vs_lockless_walker`.
    FaultNoWmb,
    /// After VM_FAULT_RETRY dropped and retook `mmap_lock`, the slow path retries
    /// with the VMA it found before, not a fresh lookup: a range unmapped meanwhile
    /// is faulted in again outside any VMA, where nothing will ever free it.
    /// Observable in `gup_unlocked_vs_munmap`.
    StaleVmaAfterRetry,
    /// A driver using an MMU interval notifier programs its device mapping without
    /// `mmu_interval_read_retry()`: an invalidation that ran between its lookup and
    /// its update is missed, and the device writes a page munmap already freed.
    /// Observable in `notifier_device_vs_munmap`.
    NotifierSkipsRetry,
    /// A DIO path takes FOLL_GET (`get_user_pages_fast`) where FOLL_PIN is
    /// required (bug #13, "COW fixes part 3"): fork shares the page, and the
    /// parent's next store copies it away from the DMA. Observable in
    /// `fork_with_dma_in_flight`, and before 5.19 in `pin_then_pageout`
    /// (swapout, the other half of bug #13).
    DioUsesFollGet,
    /// GUP-fast does not recheck the PMD after pinning a PTE (70cbc3cc78a9's
    /// recheck dropped): a THP collapse between the PMD read and the pin hands
    /// out a base page that is no longer mapped (bug #6). Observable in
    /// `gup_fast_vs_thp_collapse` under RCU on 6.1, whose collapse does not yet
    /// sync with walkers; from the 6.1-stable sync on (latest) anonymous
    /// collapse waits for the walker before it checks the refcounts, and the
    /// mutation is clean.
    NoPmdRecheck,
    /// A THP write fault reuses the folio when its mapcount is 1, ignoring GUP
    /// references (`do_huge_pmd_wp_page` before "COW fixes part 1", 5.18; bug
    /// #10). Observable in `vmsplice_fork_thp`.
    ThpReuseByMapcount,
    /// GUP-fast does not recheck `page_folio(page)` after its speculative grab
    /// (c24d37322548 dropped): a split between reading the head and the grab
    /// leaves a reference on the wrong folio. Observable in
    /// `gup_fast_vs_thp_split`.
    NoHeadRecheck,
    /// `folio_unlock()` clears PG_locked without waking the waiters
    /// (`folio_wake_bit` dropped): a thread sleeping in `folio_lock()` sleeps
    /// forever, a lost wake-up. Observable wherever two threads lock one folio.
    UnlockNoWake,
    /// GUP-fast indexes the PTE table with the page number unmasked
    /// (`pte_index()` without `& (PTRS_PER_PTE - 1)`): past the first table
    /// the walk reads beyond the table, an out-of-bounds access the model
    /// reports as a `model crash`. Observable in `gup_fast_vs_page_mkclean`.
    PteIndexUnmasked,
    /// `unpin_user_pages_dirty_lock(make_dirty)` forgets `set_page_dirty_lock`:
    /// a device write that landed after writeback cleaned the page (the
    /// known-open gup+DMA window) is never dirtied again, so no later sync
    /// writes it. Observable in `gup_fast_vs_page_mkclean` (`durable after
    /// sync`).
    UnpinDirtyLost,
    /// `->writepage` is skipped after `folio_clear_dirty_for_io` cleared
    /// PG_dirty (what ext4 does since cc5095747edf for a page without buffers,
    /// here for every page): the dirty state is gone, the data never reached
    /// the disk. Observable in `gup_fast_vs_page_mkclean` (`durable after
    /// sync`).
    WritepageSkipped,
    /// A fix, not a fault: `smp_mb()` right after `raw_write_seqcount_begin()`
    /// in `copy_page_range()` and `copy_hugetlb_page_range()`, so fork's `write_protect_seq` increment is ordered before
    /// its pin-state reads and pairs with GUP-fast's fully ordered pin. No
    /// upstream kernel has it. Clean where the `gup_fast_vs_fork*` store
    /// buffering is found (`open-upstream` on the latest preset).
    ForkSeqMb,
    /// `shrink_folio_list()` puts a maybe-pinned anonymous folio into the
    /// swap cache (feb889fb40fa's check dropped): reclaim unmaps it, and a
    /// read fault maps it back from the swap cache read-only, so the next
    /// store copies it away from the pin under the page_count reuse rule;
    /// from 5.19 `try_to_unmap_one()`'s share check refuses to unmap it.
    /// Observable in `pin_then_pageout`.
    PageoutIgnoresPins,
    /// KSM's `write_protect_page()` shares an exclusive page without
    /// `folio_maybe_dma_pinned()` (`folio_try_share_anon_rmap_pte`'s check
    /// dropped): only the expected-refcount check is left, and it reads the
    /// count with no barrier after the PTE clear, so under RCU table freeing
    /// a racing GUP-fast pin can land unseen and the merge replaces the
    /// pinned page. Ordering only (loom). Observable in `ksm_merge_vs_pin`
    /// on 6.1 and latest.
    KsmMergeIgnoresPins,
    /// `copy_hugetlb_page_range()` shares a maybe-pinned hugetlb folio with
    /// the child (4eae4efa2c29's early COW and 5.19's
    /// `hugetlb_try_dup_anon_rmap()` refusal dropped): the parent's next store
    /// copies the folio away from its pin (`hugetlb_wp`: mapcount 2).
    /// Observable in `hugetlb_fork_pinned` and cow.c's hugetlb A8 rows.
    HugetlbForkIgnoresPins,
    /// `folio_migrate_mapping()` skips its expected-refcount test (for a
    /// page-cache folio, `folio_ref_freeze()` freezes whatever count it
    /// finds): a folio with a GUP reference is migrated, and the holder keeps
    /// the old frame while the address maps the new one. From 5.19 an
    /// exclusive anonymous folio is still kept by the share step
    /// (`folio_try_share_anon_rmap_*`); a page-cache folio has no other guard.
    /// Observable in `pin_vs_thp_migration` before 5.19 and in
    /// `pin_vs_pagecache_migration` in every era.
    MigrationIgnoresRefcount,
}

impl Mutation {
    pub const ALL: [Mutation; 23] = [
        Mutation::WalkerSkipsRegistration,
        Mutation::WalkerPlainGet,
        Mutation::WalkerRegistrationNoBarrier,
        Mutation::PutPageOnPin,
        Mutation::UnpinGet,
        Mutation::GrabPlainIncrement,
        Mutation::SkipPteRecheck,
        Mutation::FaultNoWmb,
        Mutation::StaleVmaAfterRetry,
        Mutation::NotifierSkipsRetry,
        Mutation::DioUsesFollGet,
        Mutation::NoPmdRecheck,
        Mutation::ThpReuseByMapcount,
        Mutation::NoHeadRecheck,
        Mutation::UnlockNoWake,
        Mutation::PteIndexUnmasked,
        Mutation::UnpinDirtyLost,
        Mutation::WritepageSkipped,
        Mutation::ForkSeqMb,
        Mutation::PageoutIgnoresPins,
        Mutation::KsmMergeIgnoresPins,
        Mutation::HugetlbForkIgnoresPins,
        Mutation::MigrationIgnoresRefcount,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Mutation::WalkerSkipsRegistration => "walker_skips_registration",
            Mutation::WalkerPlainGet => "walker_plain_get",
            Mutation::WalkerRegistrationNoBarrier => "walker_registration_no_barrier",
            Mutation::PutPageOnPin => "put_page_on_pin",
            Mutation::UnpinGet => "unpin_get",
            Mutation::GrabPlainIncrement => "grab_plain_increment",
            Mutation::SkipPteRecheck => "skip_pte_recheck",
            Mutation::FaultNoWmb => "fault_no_wmb",
            Mutation::StaleVmaAfterRetry => "stale_vma_after_retry",
            Mutation::NotifierSkipsRetry => "notifier_skips_retry",
            Mutation::DioUsesFollGet => "dio_uses_foll_get",
            Mutation::NoPmdRecheck => "no_pmd_recheck",
            Mutation::ThpReuseByMapcount => "thp_reuse_by_mapcount",
            Mutation::NoHeadRecheck => "no_head_recheck",
            Mutation::UnlockNoWake => "unlock_no_wake",
            Mutation::PteIndexUnmasked => "pte_index_unmasked",
            Mutation::UnpinDirtyLost => "unpin_dirty_lost",
            Mutation::WritepageSkipped => "writepage_skipped",
            Mutation::ForkSeqMb => "fork_seq_mb",
            Mutation::PageoutIgnoresPins => "pageout_ignores_pins",
            Mutation::KsmMergeIgnoresPins => "ksm_merge_ignores_pins",
            Mutation::HugetlbForkIgnoresPins => "hugetlb_fork_ignores_pins",
            Mutation::MigrationIgnoresRefcount => "migration_ignores_refcount",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Mutation::WalkerSkipsRegistration => {
                "lockless walker runs without local_irq_save: table frees do not wait for it"
            }
            Mutation::WalkerPlainGet => {
                "lockless walker uses get_page instead of folio_try_get + recheck (pre-4.13 x86)"
            }
            Mutation::WalkerRegistrationNoBarrier => {
                "walker announces irqs-off without the full barrier pairing with the freer's"
            }
            Mutation::PutPageOnPin => "a FOLL_PIN page released with put_page()",
            Mutation::UnpinGet => "a FOLL_GET page released with unpin_user_page()",
            Mutation::GrabPlainIncrement => {
                "GUP-fast grabs with a plain increment that can raise a zero refcount"
            }
            Mutation::SkipPteRecheck => "GUP-fast skips the PTE recheck after its grab",
            Mutation::FaultNoWmb => {
                "anonymous fault publishes the PTE before the zeroed page (no smp_wmb)"
            }
            Mutation::StaleVmaAfterRetry => {
                "GUP retries after VM_FAULT_RETRY with the VMA found before the lock drop"
            }
            Mutation::NotifierSkipsRetry => {
                "notifier driver maps its device PTE without mmu_interval_read_retry()"
            }
            Mutation::DioUsesFollGet => {
                "a DIO path takes FOLL_GET where FOLL_PIN is required (bug #13)"
            }
            Mutation::NoPmdRecheck => {
                "GUP-fast does not recheck the PMD after pinning a PTE (bug #6)"
            }
            Mutation::ThpReuseByMapcount => {
                "a THP write fault reuses the folio by mapcount, ignoring GUP references (bug #10)"
            }
            Mutation::NoHeadRecheck => {
                "GUP-fast does not recheck the folio after its grab (c24d37322548)"
            }
            Mutation::UnlockNoWake => {
                "folio_unlock clears PG_locked without waking the sleepers (a lost wake-up)"
            }
            Mutation::PteIndexUnmasked => {
                "GUP-fast indexes the PTE table with the page number unmasked (out of bounds)"
            }
            Mutation::UnpinDirtyLost => {
                "unpin_user_pages_dirty_lock forgets to dirty the page (set_page_dirty_lock dropped)"
            }
            Mutation::WritepageSkipped => {
                "writeback clears PG_dirty and skips ->writepage (the data never reaches the disk)"
            }
            Mutation::ForkSeqMb => {
                "a fix upstream lacks: smp_mb() after raw_write_seqcount_begin in copy_page_range"
            }
            Mutation::PageoutIgnoresPins => {
                "reclaim puts a maybe-pinned anonymous page into the swap cache (feb889fb40fa dropped)"
            }
            Mutation::KsmMergeIgnoresPins => {
                "KSM's write_protect_page shares a page without folio_maybe_dma_pinned()"
            }
            Mutation::HugetlbForkIgnoresPins => {
                "fork shares a maybe-pinned hugetlb folio (copy_hugetlb_page_range's early COW dropped)"
            }
            Mutation::MigrationIgnoresRefcount => {
                "folio_migrate_mapping migrates a folio whatever its refcount (the GUP check dropped)"
            }
        }
    }
    pub fn parse(s: &str) -> Result<Mutation, String> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Mutation::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mutation '{s}' (known: {})", names.join(", "))
            })
    }
}

/// Everything that shapes one world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldConfig {
    /// log2 of the entries per page table (9 on x86-64; 1 or 2 under loom/shuttle).
    pub fanout_bits: u32,
    /// Physical frames, including the zero page and page-table pages.
    pub nr_frames: usize,
    /// Base frames in ZONE_MOVABLE and in CMA pageblocks (the lowest base frames,
    /// CMA first), which FOLL_LONGTERM must not pin (migrated away first).
    #[serde(default)]
    pub movable_frames: usize,
    #[serde(default)]
    pub cma_frames: usize,
    /// Page-table slots (storage for tables; each also consumes a frame).
    pub nr_tables: usize,
    /// Address spaces (the layout's plus spares for fork).
    pub nr_mms: usize,
    /// Modelled CPUs: one walker-registry slot per modelled thread.
    pub nr_cpus: usize,
    pub arch: Arch,
    /// The release whose protocol runs.
    #[serde(default)]
    pub preset: PresetId,
    pub counter: CounterScale,
    pub mutations: Vec<Mutation>,
    /// Keep per-thread traces of kernel-named steps (off in stress and bench).
    pub trace: bool,
    /// Invariants this run counts but does not stop at: a scenario's `known-open`
    /// outcomes, so a search can go on to the invariant a mutation breaks.
    #[serde(default)]
    pub tolerate: Vec<crate::invariant::Invariant>,
}

impl WorldConfig {
    /// The order the kernel's folio of this kind has: a PMD-sized folio is
    /// `HPAGE_PMD_ORDER` and a PUD-sized one `PUD_ORDER` (9 and 18 with 4 KiB
    /// pages and 512-entry tables) whatever this world's fan-out makes them (1
    /// and 2 in the model checkers' small worlds); any other order is itself.
    pub(crate) fn kernel_order(&self, order: u32) -> u32 {
        const HPAGE_PMD_ORDER: u32 = 9;
        const PUD_ORDER: u32 = 18;
        if order == 0 {
            0
        } else if order == self.pmd_order() {
            HPAGE_PMD_ORDER
        } else if order == self.pud_order() {
            PUD_ORDER
        } else {
            order
        }
    }

    /// Whether a folio of `order` keeps an exact pincount under this preset:
    /// `hpage_pincount_available()` (5.7: compound order > 1) or
    /// `folio_has_pincount()` (5.18: every large folio), judged on the order
    /// the kernel's folio of that kind has (`kernel_order`), so that a THP of a
    /// small world is counted as a real THP is, not as an order-1 page.
    pub(crate) fn folio_has_pincount(&self, order: u32) -> bool {
        match self.p().pin {
            PinCounting::ExactLarge { min_order } => {
                order > 0 && self.kernel_order(order) >= min_order
            }
            _ => false,
        }
    }

    /// What `refs` pins add to the head refcount of a folio of `order`.
    pub(crate) fn pin_refcount_delta(&self, order: u32, refs: i64) -> i64 {
        let bias = i64::from(self.counter.pin_bias);
        match self.p().pin {
            PinCounting::AsGet => refs,
            PinCounting::BiasOnHead => refs * bias,
            PinCounting::ExactLarge { .. } if self.folio_has_pincount(order) => refs,
            PinCounting::ExactLarge { .. } => refs * bias,
        }
    }

    /// A small world for the model checkers.
    pub fn small(arch: Arch) -> Self {
        WorldConfig {
            fanout_bits: 1,
            nr_frames: 24,
            movable_frames: 0,
            cma_frames: 0,
            nr_tables: 12,
            nr_mms: 1,
            nr_cpus: 3,
            arch,
            preset: PresetId::Latest,
            counter: CounterScale::REAL,
            mutations: Vec::new(),
            trace: true,
            tolerate: Vec::new(),
        }
    }

    pub fn fanout(&self) -> usize {
        1 << self.fanout_bits
    }
    pub fn p(&self) -> &'static Preset {
        self.preset.preset()
    }
    pub fn has(&self, m: Mutation) -> bool {
        self.mutations.contains(&m)
    }
    /// Shift of the range one entry covers at `level` (1 = PTE ... 4 = PGD).
    pub(crate) fn shift(&self, level: u32) -> u32 {
        PAGE_SHIFT + self.fanout_bits * (level - 1)
    }
    /// Index of `addr` in a table of `level`.
    pub fn index(&self, addr: u64, level: u32) -> usize {
        ((addr >> self.shift(level)) as usize) & (self.fanout() - 1)
    }
    /// Bytes of virtual address space.
    pub fn va_size(&self) -> u64 {
        1u64 << (self.shift(4) + self.fanout_bits)
    }
    /// Order of a PMD-mapped folio (9 with 512-entry tables).
    pub(crate) fn pmd_order(&self) -> u32 {
        self.fanout_bits
    }
    /// Order of a PUD-sized hugetlb-like folio (18 with 512-entry tables).
    pub(crate) fn pud_order(&self) -> u32 {
        2 * self.fanout_bits
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.fanout_bits) {
            return Err(format!(
                "fanout_bits must be 1..=9, got {}",
                self.fanout_bits
            ));
        }
        if self.nr_frames < 2 || self.nr_frames >= (1 << 30) {
            return Err(format!("nr_frames out of range: {}", self.nr_frames));
        }
        if self.nr_cpus == 0 {
            return Err("nr_cpus must be at least 1".into());
        }
        if self.movable_frames + self.cma_frames >= self.nr_frames {
            return Err("movable and CMA frames leave no normal frame".into());
        }
        if self.nr_mms == 0 || self.nr_mms > MAX_MMS {
            return Err(format!(
                "nr_mms must be 1..={}, got {}",
                MAX_MMS, self.nr_mms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5.7-5.17 kept an exact pincount for compound pages of order > 1 only:
    /// THPs (order 9) and PUD-sized pages have it in every world, whatever
    /// order the world's fan-out gives them; a compound page of order 1 that is
    /// neither uses the bias, one of order 3 the pincount.
    #[test]
    fn pincount_follows_the_folio_kind_not_the_small_world_order() {
        for fanout_bits in [1, 2, 9] {
            let cfg = WorldConfig {
                fanout_bits,
                preset: PresetId::V5_7,
                ..WorldConfig::small(Arch::Ipi)
            };
            assert!(cfg.folio_has_pincount(cfg.pmd_order()), "{fanout_bits}");
            assert!(cfg.folio_has_pincount(cfg.pud_order()), "{fanout_bits}");
            assert!(!cfg.folio_has_pincount(0));
            assert_eq!(cfg.pin_refcount_delta(cfg.pmd_order(), 3), 3);
            assert_eq!(cfg.pin_refcount_delta(0, 3), 3 * 1024);
        }
        let cfg = WorldConfig {
            fanout_bits: 2,
            preset: PresetId::V5_7,
            ..WorldConfig::small(Arch::Ipi)
        };
        assert!(!cfg.folio_has_pincount(1), "order 1, not PMD-sized here");
        assert!(cfg.folio_has_pincount(3));
        let latest = WorldConfig {
            fanout_bits: 2,
            ..WorldConfig::small(Arch::Ipi)
        };
        assert!(latest.folio_has_pincount(1), "5.18: every large folio");
    }
}
