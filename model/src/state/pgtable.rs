//! Page tables: four levels (PGD, PUD, PMD, PTE; the P4D level is folded) of atomic
//! entries, one PTL per table, tables stored in frames.
//!
//! Writers hold the table's PTL (`pte_offset_map_lock`, `pmd_lock`). Lockless
//! readers (GUP-fast, see `walk.rs`) snapshot each entry once with READ_ONCE and
//! derive the next level from the snapshot (`pmd_offset_lockless`, after the s390
//! dynamic-folding bug of 2020), never by re-reading the entry.
//!
//! Simplification: a table is named by a storage slot (its "physical address");
//! the slot also owns a frame from the allocator while in use, so a freed table's
//! frame is reused like any page.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, KAtomic, Mutex};
use crate::config::Arch;
use crate::types::Pfn;

/// One page-table entry value, as a walker sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Pte(pub u64);

/// Kinds of migration entry (6c287605fd56: exclusivity travels with the entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationKind {
    Writable,
    ReadableExclusive,
    Readable,
}

impl MigrationKind {
    /// The entry for a mapping that was `old`: writability first, then
    /// exclusivity (`make_writable_migration_entry` and its two siblings).
    pub fn of(old: Pte, exclusive: bool) -> MigrationKind {
        if old.write() {
            MigrationKind::Writable
        } else if exclusive {
            MigrationKind::ReadableExclusive
        } else {
            MigrationKind::Readable
        }
    }
}

