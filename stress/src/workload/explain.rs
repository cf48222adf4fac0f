//! What a stress run does with a violation: an epoch is a scenario, so it is
//! handed to shuttle PCT, its op lists shrunk (delta debugging, every
//! candidate a PCT search); what PCT cannot reproduce goes to loom, which
//! also sees weak-memory reorderings. The result is a deterministic artifact,
//! or an explicit "not reproduced under sequential consistency".

use super::gen::Failed;
use super::StressArgs;
use gupcheck_model::harness::artifact::Artifact;
use gupcheck_model::harness::engine::{run, run_loom_deepening};
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::preset::PresetId;
use gupcheck_model::{Arch, Engine, Invariant, Mutation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Explanation {
    /// shuttle PCT found the same invariant on the shrunk op lists; the
    /// artifact holds its schedule. The artifact comes from a search, not a
    /// replay of the real-thread run.
    Reproduced {
        engine: String,
        ops_before: usize,
        ops_after: usize,
        searches: usize,
        artifact: String,
        replays: bool,
    },
    /// shuttle PCT did not reproduce it; loom (weak memory, every
    /// interleaving within the bound) did, on the epoch's ops as they ran. A
    /// search as well: the artifact replays loom's failing iteration.
    ReproducedByLoom {
        engine: String,
        pct_searches: usize,
        interleavings: u64,
        artifact: String,
        replays: bool,
    },
    /// Real threads found it, shuttle (sequentially consistent) did not, nor
    /// loom where it ran.
    NotReproducedUnderSequentialConsistency { engine: String, why: String },
}

impl Explanation {
    /// What the search made of the violation, in one line.
    pub(super) fn line(&self) -> String {
        match self {
            Explanation::Reproduced {
                artifact,
                ops_before,
                ops_after,
                ..
            } => format!(
                "stress: shuttle PCT reproduces it on {ops_after} of {ops_before} ops (a search, not a replay of the real run): gupcheck replay {artifact}"
            ),
            Explanation::ReproducedByLoom {
                engine, artifact, ..
            } => format!(
                "stress: shuttle PCT does not reproduce it, {engine} does (a search, not a replay of the real run): gupcheck replay {artifact}"
            ),
            Explanation::NotReproducedUnderSequentialConsistency { why, .. } => {
                format!("stress: not reproduced under sequential consistency: {why}")
            }
        }
    }
}

/// After PCT: loom, which also sees weak-memory reorderings, on the epoch's
/// ops unshrunk (each loom search costs too much to shrink with), at bound 1
/// then 2 within `--loom-budget`; only with four threads or fewer.
fn explain_by_loom(
    a: &StressArgs,
    sc: &Scenario,
    cfg: &gupcheck_model::WorldConfig,
    preset: PresetId,
    arch: Arch,
    muts: &[Mutation],
    inv: Invariant,
    pct_why: String,
) -> Result<Explanation, String> {
    let not = |why: String| {
        Ok(Explanation::NotReproducedUnderSequentialConsistency {
            engine: format!("shuttle-pct (depth 3, {} executions)", a.pct_budget),
            why,
        })
    };
    if sc.threads.len() > 4 {
        return not(format!(
            "{pct_why}; loom was not run: {} threads (it runs four or fewer)",
            sc.threads.len()
        ));
    }
    let d = match run_loom_deepening(sc, cfg, 2, a.loom_budget) {
        Ok(d) => d,
        Err((e, bound)) => return not(format!("{pct_why}; loom stopped at bound {bound}: {e}")),
    };
    let shown = d.bound.map_or("unbounded".into(), |b| b.to_string());
    match d.outcome.failure {
        Some(f) if f.violation.invariant == inv => {
            let mut art = Artifact::new(sc, preset, arch, muts, &d.outcome.ran, f);
            art.tolerate = cfg.tolerate.clone();
            let (path, replays) = art.replay_and_write(&a.out)?;
            Ok(Explanation::ReproducedByLoom {
                engine: format!("loom (bound {shown})"),
                pct_searches: 1,
                interleavings: d.interleavings,
                artifact: path.display().to_string(),
                replays,
            })
        }
        other => not(format!(
            "{pct_why}; nor did loom in {} interleavings up to bound {shown} within {:.0} s{}",
            d.interleavings,
            a.loom_budget.as_secs_f64(),
            other.map_or(String::new(), |f| format!(
                " (it broke {} instead: {})",
                f.violation.invariant, f.violation.detail
            ))
        )),
    }
}

/// Whether shuttle PCT breaks `inv` on `sc` within the budget.
fn pct(
    sc: &Scenario,
    cfg: &gupcheck_model::WorldConfig,
    budget: u64,
    seed: u64,
    inv: Invariant,
) -> Result<Option<gupcheck_model::harness::engine::Failure>, String> {
    let engine = Engine::ShuttlePct {
        iterations: budget as usize,
        depth: 3,
        seed,
    };
    let o = run(sc, cfg, &engine)?;
    Ok(o.failure.filter(|f| f.violation.invariant == inv))
}

/// Hands the failing epoch to shuttle PCT, shrinking its op lists first.
pub(super) fn explain(
    a: &StressArgs,
    failed: &Failed,
    preset: PresetId,
    arch: Arch,
    muts: &[Mutation],
    inv: Invariant,
) -> Result<Explanation, String> {
    let mut sc = failed.sc.clone();
    let mut cfg = sc.config_for(preset, arch, muts);
    cfg.tolerate = failed.tolerate.clone();
    let engine_name = format!(
        "shuttle-pct (depth 3, {} executions per search)",
        a.pct_budget
    );
    let ops_before: usize = sc.threads.iter().map(Vec::len).sum();
    let mut searches = 1;
    let Some(mut failure) = pct(&sc, &cfg, a.pct_budget, a.seed, inv)? else {
        let pct_why = format!(
            "{} shuttle PCT executions of the epoch's {ops_before} ops never broke {inv}",
            a.pct_budget
        );
        return explain_by_loom(a, &sc, &cfg, preset, arch, muts, inv, pct_why);
    };
    // Delta debugging over each thread's ops: drop chunks, halving the chunk
    // size, keeping any candidate PCT still breaks the same invariant with.
    const MAX_SEARCHES: usize = 60;
    for t in 0..sc.threads.len() {
        let mut chunk = sc.threads[t].len().div_ceil(2).max(1);
        while chunk >= 1 && searches < MAX_SEARCHES {
            let mut i = 0;
            while i < sc.threads[t].len() && searches < MAX_SEARCHES {
                let mut cand = sc.clone();
                let end = (i + chunk).min(cand.threads[t].len());
                cand.threads[t].drain(i..end);
                searches += 1;
                match pct(&cand, &cfg, a.pct_budget, a.seed, inv)? {
                    Some(f) => {
                        sc = cand;
                        failure = f;
                    }
                    None => i += chunk,
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    let ops_after: usize = sc.threads.iter().map(Vec::len).sum();
    let engine = Engine::ShuttlePct {
        iterations: a.pct_budget as usize,
        depth: 3,
        seed: a.seed,
    };
    let mut art = Artifact::new(&sc, preset, arch, muts, &engine, failure);
    art.tolerate = cfg.tolerate.clone();
    let (path, replays) = art.replay_and_write(&a.out)?;
    Ok(Explanation::Reproduced {
        engine: engine_name,
        ops_before,
        ops_after,
        searches,
        artifact: path.display().to_string(),
        replays,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failed(name: &str) -> Failed {
        Failed {
            sc: gupcheck_model::harness::scenario::by_name(name).unwrap(),
            tolerate: gupcheck_model::harness::fuzzing::KNOWN_OPEN.to_vec(),
        }
    }

    fn args(loom_budget: u64, name: &str) -> StressArgs {
        let mut a = StressArgs::latest(Duration::from_secs(1), 1, None);
        a.pct_budget = 300;
        a.loom_budget = Duration::from_secs(loom_budget);
        a.out =
            std::env::temp_dir().join(format!("gupcheck-explain-{name}-{}", std::process::id()));
        a
    }

    /// A missing barrier: PCT (sequentially consistent) cannot reproduce it,
    /// loom can, and its artifact replays.
    #[test]
    fn what_pct_cannot_reproduce_goes_to_loom() {
        let sc = failed("munmap_vs_lockless_walker");
        let muts = [Mutation::parse("walker_registration_no_barrier").unwrap()];
        let a = args(60, "loom");
        let e = explain(
            &a,
            &sc,
            PresetId::Latest,
            Arch::Rcu,
            &muts,
            Invariant::NoUseAfterFree,
        )
        .unwrap();
        let Explanation::ReproducedByLoom {
            artifact, replays, ..
        } = e
        else {
            panic!("expected loom to reproduce it");
        };
        assert!(replays);
        let art = Artifact::load(std::path::Path::new(&artifact)).unwrap();
        assert_eq!(art.failure.violation.invariant, Invariant::NoUseAfterFree);
        assert!(art.replay().unwrap().1, "the loom artifact replays");
        let _ = std::fs::remove_dir_all(&a.out);
    }

    #[test]
    fn what_neither_reproduces_is_said_so() {
        let sc = failed("munmap_vs_lockless_walker");
        let a = args(2, "neither");
        let e = explain(
            &a,
            &sc,
            PresetId::Latest,
            Arch::Rcu,
            &[],
            Invariant::NoUseAfterFree,
        )
        .unwrap();
        let Explanation::NotReproducedUnderSequentialConsistency { why, .. } = e else {
            panic!("the clean protocol reproduced a violation");
        };
        assert!(why.contains("nor did loom"), "{why}");
    }
}
