//! A shuttle runner that serves one-shot executions: `Runner::run` runs in a
//! coroutine whose scheduler, at each new execution, hands the last result
//! back and suspends until the next job.

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
pub(super) struct Slot {
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

pub(super) fn serve(yielder: &Yielder<Job, Option<Failure>>, first: Job) {
    let mut job = first;
    loop {
        // A deadlock or a model crash ends shuttle's run with a panic: the
        // finding goes back as the job's result and a new runner serves on.
        let Err(p) = catch_unwind(AssertUnwindSafe(|| serve_from(yielder, job))) else {
            unreachable!("the runner serves forever")
        };
        let Some(violation) = panic_finding() else {
            resume_unwind(p)
        };
        let found = Failure {
            violation,
            iteration: 0,
            trace: Vec::new(),
            schedule: None,
        };
        job = yielder.suspend(Some(found));
    }
}

/// One shuttle runner serving jobs from `first` on, until an execution panics.
fn serve_from(yielder: &Yielder<Job, Option<Failure>>, first: Job) {
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
pub(super) struct Served {
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
    recorded_decisions!(now);
}
