//! The Pareto report in the formats a paper needs: a terminal table, CSV, JSON, Markdown.

use std::io::Write;

use serde_json::json;
use sweep_core::value::format_float;

use crate::front::FrontReport;
use crate::ExportError;

/// Output format of `sweep report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            )?;
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
                    header.push(format!("{}_{s}", o.metric));
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
            header.extend(report.objectives.iter().map(|o| o.to_string()));
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
                        if s.n > 1 {
                            format!("{:.4} ± {:.4}", s.mean, s.std)
                        } else {
                            format!("{:.4}", s.mean)
                        }
                    }));
                    cells
                })
                .collect();
            if format == Format::Markdown {
                writeln!(out, "| {} |", header.join(" | "))?;
                writeln!(out, "|{}", "---|".repeat(header.len()))?;
                for row in &body {
                    writeln!(out, "| {} |", row.join(" | "))?;
                }
            } else {
                let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
                for row in &body {
                    for (w, c) in widths.iter_mut().zip(row) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                for row in std::iter::once(&header).chain(&body) {
                    let line: Vec<String> = row
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect();
                    writeln!(out, "{}", line.join("  ").trim_end())?;
                }
            }
            if let Some((hv, reference)) = &report.hypervolume {
                let r: Vec<String> = reference.iter().map(|x| format_float(*x)).collect();
                writeln!(
                    out,
                    "\nhypervolume of the front: {} (reference {})",
                    format_float(*hv),
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
    writeln!(out, "% Generated by `sweep report`; needs \\usepackage{{booktabs}}. Bold rows are on the Pareto front.")?;
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
