//! Non-generic entry points, one per engine: run a scenario under loom, shuttle or
//! real threads. `World<Loom>` and `World<Shuttle>` are compiled here once, not in
//! every test binary.
//!
//! A violation travels as a value out of the model threads and becomes the
//! engine's failure only here, at its edge: shuttle is stopped by its scheduler
//! (no panic at all); loom, which has no way to stop from inside, is left by one
//! `resume_unwind` (no panic hook runs) and the value is read back outside.

use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Loom, Shuttle, Std, THREAD_STACK};
use crate::config::WorldConfig;
use crate::ghost::{Ctx, Ledger, Step, Violation};
use crate::scenario::Scenario;
use crate::world::World;

/// Which engine, and how hard it tries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Every interleaving up to `preemption_bound` (None: unbounded). The
    /// LOOM_MAX_PREEMPTIONS and LOOM_MAX_BRANCHES environment variables win.
    Loom {
        preemption_bound: Option<usize>,
    },
    ShuttleRandom {
        iterations: usize,
        seed: u64,
    },
    ShuttlePct {
        iterations: usize,
        depth: usize,
        seed: u64,
    },
    ShuttleDfs {
        max_iterations: Option<usize>,
    },
    /// Real threads on real atomics, a fresh world per iteration.
    Std {
        iterations: usize,
    },
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Loom { .. } => "loom",
            Engine::ShuttleRandom { .. } => "shuttle-random",
            Engine::ShuttlePct { .. } => "shuttle-pct",
            Engine::ShuttleDfs { .. } => "shuttle-dfs",
            Engine::Std { .. } => "std",
        }
    }
}

/// A violation with what is needed to read and replay it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub violation: Violation,
    /// Index of the failing execution (loom iteration, shuttle execution).
    pub iteration: u64,
    /// Every thread's steps, in global order.
    pub trace: Vec<Step>,
    /// For shuttle engines: every scheduling decision of the failing execution,
    /// which replays it exactly.
    #[serde(default)]
    pub schedule: Option<Schedule>,
}

/// The scheduling decisions of one shuttle execution: the task chosen at each
/// step and the values handed out as randomness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub tasks: Vec<u32>,
    #[serde(default)]
    pub randoms: Vec<u64>,
}

/// The result of one engine run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub scenario: String,
    pub engine: String,
    pub arch: String,
    pub mutations: Vec<String>,
    /// Executions run (up to and including a failing one).
    pub iterations: u64,
    /// Executions whose trace passed through the scenario's race window.
    #[serde(default)]
    pub window_hits: u64,
    /// Executions that broke only a tolerated invariant (`WorldConfig::tolerate`).
    #[serde(default)]
    pub tolerated: u64,
    /// The engine exactly as it ran (loom's bound after LOOM_MAX_PREEMPTIONS).
    pub ran: Engine,
    pub failure: Option<Failure>,
}

/// Runs `sc` on a world configured by `cfg` under `engine`. `Err` is bad input
/// (a layout the world cannot hold), never a violation.
pub fn run(sc: &Scenario, cfg: &WorldConfig, engine: &Engine) -> Result<Outcome, String> {
    run_with(sc, cfg, engine, true, None)
}

/// Like `run`, but stops starting executions once `budget` has passed (loom's
/// `max_duration`; shuttle and std check before each execution). Whether the
/// engine ran out of work or of time is for the caller to tell from the clock.
pub fn run_for(
    sc: &Scenario,
    cfg: &WorldConfig,
    engine: &Engine,
    budget: Duration,
) -> Result<Outcome, String> {
    run_with(sc, cfg, engine, true, Some(budget))
}

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

/// Like `run`, but exactly as `engine` says: LOOM_MAX_PREEMPTIONS is ignored
/// (replays must explore the recorded tree).
pub fn run_exact(sc: &Scenario, cfg: &WorldConfig, engine: &Engine) -> Result<Outcome, String> {
    run_with(sc, cfg, engine, false, None)
}

