//! Shrinking a failing shuttle schedule towards the fewest context switches.

use super::*;
/// A minimised failure and what it took.
#[derive(Clone, Debug)]
pub struct Minimised {
    pub failure: Failure,
    pub switches_before: usize,
    pub switches_after: usize,
    pub replays: usize,
}

/// Shrinks a failing shuttle schedule towards the fewest context switches that
/// still break the same invariant (neither shuttle nor loom minimises). Greedy:
/// for each switch, first try ending the schedule there (the fair fallback then
/// keeps the running task), then try not switching at that step; keep any
/// candidate that fails the same way with fewer switches, and start over. At
/// most `budget` replays.
pub fn minimise(
    sc: &Scenario,
    cfg: &WorldConfig,
    failure: &Failure,
    budget: usize,
) -> Result<Minimised, String> {
    let Some(start) = failure.schedule.clone() else {
        return Err("only shuttle failures carry a schedule to minimise".into());
    };
    let inv = failure.violation.invariant;
    let before = switches(&start);
    let mut best = failure.clone();
    let mut best_switches = before;
    let mut replays = 0;
    'outer: loop {
        let s = best
            .schedule
            .clone()
            .expect("replays record their schedule");
        for j in 1..s.tasks.len() {
            if s.tasks[j] == s.tasks[j - 1] {
                continue;
            }
            let mut truncated = s.clone();
            truncated.tasks.truncate(j);
            let mut unswitched = s.clone();
            unswitched.tasks[j] = s.tasks[j - 1];
            for cand in [truncated, unswitched] {
                if replays >= budget {
                    break 'outer;
                }
                replays += 1;
                let o = replay_shuttle(sc, cfg, &cand)?;
                if let Some(f) = o.failure {
                    let n = f.schedule.as_ref().map_or(usize::MAX, switches);
                    let same = f.violation.invariant == inv
                        && f.violation.thread == failure.violation.thread
                        && f.violation.step == failure.violation.step;
                    if same && n < best_switches {
                        best = Failure {
                            iteration: failure.iteration,
                            ..f
                        };
                        best_switches = n;
                        continue 'outer;
                    }
                }
            }
        }
        break;
    }
    Ok(Minimised {
        failure: best,
        switches_before: before,
        switches_after: best_switches,
        replays,
    })
}
