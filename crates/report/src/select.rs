//! `sweep report --best unsafe_rate:min --subject-to 'utility>=0.8'`: the best-tuned
//! configuration of each sweep, chosen on one half of the evaluation prompts and reported on
//! the other. Picking the best of many configurations and scoring it on the prompts it was
//! picked on overstates it (the winner's curse); the built-in trainer reports every rate on
//! two fixed halves (`val_…` and `test_…`), and this is the query that uses them.
//!
//! Constraints hold on the configuration's mean over replicates (seeds). A bound may be
//! relative: `utility>=0.9*best` is 90 % of the best validation utility in the sweep, the
//! "same utility as the aggressive baseline" a comparison at equal utility needs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::aggregate::{Configuration, Stat};
use crate::filter::{Condition, FilterError, Op};
use crate::pareto::{Direction, Objective};

/// The bound of a constraint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// A number.
    Value(f64),
    /// This factor times the best value of the metric among the sweep's configurations.
    OfBest(f64),
}

/// One `--subject-to` constraint: `METRIC OP BOUND`, OP one of < <= > >=, BOUND a number or
/// `X*best`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// The metric, without a `val_`/`test_` prefix.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The bound.
    pub limit: Limit,
}

impl FromStr for Constraint {
    type Err = SelectError;

    fn from_str(text: &str) -> Result<Constraint, SelectError> {
        let (plain, relative) = match text.trim().strip_suffix("*best") {
            Some(head) => (head, true),
            None => (text, false),
        };
        let c: Condition = plain.parse().map_err(|e: FilterError| match e {
            FilterError::NotANumber(_) => SelectError::Bound(text.to_string()),
            other => SelectError::Syntax(text.to_string(), other.to_string()),
        })?;
        if matches!(c.op, Op::Eq | Op::Ne) {
            return Err(SelectError::Op(text.to_string()));
        }
        let number: f64 = c
            .value
            .parse()
            .map_err(|_| SelectError::Bound(text.to_string()))?;
        Ok(Constraint {
            metric: c.name,
            op: c.op,
            limit: if relative {
                Limit::OfBest(number)
            } else {
                Limit::Value(number)
            },
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.op.symbol();
        match self.limit {
            Limit::Value(v) => write!(f, "{}{op}{v}", self.metric),
            Limit::OfBest(k) => write!(f, "{}{op}{k}*best", self.metric),
        }
    }
}

/// Prefix of the metrics a configuration is chosen on.
pub const VALIDATION: &str = "val_";
/// Prefix of the metrics the chosen configuration is reported with.
pub const TEST: &str = "test_";

/// A selection that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The trials have no validation half of a metric the query needs.
    #[error(
        "no trial reports `{val}` (the validation half of `{metric}`), so choosing on it and \
         reporting on `{test}` is not possible; the built-in trainer reports both halves, a \
         trial of your own can too (docs/protocol.md), or pass --same-prompts to choose and \
         report on `{metric}` itself, with the winner's curse that brings"
    )]
    NoSplit {
        /// The metric as asked for.
        metric: String,
        /// Its validation name.
        val: String,
        /// Its test name.
        test: String,
    },
    /// A constraint's bound is neither a number nor `X*best`.
    #[error("--subject-to {0:?}: the bound must be a number, or a factor of the best value as in 'utility>=0.9*best'")]
    Bound(String),
    /// A constraint on a metric with `=` or `!=`.
    #[error("--subject-to {0:?}: use <, <=, > or >= on a metric")]
    Op(String),
    /// Not `METRIC OP BOUND`.
    #[error("--subject-to {0:?}: {1}")]
    Syntax(String, String),
}

/// The metric names a selection reads: chosen on `choose`, reported on `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halves {
    /// Prefix of the metrics it is chosen on (`val_`, or empty with `--same-prompts`).
    pub choose: &'static str,
    /// Prefix of the metrics it is reported on (`test_`, or empty).
    pub report: &'static str,
}

impl Halves {
    /// Validation to choose, test to report.
    pub const SPLIT: Halves = Halves {
        choose: VALIDATION,
        report: TEST,
    };
    /// The same prompts for both (`--same-prompts`).
    pub const SAME: Halves = Halves {
        choose: "",
        report: "",
    };
}

/// The best configuration of one sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The sweep.
    pub sweep: String,
    /// The chosen configuration, or `None` when none meets the constraints.
    pub config: Option<Configuration>,
    /// Configurations that met the constraints (on the choosing half), of how many.
    pub eligible: (usize, usize),
    /// Each relative bound as it resolved in this sweep: the constraint and its number.
    pub bounds: Vec<(String, f64)>,
}