fn run_with(
    sc: &Scenario,
    cfg: &WorldConfig,
    engine: &Engine,
    honour_env: bool,
    budget: Option<Duration>,
) -> Result<Outcome, String> {
    order_panic_hooks();
    let deadline = match budget {
        Some(b) => Some(
            Instant::now()
                .checked_add(b)
                .ok_or_else(|| format!("a budget of {} s is too long", b.as_secs()))?,
        ),
        None => None,
    };
    // Validate the layout once, outside any model checker.
    World::<Std>::build(cfg.clone(), &sc.layout)?;
    if sc.threads.len() + 1 > cfg.nr_cpus {
        return Err(format!(
            "scenario has {} threads but the world has {} CPUs",
            sc.threads.len(),
            cfg.nr_cpus
        ));
    }
    let sc = Arc::new(sc.clone());
    let cfg = Arc::new(cfg.clone());
    let hits = Arc::new(Tally::default());
    let mut ran = engine.clone();
    let (iterations, failure) = match engine {
        Engine::Loom { preemption_bound } => {
            let bound = effective_loom_bound(*preemption_bound, honour_env)?;
            ran = Engine::Loom {
                preemption_bound: bound,
            };
            run_loom(&sc, &cfg, bound, budget, &hits)?
        }
        Engine::ShuttleRandom { iterations, seed } => run_shuttle(
            &sc,
            &cfg,
            shuttle::scheduler::RandomScheduler::new_from_seed(*seed, *iterations),
            deadline,
            &hits,
        ),
        // One model thread has one schedule, and PCT refuses a run without
        // concurrency: a single execution says everything.
        Engine::ShuttlePct {
            iterations, seed, ..
        } if sc.threads.len() < 2 => run_shuttle(
            &sc,
            &cfg,
            shuttle::scheduler::RandomScheduler::new_from_seed(*seed, (*iterations).min(1)),
            deadline,
            &hits,
        ),
        Engine::ShuttlePct {
            iterations,
            depth,
            seed,
        } => run_shuttle(
            &sc,
            &cfg,
            shuttle::scheduler::PctScheduler::new_from_seed(*seed, *depth, *iterations),
            deadline,
            &hits,
        ),
        Engine::ShuttleDfs { max_iterations } => run_shuttle(
            &sc,
            &cfg,
            shuttle::scheduler::DfsScheduler::new(*max_iterations, false),
            deadline,
            &hits,
        ),
        Engine::Std { iterations } => run_std(&sc, &cfg, *iterations, deadline, &hits),
    };
    Ok(Outcome {
        scenario: sc.name.clone(),
        engine: engine.name().to_string(),
        arch: cfg.arch.name().to_string(),
        mutations: cfg.mutations.iter().map(|m| m.name().to_string()).collect(),
        iterations,
        window_hits: hits.window.load(SeqCst),
        tolerated: hits.tolerated.load(SeqCst),
        ran,
        failure,
    })
}

/// shuttle installs a panic hook once per process that reports every panic it
/// sees; loom's coroutines (the generator crate) cancel finished threads with a
/// panic that their own hook, installed once, filters out. If shuttle's hook is
/// installed after generator's, it wraps it and reports those cancellations. So
/// shuttle's hook goes in first, with one trivial execution, before any loom run.
fn order_panic_hooks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The hook in place before (std's, or libFuzzer's), for panics outside
        // any shuttle execution: shuttle's would report a schedule that does
        // not exist ("Tried to get ExecutionState").
        let outside = std::panic::take_hook();
        let mut config = shuttle::Config::new();
        config.silence_warnings = true;
        config.failure_persistence = shuttle::FailurePersistence::None;
        shuttle::Runner::new(shuttle::scheduler::RoundRobinScheduler::new(1), config).run(|| {});
        // Between shuttle's hook and loom's: a panic inside a loom run (a limit,
        // a model bug) becomes `run`'s error, so nothing is printed for it here.
        let shuttle_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_LOOM.with(|f| f.get()) {
                return;
            }
            if IN_SHUTTLE.with(|f| f.get()) {
                shuttle_hook(info);
            } else {
                outside(info);
            }
        }));
    });
}

