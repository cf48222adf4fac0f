//! The watchdog of a stress run: real threads have no deadlock detector, so a
//! thread that waits forever (a lost wake-up, a lock never released) or spins
//! forever (a retry loop that never ends) would hang the run. Every worker
//! beats a `Heartbeat` (the op it runs, its last kernel step, the ops it
//! finished) and the main thread counts the epochs it ends; a thread of its
//! own samples them, and when none has moved for the bound it hands the stuck
//! workers to the run, which reports a `progress` violation and exits.
//!
//! Progress is an op finished, not a step taken: a spinning thread takes steps
//! forever. The bound is `--watchdog` (5 s by default) or 20 times the median
//! epoch time so far, whichever is longer: a legitimate gap between two beats
//! is at most one epoch (its world copied, its ops, its quiescent checks).

use super::gen::Counts;
use gupcheck_model::heartbeat::{Beat, Heartbeat};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default `--watchdog`: well under the std backend's 30 s wait limit,
/// so that the watchdog, which names the stuck op, fires first.
pub const DEFAULT: &str = "5";
pub const DEFAULT_BOUND: Duration = Duration::from_secs(5);

/// A bound on `--watchdog`: past a day a run is not watched but abandoned.
const MAX: Duration = Duration::from_secs(86_400);

/// `--watchdog SECS`: seconds without progress before the run is stopped (a
/// bare number, or a duration as `--duration` takes it: 500ms, 2s, 1m).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    crate::ui::parse_duration(s.trim())
        .ok()
        .filter(|d| *d <= MAX)
        .ok_or_else(|| {
            format!(
                "bad --watchdog '{s}' (seconds without progress, more than 0 and at most {}, e.g. 5 or 500ms)",
                MAX.as_secs()
            )
        })
}

/// What the workers and the main thread of a run tell the watchdog.
#[derive(Debug)]
pub struct Watch {
    /// One per worker, its index the worker's.
    beats: Vec<Arc<Heartbeat>>,
    /// The epoch under way.
    epoch: AtomicU64,
    /// Epochs ended: the main thread's heartbeat.
    ended: AtomicU64,
    /// The median epoch time so far, in ns (rounded up to a power of two).
    median_ns: AtomicU64,
    /// The run's counts at the last epoch's end.
    ops: AtomicU64,
    tolerated: AtomicU64,
    raced: AtomicU64,
    overlapped: AtomicU64,
}

impl Watch {
    pub fn new(workers: usize) -> Watch {
        Watch {
            beats: (0..workers).map(|_| Arc::new(Heartbeat::new())).collect(),
            epoch: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            median_ns: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            tolerated: AtomicU64::new(0),
            raced: AtomicU64::new(0),
            overlapped: AtomicU64::new(0),
        }
    }

    /// Worker `t`'s heartbeat.
    pub fn beat(&self, t: usize) -> Option<Arc<Heartbeat>> {
        self.beats.get(t).cloned()
    }

    pub fn epoch_starts(&self, epoch: u64) {
        self.epoch.store(epoch, Relaxed);
    }

    /// An epoch ended, with the run's counts so far; `median` is the median
    /// epoch time when it changed.
    pub fn epoch_ends(&self, c: &Counts, median: Option<Duration>) {
        self.ops.store(c.ops, Relaxed);
        self.tolerated.store(c.tolerated, Relaxed);
        self.raced.store(c.raced, Relaxed);
        self.overlapped.store(c.overlapped, Relaxed);
        if let Some(m) = median {
            self.median_ns.store(m.as_nanos() as u64, Relaxed);
        }
        self.ended.fetch_add(1, Relaxed);
    }

    /// A number that changes whenever a worker finishes an op or an epoch
    /// ends.
    fn signature(&self) -> u64 {
        self.beats.iter().fold(self.ended.load(Relaxed), |s, b| {
            s.wrapping_add(b.read().done)
        })
    }

    /// The counts at the last epoch's end.
    pub fn counts(&self) -> Counts {
        Counts {
            epochs: self.ended.load(Relaxed),
            ops: self.ops.load(Relaxed),
            tolerated: self.tolerated.load(Relaxed),
            raced: self.raced.load(Relaxed),
            overlapped: self.overlapped.load(Relaxed),
        }
    }

