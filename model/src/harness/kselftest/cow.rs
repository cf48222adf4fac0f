//! The kernel's own GUP selftests over the model (KERNEL.md §8.2, §8.3):
//! `tools/testing/selftests/mm/cow.c`'s anonymous, THP-collapse and non-anonymous cases over
//! the backings the model has, and `gup_longterm.c`'s should-work rule over the
//! two filesystem flavours, run in every preset. Each cow.c case is a
//! generated one-thread scenario judged by the model's invariants (a leak from
//! parent into child is `no leak after fork`, an unreliable pin `coherent
//! pin`); a gup_longterm case is judged by whether the pin succeeded.
//! `gupcheck selftests` prints the table and writes it as Markdown and JSON;
//! `model/selftests.json` is its expectation, checked by a test.

use serde::{Deserialize, Serialize};

use crate::backend::Std;
use crate::config::{Arch, Mutation, WorldConfig};
use crate::flags::{Flag, Foll};
use crate::ghost::Ctx;
use crate::gup::api::GupApi;
use crate::harness::engine::{run, Engine};
use crate::harness::ops::{FlagSel, Op, ReleaseApi, OPS_VERSION};
use crate::harness::scenario::Scenario;
use crate::preset::PresetId;
use crate::state::fs::{Cached, FileSpec, FsFlavour};
use crate::state::layout::{HugeSize, Layout, Populate, Region};
use crate::state::world::World;

/// One result of a case in one preset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Pass,
    /// The invariant broken, or what went wrong.
    Fail(String),
}

impl Cell {
    fn show(&self) -> String {
        match self {
            Cell::Pass => "pass".into(),
            Cell::Fail(why) => format!("FAIL: {why}"),
        }
    }
    /// As kselftest reports a case upstream expects to fail: XFAIL, or XPASS.
    fn show_xfail(&self) -> String {
        match self {
            Cell::Pass => "XPASS".into(),
            Cell::Fail(why) => format!("XFAIL: {why}"),
        }
    }
}

/// One row: a case on a backing, across the presets (or why not modelled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub suite: String,
    pub case: String,
    pub backing: String,
    /// Per preset of `Table::presets`; empty when not modelled.
    pub cells: Vec<Cell>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_modelled: Option<String>,
    /// Upstream's cow.c expects this case to fail on this backing (XFAIL),
    /// and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub presets: Vec<String>,
    pub rows: Vec<Row>,
}

/// The backings of cow.c the model has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    BasePage,
    /// cow.c's "swapped-out base page": written, then MADV_PAGEOUT.
    SwappedBasePage,
    PmdThp,
    PteThp,
    SinglePteThp,
    /// MAP_PRIVATE | MAP_HUGETLB of one folio of the size.
    Hugetlb(HugeSize),
    ZeroPage,
    PageCache,
}

impl Backing {
    fn name(self) -> &'static str {
        match self {
            Backing::BasePage => "base page",
            Backing::SwappedBasePage => "swapped-out base page",
            Backing::PmdThp => "PMD-mapped THP",
            Backing::PteThp => "PTE-mapped THP",
            Backing::SinglePteThp => "single PTE of a THP",
            Backing::Hugetlb(size) => size.name(),
            Backing::ZeroPage => "shared zeropage",
            Backing::PageCache => "page cache (private file mapping)",
        }
    }
}

const ANON: [Backing; 7] = [
    Backing::BasePage,
    Backing::SwappedBasePage,
    Backing::PmdThp,
    Backing::PteThp,
    Backing::SinglePteThp,
    Backing::Hugetlb(HugeSize::Pmd),
    Backing::Hugetlb(HugeSize::Pud),
];

/// Why upstream's cow.c marks a case XFAIL on `b`, if it does: on hugetlb the
/// vmsplice cases (A3-A6), because `hugetlb_wp()` reuses a folio mapped once
/// whatever GUP references it has.
fn anon_xfail(id: &str, b: Backing) -> Option<&'static str> {
    (matches!(b, Backing::Hugetlb(_)) && matches!(id, "A3" | "A4" | "A5" | "A6"))
        .then_some("Leak from parent into child (hugetlb_wp reuses by mapcount)")
}