impl Pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const DIRTY: u64 = 1 << 2;
    /// pte_special: no struct page to refcount (the zero page on some arches, pfnmaps).
    pub const SPECIAL: u64 = 1 << 3;
    /// NUMA hinting: present for the kernel, inaccessible to the hardware.
    pub const PROTNONE: u64 = 1 << 4;
    /// A huge leaf at PMD or PUD level.
    pub const LEAF: u64 = 1 << 5;
    pub const SWAP: u64 = 1 << 6;
    pub const MIGRATION: u64 = 1 << 7;
    pub const MIG_WRITE: u64 = 1 << 8;
    pub const MIG_EXCL: u64 = 1 << 9;
    pub const SOFT_DIRTY: u64 = 1 << 10;
    /// `pte_swp_exclusive()`: the swapped-out page was exclusive
    /// (1493a1913e34, "remember PG_anon_exclusive via a swp pte bit").
    pub const SWP_EXCLUSIVE: u64 = 1 << 11;
    const PFN_SHIFT: u32 = 16;

    pub const NONE: Pte = Pte(0);

    /// A present entry mapping a page (or, with LEAF at PMD/PUD, a whole folio).
    pub(crate) fn mk_page(pfn: Pfn, write: bool, dirty: bool) -> Pte {
        let mut v = Self::PRESENT | (u64::from(pfn) << Self::PFN_SHIFT);
        if write {
            v |= Self::WRITE;
        }
        if dirty {
            v |= Self::DIRTY;
        }
        Pte(v)
    }
    /// A huge leaf (PMD-mapped THP, hugetlb-like PUD).
    pub(crate) fn mk_leaf(pfn: Pfn, write: bool, dirty: bool) -> Pte {
        Pte(Self::mk_page(pfn, write, dirty).0 | Self::LEAF)
    }
    /// The shared zero page, mapped read-only and special.
    pub(crate) fn mk_zero(pfn: Pfn) -> Pte {
        Pte(Self::PRESENT | Self::SPECIAL | (u64::from(pfn) << Self::PFN_SHIFT))
    }
    /// A non-leaf entry pointing at a lower table.
    pub(crate) fn mk_table(slot: u32) -> Pte {
        Pte(Self::PRESENT | (u64::from(slot) << Self::PFN_SHIFT))
    }
    pub(crate) fn mk_swap(offset: u32) -> Pte {
        Pte(Self::SWAP | (u64::from(offset) << Self::PFN_SHIFT))
    }
    /// A swap entry for slot `offset`, marked exclusive if `exclusive`
    /// (`pte_swp_mkexclusive`).
    pub(crate) fn mk_swap_entry(offset: u32, exclusive: bool) -> Pte {
        let e = Self::mk_swap(offset);
        if exclusive {
            e.with(Self::SWP_EXCLUSIVE)
        } else {
            e
        }
    }
    pub(crate) fn mk_migration(pfn: Pfn, kind: MigrationKind) -> Pte {
        let k = match kind {
            MigrationKind::Writable => Self::MIG_WRITE | Self::MIG_EXCL,
            MigrationKind::ReadableExclusive => Self::MIG_EXCL,
            MigrationKind::Readable => 0,
        };
        Pte(Self::MIGRATION | k | (u64::from(pfn) << Self::PFN_SHIFT))
    }
    /// A PMD migration entry (`swp_entry_to_pmd`; THP migration, 4.14, "mm:
    /// thp: enable thp migration in generic path"): not present, and marked a
    /// leaf so that no walker takes it for a table pointer.
    pub(crate) fn mk_pmd_migration(head: Pfn, kind: MigrationKind) -> Pte {
        Self::mk_migration(head, kind).with(Self::LEAF)
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
    /// pte_present(): true for protnone too.
    pub fn present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }
    pub fn write(self) -> bool {
        self.0 & Self::WRITE != 0
    }
    pub fn dirty(self) -> bool {
        self.0 & Self::DIRTY != 0
    }
    pub fn special(self) -> bool {
        self.0 & Self::SPECIAL != 0
    }
    pub(crate) fn protnone(self) -> bool {
        self.0 & Self::PROTNONE != 0
    }
    pub fn leaf(self) -> bool {
        self.0 & Self::LEAF != 0
    }
    pub(crate) fn is_swap(self) -> bool {
        self.0 & Self::SWAP != 0
    }
    /// `pte_swp_exclusive()` of a swap entry.
    pub(crate) fn swp_exclusive(self) -> bool {
        self.is_swap() && self.0 & Self::SWP_EXCLUSIVE != 0
    }
    pub(crate) fn is_migration(self) -> bool {
        self.0 & Self::MIGRATION != 0
    }
    /// `is_pmd_migration_entry()`.
    pub(crate) fn is_pmd_migration(self) -> bool {
        self.is_migration() && self.leaf()
    }
    pub(crate) fn migration_kind(self) -> Option<MigrationKind> {
        if !self.is_migration() {
            return None;
        }
        Some(if self.0 & Self::MIG_WRITE != 0 {
            MigrationKind::Writable
        } else if self.0 & Self::MIG_EXCL != 0 {
            MigrationKind::ReadableExclusive
        } else {
            MigrationKind::Readable
        })
    }
    /// The page frame (leaf, swap offset or migration target) or table slot.
    pub fn pfn(self) -> Pfn {
        (self.0 >> Self::PFN_SHIFT) as Pfn
    }
    pub fn table_slot(self) -> u32 {
        self.pfn()
    }
    /// pte_access_permitted(): present, accessible, and writable if `write`.
    pub(crate) fn access_permitted(self, write: bool) -> bool {
        self.present() && !self.protnone() && (!write || self.write())
    }
    pub fn with(self, bits: u64) -> Pte {
        Pte(self.0 | bits)
    }
    pub fn without(self, bits: u64) -> Pte {
        Pte(self.0 & !bits)
    }
}

impl std::fmt::Debug for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut s = String::new();
        if self.is_swap() {
            s.push_str(if self.swp_exclusive() {
                "swap|excl"
            } else {
                "swap"
            });
        } else if let Some(k) = self.migration_kind() {
            let pmd = if self.leaf() { "pmd " } else { "" };
            s.push_str(&format!("{pmd}migration({k:?})"));
        } else {
            s.push_str(if self.leaf() { "leaf" } else { "present" });
            for (b, n) in [
                (Self::WRITE, "w"),
                (Self::DIRTY, "d"),
                (Self::SPECIAL, "s"),
                (Self::PROTNONE, "protnone"),
                (Self::SOFT_DIRTY, "sd"),
            ] {
                if self.0 & b != 0 {
                    s.push('|');
                    s.push_str(n);
                }
            }
        }
        write!(f, "{s}@{}", self.pfn())
    }
}

