//! The zoo's renderings: the terminal table, Markdown, the SVG heat map, the
//! closing verdict, and the default campaign's zoo summary.

use super::cells::{Cell, Col, Row};
use crate::detect::{OnScenario, Verdict};
use crate::shard::Header;
use crate::ui::{count, say, secs_short};
use gupcheck_model::harness::artifact::write_file_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `zoo.json`.
#[derive(Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    /// Entries `--only` selects, before sharding.
    pub selected: usize,
    pub only: Vec<String>,
    pub command: String,
    pub budget_secs: f64,
    pub seed: u64,
    /// How the fuzz column ran (none if it did not).
    pub fuzz: Option<String>,
    pub engines: Vec<String>,
    pub seconds: f64,
    /// Ctrl-C ended the run: cells not run say so.
    pub interrupted: bool,
    pub rows: Vec<Row>,
}

pub const KIND: &str = "zoo";

/// Prints the table, writes zoo.json, zoo.md and zoo.svg into `out` (if
/// given), and closes with the verdict; true if the run failed (an entry
/// undetected, an invariant broken that the matrix does not allow, an
/// error, or an interruption).
pub fn show(report: &Report, out: Option<&Path>) -> Result<bool, String> {
    say!("{}", terminal_table(&report.rows, &report.engines));
    let written = match out {
        Some(out) => {
            let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
            write_file_atomic(out, "zoo.json", json.as_bytes())?;
            write_file_atomic(out, "zoo.md", markdown(report).as_bytes())?;
            let svg = write_file_atomic(out, "zoo.svg", svg(report).as_bytes())?;
            format!("; written to {} (and zoo.json, zoo.md)", svg.display())
        }
        None => String::new(),
    };
    say!(
        "{} x {} in {:.0} s{written}",
        count(report.rows.len(), "entry", "entries"),
        count(report.engines.len(), "engine", "engines"),
        report.seconds,
    );
    let failed = verdict(report);
    if report.interrupted {
        say!("interrupted: cells not run are marked so");
    }
    Ok(failed || report.interrupted)
}

/// Prints the entries no engine found, the invariants broken that the matrix
/// does not allow for an entry, and the errors; true if there is any.
fn verdict(report: &Report) -> bool {
    // An interrupted run's misses may be cells not run: only what ran counts.
    let undetected: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.found_by().is_empty())
        .filter(|r| !r.cells.iter().any(|c| matches!(c.verdict, Verdict::NotRun)))
        .collect();
    for r in &undetected {
        say!("UNDETECTED {}: no engine found {}", r.label, r.invariant);
    }
    let mut other = 0;
    for r in &report.rows {
        for c in &r.cells {
            match &c.verdict {
                Verdict::Other { invariant, detail } => say!(
                    "OTHER {}: {} broke {invariant}: {detail}",
                    r.label,
                    c.engine
                ),
                Verdict::Error { message } => {
                    say!("ERROR {}: {}: {message}", r.label, c.engine)
                }
                _ => continue,
            }
            other += 1;
        }
    }
    !undetected.is_empty() || other > 0
}

pub fn terminal_table(rows: &[Row], engines: &[String]) -> String {
    let w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(36);
    let mut s = format!(
        "{:<w$} {:<10}",
        "scenario / preset / arch / mutation", "expect"
    );
    for e in engines {
        s += &format!(" {:>9}", short_engine(e));
    }
    s += "\n";
    for r in rows {
        s += &format!("{:<w$} {:<10}", r.label, short_expect(&r.expect));
        for c in &r.cells {
            s += &format!(" {:>9}", c.verdict.short());
        }
        s += "\n";
    }
    s +=
        "time to detect; '-' not within the budget; 'n/r' cannot reach (why below and in zoo.md)\n";
    for (e, i) in engines.iter().zip(0..) {
        let count =
            |f: fn(&Verdict) -> bool| rows.iter().filter(|r| f(&r.cells[i].verdict)).count();
        s += &format!(
            "  {:<15} found {:>3}  not within budget {:>3}  cannot reach {:>3}\n",
            e,
            count(|v| matches!(v, Verdict::Found { .. })),
            count(|v| matches!(v, Verdict::NotFound { .. })),
            count(|v| matches!(v, Verdict::CannotReach { .. })),
        );
    }
    // Why not, grouped: one line per reason and engine.
    let mut reasons: Vec<(String, String, usize)> = Vec::new();
    for r in rows {
        for c in &r.cells {
            if let Verdict::CannotReach { why, .. } = &c.verdict {
                // loom's exhausted trees differ only in size: one line.
                let why = match why.find(" (") {
                    Some(k) if c.engine == Col::Scenario(OnScenario::Loom).name() => {
                        why[..k].to_string()
                    }
                    _ => why.clone(),
                };
                match reasons
                    .iter_mut()
                    .find(|(e, w, _)| *e == c.engine && *w == why)
                {
                    Some(x) => x.2 += 1,
                    None => reasons.push((c.engine.clone(), why, 1)),
                }
            }
        }
    }
    if !reasons.is_empty() {
        s += "cannot reach:\n";
        for (e, why, n) in reasons {
            s += &format!("  {e}: {why} ({})\n", count(n, "entry", "entries"));
        }
    }
    s
}