/// cow.c backings the model lacks, and why.
const NOT_MODELLED: [(&str, &str, &str); 7] = [
    ("anon", "swapped THP (PMD or PTE-mapped)", "no THP swap-out"),
    ("anon", "single PTE of a swapped THP", "no THP swap-out"),
    ("anon", "partially mremap()'ed THP", "no mremap()"),
    ("anon", "partially shared THP", "no MADV_DONTFORK"),
    ("anon", "mTHP sizes", "folios are base or PMD order only"),
    (
        "non-anon",
        "memfd / tmpfile (shared)",
        "no shmem: the page-cache row uses a disk file",
    ),
    (
        "non-anon",
        "huge zeropage, memfd hugetlb",
        "no huge zero page; hugetlb is private anonymous only (no hugetlbfs file)",
    ),
];

/// The cases whose cow.c variant needs mprotect().
const ANON_NOT_MODELLED: [(&str, &str); 2] = [
    ("A2", "Basic COW after fork() with mprotect() optimization"),
    (
        "A4",
        "vmsplice() + unmap in child with mprotect() optimization",
    ),
];

fn gup(api: GupApi, mm: u8, flags: FlagSel) -> Op {
    Op::Gup {
        api,
        mm,
        page: 0,
        nr: 1,
        flags,
    }
}

const W: Op = Op::Touch {
    mm: 0,
    page: 0,
    write: true,
};
const FORK: Op = Op::Fork { child: 1 };
const CHILD_W: Op = Op::Touch {
    mm: 1,
    page: 0,
    write: true,
};
const RELEASE: Op = Op::Release {
    handle: 0,
    how: ReleaseApi::Matching,
};
const RO_LT: FlagSel = FlagSel {
    write: false,
    longterm: true,
    force: false,
};
const RW_LT: FlagSel = FlagSel {
    write: true,
    longterm: true,
    force: false,
};

/// cow.c's anonymous cases: (id, name, ops after the initial store).
fn anon_cases() -> Vec<(&'static str, String, Vec<Op>)> {
    let vmsplice = |mm| gup(GupApi::GetUserPagesFast, mm, FlagSel::default());
    let ro_pin = |api| vec![gup(api, 0, RO_LT), Op::CheckPinSees { handle: 0 }, RELEASE];
    let mut v = vec![
        (
            "A1",
            "Basic COW after fork()".into(),
            vec![FORK, W, Op::Load { mm: 1, page: 0 }],
        ),
        (
            "A3",
            "vmsplice() + unmap in child".into(),
            vec![
                FORK,
                Op::UseMm { mm: 1 },
                vmsplice(1),
                Op::Munmap { mm: 1, region: 0 },
                Op::UseMm { mm: 0 },
                W,
                Op::UseMm { mm: 1 },
                Op::ReadHandle { handle: 0 },
                RELEASE,
            ],
        ),
        (
            "A5",
            "vmsplice() before fork(), unmap in parent after fork()".into(),
            vec![
                vmsplice(0),
                FORK,
                Op::Munmap { mm: 0, region: 0 },
                CHILD_W,
                Op::ReadHandle { handle: 0 },
                RELEASE,
            ],
        ),
        (
            "A6",
            "vmsplice() + unmap in parent after fork()".into(),
            vec![
                FORK,
                vmsplice(0),
                Op::Munmap { mm: 0, region: 0 },
                CHILD_W,
                Op::ReadHandle { handle: 0 },
                RELEASE,
            ],
        ),
        (
            "A7",
            "R/O-mapping a page registered as a R/W longterm buffer (clear_refs)".into(),
            vec![
                gup(GupApi::PinUserPages, 0, RW_LT),
                Op::ClearRefs { mm: 0 },
                Op::CheckPinSees { handle: 0 },
                RELEASE,
            ],
        ),
        (
            "A8",
            "fork() with a R/W longterm buffer".into(),
            vec![
                gup(GupApi::PinUserPages, 0, RW_LT),
                FORK,
                Op::CheckPinSees { handle: 0 },
                RELEASE,
            ],
        ),
    ];
    // A9-A14: a R/O pin (GUP, then GUP-fast) on a page R/O-mapped three ways.
    let ro_mapped: [(&str, &str, &str, Vec<Op>); 3] = [
        ("A9", "A10", "shared page", vec![FORK]),
        (
            "A11",
            "A12",
            "previously-shared page",
            vec![FORK, Op::Munmap { mm: 1, region: 0 }],
        ),
        (
            "A13",
            "A14",
            "exclusive page",
            vec![Op::ClearRefs { mm: 0 }],
        ),
    ];
    for (gup_id, fast_id, page, prefix) in ro_mapped {
        for (id, how, api) in [
            (gup_id, "GUP", GupApi::PinUserPages),
            (fast_id, "GUP-fast", GupApi::PinUserPagesFast),
        ] {
            let mut ops = prefix.clone();
            ops.extend(ro_pin(api));
            v.push((id, format!("R/O {how} pin on R/O-mapped {page}"), ops));
        }
    }
    v
}