/// What one model thread hands back when it ends.
pub struct ThreadEnd {
    trace: Vec<Step>,
    ledger: Ledger,
    violation: Option<Box<Violation>>,
    /// Ops it ran to the end (the one that broke an invariant included).
    pub ops_run: usize,
}

/// Model thread `t` of `sc`: its ops in order, until one breaks an invariant.
pub fn run_thread<B: Backend>(w: &World<B>, sc: &Scenario, t: usize) -> ThreadEnd {
    run_ops(w, &sc.layout, t, &sc.threads[t])
}

/// Model thread `t` running `ops` on `w` (laid out by `layout`).
pub fn run_ops<B: Backend>(
    w: &World<B>,
    layout: &crate::world::Layout,
    t: usize,
    ops: &[crate::ops::Op],
) -> ThreadEnd {
    let mut ctx = Ctx::new(t, t + 1, w.cfg.trace);
    let mut violation = None;
    let mut ops_run = 0;
    for op in ops {
        ops_run += 1;
        if let Err(v) = w.run_op(&mut ctx, layout, op) {
            violation = Some(v);
            break;
        }
    }
    ThreadEnd {
        trace: ctx.trace,
        ledger: ctx.ledger,
        violation,
        ops_run,
    }
}

/// One execution: spawn a thread per op list, join them, check at quiescence.
/// Generic over the backend; the world is built by the caller.
fn execute<B: Backend>(
    w: &Arc<World<B>>,
    sc: &Arc<Scenario>,
    tally: &Tally,
) -> Result<(), (Box<Violation>, Vec<Step>)> {
    let handles: Vec<_> = (0..sc.threads.len())
        .map(|t| {
            let w = Arc::clone(w);
            let sc = Arc::clone(sc);
            B::spawn(format!("t{t}"), THREAD_STACK, move || {
                run_thread(&w, &sc, t)
            })
        })
        .collect();
    let ends = handles
        .into_iter()
        .map(|h| match B::join(h) {
            Ok(e) => e,
            // A panic in the model is a model bug: let it surface as one.
            Err(p) => resume_unwind(p),
        })
        .collect();
    judge_execution(w, sc, tally, ends)
}

/// The verdict on one execution from its threads' ends: the first violation
/// not tolerated, else the invariants at quiescence.
pub fn judge_execution<B: Backend>(
    w: &World<B>,
    sc: &Scenario,
    tally: &Tally,
    ends: Vec<ThreadEnd>,
) -> Result<(), (Box<Violation>, Vec<Step>)> {
    let mut trace = Vec::new();
    let mut ledger = Ledger::default();
    let mut first: Option<Box<Violation>> = None;
    let mut tolerated = false;
    for end in ends {
        trace.extend(end.trace);
        ledger.merge(end.ledger);
        match end.violation {
            Some(v) if w.cfg.tolerate.contains(&v.invariant) => tolerated = true,
            Some(v) if first.is_none() => first = Some(v),
            _ => {}
        }
    }
    trace.sort_by_key(|s| s.seq);
    if sc.window.as_ref().is_some_and(|win| win.hit(&trace)) {
        tally.window.fetch_add(1, SeqCst);
    }
    if let Some(v) = first {
        return Err((v, trace));
    }
    if tolerated {
        // A known outcome the run goes past: counted, not judged further (the
        // thread that saw it stopped midway, so quiescence would not hold).
        tally.tolerated.fetch_add(1, SeqCst);
        return Ok(());
    }
    match w.check_quiescent(&ledger) {
        // A known outcome seen only at rest (a device wrote into a page
        // writeback had cleaned): searched past like one seen in a thread.
        Err(v) if w.cfg.tolerate.contains(&v.invariant) => {
            tally.tolerated.fetch_add(1, SeqCst);
            Ok(())
        }
        r => r.map_err(|v| (v, trace)),
    }
}

