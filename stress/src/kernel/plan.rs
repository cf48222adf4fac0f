//! Which real run each row of the model's selftests table gets, and how a
//! real result is judged against the model's cell. The model's table
//! (`gupcheck_model::harness::kselftest::cow::run_all`) is the one case list:
//! its suite, case and backing strings pick the runner here, so a case the
//! model adds shows up as a row (a skip until it has a runner).

use gupcheck_model::harness::kselftest::cow::{Cell, Row as ModelRow};
use serde::{Deserialize, Serialize};

/// cow.c's anonymous test functions that run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonCase {
    /// `test_cow_in_parent`: the child compares its snapshot after the
    /// parent wrote.
    CowInParent,
    /// `test_vmsplice_in_child`: the child vmsplices, unmaps, and reads the
    /// pipe after the parent wrote.
    VmspliceInChild,
    /// `test_vmsplice_before_fork`: `do_test_vmsplice_in_parent(.., true)`.
    VmspliceBeforeFork,
    /// `test_vmsplice_after_fork`: `do_test_vmsplice_in_parent(.., false)`.
    VmspliceAfterFork,
    /// `test_iouring_ro`: `do_test_iouring(.., false)`, the fixed buffer
    /// R/O-mapped by mprotect and clear_refs.
    IouringRo,
    /// `test_iouring_fork`: `do_test_iouring(.., true)`.
    IouringFork,
}

/// cow.c's anonymous backings (`run_with_base_page`,
/// `run_with_swappedout_base_page`, `run_with_thp`, `run_with_pte_mapped_thp`,
/// `run_with_single_pte_of_thp`, `run_with_hugetlb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonBacking {
    Base,
    SwappedBase,
    PmdThp,
    PteThp,
    SinglePteThp,
    /// MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB of one page of this many kB.
    Hugetlb(u64),
}

/// The huge page size of a model backing "hugetlb 2048 kB", in kB.
pub fn hugetlb_kb(backing: &str) -> Option<u64> {
    backing
        .strip_prefix("hugetlb ")?
        .strip_suffix(" kB")?
        .parse()
        .ok()
}

/// cow.c's `enum ro_pin_test`: how the page is R/O-mapped when pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoPinTest {
    /// `RO_PIN_TEST`: as it is (the non-anonymous cases N2, N3).
    Plain,
    /// `RO_PIN_TEST_SHARED`: shared with a child that is still alive.
    Shared,
    /// `RO_PIN_TEST_PREVIOUSLY_SHARED`: shared with a child that exited.
    PreviouslyShared,
    /// `RO_PIN_TEST_RO_EXCLUSIVE`: mprotect R/O, clear_refs soft-dirty,
    /// mprotect R/W.
    RoExclusive,
}

/// The memory `do_test_ro_pin` pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoPinMem {
    Anon(AnonBacking),
    /// cow.c `run_with_zeropage`.
    ZeroPage,
    /// cow.c `run_with_tmpfile`: a private mapping of a file page.
    PageCache,
}

/// How one row runs on the real kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runner {
    Anon(AnonCase, AnonBacking),
    /// cow.c `test_anon_thp_collapse_unshared`.
    CollapseBeforeFork,
    /// cow.c `test_cow` on `run_with_tmpfile`'s private mapping of a file on
    /// `--dir`'s filesystem (the model's disk file).
    PageCacheCow,
    /// gup_longterm.c `do_test(.., TEST_TYPE_IOURING, shared)`: io_uring's
    /// IORING_REGISTER_BUFFERS is pin_user_pages_fast(FOLL_WRITE |
    /// FOLL_LONGTERM), the model's R/W longterm fast pin.
    LongtermIouring {
        shared: bool,
        backing: String,
    },
    /// cow.c `do_test_ro_pin`: a R/O longterm pin taken by the debugfs
    /// gup_test (PIN_LONGTERM_TEST_START), which no syscall takes.
    RoPin {
        how: RoPinTest,
        fast: bool,
        mem: RoPinMem,
    },
    /// gup_longterm.c `do_test(.., TEST_TYPE_RO/RO_FAST/RW/RW_FAST,
    /// shared)`: the longterm pin of a file page taken by gup_test.
    LongtermGupTest {
        shared: bool,
        rw: bool,
        fast: bool,
        backing: String,
    },
    /// No runner: why.
    None(String),
}

/// The cow.c identifier of a case ("A3 vmsplice() + unmap in child" -> "A3");
/// gup_longterm cases are named by their whole text.
pub fn case_id(suite: &str, case: &str) -> String {
    match suite {
        "cow" => case.split_whitespace().next().unwrap_or(case).to_string(),
        _ => case.to_string(),
    }
}

