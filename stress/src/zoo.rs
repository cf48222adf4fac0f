//! `gupcheck zoo`: every `found`, `known-open` and `known-incomplete` entry of
//! the expectation matrix against every engine, each cell with a time budget.
//! It says which engines find each entry and how fast, and which cannot reach
//! it and why. Prints the matrix and writes zoo.json, zoo.md and zoo.svg.
//!
//! loom, shuttle and real threads (`std`) run the entry's own scenario. The
//! fuzzer and stress cannot: they draw op sequences over the random world
//! (`fuzzing::random_world`), so their cells run the entry's preset, arch and
//! mutation, stopping only at the entry's invariants. One such run serves every
//! entry with the same protocol and invariants.

use crate::fuzzbench;
use crate::stress;
use crate::stress::{Counts, Shape, Workload};
use gupcheck_model::harness::artifact::{check_writable_dir, write_file_atomic};
use gupcheck_model::harness::engine::{run_for, run_loom_deepening, Outcome};
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::{Entry, Expect};
use gupcheck_model::harness::fuzzing::{check_threads_fixed, Fixed, Target};
use gupcheck_model::harness::scenario;
use gupcheck_model::{CounterScale, Engine, Invariant, Mutation};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The engines that run an entry's own scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnScenario {
    Loom,
    ShuttleRandom,
    ShuttlePct,
    Std,
}

/// The engines that run an entry's protocol over the random world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnProtocol {
    Fuzz,
    Stress,
}

/// A column of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Scenario(OnScenario),
    Protocol(OnProtocol),
}

impl Col {
    pub const ALL: [Col; 6] = [
        Col::Scenario(OnScenario::Loom),
        Col::Scenario(OnScenario::ShuttleRandom),
        Col::Scenario(OnScenario::ShuttlePct),
        Col::Scenario(OnScenario::Std),
        Col::Protocol(OnProtocol::Fuzz),
        Col::Protocol(OnProtocol::Stress),
    ];
    pub const FUZZ: Col = Col::Protocol(OnProtocol::Fuzz);
    pub fn name(self) -> &'static str {
        match self {
            Col::Scenario(OnScenario::Loom) => "loom",
            Col::Scenario(OnScenario::ShuttleRandom) => "shuttle-random",
            Col::Scenario(OnScenario::ShuttlePct) => "shuttle-pct",
            Col::Scenario(OnScenario::Std) => "std",
            Col::Protocol(OnProtocol::Fuzz) => "fuzz",
            Col::Protocol(OnProtocol::Stress) => "stress",
        }
    }
    pub fn parse(s: &str) -> Result<Col, String> {
        Col::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let known: Vec<&str> = Col::ALL.iter().map(|c| c.name()).collect();
            format!("unknown engine '{s}' (known: {})", known.join(", "))
        })
    }
}

/// loom's preemption bound grows to this while the budget lasts.
const MAX_LOOM_BOUND: usize = 3;

#[derive(clap::Args, Clone)]
pub struct ZooArgs {
    /// Time per cell (one entry under one engine): 500ms, 5s, 1m.
    #[arg(long, default_value = "5s", value_parser = stress::parse_duration)]
    budget: Duration,
    /// Only entries whose label ("scenario / preset / arch / mutation")
    /// contains this; repeat for several.
    #[arg(long)]
    only: Vec<String>,
    /// The engines to run, comma-separated (default: loom, shuttle-random,
    /// shuttle-pct, std, fuzz, stress).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// The fuzz column: libfuzzer (the presets target built by cargo fuzz),
    /// random-bytes (the same target fed uniform random inputs, in process),
    /// or auto (libfuzzer where the target is built).
    #[arg(long, default_value = "auto")]
    fuzz: String,
    /// The presets fuzz binary (default: fuzz/target/*/release/presets).
    #[arg(long)]
    fuzz_bin: Option<PathBuf>,
    /// Seed of the shuttle schedulers, the fuzzer, the random bytes and stress.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cells at once (default: the cores). A stress cell runs two threads.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,
    /// Where zoo.json, zoo.md and zoo.svg are written.
    #[arg(long, default_value = "gupcheck-zoo")]
    out: PathBuf,
}

/// What one engine made of one entry.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Verdict {
    /// Detected: the entry's invariant (or one the same bug may break first).
    Found {
        invariant: String,
        secs: f64,
        /// Executions (loom, shuttle, std), inputs (random bytes) or epochs
        /// (stress) up to the finding; libFuzzer does not say.
        runs: Option<u64>,
    },
    /// The budget ran out first.
    NotFound {
        secs: f64,
        runs: Option<u64>,
        note: String,
    },
    /// Not found, and the engine cannot find it, for the reason given.
    CannotReach {
        secs: f64,
        runs: Option<u64>,
        why: String,
    },
    /// Broke an invariant the matrix does not allow for this entry.
    Other {
        invariant: String,
        detail: String,
    },
    Error {
        message: String,
    },
    /// Interrupted (Ctrl-C) before this cell ran.
    NotRun,
}

