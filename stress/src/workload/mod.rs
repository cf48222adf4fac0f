//! `gupcheck stress`: real threads on real atomics. A rayon pool runs short
//! epochs (`gen`), each from a fresh copy of a world: every worker runs its
//! own seeded, weighted random op list on the shared address spaces of the
//! random world, or the workers replay one of the catalogue's racing shapes
//! (`shapes`); the global invariants are checked at the epoch's quiescent
//! end. A violation is handed to shuttle PCT, then loom (`explain`).

mod explain;
mod gen;
pub mod shapes;
mod watchdog;

use crate::shard::{Header, Shard};
use crate::ui;
use crate::ui::parse_duration;
use explain::{explain, Explanation};
use gen::Plan;
pub use gen::{parse_mix, Counts, Kind, Spec, Workload};
use gupcheck_model::harness::artifact::{check_writable_dir, write_file_atomic};
use gupcheck_model::harness::fuzzing::KNOWN_OPEN;
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario;
use gupcheck_model::invariant::Violation;
use gupcheck_model::{Arch, Invariant, Mutation, PresetId};
use serde::{Deserialize, Serialize};
use shapes::Pick;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use watchdog::Stuck;

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
    /// What the epochs run, with shares: random (the ops of --mix on the
    /// random world), racing (every scenario of two threads or more, sharing
    /// the weight), or a scenario by name; e.g. random=3,racing=1 or
    /// gup_fast_vs_munmap.
    #[arg(long, default_value = shapes::DEFAULT)]
    shapes: String,
    /// Op weights by class in random epochs, e.g. gup=4,release=3,fork=0
    /// (classes: gup, release, user, dma, mm, file, fork, thp, migrate, swap, ksm;
    /// unlisted keep their defaults).
    #[arg(long, default_value = "")]
    mix: String,
    /// Each worker on its own pages of one address space (GUP, release, user
    /// accesses and DMA only), instead of the shared random world; random
    /// epochs only.
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
    /// Seconds without progress (no op finished, no epoch ended) before a
    /// stuck run is stopped and reported as a `progress` violation (or 20
    /// median epochs, if longer).
    #[arg(long, value_name = "SECS", default_value = watchdog::DEFAULT, value_parser = watchdog::parse_secs)]
    watchdog: Duration,
    /// Where stress-report.json and any artifact are written.
    #[arg(long, default_value = "gupcheck-stress")]
    out: PathBuf,
    /// Runs as part K of N (1-based): the whole run, from a seed of its own
    /// derived from --seed, so that N shards explore different schedules.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
}

impl StressArgs {
    /// The default campaign's run: the latest preset, RCU, all cores.
    pub fn latest(duration: Duration, seed: u64, shard: Option<Shard>) -> StressArgs {
        StressArgs {
            threads: None,
            duration,
            seed,
            protocol: crate::ProtocolArgs::latest(),
            shapes: shapes::DEFAULT.into(),
            mix: String::new(),
            disjoint: false,
            pages: 512,
            epoch_ops: None,
            pct_budget: 2_000,
            loom_budget: Duration::from_secs(60),
            watchdog: watchdog::DEFAULT_BOUND,
            out: PathBuf::from("gupcheck-stress"),
            shard,
        }
    }
}

/// `stress-report.json`.
#[derive(Clone, Serialize, Deserialize, Default)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    pub command: String,
    /// `--seed`.
    pub seed: u64,
    /// The seed the workers drew from (`seed` unless sharded): an epoch is
    /// rebuilt from it alone.
    pub shard_seed: u64,
    pub threads: usize,
    pub preset: String,
    pub arch: String,
    pub mutations: Vec<String>,
    /// `--shapes`: what the epochs ran, with their shares.
    #[serde(default)]
    pub shapes: String,
    pub mix: String,
    pub disjoint: bool,
    pub epoch_ops: u64,
    /// `--duration`.
    pub duration_secs: f64,
    pub seconds: f64,
    pub epochs: u64,
    pub ops: u64,
    pub ops_per_s: f64,
    /// Executions (a random epoch, one copy of a shape) that broke only a
    /// known-open invariant.
    pub tolerated: u64,
    /// Shape executions of two threads or more, and those whose threads ran
    /// at the same time.
    #[serde(default)]
    pub raced: u64,
    #[serde(default)]
    pub overlapped: u64,
    /// Why the run ended: "deadline", "interrupted", "violation", or
    /// "watchdog" (a `progress` violation: workers stuck past the bound).
    pub ended: String,
    pub violation: Option<Found>,
}

