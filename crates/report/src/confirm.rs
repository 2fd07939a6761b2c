//! `sweep confirm`'s report: the configuration `--best` chose, and the baseline, measured
//! again on seeds that played no part in the choice, so the number carries no winner's curse
//! at the level of fine-tuning seeds (nor of prompts: it is read on the test half).

use sweep_core::Params;
use sweep_store::TrialRow;

use crate::aggregate::Stat;
use crate::compare::{ComparisonReport, Side};
use crate::Aggregator;

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
