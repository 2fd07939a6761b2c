//! The Pareto report in the formats a paper needs: a terminal table, CSV, JSON, Markdown.

use std::io::Write;

use serde_json::json;
use sweep_core::value::format_float;

use crate::aggregate::{Configuration, Stat};
use crate::front::FrontReport;
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

fn param_names(report: &FrontReport) -> Vec<String> {
    let mut names: Vec<String> = report
        .ranked
        .iter()
        .flat_map(|r| r.config.params.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes the report.
pub fn render(
    report: &FrontReport,
    format: Format,
    only_front: bool,
    mut out: impl Write,
) -> Result<(), ExportError> {
    let rows: Vec<_> = report
        .ranked
        .iter()
        .filter(|r| !only_front || r.rank == 1)
        .collect();
    let params = param_names(report);
    match format {
        Format::Json => {
            let value = json!({
                "objectives": report.objectives.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
                "hypervolume": report.hypervolume.as_ref().map(|(hv, r)| json!({"value": hv, "reference": r})),
                "excluded": report.excluded,
                "configurations": rows.iter().map(|r| json!({
                    "sweep": r.config.sweep,
                    "rank": r.rank,
                    "params": r.config.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                    "trials": r.config.trials,
                    "front_share": [r.front_share.0, r.front_share.1],
                    "metrics": r.config.stats.iter().map(|(k, s)| (k.clone(), json!({"mean": s.mean, "std": s.std, "n": s.n, "ci95": s.ci95}))).collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>(),
            });
            write_json(&value, &mut out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec![
                "sweep".to_string(),
                "rank".into(),
                "front_share".into(),
                "n".into(),
            ];
            header.extend(params.iter().map(|p| format!("param_{p}")));
            for o in &report.objectives {
                for s in ["mean", "std", "n", "ci95"] {
                    header.push(format!("metric_{}_{s}", o.metric));
                }
            }
            w.write_record(&header)?;
            for r in &rows {
                let mut rec = vec![
                    r.config.sweep.clone(),
                    r.rank.to_string(),
                    format!("{}/{}", r.front_share.0, r.front_share.1),
                    r.config.trials.len().to_string(),
                ];
                rec.extend(params.iter().map(|p| r.param_text(p)));
                for o in &report.objectives {
                    let s = r.config.stats[&o.metric];
                    rec.extend([
                        format_float(s.mean),
                        format_float(s.std),
                        s.n.to_string(),
                        format_float(s.ci95),
                    ]);
                }
                w.write_record(&rec)?;
            }
            w.flush()?;
        }
        Format::Latex => latex(report, &rows, &params, out)?,
        Format::Table | Format::Markdown => {
            let mut header = vec!["rank".to_string(), "on front".into(), "n".into()];
            header.extend(params.iter().cloned());
            // The spread over replicates is a standard deviation here (`--best` prints 95 %
            // intervals, and says so); a configuration of one trial has none.
            header.extend(
                report
                    .objectives
                    .iter()
                    .map(|o| format!("{o} (mean ± std)")),
            );
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut cells = vec![
                        r.rank.to_string(),
                        format!("{}/{}", r.front_share.0, r.front_share.1),
                        r.config.trials.len().to_string(),
                    ];
                    cells.extend(params.iter().map(|p| r.param_text(p)));
                    cells.extend(report.objectives.iter().map(|o| {
                        let s = r.config.stats[&o.metric];
                        plus_minus(s.mean, s.std, s.n)
                    }));
                    cells
                })
                .collect();
            text_table(&header, &body, format == Format::Markdown, &mut out)?;
            if let Some((hv, reference)) = &report.hypervolume {
                let r: Vec<String> = reference.iter().map(|x| rounded(*x)).collect();
                writeln!(
                    out,
                    "\nhypervolume of the front: {} (reference {})",
                    rounded(*hv),
                    r.join(", ")
                )?;
            }
            for (why, n) in &report.excluded {
                writeln!(out, "excluded: {n} trial(s), {why}")?;
            }
        }
    }
    Ok(())
}

/// Writes `header` and `body` as a GitHub Markdown table, or as aligned text.
fn text_table(
    header: &[String],
    body: &[Vec<String>],
    markdown: bool,
    mut out: impl Write,
) -> Result<(), ExportError> {
    if markdown {
        writeln!(out, "| {} |", header.join(" | "))?;
        writeln!(out, "|{}", "---|".repeat(header.len()))?;
        for row in body {
            writeln!(out, "| {} |", row.join(" | "))?;
        }
        return Ok(());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(header).chain(body.iter().map(Vec::as_slice)) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Writes a `--best` selection: per sweep, the chosen configuration's parameters, and for the
/// objective and each constrained metric the value it was chosen on and the reported one
/// (mean, standard deviation, n and 95 % interval over replicates).
pub fn render_selection(
    selection: &Selection,
    format: Format,
    out: impl Write,
) -> Result<(), ExportError> {
    let chosen: Vec<&Configuration> = selection
        .choices
        .iter()
        .filter_map(|c| c.config.as_ref())
        .collect();
    let mut params: Vec<String> = chosen
        .iter()
        .flat_map(|c| c.params.keys().cloned())
        .collect();
    params.sort();
    params.dedup();
    let metrics = selection.metrics();
    let parts = SelectionParts {
        selection,
        params,
        metrics,
    };
    match format {
        Format::Json => parts.json(out),
        Format::Csv => parts.csv(out),
        Format::Table | Format::Markdown | Format::Latex => parts.text(format, out),
    }
}

/// What every format of a `--best` selection shows: the selection, the chosen
/// configurations' parameter names and the metrics reported.
struct SelectionParts<'a> {
    selection: &'a Selection,
    params: Vec<String>,
    metrics: Vec<String>,
}

impl SelectionParts<'_> {
    /// A statistic of `c`: metric `m` on the half `prefix` names.
    fn stat(c: &Configuration, prefix: &str, m: &str) -> Option<Stat> {
        c.stats.get(&format!("{prefix}{m}")).copied()
    }

    fn json(&self, mut out: impl Write) -> Result<(), ExportError> {
        let (selection, metrics) = (self.selection, &self.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let stat = Self::stat;
        let stat_json = |s: Option<Stat>| {
            s.map(|s| json!({"mean": s.mean, "std": s.std, "n": s.n, "ci95": s.ci95}))
        };
        let value = json!({
            "objective": selection.objective.to_string(),
            "subject_to": selection.constraints.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "chosen_on": choose,
            "reported_on": report,
            "sweeps": selection.choices.iter().map(|ch| json!({
                "sweep": ch.sweep,
                "eligible": ch.eligible.0,
                "configurations": ch.eligible.1,
                "bounds": ch.bounds.iter().map(|(c, v)| json!({"constraint": c, "value": v})).collect::<Vec<_>>(),
                "chosen": ch.config.as_ref().map(|c| json!({
                    "params": c.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                    "trials": c.trials,
                    "metrics": metrics.iter().map(|m| (m.clone(), json!({
                        "chosen_on": stat_json(stat(c, choose, m)),
                        "reported": stat_json(stat(c, report, m)),
                    }))).collect::<serde_json::Map<_, _>>(),
                })),
            })).collect::<Vec<_>>(),
        });
        write_json(&value, &mut out)?;
        Ok(())
    }

    fn csv(&self, out: impl Write) -> Result<(), ExportError> {
        let (selection, params, metrics) = (self.selection, &self.params, &self.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let stat = Self::stat;
        let mut w = csv::Writer::from_writer(out);
        let mut header = vec!["sweep".to_string(), "eligible".into(), "n".into()];
        header.extend(params.iter().map(|p| format!("param_{p}")));
        for m in metrics.iter() {
            header.push(format!("metric_{choose}{m}_mean"));
            for s in ["mean", "std", "n", "ci95"] {
                header.push(format!("metric_{report}{m}_{s}"));
            }
        }
        w.write_record(&header)?;
        for ch in &selection.choices {
            let mut rec = vec![
                ch.sweep.clone(),
                format!("{}/{}", ch.eligible.0, ch.eligible.1),
            ];
            match &ch.config {
                None => rec.resize(header.len(), String::new()),
                Some(c) => {
                    rec.push(c.trials.len().to_string());
                    rec.extend(params.iter().map(|p| param_text(c, p)));
                    for m in metrics.iter() {
                        let chosen_on = stat(c, choose, m).map(|s| format_float(s.mean));
                        rec.push(chosen_on.unwrap_or_default());
                        match stat(c, report, m) {
                            Some(s) => rec.extend([
                                format_float(s.mean),
                                format_float(s.std),
                                s.n.to_string(),
                                format_float(s.ci95),
                            ]),
                            None => rec.extend(vec![String::new(); 4]),
                        }
                    }
                }
            }
            w.write_record(&rec)?;
        }
        w.flush()?;
        Ok(())
    }

    fn text(&self, format: Format, mut out: impl Write) -> Result<(), ExportError> {
        let (selection, params, metrics) = (self.selection, &self.params, &self.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let stat = Self::stat;
        let name = |prefix: &str, m: &str| {
            if prefix.is_empty() {
                m.to_string()
            } else {
                format!("{prefix}{m}")
            }
        };
        let mut header = vec!["sweep".to_string(), "eligible".into(), "n".into()];
        header.extend(params.iter().cloned());
        for m in metrics.iter() {
            header.push(name(choose, m));
            header.push(format!("{} (± 95 % CI)", name(report, m)));
        }
        let body: Vec<Vec<String>> = selection
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
                                stat(c, choose, m)
                                    .map_or(String::new(), |s| format!("{:.4}", s.mean)),
                            );
                            cells.push(
                                stat(c, report, m)
                                    .map_or(String::new(), |s| plus_minus(s.mean, s.ci95, s.n)),
                            );
                        }
                    }
                }
                cells
            })
            .collect();
        if format == Format::Latex {
            writeln!(
                out,
                "% Generated by `sweep report --best`; needs \\usepackage{{booktabs}}."
            )?;
            writeln!(
                out,
                "\\begin{{tabular}}{{l{}}}",
                "r".repeat(header.len() - 1)
            )?;
            writeln!(out, "\\toprule")?;
            let escaped: Vec<String> = header
                .iter()
                .map(|h| tex_escape(h).replace('±', "$\\pm$"))
                .collect();
            writeln!(out, "{} \\\\", escaped.join(" & "))?;
            writeln!(out, "\\midrule")?;
            for row in &body {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| tex_escape(c).replace('±', "$\\pm$"))
                    .collect();
                writeln!(out, "{} \\\\", cells.join(" & "))?;
            }
            writeln!(out, "\\bottomrule")?;
            writeln!(out, "\\end{{tabular}}")?;
        } else {
            text_table(&header, &body, format == Format::Markdown, &mut out)?;
            if format == Format::Table {
                writeln!(
                    out,
                    "\nchosen on {} prompts, reported on {} prompts (n: trials averaged)",
                    if choose.is_empty() {
                        "all"
                    } else {
                        "validation"
                    },
                    if report.is_empty() {
                        "the same"
                    } else {
                        "held-out test"
                    },
                )?;
                for ch in &selection.choices {
                    for (c, v) in &ch.bounds {
                        writeln!(out, "{}: {c} is {}", ch.sweep, format_float(*v))?;
                    }
                }
            }
        }
        Ok(())
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

fn latex(
    report: &FrontReport,
    rows: &[&crate::front::Ranked],
    params: &[String],
    mut out: impl Write,
) -> Result<(), ExportError> {
    let arrows: Vec<String> = report
        .objectives
        .iter()
        .map(|o| {
            let arrow = if o.direction == crate::pareto::Direction::Min {
                "$\\downarrow$"
            } else {
                "$\\uparrow$"
            };
            format!("{} {arrow}", tex_escape(&o.metric))
        })
        .collect();
    writeln!(out, "% Generated by `sweep report`; needs \\usepackage{{booktabs}}. Bold rows are on the Pareto front; cells are mean \\pm std over replicates.")?;
    writeln!(
        out,
        "\\begin{{tabular}}{{r{}{}}}",
        "l".repeat(params.len()),
        "r".repeat(report.objectives.len())
    )?;
    writeln!(out, "\\toprule")?;
    let mut header = vec!["Rank".to_string()];
    header.extend(params.iter().map(|p| tex_escape(p)));
    header.extend(arrows);
    writeln!(out, "{} \\\\", header.join(" & "))?;
    writeln!(out, "\\midrule")?;
    for r in rows {
        let bold = |s: String| {
            if r.rank == 1 {
                format!("\\textbf{{{s}}}")
            } else {
                s
            }
        };
        let mut cells = vec![bold(r.rank.to_string())];
        cells.extend(params.iter().map(|p| bold(tex_escape(&r.param_text(p)))));
        cells.extend(report.objectives.iter().map(|o| {
            let s = r.config.stats[&o.metric];
            let text = if s.n > 1 {
                format!("${:.3} \\pm {:.3}$", s.mean, s.std)
            } else {
                format!("${:.3}$", s.mean)
            };
            if r.rank == 1 {
                format!("\\boldmath{{{text}}}")
            } else {
                text
            }
        }));
        writeln!(out, "{} \\\\", cells.join(" & "))?;
    }
    writeln!(out, "\\bottomrule")?;
    writeln!(out, "\\end{{tabular}}")?;
    Ok(())
}

fn tex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            c => out.push(c),
        }
    }
    out
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
    use super::rounded;

    #[test]
    fn printed_numbers_keep_six_significant_digits() {
        assert_eq!(rounded(1200.0000149999998), "1200.0");
        assert_eq!(rounded(0.06000000000000001), "0.06");
        assert_eq!(rounded(4.10401), "4.10401");
        assert_eq!(rounded(123456789.0), "123457000.0");
    }
}
