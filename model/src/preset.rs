//! Presets: named vectors of protocol features, one per kernel release where a
//! modelled feature changes, plus the pseudo-preset of the unmerged FOLL_PIN v11
//! series. Every feature names the commit that introduced it (KERNEL.md §0).
//!
//! A historical bug is (scenario, base preset, one feature delta): the base preset
//! with the fix removed must be found, the base preset must not.

use serde::{Deserialize, Serialize};

use crate::flags::Rules;

/// How FOLL_PIN is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinCounting {
    /// The seed patch: FOLL_PIN is plumbing only; a pin is a plain reference.
    AsGet,
    /// The v11 series (Dec 2019): GUP_PIN_COUNTING_BIAS per subpage, added to the
    /// head's refcount for every folio size (2^28 per whole pin of a 1 GiB page).
    BiasOnHead,
    /// 3faa52c03f44 + 47e29d32afba (5.7): the bias for small folios, an exact
    /// pincount for folios of at least `min_order` (5.7: order > 1; 5232c63f46fd,
    /// 5.18: every large folio), the order being the kernel's for the folio's
    /// kind (`WorldConfig::kernel_order`: a THP is order 9 in any world).
    ExactLarge { min_order: u32 },
}

/// How many atomics a fast-path pin takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinAtomics {
    /// 5.7 `try_grab_compound_head`: one `page_ref_add_unless(refs * bias)`, which
    /// is fully ordered.
    One,
    /// 5.18 folio conversion (8ea2979c1444): `try_get_folio(refs)` then a relaxed
    /// `folio_ref_add(refs * (bias - 1))` or `atomic_add(refs, _pincount)`.
    Two,
}

/// `mm->has_pinned` / MMF_HAS_PINNED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HasPinned {
    None,
    /// 008cfe4418b3 (5.9): `atomic_set(&mm->has_pinned, 1)` on every pin.
    Set,
    /// 5.14 (Andrea Arcangeli): MMF_HAS_PINNED, test before set.
    TestBeforeSet,
}

/// What fork does with an anonymous page the parent may have pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForkCow {
    /// Share it write-protected, like every other page (before 5.9).
    Share,
    /// 70e806e4e645 (5.9): copy it for the child at once if the mm has pinned
    /// (`has_pinned`, 008cfe4418b3) and `page_maybe_dma_pinned()`.
    EarlyCopyPinned,
    /// 6c287605fd56 (5.19): `folio_try_dup_anon_rmap`: an exclusive page that may
    /// be pinned is copied; any other loses PageAnonExclusive.
    DupAnonRmap,
}

/// Which folios FOLL_LONGTERM migrates away before pinning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LongtermScope {
    /// `check_and_migrate_cma_pages` (5.1 .. 5.12).
    Cma,
    /// 5.13 "migrate pinned pages out of movable zone" (Pasha Tatashin).
    Movable,
}

/// Where GUP-fast checks that a folio may be pinned long-term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LongtermCheck {
    /// 5.x-6.9: on the page, before the reference (an unstable page).
    BeforeRef,
    /// 6.10 `try_grab_folio_fast`: on the folio, after the reference.
    AfterRef,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord,
)]
pub enum PresetId {
    #[serde(rename = "seed")]
    Seed,
    #[serde(rename = "v11")]
    V11,
    #[serde(rename = "5.7")]
    V5_7,
    #[serde(rename = "5.8")]
    V5_8,
    #[serde(rename = "5.10")]
    V5_10,
    #[serde(rename = "5.11")]
    V5_11,
    #[serde(rename = "6.0")]
    V6_0,
    #[serde(rename = "6.1")]
    V6_1,
    #[default]
    #[serde(rename = "latest")]
    Latest,
}

impl PresetId {
    pub const ALL: [PresetId; 9] = [
        PresetId::Seed,
        PresetId::V11,
        PresetId::V5_7,
        PresetId::V5_8,
        PresetId::V5_10,
        PresetId::V5_11,
        PresetId::V6_0,
        PresetId::V6_1,
        PresetId::Latest,
    ];
    pub fn preset(self) -> &'static Preset {
        &PRESETS[self as usize]
    }
    pub fn name(self) -> &'static str {
        self.preset().name
    }
    pub fn parse(s: &str) -> Result<PresetId, String> {
        PresetId::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = PresetId::ALL.iter().map(|p| p.name()).collect();
                format!("unknown preset '{s}' (known: {})", names.join(", "))
            })
    }
}

