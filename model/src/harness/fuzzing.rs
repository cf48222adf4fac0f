//! The fuzz targets' logic, in the library so that `cargo test` replays the
//! corpus and the regressions on stable without cargo-fuzz, and so that a crash
//! converts into a JSON artifact (`gupcheck fuzz-artifact`). The targets in
//! `fuzz/fuzz_targets/` are one line each around these functions.
//!
//! - `ops`: one thread's sequence of GUP calls and mm operations on anonymous
//!   memory, checked after every op against [`Contract`], a reference of the
//!   GUP contract written from KERNEL.md §2 and the seed's documentation
//!   (results and errno, who holds gets and pins, what reads as pinned), and
//!   against the invariants at the end.
//! - `interleave`: two threads' op lists over the random-op world (anonymous
//!   memory, THPs, hugetlb-like folios, files, a notifier driver, a fork child),
//!   scheduled by the bytes that follow (shuttle in byte mode), latest preset.
//! - `presets`: the same, with preset, arch and mutation taken from the input,
//!   or fixed by `GUPCHECK_PRESET`, `GUPCHECK_ARCH`, `GUPCHECK_MUTATION`.
//!
//! Violations are values: each function returns a [`Finding`]; decoding never
//! fails (short inputs decode as zeros), and an errno is a result, not a
//! finding. Outcomes the kernel never fixed (`known-open`) are searched past.

use arbitrary::{Arbitrary, Unstructured};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::Std;
use crate::config::{Arch, Mutation, WorldConfig};
use crate::ghost::Ctx;
use crate::gup::api::GupApi;
use crate::harness::artifact::Artifact;
use crate::harness::engine::{run_bytes_on, run_op_judged, Engine};
use crate::harness::ops::{FlagSel, Op, ReleaseApi, OPS_VERSION};
use crate::harness::scenario::Scenario;
use crate::invariant::Invariant;
use crate::preset::PresetId;
use crate::state::fs::{Cached, FileSpec, FsFlavour};
use crate::state::layout::{HugeSize, Layout, Populate, Region};
use crate::state::world::World;
use crate::types::Pfn;
use crate::types::PAGE_SIZE;

/// The fuzz targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Ops,
    Interleave,
    Presets,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Ops, Target::Interleave, Target::Presets];
    pub fn name(self) -> &'static str {
        match self {
            Target::Ops => "ops",
            Target::Interleave => "interleave",
            Target::Presets => "presets",
        }
    }
    pub fn parse(s: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown fuzz target '{s}' (known: ops, interleave, presets)"))
    }
    /// Runs the target on one input.
    pub fn check(self, data: &[u8]) -> Option<Finding> {
        match self {
            Target::Ops => check_ops(data),
            Target::Interleave | Target::Presets => check_threads(self, data),
        }
    }
}

/// What a target found: the invariant, and how to reproduce it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub invariant: Invariant,
    pub detail: String,
    /// The failing run as an artifact that `gupcheck replay` reproduces.
    pub artifact: Option<Box<Artifact>>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// The outcomes the kernel never fixed (gup+DMA, hugetlb's reuse by mapcount
/// under a FOLL_GET reference): searched past in every target.
pub const KNOWN_OPEN: [Invariant; 3] = [
    Invariant::NoLostWrite,
    Invariant::DirtyWithoutBuffers,
    Invariant::HugetlbGetLeak,
];

