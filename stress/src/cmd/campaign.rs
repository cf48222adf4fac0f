//! `gupcheck campaign`, the default command: every expectation-matrix entry
//! under loom, shuttle (random and PCT) and real threads, judged against the
//! matrix, then a rayon stress run of the latest preset.

use crate::ui::{parse_duration, say};
use crate::workload::{self, StressArgs};
use crate::zoo;
use gupcheck_model::expect::{self, Entry};
use gupcheck_model::{Engine, Outcome};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct CampaignArgs {
    /// loom preemption bound (default: each entry's own, 1 or 2).
    #[arg(long)]
    bound: Option<usize>,
    /// shuttle executions per entry and scheduler.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Seed of the shuttle schedulers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Real-thread executions per entry.
    #[arg(long, default_value_t = 200)]
    std_iterations: usize,
    /// The closing rayon stress run of the latest preset.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    stress: Duration,
}

impl Default for CampaignArgs {
    fn default() -> Self {
        CampaignArgs {
            bound: None,
            iterations: 5_000,
            seed: 1,
            std_iterations: 200,
            stress: Duration::from_secs(15),
        }
    }
}

/// loom, shuttle random, shuttle PCT, std.
const ENGINES: usize = 4;

impl CampaignArgs {
    /// The engines an entry runs under: loom at the entry's own bound unless
    /// `--bound` fixes one.
    fn engines(&self, e: &Entry) -> [Engine; ENGINES] {
        let iterations = self.iterations as usize;
        [
            Engine::Loom {
                preemption_bound: Some(self.bound.unwrap_or_else(|| e.loom_bound())),
            },
            Engine::ShuttleRandom {
                iterations,
                seed: self.seed,
            },
            Engine::ShuttlePct {
                iterations,
                depth: 3,
                seed: self.seed,
            },
            Engine::Std {
                iterations: self.std_iterations,
            },
        ]
    }

    /// "loom bound 2", or the range of the entries' own bounds.
    fn bound_shown(&self, matrix: &[Entry]) -> String {
        if let Some(b) = self.bound {
            return format!("loom bound {b}");
        }
        let bounds = matrix.iter().map(Entry::loom_bound);
        let (lo, hi) = (bounds.clone().min(), bounds.max());
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo < hi => format!("loom bound per entry ({lo}-{hi})"),
            (Some(b), _) => format!("loom bound per entry ({b})"),
            _ => "loom bound per entry".into(),
        }
    }
}

/// One row's outcome cell: the invariant broken and at which execution, or
/// how many ran clean (and reached the race window, where the matrix names
/// an engine that must miss).
fn cell(entry: &Entry, o: &Outcome) -> String {
    match &o.failure {
        Some(f) => format!("{} @{}", f.violation.invariant, f.iteration),
        None if !entry.missed_by.is_empty() && o.window_hits > 0 => {
            format!("clean ({}, {} in window)", o.iterations, o.window_hits)
        }
        None => format!("clean ({})", o.iterations),
    }
}

pub fn run(a: &CampaignArgs) -> Result<ExitCode, String> {
    let matrix = expect::matrix();
    say!(
        "gupcheck default campaign: {} matrix entries x {ENGINES} engines ({}, shuttle {} executions, {} real-thread runs)",
        matrix.len(),
        a.bound_shown(&matrix),
        a.iterations,
        a.std_iterations
    );
    say!(
        "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} verdict",
        "scenario / arch / mutation",
        "expected",
        "loom",
        "shuttle-random",
        "shuttle-pct",
        "std"
    );
    let start = Instant::now();
    let mut bad = 0;
    let mut evaluated = Vec::new();
    for entry in &matrix {
        let ev = expect::evaluate(entry, &a.engines(entry))?;
        let expected = entry
            .invariant()
            .map_or("clean".to_string(), |i| i.name().to_string());
        let cells: Vec<String> = ev.outcomes.iter().map(|o| cell(entry, o)).collect();
        let verdict = match &ev.verdict {
            Ok(()) => "ok".to_string(),
            Err(why) => {
                bad += 1;
                format!("MISMATCH: {why}")
            }
        };
        say!(
            "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} {}",
            entry.label(),
            expected,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            verdict
        );
        evaluated.push((ev.entry, ev.outcomes));
    }
    say!(
        "{} entries, {} mismatches, {:.1} s",
        matrix.len(),
        bad,
        start.elapsed().as_secs_f64()
    );
    say!("{}", zoo::campaign_summary(&evaluated));
    say!(
        "rayon stress, latest preset, {:.0} s (report in gupcheck-stress/):",
        a.stress.as_secs_f64()
    );
    if workload::stress(&StressArgs::latest(a.stress, a.seed))? != ExitCode::SUCCESS {
        bad += 1;
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