fn world() -> WorldConfig {
    WorldConfig {
        nr_mms: 2,
        nr_frames: 40,
        nr_tables: 16,
        trace: false,
        ..WorldConfig::small(Arch::Ipi)
    }
}

fn scenario(name: String, layout: Layout, ops: Vec<Op>) -> Scenario {
    Scenario {
        name,
        about: String::new(),
        version: OPS_VERSION,
        layout,
        threads: vec![ops],
        world: world(),
        window: None,
    }
}

/// Why the anonymous case `ops` is not modelled on `b`, if it is not: on a
/// swapped-out page, a case that forks before its first GUP call forks a
/// swap entry, which the model's fork does not duplicate.
fn anon_not_modelled(b: Backing, ops: &[Op]) -> Option<&'static str> {
    let first_gup = ops.iter().position(|o| matches!(o, Op::Gup { .. }));
    let first_fork = ops.iter().position(|o| matches!(o, Op::Fork { .. }));
    match (b, first_fork) {
        (Backing::SwappedBasePage, Some(f)) if first_gup.is_none_or(|g| f < g) => {
            Some("forks the swap entry: the model's fork does not duplicate swap entries")
        }
        _ => None,
    }
}

/// The anonymous case `ops` on `b`: the memory is written first (cow.c's
/// memset), and for a swapped-out page paged out (MADV_PAGEOUT: the page is
/// unreferenced, so it goes to its swap slot and is freed); a single PTE of
/// a THP is a PTE-mapped THP with the rest unmapped. A hugetlb backing is one
/// folio, with two more in the pool for the copies of COW, unsharing and fork.
fn anon_scenario(id: &str, b: Backing, ops: &[Op]) -> Scenario {
    let mut layout = Layout::one(vec![Region::anon(0, 2, Populate::Anon)]);
    match b {
        Backing::BasePage | Backing::SwappedBasePage => {}
        Backing::PmdThp => layout.mms[0][0].populate = Populate::Thp,
        Backing::Hugetlb(size) => {
            let pages = 1u64 << (world().shift(size.level()) - crate::types::PAGE_SHIFT);
            layout.mms[0][0] = Region::hugetlb(0, pages, size, Populate::Hugetlb);
            layout.spare_pmd_folios = 2 * usize::from(size == HugeSize::Pmd);
            layout.spare_pud_folios = 2 * usize::from(size == HugeSize::Pud);
        }
        _ => layout.mms[0][0].populate = Populate::ThpPte,
    }
    let mut all = Vec::new();
    if b == Backing::SinglePteThp {
        all.push(Op::MunmapPages {
            mm: 0,
            page: 1,
            nr: 1,
        });
    }
    all.push(W);
    if b == Backing::SwappedBasePage {
        all.push(Op::Pageout { mm: 0, page: 0 });
    }
    all.extend_from_slice(ops);
    scenario(format!("cow {id} {}", b.name()), layout, all)
}

