//! `sweep compare`: two configurations of a sweep, each named by filters, compared prompt by
//! prompt on one rate ([`crate::paired`]) from the verdicts their trials wrote
//! ([`crate::verdicts`]), replicate by replicate, in every output format.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sweep_core::value::params_to_json;
use sweep_core::Params;
use sweep_store::{TrialRow, TrialStatus};

use crate::paired::{compare, Comparison, Stratum};
use crate::verdicts::{read, trial_dir, Point, VerdictError, VerdictRule};
use crate::{ExportError, Filter, Format};

/// One side of a comparison: the configuration its filters select and its completed trials.
#[derive(Debug, Clone)]
pub struct Side {
    /// The filters as the user wrote them.
    pub label: String,
    /// The configuration's parameters, replicates left out.
    pub params: Params,
    /// Its completed trials.
    pub trials: Vec<TrialRow>,
}

/// A comparison that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// No completed trial matches one side's filters.
    #[error("{side} ({filters}): no completed trial matches")]
    NoTrials {
        /// `A` or `B`.
        side: &'static str,
        /// Its filters.
        filters: String,
    },
    /// One side's filters select several configurations.
    #[error(
        "{side} ({filters}) matches {count} configurations; add conditions until one is left:\n  {configs}"
    )]
    Several {
        /// `A` or `B`.
        side: &'static str,
        /// Its filters.
        filters: String,
        /// How many.
        count: usize,
        /// Their parameters, one a line.
        configs: String,
    },
    /// Both sides are the same configuration.
    #[error("A and B select the same configuration ({0}); compare two different ones")]
    Same(String),
    /// No replicate was run by both.
    #[error(
        "A and B share no replicate ({names} values: A has {a}, B has {b}); pairs need the same seeds"
    )]
    NoSharedReplicate {
        /// The replicate parameters.
        names: String,
        /// A's values.
        a: String,
        /// B's values.
        b: String,
    },
    /// The metric has no per-prompt verdicts.
    #[error(transparent)]
    Metric(VerdictError),
    /// A trial's verdicts cannot be read.
    #[error("trial {trial}: {source}")]
    Verdicts {
        /// The trial.
        trial: String,
        /// Why.
        #[source]
        source: VerdictError,
    },
    /// Two trials of one side have the same replicate values (read from two sweeps that
    /// both ran it).
    #[error(
        "{side}: trials {first} and {second} both have {replicate}; \
         name sweeps that split the replicates between them, not sweeps that repeat one"
    )]
    RepeatedReplicate {
        /// "A" or "B".
        side: &'static str,
        /// The replicate values.
        replicate: String,
        /// One trial.
        first: String,
        /// The other.
        second: String,
    },
    /// The two trials of a replicate share no prompt.
    #[error("{0}: A's and B's trials share no prompt for this metric")]
    NoPrompts(String),
}

/// The one configuration of completed `rows` that `filter` selects (replicates grouped);
/// `side` names it in errors.
pub fn configuration(
    rows: &[TrialRow],
    side: &'static str,
    (label, filter): (&str, &Filter),
    replicate: &[String],
) -> Result<Side, CompareError> {
    let mut configs: BTreeMap<String, Side> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.status == TrialStatus::Completed && filter.keep(r))
    {
        let mut params = row.params.clone();
        params.retain(|k, _| !replicate.contains(k));
        configs
            .entry(params_to_json(&params))
            .or_insert_with(|| Side {
                label: label.to_string(),
                params,
                trials: Vec::new(),
            })
            .trials
            .push(row.clone());
    }
    match configs.len() {
        0 => Err(CompareError::NoTrials {
            side,
            filters: label.to_string(),
        }),
        1 => {
            let config = configs.into_values().next().expect("one");
            let mut seen: BTreeMap<String, &TrialRow> = BTreeMap::new();
            for trial in &config.trials {
                let replicate = replicate_label(trial, replicate);
                if let Some(first) = seen.insert(replicate.clone(), trial) {
                    return Err(CompareError::RepeatedReplicate {
                        side,
                        replicate,
                        first: format!("{} ({})", first.id, first.sweep),
                        second: format!("{} ({})", trial.id, trial.sweep),
                    });
                }
            }
            Ok(config)
        }
        count => Err(CompareError::Several {
            side,
            filters: label.to_string(),
            count,
            configs: configs.keys().cloned().collect::<Vec<_>>().join("\n  "),
        }),
    }
}

/// A's configuration among `rows_a` and B's among `rows_b` (each must be exactly one): the
/// same sweep's trials twice, or two sweeps' that evaluated the same prompts.
pub fn sides(
    rows_a: &[TrialRow],
    rows_b: &[TrialRow],
    a: (&str, &Filter),
    b: (&str, &Filter),
    replicate: &[String],
) -> Result<(Side, Side), CompareError> {
    let a = configuration(rows_a, "A", a, replicate)?;
    let b = configuration(rows_b, "B", b, replicate)?;
    let sweep = |s: &Side| s.trials[0].sweep.clone();
    if a.params == b.params && sweep(&a) == sweep(&b) {
        return Err(CompareError::Same(params_to_json(&a.params)));
    }
    Ok((a, b))
}