/// Counters shared by the executions of one run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Executions whose trace passed through the scenario's race window.
    pub window: AtomicU64,
    /// Executions that broke only a tolerated invariant.
    pub tolerated: AtomicU64,
}

/// The marker loom unwinds with when an execution found a violation.
struct ViolationFound;

/// A `LOOM_*` variable as a number, or a one-line error.
fn loom_env(name: &str) -> Result<Option<usize>, String> {
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
pub fn effective_loom_bound(
    bound: Option<usize>,
    honour_env: bool,
) -> Result<Option<usize>, String> {
    let env = loom_env("LOOM_MAX_PREEMPTIONS")?;
    Ok(if honour_env { env.or(bound) } else { bound })
}

fn run_loom(
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

thread_local! {
    /// Set while loom runs on this thread: its panics are reported as errors by
    /// `run`, not by the panic hooks.
    static IN_LOOM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while shuttle executions run on this thread (shuttle's tasks share
    /// the calling thread): only their panics go to shuttle's hook.
    static IN_SHUTTLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as running shuttle executions while it lives.
struct InShuttle(bool);

impl InShuttle {
    fn enter() -> InShuttle {
        InShuttle(IN_SHUTTLE.with(|f| f.replace(true)))
    }
}

impl Drop for InShuttle {
    fn drop(&mut self) {
        IN_SHUTTLE.with(|f| f.set(self.0));
    }
}

/// Wraps a shuttle scheduler: records every decision of the current execution,
/// and ends the run, without a panic, once a violation has been recorded (the
/// failing execution's decisions are kept for its artifact).
struct Recording<S> {
    inner: Option<S>,
    stop: Arc<AtomicBool>,
    /// No execution starts after this.
    deadline: Option<Instant>,
    current: Schedule,
    failing: Arc<std::sync::Mutex<Option<Schedule>>>,
}

impl<S: shuttle::scheduler::Scheduler> shuttle::scheduler::Scheduler for Recording<S> {
    fn new_execution(&mut self) -> Option<shuttle::scheduler::Schedule> {
        if self.stop.load(SeqCst) {
            *self.failing.lock().unwrap() = Some(std::mem::take(&mut self.current));
            // shuttle's RandomScheduler prints "failing seed" when dropped in the
            // middle of a run; the failure is reported here, as a value, instead.
            std::mem::forget(self.inner.take());
            return None;
        }
        self.current = Schedule::default();
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            std::mem::forget(self.inner.take());
            return None;
        }
        self.inner.as_mut()?.new_execution()
    }
    fn next_task(
        &mut self,
        runnable: &[&shuttle::scheduler::Task],
        current: Option<shuttle::scheduler::TaskId>,
        is_yielding: bool,
    ) -> Option<shuttle::scheduler::TaskId> {
        record_task(
            &mut self.current,
            self.inner.as_mut(),
            runnable,
            current,
            is_yielding,
        )
    }
    fn next_u64(&mut self) -> u64 {
        record_u64(&mut self.current, self.inner.as_mut())
    }
}

/// Asks `inner` for the next task and records the decision in `sched`.
fn record_task<S: shuttle::scheduler::Scheduler>(
    sched: &mut Schedule,
    inner: Option<&mut S>,
    runnable: &[&shuttle::scheduler::Task],
    current: Option<shuttle::scheduler::TaskId>,
    is_yielding: bool,
) -> Option<shuttle::scheduler::TaskId> {
    let t = inner?.next_task(runnable, current, is_yielding)?;
    sched.tasks.push(usize::from(t) as u32);
    Some(t)
}

/// Asks `inner` for a random value and records it in `sched`.
fn record_u64<S: shuttle::scheduler::Scheduler>(
    sched: &mut Schedule,
    inner: Option<&mut S>,
) -> u64 {
    let v = inner.map_or(0, |s| s.next_u64());
    sched.randoms.push(v);
    v
}

/// Where a one-shot scheduler's decisions come from: a recorded schedule or fuzz
/// bytes. `None` means "no opinion": the fair fallback decides.
trait Decisions {
    fn pick(&mut self, runnable: &[usize]) -> Option<usize>;
    fn random(&mut self) -> u64;
}

/// One execution whose decisions come from `D`; where `D` has none (or names a
/// task that cannot run) it continues fairly: the running task if it can run,
/// else the runnable task with the lowest id.
struct OneShot<D> {
    decisions: D,
    started: bool,
}

impl OneShot<Bytes> {
    /// One execution scheduled by fuzz bytes.
    fn on_bytes(bytes: &[u8]) -> Self {
        OneShot {
            decisions: Bytes {
                bytes: bytes.to_vec(),
                pos: 0,
            },
            started: false,
        }
    }
}

impl<D: Decisions> shuttle::scheduler::Scheduler for OneShot<D> {
    fn new_execution(&mut self) -> Option<shuttle::scheduler::Schedule> {
        if std::mem::replace(&mut self.started, true) {
            return None;
        }
        Some(shuttle::scheduler::Schedule::new(0))
    }
    fn next_task(
        &mut self,
        runnable: &[&shuttle::scheduler::Task],
        current: Option<shuttle::scheduler::TaskId>,
        _is_yielding: bool,
    ) -> Option<shuttle::scheduler::TaskId> {
        let ids: Vec<usize> = runnable.iter().map(|t| usize::from(t.id())).collect();
        let pick = self
            .decisions
            .pick(&ids)
            .filter(|w| ids.contains(w))
            .or_else(|| current.map(usize::from).filter(|c| ids.contains(c)))
            .or_else(|| ids.iter().copied().min())?;
        Some(pick.into())
    }
    fn next_u64(&mut self) -> u64 {
        self.decisions.random()
    }
}

/// A recorded schedule, decision by decision.
struct Replay {
    schedule: Schedule,
    pos: usize,
    rpos: usize,
}

impl Decisions for Replay {
    fn pick(&mut self, _runnable: &[usize]) -> Option<usize> {
        let want = self.schedule.tasks.get(self.pos).map(|&w| w as usize);
        self.pos += 1;
        want
    }
    fn random(&mut self) -> u64 {
        let v = self.schedule.randoms.get(self.rpos).copied().unwrap_or(0);
        self.rpos += 1;
        v
    }
}

/// Replays one shuttle execution of `sc` from `schedule`.
pub fn replay_shuttle(
    sc: &Scenario,
    cfg: &WorldConfig,
    schedule: &Schedule,
) -> Result<Outcome, String> {
    let replay = Replay {
        schedule: schedule.clone(),
        pos: 0,
        rpos: 0,
    };
    run_one_shuttle(
        sc,
        cfg,
        OneShot {
            decisions: replay,
            started: false,
        },
        "shuttle-replay",
    )
}

/// One shuttle run under a scheduler of ours (replay, bytes).
fn run_one_shuttle<S: shuttle::scheduler::Scheduler + 'static>(
    sc: &Scenario,
    cfg: &WorldConfig,
    scheduler: S,
    name: &str,
) -> Result<Outcome, String> {
    let img = Arc::new(World::<Std>::build(cfg.clone(), &sc.layout)?);
    order_panic_hooks();
    let sca = Arc::new(sc.clone());
    let hits = Arc::new(Tally::default());
    let (iterations, failure) = run_shuttle_on(&sca, img, scheduler, None, &hits);
    Ok(one_shot_outcome(sc, cfg, name, iterations, &hits, failure))
}

/// The outcome of a one-shot shuttle run (a recorded or byte schedule).
fn one_shot_outcome(
    sc: &Scenario,
    cfg: &WorldConfig,
    name: &str,
    iterations: u64,
    hits: &Tally,
    failure: Option<Failure>,
) -> Outcome {
    Outcome {
        scenario: sc.name.clone(),
        engine: name.into(),
        arch: cfg.arch.name().to_string(),
        mutations: cfg.mutations.iter().map(|m| m.name().to_string()).collect(),
        iterations,
        window_hits: hits.window.load(SeqCst),
        tolerated: hits.tolerated.load(SeqCst),
        ran: Engine::ShuttleRandom {
            iterations: 1,
            seed: 0,
        },
        failure,
    }
}

fn run_shuttle<S: shuttle::scheduler::Scheduler + 'static>(
    sc: &Arc<Scenario>,
    cfg: &Arc<WorldConfig>,
    scheduler: S,
    deadline: Option<Instant>,
    hits: &Arc<Tally>,
) -> (u64, Option<Failure>) {
    // The layout is built once, on std; each execution copies it in without a
    // scheduling decision.
    let img = Arc::new(World::<Std>::build((**cfg).clone(), &sc.layout).expect("layout validated"));
    run_shuttle_on(sc, img, scheduler, deadline, hits)
}

fn run_shuttle_on<S: shuttle::scheduler::Scheduler + 'static>(
    sc: &Arc<Scenario>,
    img: Arc<World<Std>>,
    scheduler: S,
    deadline: Option<Instant>,
    hits: &Arc<Tally>,
) -> (u64, Option<Failure>) {
    let found: Arc<std::sync::Mutex<Option<Failure>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let iters = Arc::new(AtomicU64::new(0));
    let mut config = shuttle::Config::new();
    config.stack_size = THREAD_STACK;
    config.silence_warnings = true;
    config.failure_persistence = shuttle::FailurePersistence::None;
    let failing: Arc<std::sync::Mutex<Option<Schedule>>> = Arc::default();
    let runner = shuttle::Runner::new(
        Recording {
            inner: Some(scheduler),
            stop: stop.clone(),
            deadline,
            current: Schedule::default(),
            failing: failing.clone(),
        },
        config,
    );
    let (f2, s2, i2, sc2, img2, h2) = (
        found.clone(),
        stop,
        iters.clone(),
        sc.clone(),
        img,
        hits.clone(),
    );
    let _in = InShuttle::enter();
    runner.run(move || {
        let i = i2.fetch_add(1, SeqCst);
        let w = Arc::new(World::<Shuttle>::from_image(&img2));
        if let Err((v, trace)) = execute(&w, &sc2, &h2) {
            let mut f = f2.lock().unwrap();
            if f.is_none() {
                *f = Some(Failure {
                    violation: *v,
                    iteration: i,
                    trace,
                    schedule: None,
                });
            }
            s2.store(true, SeqCst);
        }
    });
    let mut failure = found.lock().unwrap().take();
    if let Some(f) = failure.as_mut() {
        f.schedule = failing.lock().unwrap().take();
    }
    (iters.load(SeqCst), failure)
}