pub const KIND: &str = "stress";

#[derive(Clone, Serialize, Deserialize)]
pub struct Found {
    invariant: String,
    detail: String,
    epoch: u64,
    /// The epoch's scenario: `stress` for random ops, else the shape.
    #[serde(default)]
    shape: String,
    /// The epoch's op lists, as run.
    ops: Vec<Vec<Op>>,
    explanation: Explanation,
    /// A watchdog's finding: the workers it caught inside an op.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stuck: Vec<StuckOp>,
}

/// A worker the watchdog caught inside an op.
#[derive(Clone, Serialize, Deserialize)]
pub struct StuckOp {
    /// The pool worker, and the model thread it ran (its list in `ops`).
    worker: usize,
    thread: Option<usize>,
    /// The op's index in that list, and the op.
    op_index: usize,
    op: Option<Op>,
    /// The last kernel step the worker took.
    step: Option<String>,
}

impl StuckOp {
    fn line(&self) -> String {
        let thread = self
            .thread
            .map_or(String::new(), |j| format!(" (thread {j})"));
        let op = self
            .op
            .as_ref()
            .map_or("?".into(), |op| format!("{} {op:?}", op.name()));
        let step = self.step.as_deref().unwrap_or("none yet");
        format!(
            "worker {}{thread} in op #{} {op}, last kernel step '{step}'",
            self.worker, self.op_index
        )
    }
}

impl Report {
    /// The run in one line.
    pub fn summary(&self) -> String {
        let raced = match self.raced {
            0 => String::new(),
            n => format!(
                ", {n} shape runs ({:.0}% with the threads overlapping)",
                100.0 * self.overlapped as f64 / n as f64
            ),
        };
        format!(
            "stress: {} threads, {:.1} s, {} epochs, {} ops, {:.0} ops/s, {} known-open{raced}",
            self.threads, self.seconds, self.epochs, self.ops, self.ops_per_s, self.tolerated
        )
    }
}

impl Found {
    /// The violation and what the search made of it, one line each.
    pub fn lines(&self) -> String {
        format!(
            "{}\n{}",
            broke(self.epoch, &self.invariant, &self.detail),
            self.explanation.line()
        )
    }
}

/// Shards' reports: each shard's run, their totals in the line an unsharded
/// run prints, and each violation; true if there is one.
pub fn show_merged(reports: &[Report]) -> bool {
    let mut total = Report::default();
    for r in reports {
        let which = r
            .header
            .shard
            .map_or("unsharded".to_string(), |s| format!("shard {s}"));
        ui::say!("{which}, seed {}: {}", r.shard_seed, r.summary());
        total.threads += r.threads;
        total.seconds = total.seconds.max(r.seconds);
        total.epochs += r.epochs;
        total.ops += r.ops;
        total.ops_per_s += r.ops_per_s;
        total.tolerated += r.tolerated;
        total.raced += r.raced;
        total.overlapped += r.overlapped;
    }
    ui::say!("{}", total.summary());
    let mut failed = false;
    for v in reports.iter().filter_map(|r| r.violation.as_ref()) {
        ui::say!("{}", v.lines());
        failed = true;
    }
    failed
}

fn broke(epoch: u64, invariant: &str, detail: &str) -> String {
    format!("stress: epoch {epoch} broke {invariant}: {detail}")
}

/// A run's counts, its violation (with its epoch) and its seconds.
type Ran = (Counts, Option<(u64, Box<Violation>)>, f64);

