//! Every report in the formats a paper needs: a terminal table, CSV, JSON, Markdown, LaTeX.
//! One exporter per format (`json`, `csv`, `text`, `latex`), as hyperfine keeps them, each
//! writing every report sweep prints: the Pareto front, a `--best` selection, a paired
//! comparison. [`Format::exporter`] is the one place that maps a format to its writer.

mod csv;
mod json;
mod latex;
mod text;

use std::io::Write;

use sweep_core::value::format_float;

use crate::aggregate::{Configuration, Stat};
use crate::compare::ComparisonReport;
use crate::confirm::ConfirmReport;
use crate::front::{FrontReport, Ranked};
use crate::select::Selection;
use crate::ExportError;

/// Output format of `sweep report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text for a terminal.
    Table,
    /// One row per configuration.
    Csv,
    /// The whole report as one JSON document.
    Json,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    /// A booktabs `tabular` with mean ± std, front rows in bold, ready to `\input`.
    Latex,
}

/// Writes each report in one format.
pub trait Exporter {
    /// The Pareto report.
    fn front(&self, front: &FrontView, out: &mut dyn Write) -> Result<(), ExportError>;
    /// A `--best` selection.
    fn selection(&self, selection: &SelectionView, out: &mut dyn Write) -> Result<(), ExportError>;
    /// A paired, prompt-level comparison.
    fn comparison(&self, report: &ComparisonReport, out: &mut dyn Write)
        -> Result<(), ExportError>;
    /// `sweep confirm`'s report: the choice and the baseline on new seeds.
    fn confirmation(&self, report: &ConfirmReport, out: &mut dyn Write) -> Result<(), ExportError>;
}

impl Format {
    /// The writer of this format.
    pub fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Table => &text::Text { markdown: false },
            Format::Markdown => &text::Text { markdown: true },
            Format::Csv => &csv::Csv,
            Format::Json => &json::Json,
            Format::Latex => &latex::Latex,
        }
    }
}

/// What every format of the Pareto report shows: the report, the rows kept, and the
/// configurations' parameter names.
pub struct FrontView<'a> {
    report: &'a FrontReport,
    rows: Vec<&'a Ranked>,
    params: Vec<String>,
}

impl<'a> FrontView<'a> {
    /// Every ranked configuration, or the front's only.
    fn new(report: &'a FrontReport, only_front: bool) -> FrontView<'a> {
        FrontView {
            report,
            rows: report
                .ranked
                .iter()
                .filter(|r| !only_front || r.rank == 1)
                .collect(),
            params: report.param_names(),
        }
    }
}

/// What every format of a `--best` selection shows: the selection, the chosen
/// configurations' parameter names and the metrics reported.
pub struct SelectionView<'a> {
    selection: &'a Selection,
    params: Vec<String>,
    metrics: Vec<String>,
}

impl SelectionView<'_> {
    /// A statistic of `c`: metric `m` on the half `prefix` names.
    fn stat(c: &Configuration, prefix: &str, m: &str) -> Option<Stat> {
        c.stats.get(&format!("{prefix}{m}")).copied()
    }

    /// The table's header and rows, as the text and LaTeX formats print them: per sweep, the
    /// chosen configuration's parameters, and per metric the mean it was chosen on and the
    /// reported mean ± 95 % interval.
    fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let (selection, params, metrics) = (self.selection, &self.params, &self.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let name = |prefix: &str, m: &str| format!("{prefix}{m}");
        let mut header = vec!["sweep".to_string(), "eligible".into(), "n".into()];
        header.extend(params.iter().cloned());
        for m in metrics.iter() {
            header.push(name(choose, m));
            header.push(format!("{} (± 95 % CI)", name(report, m)));
        }
        let body = selection
            .choices
            .iter()
            .map(|ch| {
                let mut cells = vec![
                    ch.sweep.clone(),
                    format!("{}/{}", ch.eligible.0, ch.eligible.1),
                ];
                match &ch.config {
                    None => {
                        cells.push("none meets the constraints".into());
                        cells.resize(header.len(), String::new());
                    }
                    Some(c) => {
                        cells.push(c.trials.len().to_string());
                        cells.extend(params.iter().map(|p| param_text(c, p)));
                        for m in metrics.iter() {
                            cells.push(
                                Self::stat(c, choose, m)
                                    .map_or(String::new(), |s| format!("{:.4}", s.mean)),
                            );
                            cells.push(
                                Self::stat(c, report, m)
                                    .map_or(String::new(), |s| plus_minus(s.mean, s.ci95, s.n)),
                            );
                        }
                    }
                }
                cells
            })
            .collect();
        (header, body)
    }
}

/// Writes the Pareto report.
pub fn render(
    report: &FrontReport,
    format: Format,
    only_front: bool,
    mut out: impl Write,
) -> Result<(), ExportError> {
    format
        .exporter()
        .front(&FrontView::new(report, only_front), &mut out)
}