/// The world of the random-op tests and the thread targets: anonymous base
/// pages, an unpopulated region, the zero page, PMD-mapped and PTE-mapped THPs,
/// hugetlb-like folios, two files (one cached dirty, one on disk only) mapped
/// shared and private, the notifier driver, and a spare address space.
pub fn random_world(threads: Vec<Vec<Op>>, files: bool) -> Scenario {
    let mut regions = vec![
        Region::anon(0, 4, Populate::Anon),
        Region::anon(4, 2, Populate::None),
        Region::anon(6, 2, Populate::ZeroPage),
        Region::anon(8, 4, Populate::Thp),
        Region::anon(12, 4, Populate::ThpPte),
        Region::hugetlb(16, 16, HugeSize::Pud, Populate::Hugetlb),
    ];
    let mut layout = Layout {
        spare_pmd_folios: 1,
        ..Layout::default()
    };
    if files {
        layout.files = vec![
            FileSpec {
                pages: 2,
                flavour: FsFlavour::Iomap,
                cached: Cached::Dirty,
            },
            FileSpec {
                pages: 2,
                flavour: FsFlavour::BufferHead,
                cached: Cached::No,
            },
        ];
        layout.notifier = true;
        regions.extend([
            Region::file(36, 2, 0, true, Populate::PageCache),
            Region::file(38, 2, 1, true, Populate::None),
            Region::file(40, 2, 1, false, Populate::None),
        ]);
    }
    layout.mms = vec![regions];
    Scenario {
        name: "random".into(),
        about: "random op sequences".into(),
        version: OPS_VERSION,
        layout,
        threads,
        world: WorldConfig {
            fanout_bits: 2,
            nr_frames: 128,
            nr_tables: 32,
            nr_mms: 2,
            trace: false,
            ..WorldConfig::small(Arch::Rcu)
        },
        window: None,
    }
}

/// Ops per thread the thread targets keep (longer inputs are cut).
const MAX_OPS: usize = 16;

/// What the environment (or a caller) fixes for the thread targets: preset,
/// arch and mutations (`presets` only), and the invariants to stop at.
#[derive(Clone, Debug, Default)]
pub struct Fixed {
    pub preset: Option<PresetId>,
    pub arch: Option<Arch>,
    pub muts: Option<Vec<Mutation>>,
    pub expect: Option<Vec<Invariant>>,
}

fn or_die<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("gupcheck fuzz: {e}"))
}

/// `GUPCHECK_PRESET`, `GUPCHECK_ARCH`, `GUPCHECK_MUTATION` (`none`: no
/// mutation) and `GUPCHECK_EXPECT` (comma-separated invariants: stop only at
/// these, search past the others; for measuring the time to find one bug),
/// read once; a bad value stops the fuzzer with its error rather than
/// measuring something else.
fn fixed_by_env() -> &'static Fixed {
    static FIXED: std::sync::OnceLock<Fixed> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let var = |n: &str| std::env::var(n).ok();
        Fixed {
            preset: var("GUPCHECK_PRESET").map(|p| or_die(PresetId::parse(&p))),
            arch: var("GUPCHECK_ARCH").map(|a| or_die(Arch::parse(&a))),
            muts: var("GUPCHECK_MUTATION").map(|m| match m.as_str() {
                "none" => Vec::new(),
                m => vec![or_die(Mutation::parse(m))],
            }),
            expect: var("GUPCHECK_EXPECT").map(|e| {
                e.split(',')
                    .map(|i| or_die(Invariant::parse(i.trim())))
                    .collect()
            }),
        }
    })
}

/// The thread targets' input: two op lists, then the schedule bytes; for
/// `presets` first a preset, an arch and a mutation selector.
fn decode_threads(
    target: Target,
    fixed: &Fixed,
    data: &[u8],
) -> (PresetId, Arch, Vec<Mutation>, Vec<Vec<Op>>, Vec<u8>) {
    let mut u = Unstructured::new(data);
    let (mut preset, mut arch, mut muts) = (PresetId::Latest, Arch::Rcu, Vec::new());
    if target == Target::Presets {
        let p = u.arbitrary::<u8>().unwrap_or(0);
        preset = PresetId::ALL[usize::from(p) % PresetId::ALL.len()];
        arch = if u.arbitrary::<bool>().unwrap_or(false) {
            Arch::Ipi
        } else {
            Arch::Rcu
        };
        let m = usize::from(u.arbitrary::<u8>().unwrap_or(0));
        if m > 0 {
            muts.push(Mutation::ALL[(m - 1) % Mutation::ALL.len()]);
        }
        preset = fixed.preset.unwrap_or(preset);
        arch = fixed.arch.unwrap_or(arch);
        if let Some(m) = &fixed.muts {
            muts = m.clone();
        }
    }
    let mut threads = Vec::new();
    for _ in 0..2 {
        let ops: Vec<Op> = u
            .arbitrary_iter::<Op>()
            .map(|it| it.flatten().take(MAX_OPS).collect())
            .unwrap_or_default();
        threads.push(ops);
    }
    let schedule = u.take_rest().to_vec();
    (preset, arch, muts, threads, schedule)
}

