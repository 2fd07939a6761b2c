//! `sweep confirm`'s report: the configuration `--best` chose, and the baseline, measured
//! again on seeds that played no part in the choice, so the number carries no winner's curse
//! at the level of fine-tuning seeds (nor of prompts: it is read on the test half).

use std::io::Write;

use serde_json::json;
use sweep_core::value::params_to_json;
use sweep_core::Params;
use sweep_store::TrialRow;

use crate::aggregate::Stat;
use crate::compare::{render_comparison, ComparisonReport, Side};
use crate::render::write_json;
use crate::{Aggregator, ExportError, Format};

/// One configuration on the new seeds.
#[derive(Debug, Clone)]
pub struct Confirmed {
    /// `chosen` or `baseline`.
    pub role: &'static str,
    /// Its parameters, replicates left out.
    pub params: Params,
    /// The reported metric over the new seeds (none when no trial reported it).
    pub stat: Option<Stat>,
    /// Its trials in the confirmation sweep.
    pub trials: Vec<TrialRow>,
}

/// What `sweep confirm` reports.
#[derive(Debug, Clone)]
pub struct ConfirmReport {
    /// The sweep the choice was made in.
    pub original: String,
    /// The confirmation sweep.
    pub sweep: String,
    /// The metric reported (the objective's test half where the trials report halves).
    pub metric: String,
    /// The new seeds' values.
    pub seeds: Vec<i64>,
    /// The chosen configuration, then the baseline if one was named.
    pub configs: Vec<Confirmed>,
    /// The chosen configuration against the baseline, prompt by prompt, where the metric is
    /// a rate with per-prompt verdicts.
    pub paired: Option<ComparisonReport>,
}

/// Each of `configs` (role, parameters) with its trials among `rows` and the summary of
/// `metric` over them.
pub fn confirmed(
    rows: &[TrialRow],
    configs: &[(&'static str, Params)],
    replicate: &[String],
    metric: &str,
) -> Vec<Confirmed> {
    configs
        .iter()
        .map(|(role, params)| {
            let trials: Vec<TrialRow> = rows
                .iter()
                .filter(|r| {
                    let mut p = r.params.clone();
                    p.retain(|k, _| !replicate.contains(k));
                    p == *params
                })
                .cloned()
                .collect();
            let mut aggregator = Aggregator::new(Some(replicate));
            for t in &trials {
                aggregator.add(t);
            }
            let stat = aggregator
                .finish()
                .first()
                .and_then(|c| c.stats.get(metric).copied());
            Confirmed {
                role,
                params: params.clone(),
                stat,
                trials,
            }
        })
        .collect()
}

impl Confirmed {
    /// The configuration as one side of a paired comparison.
    pub fn side(&self) -> Side {
        Side {
            label: self.role.to_string(),
            params: self.params.clone(),
            trials: self.trials.clone(),
        }
    }
}

/// Writes the report: a table on a terminal, or one JSON document.
pub fn render_confirmation(
    report: &ConfirmReport,
    format: Format,
    mut out: impl Write,
) -> Result<(), ExportError> {
    if format == Format::Json {
        let value = json!({
            "original": report.original,
            "sweep": report.sweep,
            "metric": report.metric,
            "seeds": report.seeds,
            "configurations": report.configs.iter().map(|c| json!({
                "role": c.role,
                "params": params_to_json(&c.params),
                "stat": c.stat.as_ref().map(Stat::to_json),
            })).collect::<Vec<_>>(),
            "paired": report.paired.as_ref().map(|p| json!({
                "difference": p.comparison.difference,
                "ci95": [p.comparison.ci95.0, p.comparison.ci95.1],
                "p_value": p.comparison.p_value,
                "prompts": p.comparison.prompts,
            })),
        });
        write_json(&value, &mut out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} on new seeds {:?} (sweep {}; chosen in sweep {}, whose trials took no part here)",
        report.metric, report.seeds, report.sweep, report.original
    )?;
    for c in &report.configs {
        let value = match &c.stat {
            Some(s) => format!(
                "{:.4} ± {:.4} (95 % interval over {} seeds)",
                s.mean, s.ci95, s.n
            ),
            None => "not reported".to_string(),
        };
        writeln!(out, "{:<9} {value}   {}", c.role, params_to_json(&c.params))?;
    }
    if let Some(paired) = &report.paired {
        writeln!(out)?;
        render_comparison(paired, Format::Table, &mut out)?;
    }
    Ok(())
}