/// What `sweep compare` reports.
#[derive(Debug, Clone)]
pub struct ComparisonReport {
    /// The metric compared.
    pub metric: String,
    /// A.
    pub a: Side,
    /// B.
    pub b: Side,
    /// The replicates paired, with the prompts each pairs.
    pub strata: Vec<(String, usize)>,
    /// The replicates only one side ran (left out).
    pub unpaired: Vec<String>,
    /// The statistics.
    pub comparison: Comparison,
}

/// A trial's replicate values as `name=value` joined by commas: what pairs it with the other
/// side's trial.
fn replicate_label(row: &TrialRow, replicate: &[String]) -> String {
    let reps: Params = row
        .params
        .iter()
        .filter(|(k, _)| replicate.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let label: Vec<String> = reps
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_json()))
        .collect();
    label.join(",")
}

/// Pairs A's and B's trials by their replicate parameters and their verdicts on `metric` by
/// prompt, reading each trial's files under `trials_root/SWEEP/TRIAL` (the trial whose
/// process reported it, for a trial a shared run completed).
pub fn pair(
    trials_root: &Path,
    a: Side,
    b: Side,
    metric: &str,
    replicate: &[String],
    resamples: usize,
) -> Result<ComparisonReport, CompareError> {
    let rule = VerdictRule::of(metric).map_err(CompareError::Metric)?;
    let by_key = |side: &Side| -> BTreeMap<String, TrialRow> {
        side.trials
            .iter()
            .map(|t| (replicate_label(t, replicate), t.clone()))
            .collect()
    };
    let (in_a, in_b) = (by_key(&a), by_key(&b));
    let shared: Vec<&String> = in_a.keys().filter(|k| in_b.contains_key(*k)).collect();
    if shared.is_empty() {
        let list = |m: &BTreeMap<String, TrialRow>| m.keys().cloned().collect::<Vec<_>>().join(" ");
        return Err(CompareError::NoSharedReplicate {
            names: replicate.join(","),
            a: list(&in_a),
            b: list(&in_b),
        });
    }
    let unpaired = in_a
        .keys()
        .chain(in_b.keys())
        .filter(|k| !(in_a.contains_key(*k) && in_b.contains_key(*k)))
        .cloned()
        .collect();
    let verdicts = |row: &TrialRow| {
        read(&trial_dir(trials_root, row), &rule, &Point::of(row)).map_err(|source| {
            CompareError::Verdicts {
                trial: row.id.clone(),
                source,
            }
        })
    };
    let mut strata = Vec::new();
    for label in shared {
        let (va, vb) = (verdicts(&in_a[label])?, verdicts(&in_b[label])?);
        let pairs: Vec<(bool, bool)> = va
            .iter()
            .filter_map(|(prompt, &x)| vb.get(prompt).map(|&y| (x, y)))
            .collect();
        if pairs.is_empty() {
            return Err(CompareError::NoPrompts(label.clone()));
        }
        strata.push(Stratum {
            label: label.clone(),
            pairs,
        });
    }
    let comparison = compare(&strata, resamples).expect("every stratum has pairs");
    Ok(ComparisonReport {
        metric: metric.to_string(),
        strata: strata
            .iter()
            .map(|s| (s.label.clone(), s.pairs.len()))
            .collect(),
        a,
        b,
        unpaired,
        comparison,
    })
}

/// Writes the comparison.
pub fn render_comparison(
    report: &ComparisonReport,
    format: Format,
    mut out: impl Write,
) -> Result<(), ExportError> {
    format.exporter().comparison(report, &mut out)
}

/// A rate or difference as the tables print it.
pub(crate) fn num(x: f64) -> String {
    format!("{x:.4}")
}

/// p-values as papers print them: three decimals, or two significant digits when small.
pub(crate) fn p_text(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// The comparison as one table row (Markdown and LaTeX): prompts and seeds, both rates, the
/// difference, its interval, the discordant pairs, McNemar's p.
pub(crate) fn comparison_cells(report: &ComparisonReport) -> [String; 7] {
    let c = &report.comparison;
    [
        format!(
            "{} prompts, {} seed{}",
            c.prompts,
            report.strata.len(),
            if report.strata.len() == 1 { "" } else { "s" }
        ),
        num(c.rate_a),
        num(c.rate_b),
        num(c.difference),
        format!("[{}, {}]", num(c.ci95.0), num(c.ci95.1)),
        format!("{} / {}", c.only_a, c.only_b),
        p_text(c.p_value),
    ]
}
