//! `gupcheck campaign`, the default command: every expectation-matrix entry
//! under loom, shuttle (random and PCT) and real threads, judged against the
//! matrix, then a rayon stress run of the latest preset. `--shard K/N` runs a
//! part of it and `--report` writes what `gupcheck merge` joins.

use crate::shard;

use crate::shard::{Header, Shard};
use crate::ui::{parse_duration, say};
use crate::workload;
use crate::workload::StressArgs;
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::{Entry, Expect};
use gupcheck_model::{Engine, Outcome};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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
    /// Only entries whose label ("scenario / preset / arch / mutation")
    /// contains this; repeat for several.
    #[arg(long)]
    only: Vec<String>,
    /// Runs part K of N (1-based): the selected entries whose index is K-1
    /// modulo N, and the stress run from a seed of its own.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// Writes every entry run, with its outcome per engine and its verdict,
    /// and the run's parameters as JSON (for `gupcheck merge`).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

impl Default for CampaignArgs {
    fn default() -> Self {
        CampaignArgs {
            bound: None,
            iterations: 5_000,
            seed: 1,
            std_iterations: 200,
            stress: Duration::from_secs(15),
            only: Vec::new(),
            shard: None,
            report: None,
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

    fn params(&self, matrix: &[Entry]) -> Params {
        Params {
            bound: self.bound.map_or_else(
                || {
                    let bounds = matrix.iter().map(Entry::loom_bound);
                    let (lo, hi) = (bounds.clone().min(), bounds.max());
                    match (lo, hi) {
                        (Some(lo), Some(hi)) if lo < hi => format!("per entry ({lo}-{hi})"),
                        (Some(b), _) => format!("per entry ({b})"),
                        _ => "per entry".into(),
                    }
                },
                |b| b.to_string(),
            ),
            iterations: self.iterations,
            seed: self.seed,
            std_iterations: self.std_iterations,
            stress_secs: self.stress.as_secs_f64(),
            only: self.only.clone(),
        }
    }
}

/// What shards must share to be merged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// loom's bound: "2", or "per entry (1-2)".
    bound: String,
    iterations: u64,
    seed: u64,
    std_iterations: usize,
    stress_secs: f64,
    only: Vec<String>,
}

/// A campaign's JSON report (`--report`).
#[derive(Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    /// Entries `--only` selects, before sharding.
    pub selected: usize,
    pub params: Params,
    pub entries: Vec<EntryRun>,
    /// The closing stress run (one a shard, as many as shards once merged).
    pub stress: Vec<StressRun>,
    /// The entries' time (a merge adds the shards').
    pub seconds: f64,
}

pub const KIND: &str = "campaign";

/// One matrix entry under the campaign's engines.
#[derive(Serialize, Deserialize)]
pub struct EntryRun {
    pub label: String,
    /// "clean" or the invariant the entry must break, with the class of a
    /// known-open, known-incomplete or open-upstream entry in parentheses.
    pub expected: String,
    /// The engines the matrix says miss it (their cells show the race window).
    pub missed_by: Vec<String>,
    pub outcomes: Vec<EngineOutcome>,
    /// Why the outcomes differ from the matrix; `None`: they agree.
    pub mismatch: Option<String>,
    /// The engines that broke one of the entry's invariants (none if clean).
    pub detected_by: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct EngineOutcome {
    pub engine: String,
    pub iterations: u64,
    pub window_hits: u64,
    pub failure: Option<Failure>,
}

#[derive(Serialize, Deserialize)]
pub struct Failure {
    pub invariant: String,
    pub iteration: u64,
    pub detail: String,
}

/// The closing stress run.
#[derive(Serialize, Deserialize)]
pub struct StressRun {
    pub shard: Option<Shard>,
    /// The seed its workers drew from.
    pub seed: u64,
    /// Its one-line summary.
    pub summary: String,
    /// It broke an invariant outside the known-open ones.
    pub failed: bool,
}

impl EntryRun {
    fn of(entry: &Entry, outcomes: &[Outcome], verdict: &Result<(), String>) -> EntryRun {
        let stop = entry.stop_at();
        let detected_by = outcomes
            .iter()
            .filter(|o| {
                entry.expect != Expect::Clean
                    && o.failure
                        .as_ref()
                        .is_some_and(|f| stop.contains(&f.violation.invariant))
            })
            .map(|o| o.engine.clone())
            .collect();
        EntryRun {
            label: entry.label(),
            expected: match entry.invariant() {
                None => "clean".to_string(),
                // The kernel's own state: the class says which.
                Some(i) if entry.expect.is_kernel_state() => {
                    format!("{} ({})", i.name(), entry.expect.class())
                }
                Some(i) => i.name().to_string(),
            },
            missed_by: entry.missed_by.clone(),
            outcomes: outcomes
                .iter()
                .map(|o| EngineOutcome {
                    engine: o.engine.clone(),
                    iterations: o.iterations,
                    window_hits: o.window_hits,
                    failure: o.failure.as_ref().map(|f| Failure {
                        invariant: f.violation.invariant.name().into(),
                        iteration: f.iteration,
                        detail: f.violation.detail.clone(),
                    }),
                })
                .collect(),
            mismatch: verdict.clone().err(),
            detected_by,
        }
    }