    /// How long no progress means a stuck run: `floor`, or 20 median epochs.
    fn bound(&self, floor: Duration) -> Duration {
        floor.max(Duration::from_nanos(self.median_ns.load(Relaxed)) * 20)
    }
}

/// Epoch times, for their median: a histogram by powers of two (one add per
/// epoch, no allocation), the median rounded up to its bucket's top.
pub struct EpochTimes {
    buckets: [u64; 64],
    n: u64,
}

impl Default for EpochTimes {
    fn default() -> Self {
        EpochTimes {
            buckets: [0; 64],
            n: 0,
        }
    }
}

impl EpochTimes {
    /// Adds an epoch's time; the median, every 64 epochs (and for the first
    /// 64), else `None`.
    pub fn add(&mut self, took: Duration) -> Option<Duration> {
        let ns = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.buckets[(64 - ns.leading_zeros()).min(63) as usize] += 1;
        self.n += 1;
        // (Not `is_multiple_of`: newer than the crate's minimum Rust.)
        if self.n > 64 && self.n & 63 != 0 {
            return None;
        }
        let half = self.n.div_ceil(2);
        let mut seen = 0;
        let b = self.buckets.iter().position(|&k| {
            seen += k;
            seen >= half
        })?;
        // Bucket b holds times below 2^b ns.
        Some(Duration::from_nanos(
            1u64.checked_shl(b as u32).unwrap_or(u64::MAX),
        ))
    }
}

/// A worker caught inside an op when the watchdog fired.
#[derive(Clone, Debug)]
pub struct StuckWorker {
    pub worker: usize,
    pub beat: Beat,
}

/// What the watchdog saw when it fired.
#[derive(Clone, Debug)]
pub struct Stuck {
    /// The epoch under way.
    pub epoch: u64,
    /// How long nothing moved, and the bound it passed.
    pub idle: Duration,
    pub bound: Duration,
    /// The workers inside an op; none if the epoch's own machinery stuck (a
    /// start line, a world's copy, the quiescent checks).
    pub workers: Vec<StuckWorker>,
    /// The run's counts at the last epoch's end.
    pub counts: Counts,
}

const ARMED: u8 = 0;
const FIRED: u8 = 1;
const DISARMED: u8 = 2;

/// A running watchdog; `disarm` it when the run's epochs end.
pub struct Guard {
    state: Arc<AtomicU8>,
    thread: JoinHandle<()>,
}

impl Guard {
    /// Stops the watchdog. True if it fired first: then it reports the run
    /// and ends the process, and the caller must not go on.
    pub fn disarm(self) -> bool {
        let fired = self
            .state
            .compare_exchange(ARMED, DISARMED, SeqCst, SeqCst)
            .is_err();
        if !fired {
            self.thread.thread().unpark();
            let _ = self.thread.join();
        }
        fired
    }
}

/// Starts the watchdog of a run: `on_stuck` runs on its thread once no
/// worker has finished an op and no epoch has ended for the bound (`floor`,
/// or 20 median epochs). It never returns to the run: the stuck threads can
/// neither be joined nor stopped.
pub fn spawn(
    watch: Arc<Watch>,
    floor: Duration,
    on_stuck: impl FnOnce(Stuck) + Send + 'static,
) -> Result<Guard, String> {
    let state = Arc::new(AtomicU8::new(ARMED));
    let armed = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name("gupcheck-watchdog".into())
        // The report's explanation runs shuttle and loom here.
        .stack_size(64 << 20)
        .spawn(move || {
            if let Some(stuck) = watch_until_stuck(&watch, floor, &armed) {
                on_stuck(stuck);
            }
        })
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    Ok(Guard { state, thread })
}

