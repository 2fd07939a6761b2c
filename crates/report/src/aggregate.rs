//! Seeds are replicates, not settings: trials that differ only in the replicate parameters
//! (by default `seed`; `seed` and `base_seed` when each replicate starts from a base model of
//! its own) form one configuration, summarised by mean, standard deviation, n and a 95%
//! confidence interval per metric.

use std::collections::{BTreeMap, HashMap};

use sweep_core::value::{params_from_json, params_to_json};
use sweep_core::Params;
use sweep_store::{Sums, TrialRow, TrialStatus};

/// Summary of one metric over a configuration's completed trials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Mean of the finite values.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
    /// Number of finite values.
    pub n: usize,
    /// Half-width of the 95% confidence interval of the mean (Student's t); 0 for n = 1.
    pub ci95: f64,
}

impl Stat {
    /// `{"mean", "std", "n", "ci95"}`, a non-finite number as `null`: how every JSON output
    /// (reports, the dashboard) writes a statistic.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"mean": self.mean, "std": self.std, "n": self.n, "ci95": self.ci95})
    }

    /// The summary the store's running sums give (its mean and spread equal [`Stat::of`]'s
    /// up to the order the values were added in); `None` when there are none.
    pub fn from_sums(sums: Sums) -> Option<Stat> {
        let n = sums.n as usize;
        if n == 0 {
            return None;
        }
        let std = if n == 1 {
            0.0
        } else {
            (sums.m2 / (n - 1) as f64).sqrt()
        };
        Some(Stat {
            mean: sums.sum / n as f64,
            std,
            n,
            ci95: if n == 1 {
                0.0
            } else {
                t_975(n - 1) * std / (n as f64).sqrt()
            },
        })
    }

    /// Summarises `values` (all finite); `None` when empty. Two passes (the mean, then the
    /// squared deviations from it), then the same arithmetic as [`Stat::from_sums`].
    pub fn of(values: &[f64]) -> Option<Stat> {
        let sum = values.iter().sum::<f64>();
        let mean = sum / values.len() as f64;
        let m2 = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        Stat::from_sums(Sums {
            n: values.len() as u64,
            sum,
            m2,
        })
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.042 - (df - 30) as f64 * (2.042 - 2.000) / 30.0,
        61..=120 => 2.000 - (df - 60) as f64 * (2.000 - 1.980) / 60.0,
        _ => 1.960,
    }
}

/// One configuration: the completed trials that share every parameter but the replicate ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// Sweep name.
    pub sweep: String,
    /// Parameters without the replicate parameters.
    pub params: Params,
    /// Ids of its completed trials.
    pub trials: Vec<String>,
    /// Per metric, the summary over the trials that reported a finite value.
    pub stats: BTreeMap<String, Stat>,
}

/// Builds configurations from trials handed over one at a time. Keeps one value per trial
/// and metric (8 bytes each), not the trials themselves.
pub struct Aggregator {
    replicate: Option<Vec<String>>,
    index: HashMap<(String, String), usize>,
    groups: Vec<Group>,
    /// Without replicates every trial is a configuration of its own, held compactly until it
    /// is asked for (a per-trial ranking of 10^6 trials keeps 10^6 of these).
    singles: Singles,
}

/// Trials that are configurations of their own, each in about 200 bytes where a
/// [`Configuration`] takes about 2 KiB (its two maps).
#[derive(Default)]
struct Singles {
    sweeps: Vec<String>,
    sweep_index: HashMap<String, u32>,
    metrics: Vec<String>,
    metric_index: HashMap<String, u32>,
    trials: Vec<Single>,
}

/// The index of `name` in `names`, added if new.
fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(at) = index.get(name) {
        return *at;
    }
    let at = names.len() as u32;
    names.push(name.to_string());
    index.insert(name.to_string(), at);
    at
}

/// One trial: its sweep and metric names by index into [`Singles`], its parameters as
/// their canonical JSON.
struct Single {
    sweep: u32,
    id: Box<str>,
    params: Box<str>,
    metrics: Box<[(u32, f64)]>,
}

impl Singles {
    fn add(&mut self, row: &TrialRow) {
        let sweep = intern(&mut self.sweeps, &mut self.sweep_index, &row.sweep);
        let metrics = row
            .metrics
            .iter()
            .filter_map(|(name, v)| {
                let v = v.filter(|v| v.is_finite())?;
                Some((intern(&mut self.metrics, &mut self.metric_index, name), v))
            })
            .collect();
        self.trials.push(Single {
            sweep,
            id: row.id.as_str().into(),
            params: params_to_json(&row.params).into(),
            metrics,
        });
    }

    fn configuration(&self, t: Single) -> Configuration {
        Configuration {
            sweep: self.sweeps[t.sweep as usize].clone(),
            // Written by `params_to_json` just before: it parses.
            params: params_from_json(&t.params).unwrap_or_default(),
            trials: vec![t.id.into()],
            stats: t
                .metrics
                .iter()
                .filter_map(|(name, v)| {
                    Some((self.metrics[*name as usize].clone(), Stat::of(&[*v])?))
                })
                .collect(),
        }
    }
}

struct Group {
    sweep: String,
    params: Params,
    trials: Vec<String>,
    values: BTreeMap<String, Vec<f64>>,
}

impl Aggregator {
    /// Groups over the `replicate` parameters (e.g. `seed`), or not at all.
    pub fn new(replicate: Option<&[String]>) -> Aggregator {
        Aggregator {
            replicate: replicate.map(<[String]>::to_vec),
            index: HashMap::new(),
            groups: Vec::new(),
            singles: Singles::default(),
        }
    }

