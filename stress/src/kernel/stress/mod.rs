//! `gupcheck kernel stress`: rayon workers race the real pinning paths
//! (io_uring registered buffers, O_DIRECT, vmsplice, process_vm_readv and
//! writev) against the mm operations that break pins (fork, munmap and
//! remap, mremap, MADV_DONTNEED, MADV_COLLAPSE, MADV_PAGEOUT, mprotect, KSM,
//! clear_refs soft-dirty, truncate and hole punch, writeback) on this
//! kernel, on anonymous, THP, shared-file and hugetlb memory. Every byte carries a tag (`tag`),
//! each worker keeps the exact content its memory must have, and every op
//! is checked; at each epoch's quiescent end the system's pin counters must
//! balance (`vmstat`). The names, the report and the judging are plain code,
//! tested anywhere; the workers (`run`) are Linux only.

#[cfg(target_os = "linux")]
mod run;
pub mod tag;
pub mod vmstat;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use vmstat::Pins;

/// Every op a worker runs: a pinning path or a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// IORING_OP_WRITE_FIXED from a registered buffer: the mapping's data
    /// through the pin to the file.
    UringWrite,
    /// IORING_OP_READ_FIXED into a registered buffer: file data through the
    /// pin into the mapping.
    UringRead,
    DirectWrite,
    DirectRead,
    /// vmsplice of a range into a pipe, read by a later op.
    Vmsplice,
    PipeRead,
    PvmWrite,
    PvmRead,
    Fork,
    Remap,
    /// mremap of a whole region to another address (MREMAP_FIXED).
    Mremap,
    Dontneed,
    Collapse,
    Pageout,
    Mprotect,
    Ksm,
    ClearRefs,
    /// ftruncate of the shared file down to a page and back: the pages past
    /// it leave the page cache, the mapping then shows zeros.
    Truncate,
    /// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) of a range of
    /// the shared file: the same for the range.
    PunchHole,
    /// A store into the shared mapping, then fsync, sync_file_range or
    /// msync(MS_SYNC) of the file.
    Writeback,
    /// move_pages(2) of a range to another NUMA node: migration, which must
    /// leave a pinned page where it is (folio_expected_refs).
    Migrate,
}

pub const KINDS: [Kind; 21] = [
    Kind::UringWrite,
    Kind::UringRead,
    Kind::DirectWrite,
    Kind::DirectRead,
    Kind::Vmsplice,
    Kind::PipeRead,
    Kind::PvmWrite,
    Kind::PvmRead,
    Kind::Fork,
    Kind::Remap,
    Kind::Mremap,
    Kind::Dontneed,
    Kind::Collapse,
    Kind::Pageout,
    Kind::Mprotect,
    Kind::Ksm,
    Kind::ClearRefs,
    Kind::Truncate,
    Kind::PunchHole,
    Kind::Writeback,
    Kind::Migrate,
];