    /// One outcome cell: the invariant broken and at which execution, or how
    /// many ran clean (and reached the race window, where the matrix names an
    /// engine that must miss).
    fn cell(&self, o: &EngineOutcome) -> String {
        match &o.failure {
            Some(f) => format!("{} @{}", f.invariant, f.iteration),
            None if !self.missed_by.is_empty() && o.window_hits > 0 => {
                format!("clean ({}, {} in window)", o.iterations, o.window_hits)
            }
            None => format!("clean ({})", o.iterations),
        }
    }

    fn line(&self) -> String {
        let cells: Vec<String> = self.outcomes.iter().map(|o| self.cell(o)).collect();
        let verdict = match &self.mismatch {
            None => "ok".to_string(),
            Some(why) => format!("MISMATCH: {why}"),
        };
        format!(
            "{:<62} {:<30} {:<22} {:<22} {:<22} {:<22} {}",
            self.label, self.expected, cells[0], cells[1], cells[2], cells[3], verdict
        )
    }
}

/// The header: what runs, and the table's column names.
fn header(ran: usize, selected: usize, shard: Option<Shard>, p: &Params) -> String {
    let entries = match shard {
        Some(s) => format!("{ran} of {selected} matrix entries (shard {s})"),
        None => format!("{selected} matrix entries"),
    };
    format!(
        "gupcheck default campaign: {entries} x {ENGINES} engines (loom bound {}, shuttle {} executions, {} real-thread runs)\n{:<62} {:<30} {:<22} {:<22} {:<22} {:<22} verdict",
        p.bound,
        p.iterations,
        p.std_iterations,
        "scenario / arch / mutation",
        "expected",
        "loom",
        "shuttle-random",
        "shuttle-pct",
        "std"
    )
}

fn footer(entries: &[EntryRun], seconds: f64) -> String {
    let bad = entries.iter().filter(|e| e.mismatch.is_some()).count();
    format!(
        "{} entries, {bad} mismatches, {seconds:.1} s\n{}",
        entries.len(),
        summary(entries)
    )
}

/// The zoo summary, from the outcomes the campaign already has: per engine,
/// how many entries that must be found (found, known-open, known-incomplete,
/// open-upstream) it detects, and
/// the entries only one engine detects.
fn summary(entries: &[EntryRun]) -> String {
    let rows: Vec<&EntryRun> = entries.iter().filter(|e| e.expected != "clean").collect();
    let Some(first) = entries.first() else {
        return String::new();
    };
    let engines: Vec<&str> = first.outcomes.iter().map(|o| o.engine.as_str()).collect();
    let mut s = format!(
        "zoo summary: {} found / known-open / known-incomplete / open-upstream entries\n",
        rows.len()
    );
    for e in &engines {
        let n = rows
            .iter()
            .filter(|r| r.detected_by.iter().any(|d| d == e))
            .count();
        s += &format!("  {e:<15} detects {n:>3}\n");
    }
    for e in &engines {
        let only: Vec<&str> = rows
            .iter()
            .filter(|r| r.detected_by == [*e])
            .map(|r| r.label.as_str())
            .collect();
        if !only.is_empty() {
            s += &format!(
                "  only {e} ({}):\n    {}\n",
                only.len(),
                only.join("\n    ")
            );
        }
    }
    let none = rows.iter().filter(|r| r.detected_by.is_empty()).count();
    s += &format!(
        "  by none of these engines: {none}\n  the full zoo, with fuzz and stress and times to detect: gupcheck zoo\n"
    );
    s
}

fn failed(r: &Report) -> bool {
    r.stress.iter().any(|s| s.failed) || r.entries.iter().any(|e| e.mismatch.is_some())
}

pub fn run(a: &CampaignArgs) -> Result<ExitCode, String> {
    let matrix = expect::matrix();
    let selected = shard::matching(&matrix, &a.only);
    if selected.is_empty() {
        return Err("no matrix entry matches --only".into());
    }
    if let Some(path) = &a.report {
        shard::check_report_path(path)?;
    }
    let n_selected = selected.len();
    let entries = Shard::select(a.shard, selected);
    let params = a.params(&matrix);
    say!("{}", header(entries.len(), n_selected, a.shard, &params));
    let start = Instant::now();
    let mut runs = Vec::new();
    for entry in &entries {
        let ev = expect::evaluate(entry, &a.engines(entry))?;
        let run = EntryRun::of(entry, &ev.outcomes, &ev.verdict);
        say!("{}", run.line());
        runs.push(run);
    }
    let seconds = start.elapsed().as_secs_f64();
    say!("{}", footer(&runs, seconds));
    say!(
        "rayon stress, latest preset, {:.0} s (report in gupcheck-stress/):",
        a.stress.as_secs_f64()
    );
    let stress = workload::run(&StressArgs::latest(a.stress, a.seed, a.shard))?;
    let report = Report {
        header: Header::new(KIND, a.shard),
        selected: n_selected,
        params,
        entries: runs,
        stress: vec![StressRun {
            shard: a.shard,
            seed: stress.shard_seed,
            summary: stress.summary(),
            failed: stress.violation.is_some(),
        }],
        seconds,
    };
    if let Some(path) = &a.report {
        let p = shard::write_report(path, &report)?;
        eprintln!("report: {}", p.display());
    }
    Ok(if failed(&report) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Shards' reports, merged (their entries back in the matrix's order): the
/// table an unsharded campaign prints, each shard's stress run, and whether
/// the campaign failed.
pub fn show_merged(r: &Report) -> bool {
    say!("{}", header(r.entries.len(), r.selected, None, &r.params));
    for e in &r.entries {
        say!("{}", e.line());
    }
    say!("{}", footer(&r.entries, r.seconds));
    say!(
        "rayon stress, latest preset, {:.0} s a shard:",
        r.params.stress_secs
    );
    for s in &r.stress {
        let which = s
            .shard
            .map_or("unsharded".to_string(), |s| format!("shard {s}"));
        let verdict = if s.failed { "VIOLATION" } else { "ok" };
        say!("  {which}, seed {}: {verdict}: {}", s.seed, s.summary);
    }
    failed(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary counts what each engine detected and names the entries
    /// only one engine detects.
    #[test]
    fn the_summary_says_who_detects_what() {
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
        let runs: Vec<EntryRun> = [
            "munmap_vs_lockless_walker / latest / rcu / walker_registration_no_barrier",
            "gup_fast_vs_munmap / latest / rcu / put_page_on_pin",
            "gup_fast_vs_munmap / latest / rcu / -",
        ]
        .into_iter()
        .map(|l| {
            let e = pick(l);
            let ev = expect::evaluate(&e, &engines).unwrap();
            EntryRun::of(&e, &ev.outcomes, &ev.verdict)
        })
        .collect();
        let s = summary(&runs);
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
