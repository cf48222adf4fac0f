//! `gupcheck engines`: engine speeds, and for every `found` matrix entry the
//! median executions-to-detect over seeds for shuttle random and PCT, beside
//! PCT's guarantee.

use crate::detect;

use crate::detect::{Limit, OnScenario, Verdict};
use crate::ui::say;
use gupcheck_model::harness::expect;
use gupcheck_model::harness::scenario;
use gupcheck_model::{Arch, Engine};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct EnginesArgs {
    /// Seeds per entry and scheduler.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
    /// Executions allowed per seed before giving up.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    budget: u64,
}

pub fn run(a: &EnginesArgs) -> Result<ExitCode, String> {
    speeds()?;
    say!("");
    detection(a.seeds, a.budget as usize)?;
    Ok(ExitCode::SUCCESS)
}

/// Executions per second on a clean scenario, every execution to its end.
fn speeds() -> Result<(), String> {
    let sc = scenario::by_name("gup_fast_vs_munmap")?;
    let cfg = sc.config(Arch::Rcu, &[]);
    say!(
        "engine speed on gup_fast_vs_munmap (latest, rcu, clean: every execution runs to the end)"
    );
    for (name, e) in [
        (
            "shuttle random",
            Engine::ShuttleRandom {
                iterations: 20_000,
                seed: 1,
            },
        ),
        (
            "shuttle PCT d=3",
            Engine::ShuttlePct {
                iterations: 20_000,
                depth: 3,
                seed: 1,
            },
        ),
        (
            "loom, bound 3",
            Engine::Loom {
                preemption_bound: Some(3),
            },
        ),
    ] {
        let t = Instant::now();
        let o = gupcheck_model::run(&sc, &cfg, &e)?;
        let secs = t.elapsed().as_secs_f64();
        say!(
            "  {:<18} {:>8} executions in {:>6.2} s = {:>9.0} /s",
            name,
            o.iterations,
            secs,
            o.iterations as f64 / secs
        );
    }
    Ok(())
}

/// The median of what was seen; `None` if nothing was.
fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn detection(seeds: u64, budget: usize) -> Result<(), String> {
    say!("executions to detect (median over {seeds} seeds; '-' = not found within {budget})");
    say!(
        "  {:<62} {:>8} {:>8} {:>4} {:>6} {:>12}",
        "scenario / preset / arch / mutation",
        "random",
        "PCT d=3",
        "n",
        "k",
        "PCT bound"
    );
    for entry in expect::matrix()
        .into_iter()
        .filter(|e| e.invariant().is_some())
    {
        if detect::ordering_only(&entry) {
            say!("  {:<62} {:>8} {:>8}", entry.label(), "loom", "only");
            continue;
        }
        let schedulers = [OnScenario::ShuttleRandom, OnScenario::ShuttlePct];
        let mut found = [Vec::new(), Vec::new()];
        let mut k_seen = Vec::new();
        for seed in 0..seeds {
            for (i, &on) in schedulers.iter().enumerate() {
                let p = detect::on_scenario(&entry, on, Limit::Executions(budget), seed);
                found[i].push(match p.verdict {
                    Verdict::Found { runs, .. } => runs,
                    Verdict::Error { message } => return Err(message),
                    _ => None,
                });
                k_seen.extend(p.decisions.map(|k| k as u64));
            }
        }
        let show =
            |v: &[Option<u64>]| detect::median_with_misses(v).map_or("-".into(), |m| m.to_string());
        let n = scenario::by_name(&entry.scenario)?.threads.len() as u64 + 1;
        let k = median(k_seen).unwrap_or(0);
        let bound = if k > 0 {
            format!("1/{}", n * k * k)
        } else {
            "-".into()
        };
        say!(
            "  {:<62} {:>8} {:>8} {:>4} {:>6} {:>12}",
            entry.label(),
            show(&found[0]),
            show(&found[1]),
            n,
            k,
            bound
        );
    }
    Ok(())
}
