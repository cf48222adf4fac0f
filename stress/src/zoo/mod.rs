//! `gupcheck zoo`: every `found`, `known-open`, `known-incomplete` and
//! `open-upstream` entry of the expectation matrix against every engine, each cell with a time budget.
//! It says which engines find each entry and how fast, and which cannot reach
//! it and why. Prints the matrix and writes zoo.json, zoo.md and zoo.svg.
//!
//! loom, shuttle, real threads (`std`) and stress run the entry's own
//! scenario; stress replays its threads epoch after epoch on a pool, as
//! `gupcheck stress` replays a shape. The fuzzer cannot: it draws op
//! sequences over the random world (`fuzzing::random_world`), so its cells
//! run the entry's preset, arch and mutation, stopping only at the entry's
//! invariants. One such run serves every entry with the same protocol and
//! invariants.

mod cells;
mod report;

use crate::detect;

use crate::detect::{OnScenario, Protocol, Verdict};
use crate::pool;
use crate::shard;
use crate::shard::{Header, Shard};
use crate::ui;
use crate::ui::{count, parse_duration};
use cells::{Cell, Col, FuzzMode, ProtocolRun, Row, Unit};
use gupcheck_model::harness::artifact::check_writable_dir;
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::{Entry, Expect};
pub use report::{show, Report, KIND};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct ZooArgs {
    /// Time per cell (one entry under one engine): 500ms, 5s, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
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
    /// Cells at once (default: the cores). A stress cell runs two threads:
    /// half as many of them run at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,
    /// Where zoo.json, zoo.md and zoo.svg are written.
    #[arg(long, default_value = "gupcheck-zoo")]
    out: PathBuf,
    /// Runs part K of N (1-based): the selected entries whose index is K-1
    /// modulo N.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
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
        None => detect::find_bin("presets"),
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

/// What the zoo runs.
struct Plan {
    /// The entries of the whole matrix that must be found (every class but
    /// clean).
    matrix: Vec<Entry>,
    /// How many `--only` selects, and those of them this shard runs.
    selected: usize,
    entries: Vec<Entry>,
    /// The protocols the fuzz cells run, and each entry's.
    protocols: Vec<Protocol>,
    proto_of: Vec<usize>,
    engines: Vec<Col>,
    units: Vec<Unit>,
}

fn plan(a: &ZooArgs, engines: Vec<Col>) -> Result<Plan, String> {
    let matrix: Vec<Entry> = expect::matrix()
        .into_iter()
        .filter(|e| e.expect != Expect::Clean)
        .collect();
    let entries = shard::matching(&matrix, &a.only);
    if entries.is_empty() {
        return Err(
            "no found, known-open, known-incomplete or open-upstream entry matches --only".into(),
        );
    }
    let selected = entries.len();
    let entries = Shard::select(a.shard, entries);
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
    Ok(Plan {
        matrix,
        selected,
        entries,
        protocols,
        proto_of,
        engines,
        units,
    })
}

/// Cells by entry (scenario engines) and by protocol (fuzz), `None`
/// where a cell did not run.
struct Done {
    by_entry: Vec<Option<Cell>>,
    by_proto: Vec<Option<Cell>>,
}

impl Plan {
    fn col(&self, c: Col) -> usize {
        self.engines.iter().position(|e| *e == c).expect("selected")
    }

    /// Where unit `u`'s cell goes, and what it ran on (for the progress bar).
    fn slot(&self, u: Unit) -> (bool, usize, String) {
        let n = self.engines.len();
        match u {
            Unit::Scenario(i, eng) => (
                false,
                i * n + self.col(Col::Scenario(eng)),
                self.entries[i].label(),
            ),
            Unit::Protocol(k, eng) => (
                true,
                k * n + self.col(Col::Protocol(eng)),
                self.protocols[k].label(),
            ),
        }
    }
}

/// Runs every unit, `jobs` at once, with a progress bar; the stress cells
/// last, `jobs / STRESS_THREADS` at once, so that each of their threads has
/// a core (threads sharing one rarely run at the same time). Ctrl-C: the
/// cells running finish (each within its budget), no more start.
fn run_units(a: &ZooArgs, plan: &Plan, jobs: usize, r: &ProtocolRun) -> Result<Done, String> {
    let total = plan.units.len();
    let bar = ui::bar(
        total as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
    );
    let t0 = Instant::now();
    let mut done = Done {
        by_entry: vec![None; plan.entries.len() * plan.engines.len()],
        by_proto: vec![None; plan.protocols.len() * plan.engines.len()],
    };
    let mut finished = 0;
    let work = |&u: &usize| match plan.units[u] {
        Unit::Scenario(i, eng) => cells::scenario_cell(&plan.entries[i], eng, a.budget, a.seed),
        Unit::Protocol(k, eng) => cells::protocol_cell(&plan.protocols[k], eng, r),
    };
    let mut record = |u: usize, cell: Cell| {
        let (by_proto, j, what) = plan.slot(plan.units[u]);
        let line = format!("{what}: {} {}", cell.engine, cell.verdict.short());
        finished += 1;
        // Without a terminal the bar is hidden: a line every tenth instead.
        if bar.is_hidden() && (finished * 10 / total) > ((finished - 1) * 10 / total) {
            eprintln!(
                "zoo: {finished}/{total} runs, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
        let slots = if by_proto {
            &mut done.by_proto
        } else {
            &mut done.by_entry
        };
        slots[j] = Some(cell);
        bar.inc(1);
        bar.set_message(line);
    };
    let (stress, rest): (Vec<usize>, Vec<usize>) =
        (0..total).partition(|&u| matches!(plan.units[u], Unit::Scenario(_, OnScenario::Stress)));
    for (units, at_once) in [
        (rest, jobs),
        (stress, (jobs / detect::STRESS_THREADS).max(1)),
    ] {
        pool::in_order(at_once, "zoo", &units, r.stop, work, |k, cell| {
            record(units[k], cell)
        })?;
    }
    bar.finish_and_clear();
    Ok(done)
}

/// Every cell kept to the budget; a fuzz miss becomes "cannot reach" where
/// no entry sharing the protocol can be reached.
fn settle(plan: &Plan, done: &mut Done, budget: Duration) {
    for c in done.by_entry.iter_mut().flatten() {
        cells::within_budget(c, budget);
    }
    for (k, cells) in done.by_proto.chunks_mut(plan.engines.len()).enumerate() {
        // Over the whole matrix, not only the entries selected.
        let sharing: Vec<&Entry> = plan
            .matrix
            .iter()
            .filter(|e| Protocol::of(e) == plan.protocols[k])
            .collect();
        for (col, c) in plan.engines.iter().zip(cells.iter_mut()) {
            let (Col::Protocol(_), Some(c)) = (col, c) else {
                continue;
            };
            cells::within_budget(c, budget);
            if let Verdict::NotFound { secs, runs, .. } = c.verdict {
                if let Some(why) = cells::protocol_gap(&sharing) {
                    c.verdict = Verdict::CannotReach { secs, runs, why };
                }
            }
        }
    }
}

fn rows(plan: &Plan, done: &Done) -> Vec<Row> {
    let n = plan.engines.len();
    plan.entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let cells = plan
                .engines
                .iter()
                .enumerate()
                .map(|(c, eng)| {
                    let cell = match eng {
                        Col::Protocol(_) => &done.by_proto[plan.proto_of[i] * n + c],
                        Col::Scenario(_) => &done.by_entry[i * n + c],
                    };
                    cell.clone().unwrap_or_else(|| cells::not_run(eng.name()))
                })
                .collect();
            debug_assert!(e.expect != Expect::Clean, "filtered");
            let (expect, why) = (e.expect.class(), e.expect.why().map(str::to_string));
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
        .collect()
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
    let plan = plan(a, engines)?;
    check_writable_dir(&a.out)?;
    let jobs = a.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |j| j as usize,
    );
    let of = a.shard.map_or(String::new(), |s| {
        format!(" of {} (shard {s})", plan.selected)
    });
    eprintln!(
        "zoo: {}{of} ({} for fuzz) x {} = {} of at most {:.1} s, {} at once{}",
        count(plan.entries.len(), "entry", "entries"),
        count(plan.protocols.len(), "protocol", "protocols"),
        count(plan.engines.len(), "engine", "engines"),
        count(plan.units.len(), "run", "runs"),
        a.budget.as_secs_f64(),
        jobs,
        fuzz_how
            .as_ref()
            .map_or(String::new(), |h| format!("; fuzz: {h}"))
    );
    let t0 = Instant::now();
    let work = std::env::temp_dir().join(format!("gupcheck-zoo-{}", std::process::id()));
    let stop = ui::ctrl_c();
    let r = ProtocolRun {
        budget: a.budget,
        seed: a.seed,
        fuzz: &fuzz,
        work: &work,
        stop,
    };
    let done = run_units(a, &plan, jobs, &r);
    let _ = std::fs::remove_dir_all(&work);
    let mut done = done?;
    settle(&plan, &mut done, a.budget);
    let engines: Vec<String> = plan.engines.iter().map(|e| e.name().to_string()).collect();
    let report = Report {
        header: Header::new(KIND, a.shard),
        selected: plan.selected,
        only: a.only.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        budget_secs: a.budget.as_secs_f64(),
        seed: a.seed,
        fuzz: fuzz_how,
        seconds: t0.elapsed().as_secs_f64(),
        interrupted: stop.load(SeqCst),
        rows: rows(&plan, &done),
        engines,
    };
    let failed = report::show(&report, Some(&a.out))?;
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