/// `--paths` names.
pub const PATHS: [&str; 4] = ["io_uring", "o_direct", "vmsplice", "process_vm"];
/// `--breakers` names.
pub const BREAKERS: [&str; 12] = [
    "fork",
    "munmap",
    "mremap",
    "dontneed",
    "collapse",
    "pageout",
    "mprotect",
    "ksm",
    "clear_refs",
    "truncate",
    "writeback",
    "migrate",
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::UringWrite => "io_uring write_fixed",
            Kind::UringRead => "io_uring read_fixed",
            Kind::DirectWrite => "O_DIRECT write",
            Kind::DirectRead => "O_DIRECT read",
            Kind::Vmsplice => "vmsplice",
            Kind::PipeRead => "pipe read",
            Kind::PvmWrite => "process_vm_writev",
            Kind::PvmRead => "process_vm_readv",
            Kind::Fork => "fork",
            Kind::Remap => "munmap+remap",
            Kind::Mremap => "mremap",
            Kind::Dontneed => "MADV_DONTNEED",
            Kind::Collapse => "MADV_COLLAPSE",
            Kind::Pageout => "MADV_PAGEOUT",
            Kind::Mprotect => "mprotect",
            Kind::Ksm => "KSM",
            Kind::ClearRefs => "clear_refs",
            Kind::Truncate => "ftruncate down+up",
            Kind::PunchHole => "punch hole",
            Kind::Writeback => "writeback",
            Kind::Migrate => "move_pages",
        }
    }

    /// The `--paths` or `--breakers` name that enables the op.
    pub fn group(self) -> &'static str {
        match self {
            Kind::UringWrite | Kind::UringRead => "io_uring",
            Kind::DirectWrite | Kind::DirectRead => "o_direct",
            Kind::Vmsplice | Kind::PipeRead => "vmsplice",
            Kind::PvmWrite | Kind::PvmRead => "process_vm",
            Kind::Fork => "fork",
            Kind::Remap => "munmap",
            Kind::Mremap => "mremap",
            Kind::Dontneed => "dontneed",
            Kind::Collapse => "collapse",
            Kind::Pageout => "pageout",
            Kind::Mprotect => "mprotect",
            Kind::Ksm => "ksm",
            Kind::ClearRefs => "clear_refs",
            Kind::Truncate | Kind::PunchHole => "truncate",
            Kind::Writeback => "writeback",
            Kind::Migrate => "migrate",
        }
    }

    pub fn is_path(self) -> bool {
        PATHS.contains(&self.group())
    }

    pub fn index(self) -> usize {
        KINDS.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// A comma-separated list of `known` names ("all" for every one).
pub fn parse_names(s: &str, known: &[&str], what: &str) -> Result<Vec<String>, String> {
    if s.trim() == "all" {
        return Ok(known.iter().map(|k| k.to_string()).collect());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !known.contains(&name) {
            return Err(format!(
                "unknown {what} '{name}' (known: {}, or all)",
                known.join(", ")
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() && what == "path" {
        return Err("--paths names no path".into());
    }
    Ok(out)
}

/// A deliberate fault of the harness, to see a check fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Fixed I/O keeps using a registration whose pages were replaced
    /// (MADV_DONTNEED, munmap): the pin no longer backs the mapping, which
    /// `coherent pin` must catch.
    StaleRegistration,
    /// A forked child never gets ready: the watchdog must stop the run.
    StuckChild,
    /// A write through a pin into the shared-file region is dropped (the
    /// O_DIRECT read lands in the scratch buffer, process_vm_writev is not
    /// made) while the shadow takes it: `no lost write` must catch the file
    /// without it.
    LostWrite,
    /// After the writeback op's sync a hole is punched in the shared file
    /// without the shadow knowing: `durable after sync` must catch it.
    CorruptFile,
}

const INJECTS: [Inject; 4] = [
    Inject::StaleRegistration,
    Inject::StuckChild,
    Inject::LostWrite,
    Inject::CorruptFile,
];

impl Inject {
    /// The `--inject` name.
    pub fn name(self) -> &'static str {
        match self {
            Inject::StaleRegistration => "stale-registration",
            Inject::StuckChild => "stuck-child",
            Inject::LostWrite => "lost-write",
            Inject::CorruptFile => "corrupt-file",
        }
    }

    pub fn parse(s: &str) -> Result<Inject, String> {
        INJECTS.into_iter().find(|i| i.name() == s).ok_or_else(|| {
            let known: Vec<&str> = INJECTS.iter().map(|i| i.name()).collect();
            format!("unknown --inject '{s}' (known: {})", known.join(", "))
        })
    }
}

/// The model's name for a post-fork write seen on the other side. A
/// FOLL_GET reference (a vmsplice pipe) taken before fork on hugetlb sees
/// it on real kernels: hugetlb_wp reuses a folio mapped once whatever
/// references others hold (upstream cow.c marks these cases XFAIL), a
/// known-open class the model names `hugetlb get leak`. Anything else, a
/// pin above all, is `no leak after fork`.
pub fn leak_invariant(via_get: bool, hugetlb: bool) -> &'static str {
    if via_get && hugetlb {
        HUGETLB_GET_LEAK
    } else {
        "no leak after fork"
    }
}

pub const HUGETLB_GET_LEAK: &str = "hugetlb get leak";

/// Invariants the kernel is known not to keep: counted in the report, not
/// a violation.
pub fn is_known_open(invariant: &str) -> bool {
    invariant == HUGETLB_GET_LEAK
}

/// What `kernel stress` is asked.
#[derive(Clone, Debug)]
pub struct Config {
    pub threads: usize,
    pub duration: Duration,
    pub epoch: Duration,
    pub seed: u64,
    pub paths: Vec<String>,
    pub breakers: Vec<String>,
    pub watchdog: Duration,
    /// Where the O_DIRECT files and the shared files are made.
    pub dir: PathBuf,
    /// Where the op log goes on a violation.
    pub out: PathBuf,
    /// `--json`: the report, also when the watchdog ends the run.
    pub json: Option<PathBuf>,
    pub inject: Option<Inject>,
    pub command: String,
}

impl Config {
    pub fn kinds(&self) -> Vec<Kind> {
        KINDS
            .iter()
            .copied()
            .filter(|k| {
                self.paths.iter().any(|p| p == k.group())
                    || self.breakers.iter().any(|b| b == k.group())
            })
            .collect()
    }
}

pub const FORMAT: u32 = 1;
pub const KIND: &str = "kernel-stress";

/// One op kind's share of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindStat {
    pub op: String,
    /// Its `--paths` or `--breakers` name.
    pub group: String,
    pub ops: u64,
    pub ops_per_s: f64,
}

/// The pin counters over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PinReport {
    /// Before the first epoch, after an idle interval.
    pub baseline: Pins,
    /// At the last quiescent point.
    pub last: Pins,
    /// Quiescent points checked, and how they came out.
    pub checks: u64,
    pub balanced: u64,
    /// Points where the difference was others' (they pinned during the
    /// idle interval); the baseline then moves to what they hold.
    pub tolerated: u64,
    /// Pins taken system-wide during the run (this run's and others').
    pub acquired_during_run: u64,
    /// The largest |held - baseline| seen at a quiescent point before it
    /// settled.
    pub max_unsettled_delta: i64,
}