/// cow.c's non-anonymous cases on `b`; `None`: not modelled there.
fn non_anon_scenario(id: &str, b: Backing) -> Option<Scenario> {
    let layout = match b {
        Backing::ZeroPage => Layout::one(vec![Region::anon(0, 2, Populate::ZeroPage)]),
        _ => Layout {
            files: vec![FileSpec {
                pages: 1,
                flavour: FsFlavour::Iomap,
                cached: Cached::Clean,
            }],
            ..Layout::one(vec![
                Region::file(0, 1, 0, false, Populate::PageCache),
                Region::file(2, 1, 0, true, Populate::PageCache),
            ])
        },
    };
    let ops = match id {
        // A private write must not change the shared view: the page cache
        // page keeps the disk's data (checked at quiescence).
        "N1" if b == Backing::PageCache => vec![
            W,
            Op::Touch {
                mm: 0,
                page: 1,
                write: false,
            },
        ],
        "N1" => return None,
        "N2" => vec![
            gup(GupApi::PinUserPages, 0, RO_LT),
            Op::CheckPinSees { handle: 0 },
            RELEASE,
        ],
        _ => vec![
            gup(GupApi::PinUserPagesFast, 0, RO_LT),
            Op::CheckPinSees { handle: 0 },
            RELEASE,
        ],
    };
    Some(scenario(format!("cow {id} {}", b.name()), layout, ops))
}

const NON_ANON: [(&str, &str); 3] = [
    ("N1", "Basic COW"),
    ("N2", "R/O longterm GUP pin"),
    ("N3", "R/O longterm GUP-fast pin"),
];

fn judge(sc: &Scenario, preset: PresetId, mutations: &[Mutation]) -> Cell {
    match run(
        sc,
        &sc.config_for(preset, Arch::Ipi, mutations),
        &Engine::Std { iterations: 1 },
    ) {
        Ok(o) => match o.failure {
            None => Cell::Pass,
            Some(f) => Cell::Fail(f.violation.invariant.to_string()),
        },
        Err(e) => Cell::Fail(format!("model error: {e}")),
    }
}

/// gup_longterm.c: a longterm pin (R/W or R/O, GUP or GUP-fast) of a shared or
/// private mapping of a file; it must work unless the mapping is shared and the
/// pin writable (neither flavour supports writable longterm pinning), and a
/// refused pin must fail with -EFAULT.
fn gup_longterm(flavour: FsFlavour, shared: bool, rw: bool, fast: bool, preset: PresetId) -> Cell {
    let cfg = WorldConfig { preset, ..world() };
    let layout = Layout {
        files: vec![FileSpec {
            pages: 1,
            flavour,
            cached: Cached::No,
        }],
        ..Layout::one(vec![Region::file(0, 1, 0, shared, Populate::None)])
    };
    let w = match World::<Std>::build(cfg, &layout) {
        Ok(w) => w,
        Err(e) => return Cell::Fail(format!("model error: {e}")),
    };
    let mut ctx = Ctx::new(0, 1, false);
    let mut flags = Foll::of(&[Flag::Longterm]);
    if rw {
        flags = flags.with(Flag::Write);
    }
    let mut pages = Vec::new();
    let r = if fast {
        w.pin_user_pages_fast(&mut ctx, 0, 1, flags, Some(&mut pages))
    } else {
        w.pin_user_pages(&mut ctx, 0, 1, flags, Some(&mut pages))
    };
    let r = match r {
        Ok(r) => r,
        Err(v) => return Cell::Fail(v.invariant.to_string()),
    };
    let should_work = !shared || !rw;
    let cell = match (r == 1, should_work) {
        (true, true) => Cell::Pass,
        (true, false) => Cell::Fail("pinned, should have failed".into()),
        (false, true) => Cell::Fail(format!("pin failed ({r}), should work")),
        (false, false) if r == crate::types::Errno::EFAULT.as_ret() => Cell::Pass,
        (false, false) => Cell::Fail(format!("failed with {r}, not -EFAULT")),
    };
    if r == 1 {
        if let Err(v) = w.unpin_user_pages(&mut ctx, &pages) {
            return Cell::Fail(v.invariant.to_string());
        }
    }
    match w.check_quiescent(&ctx.ledger) {
        Ok(()) => cell,
        Err(v) => Cell::Fail(v.invariant.to_string()),
    }
}

