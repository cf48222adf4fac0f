//! The commands the READMEs show work on a fresh clone. Every line of a shell code
//! block in README.md, fuzz/README.md, corpus/README.md and model/README.md is
//! checked without running anything long:
//! - `gupcheck ARGS` and `cargo run --release -- ARGS`: the binary's own parser
//!   accepts ARGS (run as `gupcheck ARGS --help`), and every scenario, preset, arch
//!   mode, mutation and tolerated invariant named is one `gupcheck list` prints;
//! - `cargo fuzz run|build|cmin TARGET [DIRS]`: TARGET is a fuzz target
//!   (`fuzz/fuzz_targets/TARGET.rs`, a `[[bin]]` of fuzz/Cargo.toml), and every
//!   directory named either is checked in (exists, holds a file, is not ignored by
//!   .gitignore) or is made by a `mkdir -p` earlier in the same block: libFuzzer
//!   refuses a corpus directory that does not exist, and `fuzz/corpus/` is ignored;
//! - `cargo test|bench`: the package, test and bench targets exist, and a filter
//!   `scenario/preset/arch[/mutation]` names a scenario, preset, arch and mutation;
//! - `cargo mutants --shard K/N ...` (with .cargo/mutants.toml checked in) and
//!   `.github/mutants-table.sh DIRS`;
//! - `mkdir -p`, `cd`, `cargo install cargo-fuzz|cargo-mutants|mdbook`, `mdbook build|serve DIR`.
//!
//! Any other command fails the test: teach the checker rather than show a command
//! nothing checks.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The shell code blocks of a Markdown text: (line of the opening fence, lines).
fn shell_blocks(md: &str) -> Vec<(usize, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, Vec<String>)> = None;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match open.take() {
                Some((at, true, lines)) => blocks.push((at, lines)),
                Some((_, false, _)) => {}
                None => {
                    let shell = matches!(info.trim(), "sh" | "bash" | "shell" | "console");
                    open = Some((i + 1, shell, Vec::new()));
                }
            }
        } else if let Some((_, _, lines)) = open.as_mut() {
            lines.push(line.to_string());
        }
    }
    blocks
}

