//! `gupcheck`: the command line. With no arguments it runs the default campaign:
//! every entry of the expectation matrix under loom, shuttle (random and PCT) and
//! real threads, judged against the matrix.

use clap::{Parser, Subcommand};
use gupcheck_model::harness::artifact::{render_trace, Artifact};
use gupcheck_model::harness::expect;
use gupcheck_model::harness::expect::Evaluation;
use gupcheck_model::harness::scenario;
use gupcheck_model::{Engine, Invariant, Mutation};
use std::process::ExitCode;

mod bench;
mod fuzzbench;
mod stress;
mod zoo;

/// println! that does not panic when stdout is closed (`gupcheck list | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "gupcheck",
    version,
    about = "Finds concurrency bugs in the Linux kernel's page-pinning protocol"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scenarios, arch modes, mutations and invariants, one line each.
    List,
    /// The default campaign: every expectation-matrix entry under every engine.
    Campaign(CampaignArgs),
    /// Runs one scenario under one engine and prints the outcome (and, for a
    /// violation, the interleaving of kernel-named steps).
    Explore(ExploreArgs),
    /// Replays a failure artifact and prints its interleaving. Exit 1 if it
    /// reproduces the violation, 0 if not, 2 on bad input.
    Replay {
        /// The JSON artifact `explore` wrote.
        file: std::path::PathBuf,
    },
    /// Engine speeds and detection power: shuttle executions/s and loom
    /// iterations/s on gup_fast_vs_munmap, and for every `found` matrix entry the
    /// median executions-to-detect over 20 seeds for shuttle random and PCT,
    /// beside PCT's guarantee 1/(n*k^(d-1)).
    Engines {
        /// Seeds per entry and scheduler.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        seeds: u64,
        /// Executions allowed per seed before giving up.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        budget: u64,
    },
    /// Memory footprint of a fully populated address space on the std backend
    /// (512-entry tables, 4 KiB pages): peak RSS and bytes per mapped page.
    Footprint(FootprintArgs),
    /// The kernel's gup_test over the model, with its flags: -a PIN_FAST,
    /// -b PIN_BASIC, -L PIN_LONGTERM, -u GUP_FAST (default), -U GUP_BASIC, -c
    /// DUMP; -m MiB, -n pages per call, -r repeats, -w/-W write, -t/-T THP,
    /// -j threads; -S and -H are not modelled (exit 4, kselftest's skip).
    Bench(bench::BenchArgs),
    /// Runs a fuzz input (a crash file from `cargo fuzz`, a corpus entry)
    /// through its target on stable; a finding of the thread targets is
    /// written as a JSON artifact that `gupcheck replay` reproduces. Exit 1
    /// if the input finds something, 0 if not, 2 on bad input.
    FuzzArtifact {
        /// ops | interleave | presets
        target: String,
        /// The input file.
        input: std::path::PathBuf,
        /// Where the artifact is written.
        #[arg(long, default_value = "gupcheck-artifacts")]
        out: std::path::PathBuf,
    },
    /// Real threads on real atomics: epochs of weighted random ops on shared
    /// address spaces, the global invariants at each epoch's end; a violation
    /// is shrunk and searched for with shuttle PCT. Writes a JSON report; exit
    /// 1 on a violation outside the known-open ones.
    Stress(stress::StressArgs),
    /// How long a fuzz target takes to find each `found` matrix entry with its
    /// preset, arch and mutation fixed: the median over libFuzzer seeds, from
    /// the checked-in seed corpus (needs the target built with cargo fuzz).
    FuzzBench(fuzzbench::FuzzBenchArgs),
    /// Every found, known-open and known-incomplete matrix entry under every
    /// engine (loom, shuttle random and PCT, real threads, the fuzzer, stress),
    /// each with a time budget: which find it, how fast, and which cannot
    /// reach it and why. Prints the matrix, writes zoo.json, zoo.md and
    /// zoo.svg; exit 1 if an entry goes undetected or an engine breaks an
    /// invariant the matrix does not allow.
    Zoo(zoo::ZooArgs),
    /// The kernel's cow.c and gup_longterm.c cases over the model, in every
    /// preset: prints the table, writes it as Markdown and JSON, and exits 1
    /// if a row differs from the expectation (model/selftests.json).
    Selftests {
        /// Where selftests.md and selftests.json are written.
        #[arg(long, default_value = "gupcheck-selftests")]
        out: std::path::PathBuf,
    },
}

