//! Time to detect: how long, in seconds and in executions, an engine takes to
//! break a matrix entry's invariants. `engines` (shuttle, executions over
//! seeds), `fuzz-bench` (libFuzzer, seconds over seeds) and the zoo (every
//! engine, one seed, a time budget) all measure with these.
//!
//! loom, shuttle, real threads (`std`) and stress run the entry's own
//! scenario (stress replays its threads in epochs on a pool). The fuzzer
//! cannot: it draws op sequences over the random world
//! (`fuzzing::random_world`), so it runs the entry's protocol (preset, arch,
//! mutation), stopping only at the entry's invariants.

use crate::ui::secs_short;
use crate::workload::shapes::{cpu_order, CpuOrder};
use crate::workload::{Counts, Kind, Spec, Workload};
use gupcheck_model::harness::engine::{run, run_for, run_loom_deepening_from, Outcome};
use gupcheck_model::harness::expect::Entry;
use gupcheck_model::harness::fuzzing::{check_threads_fixed, Fixed, Target};
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::{Arch, Engine, Invariant, Mutation, PresetId, WorldConfig};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one engine made of one entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// The verdict in a table cell: the time to detect, or why not.
    pub fn short(&self) -> String {
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

/// The engines that run an entry's own scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnScenario {
    Loom,
    ShuttleRandom,
    ShuttlePct,
    Std,
    /// The stress engine: the scenario's threads replayed epoch after epoch.
    Stress,
}

/// How long a run may go on.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// This many executions (loom, which counts none, runs unbounded in time).
    Executions(usize),
    Time(Duration),
}

/// loom's preemption bound grows to this from the entry's own bound while
/// the budget lasts.
pub const MAX_LOOM_BOUND: usize = 3;

/// What shuttle cannot see, being sequentially consistent.
pub const SC_WHY: &str =
    "needs a weak-memory reordering, and shuttle runs sequentially consistent (loom's job)";

/// One engine's attempt at one entry.
pub struct Probe {
    /// How the engine ran (loom's bounds, the scheduler).
    pub how: String,
    pub verdict: Verdict,
    /// The scheduling decisions of the failing schedule (shuttle).
    pub decisions: Option<usize>,
}

impl Probe {
    fn new(how: &str, verdict: Verdict) -> Probe {
        Probe {
            how: how.into(),
            verdict,
            decisions: None,
        }
    }
}

/// An ordering-only bug: the matrix says PCT (sequentially consistent) must
/// miss it.
pub fn ordering_only(e: &Entry) -> bool {
    e.missed_by.iter().any(|m| m == "shuttle-pct")
}

/// loom's own limits (a scenario too big for it), as opposed to a model bug.
fn loom_limit(msg: &str) -> bool {
    msg.contains("maximum number of branches") || msg.contains("max_threads")
}

/// What a run of an entry's scenario found: the entry's invariants (or one
/// the same bug may break first), another one, or nothing; nothing, with
/// `exhausted` saying why, means the engine cannot reach it.
fn judge(
    stop: &[Invariant],
    t0: Instant,
    o: &Outcome,
    runs: u64,
    note: String,
    exhausted: Option<String>,
) -> Verdict {
    let secs = t0.elapsed().as_secs_f64();
    let runs = Some(runs);
    match &o.failure {
        Some(f) if stop.contains(&f.violation.invariant) => Verdict::Found {
            invariant: f.violation.invariant.name().into(),
            secs,
            runs,
        },
        Some(f) => Verdict::Other {
            invariant: f.violation.invariant.name().into(),
            detail: f.violation.detail.clone(),
        },
        None => match exhausted {
            Some(why) => Verdict::CannotReach { secs, runs, why },
            None => Verdict::NotFound { secs, runs, note },
        },
    }
}