/// Words of one shell line, quotes removed, up to a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '#' if !in_word => break,
                c if c.is_whitespace() => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            },
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `a/../b` and `./a` as plain relative paths.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `*` and `?` within one path component.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pat[1..], s) || (!s.is_empty() && glob(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// Whether .gitignore's rules (one text, no negations) ignore `path`, relative to
/// the root: the path or one of its parent directories matches a rule.
fn ignored(gitignore: &str, path: &Path) -> bool {
    let comps: Vec<String> = normalise(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    gitignore.lines().map(str::trim).any(|rule| {
        if rule.is_empty() || rule.starts_with('#') {
            return false;
        }
        assert!(
            !rule.starts_with('!'),
            "the README checker does not know negated .gitignore rules ({rule})"
        );
        let rule = rule.trim_end_matches('/');
        let anchored = rule.starts_with('/') || rule.contains('/');
        let parts: Vec<&str> = rule.trim_start_matches('/').split('/').collect();
        let at = |start: usize| {
            parts.len() + start <= comps.len()
                && parts
                    .iter()
                    .zip(&comps[start..])
                    .all(|(p, c)| glob(p.as_bytes(), c.as_bytes()))
        };
        if anchored {
            at(0)
        } else {
            (0..comps.len()).any(at)
        }
    })
}

/// The names `gupcheck list` prints.
#[derive(Default, Debug)]
struct Names {
    scenarios: Vec<String>,
    presets: Vec<String>,
    archs: Vec<String>,
    mutations: Vec<String>,
    /// Whole lines: an invariant's name has spaces and is followed by its meaning.
    invariant_lines: Vec<String>,
}

impl Names {
    fn parse(list: &str) -> Names {
        let mut n = Names::default();
        let mut section = "";
        for line in list.lines() {
            if !line.starts_with(' ') {
                section = line.trim().trim_end_matches(':');
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("").to_string();
            match section {
                "scenarios" => n.scenarios.push(first),
                "presets" => n.presets.push(first),
                "arch modes" => n.archs.push(first),
                "mutations" => n.mutations.push(first),
                "invariants" => n.invariant_lines.push(line.trim().to_string()),
                _ => {}
            }
        }
        n
    }

    fn invariant(&self, name: &str) -> bool {
        let spaced = format!("{} ", name.replace('_', " "));
        self.invariant_lines.iter().any(|l| l.starts_with(&spaced))
    }
}

fn check_name(kind: &str, name: &str, known: &[String], errs: &mut Vec<String>) {
    if !known.iter().any(|k| k == name) {
        errs.push(format!("unknown {kind} '{name}' (see gupcheck list)"));
    }
}

/// The workspace's packages: (name, folder).
fn packages(root: &Path) -> Vec<(String, PathBuf)> {
    let ws = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members = ws
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| {
            let dir = root.join(m);
            let toml = std::fs::read_to_string(dir.join("Cargo.toml")).expect("member Cargo.toml");
            let name = toml
                .lines()
                .find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix("name")
                        .and_then(|r| r.trim().strip_prefix('='))
                        .map(|r| r.trim().trim_matches('"').to_string())
                })
                .expect("package name");
            (name, dir)
        })
        .collect()
}

/// A `cargo fuzz` flag followed by a value.
fn fuzz_flag_takes_value(f: &str) -> bool {
    matches!(
        f,
        "-s" | "--sanitizer"
            | "--target"
            | "--triple"
            | "--features"
            | "--target-dir"
            | "-j"
            | "--jobs"
            | "-Z"
            | "--unstable-flags"
    )
}

struct Checker<'a> {
    root: &'a Path,
    gitignore: String,
    names: &'a Names,
    /// The binary's parser on these arguments: Ok, or its error.
    parse: &'a dyn Fn(&[String]) -> Result<(), String>,
}