/// The runner of one model row.
pub fn runner(suite: &str, case: &str, backing: &str) -> Runner {
    let id = case_id(suite, case);
    let anon_backing = match backing {
        "base page" => Some(AnonBacking::Base),
        "swapped-out base page" => Some(AnonBacking::SwappedBase),
        "PMD-mapped THP" => Some(AnonBacking::PmdThp),
        "PTE-mapped THP" => Some(AnonBacking::PteThp),
        "single PTE of a THP" => Some(AnonBacking::SinglePteThp),
        b => hugetlb_kb(b).map(AnonBacking::Hugetlb),
    };
    let anon_case = match id.as_str() {
        "A1" => Some(AnonCase::CowInParent),
        "A3" => Some(AnonCase::VmspliceInChild),
        "A5" => Some(AnonCase::VmspliceBeforeFork),
        "A6" => Some(AnonCase::VmspliceAfterFork),
        "A7" => Some(AnonCase::IouringRo),
        "A8" => Some(AnonCase::IouringFork),
        _ => None,
    };
    match (suite, id.as_str()) {
        ("cow", _) if anon_case.is_some() && anon_backing.is_some() => {
            Runner::Anon(anon_case.unwrap(), anon_backing.unwrap())
        }
        ("cow", "A9" | "A10" | "A11" | "A12" | "A13" | "A14") if anon_backing.is_some() => {
            let how = match id.as_str() {
                "A9" | "A10" => RoPinTest::Shared,
                "A11" | "A12" => RoPinTest::PreviouslyShared,
                _ => RoPinTest::RoExclusive,
            };
            Runner::RoPin {
                how,
                fast: matches!(id.as_str(), "A10" | "A12" | "A14"),
                mem: RoPinMem::Anon(anon_backing.unwrap()),
            }
        }
        ("cow", "N2" | "N3")
            if backing == "shared zeropage" || backing.starts_with("page cache") =>
        {
            Runner::RoPin {
                how: RoPinTest::Plain,
                fast: id == "N3",
                mem: match backing {
                    "shared zeropage" => RoPinMem::ZeroPage,
                    _ => RoPinMem::PageCache,
                },
            }
        }
        ("cow", "C1") => Runner::CollapseBeforeFork,
        ("cow", "N1") if backing.starts_with("page cache") => Runner::PageCacheCow,
        ("gup_longterm", c) if c.starts_with("R/W longterm fast pin, ") => {
            Runner::LongtermIouring {
                shared: c.ends_with("MAP_SHARED"),
                backing: backing.to_string(),
            }
        }
        ("gup_longterm", c) if c.starts_with("R/") && c.contains(" longterm ") => {
            Runner::LongtermGupTest {
                shared: c.ends_with("MAP_SHARED"),
                rw: c.starts_with("R/W "),
                fast: c.contains(" fast pin"),
                backing: backing.to_string(),
            }
        }
        _ => Runner::None("no real-kernel runner for this row".into()),
    }
}

/// What the real kernel did in one case, in the model table's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Real {
    Pass,
    /// The model's invariant (or gup_longterm verdict) the kernel broke.
    Fail(String),
    /// A prerequisite is missing: why.
    Skip(String),
    /// A step the case needs failed unexpectedly: which and how.
    Error(String),
    /// Not run: the model does not model the row.
    NotRun,
}