    /// Adds a trial; anything but a completed one is ignored.
    pub fn add(&mut self, row: &TrialRow) {
        if row.status != TrialStatus::Completed {
            return;
        }
        let Some(names) = &self.replicate else {
            self.singles.add(row);
            return;
        };
        let mut params = row.params.clone();
        for name in names {
            params.remove(name);
        }
        let key = (row.sweep.clone(), params_to_json(&params));
        let next = self.groups.len();
        let at = *self.index.entry(key).or_insert(next);
        if at == next {
            self.groups.push(Group {
                sweep: row.sweep.clone(),
                params,
                trials: Vec::new(),
                values: BTreeMap::new(),
            });
        }
        let group = &mut self.groups[at];
        group.trials.push(row.id.clone());
        for (name, value) in &row.metrics {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                group.values.entry(name.clone()).or_default().push(v);
            }
        }
    }

    /// The configurations, in the order their first trial was added.
    pub fn finish(self) -> Vec<Configuration> {
        self.finish_kept(|_| true)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// The configurations whose position in [`Aggregator::finish`]'s order `keep` accepts,
    /// with that position: a ranking that prints its front alone need not build the rest.
    pub fn finish_kept(self, keep: impl Fn(usize) -> bool) -> Vec<(usize, Configuration)> {
        if self.replicate.is_none() {
            let mut singles = self.singles;
            let trials = std::mem::take(&mut singles.trials);
            return trials
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(i, t)| (i, singles.configuration(t)))
                .collect();
        }
        self.groups
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, g)| {
                let config = Configuration {
                    stats: g
                        .values
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), Stat::of(v)?)))
                        .collect(),
                    sweep: g.sweep,
                    params: g.params,
                    trials: g.trials,
                };
                (i, config)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_matches_hand_computation() {
        let s = Stat::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.mean, 2.0);
        assert_eq!(s.std, 1.0);
        assert_eq!(s.n, 3);
        assert!((s.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[5.0]).unwrap().ci95, 0.0);
        assert!(Stat::of(&[]).is_none());
        let values = [1.0, 2.0, 3.0];
        let sums = Sums {
            n: 3,
            sum: 6.0,
            m2: 2.0,
        };
        assert_eq!(Stat::from_sums(sums), Stat::of(&values));
        let one = Sums {
            n: 1,
            sum: 5.0,
            m2: 0.0,
        };
        assert_eq!(Stat::from_sums(one), Stat::of(&[5.0]));
        assert!(Stat::from_sums(Sums {
            n: 0,
            sum: 0.0,
            m2: 0.0
        })
        .is_none());
    }

    fn row(id: &str, seed: i64, base_seed: i64, unsafe_rate: f64) -> TrialRow {
        TrialRow {
            id: id.into(),
            sweep: "s".into(),
            ordinal: 0,
            params: [
                ("lr".to_string(), sweep_core::ParamValue::Float(1e-3)),
                ("seed".to_string(), sweep_core::ParamValue::Int(seed)),
                (
                    "base_seed".to_string(),
                    sweep_core::ParamValue::Int(base_seed),
                ),
            ]
            .into_iter()
            .collect(),
            status: TrialStatus::Completed,
            attempts: 1,
            out_of_memory: 0,
            started_at: None,
            finished_at: None,
            gpu: None,
            error: None,
            completed_by: None,
            job_id: None,
            node: None,
            metrics: [("unsafe_rate".to_string(), Some(unsafe_rate))].into(),
        }
    }

    /// With `base_seed` zipped to `seed`, the two together are the replicate: one
    /// configuration over both trials. With `seed` alone each trial is a configuration.
    #[test]
    fn several_parameters_can_make_a_replicate() {
        let rows = [row("a", 0, 0, 0.1), row("b", 1, 1, 0.3)];
        let configs = |replicate: &[&str]| {
            let names: Vec<String> = replicate.iter().map(|s| s.to_string()).collect();
            let mut aggregator = Aggregator::new(Some(&names));
            rows.iter().for_each(|r| aggregator.add(r));
            aggregator.finish()
        };
        let both = configs(&["seed", "base_seed"]);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].stats["unsafe_rate"].n, 2);
        assert!((both[0].stats["unsafe_rate"].mean - 0.2).abs() < 1e-12);
        assert_eq!(both[0].params.keys().collect::<Vec<_>>(), ["lr"]);
        assert_eq!(configs(&["seed"]).len(), 2);
    }

    /// Per trial, each trial comes back as the configuration of its own it is (parameters,
    /// id, one-value statistics of its finite metrics), in the order added, from two sweeps;
    /// `finish_kept` builds only the positions it is asked for.
    #[test]
    fn single_trials_come_back_whole_and_only_where_kept() {
        let mut rows = vec![
            row("a", 0, 0, 0.1),
            row("b", 1, 1, 0.3),
            row("c", 2, 0, 0.5),
        ];
        rows[1].sweep = "t".into();
        rows[2].metrics.insert("loss".into(), None);
        let singles = || {
            let mut aggregator = Aggregator::new(None);
            rows.iter().for_each(|r| aggregator.add(r));
            aggregator
        };
        let all = singles().finish();
        assert_eq!(all.len(), 3);
        for (config, row) in all.iter().zip(&rows) {
            assert_eq!(config.sweep, row.sweep);
            assert_eq!(config.params, row.params);
            assert_eq!(config.trials, std::slice::from_ref(&row.id));
            let unsafe_rate = row.metrics["unsafe_rate"].unwrap();
            assert_eq!(
                config.stats["unsafe_rate"],
                Stat::of(&[unsafe_rate]).unwrap()
            );
            assert!(!config.stats.contains_key("loss"), "not finite");
        }
        let kept = singles().finish_kept(|i| i == 2);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0], (2, all[2].clone()));
    }
}
