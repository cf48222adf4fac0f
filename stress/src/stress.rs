//! `gupcheck stress`: real threads on real atomics. A rayon pool runs short
//! epochs: each starts from a fresh copy of the world, every worker runs its
//! own seeded, weighted random op list on the shared address spaces (the
//! per-op invariants are checked online, each worker keeps its own ledger:
//! no shared ghost lock), and the global invariants are checked at the
//! epoch's quiescent end. An epoch is a scenario, so a violation is handed to
//! shuttle PCT: its op lists are shrunk (delta debugging, every candidate a
//! PCT search) and the result is a deterministic artifact, or an explicit
//! "not reproduced under sequential consistency".

use gupcheck_model::backend::Std;
use gupcheck_model::harness::artifact::{check_writable_dir, write_file_atomic, Artifact};
use gupcheck_model::harness::engine::{judge_execution, run, run_loom_deepening, run_ops, Tally};
use gupcheck_model::harness::fuzzing::{random_world, KNOWN_OPEN};
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::invariant::Violation;
use gupcheck_model::preset::PresetId;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::{Arch, Engine, Invariant, Mutation, World};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct StressArgs {
    /// Worker threads (default: the cores; more oversubscribe).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// How long to run: 90s, 10m, 1h (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    protocol: crate::ProtocolArgs,
    /// Op weights by class, e.g. gup=4,release=3,fork=0 (classes: gup,
    /// release, user, dma, mm, file, fork, thp, migrate; unlisted keep their
    /// defaults).
    #[arg(long, default_value = "")]
    mix: String,
    /// Each worker on its own pages of one address space (GUP, release, user
    /// accesses and DMA only), instead of the shared random world.
    #[arg(long)]
    disjoint: bool,
    /// Pages per worker with --disjoint (512: a page table each, so workers
    /// share no page-table lock).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pages: u64,
    /// Ops per worker per epoch (default 16, or 8192 with --disjoint).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    epoch_ops: Option<u64>,
    /// shuttle PCT executions per search when explaining a violation.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pct_budget: u64,
    /// Time loom may take (bounds 1 and 2) on a violation shuttle PCT does not
    /// reproduce, with four threads or fewer.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    loom_budget: Duration,
    /// Where stress-report.json and any artifact are written.
    #[arg(long, default_value = "gupcheck-stress")]
    out: PathBuf,
}

