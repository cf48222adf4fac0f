//! The expectation matrix: for each scenario, arch mode and mutation, what every
//! engine able to reach it must report. Checked in as data (`expectations.json`);
//! the default campaign and the suites are driven by it.
//!
//! `clean`: no engine may report a violation. `found`: the named invariant must be
//! reported (by the engines listed, or by at least one engine). `known-open`: found,
//! but the kernel itself never fixed it (the reason says why); it is not a failure
//! of the protocol under test. `known-incomplete`: found, and the kernel's fix is
//! known to be partial. `open-upstream`: found, real on the latest kernel and
//! fixed by no upstream patch, a problem the kernel has not acknowledged (the
//! reason says which access goes stale and what would fix it). Every class but
//! `clean` must be found: an entry fails when its outcome changes.

use serde::{Deserialize, Serialize};

use crate::config::{Arch, Mutation};
use crate::harness::engine::{run, Engine, Outcome};
use crate::harness::scenario;
use crate::invariant::Invariant;
use crate::preset::PresetId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "expect")]
pub enum Expect {
    Clean,
    Found {
        invariant: String,
    },
    KnownOpen {
        invariant: String,
        why: String,
    },
    /// Found, and the kernel's fix is known to be incomplete (the reason says
    /// where); like known-open, not a failure of the protocol under test.
    KnownIncomplete {
        invariant: String,
        why: String,
    },
    /// Found, real on the latest kernel and not fixed upstream: unlike
    /// known-open, not a limit the kernel knows and accepts (the reason says
    /// which access goes stale, on which CPUs, and what would fix it).
    OpenUpstream {
        invariant: String,
        why: String,
    },
}

impl Expect {
    /// Every class, as the matrix spells it, with its meaning.
    pub const CLASSES: [(&'static str, &'static str); 5] = [
        ("clean", "no engine may break an invariant"),
        (
            "found",
            "the invariant must be broken (a bug of the era, a mutation's effect)",
        ),
        (
            "known-open",
            "found; a flaw the kernel knows and has never fixed (the gup+DMA problem), not a failure of the preset",
        ),
        (
            "known-incomplete",
            "found; the kernel's fix is known to be partial",
        ),
        (
            "open-upstream",
            "found; real on the latest kernel and fixed by no upstream patch, not a limit the kernel acknowledges",
        ),
    ];

    /// The class as the matrix spells it (`found`, `open-upstream`, ...).
    pub fn class(&self) -> &'static str {
        match self {
            Expect::Clean => "clean",
            Expect::Found { .. } => "found",
            Expect::KnownOpen { .. } => "known-open",
            Expect::KnownIncomplete { .. } => "known-incomplete",
            Expect::OpenUpstream { .. } => "open-upstream",
        }
    }

    /// The matrix's reason, for the classes that carry one.
    pub fn why(&self) -> Option<&str> {
        match self {
            Expect::Clean | Expect::Found { .. } => None,
            Expect::KnownOpen { why, .. }
            | Expect::KnownIncomplete { why, .. }
            | Expect::OpenUpstream { why, .. } => Some(why),
        }
    }

    /// Found, but no failure of the protocol under test: the kernel's own
    /// state (known-open, known-incomplete, open-upstream).
    pub fn is_kernel_state(&self) -> bool {
        self.why().is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub scenario: String,
    #[serde(default)]
    pub preset: PresetId,
    pub arch: Arch,
    /// The mutation applied (none: the protocol as the kernel has it).
    #[serde(default)]
    pub mutation: Option<Mutation>,
    #[serde(flatten)]
    pub expect: Expect,
    /// Engines that must find it; empty means at least one engine must.
    #[serde(default)]
    pub found_by: Vec<String>,
    /// Engines that must *not* find it (ordering-only mutations under shuttle).
    #[serde(default)]
    pub missed_by: Vec<String>,
    /// Other invariants the same bug may break first, depending on the schedule.
    #[serde(default)]
    pub also: Vec<String>,
    /// Invariants the scenario breaks anyway (its `known-open` outcomes): the
    /// engines count them and search on (`WorldConfig::tolerate`).
    #[serde(default)]
    pub tolerate: Vec<String>,
}