impl Real {
    pub fn show(&self) -> String {
        match self {
            Real::Pass => "pass".into(),
            Real::Fail(why) => format!("FAIL: {why}"),
            Real::Skip(why) => format!("skip: {why}"),
            Real::Error(why) => format!("error: {why}"),
            Real::NotRun => "not run".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Agree,
    Disagree,
    Skip,
    NotModelled,
    /// The real case could not be carried out (counts as a failure).
    Error,
}

impl Verdict {
    pub fn show(self) -> &'static str {
        match self {
            Verdict::Agree => "yes",
            Verdict::Disagree => "NO",
            Verdict::Skip => "skip",
            Verdict::NotModelled => "not modelled",
            Verdict::Error => "error",
        }
    }
}

/// Two failures agree when they name the same invariant or verdict; a
/// refused pin's errno in parentheses may differ ("pin failed (-12), should
/// work").
fn same_failure(a: &str, b: &str) -> bool {
    // From user space a hugetlb get leak is a leak like any other: the model's
    // name only says which kernel rule let it through.
    let head = |s: &str| match s.split(" (").next().unwrap_or(s) {
        "hugetlb get leak" => "no leak after fork".to_string(),
        h => h.to_string(),
    };
    head(a) == head(b)
}

/// A real result against the model's cell (`None`: not modelled).
pub fn judge(real: &Real, model: Option<&Cell>) -> Verdict {
    match (real, model) {
        (_, None) => Verdict::NotModelled,
        (Real::Skip(_) | Real::NotRun, _) => Verdict::Skip,
        (Real::Error(_), _) => Verdict::Error,
        (Real::Pass, Some(Cell::Pass)) => Verdict::Agree,
        (Real::Fail(a), Some(Cell::Fail(b))) if same_failure(a, b) => Verdict::Agree,
        _ => Verdict::Disagree,
    }
}

/// The model's cell of `row` in the preset at `index`; `None` if the row is
/// not modelled.
pub fn model_cell(row: &ModelRow, index: usize) -> Option<&Cell> {
    match row.not_modelled {
        Some(_) => None,
        None => row.cells.get(index),
    }
}

/// The refusals gup_longterm.c accepts from io_uring's registration ("only
/// new kernels return EFAULT"), as `-errno`.
pub const IOURING_REFUSALS: &[i32] = &[
    -libc_errno::EFAULT,
    -libc_errno::ENOSPC,
    -libc_errno::EOPNOTSUPP,
];

/// The refusal gup_longterm.c accepts from gup_test's
/// PIN_LONGTERM_TEST_START (-EINVAL is its skip).
pub const GUP_TEST_REFUSALS: &[i32] = &[-libc_errno::EFAULT];

/// gup_longterm.c's rule for the model's two flavours, neither of which
/// supports writable longterm pins of a shared mapping: a pin must work
/// unless it is writable and the mapping shared, and a refusal must be one
/// of the errors the upstream case accepts (`accepted`: `IOURING_REFUSALS`
/// or `GUP_TEST_REFUSALS`). `Ok(())` is the pin taken, `Err(-errno)` the
/// refusal; the words are the model table's.
pub fn longterm_verdict(shared: bool, rw: bool, pinned: Result<(), i32>, accepted: &[i32]) -> Real {
    let should_work = !shared || !rw;
    match (pinned, should_work) {
        (Ok(()), true) => Real::Pass,
        (Ok(()), false) => Real::Fail("pinned, should have failed".into()),
        (Err(e), true) => Real::Fail(format!("pin failed ({e}), should work")),
        (Err(e), false) if accepted.contains(&e) => Real::Pass,
        (Err(e), false) => Real::Fail(format!("failed with {e}, not -EFAULT")),
    }
}

/// The errno values the rule names, the same on every Linux architecture
/// this runs on; kept here so the rule compiles (and is tested) anywhere.
pub(crate) mod libc_errno {
    pub const EINVAL: i32 = 22;
    pub const EFAULT: i32 = 14;
    pub const ENOSPC: i32 = 28;
    pub const EOPNOTSUPP: i32 = 95;
}

#[cfg(test)]
mod tests {
    use super::*;
    use gupcheck_model::harness::kselftest::cow::run_all;

    #[test]
    fn every_modelled_row_has_a_runner_or_a_known_skip() {
        let t = run_all();
        for r in t.rows.iter().filter(|r| r.not_modelled.is_none()) {
            if let Runner::None(why) = runner(&r.suite, &r.case, &r.backing) {
                panic!("{} / {} / {}: {why}", r.suite, r.case, r.backing);
            }
        }
    }

