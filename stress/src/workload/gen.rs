//! The rayon engine: world images, a seeded op generator per worker, and a
//! pool that runs epochs. Each epoch starts from a fresh copy of a world:
//! either every worker runs its own weighted random op list on the shared
//! address spaces of the random world, or the workers replay a shape (a
//! scenario's threads, `shapes`) on copies of its world. Per-op invariants
//! are checked online, each worker with its own ledger (no shared ghost
//! lock), and the global invariants at the epoch's quiescent end.

use super::watchdog::{EpochTimes, Watch};
use gupcheck_model::backend::Std;
use gupcheck_model::harness::engine::{judge_execution, run_ops, Tally};
use gupcheck_model::harness::fuzzing::random_world;
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::heartbeat::Heartbeat;
use gupcheck_model::invariant::Violation;
use gupcheck_model::preset::PresetId;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::{Arch, Invariant, Mutation, World};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CLASSES: [(&str, u32); 11] = [
    ("gup", 4),
    ("release", 3),
    ("user", 2),
    ("dma", 2),
    ("mm", 1),
    ("file", 1),
    ("fork", 1),
    ("thp", 1),
    ("migrate", 1),
    ("swap", 1),
    ("ksm", 1),
];

/// The class an op's weight comes from (`None`: never generated).
fn class(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Nop => return None,
        Op::Gup { .. } | Op::GupRaw { .. } => "gup",
        Op::Release { .. } => "release",
        Op::Touch { .. }
        | Op::Load { .. }
        | Op::LocklessPeek { .. }
        | Op::ReadHandle { .. }
        | Op::MaybeDmaPinned { .. }
        | Op::CheckCoherent { .. }
        | Op::CheckPinSees { .. } => "user",
        Op::DmaWrite { .. } | Op::NotifierMap { .. } | Op::NotifierWrite => "dma",
        Op::Munmap { .. }
        | Op::Mmap { .. }
        | Op::MunmapPages { .. }
        | Op::UseMm { .. }
        | Op::ClearRefs { .. } => "mm",
        Op::Writeback { .. } | Op::Reclaim { .. } | Op::PunchHole { .. } => "file",
        Op::Fork { .. } => "fork",
        Op::Split { .. } | Op::Collapse { .. } => "thp",
        Op::KsmShare { .. } => "ksm",
        Op::Migrate { .. } => "migrate",
        Op::Pageout { .. } => "swap",
    })
}

pub fn parse_mix(s: &str, disjoint: bool) -> Result<Vec<(&'static str, u32)>, String> {
    let mut mix: Vec<(&'static str, u32)> = CLASSES.to_vec();
    if disjoint {
        // Only what stays on a worker's own pages.
        for (c, w) in &mut mix {
            if !matches!(*c, "gup" | "release" | "user" | "dma") {
                *w = 0;
            }
        }
    }
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| format!("bad --mix item '{part}' (use class=weight)"))?;
        let w: u32 = w
            .parse()
            .map_err(|_| format!("bad weight in --mix item '{part}'"))?;
        let slot = mix.iter_mut().find(|(c, _)| *c == name).ok_or_else(|| {
            let known: Vec<_> = CLASSES.iter().map(|(c, _)| *c).collect();
            format!(
                "unknown op class '{name}' in --mix (known: {})",
                known.join(", ")
            )
        })?;
        if disjoint && !matches!(name, "gup" | "release" | "user" | "dma") && w > 0 {
            return Err(format!(
                "--disjoint keeps workers on their own pages: class '{name}' cannot run"
            ));
        }
        slot.1 = w;
    }
    if mix.iter().all(|(_, w)| *w == 0) {
        return Err("--mix leaves no op class with a weight".into());
    }
    Ok(mix)
}

/// `op` moved onto worker `t`'s own pages (`pages` each, from page 0 of mm 0).
fn confine(op: Op, t: u64, pages: u64) -> Op {
    let at = |p: u16| (t * pages + u64::from(p) % pages) as u16;
    match op {
        Op::Gup {
            api,
            page,
            nr,
            flags,
            ..
        } => {
            let page = at(page);
            let left = t * pages + pages - u64::from(page);
            Op::Gup {
                api,
                mm: 0,
                page,
                nr: (u64::from(nr.max(1))).min(left) as u8,
                flags,
            }
        }
        Op::Touch { page, write, .. } => Op::Touch {
            mm: 0,
            page: at(page),
            write,
        },
        Op::Load { page, .. } => Op::Load {
            mm: 0,
            page: at(page),
        },
        Op::LocklessPeek { page, .. } => Op::LocklessPeek {
            mm: 0,
            page: at(page),
        },
        other => other,
    }
}

