//! The loom engine: one run at a preemption bound, and runs that deepen the
//! bound while a budget lasts.

use super::*;
/// What [`run_loom_deepening`] got to.
#[derive(Clone, Debug)]
pub struct Deepened {
    /// The last run (its `ran` names the bound it used).
    pub outcome: Outcome,
    /// The bound of the last run (`None`: unbounded, by LOOM_MAX_PREEMPTIONS).
    pub bound: Option<usize>,
    /// Interleavings over all the runs.
    pub interleavings: u64,
    /// The last run explored its whole tree (it did not run out of time).
    pub exhausted: bool,
}

/// loom at preemption bound 1, 2, ... up to `max_bound` while `budget` lasts,
/// stopping at the first violation: a bug at a low bound is found in a
/// fraction of a higher bound's tree. LOOM_MAX_PREEMPTIONS fixes the bound
/// (one run). `Err` is loom's message and the bound it stopped at.
pub fn run_loom_deepening(
    sc: &Scenario,
    cfg: &WorldConfig,
    max_bound: usize,
    budget: Duration,
) -> Result<Deepened, (String, usize)> {
    run_loom_deepening_from(sc, cfg, 1, max_bound, budget)
}

/// [`run_loom_deepening`] from bound `first` (a matrix entry's own bound,
/// `Entry::loom_bound`) instead of 1.
pub fn run_loom_deepening_from(
    sc: &Scenario,
    cfg: &WorldConfig,
    first: usize,
    max_bound: usize,
    budget: Duration,
) -> Result<Deepened, (String, usize)> {
    let t0 = Instant::now();
    let mut interleavings = 0;
    let mut bound = first.max(1);
    loop {
        let engine = Engine::Loom {
            preemption_bound: Some(bound),
        };
        let left = budget.saturating_sub(t0.elapsed());
        let o = run_for(sc, cfg, &engine, left).map_err(|e| (e, bound))?;
        interleavings += o.iterations;
        let ran = match o.ran {
            Engine::Loom { preemption_bound } => preemption_bound,
            _ => None,
        };
        let out_of_time = t0.elapsed() >= budget;
        if o.failure.is_some() || out_of_time || ran != Some(bound) || bound >= max_bound {
            return Ok(Deepened {
                exhausted: !out_of_time && o.failure.is_none(),
                outcome: o,
                bound: ran,
                interleavings,
            });
        }
        bound += 1;
    }
}

/// The marker loom unwinds with when an execution found a violation.
pub(super) struct ViolationFound;

/// A `LOOM_*` variable as a number, or a one-line error.
pub(super) fn loom_env(name: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(None),
    }
}

/// The preemption bound a loom run will use: LOOM_MAX_PREEMPTIONS wins over the
/// engine's own when `honour_env`.
pub(crate) fn effective_loom_bound(
    bound: Option<usize>,
    honour_env: bool,
) -> Result<Option<usize>, String> {
    let env = loom_env("LOOM_MAX_PREEMPTIONS")?;
    Ok(if honour_env { env.or(bound) } else { bound })
}

pub(super) fn run_loom(
    sc: &Arc<Scenario>,
    cfg: &Arc<WorldConfig>,
    bound: Option<usize>,
    budget: Option<Duration>,
    hits: &Arc<Tally>,
) -> Result<(u64, Option<Failure>), String> {
    let found: Arc<std::sync::Mutex<Option<Failure>>> = Arc::default();
    let iters = Arc::new(AtomicU64::new(0));
    let branches = loom_env("LOOM_MAX_BRANCHES")?.unwrap_or(20_000);
    // loom's Builder::new() parses the LOOM_* variables itself (and panics on a
    // bad one): they were checked above. The bound is the caller's, resolved;
    // limits that would make a replay explore a different tree are off.
    for v in [
        "LOOM_MAX_PREEMPTIONS",
        "LOOM_MAX_PERMUTATIONS",
        "LOOM_MAX_DURATION",
        "LOOM_CHECKPOINT_INTERVAL",
    ] {
        loom_env(v)?;
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = bound;
    b.max_branches = branches;
    b.max_permutations = None;
    b.max_duration = budget;
    // loom looks at the clock only every `checkpoint_interval` iterations
    // (20,000 by default): a budget is checked at every one.
    if budget.is_some() {
        b.checkpoint_interval = 1;
    }
    b.checkpoint_file = None;
    b.expect_explicit_explore = true;
    // loom builds the layout inside each execution, before `explore()`: a world
    // copied in from an image (as shuttle does) explores a different, smaller set
    // of interleavings at the same bound, which the matrix does not accept.
    let (f2, i2, sc2, cfg2, h2) = (
        found.clone(),
        iters.clone(),
        sc.clone(),
        cfg.clone(),
        hits.clone(),
    );
    IN_LOOM.with(|f| f.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| {
        b.check(move || {
            let i = i2.fetch_add(1, SeqCst);
            let w = Arc::new(
                World::<Loom>::build((*cfg2).clone(), &sc2.layout).expect("layout validated"),
            );
            loom::explore();
            if let Err((v, trace)) = execute(&w, &sc2, &h2) {
                *f2.lock().unwrap() = Some(Failure {
                    violation: *v,
                    iteration: i,
                    trace,
                    schedule: None,
                });
                resume_unwind(Box::new(ViolationFound));
            }
        })
    }));
    IN_LOOM.with(|f| f.set(false));
    let iterations = iters.load(SeqCst);
    let failure = found.lock().unwrap().take();
    if let Err(p) = r {
        if failure.is_none() {
            // A deadlock or a model crash: a finding of this iteration.
            if let Some(f) = panic_failure(iterations.saturating_sub(1)) {
                return Ok((iterations, Some(f)));
            }
            // Not ours: a loom limit (branches, deadlock) or a model bug.
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let first = msg.lines().next().unwrap_or("").to_string();
            return Err(format!("loom stopped at iteration {iterations}: {first}"));
        }
    }
    Ok((iterations, failure))
}