/// One release's protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    pub id: PresetId,
    pub name: &'static str,
    pub about: &'static str,
    /// Flag values and each entry point's checks (gup/rules.rs).
    pub rules: Rules,
    /// The seed (eddb1c228f79): the pin_* entry points are placeholders over
    /// the get_* path; a fast walk takes a plain reference whatever the flags
    /// and `follow_page` references only for FOLL_GET; pages go back with
    /// `put_user_pages`.
    pub pin_is_get: bool,
    /// 6.3, `is_valid_gup_args()` and FOLL_UNLOCKABLE (the `vmas` removal):
    /// one check of every wrapper's flags; the remote calls and GUP-fast's slow
    /// fallback go straight to `__gup_longterm_locked`, letting a fault drop
    /// the lock; `pin_user_pages_unlocked` stands alone; a range that wraps is
    /// -EOVERFLOW, a `_fast_only` failure a negative errno; `check_vma_flags`
    /// no longer refuses VM_IO | VM_PFNMAP first.
    pub valid_gup_args: bool,
    /// 84209e87c696 (6.2): R/O long-term pins in COW mappings are reliable for
    /// non-anonymous pages too: `gup_must_unshare` asks for an unshare of the
    /// shared zero page and of page cache in a private mapping.
    pub unshare_ro_longterm_cow: bool,
    /// 6.5 (`writable_file_mapping_allowed`, `folio_fast_pin_allowed`):
    /// FOLL_LONGTERM | FOLL_WRITE pins of a file mapping that needs dirty
    /// tracking are refused, on the slow path and by GUP-fast.
    pub longterm_file_write_refused: bool,
    pub pin: PinCounting,
    pub pin_atomics: PinAtomics,
    /// c24d37322548 (5.13): recheck `page_folio(page)` after the speculative ref.
    pub head_recheck: bool,
    /// 70cbc3cc78a9 (6.1): recheck the PMD after pinning a PTE (THP collapse).
    pub pmd_recheck: bool,
    /// 088b8aa537c2 (6.1): `smp_mb__after_atomic()` after the pin add, and
    /// `smp_mb()` after the sharer's PTE clear (`folio_try_share_anon_rmap`).
    pub mb_after_pin: bool,
    /// 57efa1fe5957 (5.11): `mm->write_protect_seq` read by FOLL_PIN fast walks.
    pub seqcount: bool,
    pub has_pinned: HasPinned,
    /// c8070b787519 (6.5): a pin of the shared zero page takes no reference.
    pub zero_page_pin_noop: bool,
    pub longterm_scope: LongtermScope,
    pub longterm_check: LongtermCheck,
    /// a7f226604170 (5.19): a read-only pin of a possibly shared anon page unshares.
    pub unshare_ro_pins: bool,
    /// The write-fault reuse rule of `do_wp_page`.
    pub reuse: ReuseRule,
    /// The reuse rule of a THP write fault (`do_huge_pmd_wp_page`): mapcount
    /// until "COW fixes part 1" (5.18, 3bff7e3f1f16; bug #10), then
    /// PageAnonExclusive (5.19).
    pub thp_reuse: ReuseRule,
    pub fork_cow: ForkCow,
    /// fb3d824d1a46 (5.19, "mm/rmap: split page_dup_rmap() into
    /// page_dup_file_rmap() and page_try_dup_anon_rmap()", COW fixes part 2):
    /// `copy_present_pte()` takes the child's reference (`get_page`, later
    /// `folio_get`) *before* `page_try_dup_anon_rmap()` reads the pin state,
    /// and drops it (`put_page`, later `folio_put`) on the -EBUSY copy path;
    /// `copy_huge_pmd()` likewise. Before (5.9-5.18) `copy_present_page()`
    /// checks `has_pinned` and `page_maybe_dma_pinned()` and `get_page()`
    /// follows. The order matters under weak memory: the reference is a
    /// relaxed RMW on the `_refcount` word a small folio's pin check then
    /// reads.
    pub dup_rmap_ref_first: bool,
    /// 17839856fd58 (5.8): a FOLL_GET or FOLL_PIN lookup in a COW mapping breaks
    /// COW as if it wrote (`should_force_cow_break`; the fast walk always looks
    /// up as a write); removed again by a308c71bf1e6.
    pub force_cow_break: bool,
    /// 9348b73c2e1b (5.11): /proc/pid/clear_refs soft-dirty write-protection
    /// skips maybe-pinned pages.
    pub clear_refs_skips_pinned: bool,
    /// 2ba99c5e0881 "mm/khugepaged: fix GUP-fast interaction by sending IPI"
    /// (Dec 2022, 6.1-stable): under RCU table freeing, collapse syncs with
    /// GUP-fast walkers (`tlb_remove_table_sync_one()`) right after
    /// `pmdp_collapse_flush()`, before it checks the base pages' refcounts and
    /// long before the old PTE table is freed or reused.
    pub collapse_syncs_walkers: bool,
    /// 1d65b771bc08 "mm/khugepaged: retract_page_tables() without mmap or vma
    /// lock" (6.6): file collapse frees a retracted PTE table with
    /// `pte_free_defer()` (after an RCU grace period, so a GUP-fast walker
    /// still inside it reads an empty table); before, `collapse_and_free_pmd()`
    /// freed it at once with `pte_free()`.
    pub retract_pte_free_defer: bool,
    /// 3faa52c03f44 (5.7): /proc/vmstat nr_foll_pin_acquired / _released.
    pub vmstat: bool,
    /// 2e3468778dbe (6.1): a migration entry remembers the PTE's dirty bit
    /// and `remove_migration_pte` restores it; before, the restored PTE is
    /// clean (the dirty bit went to the folio).
    pub migration_keeps_dirty: bool,
    /// feb889fb40fa (5.11): `shrink_folio_list()` keeps a maybe-pinned
    /// anonymous folio out of the swap cache (it would be unmapped, faulted
    /// back read-only from the swap cache and copied away from its pin).
    pub pageout_skips_pinned: bool,
    /// 1493a1913e34 (5.19, with PageAnonExclusive; KERNEL.md §6 item 7 leaves
    /// its merge release unsure): `try_to_unmap_one()` marks the swap PTE of
    /// an exclusive page exclusive, and `do_swap_page()` maps the swap-cache
    /// folio exclusive again.
    pub swap_pte_exclusive: bool,
}