/// Samples the run until it is disarmed (`None`) or stuck past the bound.
fn watch_until_stuck(watch: &Watch, floor: Duration, state: &AtomicU8) -> Option<Stuck> {
    let tick = (floor / 20).clamp(Duration::from_millis(10), Duration::from_millis(250));
    // Longer than this between two samples, the watchdog itself did not run
    // (the process was stopped, the machine suspended): the wait starts over.
    let lapse = (tick * 10).max(Duration::from_secs(1));
    let mut seen = watch.signature();
    let mut since = Instant::now();
    let mut last = since;
    loop {
        std::thread::park_timeout(tick);
        if state.load(SeqCst) != ARMED {
            return None;
        }
        let now = Instant::now();
        if now - last > lapse {
            since = now;
        }
        last = now;
        let sig = watch.signature();
        if sig != seen {
            (seen, since) = (sig, now);
            continue;
        }
        let bound = watch.bound(floor);
        let idle = now - since;
        if idle < bound {
            continue;
        }
        // Only if the run has not ended meanwhile.
        state.compare_exchange(ARMED, FIRED, SeqCst, SeqCst).ok()?;
        let workers = watch
            .beats
            .iter()
            .enumerate()
            .map(|(worker, b)| StuckWorker {
                worker,
                beat: b.read(),
            })
            .filter(|w| w.beat.op.is_some())
            .collect();
        return Some(Stuck {
            epoch: watch.epoch.load(Relaxed),
            idle,
            bound,
            workers,
            counts: watch.counts(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    /// A worker spinning inside an op (steps taken, the op never finished) is
    /// caught, named with its op and last step.
    #[test]
    fn a_spin_inside_an_op_is_caught() {
        let watch = Arc::new(Watch::new(2));
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = {
            let (beat, stop) = (watch.beat(1).unwrap(), Arc::clone(&stop));
            std::thread::spawn(move || {
                beat.enter(0);
                beat.leave();
                beat.enter(1);
                while !stop.load(Relaxed) {
                    beat.step("read_seqcount_retry");
                    std::hint::spin_loop();
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let t0 = Instant::now();
        let guard = spawn(Arc::clone(&watch), Duration::from_millis(200), move |s| {
            let _ = tx.send(s);
        })
        .unwrap();
        let stuck = rx.recv_timeout(Duration::from_secs(10)).expect("fired");
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(guard.disarm(), "it fired");
        stop.store(true, Relaxed);
        spinner.join().unwrap();
        assert_eq!(stuck.workers.len(), 1, "{stuck:?}");
        let w = &stuck.workers[0];
        assert_eq!(w.worker, 1);
        assert_eq!(w.beat.op, Some(1));
        assert_eq!(w.beat.step, Some("read_seqcount_retry"));
        assert!(stuck.idle >= stuck.bound);
    }

    /// Ops that keep finishing are progress, however long the run; disarmed,
    /// the watchdog ends without firing.
    #[test]
    fn steady_progress_never_fires() {
        let watch = Arc::new(Watch::new(1));
        let fired = Arc::new(AtomicBool::new(false));
        let guard = {
            let fired = Arc::clone(&fired);
            spawn(Arc::clone(&watch), Duration::from_millis(100), move |_| {
                fired.store(true, SeqCst)
            })
            .unwrap()
        };
        let beat = watch.beat(0).unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(600) {
            beat.enter(0);
            std::thread::sleep(Duration::from_millis(5));
            beat.leave();
        }
        assert!(!guard.disarm());
        assert!(!fired.load(SeqCst));
    }

    #[test]
    fn the_median_epoch_time_is_a_power_of_two_above_it() {
        let mut t = EpochTimes::default();
        let mut m = None;
        for ns in [900, 1_000, 1_100, 50_000_000] {
            m = t.add(Duration::from_nanos(ns)).or(m);
        }
        assert_eq!(m, Some(Duration::from_nanos(1024)));
        let w = Watch::new(0);
        w.median_ns.store(1_000_000_000, Relaxed);
        assert_eq!(w.bound(Duration::from_secs(5)), Duration::from_secs(20));
    }

    #[test]
    fn bad_watchdog_values_are_refused() {
        assert_eq!(parse_secs(DEFAULT).unwrap(), DEFAULT_BOUND);
        assert_eq!(parse_secs("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_secs("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_secs("1m").unwrap(), Duration::from_secs(60));
        for bad in ["0", "-1", "soon", "", "inf", "NaN", "1e9", "2d"] {
            let e = parse_secs(bad).unwrap_err();
            assert!(e.contains("bad --watchdog"), "{bad}: {e}");
        }
    }
}