/// A known-open class seen during the run: how often, and where first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownOpen {
    pub invariant: String,
    pub count: u64,
    pub first: String,
}

/// A violation: the check, the invariant and the op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub invariant: String,
    pub detail: String,
    pub epoch: u64,
    pub worker: usize,
    pub op: String,
    pub seq: u64,
    /// The op log of every worker.
    #[serde(default)]
    pub op_log: String,
}

impl Found {
    pub fn line(&self) -> String {
        format!(
            "kernel stress: epoch {} broke {}: worker {} op #{} {}: {}",
            self.epoch, self.invariant, self.worker, self.seq, self.op, self.detail
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub kind: String,
    pub gupcheck: String,
    /// `uname -r`.
    pub kernel: String,
    pub command: String,
    pub seed: u64,
    pub threads: usize,
    pub duration_secs: f64,
    pub seconds: f64,
    pub epochs: u64,
    pub ops: u64,
    pub ops_per_s: f64,
    /// "deadline", "interrupted", "violation" or "watchdog".
    pub ended: String,
    pub by_op: Vec<KindStat>,
    pub pins: PinReport,
    /// What the machine offered (THP, KSM, O_DIRECT) and what the breakers
    /// achieved (collapses that took, pages KSM shared).
    pub notes: Vec<String>,
    /// Known-open classes seen (`hugetlb get leak`): not violations.
    #[serde(default)]
    pub known_open: Vec<KnownOpen>,
    pub violation: Option<Found>,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, String> {
        let r: Report = serde_json::from_str(text)
            .map_err(|e| format!("not a gupcheck kernel stress report: {e}"))?;
        if r.format != FORMAT || r.kind != KIND {
            return Err(format!(
                "report kind {} format {} (this gupcheck reads {KIND} format {FORMAT})",
                r.kind, r.format
            ));
        }
        Ok(r)
    }

    /// The counts of each op in `seconds`, in `KINDS` order, the idle ones
    /// left out.
    pub fn stats(counts: &[u64], seconds: f64) -> Vec<KindStat> {
        KINDS
            .iter()
            .zip(counts)
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| KindStat {
                op: k.name().into(),
                group: k.group().into(),
                ops: n,
                ops_per_s: n as f64 / seconds.max(1e-9),
            })
            .collect()
    }

    pub fn summary(&self) -> String {
        let p = &self.pins;
        format!(
            "kernel stress: {} threads, {:.1} s, {} epochs, {} ops, {:.0} ops/s; pin counters: {} quiescent checks, {} balanced, {} others' (tolerated), {} pins taken system-wide",
            self.threads,
            self.seconds,
            self.epochs,
            self.ops,
            self.ops_per_s,
            p.checks,
            p.balanced,
            p.tolerated,
            p.acquired_during_run
        ) + &self
            .known_open
            .iter()
            .map(|k| format!("; known-open {} seen {} times", k.invariant, k.count))
            .collect::<String>()
    }

    /// Ops per second by op, as Markdown.
    pub fn table(&self) -> String {
        let mut s = String::from("| op | group | ops | ops/s |\n|---|---|---|---|\n");
        for k in &self.by_op {
            s += &format!(
                "| {} | {} | {} | {:.0} |\n",
                k.op, k.group, k.ops, k.ops_per_s
            );
        }
        s
    }
}

/// Prints the report (the summary, ops/s by op, the violation) and writes
/// its JSON (a temp file, then renamed).
pub fn finish(r: &Report, json: Option<&std::path::Path>) {
    use crate::ui::say;
    say!("{}", r.table());
    for n in &r.notes {
        say!("note: {n}");
    }
    for k in &r.known_open {
        say!(
            "known-open: {} seen {} times (not a violation), first: {}",
            k.invariant,
            k.count,
            k.first
        );
    }
    say!("{}", r.summary());
    if let Some(f) = &r.violation {
        say!("{}", f.line());
        if !f.op_log.is_empty() {
            say!("op log of every worker: {}", f.op_log);
        }
    }
    if let Some(path) = json {
        match write_json(r, path) {
            Ok(p) => say!("report: {}", p.display()),
            Err(e) => eprintln!("gupcheck: {e}"),
        }
    }
}

fn write_json(r: &Report, path: &std::path::Path) -> Result<PathBuf, String> {
    let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n";
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("--json {}: not a file name", path.display()))?;
    gupcheck_model::harness::artifact::write_file_atomic(
        dir,
        &name.to_string_lossy(),
        text.as_bytes(),
    )
}

