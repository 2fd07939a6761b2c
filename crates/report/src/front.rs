//! The Pareto report: configurations ranked by non-dominated sorting on their mean metrics,
//! with what was left out and why, and the front's hypervolume.

use std::collections::BTreeMap;

use sweep_store::{TrialRow, TrialStatus};

use crate::aggregate::{configurations, Configuration};
use crate::pareto::{front_ranks, hypervolume, Objective};

/// One ranked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The configuration and its statistics.
    pub config: Configuration,
    /// Front rank; 1 is the Pareto front.
    pub rank: usize,
    /// How many of its trials are non-dominated among the trials of their own replicate
    /// (e.g. seed), and out of how many.
    pub front_share: (usize, usize),
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontReport {
    /// The objectives, in the order given.
    pub objectives: Vec<Objective>,
    /// Ranked configurations, best rank first, then in expansion order.
    pub ranked: Vec<Ranked>,
    /// Trials left out, by reason (not completed, missing or non-finite metric).
    pub excluded: BTreeMap<String, usize>,
    /// Hypervolume of the front (in the objectives' own units) and the reference point used.
    pub hypervolume: Option<(f64, Vec<f64>)>,
}

/// Ranks the trials of `rows`. `replicate` groups trials into configurations (None: one per
/// trial). `reference` is the hypervolume reference point in the objectives' own units
/// (default: the worst observed value of each objective).
pub fn front_report(
    rows: &[TrialRow],
    objectives: &[Objective],
    replicate: Option<&str>,
    reference: Option<&[f64]>,
) -> FrontReport {
    let mut excluded: BTreeMap<String, usize> = BTreeMap::new();
    let mut usable: Vec<TrialRow> = Vec::new();
    for row in rows {
        if row.status != TrialStatus::Completed {
            *excluded
                .entry(format!("not completed ({})", row.status.as_str()))
                .or_default() += 1;
            continue;
        }
        let problem = objectives
            .iter()
            .find_map(|o| match row.metrics.get(&o.metric) {
                None => Some(format!("no `{}` metric", o.metric)),
                Some(None) => Some(format!("non-finite `{}`", o.metric)),
                Some(Some(v)) if !v.is_finite() => Some(format!("non-finite `{}`", o.metric)),
                Some(Some(_)) => None,
            });
        match problem {
            Some(p) => *excluded.entry(p).or_default() += 1,
            None => usable.push(row.clone()),
        }
    }
    let configs = configurations(&usable, replicate);
    let points: Vec<Vec<f64>> = configs
        .iter()
        .map(|c| {
            objectives
                .iter()
                .map(|o| o.oriented(c.stats[&o.metric].mean))
                .collect()
        })
        .collect();
    let ranks = front_ranks(&points);
    let shares = replicate_shares(&usable, objectives, replicate);
    let mut ranked: Vec<Ranked> = configs
        .into_iter()
        .zip(&ranks)
        .map(|(config, &rank)| {
            let on_front = config
                .trials
                .iter()
                .filter(|t| shares.get(*t).copied().unwrap_or(false))
                .count();
            let n = config.trials.len();
            Ranked {
                config,
                rank,
                front_share: (on_front, n),
            }
        })
        .collect();
    ranked.sort_by_key(|r| r.rank);

    let hypervolume = (!points.is_empty()).then(|| {
        let reference: Vec<f64> = match reference {
            Some(r) => r.to_vec(),
            None => (0..objectives.len())
                .map(|i| {
                    let worst = points
                        .iter()
                        .map(|p| p[i])
                        .fold(f64::NEG_INFINITY, f64::max);
                    objectives[i].oriented(worst)
                })
                .collect(),
        };
        let oriented_ref: Vec<f64> = objectives
            .iter()
            .zip(&reference)
            .map(|(o, r)| o.oriented(*r))
            .collect();
        let front: Vec<Vec<f64>> = points
            .iter()
            .zip(&ranks)
            .filter(|(_, r)| **r == 1)
            .map(|(p, _)| p.clone())
            .collect();
        (hypervolume(&front, &oriented_ref), reference)
    });
    FrontReport {
        objectives: objectives.to_vec(),
        ranked,
        excluded,
        hypervolume,
    }
}

/// For each trial, whether it is non-dominated among the trials sharing its replicate value.
fn replicate_shares(
    rows: &[TrialRow],
    objectives: &[Objective],
    replicate: Option<&str>,
) -> BTreeMap<String, bool> {
    let mut groups: BTreeMap<String, Vec<&TrialRow>> = BTreeMap::new();
    for row in rows {
        let key = replicate
            .and_then(|r| row.params.get(r))
            .map(|v| format!("{}\0{v}", row.sweep))
            .unwrap_or_else(|| row.sweep.clone());
        groups.entry(key).or_default().push(row);
    }
    let mut out = BTreeMap::new();
    for group in groups.values() {
        let points: Vec<Vec<f64>> = group
            .iter()
            .map(|r| {
                objectives
                    .iter()
                    .map(|o| o.oriented(r.metrics[&o.metric].unwrap_or(f64::NAN)))
                    .collect()
            })
            .collect();
        for (row, rank) in group.iter().zip(front_ranks(&points)) {
            out.insert(row.id.clone(), rank == 1);
        }
    }
    out
}