fn check_threads(target: Target, data: &[u8]) -> Option<Finding> {
    check_threads_fixed(target, fixed_by_env(), data)
}

/// A thread target's run with `fixed` in place of the environment's settings.
pub fn check_threads_fixed(target: Target, fixed: &Fixed, data: &[u8]) -> Option<Finding> {
    let (preset, arch, muts, threads, schedule) = decode_threads(target, fixed, data);
    let tolerate = match &fixed.expect {
        Some(stop_at) => Invariant::ALL
            .into_iter()
            .filter(|i| !stop_at.contains(i))
            .collect(),
        None => KNOWN_OPEN.to_vec(),
    };
    run_threads(target, preset, arch, &muts, &tolerate, threads, &schedule)
}

/// The random world with files, built once per configuration and process (the
/// layout does not depend on the ops), since building it costs more than many
/// executions do.
fn image(sc: &Scenario, cfg: &WorldConfig) -> Arc<World<Std>> {
    type Images = Vec<(WorldConfig, Arc<World<Std>>)>;
    thread_local!(static IMAGES: RefCell<Images> = const { RefCell::new(Vec::new()) });
    IMAGES.with_borrow_mut(|imgs| {
        if let Some((_, img)) = imgs.iter().find(|(c, _)| c == cfg) {
            return img.clone();
        }
        let img = match World::<Std>::build(cfg.clone(), &sc.layout) {
            Ok(w) => Arc::new(w),
            Err(e) => panic!("the random world does not fit: {e}"),
        };
        imgs.push((cfg.clone(), img.clone()));
        img
    })
}

/// The thread targets' run: `threads` on the random world with files, one
/// shuttle execution scheduled by `schedule`, past the `tolerate`d invariants
/// (the fuzzers' [`KNOWN_OPEN`]).
pub fn run_threads(
    target: Target,
    preset: PresetId,
    arch: Arch,
    muts: &[Mutation],
    tolerate: &[Invariant],
    threads: Vec<Vec<Op>>,
    schedule: &[u8],
) -> Option<Finding> {
    let sc = random_world(threads, true);
    let mut cfg = sc.config_for(preset, arch, muts);
    cfg.tolerate = tolerate.to_vec();
    let img = image(&sc, &cfg);
    let f = run_bytes_on(&sc, &cfg, img, schedule).failure?;
    let engine = artifact_engine();
    let mut sc = sc;
    sc.about = format!("from fuzz target {}", target.name());
    let mut art = Artifact::new(&sc, preset, arch, muts, &engine, f.clone());
    art.tolerate = tolerate.to_vec();
    Some(Finding {
        invariant: f.violation.invariant,
        detail: f.violation.detail,
        artifact: Some(Box::new(art)),
    })
}

/// The `ops` target's input: GUP calls and mm operations on six pages.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum ContractOp {
    Gup {
        fast: bool,
        pin: bool,
        page: u8,
        nr: u8,
        write: bool,
        longterm: bool,
    },
    Release {
        handle: u8,
    },
    Munmap {
        region: u8,
    },
    Mmap {
        region: u8,
    },
    Touch {
        page: u8,
        write: bool,
    },
    /// `madvise(MADV_PAGEOUT)` of one page.
    Pageout {
        page: u8,
    },
}

