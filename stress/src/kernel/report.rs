//! The differential's report: one row per model row (case, backing, real
//! result, the model's result in one preset, agreement, notes), its table and
//! its JSON. A report re-judged against another preset (`--from`) keeps its
//! real results and takes the model's anew.

use super::plan::{judge, model_cell, Real, Verdict};
use gupcheck_model::harness::kselftest::cow::{Cell, Table};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub suite: String,
    pub case: String,
    pub backing: String,
    pub real: Real,
    /// The model's result; `None` when the model does not model the row.
    pub model: Option<Cell>,
    pub verdict: Verdict,
    pub notes: String,
    /// Why the model does not model the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_modelled: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub gupcheck: String,
    /// `uname -r` of the kernel the real results come from.
    pub kernel: String,
    /// The model preset they are compared with.
    pub preset: String,
    pub rows: Vec<Row>,
}

/// A real result and its notes for one model row.
pub type Measured = (Real, String);

impl Report {
    /// Judges the real results `real` (one per row of `model`, in order)
    /// against the model's column `preset`.
    pub fn build(
        kernel: &str,
        preset: &str,
        model: &Table,
        real: Vec<Measured>,
    ) -> Result<Report, String> {
        let index = model
            .presets
            .iter()
            .position(|p| p == preset)
            .ok_or_else(|| format!("the model's table has no preset '{preset}'"))?;
        let rows = model
            .rows
            .iter()
            .zip(real)
            .map(|(m, (real, notes))| {
                let cell = model_cell(m, index).cloned();
                Row {
                    suite: m.suite.clone(),
                    case: m.case.clone(),
                    backing: m.backing.clone(),
                    verdict: judge(&real, cell.as_ref()),
                    real,
                    model: cell,
                    notes,
                    not_modelled: m.not_modelled.clone(),
                }
            })
            .collect();
        Ok(Report {
            format: FORMAT,
            gupcheck: env!("CARGO_PKG_VERSION").into(),
            kernel: kernel.into(),
            preset: preset.into(),
            rows,
        })
    }

    /// A recorded report's real results re-judged against `preset`: rows are
    /// matched by suite, case and backing; a model row the report lacks is a
    /// skip.
    pub fn rejudge(&self, preset: &str, model: &Table) -> Result<Report, String> {
        let real = model
            .rows
            .iter()
            .map(|m| {
                self.rows
                    .iter()
                    .find(|r| (&r.suite, &r.case, &r.backing) == (&m.suite, &m.case, &m.backing))
                    .map(|r| (r.real.clone(), r.notes.clone()))
                    .unwrap_or_else(|| {
                        (
                            Real::Skip("not in the recorded report".into()),
                            String::new(),
                        )
                    })
            })
            .collect();
        Report::build(&self.kernel, preset, model, real)
    }

    pub fn parse(text: &str) -> Result<Report, String> {
        let r: Report = serde_json::from_str(text)
            .map_err(|e| format!("not a gupcheck kernel selftests report: {e}"))?;
        if r.format != FORMAT {
            return Err(format!(
                "report format {} (this gupcheck reads {FORMAT})",
                r.format
            ));
        }
        Ok(r)
    }

    pub fn count(&self, v: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == v).count()
    }

    /// Rows that fail the run: disagreements and cases that could not be
    /// carried out.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Disagree | Verdict::Error))
            .collect()
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| suite | case | backing | real ({}) | model ({}) | agree | notes |\n|---|---|---|---|---|---|---|\n",
            self.kernel, self.preset
        );
        for r in &self.rows {
            let model = r.model.as_ref().map_or("not modelled".into(), show_cell);
            let notes = match &r.not_modelled {
                Some(why) => join(&r.notes, &format!("not modelled: {why}")),
                None => r.notes.clone(),
            };
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.suite,
                r.case,
                r.backing,
                cell_text(&r.real.show()),
                model,
                r.verdict.show(),
                cell_text(&notes)
            );
        }
        s
    }

    /// One line: the counts of each verdict.
    pub fn summary(&self) -> String {
        format!(
            "{} rows: {} agree, {} disagree, {} error, {} skipped, {} not modelled (kernel {}, preset {})",
            self.rows.len(),
            self.count(Verdict::Agree),
            self.count(Verdict::Disagree),
            self.count(Verdict::Error),
            self.count(Verdict::Skip),
            self.count(Verdict::NotModelled),
            self.kernel,
            self.preset
        )
    }
}

