//! `gupcheck fuzz-bench`: how long the `presets` fuzz target takes to find
//! each `found` entry of the expectation matrix, with the preset, arch and
//! mutation fixed (`GUPCHECK_PRESET`, `GUPCHECK_ARCH`, `GUPCHECK_MUTATION`) and
//! the target stopping only at the entry's invariants (`GUPCHECK_EXPECT`).
//! Each run starts from the checked-in seeds (`corpus/<target>`) with its own
//! libFuzzer seed; the table gives the median over the seeds.

use gupcheck_model::harness::artifact::write_file_atomic;
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::Expect;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
pub(crate) struct Row {
    pub(crate) preset: String,
    pub(crate) arch: String,
    pub(crate) mutation: Option<String>,
    pub(crate) invariant: String,
    /// The entry's invariant and the others the same bug may break first.
    pub(crate) stop_at: Vec<String>,
    pub(crate) scenarios: Vec<String>,
    /// Seconds to the finding per seed; `None`: not within the cap.
    pub(crate) times: Vec<Option<f64>>,
}

impl Row {
    pub(crate) fn label(&self) -> String {
        format!(
            "{} / {} / {} / {}",
            self.preset,
            self.arch,
            self.mutation.as_deref().unwrap_or("-"),
            self.invariant
        )
    }
    /// The median over all seeds, a miss counting as slower than any find.
    fn median(&self) -> Option<f64> {
        let mut t: Vec<f64> = self
            .times
            .iter()
            .map(|t| t.unwrap_or(f64::INFINITY))
            .collect();
        t.sort_by(f64::total_cmp);
        let m = *t.get(t.len() / 2)?;
        m.is_finite().then_some(m)
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

pub(crate) fn find_bin(target: &str) -> Result<PathBuf, String> {
    let dir = Path::new("fuzz/target");
    let found = std::fs::read_dir(dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.path().join("release").join(target))
            .find(|p| p.is_file())
    });
    found.ok_or_else(|| {
        format!(
            "no fuzz binary for '{target}' under fuzz/target/*/release (build it: cd fuzz && cargo fuzz build --sanitizer none --no-trace-compares {target}; or pass --bin)"
        )
    })
}

/// One libFuzzer run; seconds to the finding, or `None` at the cap.
pub(crate) fn run_one(
    bin: &Path,
    seeds_dir: &Path,
    row: &Row,
    seed: u64,
    cap: u64,
    tmp: &Path,
) -> Result<Option<f64>, String> {
    let work = tmp.join(format!("{}-{seed}", row.label().replace([' ', '/'], "")));
    let corpus = work.join("corpus");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg(&corpus)
        .arg(seeds_dir)
        .arg(format!("-seed={}", seed + 1))
        .arg(format!("-max_total_time={cap}"))
        .arg(format!("-artifact_prefix={}/", work.display()))
        .env("GUPCHECK_PRESET", &row.preset)
        .env("GUPCHECK_ARCH", &row.arch)
        .env(
            "GUPCHECK_MUTATION",
            row.mutation.as_deref().unwrap_or("none"),
        )
        .env("GUPCHECK_EXPECT", row.stop_at.join(","))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&work);
    if out.status.success() {
        return Ok(None);
    }
    // The target panics with "<invariant>: <detail>"; anything else is a
    // crash of its own (a model panic, a bad environment).
    let err = String::from_utf8_lossy(&out.stderr);
    if row.stop_at.iter().any(|i| err.contains(&format!("{i}: "))) {
        Ok(Some(secs))
    } else {
        let line = err
            .lines()
            .find(|l| l.contains("panicked") || l.contains("ERROR"))
            .unwrap_or("no message");
        Err(format!(
            "{}: seed {seed}: the target crashed: {line}",
            row.label()
        ))
    }
}

pub fn fuzz_bench(a: &FuzzBenchArgs) -> Result<ExitCode, String> {
    let target = gupcheck_model::harness::fuzzing::Target::parse(&a.target)?;
    if target == gupcheck_model::harness::fuzzing::Target::Ops {
        return Err("fuzz-bench times the thread targets (presets, interleave), not ops".into());
    }
    let bin = match &a.bin {
        Some(b) if b.is_file() => b.clone(),
        Some(b) => return Err(format!("no fuzz binary at {}", b.display())),
        None => find_bin(&a.target)?,
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
    for r in &mut rows {
        r.times = vec![None; a.seeds as usize];
    }
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
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let shared = Arc::new(Mutex::new((rows, 0usize, None::<String>)));
    std::thread::scope(|s| {
        for _ in 0..a.jobs {
            let (queue, shared, bin, seeds_dir, tmp) = (&queue, &shared, &bin, &seeds_dir, &tmp);
            s.spawn(move || loop {
                let Some((r, seed)) = queue.lock().unwrap().next() else {
                    return;
                };
                let row = shared.lock().unwrap().0[r].clone();
                let res = run_one(bin, seeds_dir, &row, seed, a.cap, tmp);
                let mut st = shared.lock().unwrap();
                st.1 += 1;
                match res {
                    Ok(t) => {
                        st.0[r].times[seed as usize] = t;
                        let shown =
                            t.map_or(format!("not in {} s", a.cap), |t| format!("{t:.1} s"));
                        eprintln!("[{}/{total}] {} seed {seed}: {shown}", st.1, row.label());
                    }
                    Err(e) => {
                        eprintln!("[{}/{total}] {e}", st.1);
                        st.2.get_or_insert(e);
                    }
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let (rows, _, err) = Arc::try_unwrap(shared)
        .map_err(|_| "fuzz-bench: workers still running")?
        .into_inner()
        .unwrap();
    if let Some(e) = err {
        return Err(e);
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
        let median = r.median().map_or(format!("> {cap}"), |m| format!("{m:.1}"));
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