/// Runs entry `e`'s scenario under `engine` within `limit`.
pub fn on_scenario(e: &Entry, engine: OnScenario, limit: Limit, seed: u64) -> Probe {
    let (sc, mut cfg) = match e.config() {
        Ok(x) => x,
        Err(message) => return Probe::new("", Verdict::Error { message }),
    };
    cfg.trace = false;
    let n = match limit {
        Limit::Executions(n) => n,
        Limit::Time(_) => 1 << 40,
    };
    let (eng, how) = match engine {
        OnScenario::Loom => return loom(e, &sc, &cfg, limit),
        OnScenario::Stress => return stress(e, sc, &cfg, limit, seed),
        OnScenario::ShuttleRandom => (
            Engine::ShuttleRandom {
                iterations: n,
                seed,
            },
            "random schedules",
        ),
        OnScenario::ShuttlePct => (
            Engine::ShuttlePct {
                iterations: n,
                depth: 3,
                seed,
            },
            "PCT depth 3",
        ),
        OnScenario::Std => (
            Engine::Std { iterations: n },
            "the scenario on real threads",
        ),
    };
    let t0 = Instant::now();
    let ran = match limit {
        Limit::Executions(_) => run(&sc, &cfg, &eng),
        Limit::Time(d) => run_for(&sc, &cfg, &eng, d),
    };
    let o = match ran {
        Ok(o) => o,
        Err(message) => return Probe::new(how, Verdict::Error { message }),
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
    let verdict = judge(&e.stop_at(), t0, &o, o.iterations, note, exhausted);
    let decisions = match verdict {
        Verdict::Found { .. } => o.failure.and_then(|f| f.schedule).map(|s| s.tasks.len()),
        _ => None,
    };
    Probe {
        how: how.into(),
        verdict,
        decisions,
    }
}

/// loom from the entry's own bound, deepening while the budget lasts (a
/// `Limit::Executions` runs it unbounded in time).
fn loom(e: &Entry, sc: &Scenario, cfg: &WorldConfig, limit: Limit) -> Probe {
    let t0 = Instant::now();
    let budget = match limit {
        Limit::Time(d) => d,
        Limit::Executions(_) => Duration::MAX,
    };
    let d = match run_loom_deepening_from(sc, cfg, e.loom_bound(), MAX_LOOM_BOUND, budget) {
        Ok(d) => d,
        Err((msg, bound)) if loom_limit(&msg) => {
            let why = format!("beyond loom at bound {bound}: {msg}");
            let secs = t0.elapsed().as_secs_f64();
            let runs = None;
            return Probe::new(
                &format!("bound {bound}"),
                Verdict::CannotReach { secs, runs, why },
            );
        }
        Err((message, bound)) => {
            return Probe::new(&format!("bound {bound}"), Verdict::Error { message })
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
    let verdict = judge(
        &e.stop_at(),
        t0,
        &d.outcome,
        d.interleavings,
        note,
        exhausted,
    );
    Probe::new(&format!("bounds up to {shown}"), verdict)
}

/// A protocol the fuzzer and stress run over the random world: an entry's
/// preset, arch and mutation, and the invariants that count as finding it.
#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    pub preset: PresetId,
    pub arch: Arch,
    pub mutation: Option<Mutation>,
    pub stop_at: Vec<Invariant>,
}

impl Protocol {
    pub fn of(e: &Entry) -> Protocol {
        let mut stop_at = e.stop_at();
        stop_at.sort_by_key(|i| i.name());
        Protocol {
            preset: e.preset,
            arch: e.arch,
            mutation: e.mutation,
            stop_at,
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{} / {} / {}",
            self.preset.name(),
            self.arch.name(),
            self.mutation.map_or("-", |m| m.name())
        )
    }
}

/// The presets fuzz target on uniform random inputs, in process, for `budget`.
pub fn random_bytes(p: &Protocol, budget: Duration, seed: u64) -> Verdict {
    let t0 = Instant::now();
    let fixed = Fixed {
        preset: Some(p.preset),
        arch: Some(p.arch),
        muts: Some(p.mutation.into_iter().collect()),
        expect: Some(p.stop_at.clone()),
    };
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x2004_f00d);
    let mut buf = Vec::new();
    let mut runs = 0u64;
    loop {
        if t0.elapsed() >= budget {
            return Verdict::NotFound {
                secs: t0.elapsed().as_secs_f64(),
                runs: Some(runs),
                note: format!("{runs} random inputs"),
            };
        }
        let len = rng.gen_range(16..=512);
        buf.resize(len, 0);
        rng.fill(&mut buf[..]);
        runs += 1;
        // The target tolerates every invariant but the protocol's: what it
        // reports is one of those.
        if let Some(f) = check_threads_fixed(Target::Presets, &fixed, &buf) {
            return Verdict::Found {
                invariant: f.invariant.name().into(),
                secs: t0.elapsed().as_secs_f64(),
                runs: Some(runs),
            };
        }
    }
}

/// Workers of a stress cell: one copy of a two-thread scenario at a time,
/// or two of a one-thread one.
pub const STRESS_THREADS: usize = 2;

/// The stress engine on entry `e`'s scenario, with its preset, arch and
/// mutation, past its tolerated invariants: the threads replayed epoch after
/// epoch on a pool, each from a start line with a random offset, until one
/// breaks an invariant or `limit` (epochs or time) is reached.
fn stress(e: &Entry, sc: Scenario, cfg: &WorldConfig, limit: Limit, seed: u64) -> Probe {
    let how = format!("{STRESS_THREADS} threads, the scenario's threads in epochs");
    let t0 = Instant::now();
    let spec = Spec {
        threads: STRESS_THREADS,
        kinds: vec![(
            Kind::Shape {
                sc: Box::new(sc.clone()),
                tolerate: cfg.tolerate.clone(),
            },
            1.0,
        )],
        mix: Vec::new(),
        disjoint: None,
        epoch_ops: 0,
        tolerate: Vec::new(),
        seed,
    };
    let mut wl = match Workload::new(cfg.preset, cfg.arch, &cfg.mutations, spec) {
        Ok(wl) => wl,
        Err(message) => return Probe::new(&how, Verdict::Error { message }),
    };
    let mut c = Counts::default();
    let broke = wl.run(&mut c, |c| match limit {
        Limit::Executions(n) => c.epochs < n as u64,
        Limit::Time(d) => t0.elapsed() < d,
    });
    let secs = t0.elapsed().as_secs_f64();
    let runs = Some(c.epochs);
    let verdict = match broke {
        // The matrix's own reason says this CPU cannot get there: the model
        // does, by some other path, and that is what to report.
        Some((_, v)) if matches!(cpu_order(e), CpuOrder::Forbids(_)) => Verdict::Other {
            invariant: v.invariant.name().into(),
            detail: format!(
                "{} (on a CPU that cannot reorder as this entry needs)",
                v.detail
            ),
        },
        Some((_, v)) if e.stop_at().contains(&v.invariant) => Verdict::Found {
            invariant: v.invariant.name().into(),
            secs,
            runs,
        },
        Some((_, v)) => Verdict::Other {
            invariant: v.invariant.name().into(),
            detail: v.detail,
        },
        None => match cpu_order(e) {
            CpuOrder::Forbids(why) => Verdict::CannotReach {
                secs,
                runs,
                why: format!("ordering-only: {why}"),
            },
            order => Verdict::NotFound {
                secs,
                runs,
                note: stress_note(&sc, &c, order),
            },
        },
    };
    Probe::new(&how, verdict)
}

/// What a stress cell's miss amounts to: the epochs, how often the threads
/// ran at the same time, and what the race needs that they did not show.
fn stress_note(sc: &Scenario, c: &Counts, order: CpuOrder) -> String {
    let mut note = format!("{} epochs", c.epochs);
    if c.raced > 0 {
        note += &format!(
            ", the threads overlapping in {:.0}% of {} runs",
            100.0 * c.overlapped as f64 / c.raced as f64,
            c.raced
        );
    }
    if let CpuOrder::Allows(needs) = order {
        note += &format!("; needs {needs}, not seen here");
    }
    if let Some(w) = &sc.window {
        let open = if w.open.is_empty() { "start" } else { &w.open };
        note += &format!(
            "; the race needs '{}' of another thread between thread {}'s '{open}' and '{}'",
            w.racer, w.thread, w.close
        );
    }
    note
}

/// A libFuzzer run of a thread target with the protocol fixed, as the target
/// reads it from the environment (`GUPCHECK_PRESET`, `GUPCHECK_ARCH`,
/// `GUPCHECK_MUTATION`, `GUPCHECK_EXPECT`).
pub struct FuzzRun<'a> {
    /// Names the run in messages and its work directory (unique per run).
    pub label: String,
    pub preset: &'a str,
    pub arch: &'a str,
    pub mutation: Option<&'a str>,
    pub stop_at: &'a [String],
}

