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
use crate::ghost::{Ctx, Ledger, Step};
use crate::harness::scenario::Scenario;
use crate::heartbeat::Heartbeat;
use crate::invariant::{Invariant, Res, Violation};
use crate::state::world::World;

mod loom_runner;
mod minimise;
mod served;
mod shuttle_runner;
mod std_runner;

use loom_runner::*;
pub use loom_runner::{run_loom_deepening, run_loom_deepening_from, Deepened};
pub use minimise::{minimise, Minimised};
pub(crate) use shuttle_runner::run_bytes_on;
use shuttle_runner::*;
pub use shuttle_runner::{replay_shuttle, run_bytes, switches};
use std_runner::*;

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

/// Like `run`, but exactly as `engine` says: LOOM_MAX_PREEMPTIONS is ignored
/// (replays must explore the recorded tree).
pub(crate) fn run_exact(
    sc: &Scenario,
    cfg: &WorldConfig,
    engine: &Engine,
) -> Result<Outcome, String> {
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
            let msg = payload_message(info.payload());
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            FIRST_PANIC.with(|p| {
                p.borrow_mut().get_or_insert((msg.clone(), at));
            });
            if IN_LOOM.with(|f| f.get()) {
                return;
            }
            // Real threads: `run_ops` reports a panic of the model as a finding.
            if IN_STD_OP.with(|f| f.get()) && at_model(info.location().map(|l| l.file())) {
                return;
            }
            if IN_SHUTTLE.with(|f| f.get()) {
                // A deadlock is reported as a `progress` finding, not printed.
                // A deadlock or a panic of the model is reported as a finding.
                let finding = msg.starts_with(SHUTTLE_DEADLOCK)
                    || at_model(info.location().map(|l| l.file()));
                if !finding {
                    shuttle_hook(info);
                }
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
pub(crate) fn run_thread<B: Backend>(w: &World<B>, sc: &Scenario, t: usize) -> ThreadEnd {
    run_ops(w, &sc.layout, t, &sc.threads[t])
}

/// Model thread `t` running `ops` on `w` (laid out by `layout`).
pub fn run_ops<B: Backend>(
    w: &World<B>,
    layout: &crate::state::layout::Layout,
    t: usize,
    ops: &[crate::harness::ops::Op],
) -> ThreadEnd {
    // Stress calls this without an engine run: the hook that records panics
    // (a model crash, a wait past STD_WAIT_LIMIT) must be in place.
    order_panic_hooks();
    let mut ctx = Ctx::new(t, t + 1, w.cfg.trace);
    // A stress worker's heartbeat (`None` elsewhere): each op and step told.
    ctx.beat = Heartbeat::current();
    let mut violation = None;
    let mut ops_run = 0;
    for (i, op) in ops.iter().enumerate() {
        ops_run += 1;
        if let Some(b) = &ctx.beat {
            b.enter(i);
        }
        let r = run_op_judged(w, &mut ctx, layout, op);
        if let Some(b) = &ctx.beat {
            b.leave();
        }
        if let Err(v) = r {
            violation = Some(v);
            break;
        }
    }
    if B::MODEL_CHECKED {
        ENDED.with(|e| e.borrow_mut().push(t));
    }
    ThreadEnd {
        // Under loom and shuttle every thread's steps stay on the engine's OS
        // thread until the execution ends (`execute`): a deadlocked execution
        // never joins the threads that did end.
        trace: if B::MODEL_CHECKED {
            Vec::new()
        } else {
            crate::ghost::take_steps()
        },
        ledger: ctx.ledger,
        violation,
        ops_run,
    }
}

/// One op of a model thread. On real threads a panic of the model's own code
/// becomes a `model crash` of this thread (loom and shuttle unwind their
/// threads to cancel them: there a panic is judged at the engine's edge,
/// `panic_finding`); any other panic goes on unwinding.
pub fn run_op_judged<B: Backend>(
    w: &World<B>,
    ctx: &mut Ctx,
    layout: &crate::state::layout::Layout,
    op: &crate::harness::ops::Op,
) -> Res<()> {
    if B::MODEL_CHECKED {
        return w.run_op(ctx, layout, op);
    }
    forget_panics();
    IN_STD_OP.with(|f| f.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| w.run_op(ctx, layout, op)));
    IN_STD_OP.with(|f| f.set(false));
    r.unwrap_or_else(|p| match panic_finding() {
        Some(v) => Err(Box::new(Violation {
            thread: Some(ctx.thread),
            ..v
        })),
        None => resume_unwind(p),
    })
}

/// One execution: spawn a thread per op list, join them, check at quiescence.
/// Generic over the backend; the world is built by the caller.
fn execute<B: Backend>(
    w: &Arc<World<B>>,
    sc: &Arc<Scenario>,
    tally: &Tally,
) -> Result<(), (Box<Violation>, Vec<Step>)> {
    forget_panics();
    // Steps an earlier execution left behind (one that ended in a deadlock).
    crate::ghost::take_steps();
    ENDED.with(|e| e.borrow_mut().clear());
    let handles: Vec<_> = (0..sc.threads.len())
        .map(|t| {
            let w = Arc::clone(w);
            let sc = Arc::clone(sc);
            B::spawn(format!("t{t}"), THREAD_STACK, move || {
                run_thread(&w, &sc, t)
            })
        })
        .collect();
    let mut ends: Vec<ThreadEnd> = handles
        .into_iter()
        .map(|h| match B::join(h) {
            Ok(e) => e,
            // A panic in the model is a model bug: let it surface as one.
            Err(p) => resume_unwind(p),
        })
        .collect();
    if B::MODEL_CHECKED {
        if let Some(e) = ends.first_mut() {
            e.trace = crate::ghost::take_steps();
        }
    }
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
    // Tolerated outcomes noted on the way by threads that went on.
    let mut known = ledger.tolerated > 0;
    match w.check_quiescent(&ledger) {
        // A known outcome seen only at rest (a device wrote into a page
        // writeback had cleaned): searched past like one seen in a thread,
        // but the world is at rest, so durability is still judged.
        Err(v) if w.cfg.tolerate.contains(&v.invariant) => known = true,
        Err(v) => return Err((v, trace)),
        Ok(()) => {}
    }
    match sync_and_check_durable(w, &ledger) {
        Err(v) if w.cfg.tolerate.contains(&v.invariant) => known = true,
        Err(v) => return Err((v, trace)),
        Ok(()) => {}
    }
    if known {
        tally.tolerated.fetch_add(1, SeqCst);
    }
    Ok(())
}

/// `durable after sync`: at rest, when no thread holds a pin or a reference
/// (the ledger is every thread's, merged), a final `filemap_fdatawrite()` of
/// every file (as `sync(2)` would), then the disk against the last value
/// written to each file page. A run that ends holding pins is not judged: a
/// device may still write.
pub fn sync_and_check_durable<B: Backend>(w: &World<B>, ledger: &Ledger) -> Res<()> {
    if ledger.live_holds().next().is_some() {
        return Ok(());
    }
    let mut ctx = Ctx::new(usize::MAX, 0, false);
    for ino in w.inodes.iter() {
        w.writeback_inode(&mut ctx, ino.id)?;
    }
    w.check_durable(ledger)
}

/// Counters shared by the executions of one run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Executions whose trace passed through the scenario's race window.
    pub window: AtomicU64,
    /// Executions that broke only a tolerated invariant.
    pub tolerated: AtomicU64,
}