#[derive(Clone)]
struct Gen {
    mix: Vec<(&'static str, u32)>,
    max_w: u32,
    disjoint: Option<u64>,
}

impl Gen {
    /// Worker `t`'s ops for one epoch: arbitrary ops from a seeded stream,
    /// kept with probability weight / max weight.
    fn ops(&self, rng: &mut SmallRng, t: u64, n: usize) -> Vec<Op> {
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 64];
        while out.len() < n {
            rng.fill_bytes(&mut buf);
            let mut u = arbitrary::Unstructured::new(&buf);
            let Ok(op) = u.arbitrary::<Op>() else {
                continue;
            };
            if matches!(op, Op::GupRaw { .. }) && self.disjoint.is_some() {
                continue;
            }
            let Some(c) = class(&op) else { continue };
            let w = self.mix.iter().find(|(k, _)| *k == c).map_or(0, |x| x.1);
            if w == 0 || rng.next_u32() % self.max_w >= w {
                continue;
            }
            out.push(match self.disjoint {
                Some(pages) => confine(op, t, pages),
                None => op,
            });
        }
        out
    }
}

/// One kind of epoch, resolved.
pub enum Kind {
    /// Every worker its own weighted random ops on the shared random world
    /// (or on its own pages, with `disjoint`).
    Random,
    /// A scenario's threads replayed on a fresh copy of its world, past
    /// `tolerate`: as many copies at once as the pool has threads for.
    Shape {
        sc: Box<Scenario>,
        tolerate: Vec<Invariant>,
    },
}

/// What a workload runs.
pub struct Spec {
    pub threads: usize,
    /// Each kind of epoch with its share.
    pub kinds: Vec<(Kind, f64)>,
    /// Random epochs: op weights by class, each worker's own pages (with
    /// `disjoint`), ops per worker, and what they may break.
    pub mix: Vec<(&'static str, u32)>,
    pub disjoint: Option<u64>,
    pub epoch_ops: usize,
    pub tolerate: Vec<Invariant>,
    pub seed: u64,
}

struct Random {
    sc: Scenario,
    img: World<Std>,
    gen: Gen,
    epoch_ops: usize,
}

struct Shape {
    sc: Scenario,
    /// The world with the shape's protocol and tolerated invariants.
    img: World<Std>,
    /// Copies run at once, each on `sc.threads.len()` workers.
    copies: usize,
    /// Each thread's run time, a moving average in ns: the span that start
    /// offsets are drawn from.
    span_ns: Vec<u64>,
}

/// Rounds of a shape per epoch: each a fresh world and a start line, the
/// pool's wake-up paid once for all of them.
const ROUNDS: usize = 16;

/// A stress workload, resolved: the world images, the random op generator,
/// the shapes and the pool.
pub struct Workload {
    random: Option<Random>,
    shapes: Vec<Shape>,
    /// Cumulative shares: the random epochs (`None`) and each shape.
    picks: Vec<(f64, Option<usize>)>,
    threads: usize,
    seed: u64,
    pool: rayon::ThreadPool,
    tally: Tally,
    failed: Option<Failed>,
    /// The workers' heartbeats and the epochs' progress, for a watchdog.
    watch: Arc<Watch>,
    times: EpochTimes,
}

/// A failing epoch as a scenario: its ops as run, and what it tolerated.
#[derive(Clone)]
pub struct Failed {
    pub sc: Scenario,
    pub tolerate: Vec<Invariant>,
}

/// How far a run got.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub epochs: u64,
    pub ops: u64,
    /// Executions (a random epoch, or one copy of a shape) that broke only a
    /// tolerated invariant.
    pub tolerated: u64,
    /// Shape copies of two threads or more run, and those whose threads
    /// were running at the same time (their run intervals intersect).
    pub raced: u64,
    pub overlapped: u64,
}

