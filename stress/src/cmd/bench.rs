//! `gupcheck bench`: the kernel's `tools/testing/selftests/mm/gup_test` over the
//! model (KERNEL.md §8.1). The same one-letter flags pick the ioctl the kernel
//! tool would issue (GUP_FAST_BENCHMARK, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK,
//! GUP_BASIC_TEST, PIN_BASIC_TEST, DUMP_USER_PAGES_TEST); `mm/gup_test.c`'s
//! kernel side is played by the model on the std backend: the range is taken
//! `-n` pages per call into one array, then released, and each repeat prints
//! the kernel tool's line `CMD: Time: get:N put:M us`. The times are the model's,
//! not a kernel's: only the pin/get and unpin/put ratios can be set beside
//! published kernel figures, and the output says so.

use clap::{ArgGroup, Args};
use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::Ctx;
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::types::Pfn;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};
use std::process::ExitCode;
use std::time::Instant;

/// kselftest's exit code for a skipped test.
const KSFT_SKIP: u8 = 4;

#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("cmd").args(["a", "b", "L", "u", "U", "c"])))]
#[allow(non_snake_case)]
pub struct BenchArgs {
    /// PIN_FAST_BENCHMARK: pin_user_pages_fast + unpin_user_pages.
    #[arg(short = 'a')]
    a: bool,
    /// PIN_BASIC_TEST: pin_user_pages under mmap_lock + unpin_user_pages.
    #[arg(short = 'b')]
    b: bool,
    /// PIN_LONGTERM_BENCHMARK: pin_user_pages(FOLL_LONGTERM) + unpin.
    #[arg(short = 'L')]
    L: bool,
    /// GUP_FAST_BENCHMARK (the default): get_user_pages_fast + put_page.
    #[arg(short = 'u')]
    u: bool,
    /// GUP_BASIC_TEST: get_user_pages under mmap_lock + put_page.
    #[arg(short = 'U')]
    U: bool,
    /// DUMP_USER_PAGES_TEST: take the range, dump_page() the pages whose
    /// indexes follow (at most 8), release.
    #[arg(short = 'c')]
    c: bool,
    /// With -c: take the pages with FOLL_PIN instead of FOLL_GET.
    #[arg(short = 'p', requires = "c")]
    p: bool,
    /// Size of the mapping in MiB.
    #[arg(short = 'm', default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    m: u64,
    /// Pages per call; -1 takes the whole range in one call.
    #[arg(short = 'n', default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..=1 << 20))]
    n: i64,
    /// Repeats.
    #[arg(short = 'r', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    r: u32,
    /// FOLL_WRITE (the default).
    #[arg(short = 'w', conflicts_with = "W")]
    w: bool,
    /// No FOLL_WRITE.
    #[arg(short = 'W')]
    W: bool,
    /// THP on: the range is PMD-mapped THPs (madvise(MADV_HUGEPAGE)).
    #[arg(short = 't', conflicts_with = "T")]
    t: bool,
    /// THP off: 4 KiB pages (the default).
    #[arg(short = 'T')]
    T: bool,
    /// MAP_SHARED (of /dev/zero: shmem).
    #[arg(short = 'S')]
    S: bool,
    /// MAP_HUGETLB.
    #[arg(short = 'H')]
    H: bool,
    /// Threads, each issuing the same ioctl on the same mapping.
    #[arg(short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    j: u64,
    /// The preset whose protocol runs.
    #[arg(long, default_value = "latest")]
    preset: String,
    /// ipi | rcu
    #[arg(long, default_value = "ipi")]
    arch: String,
    /// With -c: indexes of the pages to dump.
    which_pages: Vec<u64>,
}

/// The gup_test ioctl a command issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    GupFast,
    PinFast,
    PinLongterm,
    GupBasic,
    PinBasic,
    Dump,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::GupFast => "GUP_FAST_BENCHMARK",
            Cmd::PinFast => "PIN_FAST_BENCHMARK",
            Cmd::PinLongterm => "PIN_LONGTERM_BENCHMARK",
            Cmd::GupBasic => "GUP_BASIC_TEST",
            Cmd::PinBasic => "PIN_BASIC_TEST",
            Cmd::Dump => "DUMP_USER_PAGES_TEST",
        }
    }
    /// The command with the other reference kind, for the pin/get ratio.
    fn companion(self) -> Option<Cmd> {
        match self {
            Cmd::GupFast => Some(Cmd::PinFast),
            Cmd::PinFast => Some(Cmd::GupFast),
            Cmd::GupBasic => Some(Cmd::PinBasic),
            Cmd::PinBasic | Cmd::PinLongterm => Some(Cmd::GupBasic),
            Cmd::Dump => None,
        }
    }
}

