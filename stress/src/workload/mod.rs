//! `gupcheck stress`: real threads on real atomics. A rayon pool runs short
//! epochs (`gen`), each from a fresh copy of a world: every worker runs its
//! own seeded, weighted random op list on the shared address spaces of the
//! random world, or the workers replay one of the catalogue's racing shapes
//! (`shapes`); the global invariants are checked at the epoch's quiescent
//! end. A violation is handed to shuttle PCT, then loom (`explain`).

mod explain;
mod gen;
pub mod shapes;

use crate::shard::{Header, Shard};
use crate::ui;
use crate::ui::parse_duration;
use explain::{explain, Explanation};
pub use gen::{parse_mix, Counts, Kind, Spec, Workload};
use gupcheck_model::harness::artifact::{check_writable_dir, write_file_atomic};
use gupcheck_model::harness::fuzzing::KNOWN_OPEN;
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario;
use gupcheck_model::invariant::Violation;
use serde::{Deserialize, Serialize};
use shapes::Pick;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::SeqCst;
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
    /// What the epochs run, with shares: random (the ops of --mix on the
    /// random world), racing (every scenario of two threads or more, sharing
    /// the weight), or a scenario by name; e.g. random=3,racing=1 or
    /// gup_fast_vs_munmap.
    #[arg(long, default_value = shapes::DEFAULT)]
    shapes: String,
    /// Op weights by class in random epochs, e.g. gup=4,release=3,fork=0
    /// (classes: gup, release, user, dma, mm, file, fork, thp, migrate;
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
            out: PathBuf::from("gupcheck-stress"),
            shard,
        }
    }
}

/// `stress-report.json`.
#[derive(Serialize, Deserialize, Default)]
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
    /// Why the run ended: "deadline", "interrupted", "violation".
    pub ended: String,
    pub violation: Option<Found>,
}

pub const KIND: &str = "stress";

#[derive(Serialize, Deserialize)]
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

/// Runs epochs until the deadline, Ctrl-C or a violation, with a progress bar.
fn run_with_progress(
    wl: &mut Workload,
    duration: Duration,
) -> (Counts, Option<(u64, Box<Violation>)>, f64) {
    let stop = ui::ctrl_c();
    let bar = ui::bar(
        duration.as_secs().max(1),
        "{elapsed_precise} [{bar:30}] {msg}",
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
        t0.elapsed() < duration && !stop.load(SeqCst)
    });
    bar.finish_and_clear();
    (counts, failing, t0.elapsed().as_secs_f64())
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
    let (c, failing, seconds) = run_with_progress(&mut wl, a.duration);
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
        });
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let p = write_file_atomic(&a.out, "stress-report.json", json.as_bytes())?;
    eprintln!("report: {}", p.display());
    Ok(report)
}