fn run_std(
    sc: &Arc<Scenario>,
    cfg: &Arc<WorldConfig>,
    iterations: usize,
    deadline: Option<Instant>,
    hits: &Arc<Tally>,
) -> (u64, Option<Failure>) {
    for i in 0..iterations {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (i as u64, None);
        }
        let w =
            Arc::new(World::<Std>::build((**cfg).clone(), &sc.layout).expect("layout validated"));
        if let Err((v, trace)) = execute(&w, sc, hits) {
            return (
                i as u64 + 1,
                Some(Failure {
                    violation: *v,
                    iteration: i as u64,
                    trace,
                    schedule: None,
                }),
            );
        }
    }
    (iterations as u64, None)
}

/// Context switches in a schedule: decisions that pick another task than the one
/// before (each is a preemption unless the previous task had blocked or ended).
pub fn switches(s: &Schedule) -> usize {
    s.tasks.windows(2).filter(|w| w[0] != w[1]).count()
}

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

/// A schedule drawn from fuzz input: each decision takes the next byte modulo the
/// runnable tasks; when the bytes run out the fair fallback decides. Randomness
/// comes from the bytes too.
struct Bytes {
    bytes: Vec<u8>,
    pos: usize,
}

impl Decisions for Bytes {
    fn pick(&mut self, runnable: &[usize]) -> Option<usize> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        runnable
            .get(usize::from(b) % runnable.len().max(1))
            .copied()
    }
    fn random(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.bytes.get(self.pos).copied().unwrap_or(0));
            self.pos += 1;
        }
        v
    }
}