impl Entry {
    /// The invariant a `found`, `known-open`, `known-incomplete` or
    /// `open-upstream` entry names.
    pub fn invariant(&self) -> Option<Invariant> {
        match &self.expect {
            Expect::Clean => None,
            Expect::Found { invariant }
            | Expect::KnownOpen { invariant, .. }
            | Expect::KnownIncomplete { invariant, .. }
            | Expect::OpenUpstream { invariant, .. } => Invariant::parse(invariant).ok(),
        }
    }
    /// The invariants that count as finding this entry: its own, and those
    /// the same bug may break first (`also`).
    pub fn stop_at(&self) -> Vec<Invariant> {
        let mut v: Vec<Invariant> = self.invariant().into_iter().collect();
        v.extend(self.also.iter().filter_map(|a| Invariant::parse(a).ok()));
        v
    }
    /// The entry's scenario, and the world it runs on: its preset, arch and
    /// mutation, past its `tolerate`d invariants.
    pub fn config(&self) -> Result<(scenario::Scenario, crate::config::WorldConfig), String> {
        let sc = scenario::by_name(&self.scenario)?;
        let muts: Vec<Mutation> = self.mutation.into_iter().collect();
        let mut cfg = sc.config_for(self.preset, self.arch, &muts);
        cfg.tolerate = self
            .tolerate
            .iter()
            .filter_map(|t| Invariant::parse(t).ok())
            .collect();
        Ok((sc, cfg))
    }
    /// loom's preemption bound for this entry, one rule for every runner
    /// (tests, campaign, zoo): the design card's races get the deeper bound, as
    /// do ordering-only bugs, the races of a lockless walker with THP collapse,
    /// anonymous or file (two preemptions: into the collapse, back to the walker) and races only
    /// loom is expected to find; 1 for the rest.
    pub fn loom_bound(&self) -> usize {
        const DEEPER: [&str; 5] = [
            "gup_fast_vs_munmap",
            "munmap_vs_lockless_walker",
            "gup_fast_vs_page_mkclean",
            "gup_fast_vs_thp_collapse",
            "gup_fast_vs_file_collapse",
        ];
        let loom_only = self.found_by == ["loom"];
        if DEEPER.contains(&self.scenario.as_str()) || !self.missed_by.is_empty() || loom_only {
            2
        } else {
            1
        }
    }
    /// scenario, preset, arch and mutation (`-` for none).
    fn fields(&self) -> [&str; 4] {
        [
            &self.scenario,
            self.preset.name(),
            self.arch.name(),
            self.mutation.map_or("-", |m| m.name()),
        ]
    }
    /// How reports show the entry: `scenario / preset / arch / mutation`, and
    /// the invariants it searches past.
    pub fn label(&self) -> String {
        let mut l = self.fields().join(" / ");
        if !self.tolerate.is_empty() {
            l += &format!(" (past {})", self.tolerate.join(", "));
        }
        l
    }
    /// The entry's name as a test and a filter: `scenario/preset/arch/mutation`,
    /// and `/past-INV[+INV]` (spaces as `_`) for the invariants it searches
    /// past, so that every entry's id is unique.
    pub fn id(&self) -> String {
        let mut id = self.fields().join("/");
        if !self.tolerate.is_empty() {
            let past: Vec<String> = self
                .tolerate
                .iter()
                .map(|t| Invariant::parse(t).map_or(t.as_str(), |i| i.name()))
                .map(|t| t.replace(' ', "_"))
                .collect();
            id += &format!("/past-{}", past.join("+"));
        }
        id
    }
}

/// One entry checked against what the engines reported.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub entry: Entry,
    pub outcomes: Vec<Outcome>,
    /// `Err` says how the outcomes contradict the entry.
    pub verdict: Result<(), String>,
}

/// Runs `entry`'s scenario under each engine and judges the outcomes.
pub fn evaluate(entry: &Entry, engines: &[Engine]) -> Result<Evaluation, String> {
    let (sc, cfg) = entry.config()?;
    let mut outcomes = Vec::new();
    for e in engines {
        outcomes.push(run(&sc, &cfg, e)?);
    }
    let verdict = judge(entry, &outcomes, sc.window.is_some());
    Ok(Evaluation {
        entry: entry.clone(),
        outcomes,
        verdict,
    })
}

