//! The rayon engine: a world image, a seeded op generator per worker, and a
//! pool that runs epochs. Each epoch starts from a fresh copy of the world;
//! every worker runs its own weighted random op list on the shared address
//! spaces (per-op invariants online, each worker its own ledger: no shared
//! ghost lock), and the global invariants are checked at the epoch's
//! quiescent end.

use gupcheck_model::backend::Std;
use gupcheck_model::harness::engine::{judge_execution, run_ops, Tally};
use gupcheck_model::harness::fuzzing::random_world;
use gupcheck_model::harness::ops::Op;
use gupcheck_model::harness::scenario::Scenario;
use gupcheck_model::invariant::Violation;
use gupcheck_model::preset::PresetId;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::{Arch, Invariant, Mutation, World};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

const CLASSES: [(&str, u32); 9] = [
    ("gup", 4),
    ("release", 3),
    ("user", 2),
    ("dma", 2),
    ("mm", 1),
    ("file", 1),
    ("fork", 1),
    ("thp", 1),
    ("migrate", 1),
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
        Op::Split { .. } | Op::Collapse { .. } | Op::KsmShare { .. } => "thp",
        Op::Migrate { .. } => "migrate",
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

/// A stress workload, resolved: the world image, the op generator and the
/// pool. `sc` holds the last epoch's op lists (a failing epoch's scenario).
pub struct Workload {
    sc: Scenario,
    img: World<Std>,
    gen: Gen,
    epoch_ops: usize,
    seed: u64,
    pool: rayon::ThreadPool,
    tally: Tally,
}

/// How far a run got.
#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub epochs: u64,
    pub ops: u64,
    /// Epochs that broke only a tolerated invariant.
    pub tolerated: u64,
}

/// What a workload runs: with `disjoint` (pages per worker) each worker keeps
/// to its own pages of one address space, else all share the random world.
pub struct Shape {
    pub threads: usize,
    pub mix: Vec<(&'static str, u32)>,
    pub disjoint: Option<u64>,
    pub epoch_ops: usize,
    pub seed: u64,
}

impl Workload {
    /// The last epoch's op lists (a failing epoch's scenario).
    pub fn last_epoch(&self) -> &Scenario {
        &self.sc
    }

    pub fn new(
        preset: PresetId,
        arch: Arch,
        muts: &[Mutation],
        tolerate: Vec<Invariant>,
        shape: Shape,
    ) -> Result<Workload, String> {
        let threads = shape.threads;
        let mut sc = random_world(vec![Vec::new(); threads], true);
        if let Some(pages) = shape.disjoint {
            let pages = pages * threads as u64;
            sc.layout = Layout::one(vec![Region::anon(0, pages, Populate::Anon)]);
            sc.world.fanout_bits = 9;
            sc.world.nr_frames = pages as usize + 64;
            sc.world.nr_tables = 16 + pages as usize / 512;
        }
        sc.name = "stress".into();
        sc.about = "from gupcheck stress".into();
        let mut cfg = sc.config_for(preset, arch, muts);
        cfg.tolerate = tolerate;
        let img = World::<Std>::build(cfg, &sc.layout)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gupcheck-stress-{i}"))
            .build()
            .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
        let max_w = shape.mix.iter().map(|x| x.1).max().unwrap_or(1).max(1);
        Ok(Workload {
            sc,
            img,
            gen: Gen {
                mix: shape.mix,
                max_w,
                disjoint: shape.disjoint,
            },
            epoch_ops: shape.epoch_ops,
            seed: shape.seed,
            pool,
            tally: Tally::default(),
        })
    }

    /// Runs epochs while `go` says so; the first violation outside the
    /// tolerated ones ends the run (its epoch's ops stay in `self.sc`).
    pub fn run(
        &mut self,
        counts: &mut Counts,
        mut go: impl FnMut(&Counts) -> bool,
    ) -> Option<(u64, Box<Violation>)> {
        while go(counts) {
            let epoch = counts.epochs;
            // One seeded stream per (seed, epoch, worker): an epoch is rebuilt
            // from the report's seed alone.
            let w = Arc::new(World::<Std>::from_image(&self.img));
            let (gen, seed, n, layout) = (&self.gen, self.seed, self.epoch_ops, &self.sc.layout);
            // Each worker draws its own ops (in parallel) and hands them back
            // with its end, for a failing epoch's scenario.
            let (lists, ends): (Vec<Vec<Op>>, Vec<_>) = self
                .pool
                .broadcast(|b| {
                    let t = b.index();
                    let mut rng =
                        SmallRng::seed_from_u64(seed ^ (epoch << 20) ^ ((t as u64) << 8) ^ 0x9e37);
                    let ops = gen.ops(&mut rng, t as u64, n);
                    let end = run_ops(&w, layout, t, &ops);
                    (ops, end)
                })
                .into_iter()
                .unzip();
            self.sc.threads = lists;
            counts.ops += ends.iter().map(|e| e.ops_run as u64).sum::<u64>();
            counts.epochs += 1;
            let before = self.tally.tolerated.load(SeqCst);
            let verdict = judge_execution(&w, &self.sc, &self.tally, ends);
            counts.tolerated += self.tally.tolerated.load(SeqCst) - before;
            if let Err((v, _)) = verdict {
                return Some((epoch, v));
            }
        }
        None
    }
}
