//! The shuttle engine: a recording wrapper around shuttle's schedulers, the
//! one-shot schedulers of replays and fuzz bytes, and their runs.

use super::*;
/// Marks this thread as running shuttle executions while it lives.
pub(super) struct InShuttle(bool);

impl InShuttle {
    pub(super) fn enter() -> InShuttle {
        InShuttle(IN_SHUTTLE.with(|f| f.replace(true)))
    }
}

impl Drop for InShuttle {
    fn drop(&mut self) {
        IN_SHUTTLE.with(|f| f.set(self.0));
    }
}

/// The two deciding methods of a scheduler that wraps `self.$inner` (an
/// `Option` of a scheduler) and records each decision in `self.current`.
macro_rules! recorded_decisions {
    ($inner:ident) => {
        fn next_task(
            &mut self,
            runnable: &[&shuttle::scheduler::Task],
            current: Option<shuttle::scheduler::TaskId>,
            is_yielding: bool,
        ) -> Option<shuttle::scheduler::TaskId> {
            record_task(
                &mut self.current,
                self.$inner.as_mut(),
                runnable,
                current,
                is_yielding,
            )
        }
        fn next_u64(&mut self) -> u64 {
            record_u64(&mut self.current, self.$inner.as_mut())
        }
    };
}
pub(super) use recorded_decisions;

/// Wraps a shuttle scheduler: records every decision of the current execution,
/// and ends the run, without a panic, once a violation has been recorded (the
/// failing execution's decisions are kept for its artifact).
pub(super) struct Recording<S> {
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
    recorded_decisions!(inner);
}

impl<S> Drop for Recording<S> {
    /// A run that a panic ended (a deadlock, a model crash) never asks for a
    /// new execution: the decisions of the one that panicked are kept here.
    fn drop(&mut self) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_none() && !self.current.tasks.is_empty() {
            *failing = Some(std::mem::take(&mut self.current));
        }
        // As in `new_execution`: no "failing seed" from a scheduler dropped midway.
        std::mem::forget(self.inner.take());
    }
}

/// Asks `inner` for the next task and records the decision in `sched`.
pub(super) fn record_task<S: shuttle::scheduler::Scheduler>(
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
pub(super) fn record_u64<S: shuttle::scheduler::Scheduler>(
    sched: &mut Schedule,
    inner: Option<&mut S>,
) -> u64 {
    let v = inner.map_or(0, |s| s.next_u64());
    sched.randoms.push(v);
    v
}

/// Where a one-shot scheduler's decisions come from: a recorded schedule or fuzz
/// bytes. `None` means "no opinion": the fair fallback decides.
pub(super) trait Decisions {
    fn pick(&mut self, runnable: &[usize]) -> Option<usize>;
    fn random(&mut self) -> u64;
}

/// One execution whose decisions come from `D`; where `D` has none (or names a
/// task that cannot run) it continues fairly: the running task if it can run,
/// else the runnable task with the lowest id.
pub(super) struct OneShot<D> {
    pub(super) decisions: D,
    pub(super) started: bool,
}

impl OneShot<Bytes> {
    /// One execution scheduled by fuzz bytes.
    pub(super) fn on_bytes(bytes: &[u8]) -> Self {
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
pub(super) struct Replay {
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
pub(super) fn run_one_shuttle<S: shuttle::scheduler::Scheduler + 'static>(
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
pub(super) fn one_shot_outcome(
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

pub(super) fn run_shuttle<S: shuttle::scheduler::Scheduler + 'static>(
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

pub(super) fn run_shuttle_on<S: shuttle::scheduler::Scheduler + 'static>(
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
    let ran = catch_unwind(AssertUnwindSafe(|| {
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
    }));
    if let Err(p) = ran {
        // A deadlock or a model crash ends the run with a panic out of
        // shuttle; anything else is not a finding and goes on unwinding.
        let Some(f) = panic_failure(iters.load(SeqCst).saturating_sub(1)) else {
            resume_unwind(p)
        };
        found.lock().unwrap().get_or_insert(f);
    }
    let mut failure = found.lock().unwrap().take();
    if let Some(f) = failure.as_mut() {
        f.schedule = failing.lock().unwrap().take();
    }
    (iters.load(SeqCst), failure)
}

/// Context switches in a schedule: decisions that pick another task than the one
/// before (each is a preemption unless the previous task had blocked or ended).
pub fn switches(s: &Schedule) -> usize {
    s.tasks.windows(2).filter(|w| w[0] != w[1]).count()
}

/// A schedule drawn from fuzz input: each decision takes the next byte modulo the
/// runnable tasks; when the bytes run out the fair fallback decides. Randomness
/// comes from the bytes too.
pub(super) struct Bytes {
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
pub(crate) fn run_bytes_on(
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