/// Runs the stress on this kernel.
#[cfg(target_os = "linux")]
pub fn stress(cfg: &Config) -> Result<Report, String> {
    run::run(cfg)
}

#[cfg(not(target_os = "linux"))]
pub fn stress(_: &Config) -> Result<Report, String> {
    Err("gupcheck kernel stress needs Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_are_one_line() {
        assert_eq!(parse_names("all", &PATHS, "path").unwrap().len(), 4);
        assert_eq!(
            parse_names("vmsplice, io_uring,vmsplice", &PATHS, "path").unwrap(),
            ["vmsplice", "io_uring"]
        );
        let e = parse_names("io_uring,dma", &PATHS, "path").unwrap_err();
        assert_eq!(
            e,
            "unknown path 'dma' (known: io_uring, o_direct, vmsplice, process_vm, or all)"
        );
        assert!(parse_names("", &PATHS, "path").is_err());
        assert!(parse_names("", &BREAKERS, "breaker").unwrap().is_empty());
        assert!(parse_names("fork,swap", &BREAKERS, "breaker")
            .unwrap_err()
            .starts_with("unknown breaker 'swap'"));
        assert_eq!(
            parse_names("writeback,truncate", &BREAKERS, "breaker").unwrap(),
            ["writeback", "truncate"]
        );
        assert_eq!(parse_names("all", &BREAKERS, "breaker").unwrap().len(), 12);
        assert!(parse_names("punch", &BREAKERS, "breaker")
            .unwrap_err()
            .ends_with("clear_refs, truncate, writeback, migrate, or all)"));
    }

    #[test]
    fn the_file_breakers_name_their_ops() {
        let cfg = Config {
            breakers: vec!["truncate".into(), "writeback".into()],
            ..config()
        };
        assert_eq!(
            cfg.kinds(),
            [
                Kind::UringWrite,
                Kind::UringRead,
                Kind::Truncate,
                Kind::PunchHole,
                Kind::Writeback
            ]
        );
        assert_eq!(
            [Kind::Truncate, Kind::PunchHole, Kind::Writeback].map(Kind::name),
            ["ftruncate down+up", "punch hole", "writeback"]
        );
        assert!(!Kind::Writeback.is_path());
        // Every kind has its own index, in KINDS order.
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }

    #[test]
    fn injects_parse_by_name() {
        for n in [
            "stale-registration",
            "stuck-child",
            "lost-write",
            "corrupt-file",
        ] {
            assert_eq!(Inject::parse(n).unwrap().name(), n);
        }
        assert_eq!(
            Inject::parse("oops").unwrap_err(),
            "unknown --inject 'oops' (known: stale-registration, stuck-child, lost-write, corrupt-file)"
        );
    }

    #[test]
    fn a_get_leak_on_hugetlb_is_known_open_and_a_pin_leak_never() {
        assert_eq!(leak_invariant(true, true), "hugetlb get leak");
        assert!(is_known_open(leak_invariant(true, true)));
        for (get, huge) in [(false, true), (true, false), (false, false)] {
            assert_eq!(leak_invariant(get, huge), "no leak after fork");
            assert!(!is_known_open(leak_invariant(get, huge)));
        }
        assert!(!is_known_open("coherent pin") && !is_known_open("no lost write"));
    }

    fn config() -> Config {
        Config {
            threads: 1,
            duration: Duration::from_secs(1),
            epoch: Duration::from_millis(100),
            seed: 1,
            paths: vec!["io_uring".into()],
            breakers: vec!["fork".into()],
            watchdog: Duration::from_secs(1),
            dir: PathBuf::from("/tmp"),
            out: PathBuf::from("x"),
            json: None,
            inject: None,
            command: String::new(),
        }
    }

    #[test]
    fn every_name_enables_some_op() {
        for n in PATHS.iter().chain(BREAKERS.iter()) {
            assert!(KINDS.iter().any(|k| k.group() == *n), "{n}");
        }
        let cfg = config();
        assert_eq!(cfg.kinds(), [Kind::UringWrite, Kind::UringRead, Kind::Fork]);
        assert!(Kind::PvmRead.is_path() && !Kind::Ksm.is_path());
    }

    /// A report as a 2 s run on this machine wrote it (trimmed).
    const RECORDED: &str = r#"{
  "format": 1, "kind": "kernel-stress", "gupcheck": "0.1.0",
  "kernel": "6.18.44-fc-v1252", "command": "gupcheck kernel stress --duration 2s",
  "seed": 1, "threads": 2, "duration_secs": 2.0, "seconds": 2.01, "epochs": 4,
  "ops": 3000, "ops_per_s": 1492.5, "ended": "deadline",
  "by_op": [
    {"op": "io_uring write_fixed", "group": "io_uring", "ops": 2000, "ops_per_s": 995.0},
    {"op": "fork", "group": "fork", "ops": 1000, "ops_per_s": 497.5}
  ],
  "pins": {"baseline": {"acquired": 10, "released": 10}, "last": {"acquired": 5010, "released": 5010},
           "checks": 4, "balanced": 4, "tolerated": 0, "acquired_during_run": 5000,
           "max_unsettled_delta": 2},
  "notes": ["THP: PMD 2048 kB"], "violation": null
}"#;

    #[test]
    fn a_recorded_report_reads_and_prints() {
        let r = Report::parse(RECORDED).unwrap();
        assert_eq!(
            r.summary(),
            "kernel stress: 2 threads, 2.0 s, 4 epochs, 3000 ops, 1492 ops/s; pin counters: 4 quiescent checks, 4 balanced, 0 others' (tolerated), 5000 pins taken system-wide"
        );
        assert!(r
            .table()
            .contains("| io_uring write_fixed | io_uring | 2000 | 995 |"));
        let back = Report::parse(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(Report::parse("{}")
            .unwrap_err()
            .starts_with("not a gupcheck kernel stress report"));
        // A report from before known_open reads with none.
        assert!(r.known_open.is_empty());
        let other = RECORDED.replace("\"kernel-stress\"", "\"stress\"");
        assert!(Report::parse(&other)
            .unwrap_err()
            .contains("report kind stress"));
    }

    /// A hugetlb run's end (trimmed): the known-open class is in the
    /// summary and the JSON, and is no violation.
    #[test]
    fn known_open_is_counted_not_a_violation() {
        let text = RECORDED.replace(
            "\"violation\": null",
            r#""known_open": [{"invariant": "hugetlb get leak", "count": 339,
              "first": "worker 0 op #70: the parent's vmsplice pipe of region 3 page 453 shows a forked child's write"}],
              "violation": null"#,
        );
        let r = Report::parse(&text).unwrap();
        assert!(r.violation.is_none());
        assert!(r
            .summary()
            .ends_with("5000 pins taken system-wide; known-open hugetlb get leak seen 339 times"));
        let back = Report::parse(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.known_open, r.known_open);
    }

    #[test]
    fn stats_leave_out_idle_ops() {
        let mut counts = vec![0u64; KINDS.len()];
        counts[Kind::Fork.index()] = 10;
        let s = Report::stats(&counts, 2.0);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].op.as_str(), s[0].ops_per_s), ("fork", 5.0));
        let f = Found {
            invariant: "no leak after fork".into(),
            detail: "d".into(),
            epoch: 3,
            worker: 1,
            op: "fork".into(),
            seq: 9,
            op_log: String::new(),
        };
        assert_eq!(
            f.line(),
            "kernel stress: epoch 3 broke no leak after fork: worker 1 op #9 fork: d"
        );
    }
}