/// The anonymous case `id` (e.g. "A8") on the backing named `backing` in
/// `preset` under `mutations`; `None` if there is no such modelled row.
pub fn run_anon_case(
    id: &str,
    backing: &str,
    preset: PresetId,
    mutations: &[Mutation],
) -> Option<Cell> {
    let (_, _, ops) = anon_cases().into_iter().find(|(i, _, _)| *i == id)?;
    let b = ANON.into_iter().find(|b| b.name() == backing)?;
    if anon_not_modelled(b, &ops).is_some() {
        return None;
    }
    Some(judge(&anon_scenario(id, b, &ops), preset, mutations))
}

/// Runs every case in every preset.
pub fn run_all() -> Table {
    let presets: Vec<PresetId> = PresetId::ALL.to_vec();
    let mut rows = Vec::new();
    let row = |suite: &str, case: String, backing: &str, cells| Row {
        suite: suite.into(),
        case,
        backing: backing.into(),
        cells,
        not_modelled: None,
        xfail: None,
    };
    for (id, name, ops) in anon_cases() {
        for b in ANON {
            if let Some(why) = anon_not_modelled(b, &ops) {
                rows.push(Row {
                    not_modelled: Some(why.into()),
                    ..row("cow", format!("{id} {name}"), b.name(), Vec::new())
                });
                continue;
            }
            let sc = anon_scenario(id, b, &ops);
            let cells = presets.iter().map(|&p| judge(&sc, p, &[])).collect();
            rows.push(Row {
                xfail: anon_xfail(id, b).map(Into::into),
                ..row("cow", format!("{id} {name}"), b.name(), cells)
            });
        }
    }
    for (id, name) in ANON_NOT_MODELLED {
        rows.push(Row {
            not_modelled: Some("no mprotect()".into()),
            ..row("cow", format!("{id} {name}"), "all", Vec::new())
        });
    }
    // cow.c's THP collapse cases: MADV_COLLAPSE before fork, then the parent
    // writes and the child compares. The model collapses a PMD range of base
    // pages (cow.c starts from a PTE-mapped THP).
    let collapse = scenario(
        "cow C1 collapse before fork".into(),
        Layout {
            spare_pmd_folios: 1,
            ..Layout::one(vec![Region::anon(0, 2, Populate::Anon)])
        },
        vec![
            Op::Collapse { mm: 0, page: 0 },
            FORK,
            W,
            Op::Touch {
                mm: 0,
                page: 1,
                write: true,
            },
            Op::Load { mm: 1, page: 0 },
            Op::Load { mm: 1, page: 1 },
        ],
    );
    let cells = presets.iter().map(|&p| judge(&collapse, p, &[])).collect();
    rows.push(row(
        "cow",
        "C1 Basic COW after fork() when collapsing before fork()".into(),
        "base pages of a PMD range",
        cells,
    ));
    for name in [
        "C2 Basic COW after fork() when collapsing after fork() (fully shared)",
        "C3 Basic COW after fork() when collapsing after fork() (lower shared)",
        "C4 Basic COW after fork() when collapsing after fork() (upper shared)",
    ] {
        rows.push(Row {
            not_modelled: Some(
                "the model's collapse refuses pages another process maps; no MADV_DONTFORK".into(),
            ),
            ..row("cow", name.into(), "PTE-mapped THP", Vec::new())
        });
    }
    for (id, name) in NON_ANON {
        for b in [Backing::ZeroPage, Backing::PageCache] {
            match non_anon_scenario(id, b) {
                Some(sc) => {
                    let cells = presets.iter().map(|&p| judge(&sc, p, &[])).collect();
                    rows.push(row("cow", format!("{id} {name}"), b.name(), cells));
                }
                None => rows.push(Row {
                    not_modelled: Some("no check of the zero page's contents".into()),
                    ..row("cow", format!("{id} {name}"), b.name(), Vec::new())
                }),
            }
        }
    }
    for (kind, backing, why) in NOT_MODELLED {
        rows.push(Row {
            not_modelled: Some(why.into()),
            ..row("cow", format!("all {kind} cases"), backing, Vec::new())
        });
    }
    for (flavour, fs) in [
        (FsFlavour::BufferHead, "ext4-like (buffer heads)"),
        (FsFlavour::Iomap, "xfs-like (iomap)"),
    ] {
        for shared in [true, false] {
            for (rw, fast) in [(true, false), (true, true), (false, false), (false, true)] {
                let case = format!(
                    "{} {} pin, {}",
                    if rw { "R/W" } else { "R/O" },
                    if fast { "longterm fast" } else { "longterm" },
                    if shared { "MAP_SHARED" } else { "MAP_PRIVATE" }
                );
                let cells = presets
                    .iter()
                    .map(|&p| gup_longterm(flavour, shared, rw, fast, p))
                    .collect();
                rows.push(row("gup_longterm", case, fs, cells));
            }
        }
    }
    rows.push(Row {
        not_modelled: Some(
            "no shmem, no hugetlbfs files (hugetlb is private anonymous only), no io_uring".into(),
        ),
        ..row(
            "gup_longterm",
            "all cases".into(),
            "memfd, hugetlb, io_uring fixed buffers",
            Vec::new(),
        )
    });
    Table {
        presets: presets.iter().map(|p| p.name().to_string()).collect(),
        rows,
    }
}