/// One feature of a preset, for listings: name, value, commit.
pub struct Feature {
    pub name: &'static str,
    pub value: String,
    pub commit: &'static str,
}

impl Preset {
    pub fn features(&self) -> Vec<Feature> {
        let f = |name, value: String, commit| Feature {
            name,
            value,
            commit,
        };
        let yes = |b: bool| b.to_string();
        let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
        vec![
            f(
                "flag rules",
                dbg(&self.rules),
                "seed eddb1c228f79, 5.7, 5.11, 6.1, 6.3",
            ),
            f("pins are gets", yes(self.pin_is_get), "eddb1c228f79"),
            f(
                "is_valid_gup_args",
                yes(self.valid_gup_args),
                "6.3 FOLL_UNLOCKABLE",
            ),
            f(
                "unshare R/O longterm in COW mappings",
                yes(self.unshare_ro_longterm_cow),
                "84209e87c696",
            ),
            f(
                "longterm file write pins refused",
                yes(self.longterm_file_write_refused),
                "6.5 writable_file_mapping_allowed",
            ),
            f(
                "pin counting",
                dbg(&self.pin),
                "3faa52c03f44, 47e29d32afba, 5232c63f46fd",
            ),
            f("pin atomics", dbg(&self.pin_atomics), "8ea2979c1444"),
            f("head recheck", yes(self.head_recheck), "c24d37322548"),
            f("pmd recheck", yes(self.pmd_recheck), "70cbc3cc78a9"),
            f("mb after pin", yes(self.mb_after_pin), "088b8aa537c2"),
            f("write_protect_seq", yes(self.seqcount), "57efa1fe5957"),
            f(
                "has_pinned",
                dbg(&self.has_pinned),
                "008cfe4418b3, 5.14 MMF_HAS_PINNED",
            ),
            f(
                "zero page pin no-op",
                yes(self.zero_page_pin_noop),
                "c8070b787519",
            ),
            f(
                "longterm scope",
                dbg(&self.longterm_scope),
                "5.13 movable-zone migration",
            ),
            f(
                "longterm check",
                dbg(&self.longterm_check),
                "6.10 try_grab_folio_fast",
            ),
            f(
                "unshare R/O pins",
                yes(self.unshare_ro_pins),
                "a7f226604170",
            ),
            f("reuse rule", dbg(&self.reuse), "09854ba94c6a, 6c287605fd56"),
            f(
                "THP reuse rule",
                dbg(&self.thp_reuse),
                "3bff7e3f1f16, 6c287605fd56",
            ),
            f("pin vmstat", yes(self.vmstat), "3faa52c03f44"),
            f(
                "fork of pinned pages",
                dbg(&self.fork_cow),
                "70e806e4e645, 6c287605fd56",
            ),
            f(
                "fork: child's reference before the pin check",
                yes(self.dup_rmap_ref_first),
                "fb3d824d1a46",
            ),
            f(
                "forced COW break",
                yes(self.force_cow_break),
                "17839856fd58, a308c71bf1e6",
            ),
            f(
                "clear_refs skips pinned",
                yes(self.clear_refs_skips_pinned),
                "9348b73c2e1b",
            ),
            f(
                "migration keeps dirty",
                yes(self.migration_keeps_dirty),
                "2e3468778dbe",
            ),
            f(
                "pageout skips pinned",
                yes(self.pageout_skips_pinned),
                "feb889fb40fa",
            ),
            f(
                "swap PTE exclusive bit",
                yes(self.swap_pte_exclusive),
                "1493a1913e34",
            ),
            f(
                "collapse syncs walkers",
                yes(self.collapse_syncs_walkers),
                "2ba99c5e0881 (6.1-stable)",
            ),
            f(
                "retract frees the table after RCU",
                yes(self.retract_pte_free_defer),
                "1d65b771bc08 (6.6)",
            ),
        ]
    }
}

