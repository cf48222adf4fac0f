//! `gupcheck merge`: the JSON reports of the N shards of one run
//! (`campaign --report`, zoo.json, selftests.json, stress-report.json),
//! joined into the table and the verdict of the unsharded command. Reports
//! of different kinds or parameters, overlapping or missing shards and
//! malformed files are refused, naming which.

use crate::cmd::{campaign, selftests};
use crate::shard;
use crate::shard::Shard;
use crate::ui::say;
use crate::workload;
use crate::zoo;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Clone)]
pub struct MergeArgs {
    /// The shards' reports, all of one kind.
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
    /// Also writes the merged report into this directory (campaign.json;
    /// zoo.json, zoo.md and zoo.svg; selftests.json and selftests.md).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// One shard's report.
struct Part {
    path: PathBuf,
    json: Value,
    kind: String,
    /// An unsharded run is the one shard of one.
    shard: Shard,
}

impl Part {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn typed<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.json.clone())
            .map_err(|e| format!("{}: malformed {} report: {e}", self.name(), self.kind))
    }
}

const KINDS: [&str; 4] = [campaign::KIND, zoo::KIND, selftests::KIND, workload::KIND];

fn load(path: &Path) -> Result<Part, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let kind = match json.get("kind").and_then(Value::as_str) {
        Some(k) if KINDS.contains(&k) => k.to_string(),
        _ => {
            return Err(format!(
                "{name}: not a gupcheck report (its kind is none of {})",
                KINDS.join(", ")
            ))
        }
    };
    let shard = match json.get("shard") {
        None | Some(Value::Null) => Shard { index: 1, count: 1 },
        Some(s) => {
            serde_json::from_value(s.clone()).map_err(|e| format!("{name}: bad shard: {e}"))?
        }
    };
    Ok(Part {
        path: path.to_path_buf(),
        json,
        kind,
        shard,
    })
}

/// What the shards of one run share, by kind.
fn parameters(kind: &str) -> &'static [&'static str] {
    match kind {
        campaign::KIND => &["gupcheck", "params", "selected"],
        zoo::KIND => &[
            "gupcheck",
            "budget_secs",
            "seed",
            "fuzz",
            "engines",
            "only",
            "selected",
        ],
        selftests::KIND => &["gupcheck", "presets", "selected"],
        _ => &[
            "gupcheck",
            "seed",
            "preset",
            "arch",
            "mutations",
            "shapes",
            "mix",
            "disjoint",
            "epoch_ops",
            "duration_secs",
        ],
    }
}

/// Where two JSON values first differ ("params.seed"), and the two values
/// there.
fn first_difference<'a>(at: String, a: &'a Value, b: &'a Value) -> (String, &'a Value, &'a Value) {
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        for (k, v) in x {
            match y.get(k) {
                Some(w) if w == v => {}
                Some(w) => return first_difference(format!("{at}.{k}"), v, w),
                None => return (format!("{at}.{k}"), v, &Value::Null),
            }
        }
    }
    (at, a, b)
}