    #[test]
    fn rows_pick_their_runner() {
        assert_eq!(
            runner("cow", "A3 vmsplice() + unmap in child", "PMD-mapped THP"),
            Runner::Anon(AnonCase::VmspliceInChild, AnonBacking::PmdThp)
        );
        assert_eq!(
            runner(
                "cow",
                "A10 R/O GUP-fast pin on R/O-mapped shared page",
                "base page"
            ),
            Runner::RoPin {
                how: RoPinTest::Shared,
                fast: true,
                mem: RoPinMem::Anon(AnonBacking::Base)
            }
        );
        assert_eq!(
            runner(
                "cow",
                "A13 R/O GUP pin on R/O-mapped exclusive page",
                "swapped-out base page"
            ),
            Runner::RoPin {
                how: RoPinTest::RoExclusive,
                fast: false,
                mem: RoPinMem::Anon(AnonBacking::SwappedBase)
            }
        );
        assert_eq!(
            runner(
                "cow",
                "A11 R/O GUP pin on R/O-mapped previously-shared page",
                "PTE-mapped THP"
            ),
            Runner::RoPin {
                how: RoPinTest::PreviouslyShared,
                fast: false,
                mem: RoPinMem::Anon(AnonBacking::PteThp)
            }
        );
        assert_eq!(
            runner("cow", "N3 R/O longterm GUP-fast pin", "shared zeropage"),
            Runner::RoPin {
                how: RoPinTest::Plain,
                fast: true,
                mem: RoPinMem::ZeroPage
            }
        );
        assert_eq!(
            runner(
                "cow",
                "N2 R/O longterm GUP pin",
                "page cache (private file mapping)"
            ),
            Runner::RoPin {
                how: RoPinTest::Plain,
                fast: false,
                mem: RoPinMem::PageCache
            }
        );
        assert!(matches!(
            runner("cow", "N2 R/O longterm GUP pin", "huge zeropage"),
            Runner::None(_)
        ));
        assert_eq!(
            runner(
                "gup_longterm",
                "R/W longterm fast pin, MAP_SHARED",
                "xfs-like (iomap)"
            ),
            Runner::LongtermIouring {
                shared: true,
                backing: "xfs-like (iomap)".into()
            }
        );
        assert_eq!(
            runner(
                "gup_longterm",
                "R/W longterm pin, MAP_SHARED",
                "xfs-like (iomap)"
            ),
            Runner::LongtermGupTest {
                shared: true,
                rw: true,
                fast: false,
                backing: "xfs-like (iomap)".into()
            }
        );
        assert_eq!(
            runner(
                "gup_longterm",
                "R/O longterm fast pin, MAP_PRIVATE",
                "ext4-like (buffer heads)"
            ),
            Runner::LongtermGupTest {
                shared: false,
                rw: false,
                fast: true,
                backing: "ext4-like (buffer heads)".into()
            }
        );
        assert_eq!(
            runner("cow", "A5 vmsplice() before fork()", "hugetlb 1048576 kB"),
            Runner::Anon(AnonCase::VmspliceBeforeFork, AnonBacking::Hugetlb(1 << 20))
        );
        assert_eq!(
            runner("cow", "A10 R/O GUP-fast pin", "hugetlb 2048 kB"),
            Runner::RoPin {
                how: RoPinTest::Shared,
                fast: true,
                mem: RoPinMem::Anon(AnonBacking::Hugetlb(2048))
            }
        );
        assert_eq!(hugetlb_kb("hugetlb 2048 kB"), Some(2048));
        assert_eq!(hugetlb_kb("hugetlb"), None);
        assert!(matches!(
            runner("cow", "Z9 new case", "base page"),
            Runner::None(_)
        ));
        assert_eq!(case_id("cow", "A13 R/O GUP pin"), "A13");
        assert_eq!(
            case_id("gup_longterm", "R/O longterm pin, MAP_SHARED"),
            "R/O longterm pin, MAP_SHARED"
        );
    }

    #[test]
    fn judging_real_against_model() {
        let leak = Cell::Fail("no leak after fork".into());
        assert_eq!(judge(&Real::Pass, Some(&Cell::Pass)), Verdict::Agree);
        assert_eq!(
            judge(&Real::Fail("no leak after fork".into()), Some(&leak)),
            Verdict::Agree
        );
        assert_eq!(
            judge(&Real::Fail("coherent pin".into()), Some(&leak)),
            Verdict::Disagree
        );
        assert_eq!(judge(&Real::Pass, Some(&leak)), Verdict::Disagree);
        assert_eq!(
            judge(&Real::Fail("coherent pin".into()), Some(&Cell::Pass)),
            Verdict::Disagree
        );
        assert_eq!(
            judge(&Real::Skip("no THP".into()), Some(&leak)),
            Verdict::Skip
        );
        assert_eq!(
            judge(&Real::Error("fork".into()), Some(&Cell::Pass)),
            Verdict::Error
        );
        assert_eq!(judge(&Real::Pass, None), Verdict::NotModelled);
        assert_eq!(
            judge(
                &Real::Fail("pin failed (-12), should work".into()),
                Some(&Cell::Fail("pin failed (-14), should work".into()))
            ),
            Verdict::Agree
        );
    }

    #[test]
    fn gup_longterm_rule() {
        let io = IOURING_REFUSALS;
        assert_eq!(longterm_verdict(true, true, Err(-14), io), Real::Pass);
        assert_eq!(longterm_verdict(true, true, Err(-95), io), Real::Pass);
        assert_eq!(
            longterm_verdict(true, true, Ok(()), io),
            Real::Fail("pinned, should have failed".into())
        );
        assert_eq!(
            longterm_verdict(true, true, Err(-12), io),
            Real::Fail("failed with -12, not -EFAULT".into())
        );
        assert_eq!(longterm_verdict(false, true, Ok(()), io), Real::Pass);
        assert_eq!(
            longterm_verdict(false, true, Err(-14), io),
            Real::Fail("pin failed (-14), should work".into())
        );
        assert_eq!(longterm_verdict(true, false, Ok(()), io), Real::Pass);
        // gup_test's refusal is -EFAULT only: io_uring's -EOPNOTSUPP is not
        // one for PIN_LONGTERM_TEST_START.
        let gt = GUP_TEST_REFUSALS;
        assert_eq!(longterm_verdict(true, true, Err(-14), gt), Real::Pass);
        assert_eq!(
            longterm_verdict(true, true, Err(-95), gt),
            Real::Fail("failed with -95, not -EFAULT".into())
        );
        assert_eq!(
            longterm_verdict(true, false, Err(-14), gt),
            Real::Fail("pin failed (-14), should work".into())
        );
    }
}