/// The `ops` layout: two adjacent regions of anonymous memory, the first
/// written (exclusive pages), the second empty; nothing mapped above.
const REGIONS: [(u64, u64, Populate); 2] = [(0, 4, Populate::Anon), (4, 2, Populate::None)];
const PAGES: u64 = 6;

/// What one address holds, in the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// No VMA.
    Unmapped,
    /// A VMA, nothing faulted in.
    Empty,
    /// The shared zero page (a read fault).
    Zero,
    /// An exclusive anonymous page.
    Anon(Pfn),
    /// Swapped out: the contents in a swap slot, no page.
    Swapped,
    /// Swapped out, the page still in the swap cache (someone holds it).
    SwapCached(Pfn),
}

/// The GUP contract for private anonymous memory in the latest release, kept
/// apart from the model's code: a GUP call returns how many pages from `start`
/// are backed by a VMA (at most `nr`), or -EFAULT if the first is not; a write
/// request or a long-term read-only pin faults in an exclusive page of its own
/// (a read-only long-term pin of the zero page is unshared, 84209e87c696); each
/// get adds 1 to the page's refcount and each pin GUP_PIN_COUNTING_BIAS (1024:
/// small folios); a mapping holds 1; pinned pages read as maybe-dma-pinned,
/// others do not; pins of the zero page take nothing (c8070b787519); a page is
/// freed when the last reference goes. MADV_PAGEOUT leaves a pinned page
/// alone (feb889fb40fa, or from 5.19 the unmap's share check); a page someone
/// else holds is unmapped into the swap cache, which holds one reference on
/// it; any other page goes to its swap slot. A fault on a swapped-out address
/// maps the swap-cache page again (exclusive: the swap entry says so), which a
/// write fault takes out of the swap cache if nobody else holds it, or else
/// reads the slot into a fresh page; munmap frees the slot and the swap cache's
/// reference.
#[derive(Default)]
pub struct Contract {
    slots: Vec<Option<Slot>>,
    /// Per frame: (mappings, gets, pins, swap cache).
    frames: BTreeMap<Pfn, (i64, i64, i64, i64)>,
    /// Each live GUP result: frames, and whether pinned.
    handles: Vec<(Vec<Pfn>, bool)>,
}

const BIAS: i64 = 1024;
const EFAULT: i64 = -14;

impl Contract {
    fn new(w: &World<Std>) -> Contract {
        let mut c = Contract {
            slots: vec![None; PAGES as usize],
            ..Contract::default()
        };
        for p in 0..PAGES {
            let slot = match w.resolve(0, p * PAGE_SIZE) {
                Some(f) => Slot::Anon(f),
                None => Slot::Empty,
            };
            if let Slot::Anon(f) = slot {
                c.frames.entry(f).or_default().0 += 1;
            }
            c.slots[p as usize] = Some(slot);
        }
        c
    }
    fn slot(&self, p: u64) -> Slot {
        self.slots
            .get(p as usize)
            .copied()
            .flatten()
            .unwrap_or(Slot::Unmapped)
    }
    fn region_pages(r: u8) -> std::ops::Range<u64> {
        let (s, n, _) = REGIONS[usize::from(r) % REGIONS.len()];
        s..s + n
    }
    /// A mapping of `p` goes away (a swapped-out one frees its slot and the
    /// swap cache's reference).
    fn unmap(&mut self, p: u64) {
        match self.slot(p) {
            Slot::Anon(f) => self.drop_ref(f, 0),
            Slot::SwapCached(f) => self.drop_ref(f, 3),
            _ => {}
        }
        self.slots[p as usize] = Some(Slot::Unmapped);
    }
    /// `kind`: 0 mapping, 1 get, 2 pin, 3 the swap cache's.
    fn drop_ref(&mut self, f: Pfn, kind: usize) {
        if let Some(e) = self.frames.get_mut(&f) {
            match kind {
                0 => e.0 -= 1,
                1 => e.1 -= 1,
                2 => e.2 -= 1,
                _ => e.3 -= 1,
            }
            if *e == (0, 0, 0, 0) {
                self.frames.remove(&f);
            }
        }
    }
    fn refs(&self, f: Pfn) -> (i64, i64, i64, i64) {
        self.frames.get(&f).copied().unwrap_or_default()
    }
    /// MADV_PAGEOUT of `p`.
    fn pageout(&mut self, p: u64) {
        let Slot::Anon(f) = self.slot(p) else {
            return;
        };
        let (_, gets, pins, cached) = self.refs(f);
        if pins > 0 {
            return;
        }
        let e = self.frames.entry(f).or_default();
        e.0 -= 1;
        if gets > 0 {
            e.3 = 1;
            self.slots[p as usize] = Some(Slot::SwapCached(f));
        } else {
            e.3 -= cached;
            self.frames.remove(&f);
            self.slots[p as usize] = Some(Slot::Swapped);
        }
    }
    /// A fault (or GUP) makes `p` hold an exclusive page: the model chose
    /// frame `f` (a fresh one, or the page already there). A write fault
    /// takes a swap-cache page nobody else holds out of the swap cache.
    fn populate(&mut self, p: u64, f: Pfn, write: bool) {
        if let Slot::SwapCached(g) = self.slot(p) {
            let (_, gets, pins, _) = self.refs(g);
            if write && gets == 0 && pins == 0 {
                self.drop_ref(g, 3);
            }
        }
        if self.slot(p) != Slot::Anon(f) {
            if let Slot::Anon(old) = self.slot(p) {
                self.drop_ref(old, 0);
            }
            self.frames.entry(f).or_default().0 += 1;
            self.slots[p as usize] = Some(Slot::Anon(f));
        }
    }
}

