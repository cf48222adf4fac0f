//! `--shard K/N` and `gupcheck merge`: N shards of one run, merged, print the
//! table the unsharded run prints and give its verdict; merge refuses what
//! does not belong together, naming it, with exit code 2.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs gupcheck in `dir` (the campaign's stress run writes gupcheck-stress/
/// into the current directory).
fn gupcheck(dir: &Path, args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_gupcheck"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gupcheck-shards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A cheap campaign whose outcomes do not depend on timing: loom and seeded
/// shuttle are deterministic and real threads do not run. Its shuttle budget
/// is too small for one entry, so the run fails, and so must the merge.
const CAMPAIGN: [&str; 10] = [
    "campaign",
    "--only",
    "gup_fast_vs_munmap / latest / rcu",
    "--iterations",
    "200",
    "--std-iterations",
    "0",
    "--stress",
    "100ms",
    "--report",
];

fn campaign(dir: &Path, report: &str, more: &[&str]) -> Run {
    let mut args = CAMPAIGN.to_vec();
    args.push(report);
    args.extend_from_slice(more);
    gupcheck(dir, &args)
}

/// The table and the zoo summary: everything up to the stress run, less the
/// seconds.
fn table(out: &str) -> String {
    out.lines()
        .take_while(|l| !l.starts_with("rayon stress"))
        .map(|l| match l.find(" mismatches, ") {
            Some(k) => &l[..k],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line_error(r: &Run, needle: &str) {
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert_eq!(r.err.trim().lines().count(), 1, "{}", r.err);
    assert!(r.err.contains(needle), "wanted '{needle}': {}", r.err);
}

#[test]
fn two_campaign_shards_merge_into_the_unsharded_table() {
    let dir = tmp("campaign");
    let whole = campaign(&dir, "whole.json", &[]);
    assert_eq!(whole.code, 1, "{}{}", whole.out, whole.err);
    assert!(whole.out.contains("MISMATCH"), "{}", whole.out);
    for k in ["1/2", "2/2"] {
        let part = campaign(&dir, &format!("part-{}.json", &k[..1]), &["--shard", k]);
        assert!(
            part.out
                .contains(&format!("of 4 matrix entries (shard {k})")),
            "{}",
            part.out
        );
        assert!(part.code == 0 || part.code == 1, "{}", part.err);
    }
    // In any order.
    let merged = gupcheck(&dir, &["merge", "part-2.json", "part-1.json"]);
    assert_eq!(merged.code, whole.code, "{}{}", merged.out, merged.err);
    assert_eq!(table(&merged.out), table(&whole.out));
    assert_eq!(merged.out.matches("  shard ").count(), 2, "{}", merged.out);
    // One unsharded report merges into itself.
    let alone = gupcheck(&dir, &["merge", "whole.json"]);
    assert_eq!(table(&alone.out), table(&whole.out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merge_refuses_what_does_not_belong_together() {
    let dir = tmp("refuse");
    let run = |report: &str, more: &[&str]| {
        let r = campaign(&dir, report, more);
        assert!(r.code == 0 || r.code == 1, "{}", r.err);
    };
    run("a1.json", &["--shard", "1/2"]);
    run("a2.json", &["--shard", "2/2"]);
    run("b2.json", &["--shard", "2/2", "--seed", "2"]);
    run("c1.json", &["--shard", "1/3"]);
    let st = gupcheck(&dir, &["selftests", "--shard", "1/2", "--out", "st"]);
    assert_eq!(st.code, 0, "{}", st.err);
    std::fs::write(dir.join("cut.json"), "{\"kind\": \"campaign\", \"shard\": ").unwrap();
    std::fs::write(dir.join("other.json"), "{\"format\": 1}").unwrap();
    let merge = |args: &[&str]| {
        let mut all = vec!["merge"];
        all.extend_from_slice(args);
        gupcheck(&dir, &all)
    };
    one_line_error(
        &merge(&["a1.json", "st/selftests.json"]),
        "a1.json is a campaign report, st/selftests.json a selftests report",
    );
    one_line_error(
        &merge(&["a1.json", "b2.json"]),
        "different parameters: a1.json has params.seed 1, b2.json has 2",
    );
    one_line_error(&merge(&["a1.json", "a1.json"]), "shard 1/2 given twice");
    one_line_error(&merge(&["a2.json"]), "missing shard 1/2");
    one_line_error(
        &merge(&["a1.json", "c1.json"]),
        "different shard counts: a1.json is shard 1/2, c1.json is shard 1/3",
    );
    one_line_error(&merge(&["a1.json", "cut.json"]), "cut.json: not JSON");
    one_line_error(&merge(&["other.json"]), "other.json: not a gupcheck report");
    one_line_error(&merge(&["none.json"]), "cannot read none.json");
    assert_eq!(merge(&["a1.json", "a2.json"]).code, 1, "the campaign fails");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_shards_are_one_line_errors() {
    let dir = tmp("bad");
    for cmd in ["campaign", "zoo", "selftests", "stress"] {
        for bad in ["0/2", "3/2", "x"] {
            one_line_error(&gupcheck(&dir, &[cmd, "--shard", bad]), "bad shard");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn selftests_shards_merge_into_the_whole_table() {
    let dir = tmp("selftests");
    let whole = gupcheck(&dir, &["selftests", "--out", "whole"]);
    assert_eq!(whole.code, 0, "{}", whole.err);
    let mut reports = Vec::new();
    for k in 1..=3 {
        let out = format!("part{k}");
        let r = gupcheck(
            &dir,
            &["selftests", "--shard", &format!("{k}/3"), "--out", &out],
        );
        assert_eq!(r.code, 0, "{}", r.out);
        reports.push(format!("{out}/selftests.json"));
    }
    let mut args = vec!["merge", "--out", "merged"];
    args.extend(reports.iter().map(String::as_str));
    let merged = gupcheck(&dir, &args);
    assert_eq!(merged.code, 0, "{}{}", merged.out, merged.err);
    let rows = |p: &str| {
        let text = std::fs::read_to_string(dir.join(p)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["rows"].clone()
    };
    assert_eq!(rows("merged/selftests.json"), rows("whole/selftests.json"));
    assert_eq!(
        std::fs::read_to_string(dir.join("merged/selftests.md")).unwrap(),
        std::fs::read_to_string(dir.join("whole/selftests.md")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zoo_shards_merge_into_the_unsharded_rows() {
    let dir = tmp("zoo");
    let zoo = |out: &str, more: &[&str]| {
        let mut args = vec![
            "zoo",
            "--budget",
            "300ms",
            "--engines",
            "loom",
            "--only",
            "munmap_vs_lockless_walker / latest / rcu",
            "--out",
            out,
        ];
        args.extend_from_slice(more);
        gupcheck(&dir, &args)
    };
    let whole = zoo("whole", &[]);
    zoo("p1", &["--shard", "1/2"]);
    zoo("p2", &["--shard", "2/2"]);
    let merged = gupcheck(
        &dir,
        &["merge", "p1/zoo.json", "p2/zoo.json", "--out", "merged"],
    );
    assert_eq!(merged.code, whole.code, "{}{}", merged.out, merged.err);
    let results = |p: &str| {
        let text = std::fs::read_to_string(dir.join(p).join("zoo.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["label"].clone(), r["cells"][0]["result"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(results("merged").len(), 3);
    assert_eq!(results("merged"), results("whole"));
    assert!(dir.join("merged/zoo.svg").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stress_shards_draw_from_their_own_seeds() {
    let dir = tmp("stress");
    let mut seeds = Vec::new();
    for k in ["1/2", "2/2"] {
        let out = format!("s{}", &k[..1]);
        let args = [
            "stress",
            "--duration",
            "300ms",
            "--threads",
            "1",
            "--seed",
            "5",
        ];
        let mut args = args.to_vec();
        args.extend(["--shard", k, "--out", &out]);
        let r = gupcheck(&dir, &args);
        assert_eq!(r.code, 0, "{}", r.err);
        let text = std::fs::read_to_string(dir.join(&out).join("stress-report.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["shard"], k);
        assert_eq!(v["seed"], 5);
        seeds.push(v["shard_seed"].as_u64().unwrap());
    }
    assert_eq!(seeds[0], 5, "shard 1 keeps --seed");
    assert_ne!(seeds[0], seeds[1]);
    let merged = gupcheck(
        &dir,
        &["merge", "s1/stress-report.json", "s2/stress-report.json"],
    );
    assert_eq!(merged.code, 0, "{}{}", merged.out, merged.err);
    assert!(merged.out.contains("stress: 2 threads"), "{}", merged.out);
    let _ = std::fs::remove_dir_all(&dir);
}