/// One shuttle execution whose schedule is drawn from `bytes` (the fuzz targets'
/// engine). A failure carries its recorded decisions, so it replays like any
/// other shuttle failure.
pub fn run_bytes(sc: &Scenario, cfg: &WorldConfig, bytes: &[u8]) -> Result<Outcome, String> {
    run_one_shuttle(sc, cfg, OneShot::on_bytes(bytes), "shuttle-bytes")
}

/// [`run_bytes`] on a layout already built: `img` must be
/// `World::<Std>::build(cfg, &sc.layout)`, untouched. For the fuzz targets:
/// the caller keeps one image per configuration, and the executions run on
/// one shuttle runner per thread, kept suspended in a coroutine between
/// inputs, so its green threads' stacks are reused instead of mapped and
/// unmapped for every input.
pub fn run_bytes_on(
    sc: &Scenario,
    cfg: &WorldConfig,
    img: Arc<World<Std>>,
    bytes: &[u8],
) -> Outcome {
    order_panic_hooks();
    let job = served::Job {
        sc: Arc::new(sc.clone()),
        img,
        bytes: bytes.to_vec(),
        hits: Arc::new(Tally::default()),
    };
    let hits = job.hits.clone();
    let failure = served::run(job);
    one_shot_outcome(sc, cfg, "shuttle-bytes", 1, &hits, failure)
}