const fn base(id: PresetId, name: &'static str, about: &'static str) -> Preset {
    Preset {
        id,
        name,
        about,
        rules: Rules::Latest,
        pin_is_get: false,
        valid_gup_args: true,
        unshare_ro_longterm_cow: true,
        longterm_file_write_refused: true,
        pin: PinCounting::ExactLarge { min_order: 1 },
        pin_atomics: PinAtomics::Two,
        head_recheck: true,
        pmd_recheck: true,
        mb_after_pin: true,
        seqcount: true,
        has_pinned: HasPinned::TestBeforeSet,
        zero_page_pin_noop: true,
        longterm_scope: LongtermScope::Movable,
        longterm_check: LongtermCheck::AfterRef,
        unshare_ro_pins: true,
        reuse: ReuseRule::AnonExclusive,
        thp_reuse: ReuseRule::AnonExclusive,
        vmstat: true,
        fork_cow: ForkCow::DupAnonRmap,
        dup_rmap_ref_first: true,
        force_cow_break: false,
        clear_refs_skips_pinned: true,
        collapse_syncs_walkers: true,
        retract_pte_free_defer: true,
        migration_keeps_dirty: true,
        pageout_skips_pinned: true,
        swap_pte_exclusive: true,
    }
}

/// The 5.x protocol before the 5.13 and 5.18 reworks: one fully ordered grab, no
/// head or PMD recheck, no barrier after the pin, CMA-only longterm migration
/// checked on the page before the reference, no unshare.
const fn era5(id: PresetId, name: &'static str, about: &'static str) -> Preset {
    Preset {
        rules: Rules::V5_7,
        valid_gup_args: false,
        unshare_ro_longterm_cow: false,
        longterm_file_write_refused: false,
        pin: PinCounting::ExactLarge { min_order: 2 },
        pin_atomics: PinAtomics::One,
        head_recheck: false,
        pmd_recheck: false,
        mb_after_pin: false,
        seqcount: false,
        has_pinned: HasPinned::None,
        zero_page_pin_noop: false,
        longterm_scope: LongtermScope::Cma,
        longterm_check: LongtermCheck::BeforeRef,
        unshare_ro_pins: false,
        reuse: ReuseRule::Mapcount,
        thp_reuse: ReuseRule::Mapcount,
        fork_cow: ForkCow::Share,
        dup_rmap_ref_first: false,
        clear_refs_skips_pinned: false,
        collapse_syncs_walkers: false,
        retract_pte_free_defer: false,
        migration_keeps_dirty: false,
        pageout_skips_pinned: false,
        swap_pte_exclusive: false,
        ..base(id, name, about)
    }
}

