//! FOLL_* flags: symbolic in the model, with each era's numeric values.
//!
//! The model works on `Foll`, a set of named flags with positions of its own.
//! Raw numbers (gup_test's `-F`, a fuzz input) are decoded with the era's table:
//! the same number means different flags in different releases (FOLL_GET was 0x04
//! until the 6.3 enum made it 1 << 1), and a flag that does not exist in an era
//! decodes to nothing.

use serde::{Deserialize, Serialize};

/// One FOLL_* flag, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Flag {
    Write,
    Touch,
    Get,
    Dump,
    Force,
    Nowait,
    Populate,
    Split,
    Nofault,
    Hwpoison,
    Numa,
    Migration,
    Tried,
    Mlock,
    Remote,
    Cow,
    Anon,
    Longterm,
    SplitPmd,
    Pin,
    FastOnly,
    PciP2pdma,
    Interruptible,
    HonorNumaFault,
    Unlockable,
    MadvPopulate,
}

impl Flag {
    pub const ALL: [Flag; 26] = [
        Flag::Write,
        Flag::Touch,
        Flag::Get,
        Flag::Dump,
        Flag::Force,
        Flag::Nowait,
        Flag::Populate,
        Flag::Split,
        Flag::Nofault,
        Flag::Hwpoison,
        Flag::Numa,
        Flag::Migration,
        Flag::Tried,
        Flag::Mlock,
        Flag::Remote,
        Flag::Cow,
        Flag::Anon,
        Flag::Longterm,
        Flag::SplitPmd,
        Flag::Pin,
        Flag::FastOnly,
        Flag::PciP2pdma,
        Flag::Interruptible,
        Flag::HonorNumaFault,
        Flag::Unlockable,
        Flag::MadvPopulate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::Write => "FOLL_WRITE",
            Flag::Touch => "FOLL_TOUCH",
            Flag::Get => "FOLL_GET",
            Flag::Dump => "FOLL_DUMP",
            Flag::Force => "FOLL_FORCE",
            Flag::Nowait => "FOLL_NOWAIT",
            Flag::Populate => "FOLL_POPULATE",
            Flag::Split => "FOLL_SPLIT",
            Flag::Nofault => "FOLL_NOFAULT",
            Flag::Hwpoison => "FOLL_HWPOISON",
            Flag::Numa => "FOLL_NUMA",
            Flag::Migration => "FOLL_MIGRATION",
            Flag::Tried => "FOLL_TRIED",
            Flag::Mlock => "FOLL_MLOCK",
            Flag::Remote => "FOLL_REMOTE",
            Flag::Cow => "FOLL_COW",
            Flag::Anon => "FOLL_ANON",
            Flag::Longterm => "FOLL_LONGTERM",
            Flag::SplitPmd => "FOLL_SPLIT_PMD",
            Flag::Pin => "FOLL_PIN",
            Flag::FastOnly => "FOLL_FAST_ONLY",
            Flag::PciP2pdma => "FOLL_PCI_P2PDMA",
            Flag::Interruptible => "FOLL_INTERRUPTIBLE",
            Flag::HonorNumaFault => "FOLL_HONOR_NUMA_FAULT",
            Flag::Unlockable => "FOLL_UNLOCKABLE",
            Flag::MadvPopulate => "FOLL_MADV_POPULATE",
        }
    }

    pub fn parse(s: &str) -> Result<Flag, String> {
        let up = s.to_ascii_uppercase();
        let want = if up.starts_with("FOLL_") {
            up
        } else {
            format!("FOLL_{up}")
        };
        Flag::ALL
            .into_iter()
            .find(|f| f.name() == want)
            .ok_or_else(|| format!("unknown flag '{s}'"))
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of FOLL_* flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Foll(pub u32);

impl Foll {
    pub const NONE: Foll = Foll(0);

    pub const fn of(flags: &[Flag]) -> Foll {
        let mut v = 0;
        let mut i = 0;
        while i < flags.len() {
            v |= 1 << (flags[i] as u32);
            i += 1;
        }
        Foll(v)
    }
    pub fn has(self, f: Flag) -> bool {
        self.0 & f.bit() != 0
    }
    pub fn any(self, other: Foll) -> bool {
        self.0 & other.0 != 0
    }
    pub fn with(self, f: Flag) -> Foll {
        Foll(self.0 | f.bit())
    }
    pub fn without(self, f: Flag) -> Foll {
        Foll(self.0 & !f.bit())
    }
    pub(crate) fn union(self, o: Foll) -> Foll {
        Foll(self.0 | o.0)
    }
    /// Flags outside `allowed`.
    pub fn outside(self, allowed: Foll) -> Foll {
        Foll(self.0 & !allowed.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.has(*f))
    }
}

impl std::fmt::Debug for Foll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("0");
        }
        let names: Vec<_> = self.iter().map(|x| x.name()).collect();
        f.write_str(&names.join("|"))
    }
}