impl StressArgs {
    /// The default campaign's run: the latest preset, RCU, all cores.
    pub fn latest(duration: Duration, seed: u64) -> StressArgs {
        StressArgs {
            threads: None,
            duration,
            seed,
            protocol: crate::ProtocolArgs {
                preset: "latest".into(),
                arch: "rcu".into(),
                mutation: Vec::new(),
            },
            mix: String::new(),
            disjoint: false,
            pages: 512,
            epoch_ops: None,
            pct_budget: 2_000,
            loom_budget: Duration::from_secs(60),
            out: PathBuf::from("gupcheck-stress"),
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}' (use e.g. 30s, 10m, 1h)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    // A month is beyond any run; past it, deadlines would overflow.
    const MAX_SECS: f64 = 30.0 * 24.0 * 3600.0;
    if secs > MAX_SECS {
        return Err(format!("duration '{s}' is longer than 30 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

const CLASSES: [(&str, u32); 9] = [
    ("gup", 4),
    ("release", 3),
    ("user", 2),
    ("dma", 2),
    ("mm", 1),
    ("file", 1),
    ("fork", 1),
    ("thp", 1),
    ("migrate", 1),
];

/// The class an op's weight comes from (`None`: never generated).
fn class(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Nop => return None,
        Op::Gup { .. } | Op::GupRaw { .. } => "gup",
        Op::Release { .. } => "release",
        Op::Touch { .. }
        | Op::Load { .. }
        | Op::LocklessPeek { .. }
        | Op::ReadHandle { .. }
        | Op::MaybeDmaPinned { .. }
        | Op::CheckCoherent { .. }
        | Op::CheckPinSees { .. } => "user",
        Op::DmaWrite { .. } | Op::NotifierMap { .. } | Op::NotifierWrite => "dma",
        Op::Munmap { .. }
        | Op::Mmap { .. }
        | Op::MunmapPages { .. }
        | Op::UseMm { .. }
        | Op::ClearRefs { .. } => "mm",
        Op::Writeback { .. } | Op::Reclaim { .. } | Op::PunchHole { .. } => "file",
        Op::Fork { .. } => "fork",
        Op::Split { .. } | Op::Collapse { .. } | Op::KsmShare { .. } => "thp",
        Op::Migrate { .. } => "migrate",
    })
}

pub(crate) fn parse_mix(s: &str, disjoint: bool) -> Result<Vec<(&'static str, u32)>, String> {
    let mut mix: Vec<(&'static str, u32)> = CLASSES.to_vec();
    if disjoint {
        // Only what stays on a worker's own pages.
        for (c, w) in &mut mix {
            if !matches!(*c, "gup" | "release" | "user" | "dma") {
                *w = 0;
            }
        }
    }
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| format!("bad --mix item '{part}' (use class=weight)"))?;
        let w: u32 = w
            .parse()
            .map_err(|_| format!("bad weight in --mix item '{part}'"))?;
        let slot = mix.iter_mut().find(|(c, _)| *c == name).ok_or_else(|| {
            let known: Vec<_> = CLASSES.iter().map(|(c, _)| *c).collect();
            format!(
                "unknown op class '{name}' in --mix (known: {})",
                known.join(", ")
            )
        })?;
        if disjoint && !matches!(name, "gup" | "release" | "user" | "dma") && w > 0 {
            return Err(format!(
                "--disjoint keeps workers on their own pages: class '{name}' cannot run"
            ));
        }
        slot.1 = w;
    }
    if mix.iter().all(|(_, w)| *w == 0) {
        return Err("--mix leaves no op class with a weight".into());
    }
    Ok(mix)
}

/// `op` moved onto worker `t`'s own pages (`pages` each, from page 0 of mm 0).
fn confine(op: Op, t: u64, pages: u64) -> Op {
    let at = |p: u16| (t * pages + u64::from(p) % pages) as u16;
    match op {
        Op::Gup {
            api,
            page,
            nr,
            flags,
            ..
        } => {
            let page = at(page);
            let left = t * pages + pages - u64::from(page);
            Op::Gup {
                api,
                mm: 0,
                page,
                nr: (u64::from(nr.max(1))).min(left) as u8,
                flags,
            }
        }
        Op::Touch { page, write, .. } => Op::Touch {
            mm: 0,
            page: at(page),
            write,
        },
        Op::Load { page, .. } => Op::Load {
            mm: 0,
            page: at(page),
        },
        Op::LocklessPeek { page, .. } => Op::LocklessPeek {
            mm: 0,
            page: at(page),
        },
        other => other,
    }
}

struct Gen {
    mix: Vec<(&'static str, u32)>,
    max_w: u32,
    disjoint: Option<u64>,
}

impl Gen {
    /// Worker `t`'s ops for one epoch: arbitrary ops from a seeded stream,
    /// kept with probability weight / max weight.
    fn ops(&self, rng: &mut SmallRng, t: u64, n: usize) -> Vec<Op> {
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 64];
        while out.len() < n {
            rng.fill_bytes(&mut buf);
            let mut u = arbitrary::Unstructured::new(&buf);
            let Ok(op) = u.arbitrary::<Op>() else {
                continue;
            };
            if matches!(op, Op::GupRaw { .. }) && self.disjoint.is_some() {
                continue;
            }
            let Some(c) = class(&op) else { continue };
            let w = self.mix.iter().find(|(k, _)| *k == c).map_or(0, |x| x.1);
            if w == 0 || rng.next_u32() % self.max_w >= w {
                continue;
            }
            out.push(match self.disjoint {
                Some(pages) => confine(op, t, pages),
                None => op,
            });
        }
        out
    }
}

#[derive(Serialize, Default)]
struct Report {
    command: String,
    seed: u64,
    threads: usize,
    preset: String,
    arch: String,
    mutations: Vec<String>,
    mix: String,
    disjoint: bool,
    epoch_ops: u64,
    seconds: f64,
    epochs: u64,
    ops: u64,
    ops_per_s: f64,
    /// Epochs that broke only a known-open invariant.
    tolerated: u64,
    /// Why the run ended: "deadline", "interrupted", "violation".
    ended: String,
    violation: Option<Found>,
}

#[derive(Serialize)]
struct Found {
    invariant: String,
    detail: String,
    epoch: u64,
    /// The epoch's op lists, as run.
    ops: Vec<Vec<Op>>,
    explanation: Explanation,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Explanation {
    /// shuttle PCT found the same invariant on the shrunk op lists; the
    /// artifact holds its schedule. The artifact comes from a search, not a
    /// replay of the real-thread run.
    Reproduced {
        engine: String,
        ops_before: usize,
        ops_after: usize,
        searches: usize,
        artifact: String,
        replays: bool,
    },
    /// shuttle PCT did not reproduce it; loom (weak memory, every
    /// interleaving within the bound) did, on the epoch's ops as they ran. A
    /// search as well: the artifact replays loom's failing iteration.
    ReproducedByLoom {
        engine: String,
        pct_searches: usize,
        interleavings: u64,
        artifact: String,
        replays: bool,
    },
    /// Real threads found it, shuttle (sequentially consistent) did not, nor
    /// loom where it ran.
    NotReproducedUnderSequentialConsistency { engine: String, why: String },
}

/// A stress workload, resolved: the world image, the op generator and the
/// pool. `sc` holds the last epoch's op lists (a failing epoch's scenario).
pub struct Workload {
    sc: Scenario,
    img: World<Std>,
    gen: Gen,
    epoch_ops: usize,
    seed: u64,
    pool: rayon::ThreadPool,
    tally: Tally,
}

/// How far a run got.
#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub epochs: u64,
    pub ops: u64,
    /// Epochs that broke only a tolerated invariant.
    pub tolerated: u64,
}

/// What a workload runs: with `disjoint` (pages per worker) each worker keeps
/// to its own pages of one address space, else all share the random world.
pub struct Shape {
    pub threads: usize,
    pub mix: Vec<(&'static str, u32)>,
    pub disjoint: Option<u64>,
    pub epoch_ops: usize,
    pub seed: u64,
}

impl Workload {
    pub fn new(
        preset: PresetId,
        arch: Arch,
        muts: &[Mutation],
        tolerate: Vec<Invariant>,
        shape: Shape,
    ) -> Result<Workload, String> {
        let threads = shape.threads;
        let mut sc = random_world(vec![Vec::new(); threads], true);
        if let Some(pages) = shape.disjoint {
            let pages = pages * threads as u64;
            sc.layout = Layout::one(vec![Region::anon(0, pages, Populate::Anon)]);
            sc.world.fanout_bits = 9;
            sc.world.nr_frames = pages as usize + 64;
            sc.world.nr_tables = 16 + pages as usize / 512;
        }
        sc.name = "stress".into();
        sc.about = "from gupcheck stress".into();
        let mut cfg = sc.config_for(preset, arch, muts);
        cfg.tolerate = tolerate;
        let img = World::<Std>::build(cfg, &sc.layout)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gupcheck-stress-{i}"))
            .build()
            .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
        let max_w = shape.mix.iter().map(|x| x.1).max().unwrap_or(1).max(1);
        Ok(Workload {
            sc,
            img,
            gen: Gen {
                mix: shape.mix,
                max_w,
                disjoint: shape.disjoint,
            },
            epoch_ops: shape.epoch_ops,
            seed: shape.seed,
            pool,
            tally: Tally::default(),
        })
    }

    /// Runs epochs while `go` says so; the first violation outside the
    /// tolerated ones ends the run (its epoch's ops stay in `self.sc`).
    pub fn run(
        &mut self,
        counts: &mut Counts,
        mut go: impl FnMut(&Counts) -> bool,
    ) -> Option<(u64, Box<Violation>)> {
        while go(counts) {
            let epoch = counts.epochs;
            // One seeded stream per (seed, epoch, worker): an epoch is rebuilt
            // from the report's seed alone.
            let w = Arc::new(World::<Std>::from_image(&self.img));
            let (gen, seed, n, layout) = (&self.gen, self.seed, self.epoch_ops, &self.sc.layout);
            // Each worker draws its own ops (in parallel) and hands them back
            // with its end, for a failing epoch's scenario.
            let (lists, ends): (Vec<Vec<Op>>, Vec<_>) = self
                .pool
                .broadcast(|b| {
                    let t = b.index();
                    let mut rng =
                        SmallRng::seed_from_u64(seed ^ (epoch << 20) ^ ((t as u64) << 8) ^ 0x9e37);
                    let ops = gen.ops(&mut rng, t as u64, n);
                    let end = run_ops(&w, layout, t, &ops);
                    (ops, end)
                })
                .into_iter()
                .unzip();
            self.sc.threads = lists;
            counts.ops += ends.iter().map(|e| e.ops_run as u64).sum::<u64>();
            counts.epochs += 1;
            let before = self.tally.tolerated.load(SeqCst);
            let verdict = judge_execution(&w, &self.sc, &self.tally, ends);
            counts.tolerated += self.tally.tolerated.load(SeqCst) - before;
            if let Err((v, _)) = verdict {
                return Some((epoch, v));
            }
        }
        None
    }
}

pub fn stress(a: &StressArgs) -> Result<ExitCode, String> {
    let (preset, arch, muts) = a.protocol.resolve()?;
    let mix = parse_mix(&a.mix, a.disjoint)?;
    let threads = a.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |t| t as usize,
    );
    let epoch_ops = a.epoch_ops.unwrap_or(if a.disjoint { 8192 } else { 16 });
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: a.seed,
        threads,
        preset: preset.name().into(),
        arch: arch.name().into(),
        mutations: muts.iter().map(|m| m.name().to_string()).collect(),
        mix: mix
            .iter()
            .map(|(c, w)| format!("{c}={w}"))
            .collect::<Vec<_>>()
            .join(","),
        disjoint: a.disjoint,
        epoch_ops,
        ..Report::default()
    };
    let shape = Shape {
        threads,
        mix,
        disjoint: a.disjoint.then_some(a.pages),
        epoch_ops: epoch_ops as usize,
        seed: a.seed,
    };
    let mut wl = Workload::new(preset, arch, &muts, KNOWN_OPEN.to_vec(), shape)?;
    check_writable_dir(&a.out)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second handler cannot be set in one process (tests run stress
        // once per process); without it Ctrl-C just ends the process.
        let _ = ctrlc::set_handler(move || stop.store(true, SeqCst));
    }
    let bar = indicatif::ProgressBar::new(a.duration.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .expect("a valid template"),
    );
    let t0 = Instant::now();
    let mut last_line = 0;
    let mut counts = Counts::default();
    let failing = wl.run(&mut counts, |c| {
        let secs = t0.elapsed().as_secs_f64();
        if c.epochs > 0 {
            let status = format!(
                "{:.0} ops/s, {} epochs, 0 violations, {} known-open",
                c.ops as f64 / secs,
                c.epochs,
                c.tolerated
            );
            // Without a terminal the bar is hidden: a line a minute instead (CI logs).
            if bar.is_hidden() && secs as u64 / 60 > last_line {
                last_line = secs as u64 / 60;
                eprintln!("stress: {:.0} s: {status}", secs);
            }
            bar.set_position(secs as u64);
            bar.set_message(status);
        }
        t0.elapsed() < a.duration && !stop.load(SeqCst)
    });
    bar.finish_and_clear();
    (report.epochs, report.ops, report.tolerated) = (counts.epochs, counts.ops, counts.tolerated);
    report.seconds = t0.elapsed().as_secs_f64();
    report.ops_per_s = report.ops as f64 / report.seconds;
    report.ended = if failing.is_some() {
        "violation"
    } else if stop.load(SeqCst) {
        "interrupted"
    } else {
        "deadline"
    }
    .into();
    eprintln!(
        "stress: {} threads, {:.1} s, {} epochs, {} ops, {:.0} ops/s, {} known-open",
        threads, report.seconds, report.epochs, report.ops, report.ops_per_s, report.tolerated
    );
    let code = match failing {
        None => ExitCode::SUCCESS,
        Some((epoch, v)) => {
            eprintln!("stress: epoch {epoch} broke {}: {}", v.invariant, v.detail);
            let esc = wl.sc.clone();
            let explanation = explain(a, &esc, preset, arch, &muts, v.invariant)?;
            match &explanation {
                Explanation::Reproduced {
                    artifact,
                    ops_before,
                    ops_after,
                    ..
                } => eprintln!(
                    "stress: shuttle PCT reproduces it on {ops_after} of {ops_before} ops (a search, not a replay of the real run): gupcheck replay {artifact}"
                ),
                Explanation::ReproducedByLoom {
                    engine, artifact, ..
                } => eprintln!(
                    "stress: shuttle PCT does not reproduce it, {engine} does (a search, not a replay of the real run): gupcheck replay {artifact}"
                ),
                Explanation::NotReproducedUnderSequentialConsistency { why, .. } => {
                    eprintln!("stress: not reproduced under sequential consistency: {why}")
                }
            }
            report.violation = Some(Found {
                invariant: v.invariant.name().into(),
                detail: v.detail.clone(),
                epoch,
                ops: esc.threads.clone(),
                explanation,
            });
            ExitCode::from(1)
        }
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let p = write_file_atomic(&a.out, "stress-report.json", json.as_bytes())?;
    eprintln!("report: {}", p.display());
    Ok(code)
}

/// After PCT: loom, which also sees weak-memory reorderings, on the epoch's
/// ops unshrunk (each loom search costs too much to shrink with), at bound 1
/// then 2 within `--loom-budget`; only with four threads or fewer.
#[allow(clippy::too_many_arguments)]
fn explain_by_loom(
    a: &StressArgs,
    sc: &Scenario,
    cfg: &gupcheck_model::WorldConfig,
    preset: PresetId,
    arch: Arch,
    muts: &[Mutation],
    inv: Invariant,
    pct_why: String,
) -> Result<Explanation, String> {
    let not = |why: String| {
        Ok(Explanation::NotReproducedUnderSequentialConsistency {
            engine: format!("shuttle-pct (depth 3, {} executions)", a.pct_budget),
            why,
        })
    };
    if sc.threads.len() > 4 {
        return not(format!(
            "{pct_why}; loom was not run: {} threads (it runs four or fewer)",
            sc.threads.len()
        ));
    }
    let d = match run_loom_deepening(sc, cfg, 2, a.loom_budget) {
        Ok(d) => d,
        Err((e, bound)) => return not(format!("{pct_why}; loom stopped at bound {bound}: {e}")),
    };
    let shown = d.bound.map_or("unbounded".into(), |b| b.to_string());
    match d.outcome.failure {
        Some(f) if f.violation.invariant == inv => {
            let mut art = Artifact::new(sc, preset, arch, muts, &d.outcome.ran, f);
            art.tolerate = cfg.tolerate.clone();
            let (path, replays) = art.replay_and_write(&a.out)?;
            Ok(Explanation::ReproducedByLoom {
                engine: format!("loom (bound {shown})"),
                pct_searches: 1,
                interleavings: d.interleavings,
                artifact: path.display().to_string(),
                replays,
            })
        }
        other => not(format!(
            "{pct_why}; nor did loom in {} interleavings up to bound {shown} within {:.0} s{}",
            d.interleavings,
            a.loom_budget.as_secs_f64(),
            other.map_or(String::new(), |f| format!(
                " (it broke {} instead: {})",
                f.violation.invariant, f.violation.detail
            ))
        )),
    }
}

/// Whether shuttle PCT breaks `inv` on `sc` within the budget.
fn pct(
    sc: &Scenario,
    cfg: &gupcheck_model::WorldConfig,
    budget: u64,
    seed: u64,
    inv: Invariant,
) -> Result<Option<gupcheck_model::harness::engine::Failure>, String> {
    let engine = Engine::ShuttlePct {
        iterations: budget as usize,
        depth: 3,
        seed,
    };
    let o = run(sc, cfg, &engine)?;
    Ok(o.failure.filter(|f| f.violation.invariant == inv))
}

/// Hands the failing epoch to shuttle PCT, shrinking its op lists first.
fn explain(
    a: &StressArgs,
    sc: &Scenario,
    preset: PresetId,
    arch: Arch,
    muts: &[Mutation],
    inv: Invariant,
) -> Result<Explanation, String> {
    let mut sc = sc.clone();
    let mut cfg = sc.config_for(preset, arch, muts);
    cfg.tolerate = KNOWN_OPEN.to_vec();
    let engine_name = format!(
        "shuttle-pct (depth 3, {} executions per search)",
        a.pct_budget
    );
    let ops_before: usize = sc.threads.iter().map(Vec::len).sum();
    let mut searches = 1;
    let Some(mut failure) = pct(&sc, &cfg, a.pct_budget, a.seed, inv)? else {
        let pct_why = format!(
            "{} shuttle PCT executions of the epoch's {ops_before} ops never broke {inv}",
            a.pct_budget
        );
        return explain_by_loom(a, &sc, &cfg, preset, arch, muts, inv, pct_why);
    };
    // Delta debugging over each thread's ops: drop chunks, halving the chunk
    // size, keeping any candidate PCT still breaks the same invariant with.
    const MAX_SEARCHES: usize = 60;
    for t in 0..sc.threads.len() {
        let mut chunk = sc.threads[t].len().div_ceil(2).max(1);
        while chunk >= 1 && searches < MAX_SEARCHES {
            let mut i = 0;
            while i < sc.threads[t].len() && searches < MAX_SEARCHES {
                let mut cand = sc.clone();
                let end = (i + chunk).min(cand.threads[t].len());
                cand.threads[t].drain(i..end);
                searches += 1;
                match pct(&cand, &cfg, a.pct_budget, a.seed, inv)? {
                    Some(f) => {
                        sc = cand;
                        failure = f;
                    }
                    None => i += chunk,
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    let ops_after: usize = sc.threads.iter().map(Vec::len).sum();
    let engine = Engine::ShuttlePct {
        iterations: a.pct_budget as usize,
        depth: 3,
        seed: a.seed,
    };
    let mut art = Artifact::new(&sc, preset, arch, muts, &engine, failure);
    art.tolerate = KNOWN_OPEN.to_vec();
    let (path, replays) = art.replay_and_write(&a.out)?;
    Ok(Explanation::Reproduced {
        engine: engine_name,
        ops_before,
        ops_after,
        searches,
        artifact: path.display().to_string(),
        replays,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(loom_budget: u64, name: &str) -> StressArgs {
        let mut a = StressArgs::latest(Duration::from_secs(1), 1);
        a.pct_budget = 300;
        a.loom_budget = Duration::from_secs(loom_budget);
        a.out =
            std::env::temp_dir().join(format!("gupcheck-explain-{name}-{}", std::process::id()));
        a
    }

    /// A missing barrier: PCT (sequentially consistent) cannot reproduce it,
    /// loom can, and its artifact replays.
    #[test]
    fn what_pct_cannot_reproduce_goes_to_loom() {
        let sc = gupcheck_model::harness::scenario::by_name("munmap_vs_lockless_walker").unwrap();
        let muts = [Mutation::parse("walker_registration_no_barrier").unwrap()];
        let a = args(60, "loom");
        let e = explain(
            &a,
            &sc,
            PresetId::Latest,
            Arch::Rcu,
            &muts,
            Invariant::NoUseAfterFree,
        )
        .unwrap();
        let Explanation::ReproducedByLoom {
            artifact, replays, ..
        } = e
        else {
            panic!("expected loom to reproduce it");
        };
        assert!(replays);
        let art = Artifact::load(std::path::Path::new(&artifact)).unwrap();
        assert_eq!(art.failure.violation.invariant, Invariant::NoUseAfterFree);
        assert!(art.replay().unwrap().1, "the loom artifact replays");
        let _ = std::fs::remove_dir_all(&a.out);
    }

    #[test]
    fn what_neither_reproduces_is_said_so() {
        let sc = gupcheck_model::harness::scenario::by_name("munmap_vs_lockless_walker").unwrap();
        let a = args(2, "neither");
        let e = explain(
            &a,
            &sc,
            PresetId::Latest,
            Arch::Rcu,
            &[],
            Invariant::NoUseAfterFree,
        )
        .unwrap();
        let Explanation::NotReproducedUnderSequentialConsistency { why, .. } = e else {
            panic!("the clean protocol reproduced a violation");
        };
        assert!(why.contains("nor did loom"), "{why}");
    }
}