/// One ioctl's result.
struct Timing {
    get_us: u128,
    put_us: u128,
    /// Pages actually taken (the loop stops at a short batch).
    taken: u64,
}

pub fn bench(a: &BenchArgs) -> ExitCode {
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gupcheck bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(a: &BenchArgs) -> Result<ExitCode, String> {
    let cmd = if a.a {
        Cmd::PinFast
    } else if a.b {
        Cmd::PinBasic
    } else if a.L {
        Cmd::PinLongterm
    } else if a.U {
        Cmd::GupBasic
    } else if a.c {
        Cmd::Dump
    } else {
        Cmd::GupFast
    };
    if a.H {
        println!(
            "MAP_HUGETLB: not modelled by the bench (its address space is base pages \
             and THPs; hugetlb runs in scenarios and cow.c's rows)"
        );
        return Ok(ExitCode::from(KSFT_SKIP));
    }
    if a.S {
        println!("MAP_SHARED of /dev/zero: not modelled (shmem is not in the model)");
        return Ok(ExitCode::from(KSFT_SKIP));
    }
    if !a.c && !a.which_pages.is_empty() {
        return Err("page indexes are only taken with -c".into());
    }
    if a.which_pages.len() > 8 {
        return Err("at most 8 pages can be dumped".into());
    }
    let preset = PresetId::parse(&a.preset)?;
    let arch = Arch::parse(&a.arch)?;
    let pages = a.m * 256;
    if let Some(&bad) = a.which_pages.iter().find(|&&i| i >= pages) {
        return Err(format!(
            "page index {bad} is outside the {pages}-page range"
        ));
    }
    let per_call = if a.n < 0 { pages as i64 } else { a.n.max(1) };
    let w = build(pages, a.t, preset, arch)?;
    let flags = if a.W {
        Foll::NONE
    } else {
        Foll::of(&[Flag::Write])
    };
    println!(
        "gupcheck bench: {} on {} MiB ({pages} pages, {}), {per_call} page(s) per call, {} thread(s), preset {}, {}",
        cmd.name(),
        a.m,
        if a.t { "PMD-mapped THPs" } else { "4 KiB pages" },
        a.j,
        preset.name(),
        arch.name()
    );
    let mut mine = Vec::new();
    for _ in 0..a.r {
        for t in ioctl(
            &w,
            cmd,
            pages,
            per_call,
            flags,
            a.j as usize,
            a.p,
            &a.which_pages,
        )? {
            print!("{}: Time: get:{} put:{} us", cmd.name(), t.get_us, t.put_us);
            if t.taken != pages {
                print!(", truncated (size: {})", t.taken * 4096);
            }
            println!();
            mine.push(t);
        }
    }
    if let Some(other) = cmd.companion() {
        let mut theirs = Vec::new();
        for _ in 0..a.r {
            theirs.extend(ioctl(
                &w,
                other,
                pages,
                per_call,
                flags,
                a.j as usize,
                false,
                &[],
            )?);
        }
        ratios(cmd, &mine, &theirs);
    }
    w.check_quiescent(&Default::default())
        .map_err(|v| format!("the model broke an invariant: {v}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The pin/get and unpin/put ratios of `cmd`'s timings and its companion's.
fn ratios(cmd: Cmd, mine: &[Timing], theirs: &[Timing]) {
    let (pin, get) = if matches!(cmd, Cmd::GupFast | Cmd::GupBasic) {
        (theirs, mine)
    } else {
        (mine, theirs)
    };
    let sum = |v: &[Timing], f: fn(&Timing) -> u128| v.iter().map(f).sum::<u128>().max(1);
    let pinned = if cmd == Cmd::GupFast || cmd == Cmd::PinFast {
        "PIN_FAST / GUP_FAST"
    } else {
        "PIN / GUP_BASIC"
    };
    println!(
        "ratios ({pinned}, the model's timings, comparable as ratios only): pin/get {:.2}x, unpin/put {:.2}x",
        sum(pin, |t| t.get_us) as f64 / sum(get, |t| t.get_us) as f64,
        sum(pin, |t| t.put_us) as f64 / sum(get, |t| t.put_us) as f64,
    );
    println!(
        "published kernel runs (KERNEL.md §9, 128 MiB, unknown hardware): pin/get 1.1-1.8x, unpin/put about 2x"
    );
}

/// The mapping the tool creates and touches: `pages` pages, prefaulted by a
/// write to each (the tool's `p[0] = 0` loop).
fn build(pages: u64, thp: bool, preset: PresetId, arch: Arch) -> Result<World<Std>, String> {
    let pmd = 512u64;
    if thp && !pages.is_multiple_of(pmd) {
        return Err("-t needs a size that is a multiple of 2 MiB".into());
    }
    let tables = pages.div_ceil(pmd) + 16;
    let cfg = WorldConfig {
        fanout_bits: 9,
        nr_frames: (pages + tables + 64 + pmd) as usize,
        nr_tables: tables as usize,
        preset,
        trace: false,
        ..WorldConfig::small(arch)
    };
    let populate = if thp { Populate::Thp } else { Populate::Anon };
    World::<Std>::build(cfg, &Layout::one(vec![Region::anon(0, pages, populate)]))
}

/// One `ioctl(gup_fd, cmd, &gup)` per thread, all threads at once.
fn ioctl(
    w: &World<Std>,
    cmd: Cmd,
    pages: u64,
    per_call: i64,
    flags: Foll,
    threads: usize,
    dump_pin: bool,
    which: &[u64],
) -> Result<Vec<Timing>, String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|id| {
                s.spawn(move || {
                    let mut ctx = Ctx::new(id, threads, false);
                    one(w, &mut ctx, cmd, pages, per_call, flags, dump_pin, which)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a bench thread panicked".to_string())?
            })
            .collect()
    })
}

/// `gup_test_ioctl()` -> `__gup_test_ioctl()`: take the range in batches of
/// `per_call`, stopping at a short batch; check pins are visible; release.
fn one(
    w: &World<Std>,
    ctx: &mut Ctx,
    cmd: Cmd,
    pages: u64,
    per_call: i64,
    flags: Foll,
    dump_pin: bool,
    which: &[u64],
) -> Result<Timing, String> {
    let pin = match cmd {
        Cmd::PinFast | Cmd::PinBasic | Cmd::PinLongterm => true,
        Cmd::Dump => dump_pin,
        Cmd::GupFast | Cmd::GupBasic => false,
    };
    let flags = if cmd == Cmd::PinLongterm {
        flags.with(Flag::Longterm)
    } else {
        flags
    };
    let mut got: Vec<Pfn> = Vec::with_capacity(pages as usize);
    let start = Instant::now();
    let mut addr = 0u64;
    while (got.len() as u64) < pages {
        let n = per_call.min((pages - got.len() as u64) as i64);
        let before = got.len();
        let r = match cmd {
            Cmd::GupFast => w.get_user_pages_fast(ctx, addr, n, flags, Some(&mut got)),
            Cmd::PinFast => w.pin_user_pages_fast(ctx, addr, n, flags, Some(&mut got)),
            Cmd::GupBasic => w.get_user_pages(ctx, addr, n, flags, Some(&mut got)),
            Cmd::PinBasic | Cmd::PinLongterm => {
                w.pin_user_pages(ctx, addr, n, flags, Some(&mut got))
            }
            Cmd::Dump if pin => w.pin_user_pages(ctx, addr, n, flags, Some(&mut got)),
            Cmd::Dump => w.get_user_pages(ctx, addr, n, flags, Some(&mut got)),
        }
        .map_err(|v| format!("the model broke an invariant: {v}"))?;
        let taken = (got.len() - before) as u64;
        addr += taken * 4096;
        if r < n {
            break;
        }
    }
    let get_us = start.elapsed().as_micros();
    if pin {
        // PIN_*: WARN if a page does not read as pinned.
        if let Some(p) = got.iter().find(|&&p| !w.page_maybe_dma_pinned(p)) {
            return Err(format!("{}: page {p} is not dma-pinned", cmd.name()));
        }
    }
    if cmd == Cmd::Dump {
        for &i in which.iter().filter(|&&i| (i as usize) < got.len()) {
            let p = got[i as usize];
            let head = w.mem.page_folio(p);
            println!(
                "dump_page: page index {i}: pfn:{p} head:{head} refcount:{} mapcount:{} pincount:{} maybe_dma_pinned:{}",
                w.mem.folio_ref_count(head),
                w.mem.frame(p).mapcount.read_once(),
                w.mem.frame(head).pincount.read_once(),
                w.page_maybe_dma_pinned(p)
            );
        }
    }
    let start = Instant::now();
    let released = if pin {
        w.unpin_user_pages(ctx, &got)
    } else {
        got.iter().try_for_each(|&p| w.put_page(ctx, p))
    };
    released.map_err(|v| format!("the model broke an invariant: {v}"))?;
    let put_us = start.elapsed().as_micros();
    Ok(Timing {
        get_us,
        put_us,
        taken: got.len() as u64,
    })
}