/// Runs epochs until the deadline, Ctrl-C or a violation, with a progress bar
/// and a watchdog (`on_stuck` gets what it saw, and the seconds run).
fn run_with_progress(
    wl: &mut Workload,
    duration: Duration,
    watchdog: Duration,
    on_stuck: impl FnOnce(Stuck, f64) + Send + 'static,
) -> Result<Ran, String> {
    let stop = ui::ctrl_c();
    let bar = ui::bar(
        duration.as_secs().max(1),
        "{elapsed_precise} [{bar:30}] {msg}",
    );
    let t0 = Instant::now();
    let guard = {
        let bar = bar.clone();
        watchdog::spawn(wl.watch(), watchdog, move |s| {
            bar.finish_and_clear();
            on_stuck(s, t0.elapsed().as_secs_f64())
        })?
    };
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
        t0.elapsed() < duration && !stop.load(SeqCst)
    });
    if guard.disarm() {
        // The watchdog fired first (a stuck thread gave up at last, as the
        // std backend's wait limit makes it): it reports and ends the process.
        loop {
            std::thread::park();
        }
    }
    bar.finish_and_clear();
    Ok((counts, failing, t0.elapsed().as_secs_f64()))
}

/// A stuck run, reported from the watchdog's thread: the stuck workers'
/// ops and last steps, the epoch handed to shuttle PCT as any violation
/// is, the report written; then exit 1, as the stuck threads can neither be
/// joined nor stopped.
fn report_stuck(
    a: &StressArgs,
    mut report: Report,
    plan: &Plan,
    s: Stuck,
    seconds: f64,
    (preset, arch, muts): (PresetId, Arch, &[Mutation]),
) -> ! {
    let c = s.counts;
    (report.epochs, report.ops, report.tolerated) = (c.epochs, c.ops, c.tolerated);
    (report.raced, report.overlapped) = (c.raced, c.overlapped);
    report.seconds = seconds;
    report.ops_per_s = report.ops as f64 / report.seconds;
    report.ended = "watchdog".into();
    eprintln!("{}", report.summary());
    let failed = plan.epoch(s.epoch);
    let stuck: Vec<StuckOp> = s
        .workers
        .iter()
        .map(|w| {
            let thread = plan.thread_of(s.epoch, w.worker);
            let op_index = w.beat.op.unwrap_or(0);
            StuckOp {
                worker: w.worker,
                thread,
                op_index,
                op: thread
                    .and_then(|j| failed.sc.threads.get(j)?.get(op_index))
                    .cloned(),
                step: w.beat.step.map(str::to_string),
            }
        })
        .collect();
    let who = if stuck.is_empty() {
        "no worker is inside an op: the epoch's own machinery (a start line, a world's copy, the quiescent checks) is stuck".to_string()
    } else {
        stuck
            .iter()
            .map(StuckOp::line)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let detail = format!(
        "no op finished for {:.1} s (the watchdog's bound, {:.1} s): {who}",
        s.idle.as_secs_f64(),
        s.bound.as_secs_f64()
    );
    let inv = Invariant::Progress;
    eprintln!("{}", broke(s.epoch, inv.name(), &detail));
    let explanation = explain(a, &failed, preset, arch, muts, inv).unwrap_or_else(|e| {
        Explanation::NotReproducedUnderSequentialConsistency {
            engine: format!("shuttle-pct (depth 3, {} executions)", a.pct_budget),
            why: format!("the search stopped: {e}"),
        }
    });
    eprintln!("{}", explanation.line());
    report.violation = Some(Found {
        invariant: inv.name().into(),
        detail,
        epoch: s.epoch,
        shape: failed.sc.name.clone(),
        ops: failed.sc.threads,
        explanation,
        stuck,
    });
    match serde_json::to_string_pretty(&report)
        .map_err(|e| e.to_string())
        .and_then(|json| write_file_atomic(&a.out, "stress-report.json", json.as_bytes()))
    {
        Ok(p) => eprintln!("report: {}", p.display()),
        Err(e) => eprintln!("gupcheck: {e}"),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(1)
}

/// `gupcheck stress`: exit 1 on a violation outside the known-open ones.
pub fn stress(a: &StressArgs) -> Result<ExitCode, String> {
    Ok(if run(a)?.violation.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs, explains a violation, writes the report and returns it.
pub fn run(a: &StressArgs) -> Result<Report, String> {
    let (preset, arch, muts) = a.protocol.resolve()?;
    let mix = parse_mix(&a.mix, a.disjoint)?;
    let threads = a.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |t| t as usize,
    );
    let epoch_ops = a.epoch_ops.unwrap_or(if a.disjoint { 8192 } else { 16 });
    let picks = shapes::parse(&a.shapes)?;
    let has_random = picks.iter().any(|(p, _)| *p == Pick::Random);
    if a.disjoint && picks.len() > usize::from(has_random) {
        return Err(
            "--disjoint runs random ops on each worker's own pages: --shapes can only be random"
                .into(),
        );
    }
    if !a.mix.is_empty() && !has_random {
        return Err("--mix weighs the ops of random epochs, and --shapes has none".into());
    }
    let kinds = picks
        .into_iter()
        .map(|(p, w)| {
            let kind = match p {
                Pick::Random => Kind::Random,
                Pick::Scenario(name) => Kind::Shape {
                    tolerate: shapes::tolerated(&name, preset, arch, &muts),
                    sc: Box::new(scenario::by_name(&name)?),
                },
            };
            Ok((kind, w))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let shard_seed = Shard::seed(a.shard, a.seed);
    let mut report = Report {
        header: Header::new(KIND, a.shard),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: a.seed,
        shard_seed,
        duration_secs: a.duration.as_secs_f64(),
        threads,
        preset: preset.name().into(),
        arch: arch.name().into(),
        mutations: muts.iter().map(|m| m.name().to_string()).collect(),
        shapes: a.shapes.clone(),
        mix: mix
            .iter()
            .map(|(c, w)| format!("{c}={w}"))
            .collect::<Vec<_>>()
            .join(","),
        disjoint: a.disjoint,
        epoch_ops,
        ..Report::default()
    };
    let spec = Spec {
        threads,
        kinds,
        mix,
        disjoint: a.disjoint.then_some(a.pages),
        epoch_ops: epoch_ops as usize,
        tolerate: KNOWN_OPEN.to_vec(),
        seed: shard_seed,
    };
    let mut wl = Workload::new(preset, arch, &muts, spec)?;
    check_writable_dir(&a.out)?;
    let on_stuck = {
        let (a, report, plan, muts) = (a.clone(), report.clone(), wl.plan(), muts.clone());
        move |s, seconds| report_stuck(&a, report, &plan, s, seconds, (preset, arch, &muts))
    };
    let (c, failing, seconds) = run_with_progress(&mut wl, a.duration, a.watchdog, on_stuck)?;
    (report.epochs, report.ops, report.tolerated) = (c.epochs, c.ops, c.tolerated);
    (report.raced, report.overlapped) = (c.raced, c.overlapped);
    report.seconds = seconds;
    report.ops_per_s = report.ops as f64 / report.seconds;
    report.ended = if failing.is_some() {
        "violation"
    } else if ui::ctrl_c().load(SeqCst) {
        "interrupted"
    } else {
        "deadline"
    }
    .into();
    eprintln!("{}", report.summary());
    if let (Some((epoch, v)), Some(failed)) = (failing, wl.failed()) {
        eprintln!("{}", broke(epoch, v.invariant.name(), &v.detail));
        let explanation = explain(a, failed, preset, arch, &muts, v.invariant)?;
        eprintln!("{}", explanation.line());
        report.violation = Some(Found {
            invariant: v.invariant.name().into(),
            detail: v.detail.clone(),
            epoch,
            shape: failed.sc.name.clone(),
            ops: failed.sc.threads.clone(),
            explanation,
            stuck: Vec::new(),
        });
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let p = write_file_atomic(&a.out, "stress-report.json", json.as_bytes())?;
    eprintln!("report: {}", p.display());
    Ok(report)
}