/// Whether `outcomes` agree with `entry`. With a race window (`window`), an
/// engine expected to miss an ordering-only bug must still have reached the
/// window: otherwise its miss would show nothing.
pub fn judge(entry: &Entry, outcomes: &[Outcome], window: bool) -> Result<(), String> {
    let found: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    match entry.invariant() {
        None => {
            if let Some(o) = found.first() {
                let f = o.failure.as_ref().expect("filtered");
                return Err(format!(
                    "expected clean, {} found {} at iteration {}",
                    o.engine, f.violation, f.iteration
                ));
            }
        }
        Some(inv) => {
            let stop_at = entry.stop_at();
            for o in &found {
                let got = o.failure.as_ref().expect("filtered").violation.invariant;
                if !stop_at.contains(&got) {
                    return Err(format!("expected {inv}, {} found {got}", o.engine));
                }
            }
            let ran = |n: &str| outcomes.iter().any(|o| o.engine == n);
            let hit = |n: &str| found.iter().any(|o| o.engine == n);
            if entry.found_by.is_empty() && found.is_empty() {
                return Err(format!("expected {inv}, no engine found it"));
            }
            for n in &entry.found_by {
                if !ran(n) {
                    return Err(format!("{n} must find {inv} but did not run"));
                }
                if !hit(n) {
                    return Err(format!("expected {inv} from {n}, which did not find it"));
                }
            }
            for n in entry.missed_by.iter().filter(|n| ran(n)) {
                if hit(n) {
                    return Err(format!("{n} is expected to miss this, but found it"));
                }
                let reached: u64 = outcomes
                    .iter()
                    .filter(|o| o.engine == *n)
                    .map(|o| o.window_hits)
                    .sum();
                if window && reached == 0 {
                    return Err(format!(
                        "{n} missed it without ever reaching the race window"
                    ));
                }
            }
        }
    }
    Ok(())
}

const MATRIX: &str = include_str!("../../expectations.json");

/// Parses and validates a matrix: every scenario, invariant and engine must exist.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let entries: Vec<Entry> =
        serde_json::from_str(text).map_err(|e| format!("expectation matrix: {e}"))?;
    const ENGINES: [&str; 5] = [
        "loom",
        "shuttle-random",
        "shuttle-pct",
        "shuttle-dfs",
        "std",
    ];
    for e in &entries {
        scenario::by_name(&e.scenario).map_err(|m| format!("expectation matrix: {m}"))?;
        if e.expect != Expect::Clean && e.invariant().is_none() {
            return Err(format!(
                "expectation matrix: {}: unknown invariant",
                e.label()
            ));
        }
        for t in e.tolerate.iter().chain(&e.also) {
            Invariant::parse(t).map_err(|m| format!("expectation matrix: {}: {m}", e.label()))?;
        }
        for name in e.found_by.iter().chain(&e.missed_by) {
            if !ENGINES.contains(&name.as_str()) {
                return Err(format!(
                    "expectation matrix: {}: unknown engine '{name}'",
                    e.label()
                ));
            }
        }
    }
    Ok(entries)
}

/// The checked-in matrix.
pub fn matrix() -> Vec<Entry> {
    parse(MATRIX).expect("the checked-in expectation matrix is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_matrix_is_valid() {
        assert!(!matrix().is_empty());
    }

    #[test]
    fn bad_matrices_are_refused_with_a_reason() {
        let bad = r#"[{"scenario":"nope","arch":"ipi","expect":"clean"}]"#;
        assert!(parse(bad).unwrap_err().contains("unknown scenario"));
        let bad = r#"[{"scenario":"munmap_vs_lockless_walker","arch":"ipi","expect":"found","invariant":"bogus"}]"#;
        assert!(parse(bad).unwrap_err().contains("unknown invariant"));
        assert!(parse("{").is_err());
        // open-upstream carries its reason like known-open.
        let bad = r#"[{"scenario":"gup_fast_vs_fork","arch":"rcu","expect":"open-upstream","invariant":"coherent pin"}]"#;
        assert!(parse(bad).unwrap_err().contains("why"));
    }

    #[test]
    fn every_class_is_listed_and_spelt_as_the_matrix_spells_it() {
        let inv = || "coherent pin".to_string();
        let why = || "because".to_string();
        let all = [
            Expect::Clean,
            Expect::Found { invariant: inv() },
            Expect::KnownOpen {
                invariant: inv(),
                why: why(),
            },
            Expect::KnownIncomplete {
                invariant: inv(),
                why: why(),
            },
            Expect::OpenUpstream {
                invariant: inv(),
                why: why(),
            },
        ];
        for (e, (name, _)) in all.iter().zip(Expect::CLASSES) {
            assert_eq!(e.class(), name);
            let json = serde_json::to_value(e).unwrap();
            assert_eq!(json["expect"], name);
            assert_eq!(e.is_kernel_state(), e.why().is_some());
        }
        let used: Vec<&str> = matrix().iter().map(|e| e.expect.class()).collect();
        assert!(
            used.contains(&"open-upstream"),
            "the matrix uses open-upstream"
        );
    }
}