/// One page-table page: its entries and its PTL (split PTE/PMD locks).
pub struct PageTable<B: Backend> {
    pub entries: Box<[B::AtomicU64]>,
    pub ptl: Mutex<B, ()>,
}

impl<B: Backend> PageTable<B> {
    /// The PTL, if entry `idx` still holds `pte` (`pte_same()` under the
    /// lock, as a fault handler checks after taking it); `None`, with the lock
    /// dropped again, if someone changed the entry meanwhile.
    pub(crate) fn lock_if_same(&self, idx: usize, pte: Pte) -> Option<B::RawMutexGuard<'_, ()>> {
        let g = self.ptl.lock();
        (self.read(idx) == pte).then_some(g)
    }

    pub fn new(fanout: usize) -> Self {
        PageTable {
            entries: (0..fanout).map(|_| B::AtomicU64::new(0)).collect(),
            ptl: Mutex::new(()),
        }
    }

    /// READ_ONCE of entry `i` whose value feeds the next address.
    #[inline]
    pub fn read(&self, i: usize) -> Pte {
        Pte(self.entries[i].read_once_dep())
    }
    /// set_pte_at() under the PTL.
    #[inline]
    pub fn set(&self, i: usize, v: Pte) {
        self.entries[i].write_once(v.0)
    }
    /// `ptep_get_and_clear()`, and every clear of an entry under its lock built
    /// on the same primitive: `ptep_clear_flush`, zap's
    /// `get_and_clear_full_ptes`, `pmdp_huge_get_and_clear` (in
    /// `pmdp_collapse_flush`, `zap_huge_pmd`), `pmdp_establish` (in
    /// `pmdp_invalidate`). One rule per arch mode, never stronger than the
    /// kernel: under IPI (x86) a LOCK-prefixed `xchg`, fully ordered; under
    /// RCU table freeing arm64's `__ptep_get_and_clear` / `pmdp_establish`,
    /// `xchg_relaxed`, ordered against nothing around it (and the flush after
    /// it orders nothing in the model either, weaker than arm64's `dsb(ish)`).
    #[inline]
    pub(crate) fn get_and_clear(&self, i: usize, arch: Arch) -> Pte {
        Pte(match arch {
            Arch::Ipi => self.entries[i].xchg(0),
            Arch::Rcu => self.entries[i].xchg_relaxed(0),
        })
    }
}

/// The page-table level names, for traces and reports.
pub(crate) fn level_name(level: u32) -> &'static str {
    match level {
        4 => "pgd",
        3 => "pud",
        2 => "pmd",
        _ => "pte",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_encoding_roundtrips() {
        let p = Pte::mk_page(77, true, false);
        assert!(p.present() && p.write() && !p.dirty() && !p.leaf());
        assert_eq!(p.pfn(), 77);
        assert!(p.access_permitted(true));
        let z = Pte::mk_zero(0);
        assert!(z.special() && !z.write() && !z.access_permitted(true));
        let m = Pte::mk_migration(5, MigrationKind::ReadableExclusive);
        assert!(!m.present());
        assert_eq!(m.migration_kind(), Some(MigrationKind::ReadableExclusive));
        assert_eq!(m.pfn(), 5);
        let pn = Pte::mk_page(3, true, true).with(Pte::PROTNONE);
        assert!(pn.present() && !pn.access_permitted(false));
        assert!(Pte::mk_swap(9).is_swap() && !Pte::mk_swap(9).present());
        let x = Pte::mk_swap_entry(9, true);
        assert!(x.swp_exclusive() && x.pfn() == 9 && !Pte::mk_swap(9).swp_exclusive());
        assert!(Pte::mk_leaf(512, false, false).leaf());
        let pm = Pte::mk_pmd_migration(8, MigrationKind::Writable);
        assert!(!pm.present() && pm.is_pmd_migration() && !m.is_pmd_migration());
        assert_eq!(pm.migration_kind(), Some(MigrationKind::Writable));
        assert_eq!(pm.pfn(), 8);
    }
}
