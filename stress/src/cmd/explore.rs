//! `gupcheck explore`: one scenario under one engine; a violation is
//! minimised, printed as an interleaving and written as an artifact.

use crate::ui::say;
use crate::ProtocolArgs;
use gupcheck_model::harness::artifact::{render_trace, Artifact};
use gupcheck_model::harness::engine::minimise;
use gupcheck_model::harness::scenario;
use gupcheck_model::{Engine, Failure, Invariant};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct ExploreArgs {
    /// Scenario name (see `gupcheck list`).
    scenario: String,
    /// loom | shuttle-random | shuttle-pct | shuttle-dfs | std
    #[arg(long, default_value = "shuttle-pct")]
    engine: String,
    #[command(flatten)]
    protocol: ProtocolArgs,
    /// Count violations of this invariant and search on (a scenario's known-open
    /// outcome), e.g. --tolerate no_lost_write.
    #[arg(long)]
    tolerate: Vec<String>,
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// loom preemption bound (PCT depth for shuttle-pct).
    #[arg(long, default_value_t = 2)]
    bound: usize,
    /// Where a failure's artifact is written.
    #[arg(long, default_value = "gupcheck-artifacts")]
    out: PathBuf,
    /// Report a shuttle failure as found, without shrinking its schedule.
    #[arg(long)]
    no_minimise: bool,
}

impl ExploreArgs {
    fn engine(&self) -> Result<Engine, String> {
        let (n, seed) = (self.iterations as usize, self.seed);
        Ok(match self.engine.as_str() {
            "loom" => Engine::Loom {
                preemption_bound: Some(self.bound),
            },
            "shuttle-random" => Engine::ShuttleRandom {
                iterations: n,
                seed,
            },
            "shuttle-pct" => Engine::ShuttlePct {
                iterations: n,
                depth: self.bound.max(1),
                seed,
            },
            "shuttle-dfs" => Engine::ShuttleDfs {
                max_iterations: Some(n),
            },
            "std" => Engine::Std { iterations: n },
            other => return Err(format!(
                "unknown engine '{other}' (expected loom, shuttle-random, shuttle-pct, shuttle-dfs or std)"
            )),
        })
    }
}

pub fn run(a: &ExploreArgs) -> Result<ExitCode, String> {
    let sc = scenario::by_name(&a.scenario)?;
    let (preset, arch, muts) = a.protocol.resolve()?;
    let engine = a.engine()?;
    let mut cfg = sc.config_for(preset, arch, &muts);
    cfg.tolerate = a
        .tolerate
        .iter()
        .map(|i| Invariant::parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    let t = Instant::now();
    let o = gupcheck_model::run(&sc, &cfg, &engine)?;
    say!(
        "{} / {} / {} / {} under {}: {} execution(s) in {:.2} s",
        o.scenario,
        preset.name(),
        o.arch,
        if o.mutations.is_empty() {
            "-".to_string()
        } else {
            o.mutations.join(",")
        },
        o.engine,
        o.iterations,
        t.elapsed().as_secs_f64()
    );
    if sc.window.is_some() {
        say!(
            "race window reached in {} of {} execution(s)",
            o.window_hits,
            o.iterations
        );
    }
    if !cfg.tolerate.is_empty() {
        say!(
            "{} execution(s) broke only a tolerated invariant",
            o.tolerated
        );
    }
    let Some(f) = o.failure else {
        say!("no violation");
        return Ok(ExitCode::SUCCESS);
    };
    let mut minimised = None;
    let f = if f.schedule.is_some() && !a.no_minimise {
        let m = minimise(&sc, &cfg, &f, 300)?;
        minimised = Some((m.switches_before, m.switches_after));
        let len = |f: &Failure| f.schedule.as_ref().map_or(0, |s| s.tasks.len());
        say!(
            "minimised: {} -> {} context switches, {} -> {} scheduling decisions ({} replays)",
            m.switches_before,
            m.switches_after,
            len(&f),
            len(&m.failure),
            m.replays
        );
        m.failure
    } else {
        f
    };
    say!("VIOLATION at execution {}: {}", f.iteration, f.violation);
    say!("{}", render_trace(&f.trace));
    // The engine exactly as it ran (loom's bound after LOOM_MAX_PREEMPTIONS).
    let mut art = Artifact::new(&sc, preset, arch, &muts, &o.ran, f).tolerating(&cfg.tolerate);
    art.minimised = minimised;
    let path = art.write_atomic(&a.out)?;
    say!("artifact: {}", path.display());
    say!("replay:   {}", Artifact::replay_command(&path));
    Ok(ExitCode::from(1))
}