impl Checker<'_> {
    /// Every error of one shell block; an empty list if every command works.
    fn block(&self, lines: &[String]) -> Vec<String> {
        let mut errs = Vec::new();
        let mut cwd = PathBuf::new();
        let mut made: Vec<PathBuf> = Vec::new();
        let mut joined = String::new();
        for line in lines {
            // A trailing backslash continues the command.
            if let Some(head) = line.trim_end().strip_suffix('\\') {
                joined.push_str(head);
                joined.push(' ');
                continue;
            }
            joined.push_str(line);
            let ws = words(&std::mem::take(&mut joined));
            for cmd in ws.split(|w| w == "&&" || w == ";") {
                // Environment assignments before the command.
                let cmd: Vec<String> = cmd
                    .iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .cloned()
                    .collect();
                if cmd.is_empty() {
                    continue;
                }
                let before = errs.len();
                self.command(&cmd, &mut cwd, &mut made, &mut errs);
                for e in &mut errs[before..] {
                    *e = format!("`{}`: {e}", cmd.join(" "));
                }
            }
        }
        errs
    }

    fn command(
        &self,
        cmd: &[String],
        cwd: &mut PathBuf,
        made: &mut Vec<PathBuf>,
        errs: &mut Vec<String>,
    ) {
        let args = &cmd[1..];
        match cmd[0].as_str() {
            "cd" => {
                let to = normalise(&cwd.join(args.first().map(String::as_str).unwrap_or(".")));
                if !self.root.join(&to).is_dir() {
                    errs.push(format!("no folder {}", to.display()));
                }
                *cwd = to;
            }
            "mkdir" => {
                if args.first().map(String::as_str) != Some("-p") {
                    errs.push("use mkdir -p (a folder may exist already)".into());
                }
                made.extend(
                    args.iter()
                        .filter(|a| !a.starts_with('-'))
                        .map(|a| normalise(&cwd.join(a))),
                );
            }
            "mdbook" => match args {
                [sub, dir, ..] if sub == "build" || sub == "serve" => {
                    if !self.root.join(cwd.join(dir)).join("book.toml").is_file() {
                        errs.push(format!("no book.toml in {dir}"));
                    }
                }
                _ => errs.push("the checker knows mdbook build|serve DIR".into()),
            },
            "gupcheck" | "./target/release/gupcheck" | "target/release/gupcheck" => {
                self.gupcheck(args, errs)
            }
            "cargo" => {
                let args: Vec<String> = args
                    .iter()
                    .skip_while(|a| a.starts_with('+'))
                    .cloned()
                    .collect();
                match args.first().map(String::as_str) {
                    Some("run") => self.cargo_run(&args[1..], errs),
                    Some("test") => self.cargo_test(&args[1..], errs),
                    Some("bench") => self.cargo_bench(&args[1..], errs),
                    Some("fuzz") => self.cargo_fuzz(&args[1..], cwd, made, errs),
                    Some("install") => {
                        let what: Vec<&String> =
                            args[1..].iter().filter(|a| !a.starts_with('-')).collect();
                        if what.is_empty()
                            || what.iter().any(|w| {
                                !["cargo-fuzz", "cargo-mutants", "mdbook"].contains(&w.as_str())
                            })
                        {
                            errs.push(
                                "the checker knows cargo install cargo-fuzz|cargo-mutants|mdbook"
                                    .into(),
                            );
                        }
                    }
                    Some("mutants") => self.cargo_mutants(&args[1..], errs),
                    _ => errs.push("a cargo command the checker does not know".into()),
                }
            }
            ".github/mutants-table.sh" => {
                if args.is_empty() || !self.root.join(".github/mutants-table.sh").is_file() {
                    errs.push("mutants-table.sh takes cargo-mutants output directories".into());
                }
            }
            other => errs.push(format!("a command the checker does not know: {other}")),
        }
    }

    /// `cargo mutants --shard K/N [--sharding round-robin|slice] [--output DIR]`,
    /// with the configuration it reads checked in.
    fn cargo_mutants(&self, args: &[String], errs: &mut Vec<String>) {
        if !self.root.join(".cargo/mutants.toml").is_file() {
            errs.push("no .cargo/mutants.toml".into());
        }
        let mut i = 0;
        while i < args.len() {
            let v = args.get(i + 1).map(String::as_str).unwrap_or("");
            match args[i].as_str() {
                "--shard" => {
                    let ok = v.split_once('/').is_some_and(|(k, n)| {
                        matches!((k.parse::<u32>(), n.parse::<u32>()), (Ok(k), Ok(n)) if k < n)
                    });
                    if !ok {
                        errs.push(format!("--shard K/N with K < N, not {v}"));
                    }
                }
                "--sharding" if v != "round-robin" && v != "slice" => {
                    errs.push(format!("--sharding round-robin|slice, not {v}"))
                }
                "--sharding" | "--output" => {}
                f => errs.push(format!(
                    "a cargo mutants flag the checker does not know: {f}"
                )),
            }
            i += 2;
        }
    }

    /// `cargo run [--release] [-p gupcheck] [-- ARGS]`.
    fn cargo_run(&self, args: &[String], errs: &mut Vec<String>) {
        let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let (cargo, rest) = (&args[..split], args.get(split + 1..).unwrap_or(&[]));
        let mut i = 0;
        while i < cargo.len() {
            match cargo[i].as_str() {
                "--release" | "-r" | "-q" | "--quiet" | "--locked" => {}
                "-p" | "--package" | "--bin" => {
                    i += 1;
                    if cargo.get(i).map(String::as_str) != Some("gupcheck") {
                        errs.push("the workspace runs one binary: gupcheck".into());
                    }
                }
                f => errs.push(format!("a cargo run flag the checker does not know: {f}")),
            }
            i += 1;
        }
        self.gupcheck(rest, errs);
    }

    /// The binary's parser accepts the arguments, and the names are known.
    fn gupcheck(&self, args: &[String], errs: &mut Vec<String>) {
        let n = self.names;
        for (i, a) in args.iter().enumerate() {
            let Some(v) = args.get(i + 1) else { break };
            match a.as_str() {
                "--preset" => check_name("preset", v, &n.presets, errs),
                "--arch" => check_name("arch", v, &n.archs, errs),
                "--mutation" => check_name("mutation", v, &n.mutations, errs),
                "--tolerate" if !n.invariant(v) => {
                    errs.push(format!("unknown invariant '{v}' (see gupcheck list)"))
                }
                _ => {}
            }
        }
        if let Some(cmd @ ("explore" | "litmus")) = args.first().map(String::as_str) {
            // The scenario comes first, as `gupcheck explore --help` shows it.
            match args.get(1).filter(|s| !s.starts_with('-')) {
                Some(s) => check_name("scenario", s, &n.scenarios, errs),
                None => errs.push(format!("{cmd} SCENARIO first")),
            }
        }
        if let Err(e) = (self.parse)(args) {
            errs.push(e);
        }
    }

    /// `cargo test [--release] [-p PKG] [--test T] [-- FILTER]`.
    fn cargo_test(&self, args: &[String], errs: &mut Vec<String>) {
        let pkgs = packages(self.root);
        let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let (cargo, rest) = (&args[..split], args.get(split + 1..).unwrap_or(&[]));
        let mut chosen: Vec<&(String, PathBuf)> = pkgs.iter().collect();
        let mut tests = Vec::new();
        let mut i = 0;
        while i < cargo.len() {
            let value = cargo.get(i + 1).cloned().unwrap_or_default();
            match cargo[i].as_str() {
                "--release" | "-r" | "--workspace" | "--lib" | "--doc" | "-q" | "--locked" => {}
                "-p" | "--package" => {
                    chosen = pkgs.iter().filter(|(n, _)| *n == value).collect();
                    if chosen.is_empty() {
                        errs.push(format!("no package {value} in the workspace"));
                    }
                    i += 1;
                }
                "--test" => {
                    tests.push(value);
                    i += 1;
                }
                f => errs.push(format!("a cargo test flag the checker does not know: {f}")),
            }
            i += 1;
        }
        for t in &tests {
            if !chosen
                .iter()
                .any(|(_, d)| d.join("tests").join(format!("{t}.rs")).is_file())
            {
                errs.push(format!("no test target {t}"));
            }
        }
        for f in rest.iter().filter(|f| !f.starts_with('-')) {
            if f.contains('/') {
                let parts: Vec<&str> = f.split('/').collect();
                let n = self.names;
                if !(3..=4).contains(&parts.len()) {
                    errs.push(format!("a filter is scenario/preset/arch[/mutation]: {f}"));
                    continue;
                }
                check_name("scenario", parts[0], &n.scenarios, errs);
                check_name("preset", parts[1], &n.presets, errs);
                check_name("arch", parts[2], &n.archs, errs);
                if let Some(m) = parts.get(3) {
                    check_name("mutation", m, &n.mutations, errs);
                }
            }
        }
    }

    /// `cargo bench -p PKG --bench B`.
    fn cargo_bench(&self, args: &[String], errs: &mut Vec<String>) {
        let pkgs = packages(self.root);
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
        };
        let dir = match value("-p") {
            Some(p) => match pkgs.iter().find(|(n, _)| n == p) {
                Some((_, d)) => d.clone(),
                None => return errs.push(format!("no package {p} in the workspace")),
            },
            None => return errs.push("name the package: cargo bench -p PKG".into()),
        };
        if let Some(b) = value("--bench") {
            if !dir.join("benches").join(format!("{b}.rs")).is_file() {
                errs.push(format!("no bench target {b}"));
            }
        }
    }

    /// `cargo fuzz run|build|cmin [FLAGS] TARGET [DIRS] [-- LIBFUZZER ARGS]`.
    fn cargo_fuzz(&self, args: &[String], cwd: &Path, made: &[PathBuf], errs: &mut Vec<String>) {
        let Some(sub) = args.first().map(String::as_str) else {
            return errs.push("cargo fuzz needs a subcommand".into());
        };
        if !matches!(sub, "run" | "build" | "cmin") {
            return errs.push(format!(
                "the checker knows cargo fuzz run|build|cmin, not {sub}"
            ));
        }
        let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let mut positional = Vec::new();
        let mut i = 1;
        while i < split {
            let a = &args[i];
            if a == "--fuzz-dir" {
                errs.push("the checker knows only the fuzz/ folder".into());
            }
            if a.starts_with('-') {
                if fuzz_flag_takes_value(a) {
                    i += 1;
                }
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        let fuzz = self.root.join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap_or_default();
        let Some(target) = positional.first() else {
            if sub != "build" {
                errs.push(format!("cargo fuzz {sub} needs a target"));
            }
            return;
        };
        if !fuzz
            .join("fuzz_targets")
            .join(format!("{target}.rs"))
            .is_file()
            || !manifest.contains(&format!("name = \"{target}\""))
        {
            errs.push(format!("no fuzz target {target} in fuzz/fuzz_targets"));
        }
        if sub == "build" && positional.len() > 1 {
            errs.push("cargo fuzz build takes one target".into());
        }
        for d in positional.iter().skip(1) {
            let d = normalise(&cwd.join(d));
            if made.contains(&d) {
                continue;
            }
            let abs = self.root.join(&d);
            let has_file = std::fs::read_dir(&abs)
                .map(|mut r| r.any(|e| e.is_ok_and(|e| e.path().is_file())))
                .unwrap_or(false);
            if ignored(&self.gitignore, &d) || !has_file {
                errs.push(format!(
                    "{} is not in a fresh clone (libFuzzer refuses a missing folder): \
                     `mkdir -p` it first in the same block, or let `cargo fuzz run {target}` make fuzz/corpus/{target}",
                    d.display()
                ));
            }
        }
    }
}

fn gupcheck_parse(args: &[String]) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(args)
        .arg("--help")
        .output()
        .expect("gupcheck runs");
    if o.status.success() && !o.stdout.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "gupcheck rejects it: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

fn names() -> Names {
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .arg("list")
        .output()
        .expect("gupcheck list runs");
    assert!(o.status.success());
    let n = Names::parse(&String::from_utf8_lossy(&o.stdout));
    assert!(
        !n.scenarios.is_empty() && !n.presets.is_empty() && !n.archs.is_empty(),
        "gupcheck list: {n:?}"
    );
    n
}

fn checker<'a>(root: &'a Path, names: &'a Names) -> Checker<'a> {
    Checker {
        root,
        gitignore: std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default(),
        names,
        parse: &gupcheck_parse,
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn every_command_the_readmes_show_works_on_a_fresh_clone() {
    let root = root();
    let names = names();
    let c = checker(&root, &names);
    let mut errs = Vec::new();
    let mut commands = 0;
    for file in [
        "README.md",
        "fuzz/README.md",
        "corpus/README.md",
        "model/README.md",
    ] {
        let Ok(md) = std::fs::read_to_string(root.join(file)) else {
            assert_ne!(file, "README.md", "no README.md");
            continue;
        };
        for (at, block) in shell_blocks(&md) {
            commands += block.iter().filter(|l| !words(l).is_empty()).count();
            errs.extend(
                c.block(&block)
                    .into_iter()
                    .map(|e| format!("{file}:{at}: {e}")),
            );
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(commands >= 10, "only {commands} commands checked");
}

/// The front page opens with the two commands.
#[test]
fn the_readme_opens_with_the_campaign_and_the_tests() {
    let md = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (_, first) = &shell_blocks(&md)[0];
    let cmds: Vec<Vec<String>> = first.iter().map(|l| words(l)).collect();
    assert_eq!(
        cmds,
        [
            vec!["cargo", "run", "--release"],
            vec!["cargo", "test", "--release"]
        ]
    );
    assert!(md.lines().count() <= 150, "README.md is a front page");
}

/// The checker fails on what does not work, starting with the fuzz command that
/// named an ignored corpus folder without making it.
#[test]
fn the_checker_fails_on_commands_that_do_not_work() {
    let root = root();
    let names = names();
    let c = checker(&root, &names);
    let bad = |block: &str| {
        let e = c.block(&lines(block));
        assert!(!e.is_empty(), "passed: {block}");
        e.join("\n")
    };
    let good = |block: &str| {
        let e = c.block(&lines(block));
        assert!(e.is_empty(), "{block}: {}", e.join("\n"));
    };

    let e = bad("cargo +nightly fuzz run ops fuzz/corpus/ops corpus/ops");
    assert!(e.contains("fuzz/corpus/ops"), "{e}");
    good("mkdir -p fuzz/corpus/ops && cargo +nightly fuzz run ops fuzz/corpus/ops corpus/ops");
    good("mkdir -p fuzz/corpus/ops\ncargo +nightly fuzz run ops fuzz/corpus/ops corpus/ops");
    good("cargo +nightly fuzz run ops");
    good("cd fuzz && cargo fuzz run --sanitizer none --no-trace-compares presets -- -max_total_time=60");
    good(
        "cd fuzz && cargo fuzz cmin --sanitizer none --no-trace-compares presets ../corpus/presets",
    );
    bad("mkdir -p fuzz/corpus/ops\ncargo fuzz run ops fuzz/corpus/ops corpus/nope");
    bad("cargo +nightly fuzz run no_such_target");
    bad("cargo fuzz run --sanitizer none");

    good("cargo run --release");
    good("cargo run --release -- explore gup_fast_vs_munmap --engine loom --arch rcu");
    good("gupcheck stress --preset 5.7 --arch ipi --threads 4 --mix gup=6,fork=2");
    bad("cargo run --release -- explore no_such_scenario");
    good("cargo run --release -- litmus gup_fast_vs_fork --out /tmp/litmus");
    bad("cargo run --release -- litmus no_such_scenario");
    bad("cargo run --release -- explore gup_fast_vs_munmap --preset 4.19");
    bad("gupcheck explore gup_fast_vs_munmap --tolerate no_such_invariant");
    bad("gupcheck stress --duration soon");
    bad("gupcheck stress --no-such-flag");
    bad("gupcheck no-such-command");
    bad("cargo run --release -p gupcheck-model");

    good("cargo test --release -p gupcheck-model --test selftests");
    good(
        "cargo test --release -p gupcheck-loom-tests --test matrix -- gup_fast_vs_fork/latest/rcu",
    );
    bad("cargo test --release -p no-such-package");
    bad("cargo test --release -p gupcheck-model --test no_such_test");
    bad("cargo test --release -p gupcheck-loom-tests --test matrix -- gup_fast_vs_fork/4.19/rcu");
    good("cargo bench -p gupcheck-model --bench pin");
    bad("cargo bench -p gupcheck-model --bench nope");

    bad("make all");
    bad("cd no_such_folder");
}

#[test]
fn gitignore_rules() {
    let gi = "/target\n/fuzz/corpus\ngupcheck-artifacts/\n*.tmp\n";
    assert!(ignored(gi, Path::new("fuzz/corpus/ops")));
    assert!(ignored(gi, Path::new("fuzz/corpus")));
    assert!(!ignored(gi, Path::new("corpus/ops")));
    assert!(!ignored(gi, Path::new("fuzz/fuzz_targets")));
    assert!(ignored(gi, Path::new("stress/gupcheck-artifacts")));
    assert!(ignored(gi, Path::new("a/b.tmp")));
    assert!(!ignored(gi, Path::new("corpus/target")));
    assert!(ignored(gi, Path::new("target/release")));
    assert_eq!(
        words("cargo fuzz run ops   # a comment"),
        ["cargo", "fuzz", "run", "ops"]
    );
    assert_eq!(
        words("sbatch --wrap 'gupcheck merge x'"),
        ["sbatch", "--wrap", "gupcheck merge x"]
    );
}