/// Where the threads of a shape's round wait until all have arrived, so
/// that they start together rather than as rayon happens to wake them.
/// Counts arrivals over the rounds of an epoch: round r waits for
/// `n * (r + 1)`. Spins for `patience_ns`, then yields: two workers on one
/// core (a loaded machine) hand it over instead of spinning out their slice.
struct StartLine {
    arrived: AtomicUsize,
    n: usize,
    patience_ns: u64,
}

impl StartLine {
    fn wait(&self, round: usize) {
        let all = self.n * (round + 1);
        self.arrived.fetch_add(1, SeqCst);
        let t0 = Instant::now();
        while self.arrived.load(SeqCst) < all {
            if (t0.elapsed().as_nanos() as u64) < self.patience_ns {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Busy-waits `ns` nanoseconds: a sleep would hand the core away and start
/// the thread milliseconds late.
fn spin_for(ns: u64) {
    if ns == 0 {
        return;
    }
    let t0 = Instant::now();
    while (t0.elapsed().as_nanos() as u64) < ns {
        std::hint::spin_loop();
    }
}

/// The kind of epoch `epoch` runs: the random one (`None`) or a shape, drawn
/// from the epoch's own stream by the cumulative shares `picks`.
fn pick(picks: &[(f64, Option<usize>)], seed: u64, epoch: u64, threads: usize) -> Option<usize> {
    let total = picks.last().map_or(0.0, |p| p.0);
    let mut rng = stream(seed, epoch, threads);
    let at = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    picks.iter().find(|p| at < p.0).unwrap_or(&picks[0]).1
}

/// What a random epoch needs to be rebuilt.
struct PlanRandom {
    sc: Scenario,
    tolerate: Vec<Invariant>,
    gen: Gen,
    epoch_ops: usize,
}

/// Every epoch of a workload, rebuilt from its seed: what a watchdog names
/// when an epoch never ends (while it runs, its ops are the workers' own).
pub struct Plan {
    random: Option<PlanRandom>,
    /// Each shape, what it tolerates and its copies at once.
    shapes: Vec<(Scenario, Vec<Invariant>, usize)>,
    picks: Vec<(f64, Option<usize>)>,
    threads: usize,
    seed: u64,
}

impl Plan {
    /// Epoch `epoch` as a scenario: its op lists, one per model thread.
    pub fn epoch(&self, epoch: u64) -> Failed {
        match pick(&self.picks, self.seed, epoch, self.threads) {
            None => {
                let r = self.random.as_ref().expect("a random epoch was picked");
                let mut sc = r.sc.clone();
                sc.threads = (0..self.threads)
                    .map(|t| {
                        r.gen
                            .ops(&mut stream(self.seed, epoch, t), t as u64, r.epoch_ops)
                    })
                    .collect();
                Failed {
                    sc,
                    tolerate: r.tolerate.clone(),
                }
            }
            Some(i) => Failed {
                sc: self.shapes[i].0.clone(),
                tolerate: self.shapes[i].1.clone(),
            },
        }
    }

    /// The model thread worker `t` runs in `epoch` (`None`: it sits the
    /// epoch out).
    pub fn thread_of(&self, epoch: u64, t: usize) -> Option<usize> {
        match pick(&self.picks, self.seed, epoch, self.threads) {
            None => Some(t),
            Some(i) => {
                let (sc, _, copies) = &self.shapes[i];
                let k = sc.threads.len();
                (t / k < *copies).then_some(t % k)
            }
        }
    }
}

/// The seeded stream of worker `t` in `epoch` (`t` = threads: the epoch's
/// own draw): an epoch is rebuilt from the report's seed alone.
fn stream(seed: u64, epoch: u64, t: usize) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (epoch << 20) ^ ((t as u64) << 8) ^ 0x9e37)
}

impl Workload {
    /// The failing epoch, once `run` has returned a violation.
    pub fn failed(&self) -> Option<&Failed> {
        self.failed.as_ref()
    }

    pub fn new(
        preset: PresetId,
        arch: Arch,
        muts: &[Mutation],
        spec: Spec,
    ) -> Result<Workload, String> {
        let threads = spec.threads;
        let mut random = None;
        let mut shapes = Vec::new();
        let mut picks = Vec::new();
        let mut total = 0.0;
        for (kind, w) in spec.kinds {
            total += w;
            match kind {
                Kind::Random => {
                    let mut sc = random_world(vec![Vec::new(); threads], true);
                    if let Some(pages) = spec.disjoint {
                        let pages = pages * threads as u64;
                        sc.layout = Layout::one(vec![Region::anon(0, pages, Populate::Anon)]);
                        sc.world.fanout_bits = 9;
                        sc.world.nr_frames = pages as usize + 64;
                        sc.world.nr_tables = 16 + pages as usize / 512;
                    }
                    sc.name = "stress".into();
                    sc.about = "from gupcheck stress".into();
                    let mut cfg = sc.config_for(preset, arch, muts);
                    cfg.tolerate = spec.tolerate.clone();
                    let img = World::<Std>::build(cfg, &sc.layout)?;
                    let max_w = spec.mix.iter().map(|x| x.1).max().unwrap_or(1).max(1);
                    random = Some(Random {
                        sc,
                        img,
                        gen: Gen {
                            mix: spec.mix.clone(),
                            max_w,
                            disjoint: spec.disjoint,
                        },
                        epoch_ops: spec.epoch_ops,
                    });
                    picks.push((total, None));
                }
                Kind::Shape { sc, tolerate } => {
                    let k = sc.threads.len();
                    if k == 0 {
                        return Err(format!("shape {} has no threads", sc.name));
                    }
                    if k > threads {
                        return Err(format!(
                            "shape {} needs {k} threads; the run has {threads}",
                            sc.name
                        ));
                    }
                    let mut cfg = sc.config_for(preset, arch, muts);
                    cfg.trace = false;
                    cfg.tolerate = tolerate;
                    let img = World::<Std>::build(cfg, &sc.layout)
                        .map_err(|e| format!("shape {}: {e}", sc.name))?;
                    picks.push((total, Some(shapes.len())));
                    shapes.push(Shape {
                        span_ns: vec![0; k],
                        copies: threads / k,
                        sc: *sc,
                        img,
                    });
                }
            }
        }
        if total <= 0.0 {
            return Err("no kind of epoch has a weight".into());
        }
        let pinned = !shapes.is_empty();
        let watch = Arc::new(Watch::new(threads));
        let beats = Arc::clone(&watch);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gupcheck-stress-{i}"))
            .start_handler(move |i| {
                if pinned {
                    pin_to_cpu(i)
                }
                Heartbeat::attach(beats.beat(i));
            })
            .build()
            .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
        Ok(Workload {
            random,
            shapes,
            picks,
            threads,
            seed: spec.seed,
            pool,
            tally: Tally::default(),
            failed: None,
            watch,
            times: EpochTimes::default(),
        })
    }

    /// The workers' heartbeats and the epochs' progress, for a watchdog.
    pub fn watch(&self) -> Arc<Watch> {
        Arc::clone(&self.watch)
    }

    /// Every epoch of this workload, rebuilt from the seed on demand.
    pub fn plan(&self) -> Plan {
        Plan {
            random: self.random.as_ref().map(|r| PlanRandom {
                sc: r.sc.clone(),
                tolerate: r.img.cfg.tolerate.clone(),
                gen: r.gen.clone(),
                epoch_ops: r.epoch_ops,
            }),
            shapes: self
                .shapes
                .iter()
                .map(|s| (s.sc.clone(), s.img.cfg.tolerate.clone(), s.copies))
                .collect(),
            picks: self.picks.clone(),
            threads: self.threads,
            seed: self.seed,
        }
    }

    /// Runs epochs while `go` says so; the first violation outside the
    /// tolerated ones ends the run (its epoch in `failed()`).
    pub fn run(
        &mut self,
        counts: &mut Counts,
        mut go: impl FnMut(&Counts) -> bool,
    ) -> Option<(u64, Box<Violation>)> {
        while go(counts) {
            let epoch = counts.epochs;
            let pick = pick(&self.picks, self.seed, epoch, self.threads);
            let before = self.tally.tolerated.load(SeqCst);
            self.watch.epoch_starts(epoch);
            let t0 = Instant::now();
            let broke = match pick {
                None => self.random_epoch(epoch, counts),
                Some(i) => self.shape_epoch(i, epoch, counts),
            };
            counts.epochs += 1;
            counts.tolerated += self.tally.tolerated.load(SeqCst) - before;
            let median = self.times.add(t0.elapsed());
            self.watch.epoch_ends(counts, median);
            if let Some(v) = broke {
                return Some((epoch, v));
            }
        }
        None
    }

    /// Every worker draws its own ops and runs them on one copy of the
    /// random world, starting as rayon wakes it (16 ops or more each: the
    /// lists overlap without a start line).
    fn random_epoch(&mut self, epoch: u64, counts: &mut Counts) -> Option<Box<Violation>> {
        let r = self.random.as_ref().expect("a random epoch was picked");
        let w = Arc::new(World::<Std>::from_image(&r.img));
        let seed = self.seed;
        // Each worker draws its own ops (in parallel) and hands them back
        // with its end, for a failing epoch's scenario.
        let (lists, ends): (Vec<Vec<Op>>, Vec<_>) = self
            .pool
            .broadcast(|b| {
                let t = b.index();
                let ops = r
                    .gen
                    .ops(&mut stream(seed, epoch, t), t as u64, r.epoch_ops);
                let end = run_ops(&w, &r.sc.layout, t, &ops);
                (ops, end)
            })
            .into_iter()
            .unzip();
        counts.ops += ends.iter().map(|e| e.ops_run as u64).sum::<u64>();
        let r = self.random.as_mut().expect("a random epoch was picked");
        r.sc.threads = lists;
        let (v, _) = judge_execution(&w, &r.sc, &self.tally, ends).err()?;
        self.failed = Some(Failed {
            sc: r.sc.clone(),
            tolerate: r.img.cfg.tolerate.clone(),
        });
        Some(v)
    }

    /// Worker t runs thread t % k of copy t / k of the shape (k threads),
    /// `ROUNDS` times, each round on a fresh world and from a start line
    /// (only the first start waits for rayon to wake the workers); workers
    /// left over sit the epoch out. Each thread starts a round after a random
    /// offset within the threads' usual run time, or (one round in four) at
    /// once, so that over many rounds every relative timing of the op lists
    /// occurs. The worlds are judged at the end, each quiescent.
    fn shape_epoch(&mut self, i: usize, epoch: u64, counts: &mut Counts) -> Option<Box<Violation>> {
        let s = &self.shapes[i];
        let k = s.sc.threads.len();
        let span = s.span_ns.iter().copied().max().unwrap_or(0);
        // Threads on cores of their own arrive within about two spans of
        // each other (their run time and their offset).
        let start = StartLine {
            arrived: AtomicUsize::new(0),
            n: s.copies * k,
            patience_ns: (4 * span).clamp(2_000, 50_000),
        };
        // Set by a run that took over a second: it waited on something (a
        // lost wake-up), and the epoch's other rounds are skipped so that its
        // finding comes now rather than after as many waits again.
        let waited = AtomicBool::new(false);
        // Each copy's worlds, built by its thread 0 before the first start.
        let worlds: Vec<OnceLock<Vec<World<Std>>>> =
            (0..s.copies).map(|_| OnceLock::new()).collect();
        let seed = self.seed;
        let ran = self.pool.broadcast(|b| {
            let t = b.index();
            let (copy, j) = (t / k, t % k);
            if copy >= s.copies {
                return (Vec::new(), None);
            }
            if j == 0 {
                let _ = worlds[copy].set((0..ROUNDS).map(|_| World::from_image(&s.img)).collect());
            }
            let mut rng = stream(seed, epoch, t);
            let mut out = Vec::with_capacity(ROUNDS);
            let mut crashed = None;
            for round in 0..ROUNDS {
                let delay = match rng.next_u32() % 4 {
                    _ if span == 0 => 0,
                    0 => 0,
                    _ => rng.next_u64() % span,
                };
                start.wait(round);
                // After a panic in the model or a long wait, only the start
                // lines: the other threads wait there for this one.
                if crashed.is_some() || waited.load(SeqCst) {
                    continue;
                }
                let w = &worlds[copy].get().expect("built before the first start")[round];
                spin_for(delay);
                let t0 = Instant::now();
                let ops = &s.sc.threads[j];
                match catch_unwind(AssertUnwindSafe(|| run_ops(w, &s.sc.layout, j, ops))) {
                    Ok(end) => {
                        let t1 = Instant::now();
                        if t1 - t0 > Duration::from_secs(1) {
                            waited.store(true, SeqCst);
                        }
                        out.push((copy * ROUNDS + round, j, end, t0, t1));
                    }
                    Err(p) => crashed = Some(p),
                }
            }
            (out, crashed)
        });
        // A panic in the model is a model bug: let it surface as one.
        let ran: Vec<_> = ran
            .into_iter()
            .map(|(out, crashed)| match crashed {
                Some(p) => resume_unwind(p),
                None => out,
            })
            .collect();
        let runs = s.copies * ROUNDS;
        let mut by_run: Vec<Vec<_>> = (0..runs).map(|_| Vec::new()).collect();
        let mut took = vec![(0u64, 0u64); k];
        for (run, j, end, t0, t1) in ran.into_iter().flatten() {
            counts.ops += end.ops_run as u64;
            took[j].0 += (t1 - t0).as_nanos() as u64;
            took[j].1 += 1;
            by_run[run].push((j, end, t0, t1));
        }
        let worlds: Vec<World<Std>> = worlds
            .into_iter()
            .flat_map(|w| w.into_inner().expect("built"))
            .collect();
        let s = &mut self.shapes[i];
        for (avg, (sum, n)) in s.span_ns.iter_mut().zip(took) {
            let took = sum / n.max(1);
            // A moving average over about eight epochs; the first sets it.
            *avg = if *avg == 0 {
                took
            } else {
                *avg - *avg / 8 + took / 8
            };
        }
        let mut broke = None;
        // Rounds skipped after a long wait ran nothing.
        for (w, mut threads) in worlds.iter().zip(by_run).filter(|(_, t)| !t.is_empty()) {
            threads.sort_by_key(|x| x.0);
            if k >= 2 {
                counts.raced += 1;
                let latest_start = threads.iter().map(|x| x.2).max();
                let first_end = threads.iter().map(|x| x.3).min();
                if latest_start < first_end {
                    counts.overlapped += 1;
                }
            }
            let ends = threads.into_iter().map(|x| x.1).collect();
            if let Err((v, _)) = judge_execution(w, &s.sc, &self.tally, ends) {
                broke.get_or_insert(v);
            }
        }
        let v = broke?;
        self.failed = Some(Failed {
            sc: s.sc.clone(),
            tolerate: s.img.cfg.tolerate.clone(),
        });
        Some(v)
    }
}

/// Keeps the calling thread on the `t`-th CPU this process may use (modulo
/// their number), so that the workers of a shape run on distinct cores:
/// left to the scheduler on a busy machine, two of them often share one
/// core, and a shape's threads then run one after the other, never at the
/// same time. Best effort: where it cannot, the thread stays unpinned.
#[cfg(target_os = "linux")]
fn pin_to_cpu(t: usize) {
    // SAFETY: cpu_set_t is plain data; the calls read and write only the set
    // passed with its size, and pid 0 is the calling thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[t % cpus.len()], &mut one);
        libc::sched_setaffinity(0, size, &one);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to_cpu(_t: usize) {}

#[cfg(test)]
mod tests {
    use super::*;
    use gupcheck_model::harness::scenario;

    /// The watchdog names a stuck epoch's ops from the plan, never from the
    /// workers (stuck): the plan must rebuild the epoch exactly as it ran.
    #[test]
    fn the_plan_rebuilds_a_failing_epoch_as_it_ran() {
        let muts = [Mutation::parse("put_page_on_pin").unwrap()];
        let sc = scenario::by_name("gup_fast_vs_munmap").unwrap();
        let spec = Spec {
            threads: 2,
            kinds: vec![
                (Kind::Random, 1.0),
                (
                    Kind::Shape {
                        sc: Box::new(sc),
                        tolerate: Vec::new(),
                    },
                    1.0,
                ),
            ],
            mix: parse_mix("", false).unwrap(),
            disjoint: None,
            epoch_ops: 16,
            tolerate: Vec::new(),
            seed: 7,
        };
        let mut wl = Workload::new(PresetId::Latest, Arch::Rcu, &muts, spec).unwrap();
        let mut c = Counts::default();
        let (epoch, _) = wl.run(&mut c, |c| c.epochs < 100_000).expect("found");
        let (ran, plan) = (wl.failed().unwrap(), wl.plan());
        let rebuilt = plan.epoch(epoch);
        assert_eq!(rebuilt.sc.name, ran.sc.name);
        assert_eq!(rebuilt.sc.threads, ran.sc.threads);
        assert_eq!(rebuilt.tolerate, ran.tolerate);
        assert_eq!(plan.thread_of(epoch, 1), Some(1));
    }
}