impl Verdict {
    fn short(&self) -> String {
        match self {
            Verdict::Found { secs, .. } => secs_short(*secs),
            Verdict::NotFound { .. } => "-".into(),
            Verdict::CannotReach { .. } => "n/r".into(),
            Verdict::Other { .. } => "OTHER".into(),
            Verdict::Error { .. } => "error".into(),
            Verdict::NotRun => "not run".into(),
        }
    }
}

/// stdout, ignoring a closed pipe (`gupcheck zoo | head`).
fn say(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{s}");
}

/// "1 entry", "2 entries".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn secs_short(s: f64) -> String {
    if s < 0.1 {
        format!("{:.0}ms", (s * 1000.0).max(1.0))
    } else {
        format!("{s:.1}s")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub engine: String,
    /// How the engine ran (loom's bounds, the fuzz mode, stress threads).
    pub how: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub scenario: String,
    pub preset: String,
    pub arch: String,
    pub mutation: Option<String>,
    /// found | known-open | known-incomplete
    pub expect: String,
    pub invariant: String,
    /// The matrix's reason for a known-open or known-incomplete entry.
    pub why: Option<String>,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn found_by(&self) -> Vec<&str> {
        self.cells
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Found { .. }))
            .map(|c| c.engine.as_str())
            .collect()
    }
}

#[derive(Serialize)]
struct Report {
    command: String,
    budget_secs: f64,
    seed: u64,
    /// How the fuzz column ran (none if it did not).
    fuzz: Option<String>,
    engines: Vec<String>,
    seconds: f64,
    /// Ctrl-C ended the run: cells not run say so.
    interrupted: bool,
    rows: Vec<Row>,
}

/// An ordering-only bug: the matrix says PCT (sequentially consistent) must
/// miss it.
fn ordering_only(e: &Entry) -> bool {
    e.missed_by.iter().any(|m| m == "shuttle-pct")
}

/// Why the fuzzer or stress (random ops over the random world, two threads)
/// cannot build what `e`'s scenario needs; `None` if nothing structural
/// stands in the way.
fn random_world_gap(e: &Entry, threads: usize) -> Option<String> {
    let sc = scenario::by_name(&e.scenario).ok()?;
    if sc.world.counter != CounterScale::REAL {
        return Some(format!(
            "needs the scenario's {}-bit counters (an overflow within a few dozen ops); the random world counts at the kernel's 32 bits",
            sc.world.counter.bits
        ));
    }
    if sc.threads.len() > threads {
        return Some(format!(
            "needs {} threads; this engine runs {threads}",
            sc.threads.len()
        ));
    }
    if sc.world.movable_frames + sc.world.cma_frames > 0 {
        return Some("needs ZONE_MOVABLE or CMA frames, which the random world lacks".into());
    }
    None
}

const SC_WHY: &str =
    "needs a weak-memory reordering, and shuttle runs sequentially consistent (loom's job)";

/// The fuzz column's mode.
#[derive(Clone)]
enum FuzzMode {
    LibFuzzer(PathBuf),
    RandomBytes,
}

impl FuzzMode {
    fn how(&self) -> String {
        match self {
            FuzzMode::LibFuzzer(_) => "libFuzzer, presets target".into(),
            FuzzMode::RandomBytes => "random bytes, presets target".into(),
        }
    }
}

/// A fuzz or stress run: one per protocol and set of invariants.
#[derive(Clone, PartialEq)]
struct Protocol {
    preset: gupcheck_model::PresetId,
    arch: gupcheck_model::Arch,
    mutation: Option<Mutation>,
    stop_at: Vec<Invariant>,
}

