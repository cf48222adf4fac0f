//! Failure artifacts: everything needed to read a violation and replay it, as
//! JSON, written atomically (a temp file renamed into place), with the versions
//! of the crate and of the engines (a shuttle schedule breaks when shuttle moves
//! its scheduling points).
//!
//! Replay: a shuttle failure replays from its recorded decisions, one execution;
//! a loom failure replays by scenario, bound and iteration index (loom's
//! exploration order is deterministic, so the same iteration fails again).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Arch, Mutation};
use crate::ghost::Step;
use crate::harness::engine::{replay_shuttle, run_exact, Engine, Failure, Outcome};
use crate::harness::scenario::Scenario;
use crate::preset::PresetId;

/// Version of the artifact format.
pub const ARTIFACT_VERSION: u32 = 1;
/// Engine versions the model is built against (pinned in Cargo.toml).
pub const LOOM_VERSION: &str = "0.7.3";
pub const SHUTTLE_VERSION: &str = "0.9.10";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    pub gupcheck: String,
    pub loom: String,
    pub shuttle: String,
    /// The scenario itself, so the artifact replays even if the catalogue changes.
    pub scenario: Scenario,
    pub preset: PresetId,
    pub arch: Arch,
    pub mutations: Vec<Mutation>,
    /// Invariants the run searched past (`WorldConfig::tolerate`): a loom
    /// replay must skip the same executions to reach the failing one.
    #[serde(default)]
    pub tolerate: Vec<crate::invariant::Invariant>,
    pub engine: Engine,
    pub failure: Failure,
    /// Context switches of the failing schedule before and after minimisation.
    #[serde(default)]
    pub minimised: Option<(usize, usize)>,
}

impl Artifact {
    pub fn new(
        sc: &Scenario,
        preset: PresetId,
        arch: Arch,
        mutations: &[Mutation],
        engine: &Engine,
        failure: Failure,
    ) -> Self {
        Artifact {
            format: ARTIFACT_VERSION,
            gupcheck: env!("CARGO_PKG_VERSION").to_string(),
            loom: LOOM_VERSION.into(),
            shuttle: SHUTTLE_VERSION.into(),
            scenario: sc.clone(),
            preset,
            arch,
            mutations: mutations.to_vec(),
            tolerate: Vec::new(),
            engine: engine.clone(),
            failure,
            minimised: None,
        }
    }

    /// The same artifact, for a run that searched past `tolerate`.
    pub fn tolerating(mut self, tolerate: &[crate::invariant::Invariant]) -> Self {
        self.tolerate = tolerate.to_vec();
        self
    }

    /// A file name that says what failed.
    pub fn file_name(&self) -> String {
        let muts: Vec<_> = self.mutations.iter().map(|m| m.name()).collect();
        format!(
            "{}-{}-{}-{}-{}-{}.json",
            self.scenario.name,
            self.preset.name(),
            self.arch.name(),
            if muts.is_empty() {
                "none".to_string()
            } else {
                muts.join("+")
            },
            self.engine.name(),
            self.failure.iteration
        )
    }

    /// Writes the artifact into `dir` through a temp file and a rename, so a
    /// reader never sees half an artifact.
    /// Replays with the trace on, keeps the replay's interleaving as the
    /// artifact's, and writes it into `dir`: the path, and whether the replay
    /// reproduced the recorded violation.
    pub fn replay_and_write(&mut self, dir: &Path) -> Result<(PathBuf, bool), String> {
        self.scenario.world.trace = true;
        let (o, same) = self.replay()?;
        if let Some(f) = o.failure {
            self.failure.trace = f.trace;
        }
        Ok((self.write_atomic(dir)?, same))
    }

    pub fn write_atomic(&self, dir: &Path) -> Result<PathBuf, String> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| format!("cannot encode the artifact: {e}"))?;
        write_file_atomic(dir, &self.file_name(), json.as_bytes())
    }

    /// Reads and checks an artifact; every problem is one line.
    pub fn load(path: &Path) -> Result<Artifact, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Artifact::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Artifact, String> {
        let mut a: Artifact =
            serde_json::from_str(text).map_err(|e| format!("not a gupcheck artifact: {e}"))?;
        a.scenario.layout.upgrade_legacy_hugetlb();
        if a.format != ARTIFACT_VERSION {
            return Err(format!(
                "artifact format {} (this gupcheck reads {ARTIFACT_VERSION})",
                a.format
            ));
        }
        if a.scenario.threads.is_empty() {
            return Err("artifact scenario has no threads".into());
        }
        if a.engine.name().starts_with("shuttle")
            && a.failure
                .schedule
                .as_ref()
                .is_none_or(|s| s.tasks.is_empty())
        {
            return Err("shuttle artifact without a schedule".into());
        }
        if a.engine.name() == "std" {
            return Err("real-thread failures carry no schedule to replay; explore the scenario under shuttle or loom".into());
        }
        Ok(a)
    }

    /// The command that replays this artifact.
    pub fn replay_command(path: &Path) -> String {
        format!("gupcheck replay {}", path.display())
    }

    /// Replays the failure: the outcome, and whether it reproduced the same
    /// invariant.
    pub fn replay(&self) -> Result<(Outcome, bool), String> {
        let mut cfg = self
            .scenario
            .config_for(self.preset, self.arch, &self.mutations);
        cfg.tolerate = self.tolerate.clone();
        let o = match (&self.engine, &self.failure.schedule) {
            (Engine::Loom { .. }, _) => run_exact(&self.scenario, &cfg, &self.engine)?,
            (_, Some(schedule)) => replay_shuttle(&self.scenario, &cfg, schedule)?,
            (_, None) => return Err("no schedule to replay".into()),
        };
        let same = o.failure.as_ref().is_some_and(|f| {
            f.violation.invariant == self.failure.violation.invariant
                && (!matches!(self.engine, Engine::Loom { .. })
                    || f.iteration == self.failure.iteration)
        });
        Ok((o, same))
    }
}

/// The interleaving as one column per thread, in global step order.
pub fn render_trace(trace: &[Step]) -> String {
    let threads = trace.iter().map(|s| s.thread).max().map_or(0, |m| m + 1);
    let width = 46;
    let mut out = String::new();
    out.push_str("  step ");
    for t in 0..threads {
        out.push_str(&format!("{:<width$}", format!("thread {t}")));
    }
    out.push('\n');
    for s in trace {
        let cell = format!("{} {:#x}", s.name, s.arg);
        out.push_str(&format!(
            "{:>6} {:pad$}{}\n",
            s.seq,
            "",
            cell,
            pad = width * s.thread
        ));
    }
    out
}

/// Writes `bytes` to `dir/name` through a temp file and a rename, so a reader
/// never sees half a file.
pub fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    Ok(path)
}

/// Fails now, not after a long run, if files cannot be written into `dir`
/// (created if missing).
pub fn check_writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".gupcheck-probe{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