/// The protocol a run checks: a kernel release and arch mode, with mutations.
#[derive(clap::Args, Clone)]
pub struct ProtocolArgs {
    #[arg(long, default_value = "latest")]
    preset: String,
    /// ipi | rcu
    #[arg(long, default_value = "rcu")]
    arch: String,
    #[arg(long)]
    mutation: Vec<String>,
}

impl ProtocolArgs {
    /// The names resolved, or the first unknown one as an error.
    pub fn resolve(
        &self,
    ) -> Result<
        (
            gupcheck_model::PresetId,
            gupcheck_model::Arch,
            Vec<Mutation>,
        ),
        String,
    > {
        let preset = gupcheck_model::PresetId::parse(&self.preset)?;
        let arch = gupcheck_model::Arch::parse(&self.arch)?;
        let muts = self
            .mutation
            .iter()
            .map(|m| Mutation::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((preset, arch, muts))
    }
}

#[derive(clap::Args, Clone)]
struct ExploreArgs {
    /// Scenario name (see `gupcheck list`).
    scenario: String,
    /// loom | shuttle-random | shuttle-pct | shuttle-dfs | std
    #[arg(long, default_value = "shuttle-pct")]
    engine: String,
    #[command(flatten)]
    protocol: ProtocolArgs,
    /// Count violations of this invariant and search on (a scenario's known-open
    /// outcome), e.g. --tolerate no_lost_write.
    #[arg(long)]
    tolerate: Vec<String>,
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// loom preemption bound (PCT depth for shuttle-pct).
    #[arg(long, default_value_t = 2)]
    bound: usize,
    /// Where a failure's artifact is written.
    #[arg(long, default_value = "gupcheck-artifacts")]
    out: std::path::PathBuf,
    /// Report a shuttle failure as found, without shrinking its schedule.
    #[arg(long)]
    no_minimise: bool,
}

#[derive(clap::Args, Clone)]
struct FootprintArgs {
    /// Size of the populated space, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(2..=65536))]
    mib: u64,
    /// Populate with PMD-mapped THPs instead of 4 KiB pages.
    #[arg(long)]
    thp: bool,
}

#[derive(clap::Args, Clone)]
struct CampaignArgs {
    /// loom preemption bound.
    #[arg(long, default_value_t = 2)]
    bound: usize,
    /// shuttle executions per entry and scheduler.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Seed of the shuttle schedulers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Real-thread executions per entry.
    #[arg(long, default_value_t = 200)]
    std_iterations: usize,
    /// The closing rayon stress run of the latest preset.
    #[arg(long, default_value = "15s", value_parser = stress::parse_duration)]
    stress: std::time::Duration,
}

impl Default for CampaignArgs {
    fn default() -> Self {
        CampaignArgs {
            bound: 2,
            iterations: 5_000,
            seed: 1,
            std_iterations: 200,
            stress: std::time::Duration::from_secs(15),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, as every other bad input (clap adds a usage block).
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "gupcheck: {}",
                first.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.cmd {
        Some(Cmd::List) => {
            list();
            ExitCode::SUCCESS
        }
        Some(Cmd::Campaign(a)) => campaign(&a),
        Some(Cmd::Footprint(a)) => footprint(&a),
        Some(Cmd::Bench(a)) => bench::bench(&a),
        Some(Cmd::FuzzArtifact { target, input, out }) => {
            match fuzz_artifact(&target, &input, &out) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("gupcheck: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Cmd::Stress(a)) => match stress::stress(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::FuzzBench(a)) => match fuzzbench::fuzz_bench(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Zoo(a)) => match zoo::zoo(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Selftests { out }) => match selftests(&out) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Engines { seeds, budget }) => match engines(seeds, budget as usize) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Replay { file }) => match replay(&file) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Explore(a)) => match explore(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                ExitCode::from(2)
            }
        },
        None => campaign(&CampaignArgs::default()),
    }
}

fn fuzz_artifact(
    target: &str,
    input: &std::path::Path,
    out: &std::path::Path,
) -> Result<ExitCode, String> {
    use gupcheck_model::harness::fuzzing::Target;
    let t = Target::parse(target)?;
    let data = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let Some(f) = t.check(&data) else {
        say!("{target}: {} finds nothing", input.display());
        return Ok(ExitCode::SUCCESS);
    };
    say!("{target}: {} finds {f}", input.display());
    match f.artifact {
        Some(mut art) => {
            let (path, same) = art.replay_and_write(out)?;
            if !same {
                return Err(format!(
                    "the finding did not replay from its recorded schedule (written anyway: {})",
                    path.display()
                ));
            }
            say!("{}", render_trace(&art.failure.trace));
            say!("artifact: {}", path.display());
            say!("replay:   {}", Artifact::replay_command(&path));
        }
        None => say!(
            "(the ops target runs one thread on std: the input itself is the reproducer; `cargo fuzz fmt ops FILE` decodes it)"
        ),
    }
    Ok(ExitCode::from(1))
}

fn selftests(out: &std::path::Path) -> Result<ExitCode, String> {
    use gupcheck_model::harness::artifact::write_file_atomic;
    use gupcheck_model::harness::kselftest::cow as selftests;
    let t = Instant::now();
    let table = selftests::run_all();
    let md = selftests::markdown(&table);
    let json = serde_json::to_string_pretty(&table).map_err(|e| e.to_string())? + "\n";
    let md_path = write_file_atomic(out, "selftests.md", md.as_bytes())?;
    let json_path = write_file_atomic(out, "selftests.json", json.as_bytes())?;
    say!("{md}");
    say!(
        "{} rows in {:.1} s; written to {} and {}",
        table.rows.len(),
        t.elapsed().as_secs_f64(),
        md_path.display(),
        json_path.display()
    );
    let diffs = selftests::differences(&table, &selftests::expected()?);
    if diffs.is_empty() {
        say!("every row matches the expectation (model/selftests.json)");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &diffs {
        say!("MISMATCH {d}");
    }
    say!(
        "{} row(s) differ from model/selftests.json; if the change is intended, copy {} there",
        diffs.len(),
        json_path.display()
    );
    Ok(ExitCode::from(1))
}

fn list() {
    say!("scenarios:");
    for s in scenario::catalogue() {
        say!("  {:<28} {}", s.name, s.about);
    }
    say!("presets:");
    for p in gupcheck_model::PresetId::ALL {
        say!("  {:<28} {}", p.name(), p.preset().about);
    }
    say!("arch modes:");
    say!(
        "  {:<28} TLB flush by IPI: frees of tables and data pages wait for walkers",
        "ipi"
    );
    say!(
        "  {:<28} RCU table freeing: only table frees wait (a grace period)",
        "rcu"
    );
    say!("mutations:");
    for m in Mutation::ALL {
        say!("  {:<28} {}", m.name(), m.describe());
    }
    say!("invariants:");
    for i in Invariant::ALL {
        say!("  {:<28} {}", i.name(), i.meaning());
    }
}

fn explore(a: &ExploreArgs) -> Result<ExitCode, String> {
    let sc = scenario::by_name(&a.scenario)?;
    let (preset, arch, muts) = a.protocol.resolve()?;
    let n = a.iterations as usize;
    let engine = match a.engine.as_str() {
        "loom" => Engine::Loom { preemption_bound: Some(a.bound) },
        "shuttle-random" => Engine::ShuttleRandom { iterations: n, seed: a.seed },
        "shuttle-pct" => Engine::ShuttlePct { iterations: n, depth: a.bound.max(1), seed: a.seed },
        "shuttle-dfs" => Engine::ShuttleDfs { max_iterations: Some(n) },
        "std" => Engine::Std { iterations: n },
        other => {
            return Err(format!(
                "unknown engine '{other}' (expected loom, shuttle-random, shuttle-pct, shuttle-dfs or std)"
            ))
        }
    };
    let mut cfg = sc.config_for(preset, arch, &muts);
    cfg.tolerate = a
        .tolerate
        .iter()
        .map(|i| gupcheck_model::Invariant::parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    let t = Instant::now();
    let o = gupcheck_model::run(&sc, &cfg, &engine)?;
    say!(
        "{} / {} / {} / {} under {}: {} execution(s) in {:.2} s",
        o.scenario,
        preset.name(),
        o.arch,
        if o.mutations.is_empty() {
            "-".to_string()
        } else {
            o.mutations.join(",")
        },
        o.engine,
        o.iterations,
        t.elapsed().as_secs_f64()
    );
    if sc.window.is_some() {
        say!(
            "race window reached in {} of {} execution(s)",
            o.window_hits,
            o.iterations
        );
    }
    if !cfg.tolerate.is_empty() {
        say!(
            "{} execution(s) broke only a tolerated invariant",
            o.tolerated
        );
    }
    let Some(f) = o.failure else {
        say!("no violation");
        return Ok(ExitCode::SUCCESS);
    };
    let mut minimised = None;
    let f = if f.schedule.is_some() && !a.no_minimise {
        let m = gupcheck_model::harness::engine::minimise(&sc, &cfg, &f, 300)?;
        minimised = Some((m.switches_before, m.switches_after));
        let len = |f: &gupcheck_model::Failure| f.schedule.as_ref().map_or(0, |s| s.tasks.len());
        say!(
            "minimised: {} -> {} context switches, {} -> {} scheduling decisions ({} replays)",
            m.switches_before,
            m.switches_after,
            len(&f),
            len(&m.failure),
            m.replays
        );
        m.failure
    } else {
        f
    };
    say!("VIOLATION at execution {}: {}", f.iteration, f.violation);
    say!("{}", render_trace(&f.trace));
    // The engine exactly as it ran (loom's bound after LOOM_MAX_PREEMPTIONS).
    let mut art = Artifact::new(&sc, preset, arch, &muts, &o.ran, f).tolerating(&cfg.tolerate);
    art.minimised = minimised;
    let path = art.write_atomic(&a.out)?;
    say!("artifact: {}", path.display());
    say!("replay:   {}", Artifact::replay_command(&path));
    Ok(ExitCode::from(1))
}

fn replay(file: &std::path::Path) -> Result<ExitCode, String> {
    let art = Artifact::load(file)?;
    let (loom, shuttle) = (
        gupcheck_model::harness::artifact::LOOM_VERSION,
        gupcheck_model::harness::artifact::SHUTTLE_VERSION,
    );
    if art.loom != loom || art.shuttle != shuttle || art.gupcheck != env!("CARGO_PKG_VERSION") {
        eprintln!(
            "gupcheck: warning: recorded with gupcheck {} (loom {}, shuttle {}), replaying with {} (loom {loom}, shuttle {shuttle}): schedules may not carry over",
            art.gupcheck,
            art.loom,
            art.shuttle,
            env!("CARGO_PKG_VERSION")
        );
    }
    let (o, same) = art.replay()?;
    say!(
        "replaying {} / {} / {} / {} ({}, recorded with gupcheck {}, loom {}, shuttle {})",
        art.scenario.name,
        art.preset.name(),
        art.arch.name(),
        if art.mutations.is_empty() {
            "-".to_string()
        } else {
            art.mutations
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(",")
        },
        art.engine.name(),
        art.gupcheck,
        art.loom,
        art.shuttle
    );
    match &o.failure {
        Some(f) => {
            say!("{}", render_trace(&f.trace));
            say!("VIOLATION: {}", f.violation);
        }
        None => say!("no violation"),
    }
    if same {
        say!("reproduced: {}", art.failure.violation.invariant);
        Ok(ExitCode::from(1))
    } else {
        say!("not reproduced (recorded: {})", art.failure.violation);
        Ok(ExitCode::SUCCESS)
    }
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// The median over `seeds` runs of which `found` detected, the misses counting
/// as infinite: defined only if more than half found it.
fn median_with_misses(mut found: Vec<u64>, seeds: usize) -> Option<u64> {
    found.sort_unstable();
    found.get(seeds / 2).copied()
}

fn engines(seeds: u64, budget: usize) -> Result<ExitCode, String> {
    use gupcheck_model::{run, Arch};
    let sc = scenario::by_name("gup_fast_vs_munmap")?;
    let cfg = sc.config(Arch::Rcu, &[]);
    say!(
        "engine speed on gup_fast_vs_munmap (latest, rcu, clean: every execution runs to the end)"
    );
    for (name, e) in [
        (
            "shuttle random",
            Engine::ShuttleRandom {
                iterations: 20_000,
                seed: 1,
            },
        ),
        (
            "shuttle PCT d=3",
            Engine::ShuttlePct {
                iterations: 20_000,
                depth: 3,
                seed: 1,
            },
        ),
        (
            "loom, bound 3",
            Engine::Loom {
                preemption_bound: Some(3),
            },
        ),
    ] {
        let t = Instant::now();
        let o = run(&sc, &cfg, &e)?;
        let secs = t.elapsed().as_secs_f64();
        say!(
            "  {:<18} {:>8} executions in {:>6.2} s = {:>9.0} /s",
            name,
            o.iterations,
            secs,
            o.iterations as f64 / secs
        );
    }
    say!("");
    say!("executions to detect (median over {seeds} seeds; '-' = not found within {budget})");
    say!(
        "  {:<62} {:>8} {:>8} {:>4} {:>6} {:>12}",
        "scenario / preset / arch / mutation",
        "random",
        "PCT d=3",
        "n",
        "k",
        "PCT bound"
    );
    for entry in expect::matrix()
        .into_iter()
        .filter(|e| e.invariant().is_some())
    {
        if entry.missed_by.iter().any(|m| m == "shuttle-pct") {
            say!("  {:<62} {:>8} {:>8}", entry.label(), "loom", "only");
            continue;
        }
        let sc = scenario::by_name(&entry.scenario)?;
        let muts: Vec<Mutation> = entry.mutation.into_iter().collect();
        let cfg = sc.config_for(entry.preset, entry.arch, &muts);
        let mut found = [Vec::new(), Vec::new()];
        let mut k_seen = Vec::new();
        for seed in 0..seeds {
            for (i, e) in [
                Engine::ShuttleRandom {
                    iterations: budget,
                    seed,
                },
                Engine::ShuttlePct {
                    iterations: budget,
                    depth: 3,
                    seed,
                },
            ]
            .into_iter()
            .enumerate()
            {
                let o = run(&sc, &cfg, &e)?;
                if let Some(f) = o.failure {
                    found[i].push(f.iteration + 1);
                    if let Some(s) = f.schedule {
                        k_seen.push(s.tasks.len() as u64);
                    }
                }
            }
        }
        let show = |v: &Vec<u64>| {
            median_with_misses(v.clone(), seeds as usize).map_or("-".into(), |m| m.to_string())
        };
        let n = sc.threads.len() as u64 + 1;
        let k = median(k_seen).unwrap_or(0);
        let bound = if k > 0 {
            format!("1/{}", n * k * k)
        } else {
            "-".into()
        };
        say!(
            "  {:<62} {:>8} {:>8} {:>4} {:>6} {:>12}",
            entry.label(),
            show(&found[0]),
            show(&found[1]),
            n,
            k,
            bound
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn footprint(a: &FootprintArgs) -> ExitCode {
    use gupcheck_model::backend::Std;
    use gupcheck_model::state::layout::{Layout, Populate, Region};
    use gupcheck_model::{Arch, World, WorldConfig};
    let pages = a.mib * 256;
    let pmd_pages = 512u64;
    let pages = pages.div_ceil(pmd_pages) * pmd_pages;
    let pte_tables = pages / pmd_pages;
    let cfg = WorldConfig {
        fanout_bits: 9,
        nr_frames: (pages + pte_tables + 64 + pmd_pages) as usize,
        nr_tables: (pte_tables + 16) as usize,
        trace: false,
        ..WorldConfig::small(Arch::Ipi)
    };
    let populate = if a.thp { Populate::Thp } else { Populate::Anon };
    let layout = Layout::one(vec![Region::anon(0, pages, populate)]);
    let base = status_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let w = match World::<Std>::build(cfg, &layout) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("gupcheck: {e}");
            return ExitCode::from(2);
        }
    };
    let built = t.elapsed();
    let t = Instant::now();
    let check = w.check_conservation(&[]);
    let checked = t.elapsed();
    let (Some(hwm), Some(rss)) = (status_kib("VmHWM:"), status_kib("VmRSS:")) else {
        eprintln!("gupcheck: cannot read /proc/self/status");
        return ExitCode::from(2);
    };
    let tables = w.cfg.nr_tables - w.mem.free.lock().tables.len();
    say!(
        "footprint: {} MiB of {} ({} pages mapped, {} frames, {} page tables in use)",
        a.mib,
        if a.thp {
            "PMD-mapped THPs"
        } else {
            "4 KiB pages"
        },
        pages,
        w.cfg.nr_frames,
        tables
    );
    say!(
        "  peak RSS        {:>8.1} MiB (VmHWM; {:.1} MiB before the build)",
        hwm as f64 / 1024.0,
        base as f64 / 1024.0
    );
    say!("  RSS now         {:>8.1} MiB", rss as f64 / 1024.0);
    say!(
        "  per mapped page {:>8.1} bytes (a modelled struct page is {} bytes)",
        (rss.saturating_sub(base)) as f64 * 1024.0 / pages as f64,
        std::mem::size_of::<gupcheck_model::state::mem::Frame<Std>>()
    );
    say!(
        "  build           {:>8.2} s, conservation check {:.2} s",
        built.as_secs_f64(),
        checked.as_secs_f64()
    );
    if let Err(v) = check {
        eprintln!("gupcheck: the populated world breaks {}", v);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn campaign(a: &CampaignArgs) -> ExitCode {
    let iterations = a.iterations as usize;
    let engines = [
        Engine::Loom {
            preemption_bound: Some(a.bound),
        },
        Engine::ShuttleRandom {
            iterations,
            seed: a.seed,
        },
        Engine::ShuttlePct {
            iterations,
            depth: 3,
            seed: a.seed,
        },
        Engine::Std {
            iterations: a.std_iterations,
        },
    ];
    let matrix = expect::matrix();
    say!(
        "gupcheck default campaign: {} matrix entries x {} engines (loom bound {}, shuttle {} executions, {} real-thread runs)",
        matrix.len(),
        engines.len(),
        a.bound,
        iterations,
        a.std_iterations
    );
    say!(
        "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} verdict",
        "scenario / arch / mutation",
        "expected",
        "loom",
        "shuttle-random",
        "shuttle-pct",
        "std"
    );
    let start = Instant::now();
    let mut bad = 0;
    let mut evaluated = Vec::new();
    for entry in &matrix {
        let ev: Evaluation = match expect::evaluate(entry, &engines) {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("gupcheck: {e}");
                return ExitCode::from(2);
            }
        };
        let expected = entry
            .invariant()
            .map_or("clean".to_string(), |i| i.name().to_string());
        let cells: Vec<String> = ev
            .outcomes
            .iter()
            .map(|o| match &o.failure {
                Some(f) => format!("{} @{}", f.violation.invariant, f.iteration),
                None if !entry.missed_by.is_empty() && o.window_hits > 0 => {
                    format!("clean ({}, {} in window)", o.iterations, o.window_hits)
                }
                None => format!("clean ({})", o.iterations),
            })
            .collect();
        let verdict = match &ev.verdict {
            Ok(()) => "ok".to_string(),
            Err(why) => {
                bad += 1;
                format!("MISMATCH: {why}")
            }
        };
        say!(
            "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} {}",
            entry.label(),
            expected,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            verdict
        );
        evaluated.push((ev.entry, ev.outcomes));
    }
    say!(
        "{} entries, {} mismatches, {:.1} s",
        matrix.len(),
        bad,
        start.elapsed().as_secs_f64()
    );
    say!("{}", zoo::campaign_summary(&evaluated));
    say!(
        "rayon stress, latest preset, {:.0} s (report in gupcheck-stress/):",
        a.stress.as_secs_f64()
    );
    match stress::stress(&stress::StressArgs::latest(a.stress, a.seed)) {
        Ok(code) if code == ExitCode::SUCCESS => {}
        Ok(_) => bad += 1,
        Err(e) => {
            eprintln!("gupcheck: {e}");
            return ExitCode::from(2);
        }
    }
    if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