/// What `--best` asked for, and the choice in each sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// What is optimised.
    pub objective: Objective,
    /// The constraints, as given.
    pub constraints: Vec<Constraint>,
    /// Which metrics choose and which report.
    pub halves: Halves,
    /// One choice per sweep, in the order the sweeps' first configurations came.
    pub choices: Vec<Choice>,
}

impl Selection {
    /// Every metric a row of the selection shows: the objective, then each constrained
    /// metric, without prefixes.
    pub fn metrics(&self) -> Vec<String> {
        let mut names = vec![self.objective.metric.clone()];
        for c in &self.constraints {
            if !names.contains(&c.metric) {
                names.push(c.metric.clone());
            }
        }
        names
    }
}

/// A constraint with its bound resolved to a number.
struct Bound<'a> {
    constraint: &'a Constraint,
    op: Op,
    value: f64,
}

impl Bound<'_> {
    fn holds(&self, x: f64) -> bool {
        match self.op {
            Op::Lt => x < self.value,
            Op::Le => x <= self.value,
            Op::Gt => x > self.value,
            Op::Ge => x >= self.value,
            Op::Eq | Op::Ne => unreachable!("refused when the selection is made"),
        }
    }
}

/// Chooses, in each sweep of `configs`, the configuration with the best `objective` among
/// those meeting every constraint, reading the `halves.choose` metrics. Constraints name
/// metrics (without prefix). A configuration that lacks a metric it needs is not eligible.
pub fn select(
    configs: &[Configuration],
    objective: &Objective,
    constraints: &[Constraint],
    halves: Halves,
) -> Result<Selection, SelectError> {
    if !halves.choose.is_empty() {
        let wanted = std::iter::once(objective.metric.as_str())
            .chain(constraints.iter().map(|c| c.metric.as_str()));
        for metric in wanted {
            let val = format!("{}{metric}", halves.choose);
            if !configs.iter().any(|c| c.stats.contains_key(&val)) {
                return Err(SelectError::NoSplit {
                    metric: metric.to_string(),
                    val,
                    test: format!("{}{metric}", halves.report),
                });
            }
        }
    }
    let mut by_sweep: BTreeMap<&str, Vec<&Configuration>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for c in configs {
        if !by_sweep.contains_key(c.sweep.as_str()) {
            order.push(&c.sweep);
        }
        by_sweep.entry(&c.sweep).or_default().push(c);
    }
    let mean = |c: &Configuration, metric: &str| -> Option<f64> {
        c.stats
            .get(&format!("{}{metric}", halves.choose))
            .map(|s: &Stat| s.mean)
    };
    let mut choices = Vec::new();
    for sweep in order {
        let members = &by_sweep[sweep];
        let mut bounds = Vec::new();
        let mut resolved = Vec::new();
        for c in constraints {
            let value = match c.limit {
                Limit::Value(v) => v,
                Limit::OfBest(factor) => {
                    let values = members.iter().filter_map(|m| mean(m, &c.metric));
                    // The best is the largest for a lower bound, the smallest for an upper one.
                    let best = match c.op {
                        Op::Gt | Op::Ge => values.fold(f64::NEG_INFINITY, f64::max),
                        _ => values.fold(f64::INFINITY, f64::min),
                    };
                    let value = factor * best;
                    bounds.push((c.to_string(), value));
                    value
                }
            };
            resolved.push(Bound {
                constraint: c,
                op: c.op,
                value,
            });
        }
        let eligible: Vec<(&Configuration, f64)> = members
            .iter()
            .filter(|m| {
                resolved
                    .iter()
                    .all(|b| mean(m, &b.constraint.metric).is_some_and(|x| b.holds(x)))
            })
            .filter_map(|m| Some((*m, mean(m, &objective.metric)?)))
            .collect();
        let best =
            eligible.iter().fold(
                None,
                |best: Option<(&Configuration, f64)>, &(m, x)| match best {
                    Some((_, b)) if !better(objective.direction, x, b) => best,
                    _ => Some((m, x)),
                },
            );
        choices.push(Choice {
            sweep: sweep.to_string(),
            config: best.map(|(m, _)| m.clone()),
            eligible: (eligible.len(), members.len()),
            bounds,
        });
    }
    Ok(Selection {
        objective: objective.clone(),
        constraints: constraints.to_vec(),
        halves,
        choices,
    })
}