/// Every preset, indexed by `PresetId`.
pub static PRESETS: [Preset; 9] = [
    Preset {
        rules: Rules::Seed,
        pin_is_get: true,
        pin: PinCounting::AsGet,
        vmstat: false,
        ..era5(
            PresetId::Seed,
            "seed",
            "the seed patch (pin_user_pages v2 07/19 on 5.5): FOLL_PIN defined, pins are gets",
        )
    },
    Preset {
        pin: PinCounting::BiasOnHead,
        ..era5(
            PresetId::V11,
            "v11",
            "unmerged FOLL_PIN v11 series (Dec 2019): bias 1024 per subpage on the head, every size",
        )
    },
    era5(
        PresetId::V5_7,
        "5.7",
        "FOLL_PIN tracked: bias 1024, exact pincount for order > 1, pin vmstat",
    ),
    Preset {
        force_cow_break: true,
        ..era5(
            PresetId::V5_8,
            "5.8",
            "COW can break either way: a GUP lookup in a COW mapping breaks COW (17839856fd58)",
        )
    },
    Preset {
        rules: Rules::V5_11,
        has_pinned: HasPinned::Set,
        reuse: ReuseRule::PageCount,
        fork_cow: ForkCow::EarlyCopyPinned,
        ..era5(
            PresetId::V5_10,
            "5.10",
            "reuse only when page_count == 1, has_pinned set on every pin",
        )
    },
    Preset {
        rules: Rules::V5_11,
        has_pinned: HasPinned::Set,
        reuse: ReuseRule::PageCount,
        fork_cow: ForkCow::EarlyCopyPinned,
        seqcount: true,
        clear_refs_skips_pinned: true,
        pageout_skips_pinned: true,
        ..era5(
            PresetId::V5_11,
            "5.11",
            "write_protect_seq: FOLL_PIN fast walks back off while fork copies",
        )
    },
    Preset {
        rules: Rules::V6_1,
        valid_gup_args: false,
        unshare_ro_longterm_cow: false,
        longterm_file_write_refused: false,
        zero_page_pin_noop: false,
        longterm_check: LongtermCheck::BeforeRef,
        mb_after_pin: false,
        collapse_syncs_walkers: false,
        retract_pte_free_defer: false,
        migration_keeps_dirty: false,
        ..base(
            PresetId::V6_0,
            "6.0",
            "PageAnonExclusive (5.19) before 088b8aa537c2: no barrier after the pin, none after the sharer's PTE clear",
        )
    },
    Preset {
        rules: Rules::V6_1,
        valid_gup_args: false,
        unshare_ro_longterm_cow: false,
        longterm_file_write_refused: false,
        zero_page_pin_noop: false,
        longterm_check: LongtermCheck::BeforeRef,
        collapse_syncs_walkers: false,
        retract_pte_free_defer: false,
        ..base(
            PresetId::V6_1,
            "6.1",
            "folios (two atomics), PageAnonExclusive, unshare, the 6.1 barrier and PMD recheck",
        )
    },
    base(
        PresetId::Latest,
        "latest",
        "is_valid_gup_args, zero page pins are no-ops, longterm check after the ref",
    ),
];

/// The write-fault reuse rule of `do_wp_page`, per era (KERNEL.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ReuseRule {
    /// Before 5.9: reuse when `page_mapcount() == 1` (`reuse_swap_page`), ignoring
    /// extra references: the CVE-2020-29374 Missed COW.
    Mapcount,
    /// 09854ba94c6a (5.9/5.10): reuse only when `page_count() == 1`; any GUP
    /// reference forces a copy (Wrong COW for pinned pages).
    PageCount,
    /// 6c287605fd56 (5.19): reuse when PageAnonExclusive; otherwise fall back to
    /// `page_count() == 1` under the page lock and re-mark exclusive.
    AnonExclusive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_indexed_by_id_and_named_uniquely() {
        for id in PresetId::ALL {
            assert_eq!(id.preset().id, id);
            assert_eq!(PresetId::parse(id.name()), Ok(id));
        }
        assert!(PresetId::parse("4.19").is_err());
        let json = serde_json::to_string(&PresetId::V5_11).unwrap();
        assert_eq!(json, "\"5.11\"");
    }
}