/// The binary `cargo fuzz build` made for `target`.
pub fn find_bin(target: &str) -> Result<PathBuf, String> {
    let dir = Path::new("fuzz/target");
    let found = std::fs::read_dir(dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.path().join("release").join(target))
            .find(|p| p.is_file())
    });
    found.ok_or_else(|| {
        format!(
            "no fuzz binary for '{target}' under fuzz/target/*/release (build it: cd fuzz && cargo fuzz build --sanitizer none --no-trace-compares {target}; or pass --bin)"
        )
    })
}

/// One libFuzzer run from the seeds in `seeds_dir`, with libFuzzer seed
/// `seed + 1`, for at most `cap` seconds: the seconds to the finding, or
/// `None` at the cap.
pub fn libfuzzer(
    bin: &Path,
    seeds_dir: &Path,
    run: &FuzzRun,
    seed: u64,
    cap: u64,
    tmp: &Path,
) -> Result<Option<f64>, String> {
    let work = tmp.join(format!("{}-{seed}", run.label.replace([' ', '/'], "")));
    let corpus = work.join("corpus");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg(&corpus)
        .arg(seeds_dir)
        .arg(format!("-seed={}", seed + 1))
        .arg(format!("-max_total_time={cap}"))
        .arg(format!("-artifact_prefix={}/", work.display()))
        .env("GUPCHECK_PRESET", run.preset)
        .env("GUPCHECK_ARCH", run.arch)
        .env("GUPCHECK_MUTATION", run.mutation.unwrap_or("none"))
        .env("GUPCHECK_EXPECT", run.stop_at.join(","))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&work);
    if out.status.success() {
        return Ok(None);
    }
    // The target panics with "<invariant>: <detail>"; anything else is a
    // crash of its own (a model panic, a bad environment).
    let err = String::from_utf8_lossy(&out.stderr);
    if run.stop_at.iter().any(|i| err.contains(&format!("{i}: "))) {
        Ok(Some(secs))
    } else {
        let line = err
            .lines()
            .find(|l| l.contains("panicked") || l.contains("ERROR"))
            .unwrap_or("no message");
        Err(format!(
            "{}: seed {seed}: the target crashed: {line}",
            run.label
        ))
    }
}

