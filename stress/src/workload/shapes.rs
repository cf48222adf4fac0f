//! Racing shapes: the catalogue's scenarios as stress epochs. A shape is a
//! scenario's layout and op lists, one list per thread, replayed on real
//! threads epoch after epoch, each epoch on a fresh copy of the scenario's
//! world: the same racing pairs loom and shuttle explore (a pin against a
//! split, a collapse, a migration, fork, writeback, reclaim, MADV_PAGEOUT,
//! munmap and remap, a KSM-like sharer, clear_refs, DMA through the pin), at
//! real speed.
//!
//! `--shapes` says what the epochs run and in which shares: `random` (the
//! weighted random ops of `--mix`), `racing` (every scenario of the catalogue
//! with two threads or more, sharing its weight), or a scenario by name.

use crate::detect::ordering_only;
use gupcheck_model::harness::expect::{self, Entry};
use gupcheck_model::harness::fuzzing::KNOWN_OPEN;
use gupcheck_model::harness::scenario::{self, Scenario};
use gupcheck_model::{Arch, Invariant, Mutation, PresetId};

/// What `gupcheck stress` runs without `--shapes`: random ops only. The
/// racing shapes stay opt-in while they show a defect of the model on the
/// latest preset (a GUP-fast back-off's release racing with munmap's last
/// put), so that a plain `gupcheck stress` stays clean there.
pub const DEFAULT: &str = "random";

/// One kind of epoch, named as `--shapes` names it.
#[derive(Clone, Debug, PartialEq)]
pub enum Pick {
    Random,
    Scenario(String),
}

/// Scenarios of two threads or more: those that race.
pub fn racing() -> Vec<Scenario> {
    scenario::catalogue()
        .into_iter()
        .filter(|s| s.threads.len() >= 2)
        .collect()
}

/// `--shapes`: each kind of epoch with its share (weights need not sum to
/// anything; `racing=w` gives each racing scenario w / their number).
pub fn parse(s: &str) -> Result<Vec<(Pick, f64)>, String> {
    let mut out: Vec<(Pick, f64)> = Vec::new();
    let mut add = |p: Pick, w: f64| match out.iter_mut().find(|(q, _)| *q == p) {
        Some(slot) => slot.1 += w,
        None => out.push((p, w)),
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = match part.split_once('=') {
            Some((n, w)) => {
                let w: f64 = w
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| format!("bad weight in --shapes item '{part}'"))?;
                (n.trim(), w)
            }
            None => (part, 1.0),
        };
        match name {
            "random" => add(Pick::Random, w),
            "racing" => {
                let all = racing();
                for sc in &all {
                    add(Pick::Scenario(sc.name.clone()), w / all.len() as f64);
                }
            }
            other => {
                let sc = scenario::by_name(other)
                    .map_err(|e| format!("--shapes: {e} (or random, racing)"))?;
                add(Pick::Scenario(sc.name), w);
            }
        }
    }
    out.retain(|(_, w)| *w > 0.0);
    if out.is_empty() {
        return Err("--shapes leaves no epoch with a weight".into());
    }
    Ok(out)
}

/// The matrix entry for a scenario under a protocol, if there is one.
fn entry(sc: &str, preset: PresetId, arch: Arch, muts: &[Mutation]) -> Option<Entry> {
    let mutation = match muts {
        [] => None,
        [m] => Some(*m),
        _ => return None,
    };
    expect::matrix().into_iter().find(|e| {
        e.scenario == sc && e.preset == preset && e.arch == arch && e.mutation == mutation
    })
}

/// What a shape may break without ending a `gupcheck stress` run: the
/// known-open outcomes of every run, and those the matrix knows for this
/// scenario and protocol (known-open, known-incomplete, open-upstream, and
/// what its entry searches past). Not an ordering-only outcome this CPU cannot show: seen
/// here, it would be a defect of the model, not the kernel's known race.
pub fn tolerated(sc: &str, preset: PresetId, arch: Arch, muts: &[Mutation]) -> Vec<Invariant> {
    let mut t = KNOWN_OPEN.to_vec();
    let Some(e) = entry(sc, preset, arch, muts) else {
        return t;
    };
    t.extend(e.tolerate.iter().filter_map(|i| Invariant::parse(i).ok()));
    if e.expect.is_kernel_state() && !matches!(cpu_order(&e), CpuOrder::Forbids(_)) {
        t.extend(e.stop_at());
    }
    t.sort_by_key(|i| i.name());
    t.dedup();
    t
}

