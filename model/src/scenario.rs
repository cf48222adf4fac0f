//! The scenario catalogue: a layout plus one op list per thread, and the world
//! shape it wants. Every engine runs the same scenarios.

use serde::{Deserialize, Serialize};

use crate::config::{Arch, Mutation, WorldConfig};
use crate::ops::{Op, OPS_VERSION};
use crate::world::{Layout, Populate, Region};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub version: u32,
    pub layout: Layout,
    pub threads: Vec<Vec<Op>>,
    /// World shape (fan-out, frames, tables); arch and mutations come from the run.
    pub world: WorldConfig,
}

impl Scenario {
    /// The world of one run of this scenario.
    pub fn config(&self, arch: Arch, mutations: &[Mutation]) -> WorldConfig {
        let mut c = self.world.clone();
        c.arch = arch;
        c.mutations = mutations.to_vec();
        c.nr_cpus = c.nr_cpus.max(self.threads.len() + 1);
        c
    }
}

/// `munmap_vs_lockless_walker`: the first design-card race at its core. One thread
/// unmaps a populated region (its PTE table becomes empty and is freed), maps it
/// again and touches it, so last-in first-out reuse hands the freed frames out
/// again; another walks the same address without locks, grabs a speculative
/// reference, rechecks and reads the page. A second region keeps the upper tables
/// alive, so exactly one PTE table is freed.
///
/// Clean in both arch modes. `walker_skips_registration` walks a freed table in
/// both; `walker_plain_get` resurrects a freed page under RCU only.
pub fn munmap_vs_lockless_walker() -> Scenario {
    Scenario {
        name: "munmap_vs_lockless_walker".into(),
        about: "lockless walker (irqs off, speculative ref, recheck) against munmap freeing pages and the PTE table".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 2, Populate::Anon),
            Region::anon(2, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                Op::Munmap { mm: 0, region: 0 },
                Op::Mmap { mm: 0, region: 0 },
                Op::Touch { mm: 0, page: 0, write: true },
            ],
            vec![Op::LocklessPeek { mm: 0, page: 0 }],
        ],
        world: WorldConfig {
            nr_frames: 12,
            nr_tables: 8,
            ..WorldConfig::small(Arch::Ipi)
        },
    }
}

/// `fault_vs_lockless_walker`: a write fault publishes a fresh page while a walker
/// looks the address up without locks. The frame it gets was just freed by an
/// unmap of a page the same thread had written (last in, first out), so its old
/// contents are still there: the walker must see either nothing, or the zeroed
/// page (`__folio_mark_uptodate`'s smp_wmb orders the zeroing before the PTE), or
/// the new store, never the frame's previous contents.
///
/// Clean in both arch modes; `fault_no_wmb` is found by loom only.
pub fn fault_vs_lockless_walker() -> Scenario {
    Scenario {
        name: "fault_vs_lockless_walker".into(),
        about: "lockless walker against a write fault that publishes a recycled frame".into(),
        version: OPS_VERSION,
        layout: Layout::one(vec![
            Region::anon(0, 1, Populate::None),
            Region::anon(1, 1, Populate::Anon),
        ]),
        threads: vec![
            vec![
                Op::Touch {
                    mm: 0,
                    page: 1,
                    write: true,
                },
                Op::Munmap { mm: 0, region: 1 },
                Op::Touch {
                    mm: 0,
                    page: 0,
                    write: true,
                },
            ],
            vec![Op::LocklessPeek { mm: 0, page: 0 }],
        ],
        world: WorldConfig {
            nr_frames: 12,
            nr_tables: 8,
            ..WorldConfig::small(Arch::Ipi)
        },
    }
}

/// Every scenario, by name.
pub fn catalogue() -> Vec<Scenario> {
    vec![munmap_vs_lockless_walker(), fault_vs_lockless_walker()]
}

pub fn by_name(name: &str) -> Result<Scenario, String> {
    catalogue()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = catalogue().into_iter().map(|s| s.name).collect();
            format!("unknown scenario '{name}' (known: {})", names.join(", "))
        })
}