impl Protocol {
    fn of(e: &Entry) -> Protocol {
        let mut stop_at = e.stop_at();
        stop_at.sort_by_key(|i| i.name());
        Protocol {
            preset: e.preset,
            arch: e.arch,
            mutation: e.mutation,
            stop_at,
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    /// loom, shuttle or std on entry `i`'s scenario.
    Scenario(usize, OnScenario),
    /// fuzz or stress on protocol `k`.
    Protocol(usize, OnProtocol),
}

/// loom's own limits (a scenario too big for it), as opposed to a model bug.
fn loom_limit(msg: &str) -> bool {
    msg.contains("maximum number of branches") || msg.contains("max_threads")
}

/// Runs one entry's scenario under one engine for `budget`.
fn scenario_cell(e: &Entry, engine: OnScenario, budget: Duration, seed: u64) -> Cell {
    let cell = |how: &str, verdict| Cell {
        engine: Col::Scenario(engine).name().into(),
        how: how.into(),
        verdict,
    };
    let (sc, mut cfg) = match e.config() {
        Ok(x) => x,
        Err(message) => return cell("", Verdict::Error { message }),
    };
    cfg.trace = false;
    let stop = e.stop_at();
    let t0 = Instant::now();
    const MANY: usize = 1 << 40;
    let judge = |o: &Outcome, runs: u64, note: String, exhausted: Option<String>| {
        let secs = t0.elapsed().as_secs_f64();
        match &o.failure {
            Some(f) if stop.contains(&f.violation.invariant) => Verdict::Found {
                invariant: f.violation.invariant.name().into(),
                secs,
                runs: Some(runs),
            },
            Some(f) => Verdict::Other {
                invariant: f.violation.invariant.name().into(),
                detail: f.violation.detail.clone(),
            },
            None => match exhausted {
                Some(why) => Verdict::CannotReach {
                    secs,
                    runs: Some(runs),
                    why,
                },
                None => Verdict::NotFound {
                    secs,
                    runs: Some(runs),
                    note,
                },
            },
        }
    };
    let (eng, how) = match engine {
        OnScenario::Loom => {
            let d = match run_loom_deepening(&sc, &cfg, MAX_LOOM_BOUND, budget) {
                Ok(d) => d,
                Err((msg, bound)) if loom_limit(&msg) => {
                    let why = format!("beyond loom at bound {bound}: {msg}");
                    return cell(
                        &format!("bound {bound}"),
                        Verdict::CannotReach {
                            secs: t0.elapsed().as_secs_f64(),
                            runs: None,
                            why,
                        },
                    );
                }
                Err((message, bound)) => {
                    return cell(&format!("bound {bound}"), Verdict::Error { message })
                }
            };
            let shown = d.bound.map_or("unbounded".to_string(), |b| b.to_string());
            let exhausted = d.exhausted.then(|| {
                format!(
                    "every interleaving within {shown} preemptions is clean ({} of them)",
                    d.outcome.iterations
                )
            });
            let note = format!("the budget ran out at bound {shown}");
            return cell(
                &format!("bounds up to {shown}"),
                judge(&d.outcome, d.interleavings, note, exhausted),
            );
        }
        OnScenario::ShuttleRandom => (
            Engine::ShuttleRandom {
                iterations: MANY,
                seed,
            },
            "random schedules",
        ),
        OnScenario::ShuttlePct => (
            Engine::ShuttlePct {
                iterations: MANY,
                depth: 3,
                seed,
            },
            "PCT depth 3",
        ),
        OnScenario::Std => (
            Engine::Std { iterations: MANY },
            "the scenario on real threads",
        ),
    };
    let o = match run_for(&sc, &cfg, &eng, budget) {
        Ok(o) => o,
        Err(message) => return cell(how, Verdict::Error { message }),
    };
    let mut note = if sc.window.is_some() {
        format!(
            "race window reached in {} of {} executions",
            o.window_hits, o.iterations
        )
    } else {
        format!("{} executions", o.iterations)
    };
    let exhausted = (engine != OnScenario::Std && ordering_only(e)).then(|| SC_WHY.into());
    if engine == OnScenario::Std && ordering_only(e) {
        note += "; needs a weak-memory reordering this machine did not show";
    }
    cell(how, judge(&o, o.iterations, note, exhausted))
}

/// Runs the fuzzer or stress on one protocol for `budget`.
fn protocol_cell(
    p: &Protocol,
    engine: OnProtocol,
    budget: Duration,
    seed: u64,
    fuzz: &FuzzMode,
    work: &Path,
    stop: &AtomicBool,
) -> Cell {
    let names: Vec<String> = p.stop_at.iter().map(|i| i.name().to_string()).collect();
    let others: Vec<Invariant> = Invariant::ALL
        .into_iter()
        .filter(|i| !p.stop_at.contains(i))
        .collect();
    let muts: Vec<Mutation> = p.mutation.into_iter().collect();
    let t0 = Instant::now();
    // Both runs tolerate every invariant but the protocol's: what they
    // report is one of those.
    let found = |invariant: Invariant, runs: Option<u64>| Verdict::Found {
        invariant: invariant.name().into(),
        secs: t0.elapsed().as_secs_f64(),
        runs,
    };
    let (how, verdict) = match (engine, fuzz) {
        (OnProtocol::Fuzz, FuzzMode::LibFuzzer(bin)) => {
            let row = fuzzbench::Row {
                preset: p.preset.name().into(),
                arch: p.arch.name().into(),
                mutation: p.mutation.map(|m| m.name().into()),
                // The whole set, so runs at once never share a directory.
                invariant: names.join("+"),
                stop_at: names.clone(),
                scenarios: Vec::new(),
                times: Vec::new(),
            };
            let cap = budget.as_secs().max(1);
            let v =
                match fuzzbench::run_one(bin, Path::new("corpus/presets"), &row, seed, cap, work) {
                    Ok(Some(secs)) => Verdict::Found {
                        invariant: names.join(" or "),
                        secs,
                        runs: None,
                    },
                    Ok(None) => Verdict::NotFound {
                        secs: t0.elapsed().as_secs_f64(),
                        runs: None,
                        note: format!("libFuzzer ran {cap} s"),
                    },
                    // Ctrl-C reaches libFuzzer too (same process group).
                    Err(_) if stop.load(SeqCst) => Verdict::NotRun,
                    Err(message) => Verdict::Error { message },
                };
            (fuzz.how(), v)
        }
        (OnProtocol::Fuzz, FuzzMode::RandomBytes) => {
            let fixed = Fixed {
                preset: Some(p.preset),
                arch: Some(p.arch),
                muts: Some(muts.clone()),
                expect: Some(p.stop_at.clone()),
            };
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x2004_f00d);
            let mut buf = Vec::new();
            let mut runs = 0u64;
            let v = loop {
                if t0.elapsed() >= budget {
                    break Verdict::NotFound {
                        secs: t0.elapsed().as_secs_f64(),
                        runs: Some(runs),
                        note: format!("{runs} random inputs"),
                    };
                }
                let len = rng.gen_range(16..=512);
                buf.resize(len, 0);
                rng.fill(&mut buf[..]);
                runs += 1;
                if let Some(f) = check_threads_fixed(Target::Presets, &fixed, &buf) {
                    break found(f.invariant, Some(runs));
                }
            };
            (fuzz.how(), v)
        }
        (OnProtocol::Stress, _) => {
            const THREADS: usize = 2;
            let shape = Shape {
                threads: THREADS,
                mix: stress::parse_mix("", false).expect("the default mix"),
                disjoint: None,
                epoch_ops: 16,
                seed,
            };
            let how = format!("{THREADS} threads, random mix");
            match Workload::new(p.preset, p.arch, &muts, others, shape) {
                Ok(mut wl) => {
                    let mut c = Counts::default();
                    let v = match wl.run(&mut c, |_| t0.elapsed() < budget) {
                        Some((_, v)) => found(v.invariant, Some(c.epochs)),
                        None => Verdict::NotFound {
                            secs: t0.elapsed().as_secs_f64(),
                            runs: Some(c.epochs),
                            note: format!("{} epochs, {} ops", c.epochs, c.ops),
                        },
                    };
                    (how, v)
                }
                Err(message) => (how, Verdict::Error { message }),
            }
        }
    };
    Cell {
        engine: Col::Protocol(engine).name().into(),
        how,
        verdict,
    }
}

/// Why the fuzzer or stress cannot reach a protocol: only if no entry sharing
/// it can be reached (a shared run's miss says nothing about one entry).
fn protocol_gap(sharing: &[&Entry], engine: OnProtocol) -> Option<String> {
    let gaps: Vec<Option<String>> = sharing
        .iter()
        .map(|e| {
            random_world_gap(e, 2).or_else(|| {
                (engine == OnProtocol::Fuzz && ordering_only(e)).then(|| SC_WHY.to_string())
            })
        })
        .collect();
    if gaps.iter().all(Option::is_some) {
        gaps.into_iter().next().flatten()
    } else {
        None
    }
}

/// A found cell past its budget (loom checks between iterations, libFuzzer's
/// start-up counts) is shown as a miss: every cell keeps to one budget.
fn within_budget(c: &mut Cell, budget: Duration) {
    if let Verdict::Found { secs, runs, .. } = c.verdict {
        if secs > budget.as_secs_f64() {
            c.verdict = Verdict::NotFound {
                secs,
                runs,
                note: format!("found at {secs:.1} s, past the budget"),
            };
        }
    }
}

fn not_run(engine: &str) -> Cell {
    Cell {
        engine: engine.into(),
        how: String::new(),
        verdict: Verdict::NotRun,
    }
}

fn selected_engines(names: &[String]) -> Result<Vec<Col>, String> {
    if names.is_empty() {
        return Ok(Col::ALL.to_vec());
    }
    names.iter().map(|n| Col::parse(n)).collect()
}

/// The fuzz column's mode; the binary is looked for only if the column runs
/// (`used`).
fn fuzz_mode(a: &ZooArgs, used: bool) -> Result<FuzzMode, String> {
    let bin = || match &a.fuzz_bin {
        _ if !used => Err("the fuzz column does not run".to_string()),
        Some(b) if b.is_file() => Ok(b.clone()),
        Some(b) => Err(format!("no fuzz binary at {}", b.display())),
        None => fuzzbench::find_bin("presets"),
    };
    match a.fuzz.as_str() {
        "libfuzzer" if !used => Ok(FuzzMode::RandomBytes),
        "libfuzzer" => Ok(FuzzMode::LibFuzzer(bin()?)),
        "random-bytes" => Ok(FuzzMode::RandomBytes),
        "auto" => Ok(bin().map_or(FuzzMode::RandomBytes, FuzzMode::LibFuzzer)),
        other => Err(format!(
            "unknown --fuzz mode '{other}' (expected auto, libfuzzer or random-bytes)"
        )),
    }
}

pub fn zoo(a: &ZooArgs) -> Result<ExitCode, String> {
    let engines = selected_engines(&a.engines)?;
    let fuzz = fuzz_mode(a, engines.contains(&Col::FUZZ))?;
    // What the fuzz column ran, for the report; nothing if it did not run.
    let fuzz_how = engines.contains(&Col::FUZZ).then(|| fuzz.how());
    if engines.contains(&Col::FUZZ) {
        if let FuzzMode::LibFuzzer(_) = fuzz {
            if !Path::new("corpus/presets").is_dir() {
                return Err("no seed corpus at corpus/presets (run from the repository)".into());
            }
        }
    }
    let matrix: Vec<Entry> = expect::matrix()
        .into_iter()
        .filter(|e| e.expect != Expect::Clean)
        .collect();
    let entries: Vec<Entry> = matrix
        .iter()
        .filter(|e| a.only.is_empty() || a.only.iter().any(|o| e.label().contains(o.as_str())))
        .cloned()
        .collect();
    if entries.is_empty() {
        return Err("no found, known-open or known-incomplete entry matches --only".into());
    }
    check_writable_dir(&a.out)?;
    // libFuzzer's corpora and artifacts, one directory per run.
    let work = std::env::temp_dir().join(format!("gupcheck-zoo-{}", std::process::id()));
    let mut protocols: Vec<Protocol> = Vec::new();
    let proto_of: Vec<usize> = entries
        .iter()
        .map(|e| {
            let p = Protocol::of(e);
            protocols.iter().position(|q| *q == p).unwrap_or_else(|| {
                protocols.push(p);
                protocols.len() - 1
            })
        })
        .collect();
    let mut units = Vec::new();
    for &eng in &engines {
        match eng {
            Col::Protocol(p) => units.extend((0..protocols.len()).map(|k| Unit::Protocol(k, p))),
            Col::Scenario(x) => units.extend((0..entries.len()).map(|i| Unit::Scenario(i, x))),
        }
    }
    let jobs = a.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |j| j as usize,
    );
    eprintln!(
        "zoo: {} ({} for fuzz and stress) x {} = {} of at most {:.1} s, {} at once{}",
        count(entries.len(), "entry", "entries"),
        count(protocols.len(), "protocol", "protocols"),
        count(engines.len(), "engine", "engines"),
        count(units.len(), "run", "runs"),
        a.budget.as_secs_f64(),
        jobs,
        fuzz_how
            .as_ref()
            .map_or(String::new(), |h| format!("; fuzz: {h}"))
    );
    let total = units.len();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let t0 = Instant::now();
    // Ctrl-C: the cells running finish (each within its budget), no more
    // start, and what is done is written.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, SeqCst));
    }
    let queue = Mutex::new(units.into_iter());
    // Cells by entry (scenario engines) and by protocol (fuzz, stress), and
    // how many runs are done.
    type Done = (Vec<Option<Cell>>, Vec<Option<Cell>>, usize);
    let done: Mutex<Done> = Mutex::new((
        vec![None; entries.len() * engines.len()],
        vec![None; protocols.len() * engines.len()],
        0,
    ));
    let col = |c: Col| engines.iter().position(|e| *e == c).expect("selected");
    std::thread::scope(|s| -> Result<(), String> {
        let mut handles = Vec::new();
        for w in 0..jobs {
            let (queue, done, entries, protocols, bar, fuzz, engines, col, stop, work) = (
                &queue, &done, &entries, &protocols, &bar, &fuzz, &engines, &col, &stop, &work,
            );
            let h = std::thread::Builder::new()
                .name(format!("gupcheck-zoo-{w}"))
                .stack_size(64 << 20)
                .spawn_scoped(s, move || loop {
                    if stop.load(SeqCst) {
                        return;
                    }
                    let Some(u) = queue.lock().unwrap().next() else {
                        return;
                    };
                    let (slot, cell, what) = match u {
                        Unit::Scenario(i, eng) => (
                            (false, i * engines.len() + col(Col::Scenario(eng))),
                            scenario_cell(&entries[i], eng, a.budget, a.seed),
                            entries[i].label(),
                        ),
                        Unit::Protocol(k, eng) => {
                            let p = &protocols[k];
                            (
                                (true, k * engines.len() + col(Col::Protocol(eng))),
                                protocol_cell(p, eng, a.budget, a.seed, fuzz, work, stop),
                                format!(
                                    "{} / {} / {}",
                                    p.preset.name(),
                                    p.arch.name(),
                                    p.mutation.map_or("-", |m| m.name())
                                ),
                            )
                        }
                    };
                    let line = format!("{what}: {} {}", cell.engine, cell.verdict.short());
                    let mut d = done.lock().unwrap();
                    d.2 += 1;
                    if bar.is_hidden() && (d.2 * 10 / total) > ((d.2 - 1) * 10 / total) {
                        eprintln!(
                            "zoo: {}/{total} runs, {:.0} s",
                            d.2,
                            t0.elapsed().as_secs_f64()
                        );
                    }
                    match slot {
                        (false, j) => d.0[j] = Some(cell),
                        (true, j) => d.1[j] = Some(cell),
                    }
                    bar.inc(1);
                    bar.set_message(line);
                })
                .map_err(|e| format!("cannot start a zoo worker: {e}"))?;
            handles.push(h);
        }
        for h in handles {
            h.join().map_err(|_| "a zoo worker panicked".to_string())?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&work);
    let (mut by_entry, mut by_proto, _) = done.into_inner().unwrap();
    for c in by_entry.iter_mut().flatten() {
        within_budget(c, a.budget);
    }
    for (k, cells) in by_proto.chunks_mut(engines.len()).enumerate() {
        // Over the whole matrix, not only the entries selected.
        let sharing: Vec<&Entry> = matrix
            .iter()
            .filter(|e| Protocol::of(e) == protocols[k])
            .collect();
        for (col, c) in engines.iter().zip(cells.iter_mut()) {
            let (Col::Protocol(on), Some(c)) = (col, c) else {
                continue;
            };
            within_budget(c, a.budget);
            if let Verdict::NotFound { secs, runs, .. } = c.verdict {
                if let Some(why) = protocol_gap(&sharing, *on) {
                    c.verdict = Verdict::CannotReach { secs, runs, why };
                }
            }
        }
    }
    let rows: Vec<Row> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let cells = engines
                .iter()
                .enumerate()
                .map(|(c, eng)| match eng {
                    Col::Protocol(_) => by_proto[proto_of[i] * engines.len() + c]
                        .clone()
                        .unwrap_or_else(|| not_run(eng.name())),
                    Col::Scenario(_) => by_entry[i * engines.len() + c]
                        .clone()
                        .unwrap_or_else(|| not_run(eng.name())),
                })
                .collect();
            let (expect, why) = match &e.expect {
                Expect::Found { .. } => ("found", None),
                Expect::KnownOpen { why, .. } => ("known-open", Some(why.clone())),
                Expect::KnownIncomplete { why, .. } => ("known-incomplete", Some(why.clone())),
                Expect::Clean => unreachable!("filtered"),
            };
            Row {
                label: e.label(),
                scenario: e.scenario.clone(),
                preset: e.preset.name().into(),
                arch: e.arch.name().into(),
                mutation: e.mutation.map(|m| m.name().into()),
                expect: expect.into(),
                invariant: e.invariant().map_or(String::new(), |i| i.name().into()),
                why,
                cells,
            }
        })
        .collect();
    let seconds = t0.elapsed().as_secs_f64();
    let text = terminal_table(&rows, &engines);
    say(&text);
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        budget_secs: a.budget.as_secs_f64(),
        seed: a.seed,
        fuzz: fuzz_how,
        engines: engines.iter().map(|e| e.name().to_string()).collect(),
        seconds,
        interrupted: stop.load(SeqCst),
        rows,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
    write_file_atomic(&a.out, "zoo.json", json.as_bytes())?;
    write_file_atomic(&a.out, "zoo.md", markdown(&report).as_bytes())?;
    let svg = write_file_atomic(&a.out, "zoo.svg", svg(&report).as_bytes())?;
    // An interrupted run's misses may be cells not run: only what ran counts.
    let undetected: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.found_by().is_empty())
        .filter(|r| !r.cells.iter().any(|c| matches!(c.verdict, Verdict::NotRun)))
        .collect();
    let other: Vec<(&Row, &Cell)> = report
        .rows
        .iter()
        .flat_map(|r| r.cells.iter().map(move |c| (r, c)))
        .filter(|(_, c)| matches!(c.verdict, Verdict::Other { .. } | Verdict::Error { .. }))
        .collect();
    say(&format!(
        "{} x {} in {:.0} s; written to {} (and zoo.json, zoo.md)",
        count(report.rows.len(), "entry", "entries"),
        count(engines.len(), "engine", "engines"),
        seconds,
        svg.display()
    ));
    for r in &undetected {
        say(&format!(
            "UNDETECTED {}: no engine found {}",
            r.label, r.invariant
        ));
    }
    for (r, c) in &other {
        match &c.verdict {
            Verdict::Other { invariant, detail } => say(&format!(
                "OTHER {}: {} broke {invariant}: {detail}",
                r.label, c.engine
            )),
            Verdict::Error { message } => {
                say(&format!("ERROR {}: {}: {message}", r.label, c.engine))
            }
            _ => {}
        }
    }
    Ok(if report.interrupted {
        say("interrupted: cells not run are marked so");
        ExitCode::from(130)
    } else if undetected.is_empty() && other.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn terminal_table(rows: &[Row], engines: &[Col]) -> String {
    let w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(36);
    let mut s = format!(
        "{:<w$} {:<10}",
        "scenario / preset / arch / mutation", "expect"
    );
    for e in engines {
        s += &format!(" {:>9}", short_engine(e.name()));
    }
    s += "\n";
    for r in rows {
        s += &format!("{:<w$} {:<10}", r.label, short_expect(&r.expect));
        for c in &r.cells {
            s += &format!(" {:>9}", c.verdict.short());
        }
        s += "\n";
    }
    s +=
        "time to detect; '-' not within the budget; 'n/r' cannot reach (why below and in zoo.md)\n";
    for (e, i) in engines.iter().zip(0..) {
        let count =
            |f: fn(&Verdict) -> bool| rows.iter().filter(|r| f(&r.cells[i].verdict)).count();
        s += &format!(
            "  {:<15} found {:>3}  not within budget {:>3}  cannot reach {:>3}\n",
            e.name(),
            count(|v| matches!(v, Verdict::Found { .. })),
            count(|v| matches!(v, Verdict::NotFound { .. })),
            count(|v| matches!(v, Verdict::CannotReach { .. })),
        );
    }
    // Why not, grouped: one line per reason and engine.
    let mut reasons: Vec<(String, String, usize)> = Vec::new();
    for r in rows {
        for c in &r.cells {
            if let Verdict::CannotReach { why, .. } = &c.verdict {
                // loom's exhausted trees differ only in size: one line.
                let why = match why.find(" (") {
                    Some(k) if c.engine == Col::Scenario(OnScenario::Loom).name() => {
                        why[..k].to_string()
                    }
                    _ => why.clone(),
                };
                match reasons
                    .iter_mut()
                    .find(|(e, w, _)| *e == c.engine && *w == why)
                {
                    Some(x) => x.2 += 1,
                    None => reasons.push((c.engine.clone(), why, 1)),
                }
            }
        }
    }
    if !reasons.is_empty() {
        s += "cannot reach:\n";
        for (e, why, n) in reasons {
            s += &format!("  {e}: {why} ({})\n", count(n, "entry", "entries"));
        }
    }
    s
}

fn short_engine(e: &str) -> &str {
    match e {
        "shuttle-random" => "random",
        "shuttle-pct" => "pct",
        other => other,
    }
}

fn short_expect(e: &str) -> &str {
    match e {
        "known-open" => "open",
        "known-incomplete" => "incompl.",
        other => other,
    }
}

fn cell_md(c: &Cell) -> String {
    match &c.verdict {
        Verdict::Found {
            secs,
            runs: Some(n),
            ..
        } => format!("{} ({n})", secs_short(*secs)),
        Verdict::Other { invariant, .. } => format!("OTHER {invariant}"),
        v => v.short(),
    }
}

fn markdown(rep: &Report) -> String {
    let mut s = format!(
        "Budget {:.1} s per cell, seed {}{}. A cell is the time to detect (with executions, inputs or epochs); `-` not within the budget; `n/r` cannot reach. loom, shuttle and std run the entry's scenario; fuzz and stress run the entry's preset, arch and mutation over the random world, stopping only at the entry's invariants, so entries that share those share the cell, and a find shows the invariant breaks under that protocol, not necessarily by the scenario's path.\n\n| entry | expect |",
        rep.budget_secs,
        rep.seed,
        rep.fuzz
            .as_ref()
            .map_or(String::new(), |h| format!(", fuzz: {h}"))
    );
    for e in &rep.engines {
        s += &format!(" {e} |");
    }
    s += " not found: why |\n|---|---|";
    for _ in &rep.engines {
        s += "---|";
    }
    s += "---|\n";
    for r in &rep.rows {
        s += &format!("| {} | {} {} |", r.label, r.expect, r.invariant);
        for c in &r.cells {
            s += &format!(" {} |", cell_md(c));
        }
        let why: Vec<String> = r
            .cells
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::CannotReach { why, .. } => Some(format!("{}: {why}", c.engine)),
                Verdict::NotFound { note, .. } => {
                    Some(format!("{}: not in budget ({note})", c.engine))
                }
                _ => None,
            })
            .collect();
        s += &format!(" {} |\n", why.join("; "));
    }
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A heat map: one row per entry, one column per engine; green for fast
/// detection through amber at the budget (log scale), grey where the budget
/// ran out, dark grey where the engine cannot reach the entry.
fn svg(rep: &Report) -> String {
    const CELL_W: usize = 96;
    const ROW_H: usize = 16;
    const TOP: usize = 40;
    let text = |r: &Row| format!("{} ({})", r.label, r.invariant);
    // 11 px monospace is about 6.7 px a character.
    let label_w = rep.rows.iter().map(|r| text(r).len()).max().unwrap_or(40) * 67 / 10 + 16;
    let w = label_w + CELL_W * rep.engines.len() + 10;
    let h = TOP + ROW_H * rep.rows.len() + 50;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"monospace\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"4\" y=\"16\" font-size=\"13\">gupcheck zoo: time to detect per entry and engine (budget {:.1} s per cell)</text>\n",
        rep.budget_secs
    );
    for (j, e) in rep.engines.iter().enumerate() {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            label_w + j * CELL_W + CELL_W / 2,
            TOP - 6,
            xml(e)
        );
    }
    let lo = 1e-3f64.ln();
    let hi = rep.budget_secs.max(2e-3).ln();
    for (i, r) in rep.rows.iter().enumerate() {
        let y = TOP + i * ROW_H;
        s += &format!(
            "<text x=\"4\" y=\"{}\">{}</text>\n",
            y + ROW_H - 4,
            xml(&text(r))
        );
        for (j, c) in r.cells.iter().enumerate() {
            let fill = match &c.verdict {
                Verdict::Found { secs, .. } => {
                    let t = ((secs.max(1e-3).ln() - lo) / (hi - lo)).clamp(0.0, 1.0);
                    // green (46,125,50) to amber (249,168,37)
                    let mix = |a: f64, b: f64| (a + (b - a) * t) as u8;
                    format!(
                        "#{:02x}{:02x}{:02x}",
                        mix(46.0, 249.0),
                        mix(125.0, 168.0),
                        mix(50.0, 37.0)
                    )
                }
                Verdict::NotFound { .. } => "#dddddd".into(),
                Verdict::CannotReach { .. } => "#8a8a8a".into(),
                Verdict::Other { .. } | Verdict::Error { .. } => "#c62828".into(),
                Verdict::NotRun => "#ffffff".into(),
            };
            let x = label_w + j * CELL_W;
            s += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                CELL_W - 2,
                ROW_H - 2,
                x + CELL_W / 2,
                y + ROW_H - 4,
                xml(&c.verdict.short())
            );
        }
    }
    let y = TOP + ROW_H * rep.rows.len() + 20;
    s += &format!(
        "<text x=\"4\" y=\"{y}\">green: found fast; amber: found near the budget; light grey (-): not within the budget; dark grey (n/r): cannot reach (see zoo.md)</text>\n</svg>\n"
    );
    s
}

