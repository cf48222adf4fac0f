//! The zoo's cells: one entry under one engine. loom, shuttle, std and stress
//! run the entry's scenario; the fuzzer runs its protocol over the random
//! world, one run serving every entry with the same protocol and invariants.
//! Here too: why the fuzzer cannot reach an entry.

use crate::detect;

use crate::detect::{FuzzRun, Limit, OnScenario, Protocol, Verdict, SC_WHY};
use gupcheck_model::harness::expect::Entry;
use gupcheck_model::harness::scenario;
use gupcheck_model::CounterScale;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The engines that run an entry's protocol over the random world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnProtocol {
    Fuzz,
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
        Col::Scenario(OnScenario::Stress),
    ];
    pub const FUZZ: Col = Col::Protocol(OnProtocol::Fuzz);
    pub fn name(self) -> &'static str {
        match self {
            Col::Scenario(OnScenario::Loom) => "loom",
            Col::Scenario(OnScenario::ShuttleRandom) => "shuttle-random",
            Col::Scenario(OnScenario::ShuttlePct) => "shuttle-pct",
            Col::Scenario(OnScenario::Std) => "std",
            Col::Scenario(OnScenario::Stress) => "stress",
            Col::Protocol(OnProtocol::Fuzz) => "fuzz",
        }
    }
    pub fn parse(s: &str) -> Result<Col, String> {
        Col::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let known: Vec<&str> = Col::ALL.iter().map(|c| c.name()).collect();
            format!("unknown engine '{s}' (known: {})", known.join(", "))
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    pub engine: String,
    /// How the engine ran (loom's bounds, the fuzz mode, stress threads).
    pub how: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub scenario: String,
    pub preset: String,
    pub arch: String,
    pub mutation: Option<String>,
    /// found | known-open | known-incomplete | open-upstream
    pub expect: String,
    pub invariant: String,
    /// The matrix's reason for a known-open, known-incomplete or
    /// open-upstream entry.
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

/// The fuzz column's mode.
#[derive(Clone)]
pub enum FuzzMode {
    LibFuzzer(PathBuf),
    RandomBytes,
}

impl FuzzMode {
    pub fn how(&self) -> String {
        match self {
            FuzzMode::LibFuzzer(_) => "libFuzzer, presets target".into(),
            FuzzMode::RandomBytes => "random bytes, presets target".into(),
        }
    }
}

/// One run of the zoo.
#[derive(Clone, Copy)]
pub enum Unit {
    /// loom, shuttle, std or stress on entry `i`'s scenario.
    Scenario(usize, OnScenario),
    /// fuzz on protocol `k`.
    Protocol(usize, OnProtocol),
}

/// Runs one entry's scenario under one engine for `budget`.
pub fn scenario_cell(e: &Entry, engine: OnScenario, budget: Duration, seed: u64) -> Cell {
    let p = detect::on_scenario(e, engine, Limit::Time(budget), seed);
    Cell {
        engine: Col::Scenario(engine).name().into(),
        how: p.how,
        verdict: p.verdict,
    }
}

/// Where and how the fuzz cells run.
pub struct ProtocolRun<'a> {
    pub budget: Duration,
    pub seed: u64,
    pub fuzz: &'a FuzzMode,
    /// libFuzzer's corpora and artifacts, one directory per run.
    pub work: &'a Path,
    pub stop: &'a AtomicBool,
}

/// Runs the fuzzer on one protocol.
pub fn protocol_cell(p: &Protocol, engine: OnProtocol, r: &ProtocolRun) -> Cell {
    let t0 = Instant::now();
    let (how, verdict) = match (engine, r.fuzz) {
        (OnProtocol::Fuzz, FuzzMode::LibFuzzer(bin)) => {
            let names: Vec<String> = p.stop_at.iter().map(|i| i.name().to_string()).collect();
            let run = FuzzRun {
                // The whole set, so runs at once never share a directory.
                label: format!("{} / {}", p.label(), names.join("+")),
                preset: p.preset.name(),
                arch: p.arch.name(),
                mutation: p.mutation.map(|m| m.name()),
                stop_at: &names,
            };
            let cap = r.budget.as_secs().max(1);
            let corpus = Path::new("corpus/presets");
            let v = match detect::libfuzzer(bin, corpus, &run, r.seed, cap, r.work) {
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
                Err(_) if r.stop.load(SeqCst) => Verdict::NotRun,
                Err(message) => Verdict::Error { message },
            };
            (r.fuzz.how(), v)
        }
        (OnProtocol::Fuzz, FuzzMode::RandomBytes) => {
            (r.fuzz.how(), detect::random_bytes(p, r.budget, r.seed))
        }
    };
    Cell {
        engine: Col::Protocol(engine).name().into(),
        how,
        verdict,
    }
}

/// Op lists the presets fuzz target runs at once.
const FUZZ_THREADS: usize = 2;

/// Why the fuzzer (random ops over the random world, two threads) cannot
/// build what `e`'s scenario needs; `None` if nothing structural stands in
/// the way.
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

/// Why the fuzzer cannot reach a protocol: only if no entry sharing it can
/// be reached (a shared run's miss says nothing about one entry).
pub fn protocol_gap(sharing: &[&Entry]) -> Option<String> {
    let gaps: Vec<Option<String>> = sharing
        .iter()
        .map(|e| {
            random_world_gap(e, FUZZ_THREADS)
                .or_else(|| detect::ordering_only(e).then(|| SC_WHY.to_string()))
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
pub fn within_budget(c: &mut Cell, budget: Duration) {
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

pub fn not_run(engine: &str) -> Cell {
    Cell {
        engine: engine.into(),
        how: String::new(),
        verdict: Verdict::NotRun,
    }
}