/// Every shard of one count exactly once, in order.
fn check_shards(parts: &mut [Part]) -> Result<(), String> {
    let shown = |s: Shard| {
        if s.count == 1 {
            "unsharded".to_string()
        } else {
            format!("shard {s}")
        }
    };
    let first = &parts[0];
    if let Some(p) = parts.iter().find(|p| p.shard.count != first.shard.count) {
        return Err(format!(
            "different shard counts: {} is {}, {} is {}",
            first.name(),
            shown(first.shard),
            p.name(),
            shown(p.shard)
        ));
    }
    parts.sort_by_key(|p| p.shard.index);
    if let Some(w) = parts.windows(2).find(|w| w[0].shard == w[1].shard) {
        return Err(format!(
            "{} given twice: {} and {}",
            shown(w[0].shard),
            w[0].name(),
            w[1].name()
        ));
    }
    let count = parts[0].shard.count;
    let missing: Vec<String> = (1..=count)
        .filter(|&k| !parts.iter().any(|p| p.shard.index == k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        let s = if missing.len() == 1 { "" } else { "s" };
        return Err(format!("missing shard{s} {}", missing.join(", ")));
    }
    Ok(())
}

/// The shards' items back in one list: item i of the whole came from shard
/// i mod N. Each shard must hold exactly its items of `selected`.
fn interleave<T>(parts: &[Part], lists: Vec<Vec<T>>, selected: usize) -> Result<Vec<T>, String> {
    for (p, l) in parts.iter().zip(&lists) {
        let want = p.shard.size(selected);
        if l.len() != want {
            return Err(format!(
                "{}: holds {} of its {want} items of {selected}",
                p.name(),
                l.len()
            ));
        }
    }
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let n = iters.len();
    Ok((0..selected).filter_map(|i| iters[i % n].next()).collect())
}

/// The shards' reports, their items (what `items` picks: entries, rows)
/// back in one list held by the first report; the others, for their totals.
fn join<T: DeserializeOwned, I>(
    parts: &[Part],
    selected: fn(&T) -> usize,
    items: fn(&mut T) -> &mut Vec<I>,
) -> Result<(T, Vec<T>), String> {
    let mut reports: Vec<T> = parts.iter().map(Part::typed).collect::<Result<_, _>>()?;
    let lists = reports
        .iter_mut()
        .map(|r| std::mem::take(items(r)))
        .collect();
    let joined = interleave(parts, lists, selected(&reports[0]))?;
    let mut merged = reports.remove(0);
    *items(&mut merged) = joined;
    Ok((merged, reports))
}

fn campaign(parts: &[Part], out: Option<&Path>) -> Result<bool, String> {
    let (mut merged, others) = join(parts, |r: &campaign::Report| r.selected, |r| &mut r.entries)?;
    for r in others {
        merged.seconds += r.seconds;
        merged.stress.extend(r.stress);
    }
    merged.header.shard = None;
    if let Some(out) = out {
        shard::write_report(&out.join("campaign.json"), &merged)?;
    }
    Ok(campaign::show_merged(&merged))
}

fn zoo(parts: &[Part], out: Option<&Path>) -> Result<bool, String> {
    let (mut merged, others) = join(parts, |r: &zoo::Report| r.selected, |r| &mut r.rows)?;
    for r in others {
        merged.seconds += r.seconds;
        merged.interrupted |= r.interrupted;
    }
    merged.header.shard = None;
    merged.command = std::env::args().collect::<Vec<_>>().join(" ");
    zoo::show(&merged, out)
}

fn selftests(parts: &[Part], out: Option<&Path>) -> Result<bool, String> {
    let (mut merged, _) = join(
        parts,
        |r: &selftests::Report| r.selected,
        |r| &mut r.table.rows,
    )?;
    merged.header.shard = None;
    selftests::show_merged(&merged, out)
}

fn stress(parts: &[Part], out: Option<&Path>) -> Result<bool, String> {
    if out.is_some() {
        return Err(
            "--out: stress shards stay one report each (their runs are not one run)".into(),
        );
    }
    let reports: Vec<workload::Report> = parts.iter().map(Part::typed).collect::<Result<_, _>>()?;
    Ok(workload::show_merged(&reports))
}

pub fn run(a: &MergeArgs) -> Result<ExitCode, String> {
    let mut parts: Vec<Part> = a
        .reports
        .iter()
        .map(|p| load(p))
        .collect::<Result<_, _>>()?;
    let kind = parts[0].kind.clone();
    if let Some(p) = parts.iter().find(|p| p.kind != kind) {
        return Err(format!(
            "{} is a {kind} report, {} a {} report",
            parts[0].name(),
            p.name(),
            p.kind
        ));
    }
    for key in parameters(&kind) {
        let want = &parts[0].json[key];
        if let Some(p) = parts[1..].iter().find(|p| &p.json[key] != want) {
            let (at, a, b) = first_difference(key.to_string(), want, &p.json[key]);
            return Err(format!(
                "different parameters: {} has {at} {a}, {} has {b}",
                parts[0].name(),
                p.name(),
            ));
        }
    }
    check_shards(&mut parts)?;
    let out = a.out.as_deref();
    let failed = match kind.as_str() {
        campaign::KIND => campaign(&parts, out)?,
        zoo::KIND => zoo(&parts, out)?,
        selftests::KIND => selftests(&parts, out)?,
        _ => stress(&parts, out)?,
    };
    say!(
        "merged {} {kind} report(s): {}",
        parts.len(),
        if failed { "FAILED" } else { "ok" }
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