/// The default campaign's zoo summary, from the outcomes it already has: per
/// engine, how many found / known-open / known-incomplete entries it detects,
/// and the entries only one engine detects.
pub fn campaign_summary(evals: &[(Entry, Vec<Outcome>)]) -> String {
    let rows: Vec<(&Entry, Vec<&str>)> = evals
        .iter()
        .filter(|(e, _)| e.expect != Expect::Clean)
        .map(|(e, outs)| {
            let stop = e.stop_at();
            let by: Vec<&str> = outs
                .iter()
                .filter(|o| {
                    o.failure
                        .as_ref()
                        .is_some_and(|f| stop.contains(&f.violation.invariant))
                })
                .map(|o| o.engine.as_str())
                .collect();
            (e, by)
        })
        .collect();
    let Some((_, outs)) = evals.first() else {
        return String::new();
    };
    let mut s = format!(
        "zoo summary: {} found / known-open / known-incomplete entries\n",
        rows.len()
    );
    for o in outs {
        let n = rows
            .iter()
            .filter(|(_, by)| by.contains(&o.engine.as_str()))
            .count();
        s += &format!("  {:<15} detects {n:>3}\n", o.engine);
    }
    for o in outs {
        let only: Vec<String> = rows
            .iter()
            .filter(|(_, by)| by == &vec![o.engine.as_str()])
            .map(|(e, _)| e.label())
            .collect();
        if !only.is_empty() {
            s += &format!(
                "  only {} ({}):\n    {}\n",
                o.engine,
                only.len(),
                only.join("\n    ")
            );
        }
    }
    let none = rows.iter().filter(|(_, by)| by.is_empty()).count();
    s += &format!(
        "  by none of these engines: {none}\n  the full zoo, with fuzz and stress and times to detect: gupcheck zoo\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary counts what each engine detected and names the entries
    /// only one engine detects.
    #[test]
    fn campaign_summary_says_who_detects_what() {
        let pick = |label: &str| {
            expect::matrix()
                .into_iter()
                .find(|e| e.label() == label)
                .unwrap_or_else(|| panic!("no entry {label}"))
        };
        let engines = [
            Engine::Loom {
                preemption_bound: Some(2),
            },
            Engine::ShuttlePct {
                iterations: 500,
                depth: 3,
                seed: 1,
            },
        ];
        let evals: Vec<(Entry, Vec<Outcome>)> = [
            "munmap_vs_lockless_walker / latest / rcu / walker_registration_no_barrier",
            "gup_fast_vs_munmap / latest / rcu / put_page_on_pin",
            "gup_fast_vs_munmap / latest / rcu / -",
        ]
        .into_iter()
        .map(|l| {
            let ev = expect::evaluate(&pick(l), &engines).unwrap();
            (ev.entry, ev.outcomes)
        })
        .collect();
        let s = campaign_summary(&evals);
        assert!(s.starts_with("zoo summary: 2 found"), "{s}");
        assert!(s.contains("loom            detects   2"), "{s}");
        assert!(s.contains("shuttle-pct     detects   1"), "{s}");
        assert!(
            s.contains("only loom (1):\n    munmap_vs_lockless_walker"),
            "{s}"
        );
        assert!(s.contains("by none of these engines: 0"), "{s}");
    }
}