/// Whether this machine's CPU can perform the reordering an ordering-only
/// entry (the matrix's `missed_by: shuttle-pct`) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuOrder {
    /// Not an ordering-only entry.
    NotNeeded,
    /// It can; the reordering needed, in words.
    Allows(&'static str),
    /// It cannot, and why.
    Forbids(&'static str),
    /// An ordering-only entry nobody classified (a test keeps this empty).
    Unknown,
}

/// What the std backend runs on: x86 is TSO (only a store may be passed by a
/// later load, and never across a locked instruction), and the backend maps
/// smp_wmb and smp_rmb to compiler fences there.
const X86: bool = cfg!(any(target_arch = "x86_64", target_arch = "x86"));

/// The reordering each ordering-only entry needs, and whether this CPU
/// performs it. Other CPUs than x86 perform all of them (the std backend
/// emits real fences there, so dropping one exposes the hardware's order).
pub fn cpu_order(e: &Entry) -> CpuOrder {
    if !ordering_only(e) {
        return CpuOrder::NotNeeded;
    }
    let (needs, forbidden_on_x86) = match (e.scenario.as_str(), e.mutation) {
        (_, Some(Mutation::FaultNoWmb)) => (
            "the page's zeroing stores becoming visible after the PTE store (the smp_wmb dropped)",
            Some("needs the page's zeroing stores to become visible after the PTE store (the smp_wmb dropped); x86 keeps stores in order"),
        ),
        (_, Some(Mutation::WalkerRegistrationNoBarrier)) => (
            "store buffering (the walker's registration store passed by its PMD load, the smp_mb dropped), a reordering x86 performs",
            None,
        ),
        (sc, None | Some(Mutation::ForkSeqMb)) if sc.starts_with("gup_fast_vs_fork") => (
            "store buffering between fork's write_protect_seq increment and its read of the pin state (MMF_HAS_PINNED, _refcount or _pincount)",
            Some("needs store buffering between fork's write_protect_seq increment and its read of the pin state; the PTL's spin_lock (LOCK CMPXCHG) and, from 5.19, folio_get (LOCK INC) between them drain the store buffer on x86"),
        ),
        ("ksm_merge_vs_pin", None | Some(Mutation::KsmMergeIgnoresPins)) => (
            "store buffering between KSM's PTE clear and its refcount read, and GUP-fast's pin and its PTE recheck",
            Some("needs store buffering between KSM's PTE clear and GUP-fast's pin; both are locked instructions on x86 (xchg, lock cmpxchg), which nothing passes"),
        ),
        ("pin_vs_thp_migration", Some(Mutation::MigrationIgnoresRefcount)) => (
            "store buffering between set_pmd_migration_entry's PMD clear and its pin read, and GUP-fast's pin and its PMD recheck",
            Some("needs store buffering between the PMD clear and GUP-fast's pin; both are locked instructions on x86 (xchg, lock cmpxchg), which nothing passes"),
        ),
        ("ksm_share_vs_ro_pin", None) => (
            "store buffering between the sharer's PTE clear and its refcount read, and GUP-fast's grab and its PTE recheck",
            Some("needs store buffering between the sharer's PTE clear and GUP-fast's grab; both are locked instructions on x86 (xchg, lock cmpxchg), which nothing passes"),
        ),
        _ => return CpuOrder::Unknown,
    };
    match forbidden_on_x86 {
        Some(why) if X86 => CpuOrder::Forbids(why),
        _ => CpuOrder::Allows(needs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ordering_only_entry_is_classified() {
        for e in expect::matrix() {
            assert_ne!(cpu_order(&e), CpuOrder::Unknown, "{}", e.label());
        }
    }

    #[test]
    fn shapes_parse_with_shares_and_refuse_bad_input() {
        let p = parse("random=2,racing").unwrap();
        assert_eq!(p[0], (Pick::Random, 2.0));
        let n = racing().len();
        assert!(n >= 10, "{n} racing scenarios");
        assert_eq!(p.len(), n + 1);
        let share: f64 = p[1..].iter().map(|x| x.1).sum();
        assert!((share - 1.0).abs() < 1e-9);
        // A name given twice adds up.
        let p = parse("gup_fast_vs_munmap,gup_fast_vs_munmap=2").unwrap();
        assert_eq!(p, [(Pick::Scenario("gup_fast_vs_munmap".into()), 3.0)]);
        for (bad, needle) in [
            ("nope", "unknown scenario"),
            ("random=x", "bad weight"),
            ("random=-1", "bad weight"),
            ("random=0", "no epoch"),
            ("", "no epoch"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn a_shape_tolerates_what_the_matrix_knows_for_its_protocol() {
        let t = tolerated(
            "pin_vs_writeback_vs_reclaim",
            PresetId::Latest,
            Arch::Ipi,
            &[],
        );
        assert!(t.contains(&Invariant::DirtyWithoutBuffers), "{t:?}");
        // A found entry is not tolerated: stress must report it.
        let t = tolerated(
            "gup_fast_vs_fork",
            PresetId::parse("5.7").unwrap(),
            Arch::Ipi,
            &[],
        );
        assert!(!t.contains(&Invariant::CoherentPin), "{t:?}");
        // Ordering-only and beyond an x86 CPU: not tolerated there.
        let t = tolerated("gup_fast_vs_fork", PresetId::Latest, Arch::Rcu, &[]);
        assert_eq!(t.contains(&Invariant::CoherentPin), !X86, "{t:?}");
    }
}