/// Whose flag rules and numbers apply.
///
/// Sources: the seed from its own patch (mm/gup.c and include/linux/mm.h hunks of
/// v2 07/19); 5.11 from a 5.11.4 tree (`mm/gup.c`: `is_valid_gup_flags`,
/// `internal_get_user_pages_fast`, `lockless_pages_from_mm`,
/// `check_and_migrate_cma_pages`; `include/linux/mm.h` FOLL_* block); 5.7 from the
/// 5.7-cycle patch mails and the removed lines of later patches ("mm/gup: require
/// FOLL_GET for get_user_pages_fast()", "mm/gup: introduce pin_user_pages_locked()",
/// the FOLL_FAST_ONLY refactor); 6.1 and latest from KERNEL.md §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Rules {
    /// The seed patch (v2 07/19, on a 5.5 tree): FOLL_PIN defined, pin_* wrappers
    /// are placeholders that call the get_* path.
    Seed,
    /// 5.7 (3faa52c03f44 and the rest of "mm/gup: track FOLL_PIN pages").
    V5_7,
    /// 5.11: get_user_pages_fast_only (5.9), write_protect_seq (57efa1fe5957).
    V5_11,
    /// 6.1: `is_valid_gup_flags()`, the 6.1 fast-path mask.
    V6_1,
    /// 6.3+ `is_valid_gup_args()` and the enum values of mm_types.h.
    Latest,
}