/// A shuttle runner that serves one-shot executions: `Runner::run` runs in a
/// coroutine whose scheduler, at each new execution, hands the last result
/// back and suspends until the next job.
mod served {
    use super::*;
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    use std::cell::RefCell;
    use std::sync::Mutex;

    pub struct Job {
        pub sc: Arc<Scenario>,
        pub img: Arc<World<Std>>,
        pub bytes: Vec<u8>,
        pub hits: Arc<Tally>,
    }

    /// The execution in progress: its job, then what it found.
    #[derive(Default)]
    struct Slot {
        job: Option<Job>,
        found: Option<Failure>,
    }

    type Server = Coroutine<Job, Option<Failure>, ()>;

    /// Runs `job` on this thread's runner.
    pub fn run(job: Job) -> Option<Failure> {
        // Leaked on purpose: a runner suspended in the middle of `Runner::run`
        // must not be unwound by a thread-local destructor; it costs one stack
        // per thread that fuzzes.
        thread_local!(static SERVER: &'static RefCell<Server> =
            Box::leak(Box::new(RefCell::new(Coroutine::new(serve)))));
        let _in = InShuttle::enter();
        SERVER.with(|s| match s.borrow_mut().resume(job) {
            CoroutineResult::Yield(found) => found,
            CoroutineResult::Return(()) => unreachable!("the runner serves forever"),
        })
    }

