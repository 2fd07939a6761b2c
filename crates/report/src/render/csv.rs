//! `--format csv`: each report as one table, every digit kept, columns named as the exports
//! name them (`param_<name>`, `metric_<name>_mean`, `_std`, `_n`, `_ci95`).

use std::io::Write;

use sweep_core::value::format_float;

use super::{param_text, Exporter, FrontView, SelectionView};
use crate::aggregate::Stat;
use crate::compare::ComparisonReport;
use crate::confirm::ConfirmReport;
use crate::ExportError;

/// The CSV writer.
pub(super) struct Csv;

/// A statistic's four columns.
fn stat_cells(s: Stat) -> [String; 4] {
    [
        format_float(s.mean),
        format_float(s.std),
        s.n.to_string(),
        format_float(s.ci95),
    ]
}

impl Exporter for Csv {
    fn front(&self, front: &FrontView, out: &mut dyn Write) -> Result<(), ExportError> {
        let (report, params) = (front.report, &front.params);
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
        for r in &front.rows {
            let mut rec = vec![
                r.config.sweep.clone(),
                r.rank.to_string(),
                r.front_share_text(),
                r.config.trials.len().to_string(),
            ];
            rec.extend(params.iter().map(|p| r.param_text(p)));
            for o in &report.objectives {
                rec.extend(stat_cells(r.config.stats[&o.metric]));
            }
            w.write_record(&rec)?;
        }
        w.flush()?;
        Ok(())
    }

    fn selection(&self, view: &SelectionView, out: &mut dyn Write) -> Result<(), ExportError> {
        let (selection, params, metrics) = (view.selection, &view.params, &view.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let stat = SelectionView::stat;
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
                            Some(s) => rec.extend(stat_cells(s)),
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

    fn comparison(
        &self,
        report: &ComparisonReport,
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        let c = &report.comparison;
        let mut w = csv::Writer::from_writer(out);
        w.write_record([
            "metric",
            "a",
            "b",
            "rate_a",
            "rate_b",
            "difference",
            "ci95_low",
            "ci95_high",
            "only_a",
            "only_b",
            "p_value",
            "prompts",
            "replicates",
        ])?;
        w.write_record([
            report.metric.clone(),
            report.a.label.clone(),
            report.b.label.clone(),
            format_float(c.rate_a),
            format_float(c.rate_b),
            format_float(c.difference),
            format_float(c.ci95.0),
            format_float(c.ci95.1),
            c.only_a.to_string(),
            c.only_b.to_string(),
            format_float(c.p_value),
            c.prompts.to_string(),
            report.strata.len().to_string(),
        ])?;
        w.flush()?;
        Ok(())
    }

    /// One row per configuration: the metric's statistic over the new seeds and the
    /// parameters; the prompt-level comparison is `sweep compare`'s CSV.
    fn confirmation(&self, report: &ConfirmReport, out: &mut dyn Write) -> Result<(), ExportError> {
        let mut params: Vec<&String> = report
            .configs
            .iter()
            .flat_map(|c| c.params.keys())
            .collect();
        params.sort();
        params.dedup();
        let mut w = csv::Writer::from_writer(out);
        let mut header: Vec<String> = ["sweep", "original", "role", "metric", "seeds"]
            .map(String::from)
            .to_vec();
        header.extend(["mean", "std", "n", "ci95"].map(|s| format!("metric_{s}")));
        header.extend(params.iter().map(|p| format!("param_{p}")));
        w.write_record(&header)?;
        let seeds: Vec<String> = report.seeds.iter().map(i64::to_string).collect();
        for c in &report.configs {
            let mut row = vec![
                report.sweep.clone(),
                report.original.clone(),
                c.role.to_string(),
                report.metric.clone(),
                seeds.join(" "),
            ];
            row.extend(
                c.stat
                    .map_or_else(|| [(); 4].map(|_| String::new()), stat_cells),
            );
            row.extend(
                params
                    .iter()
                    .map(|p| c.params.get(*p).map(|v| v.to_string()).unwrap_or_default()),
            );
            w.write_record(&row)?;
        }
        w.flush()?;
        Ok(())
    }
}
