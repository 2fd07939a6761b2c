//! `--format json`: each report as one pretty-printed JSON document, every digit kept.

use std::io::Write;

use serde_json::json;
use sweep_core::value::{params_to_json, params_to_value};

use super::{write_json, Exporter, FrontView, SelectionView};
use crate::aggregate::Stat;
use crate::compare::ComparisonReport;
use crate::confirm::ConfirmReport;
use crate::ExportError;

/// The JSON writer.
pub(super) struct Json;

fn stat_json(s: Option<Stat>) -> serde_json::Value {
    s.map_or(serde_json::Value::Null, |s| s.to_json())
}

impl Exporter for Json {
    fn front(&self, front: &FrontView, out: &mut dyn Write) -> Result<(), ExportError> {
        let report = front.report;
        let value = json!({
            "objectives": report.objectives.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            "hypervolume": report.hypervolume.as_ref().map(|(hv, r)| json!({"value": hv, "reference": r})),
            "excluded": report.excluded,
            "configurations": front.rows.iter().map(|r| json!({
                "sweep": r.config.sweep,
                "rank": r.rank,
                "params": params_to_value(&r.config.params),
                "trials": r.config.trials,
                "front_share": r.front_share.map(|(k, n)| [k, n]),
                "metrics": r.config.stats.iter().map(|(k, s)| (k.clone(), stat_json(Some(*s)))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        });
        write_json(&value, out)?;
        Ok(())
    }

    fn selection(&self, view: &SelectionView, out: &mut dyn Write) -> Result<(), ExportError> {
        let (selection, metrics) = (view.selection, &view.metrics);
        let (choose, report) = (selection.halves.choose, selection.halves.report);
        let stat = SelectionView::stat;
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
                    "params": params_to_value(&c.params),
                    "trials": c.trials,
                    "metrics": metrics.iter().map(|m| (m.clone(), json!({
                        "chosen_on": stat_json(stat(c, choose, m)),
                        "reported": stat_json(stat(c, report, m)),
                    }))).collect::<serde_json::Map<_, _>>(),
                })),
            })).collect::<Vec<_>>(),
        });
        write_json(&value, out)?;
        Ok(())
    }

    fn comparison(
        &self,
        report: &ComparisonReport,
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        let c = &report.comparison;
        let value = json!({
            "metric": report.metric,
            "a": {"filters": report.a.label, "params": params_to_json(&report.a.params), "rate": c.rate_a},
            "b": {"filters": report.b.label, "params": params_to_json(&report.b.params), "rate": c.rate_b},
            "difference": c.difference,
            "ci95": [c.ci95.0, c.ci95.1],
            "only_a": c.only_a,
            "only_b": c.only_b,
            "p_value": c.p_value,
            "prompts": c.prompts,
            "replicates": report.strata.iter().map(|(l, n)| json!({"replicate": l, "prompts": n})).collect::<Vec<_>>(),
            "unpaired": report.unpaired,
            "resamples": c.resamples,
        });
        write_json(&value, out)?;
        Ok(())
    }

    fn confirmation(&self, report: &ConfirmReport, out: &mut dyn Write) -> Result<(), ExportError> {
        let value = json!({
            "original": report.original,
            "sweep": report.sweep,
            "metric": report.metric,
            "seeds": report.seeds,
            "configurations": report.configs.iter().map(|c| json!({
                "role": c.role,
                "params": params_to_value(&c.params),
                "stat": stat_json(c.stat),
            })).collect::<Vec<_>>(),
            "paired": report.paired.as_ref().map(|p| json!({
                "difference": p.comparison.difference,
                "ci95": [p.comparison.ci95.0, p.comparison.ci95.1],
                "p_value": p.comparison.p_value,
                "prompts": p.comparison.prompts,
            })),
        });
        write_json(&value, out)?;
        Ok(())
    }
}