/// How shuttle's deadlock panic starts (and loom's, below).
const SHUTTLE_DEADLOCK: &str = "deadlock!";
const LOOM_DEADLOCK: &str = "deadlock;";

/// A panic payload's message.
fn payload_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Forgets the panics this thread has seen: an execution starts.
pub(super) fn forget_panics() {
    FIRST_PANIC.with(|p| p.borrow_mut().take());
}

/// What the first panic this thread saw since `forget_panics` is a finding
/// of: a deadlock of the model's threads (`progress`: shuttle and loom detect
/// it when every thread waits), or a panic whose place is the model's own
/// code below the harness (`model crash`). `None` for anything else (a limit
/// of the engine, a bug of the harness), which stays an error.
pub(super) fn panic_finding() -> Option<Violation> {
    let (msg, at) = FIRST_PANIC.with(|p| p.borrow().clone())?;
    let first = msg.lines().next().unwrap_or("").to_string();
    if msg.starts_with(SHUTTLE_DEADLOCK) || msg.starts_with(LOOM_DEADLOCK) {
        return Some(Violation {
            invariant: Invariant::Progress,
            thread: None,
            step: "a deadlock".into(),
            detail: format!("no thread can run, and not all have ended ({first})"),
        });
    }
    let at = at?;
    at_model(Some(&at)).then(|| Violation {
        invariant: Invariant::ModelCrash,
        thread: None,
        step: at.clone(),
        detail: format!("the model panicked at {at}: {first}"),
    })
}

/// The failure of execution `iteration` of a model-checked engine that ended
/// in a panic out of the engine, when the panic is a finding
/// (`panic_finding`): its trace is every step the execution took, and a
/// deadlock names each thread's last step (what it waits on).
pub(super) fn panic_failure(iteration: u64) -> Option<Failure> {
    let mut violation = panic_finding()?;
    let trace = crate::ghost::take_steps();
    if violation.invariant == Invariant::Progress {
        let ended = ENDED.with(|e| e.take());
        let mut last: Vec<(usize, &str)> = Vec::new();
        for s in trace.iter().filter(|s| !ended.contains(&s.thread)) {
            match last.iter_mut().find(|(t, _)| *t == s.thread) {
                Some(l) => l.1 = &s.name,
                None => last.push((s.thread, &s.name)),
            }
        }
        last.sort();
        if !last.is_empty() {
            let at: Vec<String> = last
                .iter()
                .map(|(t, n)| format!("thread {t} at {n}"))
                .collect();
            violation.detail = format!("{}; stuck: {}", violation.detail, at.join(", "));
        }
    }
    Some(Failure {
        violation,
        iteration,
        trace,
        schedule: None,
    })
}

/// Whether a panic's place is the model's own code below the harness.
fn at_model(file: Option<&str>) -> bool {
    file.is_some_and(|f| f.contains("model/src/") && !f.contains("model/src/harness/"))
}

thread_local! {
    /// The model threads of the current loom or shuttle execution that ran to
    /// their end: a deadlock report names the others.
    static ENDED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Set while a real thread runs one op of the model (`run_ops`).
    static IN_STD_OP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The first panic this thread saw since `forget_panics`, and its place:
    /// the panic hook records it before the engine unwinds.
    static FIRST_PANIC: std::cell::RefCell<Option<(String, Option<String>)>> =
        const { std::cell::RefCell::new(None) };
    /// Set while loom runs on this thread: its panics are reported as errors by
    /// `run`, not by the panic hooks.
    static IN_LOOM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while shuttle executions run on this thread (shuttle's tasks share
    /// the calling thread): only their panics go to shuttle's hook.
    static IN_SHUTTLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::invariant::Invariant;

    /// `run_for` stops every engine at its budget, here on a clean scenario
    /// whose full exploration takes far longer (loom unbounded, millions of
    /// executions otherwise).
    #[test]
    fn run_for_keeps_to_its_budget() {
        let sc = crate::harness::scenario::by_name("gup_fast_vs_page_mkclean").unwrap();
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