/// The `ops` target: runs the ops one by one on the latest preset, comparing
/// with [`Contract`] after each, then the invariants at quiescence.
pub(crate) fn check_ops(data: &[u8]) -> Option<Finding> {
    let mut u = Unstructured::new(data);
    let ops: Vec<ContractOp> = u
        .arbitrary_iter::<ContractOp>()
        .map(|it| it.flatten().take(48).collect())
        .unwrap_or_default();
    run_contract(&ops, PresetId::Latest).err()
}

fn found(invariant: Invariant, detail: String) -> Finding {
    Finding {
        invariant,
        detail,
        artifact: None,
    }
}

/// The model in `preset` against the reference (which describes the latest
/// release), op by op. `Err` is the first disagreement.
pub fn run_contract(ops: &[ContractOp], preset: PresetId) -> Result<(), Finding> {
    let layout = Layout::one(
        REGIONS
            .iter()
            .map(|&(s, n, p)| Region::anon(s, n, p))
            .collect(),
    );
    let cfg = WorldConfig {
        nr_frames: 48,
        nr_tables: 12,
        trace: false,
        preset,
        ..WorldConfig::small(Arch::Ipi)
    };
    let w = World::<Std>::build(cfg, &layout).expect("the ops layout fits");
    let zero = w.mem.zero_pfn;
    let mut ctx = Ctx::new(0, 1, false);
    let mut c = Contract::new(&w);
    for (i, op) in ops.iter().enumerate() {
        let mop = match *op {
            ContractOp::Gup {
                fast,
                pin,
                page,
                nr,
                write,
                longterm,
            } => Op::Gup {
                api: match (fast, pin) {
                    (true, true) => GupApi::PinUserPagesFast,
                    (true, false) => GupApi::GetUserPagesFast,
                    (false, true) => GupApi::PinUserPages,
                    (false, false) => GupApi::GetUserPages,
                },
                mm: 0,
                page: u16::from(page) % PAGES as u16,
                nr: nr % 4 + 1,
                // FOLL_LONGTERM only with FOLL_PIN (the contract's domain).
                flags: FlagSel {
                    write,
                    longterm: longterm && pin,
                    force: false,
                },
            },
            ContractOp::Release { handle } => Op::Release {
                handle,
                how: ReleaseApi::Matching,
            },
            ContractOp::Munmap { region } => Op::Munmap { mm: 0, region },
            ContractOp::Mmap { region } => Op::Mmap { mm: 0, region },
            ContractOp::Touch { page, write } => Op::Touch {
                mm: 0,
                page: u16::from(page) % PAGES as u16,
                write,
            },
            ContractOp::Pageout { page } => Op::Pageout {
                mm: 0,
                page: u16::from(page) % PAGES as u16,
            },
        };
        let before = ctx.handles.len();
        if let Err(v) = run_op_judged(&w, &mut ctx, &layout, &mop) {
            return Err(found(v.invariant, format!("op {i} {mop:?}: {}", v.detail)));
        }
        let bad = |what: String| {
            Err(found(
                Invariant::PrefixResult,
                format!("op {i} {mop:?}: {what}"),
            ))
        };
        match mop {
            Op::Gup {
                api,
                page,
                nr,
                flags,
                ..
            } => {
                let start = u64::from(page);
                let expect = (start..start + u64::from(nr))
                    .take_while(|&p| c.slot(p) != Slot::Unmapped)
                    .count() as i64;
                let got = if ctx.handles.len() > before {
                    ctx.handles[before].pages.clone()
                } else {
                    Vec::new()
                };
                let got_n = if got.is_empty() {
                    EFAULT
                } else {
                    got.len() as i64
                };
                let want = if expect == 0 { EFAULT } else { expect };
                if got_n != want {
                    return bad(format!("returned {got_n} pages, the contract says {want}"));
                }
                let pin = api.pins();
                let mut frames = Vec::new();
                for (k, &f) in got.iter().enumerate() {
                    let p = start + k as u64;
                    let unshare = pin && flags.longterm && !flags.write;
                    let needs_own = flags.write || unshare;
                    match (c.slot(p), needs_own) {
                        (Slot::Anon(old), _) if old != f => {
                            return bad(format!("page {p} is frame {old}, GUP returned {f}"))
                        }
                        (Slot::Anon(_), _) => {}
                        (Slot::SwapCached(g), _) if g != f => {
                            return bad(format!("page {p} is frame {g} in the swap cache, GUP returned {f}"))
                        }
                        (Slot::Swapped | Slot::SwapCached(_), _) if f == zero => {
                            return bad(format!("page {p}: a swapped-out page came back as the zero page"))
                        }
                        (Slot::Swapped | Slot::SwapCached(_), _) => c.populate(p, f, flags.write),
                        (_, true) if f == zero => {
                            return bad(format!("page {p}: a write or long-term pin got the zero page"))
                        }
                        (_, true) => c.populate(p, f, true),
                        (Slot::Empty | Slot::Zero, false) if f == zero => {
                            c.slots[p as usize] = Some(Slot::Zero)
                        }
                        (Slot::Empty | Slot::Zero, false) => {
                            return bad(format!("page {p}: a read of an empty page returned frame {f}, not the zero page"))
                        }
                        (Slot::Unmapped, _) => unreachable!("counted as mapped"),
                    }
                    if f != zero {
                        let e = c.frames.entry(f).or_default();
                        if pin {
                            e.2 += 1;
                        } else {
                            e.1 += 1;
                        }
                    }
                    frames.push(f);
                }
                if !frames.is_empty() {
                    c.handles.push((frames, pin));
                }
            }
            Op::Release { handle, .. } if !c.handles.is_empty() => {
                let (frames, pin) = c.handles.remove(usize::from(handle) % c.handles.len());
                for f in frames.into_iter().filter(|&f| f != zero) {
                    c.drop_ref(f, if pin { 2 } else { 1 });
                }
            }
            Op::Munmap { region, .. } => {
                for p in Contract::region_pages(region) {
                    c.unmap(p);
                }
            }
            Op::Mmap { region, .. } => {
                let r = Contract::region_pages(region);
                if r.clone().all(|p| c.slot(p) == Slot::Unmapped) {
                    for p in r {
                        c.slots[p as usize] = Some(Slot::Empty);
                    }
                }
            }
            Op::Touch { page, write, .. } => {
                let p = u64::from(page);
                match (c.slot(p), write) {
                    (Slot::Unmapped, _) | (Slot::Anon(_), _) => {}
                    (Slot::Swapped | Slot::SwapCached(_), _) => {
                        match (c.slot(p), w.resolve(0, p * PAGE_SIZE)) {
                            (Slot::SwapCached(g), Some(f)) if f == g => c.populate(p, f, write),
                            (Slot::Swapped, Some(f)) if f != zero => c.populate(p, f, write),
                            (_, other) => {
                                return bad(format!(
                                    "a fault on swapped-out page {p} left {other:?} mapped"
                                ))
                            }
                        }
                    }
                    (_, true) => match w.resolve(0, p * PAGE_SIZE) {
                        Some(f) if f != zero => c.populate(p, f, true),
                        other => return bad(format!("a store to page {p} left {other:?} mapped")),
                    },
                    (_, false) => c.slots[p as usize] = Some(Slot::Zero),
                }
            }
            Op::Pageout { page, .. } => c.pageout(u64::from(page)),
            _ => {}
        }
        // Every frame the contract knows: refcount and pinned-ness.
        for (&f, &(maps, gets, pins, cached)) in &c.frames {
            let rc = i64::from(w.mem.folio_ref_count(f));
            let want = maps + gets + BIAS * pins + cached;
            if rc != want {
                return Err(found(
                    Invariant::Conservation,
                    format!("op {i} {mop:?}: frame {f} refcount {rc}, the contract says {want} ({maps} mapping(s), {gets} get(s), {pins} pin(s), {cached} swap cache)"),
                ));
            }
            if w.page_maybe_dma_pinned(f) != (pins > 0) {
                return Err(found(
                    Invariant::PinnedIsVisible,
                    format!(
                        "op {i} {mop:?}: frame {f} with {pins} pin(s) reads maybe-dma-pinned = {}",
                        pins <= 0
                    ),
                ));
            }
        }
        // Every address: the frame the contract expects is the one mapped.
        for p in 0..PAGES {
            let model = w.resolve(0, p * PAGE_SIZE);
            let ok = match c.slot(p) {
                Slot::Unmapped | Slot::Empty | Slot::Swapped | Slot::SwapCached(_) => {
                    model.is_none()
                }
                Slot::Zero => model == Some(zero),
                Slot::Anon(f) => model == Some(f),
            };
            if !ok {
                return Err(found(
                    Invariant::PrefixResult,
                    format!(
                        "op {i} {mop:?}: page {p} maps {model:?}, the contract says {:?}",
                        c.slot(p)
                    ),
                ));
            }
        }
    }
    // Release what is left, then the invariants at rest.
    while !ctx.handles.is_empty() {
        let op = Op::Release {
            handle: 0,
            how: ReleaseApi::Matching,
        };
        if let Err(v) = run_op_judged(&w, &mut ctx, &layout, &op) {
            return Err(found(v.invariant, v.detail));
        }
    }
    w.check_quiescent(&ctx.ledger)
        .and_then(|()| crate::harness::engine::sync_and_check_durable(&w, &ctx.ledger))
        .map_err(|v| found(v.invariant, v.detail))
}

/// Runs every input file in `dir` through `target`; the findings, by file.
pub fn replay_dir(
    target: Target,
    dir: &std::path::Path,
) -> Result<Vec<(String, Option<Finding>)>, String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| p.is_file()) {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || name.ends_with(".note") || name.ends_with(".md") {
            continue;
        }
        let data = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        out.push((name, target.check(&data)));
    }
    Ok(out)
}

/// The engine the thread targets' artifacts name (their schedule is recorded).
pub(crate) fn artifact_engine() -> Engine {
    Engine::ShuttleRandom {
        iterations: 1,
        seed: 0,
    }
}
