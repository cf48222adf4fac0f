//! `gupcheck kernel`: the model against the running kernel (`selftests`, the
//! differential of cow.c and gup_longterm.c; `stress`, real threads racing
//! real pins).

use crate::kernel::stress::{self as kstress, parse_names, Config, Inject, BREAKERS, PATHS};
use crate::kernel::vm::{self, VmArgs};
use crate::kernel::{self, report, Request};
use crate::ui::parse_duration;
use crate::ui::say;
use gupcheck_model::harness::artifact::write_file_atomic;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum KernelCmd {
    /// Every cow.c and gup_longterm.c case the model's selftests table has,
    /// run as real syscalls on this kernel and compared with the model's
    /// result for the preset nearest below `uname -r`: one table of case,
    /// backing, real result, model result, agreement and notes. Exit 1 if a
    /// case disagrees or cannot be carried out, 4 on a host that is not
    /// Linux; a missing prerequisite is a skip. Run as root for every case.
    Selftests(SelftestsArgs),
    /// rayon workers race the real pinning paths (io_uring registered
    /// buffers, O_DIRECT, vmsplice, process_vm_readv/writev) on anonymous,
    /// THP, shared-file and hugetlb memory against the mm operations that
    /// break pins (fork, munmap, mremap, MADV_DONTNEED, MADV_COLLAPSE,
    /// MADV_PAGEOUT, mprotect, KSM, clear_refs, truncate and hole punch,
    /// writeback), every byte tagged and every op checked exactly; at each
    /// epoch's end the system's pin counters must balance. Prints ops/s per
    /// op; exit 1 on a violation (the op log of every worker written to
    /// --out) or a stuck worker, 4 on a host that is not Linux.
    Stress(StressArgs),
    /// Reruns a `kernel stress` run that broke, from its report: the same
    /// command (seed, threads, paths, breakers, injected fault), so each
    /// worker draws the same ops again, for as long as the run lasted and
    /// up to --attempts times, as the interleaving is the kernel's. Exit 1
    /// when a violation shows again (the same invariant or another), 0 when
    /// none did.
    Replay(ReplayArgs),
    /// The init of a `--vm` guest (PID 1 in its initramfs); refused anywhere else.
    #[command(name = "vm-guest", hide = true)]
    VmGuest,
}

#[derive(clap::Args)]
pub struct StressArgs {
    /// How long to run: 90s, 10m, 1h (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: the cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: Option<u64>,
    /// The pinning paths, comma-separated: io_uring, o_direct, vmsplice,
    /// process_vm, or all.
    #[arg(long, default_value = "all")]
    paths: String,
    /// The breakers, comma-separated: fork, munmap, mremap, dontneed,
    /// collapse, pageout, mprotect, ksm, clear_refs, truncate (ftruncate
    /// down and back, hole punch), writeback (fsync, sync_file_range,
    /// msync), migrate (move_pages to another NUMA node), or all (empty:
    /// none).
    #[arg(long, default_value = "all")]
    breakers: String,
    /// Length of an epoch, whose end is a quiescent point: no pin held, the
    /// pin counters checked.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    epoch: Duration,
    /// Seconds without an op finished before the run is stopped and the
    /// stuck workers' ops reported (exit 1); at least 7, the longest a
    /// quiescent check waits.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_duration)]
    watchdog: Duration,
    /// Writes the report as JSON (a temp file, then renamed).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where the op log of every worker is written on a violation.
    #[arg(long, value_name = "DIR", default_value = "gupcheck-kernel-stress")]
    out: PathBuf,
    /// Where the O_DIRECT data files and the shared files are made
    /// (unlinked at once).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// A deliberate fault, to see the checks fire: stale-registration
    /// (exit 1 with `coherent pin` or `pinned exclusive`), stuck-child (the
    /// watchdog), lost-write (`no lost write`), corrupt-file (`durable
    /// after sync`).
    #[arg(long, value_name = "FAULT", value_parser = Inject::parse)]
    inject: Option<Inject>,
    /// Prints a report written by --json instead of running (exit 1 if it
    /// has a violation).
    #[arg(long, value_name = "FILE", conflicts_with = "vm")]
    from: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The report of the run that broke: kernel-stress-report.json in its
    /// --out directory (or report.json in --vm-out), or a --json file.
    report: PathBuf,
    /// Runs to try before saying it did not show again.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    attempts: u32,
    /// Where the files are made (the recorded --dir was that machine's).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Where each attempt's op log is written on a violation.
    #[arg(long, value_name = "DIR", default_value = "gupcheck-kernel-replay")]
    out: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
}

#[derive(clap::Args)]
pub struct SelftestsArgs {
    /// Writes the report as JSON (a temp file, then renamed).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Runs one case: its cow.c identifier (A3) or its whole text.
    #[arg(long, value_name = "NAME")]
    case: Option<String>,
    /// Compares with this preset instead of the one nearest below the kernel.
    #[arg(long, value_name = "P")]
    preset: Option<String>,
    /// Re-judges a report written by --json (another machine's, another
    /// preset) instead of running the cases.
    #[arg(long, value_name = "FILE", conflicts_with = "vm")]
    from: Option<PathBuf>,
    /// Where the page-cache and gup_longterm cases make their files.
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
}