/// The table as Markdown, one row per case and backing.
pub fn markdown(t: &Table) -> String {
    let mut s = format!(
        "| suite | case | backing | {} |\n|---|---|---|{}\n",
        t.presets.join(" | "),
        "---|".repeat(t.presets.len())
    );
    for r in &t.rows {
        let cells = match &r.not_modelled {
            Some(why) => {
                let mut v = vec![format!("not modelled: {why}")];
                v.extend(std::iter::repeat_n(String::new(), t.presets.len() - 1));
                v
            }
            None if r.xfail.is_some() => r.cells.iter().map(Cell::show_xfail).collect(),
            None => r.cells.iter().map(Cell::show).collect(),
        };
        s += &format!(
            "| {} | {} | {} | {} |\n",
            r.suite,
            r.case,
            r.backing,
            cells.join(" | ")
        );
    }
    s
}

/// Rows whose results differ from `expected` (by suite, case and backing).
pub fn differences(got: &Table, expected: &Table) -> Vec<String> {
    let mut out = Vec::new();
    if got.presets != expected.presets {
        out.push(format!(
            "presets {:?} != expected {:?}",
            got.presets, expected.presets
        ));
    }
    for r in &got.rows {
        match expected
            .rows
            .iter()
            .find(|e| (&e.suite, &e.case, &e.backing) == (&r.suite, &r.case, &r.backing))
        {
            None => out.push(format!(
                "{} / {} / {}: not in the expectation",
                r.suite, r.case, r.backing
            )),
            Some(e) if e != r => out.push(format!(
                "{} / {} / {}: got [{}], expected [{}]",
                r.suite,
                r.case,
                r.backing,
                r.cells
                    .iter()
                    .map(Cell::show)
                    .collect::<Vec<_>>()
                    .join(", "),
                e.cells
                    .iter()
                    .map(Cell::show)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(_) => {}
        }
    }
    for e in &expected.rows {
        if !got
            .rows
            .iter()
            .any(|r| (&e.suite, &e.case, &e.backing) == (&r.suite, &r.case, &r.backing))
        {
            out.push(format!(
                "{} / {} / {}: expected but not run",
                e.suite, e.case, e.backing
            ));
        }
    }
    out
}

/// The checked-in expectation (`model/selftests.json`).
pub fn expected() -> Result<Table, String> {
    serde_json::from_str(include_str!("../../../selftests.json"))
        .map_err(|e| format!("model/selftests.json: {e}"))
}