    fn serve(yielder: &Yielder<Job, Option<Failure>>, first: Job) {
        let slot: Arc<Mutex<Slot>> = Arc::default();
        let mut config = shuttle::Config::new();
        config.stack_size = THREAD_STACK;
        config.silence_warnings = true;
        config.failure_persistence = shuttle::FailurePersistence::None;
        let sched = Served {
            yielder: yielder as *const _,
            next: Some(first),
            slot: slot.clone(),
            now: None,
            current: Schedule::default(),
        };
        shuttle::Runner::new(sched, config).run(move || {
            let (sc, img, hits) = {
                let s = slot.lock().unwrap();
                let j = s.job.as_ref().expect("an execution has its job");
                (j.sc.clone(), j.img.clone(), j.hits.clone())
            };
            let w = Arc::new(World::<Shuttle>::from_image(&img));
            if let Err((v, trace)) = execute(&w, &sc, &hits) {
                slot.lock().unwrap().found = Some(Failure {
                    violation: *v,
                    iteration: 0,
                    trace,
                    schedule: None,
                });
            }
        });
    }

    /// At each new execution: hands back the last one's result (with its
    /// recorded schedule) and waits for the next job; decides like
    /// [`OneShot`] on the job's bytes.
    struct Served {
        /// The coroutine's yielder, valid for as long as `serve` runs, which
        /// outlives the runner and so this scheduler.
        yielder: *const Yielder<Job, Option<Failure>>,
        next: Option<Job>,
        slot: Arc<Mutex<Slot>>,
        now: Option<OneShot<Bytes>>,
        current: Schedule,
    }

    impl shuttle::scheduler::Scheduler for Served {
        fn new_execution(&mut self) -> Option<shuttle::scheduler::Schedule> {
            let job = match self.next.take() {
                Some(job) => job,
                None => {
                    let found = {
                        let mut s = self.slot.lock().unwrap();
                        s.job = None;
                        s.found.take()
                    }
                    .map(|mut f| {
                        f.schedule = Some(std::mem::take(&mut self.current));
                        f
                    });
                    // SAFETY: see `yielder`; this runs inside the coroutine.
                    unsafe { &*self.yielder }.suspend(found)
                }
            };
            // This execution is the one-shot's only one.
            self.now = Some(OneShot {
                started: true,
                ..OneShot::on_bytes(&job.bytes)
            });
            self.current = Schedule::default();
            self.slot.lock().unwrap().job = Some(job);
            Some(shuttle::scheduler::Schedule::new(0))
        }
        fn next_task(
            &mut self,
            runnable: &[&shuttle::scheduler::Task],
            current: Option<shuttle::scheduler::TaskId>,
            is_yielding: bool,
        ) -> Option<shuttle::scheduler::TaskId> {
            record_task(
                &mut self.current,
                self.now.as_mut(),
                runnable,
                current,
                is_yielding,
            )
        }
        fn next_u64(&mut self) -> u64 {
            record_u64(&mut self.current, self.now.as_mut())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::ghost::Invariant;

    /// `run_for` stops every engine at its budget, here on a clean scenario
    /// whose full exploration takes far longer (loom unbounded, millions of
    /// executions otherwise).
    #[test]
    fn run_for_keeps_to_its_budget() {
        let sc = crate::scenario::by_name("gup_fast_vs_page_mkclean").unwrap();
        let mut cfg = sc.config(Arch::Ipi, &[]);
        cfg.trace = false;
        cfg.tolerate = vec![Invariant::NoLostWrite];
        let budget = Duration::from_millis(300);
        for e in [
            Engine::Loom {
                preemption_bound: None,
            },
            Engine::ShuttleRandom {
                iterations: 10_000_000,
                seed: 1,
            },
            Engine::ShuttlePct {
                iterations: 10_000_000,
                depth: 3,
                seed: 1,
            },
            Engine::Std {
                iterations: 10_000_000,
            },
        ] {
            let t = Instant::now();
            let o = run_for(&sc, &cfg, &e, budget).unwrap();
            let took = t.elapsed();
            assert!(o.failure.is_none(), "{}: {:?}", e.name(), o.failure);
            assert!(o.iterations > 0, "{} ran", e.name());
            // Generous: one execution may end past the deadline; without the
            // deadline each of these runs for minutes.
            assert!(
                took < Duration::from_secs(2),
                "{} took {took:?} on a 300 ms budget",
                e.name()
            );
        }
    }
}
