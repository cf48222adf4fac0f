//! `gupcheck`: the command line. With no arguments it runs the default campaign:
//! every entry of the expectation matrix under loom, shuttle (random and PCT) and
//! real threads, judged against the matrix. Each command is a file in `cmd/`
//! (the zoo and the stress engine are folders of their own).

use clap::{Parser, Subcommand};
use cmd::*;
use gupcheck_model::{Arch, Mutation, PresetId};
use std::process::ExitCode;

mod cmd;
mod detect;
mod kernel;
mod pool;
mod shard;
mod ui;
mod workload;
mod zoo;

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
    Campaign(campaign::CampaignArgs),
    /// Runs one scenario under one engine and prints the outcome (and, for a
    /// violation, the interleaving of kernel-named steps).
    Explore(explore::ExploreArgs),
    /// Replays a failure artifact and prints its interleaving. Exit 1 if it
    /// reproduces the violation, 0 if not, 2 on bad input.
    Replay(replay::ReplayArgs),
    /// Writes herd7 litmus tests (C, the Linux-kernel memory model) of a
    /// scenario's orderings as .litmus files, each with the result herd7
    /// should give and why, as the expectation matrix has it.
    Litmus(litmus::LitmusArgs),
    /// Engine speeds and detection power: shuttle executions/s and loom
    /// iterations/s on gup_fast_vs_munmap, and for every `found` matrix entry the
    /// median executions-to-detect over 20 seeds for shuttle random and PCT,
    /// beside PCT's guarantee 1/(n*k^(d-1)).
    Engines(engines::EnginesArgs),
    /// Memory footprint of a fully populated address space on the std backend
    /// (512-entry tables, 4 KiB pages): peak RSS and bytes per mapped page.
    Footprint(footprint::FootprintArgs),
    /// The kernel's gup_test over the model, with its flags: -a PIN_FAST,
    /// -b PIN_BASIC, -L PIN_LONGTERM, -u GUP_FAST (default), -U GUP_BASIC, -c
    /// DUMP; -m MiB, -n pages per call, -r repeats, -w/-W write, -t/-T THP,
    /// -j threads; -S and -H are not modelled (exit 4, kselftest's skip).
    Bench(bench::BenchArgs),
    /// Runs a fuzz input (a crash file from `cargo fuzz`, a corpus entry)
    /// through its target on stable; a finding of the thread targets is
    /// written as a JSON artifact that `gupcheck replay` reproduces. Exit 1
    /// if the input finds something, 0 if not, 2 on bad input.
    FuzzArtifact(fuzz_artifact::FuzzArtifactArgs),
    /// Real threads on real atomics: epochs of weighted random ops on shared
    /// address spaces, the global invariants at each epoch's end; a violation
    /// is shrunk and searched for with shuttle PCT. Writes a JSON report; exit
    /// 1 on a violation outside the known-open ones.
    Stress(workload::StressArgs),
    /// How long a fuzz target takes to find each `found` matrix entry with its
    /// preset, arch and mutation fixed: the median over libFuzzer seeds, from
    /// the checked-in seed corpus (needs the target built with cargo fuzz).
    FuzzBench(fuzz_bench::FuzzBenchArgs),
    /// Every found, known-open, known-incomplete and open-upstream matrix
    /// entry under every
    /// engine (loom, shuttle random and PCT, real threads, the fuzzer, stress),
    /// each with a time budget: which find it, how fast, and which cannot
    /// reach it and why. Prints the matrix, writes zoo.json, zoo.md and
    /// zoo.svg; exit 1 if an entry goes undetected or an engine breaks an
    /// invariant the matrix does not allow.
    Zoo(zoo::ZooArgs),
    /// The kernel's cow.c and gup_longterm.c cases over the model, in every
    /// preset: prints the table, writes it as Markdown and JSON, and exits 1
    /// if a row differs from the expectation (model/selftests.json).
    Selftests(selftests::SelftestsArgs),
    /// Joins the JSON reports of the shards of one run (`campaign --shard K/N
    /// --report FILE`, `zoo --shard`, `selftests --shard`, `stress --shard`)
    /// into the unsharded command's table and verdict. Exit 1 if the merged
    /// run failed, 0 if not, 2 on reports of different kinds or parameters,
    /// overlapping or missing shards, or malformed files.
    Merge(merge::MergeArgs),
    /// The model against the running kernel: `kernel selftests` runs cow.c's
    /// and gup_longterm.c's cases as real syscalls and compares each with
    /// the model's result; `kernel stress` races real pins against the mm
    /// operations that break them.
    Kernel {
        #[command(subcommand)]
        cmd: cmd::kernel::KernelCmd,
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
    /// The latest preset, RCU, no mutation.
    pub fn latest() -> ProtocolArgs {
        ProtocolArgs {
            preset: "latest".into(),
            arch: "rcu".into(),
            mutation: Vec::new(),
        }
    }

    /// The names resolved, or the first unknown one as an error.
    pub fn resolve(&self) -> Result<(PresetId, Arch, Vec<Mutation>), String> {
        let preset = PresetId::parse(&self.preset)?;
        let arch = Arch::parse(&self.arch)?;
        let muts = self
            .mutation
            .iter()
            .map(|m| Mutation::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((preset, arch, muts))
    }
}

/// A clap error as one line, as every other bad input (clap adds a usage
/// block).
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    first.join(" ").trim_start_matches("error: ").to_string()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("gupcheck: {}", one_line(&e));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let ran = match cli.cmd {
        None => campaign::run(&campaign::CampaignArgs::default()),
        Some(Cmd::List) => list::run(),
        Some(Cmd::Campaign(a)) => campaign::run(&a),
        Some(Cmd::Explore(a)) => explore::run(&a),
        Some(Cmd::Replay(a)) => replay::run(&a),
        Some(Cmd::Litmus(a)) => litmus::run(&a),
        Some(Cmd::Engines(a)) => engines::run(&a),
        Some(Cmd::Footprint(a)) => footprint::run(&a),
        Some(Cmd::Bench(a)) => Ok(bench::bench(&a)),
        Some(Cmd::FuzzArtifact(a)) => fuzz_artifact::run(&a),
        Some(Cmd::Stress(a)) => workload::stress(&a),
        Some(Cmd::FuzzBench(a)) => fuzz_bench::fuzz_bench(&a),
        Some(Cmd::Zoo(a)) => zoo::zoo(&a),
        Some(Cmd::Selftests(a)) => selftests::run(&a),
        Some(Cmd::Merge(a)) => merge::run(&a),
        Some(Cmd::Kernel { cmd }) => cmd::kernel::run(&cmd),
    };
    ran.unwrap_or_else(|e| {
        eprintln!("gupcheck: {e}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// Flattened option groups must not share an argument id: clap's own
    /// check of that runs in debug builds only, so parse for real.
    #[test]
    fn the_kernel_commands_parse_with_and_without_a_vm() {
        for line in [
            "gupcheck kernel stress --duration 1s",
            "gupcheck kernel stress --vm bzImage --vm-out d --out o --accel tcg",
            "gupcheck kernel selftests --case A1",
            "gupcheck kernel selftests --vm bzImage --vm-memory 4G --vm-timeout 5m",
        ] {
            let words = line.split(' ');
            if let Err(e) = super::Cli::try_parse_from(words) {
                panic!("{line}: {e}");
            }
        }
        let e = super::Cli::try_parse_from("gupcheck kernel selftests --accel tcg".split(' '));
        assert!(e.is_err(), "--accel needs --vm");
    }
}