pub fn run(cmd: &KernelCmd) -> Result<ExitCode, String> {
    match cmd {
        KernelCmd::Selftests(a) => selftests(a),
        KernelCmd::Stress(a) => stress(a),
        KernelCmd::Replay(a) => replay(a),
        KernelCmd::VmGuest => vm_guest(),
    }
}

#[cfg(target_os = "linux")]
fn vm_guest() -> Result<ExitCode, String> {
    // As init it ends by rebooting: never on a machine someone uses.
    if std::process::id() != 1 {
        return Err("kernel vm-guest is the init of a --vm guest and runs only as PID 1".into());
    }
    vm::guest::main()
}

#[cfg(not(target_os = "linux"))]
fn vm_guest() -> Result<ExitCode, String> {
    Err("kernel vm-guest is the init of a Linux --vm guest".into())
}

/// Whether this host can run the command (in a guest or here); prints
/// kselftest's skip otherwise.
fn runs_here(what: &str, v: &VmArgs) -> bool {
    // A guest needs a Linux gupcheck; elsewhere only one named explicitly.
    if cfg!(target_os = "linux") || (v.vm.is_some() && v.guest_binary.is_some()) {
        return true;
    }
    eprintln!("gupcheck: kernel {what} runs on Linux only (skip)");
    false
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn config(a: &StressArgs) -> Result<Config, String> {
    Ok(Config {
        threads: a.threads.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            |t| t as usize,
        ),
        duration: a.duration,
        epoch: a.epoch,
        seed: a.seed,
        paths: parse_names(&a.paths, &PATHS, "path")?,
        breakers: parse_names(&a.breakers, &BREAKERS, "breaker")?,
        watchdog: a.watchdog,
        dir: a.dir.clone(),
        out: a.out.clone(),
        json: a.json.clone(),
        inject: a.inject,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn stress(a: &StressArgs) -> Result<ExitCode, String> {
    if let Some(from) = &a.from {
        let text = std::fs::read_to_string(from)
            .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let report =
            kstress::Report::parse(&text).map_err(|e| format!("{}: {e}", from.display()))?;
        kstress::finish(&report, None);
        return Ok(exit(&report));
    }
    let cfg = config(a)?;
    if !runs_here("stress", &a.vm) {
        return Ok(ExitCode::from(4));
    }
    let (report, splats) = run_stress(a, &cfg)?;
    kstress::finish(&report, cfg.json.as_deref());
    keep_for_replay(&report, &cfg.out);
    Ok(if splats {
        ExitCode::from(1)
    } else {
        exit(&report)
    })
}

/// One run, here or in the guest: its report, and whether the guest's
/// kernel reported a bug of its own.
fn run_stress(a: &StressArgs, cfg: &Config) -> Result<(kstress::Report, bool), String> {
    match a.vm.vm.is_some() {
        true => stress_in_vm(a, cfg),
        false => Ok((kstress::stress(cfg)?, false)),
    }
}

/// A run that broke leaves its report beside its op log, for `kernel replay`.
fn keep_for_replay(report: &kstress::Report, out: &std::path::Path) {
    if report.violation.is_none() {
        return;
    }
    let json = serde_json::to_string_pretty(report).unwrap_or_default() + "\n";
    match write_file_atomic(out, REPLAY_REPORT, json.as_bytes()) {
        Ok(p) => say!("replay: gupcheck kernel replay {}", p.display()),
        Err(e) => eprintln!("gupcheck: {e}"),
    }
}

const REPLAY_REPORT: &str = "kernel-stress-report.json";

fn replay(a: &ReplayArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&a.report)
        .map_err(|e| format!("cannot read {}: {e}", a.report.display()))?;
    let rec = kstress::Report::parse(&text).map_err(|e| format!("{}: {e}", a.report.display()))?;
    let Some(found) = &rec.violation else {
        return Err(format!(
            "{}: the run ended clean ({}): nothing to replay",
            a.report.display(),
            rec.ended
        ));
    };
    let mut run = recorded_stress(&rec.command)?;
    run.dir = a.dir.clone();
    run.out = a.out.clone();
    run.json = None;
    run.vm = a.vm.clone();
    // Long enough to get past the recorded moment again.
    run.duration = Duration::from_secs_f64((rec.seconds * 1.5).max(5.0));
    if !runs_here("replay", &run.vm) {
        return Ok(ExitCode::from(4));
    }
    let cfg = config(&run)?;
    say!("replaying: {}", found.line());
    say!(
        "the command: {} (seed {}, {} threads), up to {} runs of {:.0} s",
        rec.command,
        rec.seed,
        rec.threads,
        a.attempts,
        run.duration.as_secs_f64()
    );
    if run.vm.vm.is_none() {
        if let Ok(here) = kernel::release() {
            if here != rec.kernel {
                say!("note: recorded on {}, replayed on {here}", rec.kernel);
            }
        }
    }
    for attempt in 1..=a.attempts {
        let (report, splats) = run_stress(&run, &cfg)?;
        match &report.violation {
            Some(f) => {
                kstress::finish(&report, None);
                let same = f.invariant == found.invariant;
                say!(
                    "{} on attempt {attempt} of {}: {}",
                    if same {
                        "reproduced"
                    } else {
                        "another violation"
                    },
                    a.attempts,
                    f.line()
                );
                return Ok(ExitCode::from(1));
            }
            None if splats => return Ok(ExitCode::from(1)),
            None => say!(
                "attempt {attempt}: clean, {} ops in {:.0} s",
                report.ops,
                report.seconds
            ),
        }
    }
    say!(
        "not reproduced in {} attempts: each worker ran the same ops, the kernel chose other interleavings (try --attempts)",
        a.attempts
    );
    Ok(ExitCode::SUCCESS)
}

/// The `kernel stress` arguments of a recorded command line.
fn recorded_stress(command: &str) -> Result<StressArgs, String> {
    use clap::Parser;
    let bad = |e: String| format!("cannot read the recorded command '{command}': {e}");
    let cli = crate::Cli::try_parse_from(command.split_whitespace())
        .map_err(|e| bad(e.to_string().lines().next().unwrap_or("").to_string()))?;
    match cli.cmd {
        Some(crate::Cmd::Kernel {
            cmd: KernelCmd::Stress(a),
        }) => Ok(a),
        _ => Err(bad("not a kernel stress command".into())),
    }
}

/// `kernel stress --vm`: the same run inside the guest; its report and op
/// logs come back into --vm-out.
fn stress_in_vm(a: &StressArgs, cfg: &Config) -> Result<(kstress::Report, bool), String> {
    // The guest adds --dir: its ext4 disk, or its tmpfs.
    let mut args: Vec<String> = ["kernel", "stress"].map(String::from).to_vec();
    args.extend([
        "--duration".into(),
        ms(cfg.duration),
        "--epoch".into(),
        ms(cfg.epoch),
    ]);
    args.extend([
        "--watchdog".into(),
        ms(cfg.watchdog),
        "--seed".into(),
        cfg.seed.to_string(),
    ]);
    args.extend([
        "--paths".into(),
        a.paths.clone(),
        "--breakers".into(),
        a.breakers.clone(),
    ]);
    args.extend([
        "--json".into(),
        format!("{}/report.json", vm::initramfs::OUT),
    ]);
    args.extend(["--out".into(), format!("{}/oplog", vm::initramfs::OUT)]);
    if let Some(t) = a.threads {
        args.extend(["--threads".into(), t.to_string()]);
    }
    if let Some(i) = &a.inject {
        args.extend(["--inject".into(), i.name().into()]);
    }
    let timeout =
        a.vm.timeout
            .unwrap_or(cfg.duration + Duration::from_secs(15 * 60));
    let out = vm::boot(&a.vm, args, timeout)?;
    let splats = out.show_splats();
    let Some(path) = out.file("report.json") else {
        return Err(out.no_report());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let report = kstress::Report::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if out
        .received
        .files
        .iter()
        .any(|(n, _)| n.starts_with("oplog/"))
    {
        say!("the guest's op log: {}", out.dir.join("oplog").display());
    }
    Ok((report, splats))
}

fn exit(r: &kstress::Report) -> ExitCode {
    match r.violation {
        Some(_) => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    }
}

fn selftests(a: &SelftestsArgs) -> Result<ExitCode, String> {
    // kselftest's skip, as `bench` does for what it cannot run.
    if a.from.is_none() && !runs_here("selftests", &a.vm) {
        return Ok(ExitCode::from(4));
    }
    let mut from = a.from.clone();
    let mut splats = false;
    if a.vm.vm.is_some() {
        // An unknown case is refused before a guest boots for it.
        kernel::check_case(a.case.as_deref())?;
        let mut args: Vec<String> = ["kernel", "selftests"].map(String::from).to_vec();
        args.extend([
            "--json".into(),
            format!("{}/report.json", vm::initramfs::OUT),
        ]);
        if let Some(c) = &a.case {
            args.extend(["--case".into(), c.clone()]);
        }
        let out = vm::boot(
            &a.vm,
            args,
            a.vm.timeout.unwrap_or(Duration::from_secs(30 * 60)),
        )?;
        splats = out.show_splats();
        from = Some(out.file("report.json").ok_or_else(|| out.no_report())?);
    }
    let report = kernel::selftests(&Request {
        case: a.case.clone(),
        preset: a.preset.clone(),
        from,
        dir: a.dir.clone(),
    })?;
    say!("{}", report.markdown());
    say!("{}", report.summary());
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("--json {}: not a file name", path.display()))?;
        let written = write_file_atomic(dir, &name.to_string_lossy(), json.as_bytes())?;
        say!("written to {}", written.display());
    }
    let failures = report.failures();
    for r in &failures {
        say!(
            "DISAGREE {} / {} / {}: real {}, model {}",
            r.suite,
            r.case,
            r.backing,
            r.real.show(),
            r.model
                .as_ref()
                .map_or("not modelled".into(), report::show_cell)
        );
    }
    Ok(if failures.is_empty() && !splats {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