pub fn show_cell(c: &Cell) -> String {
    match c {
        Cell::Pass => "pass".into(),
        Cell::Fail(why) => format!("FAIL: {why}"),
    }
}

/// A Markdown cell: a `|` would end it.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|")
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.into(),
        (_, true) => a.into(),
        _ => format!("{a}; {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gupcheck_model::harness::kselftest::cow::Row as ModelRow;

    fn model() -> Table {
        let row = |case: &str, cells: Vec<Cell>, nm: Option<&str>| ModelRow {
            suite: "cow".into(),
            case: case.into(),
            backing: "base page".into(),
            cells,
            not_modelled: nm.map(Into::into),
            xfail: None,
        };
        Table {
            presets: vec!["6.1".into(), "latest".into()],
            rows: vec![
                row("A1 Basic COW", vec![Cell::Pass, Cell::Pass], None),
                row(
                    "A3 vmsplice",
                    vec![Cell::Fail("no leak after fork".into()), Cell::Pass],
                    None,
                ),
                row("A2 mprotect", vec![], Some("no mprotect()")),
            ],
        }
    }

    fn measured() -> Vec<Measured> {
        vec![
            (Real::Pass, "process_vm_readv agrees".into()),
            (Real::Pass, String::new()),
            (Real::NotRun, String::new()),
        ]
    }

    #[test]
    fn rows_are_judged_in_the_chosen_preset() {
        let r = Report::build("6.18.1", "latest", &model(), measured()).unwrap();
        assert_eq!(
            r.rows.iter().map(|r| r.verdict).collect::<Vec<_>>(),
            [Verdict::Agree, Verdict::Agree, Verdict::NotModelled]
        );
        assert!(r.failures().is_empty());
        let old = Report::build("6.18.1", "6.1", &model(), measured()).unwrap();
        assert_eq!(old.failures().len(), 1);
        assert_eq!(old.failures()[0].case, "A3 vmsplice");
        assert!(Report::build("6.18.1", "5.4", &model(), measured())
            .unwrap_err()
            .contains("'5.4'"));
    }

    #[test]
    fn markdown_and_json_round_trip() {
        let r = Report::build("6.18.1", "latest", &model(), measured()).unwrap();
        let md = r.markdown();
        assert!(md.starts_with(
            "| suite | case | backing | real (6.18.1) | model (latest) | agree | notes |"
        ));
        assert!(md.contains(
            "| cow | A1 Basic COW | base page | pass | pass | yes | process_vm_readv agrees |"
        ));
        assert!(md.contains("| A2 mprotect | base page | not run | not modelled | not modelled | not modelled: no mprotect() |"));
        let json = serde_json::to_string(&r).unwrap();
        let back = Report::parse(&json).unwrap();
        assert_eq!(back, r);
        // Re-judged, the notes are not doubled and the verdicts follow the preset.
        let again = back.rejudge("6.1", &model()).unwrap();
        assert_eq!(again.rows[2].not_modelled.as_deref(), Some("no mprotect()"));
        assert_eq!(again.rows[0].notes, "process_vm_readv agrees");
        assert_eq!(again.rows[1].verdict, Verdict::Disagree);
        assert!(r
            .summary()
            .starts_with("3 rows: 2 agree, 0 disagree, 0 error, 0 skipped, 1 not modelled"));
        assert!(Report::parse("{}")
            .unwrap_err()
            .starts_with("not a gupcheck"));
        let newer = json.replace("\"format\":1", "\"format\":9");
        assert!(Report::parse(&newer).unwrap_err().contains("format 9"));
    }
}