fn short_engine(e: &str) -> &str {
    match e {
        "shuttle-random" => "random",
        "shuttle-pct" => "pct",
        other => other,
    }
}

fn short_expect(e: &str) -> &str {
    match e {
        "known-open" => "open",
        "known-incomplete" => "incompl.",
        "open-upstream" => "upstream",
        other => other,
    }
}

fn cell_md(c: &Cell) -> String {
    match &c.verdict {
        Verdict::Found {
            secs,
            runs: Some(n),
            ..
        } => format!("{} ({n})", secs_short(*secs)),
        Verdict::Other { invariant, .. } => format!("OTHER {invariant}"),
        v => v.short(),
    }
}

pub fn markdown(rep: &Report) -> String {
    let mut s = format!(
        "Budget {:.1} s per cell, seed {}{}. A cell is the time to detect (with executions, inputs or epochs); `-` not within the budget; `n/r` cannot reach. loom, shuttle, std and stress run the entry's scenario (stress: its threads replayed in epochs on a pool, each from a start line with a random offset); fuzz runs the entry's preset, arch and mutation over the random world, stopping only at the entry's invariants, so entries that share those share the cell, and a find shows the invariant breaks under that protocol, not necessarily by the scenario's path.\n\n| entry | expect |",
        rep.budget_secs,
        rep.seed,
        rep.fuzz
            .as_ref()
            .map_or(String::new(), |h| format!(", fuzz: {h}"))
    );
    for e in &rep.engines {
        s += &format!(" {e} |");
    }
    s += " not found: why |\n|---|---|";
    for _ in &rep.engines {
        s += "---|";
    }
    s += "---|\n";
    for r in &rep.rows {
        s += &format!("| {} | {} {} |", r.label, r.expect, r.invariant);
        for c in &r.cells {
            s += &format!(" {} |", cell_md(c));
        }
        let why: Vec<String> = r
            .cells
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::CannotReach { why, .. } => Some(format!("{}: {why}", c.engine)),
                Verdict::NotFound { note, .. } => {
                    Some(format!("{}: not in budget ({note})", c.engine))
                }
                _ => None,
            })
            .collect();
        s += &format!(" {} |\n", why.join("; "));
    }
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A heat map: one row per entry, one column per engine; green for fast
/// detection through amber at the budget (log scale), grey where the budget
/// ran out, dark grey where the engine cannot reach the entry.
pub fn svg(rep: &Report) -> String {
    const CELL_W: usize = 96;
    const ROW_H: usize = 16;
    const TOP: usize = 40;
    let text = |r: &Row| format!("{} ({})", r.label, r.invariant);
    // 11 px monospace is about 6.7 px a character.
    let label_w = rep.rows.iter().map(|r| text(r).len()).max().unwrap_or(40) * 67 / 10 + 16;
    let w = label_w + CELL_W * rep.engines.len() + 10;
    let h = TOP + ROW_H * rep.rows.len() + 50;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"monospace\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"4\" y=\"16\" font-size=\"13\">gupcheck zoo: time to detect per entry and engine (budget {:.1} s per cell)</text>\n",
        rep.budget_secs
    );
    for (j, e) in rep.engines.iter().enumerate() {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            label_w + j * CELL_W + CELL_W / 2,
            TOP - 6,
            xml(e)
        );
    }
    let lo = 1e-3f64.ln();
    let hi = rep.budget_secs.max(2e-3).ln();
    for (i, r) in rep.rows.iter().enumerate() {
        let y = TOP + i * ROW_H;
        s += &format!(
            "<text x=\"4\" y=\"{}\">{}</text>\n",
            y + ROW_H - 4,
            xml(&text(r))
        );
        for (j, c) in r.cells.iter().enumerate() {
            let fill = match &c.verdict {
                Verdict::Found { secs, .. } => {
                    let t = ((secs.max(1e-3).ln() - lo) / (hi - lo)).clamp(0.0, 1.0);
                    // green (46,125,50) to amber (249,168,37)
                    let mix = |a: f64, b: f64| (a + (b - a) * t) as u8;
                    format!(
                        "#{:02x}{:02x}{:02x}",
                        mix(46.0, 249.0),
                        mix(125.0, 168.0),
                        mix(50.0, 37.0)
                    )
                }
                Verdict::NotFound { .. } => "#dddddd".into(),
                Verdict::CannotReach { .. } => "#8a8a8a".into(),
                Verdict::Other { .. } | Verdict::Error { .. } => "#c62828".into(),
                Verdict::NotRun => "#ffffff".into(),
            };
            let x = label_w + j * CELL_W;
            s += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                CELL_W - 2,
                ROW_H - 2,
                x + CELL_W / 2,
                y + ROW_H - 4,
                xml(&c.verdict.short())
            );
        }
    }
    let y = TOP + ROW_H * rep.rows.len() + 20;
    s += &format!(
        "<text x=\"4\" y=\"{y}\">green: found fast; amber: found near the budget; light grey (-): not within the budget; dark grey (n/r): cannot reach (see zoo.md)</text>\n</svg>\n"
    );
    s
}
