//! `gupcheck fuzz-bench`: how long the `presets` fuzz target takes to find
//! each `found` entry of the expectation matrix, with the preset, arch and
//! mutation fixed (`GUPCHECK_PRESET`, `GUPCHECK_ARCH`, `GUPCHECK_MUTATION`) and
//! the target stopping only at the entry's invariants (`GUPCHECK_EXPECT`).
//! Each run starts from the checked-in seeds (`corpus/<target>`) with its own
//! libFuzzer seed; the table gives the median over the seeds.

use crate::detect;

use crate::detect::FuzzRun;
use crate::pool;
use gupcheck_model::harness::artifact::write_file_atomic;
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::Expect;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

#[derive(clap::Args, Clone)]
pub struct FuzzBenchArgs {
    /// The thread target to time (presets or interleave; interleave runs the
    /// latest preset whatever the entry says, so only its entries apply).
    #[arg(long, default_value = "presets")]
    target: String,
    /// libFuzzer seeds per entry (the median is over these).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
    /// Seconds each run may take before it counts as not found.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    cap: u64,
    /// Runs at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
    /// Only rows whose label ("preset / arch / mutation / invariant")
    /// contains this, e.g. "5.7 / ipi"; repeat for several.
    #[arg(long)]
    only: Vec<String>,
    /// The fuzz target binary (default: fuzz/target/*/release/<target>, built by
    /// `cd fuzz && cargo fuzz build --sanitizer none --no-trace-compares`).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The seed corpus (default: corpus/<target>).
    #[arg(long)]
    seeds_dir: Option<PathBuf>,
    /// Where fuzz-bench.md and fuzz-bench.json are written.
    #[arg(long, default_value = "gupcheck-fuzz-bench")]
    out: PathBuf,
}

/// One row: a configuration and the invariants that count as finding it.
#[derive(Clone, Serialize)]
struct Row {
    preset: String,
    arch: String,
    mutation: Option<String>,
    invariant: String,
    /// The entry's invariant and the others the same bug may break first.
    stop_at: Vec<String>,
    scenarios: Vec<String>,
    /// Seconds to the finding per seed; `None`: not within the cap.
    times: Vec<Option<f64>>,
}

impl Row {
    fn label(&self) -> String {
        format!(
            "{} / {} / {} / {}",
            self.preset,
            self.arch,
            self.mutation.as_deref().unwrap_or("-"),
            self.invariant
        )
    }
    fn run(&self) -> FuzzRun<'_> {
        FuzzRun {
            label: self.label(),
            preset: &self.preset,
            arch: &self.arch,
            mutation: self.mutation.as_deref(),
            stop_at: &self.stop_at,
        }
    }
}

fn rows(only: &[String]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for e in expect::matrix() {
        let Expect::Found { invariant } = &e.expect else {
            continue;
        };
        let preset = e.preset.name().to_string();
        let arch = e.arch.name().to_string();
        let mutation = e.mutation.map(|m| m.name().to_string());
        let i = match rows.iter().position(|r| {
            r.preset == preset
                && r.arch == arch
                && r.mutation == mutation
                && &r.invariant == invariant
        }) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    preset,
                    arch,
                    mutation,
                    invariant: invariant.clone(),
                    stop_at: vec![invariant.clone()],
                    scenarios: Vec::new(),
                    times: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        for a in &e.also {
            if !r.stop_at.contains(a) {
                r.stop_at.push(a.clone());
            }
        }
        if !r.scenarios.contains(&e.scenario) {
            r.scenarios.push(e.scenario.clone());
        }
    }
    rows.retain(|r| only.is_empty() || only.iter().any(|o| r.label().contains(o.as_str())));
    rows
}