/// The median over seeds of the runs that detected, a miss (`None`) counting
/// as slower than any find: defined only if more than half detected.
pub fn median_with_misses<T: Copy + PartialOrd>(runs: &[Option<T>]) -> Option<T> {
    let mut found: Vec<T> = runs.iter().flatten().copied().collect();
    found.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    found.get(runs.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str) -> Entry {
        gupcheck_model::harness::expect::matrix()
            .into_iter()
            .find(|e| e.label() == label)
            .unwrap_or_else(|| panic!("no entry {label}"))
    }

    /// The stress cell runs the entry's own scenario: a split racing a pin
    /// that GUP-fast does not recheck the head of.
    #[test]
    fn the_stress_cell_finds_an_entry_by_its_own_scenario() {
        let e = entry("gup_fast_vs_thp_split / latest / rcu / no_head_recheck");
        let p = on_scenario(&e, OnScenario::Stress, Limit::Executions(20_000), 1);
        let Verdict::Found { invariant, .. } = &p.verdict else {
            panic!("{:?}", p.verdict);
        };
        assert_eq!(invariant, "matched release");
    }

    /// An ordering-only entry the matrix says x86 cannot show is out of
    /// reach there, with the reason; where the CPU can reorder, a miss is
    /// only a miss.
    #[test]
    fn an_ordering_only_miss_says_whether_this_cpu_can_reorder() {
        let e = entry("fault_vs_lockless_walker / latest / rcu / fault_no_wmb");
        let p = on_scenario(&e, OnScenario::Stress, Limit::Executions(20), 1);
        match (cpu_order(&e), p.verdict) {
            (CpuOrder::Forbids(why), Verdict::CannotReach { why: said, .. }) => {
                assert!(said.contains(why), "{said}")
            }
            (CpuOrder::Allows(_), Verdict::NotFound { .. } | Verdict::Found { .. }) => {}
            (order, v) => panic!("{order:?}: {v:?}"),
        }
    }

    #[test]
    fn a_median_needs_more_than_half_the_seeds() {
        assert_eq!(median_with_misses(&[Some(3), None, Some(1)]), Some(3));
        assert_eq!(median_with_misses(&[Some(3), None, None]), None);
        assert_eq!(median_with_misses(&[Some(2.5), Some(1.0)]), Some(2.5));
        assert_eq!(median_with_misses::<u64>(&[]), None);
    }
}
