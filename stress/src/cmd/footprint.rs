//! `gupcheck footprint`: the memory a fully populated address space takes on
//! the std backend.

use crate::ui::say;
use gupcheck_model::backend::Std;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::{Arch, World, WorldConfig};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct FootprintArgs {
    /// Size of the populated space, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(2..=65536))]
    mib: u64,
    /// Populate with PMD-mapped THPs instead of 4 KiB pages.
    #[arg(long)]
    thp: bool,
}

/// Reads a `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(a: &FootprintArgs) -> Result<ExitCode, String> {
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
    let w = World::<Std>::build(cfg, &layout)?;
    let built = t.elapsed();
    let t = Instant::now();
    let check = w.check_conservation(&[]);
    let checked = t.elapsed();
    let (Some(hwm), Some(rss)) = (status_kib("VmHWM:"), status_kib("VmRSS:")) else {
        return Err("cannot read /proc/self/status".into());
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
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