pub fn fuzz_bench(a: &FuzzBenchArgs) -> Result<ExitCode, String> {
    let target = gupcheck_model::harness::fuzzing::Target::parse(&a.target)?;
    if target == gupcheck_model::harness::fuzzing::Target::Ops {
        return Err("fuzz-bench times the thread targets (presets, interleave), not ops".into());
    }
    let bin = match &a.bin {
        Some(b) if b.is_file() => b.clone(),
        Some(b) => return Err(format!("no fuzz binary at {}", b.display())),
        None => detect::find_bin(&a.target)?,
    };
    let seeds_dir = a
        .seeds_dir
        .clone()
        .unwrap_or_else(|| Path::new("corpus").join(&a.target));
    if !seeds_dir.is_dir() {
        return Err(format!("no seed corpus at {}", seeds_dir.display()));
    }
    let mut rows = rows(&a.only);
    if target == gupcheck_model::harness::fuzzing::Target::Interleave {
        rows.retain(|r| r.preset == "latest" && r.arch == "rcu" && r.mutation.is_none());
    }
    if rows.is_empty() {
        return Err("no `found` entry matches".into());
    }
    gupcheck_model::harness::artifact::check_writable_dir(&a.out)?;
    let tmp = std::env::temp_dir().join(format!("gupcheck-fuzz-bench-{}", std::process::id()));
    let jobs: Vec<(usize, u64)> = (0..rows.len())
        .flat_map(|r| (0..a.seeds).map(move |s| (r, s)))
        .collect();
    eprintln!(
        "fuzz-bench: {} rows x {} seeds, cap {} s, {} at once, {}",
        rows.len(),
        a.seeds,
        a.cap,
        a.jobs,
        bin.display()
    );
    let total = jobs.len();
    let (mut finished, mut err) = (0, None);
    let work = |&(r, seed): &(usize, u64)| {
        detect::libfuzzer(&bin, &seeds_dir, &rows[r].run(), seed, a.cap, &tmp)
    };
    let mut times = vec![vec![None; a.seeds as usize]; rows.len()];
    let never = AtomicBool::new(false);
    let ran = pool::in_order(
        a.jobs as usize,
        "fuzz-bench",
        &jobs,
        &never,
        work,
        |i, res| {
            let (r, seed) = jobs[i];
            finished += 1;
            match res {
                Ok(t) => {
                    times[r][seed as usize] = t;
                    let shown = t.map_or(format!("not in {} s", a.cap), |t| format!("{t:.1} s"));
                    eprintln!(
                        "[{finished}/{total}] {} seed {seed}: {shown}",
                        rows[r].label()
                    );
                }
                Err(e) => {
                    eprintln!("[{finished}/{total}] {e}");
                    err.get_or_insert(e);
                }
            }
        },
    );
    let _ = std::fs::remove_dir_all(&tmp);
    ran?;
    if let Some(e) = err {
        return Err(e);
    }
    for (r, t) in rows.iter_mut().zip(times) {
        r.times = t;
    }
    let md = table(&rows, a.seeds, a.cap);
    print!("{md}");
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    write_file_atomic(&a.out, "fuzz-bench.md", md.as_bytes())?;
    let p = write_file_atomic(&a.out, "fuzz-bench.json", json.as_bytes())?;
    eprintln!("written: {} and fuzz-bench.md", p.display());
    Ok(ExitCode::SUCCESS)
}

fn table(rows: &[Row], seeds: u64, cap: u64) -> String {
    let mut s = format!(
        "| preset | arch | mutation | invariant | scenarios | found | median (s), {seeds} seeds, cap {cap} s |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let found = r.times.iter().filter(|t| t.is_some()).count();
        let median =
            detect::median_with_misses(&r.times).map_or(format!("> {cap}"), |m| format!("{m:.1}"));
        s += &format!(
            "| {} | {} | {} | {} | {} | {found}/{} | {median} |\n",
            r.preset,
            r.arch,
            r.mutation.as_deref().unwrap_or("-"),
            r.invariant,
            r.scenarios.join(", "),
            r.times.len()
        );
    }
    s
}