impl Rules {
    /// The numeric value of `f` in this era; `None` if the flag does not exist.
    pub fn value(self, f: Flag) -> Option<u32> {
        use Flag::*;
        if self == Rules::Latest {
            // include/linux/mm_types.h `enum { FOLL_WRITE = 1 << 0, ... }` and the
            // internal flags of mm/internal.h (KERNEL.md §2.1).
            return Some(match f {
                Write => 1 << 0,
                Get => 1 << 1,
                Dump => 1 << 2,
                Force => 1 << 3,
                Nowait => 1 << 4,
                Nofault => 1 << 5,
                Hwpoison => 1 << 6,
                Anon => 1 << 7,
                Longterm => 1 << 8,
                SplitPmd => 1 << 9,
                PciP2pdma => 1 << 10,
                Interruptible => 1 << 11,
                HonorNumaFault => 1 << 12,
                Touch => 1 << 16,
                Tried => 1 << 17,
                Remote => 1 << 18,
                Pin => 1 << 19,
                FastOnly => 1 << 20,
                Unlockable => 1 << 21,
                MadvPopulate => 1 << 22,
                Populate | Split | Numa | Migration | Mlock | Cow => return None,
            });
        }
        // The #define values of include/linux/mm.h, stable from 4.x to 6.2; flags
        // come and go by era.
        let v = match f {
            Write => 0x01,
            Touch => 0x02,
            Get => 0x04,
            Dump => 0x08,
            Force => 0x10,
            Nowait => 0x20,
            Populate => 0x40,
            Split => 0x80,
            Hwpoison => 0x100,
            Numa => 0x200,
            Migration => 0x400,
            Tried => 0x800,
            Mlock => 0x1000,
            Remote => 0x2000,
            Cow => 0x4000,
            Anon => 0x8000,
            Longterm => 0x10000,
            SplitPmd => 0x20000,
            Pin => 0x40000,
            FastOnly => 0x80000,
            Nofault => 0x80,
            Interruptible => 0x200000,
            PciP2pdma => 0x100000,
            HonorNumaFault | Unlockable | MadvPopulate => return None,
        };
        let exists = match (self, f) {
            // FOLL_SPLIT went after 5.11 (FOLL_SPLIT_PMD replaced it); FOLL_NOFAULT
            // (5.16) reused its value 0x80. FOLL_NUMA and FOLL_MIGRATION are gone
            // by 6.1.
            (Rules::V6_1, Split | Numa | Migration) => false,
            (_, Split) => true,
            (Rules::V6_1, Nofault) => true,
            (_, Nofault) => false,
            // get_user_pages_fast_only() and FOLL_FAST_ONLY arrived in 5.9.
            (Rules::Seed | Rules::V5_7, FastOnly) => false,
            // FOLL_POPULATE and FOLL_MLOCK went with the 5.18 munlock rework,
            // FOLL_COW with 5535be309971 (6.0).
            (Rules::V6_1, Populate | Mlock | Cow) => false,
            // FOLL_PCI_P2PDMA and FOLL_INTERRUPTIBLE are 6.2.
            (_, PciP2pdma | Interruptible) => false,
            _ => true,
        };
        exists.then_some(v)
    }

    /// Decodes a raw number into the flags it names and the bits no flag of this
    /// era has.
    pub(crate) fn decode_lossy(self, raw: u32) -> (Foll, u32) {
        let mut out = Foll::NONE;
        let mut left = raw;
        for f in Flag::ALL {
            if let Some(v) = self.value(f) {
                if raw & v == v {
                    out = out.with(f);
                    left &= !v;
                }
            }
        }
        (out, left)
    }

    /// Decodes a raw number; `Err` carries the bits no flag of this era has.
    pub fn decode(self, raw: u32) -> Result<Foll, u32> {
        match self.decode_lossy(raw) {
            (f, 0) => Ok(f),
            (_, left) => Err(left),
        }
    }

    /// Encodes a flag set; flags this era does not have are dropped.
    pub fn encode(self, flags: Foll) -> u32 {
        flags
            .iter()
            .filter_map(|f| self.value(f))
            .fold(0, |a, v| a | v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_by_era() {
        assert_eq!(Rules::V6_1.value(Flag::Get), Some(0x04));
        assert_eq!(Rules::Latest.value(Flag::Get), Some(0x02));
        assert_eq!(Rules::Seed.value(Flag::Pin), Some(0x40000));
        assert_eq!(Rules::Seed.value(Flag::FastOnly), None);
        assert_eq!(Rules::V5_11.value(Flag::FastOnly), Some(0x80000));
        assert_eq!(Rules::V6_1.value(Flag::Cow), None);
    }

    #[test]
    fn decode_roundtrips_and_reports_unknown_bits() {
        for r in [
            Rules::Seed,
            Rules::V5_7,
            Rules::V5_11,
            Rules::V6_1,
            Rules::Latest,
        ] {
            let f = Foll::of(&[Flag::Write, Flag::Longterm, Flag::Pin]);
            assert_eq!(r.decode(r.encode(f)), Ok(f), "{r:?}");
        }
        assert_eq!(Rules::Latest.decode(1 << 30), Err(1 << 30));
        assert_eq!(Flag::parse("write"), Ok(Flag::Write));
        assert!(Flag::parse("FOLL_BOGUS").is_err());
    }
}