/// Whether `x` beats `y` (ties keep the earlier configuration, in expansion order).
fn better(direction: Direction, x: f64, y: f64) -> bool {
    match direction {
        Direction::Min => x < y,
        Direction::Max => x > y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sweep_core::{ParamValue, Params};

    fn config(sweep: &str, lr: f64, metrics: &[(&str, f64)]) -> Configuration {
        let mut params = Params::new();
        params.insert("learning_rate".into(), ParamValue::Float(lr));
        Configuration {
            sweep: sweep.into(),
            params,
            trials: vec![format!("{lr}")],
            stats: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), Stat::of(&[*v]).unwrap()))
                .collect(),
        }
    }

    fn cond(text: &str) -> Constraint {
        text.parse().unwrap()
    }

    fn grid() -> Vec<Configuration> {
        vec![
            // Safest on validation, but below the utility bar.
            config(
                "s",
                1e-5,
                &[
                    ("val_unsafe_rate", 0.05),
                    ("test_unsafe_rate", 0.06),
                    ("val_utility", 0.5),
                    ("test_utility", 0.5),
                ],
            ),
            // Meets the bar; safest of those on validation, less so on test.
            config(
                "s",
                1e-4,
                &[
                    ("val_unsafe_rate", 0.10),
                    ("test_unsafe_rate", 0.20),
                    ("val_utility", 0.85),
                    ("test_utility", 0.8),
                ],
            ),
            config(
                "s",
                1e-3,
                &[
                    ("val_unsafe_rate", 0.30),
                    ("test_unsafe_rate", 0.12),
                    ("val_utility", 0.95),
                    ("test_utility", 0.9),
                ],
            ),
        ]
    }

    #[test]
    fn chooses_on_validation_under_the_constraint() {
        let s = select(
            &grid(),
            &"unsafe_rate:min".parse().unwrap(),
            &[cond("utility>=0.8")],
            Halves::SPLIT,
        )
        .unwrap();
        let choice = &s.choices[0];
        let chosen = choice.config.as_ref().unwrap();
        assert_eq!(chosen.params["learning_rate"], ParamValue::Float(1e-4));
        assert_eq!(choice.eligible, (2, 3));
        // Its reported number is the test half's, worse than what chose it.
        assert_eq!(chosen.stats["test_unsafe_rate"].mean, 0.20);
        assert_eq!(s.metrics(), ["unsafe_rate", "utility"]);
    }

    #[test]
    fn a_relative_bound_is_a_share_of_the_best_in_the_sweep() {
        let s = select(
            &grid(),
            &"unsafe_rate:min".parse().unwrap(),
            &[cond("utility>=0.9*best")],
            Halves::SPLIT,
        )
        .unwrap();
        let choice = &s.choices[0];
        assert!((choice.bounds[0].1 - 0.855).abs() < 1e-12);
        assert_eq!(
            choice.config.as_ref().unwrap().params["learning_rate"],
            ParamValue::Float(1e-3)
        );
        // Nothing meets an impossible bar: no choice, not a wrong one.
        let s = select(
            &grid(),
            &"unsafe_rate:min".parse().unwrap(),
            &[cond("utility>=2")],
            Halves::SPLIT,
        )
        .unwrap();
        assert_eq!(s.choices[0].config, None);
        assert_eq!(s.choices[0].eligible, (0, 3));
    }

    /// An upper bound relative to the best is a multiple of the smallest value: "within 2 %
    /// of the lowest validation loss", the equal-utility bar of a fine-tune on a file.
    #[test]
    fn a_relative_upper_bound_is_a_multiple_of_the_smallest_value() {
        let with_loss: Vec<Configuration> = grid()
            .into_iter()
            .zip([2.0, 2.5, 2.03])
            .map(|(mut c, loss)| {
                c.stats
                    .insert("val_eval_loss".into(), Stat::of(&[loss]).unwrap());
                c
            })
            .collect();
        let s = select(
            &with_loss,
            &"unsafe_rate:min".parse().unwrap(),
            &[cond("eval_loss<=1.02*best")],
            Halves::SPLIT,
        )
        .unwrap();
        let choice = &s.choices[0];
        assert!((choice.bounds[0].1 - 2.04).abs() < 1e-12);
        assert_eq!(choice.eligible, (2, 3));
        assert_eq!(
            choice.config.as_ref().unwrap().params["learning_rate"],
            ParamValue::Float(1e-5)
        );
    }

    #[test]
    fn without_halves_it_refuses_unless_asked_to_use_the_same_prompts() {
        let plain = vec![config("s", 1e-4, &[("unsafe_rate", 0.1), ("utility", 0.9)])];
        let objective: Objective = "unsafe_rate:min".parse().unwrap();
        let e = select(&plain, &objective, &[], Halves::SPLIT).unwrap_err();
        assert!(e.to_string().contains("--same-prompts"), "{e}");
        let s = select(&plain, &objective, &[cond("utility>=0.5")], Halves::SAME).unwrap();
        assert!(s.choices[0].config.is_some());
        for (bad, needle) in [
            ("utility=1", "use <, <=, > or >="),
            ("utility>=x*best", "the bound must be a number"),
            ("utility>=high", "the bound must be a number"),
            ("1; DROP", "--subject-to"),
        ] {
            let e = bad.parse::<Constraint>().unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert_eq!(cond("utility>=0.9*best").to_string(), "utility>=0.9*best");
    }
}
