//! `gupcheck`: the command line. With no arguments it runs the default campaign:
//! every entry of the expectation matrix under loom, shuttle (random and PCT) and
//! real threads, judged against the matrix.

use clap::{Parser, Subcommand};
use gupcheck_model::expect::{self, Evaluation};
use gupcheck_model::{scenario, Engine, Invariant, Mutation};
use std::process::ExitCode;
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
    /// Memory footprint of a fully populated address space on the std backend
    /// (512-entry tables, 4 KiB pages): peak RSS and bytes per mapped page.
    Footprint(FootprintArgs),
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
}

impl Default for CampaignArgs {
    fn default() -> Self {
        CampaignArgs {
            bound: 2,
            iterations: 5_000,
            seed: 1,
            std_iterations: 200,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::List) => {
            list();
            ExitCode::SUCCESS
        }
        Some(Cmd::Campaign(a)) => campaign(&a),
        Some(Cmd::Footprint(a)) => footprint(&a),
        None => campaign(&CampaignArgs::default()),
    }
}

fn list() {
    println!("scenarios:");
    for s in scenario::catalogue() {
        println!("  {:<28} {}", s.name, s.about);
    }
    println!("arch modes:");
    println!(
        "  {:<28} TLB flush by IPI: frees of tables and data pages wait for walkers",
        "ipi"
    );
    println!(
        "  {:<28} RCU table freeing: only table frees wait (a grace period)",
        "rcu"
    );
    println!("mutations:");
    for m in Mutation::ALL {
        println!("  {:<28} {}", m.name(), m.describe());
    }
    println!("invariants:");
    for i in Invariant::ALL {
        println!("  {:<28} {}", i.name(), i.meaning());
    }
}

/// Reads a `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn footprint(a: &FootprintArgs) -> ExitCode {
    use gupcheck_model::backend::Std;
    use gupcheck_model::world::{Layout, Populate, Region};
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
    println!(
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
    println!(
        "  peak RSS        {:>8.1} MiB (VmHWM; {:.1} MiB before the build)",
        hwm as f64 / 1024.0,
        base as f64 / 1024.0
    );
    println!("  RSS now         {:>8.1} MiB", rss as f64 / 1024.0);
    println!(
        "  per mapped page {:>8.1} bytes (a modelled struct page is {} bytes)",
        (rss.saturating_sub(base)) as f64 * 1024.0 / pages as f64,
        std::mem::size_of::<gupcheck_model::mem::Frame<Std>>()
    );
    println!(
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
    println!(
        "gupcheck default campaign: {} matrix entries x {} engines (loom bound {}, shuttle {} executions, {} real-thread runs)",
        matrix.len(),
        engines.len(),
        a.bound,
        iterations,
        a.std_iterations
    );
    println!(
        "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} verdict",
        "scenario / arch / mutation", "expected", "loom", "shuttle-random", "shuttle-pct", "std"
    );
    let start = Instant::now();
    let mut bad = 0;
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
        println!(
            "{:<62} {:<22} {:<22} {:<22} {:<22} {:<22} {}",
            entry.label(),
            expected,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            verdict
        );
    }
    println!(
        "{} entries, {} mismatches, {:.1} s",
        matrix.len(),
        bad,
        start.elapsed().as_secs_f64()
    );
    if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