/// Writes a `--best` selection: per sweep, the chosen configuration's parameters, and for the
/// objective and each constrained metric the value it was chosen on and the reported one
/// (mean, standard deviation, n and 95 % interval over replicates).
pub fn render_selection(
    selection: &Selection,
    format: Format,
    mut out: impl Write,
) -> Result<(), ExportError> {
    let mut params: Vec<String> = selection
        .choices
        .iter()
        .filter_map(|c| c.config.as_ref())
        .flat_map(|c| c.params.keys().cloned())
        .collect();
    params.sort();
    params.dedup();
    let view = SelectionView {
        selection,
        params,
        metrics: selection.metrics(),
    };
    format.exporter().selection(&view, &mut out)
}

/// Writes `sweep confirm`'s report.
pub fn render_confirmation(
    report: &ConfirmReport,
    format: Format,
    mut out: impl Write,
) -> Result<(), ExportError> {
    format.exporter().confirmation(report, &mut out)
}

/// A configuration's value on the new seeds: mean ± 95 % interval over them, as the table,
/// Markdown and LaTeX formats print it.
fn confirmed_text(stat: Option<&Stat>) -> String {
    match stat {
        Some(s) if s.n > 1 => format!("{:.4} ± {:.4}", s.mean, s.ci95),
        Some(s) => format!("{:.4}", s.mean),
        None => "not reported".to_string(),
    }
}

/// `mean ± spread` to four places, or the mean alone for a single value.
fn plus_minus(mean: f64, spread: f64, n: usize) -> String {
    if n > 1 {
        format!("{mean:.4} ± {spread:.4}")
    } else {
        format!("{mean:.4}")
    }
}

/// A parameter's value as text, empty when the configuration does not have it.
fn param_text(c: &Configuration, name: &str) -> String {
    c.params
        .get(name)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// A JSON value, pretty-printed, on a line of its own: what every `--format json` writes.
pub(crate) fn write_json(value: &serde_json::Value, mut out: impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

/// Six significant digits, as a reader compares them (`1200`, not `1200.0000149999998`);
/// exports keep every digit.
fn rounded(x: f64) -> String {
    match format!("{x:.5e}").parse::<f64>() {
        Ok(r) if x.is_finite() => format_float(r),
        _ => format_float(x),
    }
}

#[cfg(test)]
mod tests {
    use sweep_core::{ParamValue, Params};

    use super::{render_confirmation, rounded, Format};
    use crate::aggregate::Stat;
    use crate::confirm::{ConfirmReport, Confirmed};

    fn confirm_report() -> ConfirmReport {
        let config = |role, lr: f64, stat| Confirmed {
            role,
            params: Params::from([("learning_rate".to_string(), ParamValue::Float(lr))]),
            stat,
            trials: Vec::new(),
        };
        ConfirmReport {
            original: "g".into(),
            sweep: "g-confirm".into(),
            metric: "test_unsafe_rate".into(),
            seeds: vec![2, 3],
            configs: vec![
                config(
                    "chosen",
                    1e-4,
                    Some(Stat {
                        mean: 0.125,
                        std: 0.01,
                        n: 2,
                        ci95: 0.09,
                    }),
                ),
                config("baseline", 3e-4, None),
            ],
            paired: None,
        }
    }

    fn confirmation(format: Format) -> String {
        let mut out = Vec::new();
        render_confirmation(&confirm_report(), format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_confirmation_is_written_in_every_format() {
        let table = confirmation(Format::Table);
        assert!(table.contains("new seeds [2, 3]"), "{table}");
        assert!(table.contains("0.1250 ± 0.0900"), "{table}");
        assert!(table.contains("not reported"), "{table}");

        let markdown = confirmation(Format::Markdown);
        assert!(
            markdown.contains("| chosen | 0.1250 ± 0.0900 | 2 |"),
            "{markdown}"
        );

        let csv = confirmation(Format::Csv);
        let mut rows = ::csv::Reader::from_reader(csv.as_bytes());
        let header = rows.headers().unwrap().clone();
        let records: Vec<_> = rows.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2, "{csv}");
        let at = |name: &str| header.iter().position(|h| h == name).unwrap();
        assert_eq!(&records[0][at("role")], "chosen");
        assert_eq!(&records[0][at("metric_mean")], "0.125");
        assert_eq!(&records[0][at("param_learning_rate")], "0.0001");
        assert_eq!(
            &records[1][at("metric_mean")],
            "",
            "no number where none was reported"
        );

        let latex = confirmation(Format::Latex);
        assert!(latex.contains("\\begin{tabular}{llr}"), "{latex}");
        assert!(
            latex.contains("chosen & learning\\_rate = 0.0001 & 0.1250 $\\pm$ 0.0900"),
            "{latex}"
        );

        let json: serde_json::Value = serde_json::from_str(&confirmation(Format::Json)).unwrap();
        assert_eq!(json["configurations"][0]["params"]["learning_rate"], 1e-4);
        assert!(json["configurations"][1]["stat"].is_null());
    }

    #[test]
    fn printed_numbers_keep_six_significant_digits() {
        assert_eq!(rounded(1200.0000149999998), "1200.0");
        assert_eq!(rounded(0.06000000000000001), "0.06");
        assert_eq!(rounded(4.10401), "4.10401");
        assert_eq!(rounded(123456789.0), "123457000.0");
    }
}
