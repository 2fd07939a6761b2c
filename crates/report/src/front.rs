//! The Pareto report: configurations ranked by non-dominated sorting on their mean metrics,
//! with what was left out and why, and the front's hypervolume.

use std::collections::{BTreeMap, HashMap, HashSet};

use sweep_store::{StoreError, TrialRow, TrialStatus};

use crate::aggregate::{Aggregator, Configuration};
use crate::pareto::{front_ranks, hypervolume, Objective};
use crate::stored::Stored;

/// One ranked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The configuration and its statistics.
    pub config: Configuration,
    /// Front rank; 1 is the Pareto front.
    pub rank: usize,
    /// How many of its trials are non-dominated among the trials of their own replicate
    /// (e.g. seed), and out of how many: `None` where the report was not asked to read every
    /// trial for it.
    pub front_share: Option<(usize, usize)>,
}

impl Ranked {
    /// The front share as `k/n`, empty where it was not counted.
    pub fn front_share_text(&self) -> String {
        self.front_share
            .map(|(k, n)| format!("{k}/{n}"))
            .unwrap_or_default()
    }

    /// A parameter's value as text, empty when the configuration does not have it.
    pub fn param_text(&self, name: &str) -> String {
        self.config
            .params
            .get(name)
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
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

impl FrontReport {
    /// Whether the report counted each configuration's trials on their own replicate's front
    /// (it read every trial), so the formats show the `on front` column.
    pub fn has_front_shares(&self) -> bool {
        self.ranked.iter().any(|r| r.front_share.is_some())
    }

    /// Every ranked configuration's parameter names, sorted: the columns of every format.
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ranked
            .iter()
            .flat_map(|r| r.config.params.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Builds a [`FrontReport`] from trials handed over one at a time.
pub struct FrontBuilder {
    objectives: Vec<Objective>,
    replicate: Option<Vec<String>>,
    excluded: BTreeMap<String, usize>,
    aggregator: Aggregator,
    /// Where front shares are counted: the trials of each replicate.
    replicates: Option<HashMap<String, Vec<Point>>>,
    /// Per trial, when each is a configuration of its own and no shares are counted: its
    /// oriented objective values, so that only the configurations kept need be built.
    single_points: Option<Vec<Vec<f64>>>,
    /// Whether to keep only the front's configurations (rank 1).
    front_only: bool,
}

/// A trial and its oriented objective values.
type Point = (String, Vec<f64>);

impl FrontBuilder {
    /// A report on `objectives`, grouping configurations over the `replicate` parameters
    /// (None: per trial).
    pub fn new(objectives: &[Objective], replicate: Option<&[String]>) -> FrontBuilder {
        FrontBuilder {
            objectives: objectives.to_vec(),
            replicate: replicate.map(<[String]>::to_vec),
            excluded: BTreeMap::new(),
            aggregator: Aggregator::new(replicate),
            replicates: None,
            single_points: replicate.is_none().then(Vec::new),
            front_only: false,
        }
    }

    /// Keeps only the front's configurations in the report (every configuration is still
    /// ranked, and the hypervolume is the same): over 10^6 trials ranked one by one, the rest
    /// need never be built.
    pub fn front_only(mut self) -> FrontBuilder {
        self.front_only = true;
        self
    }

    /// Also counts each configuration's trials on their own replicate's front
    /// ([`Ranked::front_share`]), which keeps every trial's objective values until the end.
    pub fn with_front_shares(mut self) -> FrontBuilder {
        self.replicates = Some(HashMap::new());
        // Ranked through the shares' path, which builds every configuration anyway.
        self.single_points = None;
        self
    }

    /// Adds a trial, or counts why it cannot be ranked.
    pub fn add(&mut self, row: &TrialRow) {
        if row.status != TrialStatus::Completed {
            *self.excluded.entry(not_completed(row.status)).or_default() += 1;
            return;
        }
        let mut point = Vec::with_capacity(self.objectives.len());
        for o in &self.objectives {
            match row.metrics.get(&o.metric) {
                Some(Some(v)) if v.is_finite() => point.push(o.oriented(*v)),
                None => {
                    *self
                        .excluded
                        .entry(format!("no `{}` metric", o.metric))
                        .or_default() += 1;
                    return;
                }
                Some(_) => {
                    *self
                        .excluded
                        .entry(format!("non-finite `{}`", o.metric))
                        .or_default() += 1;
                    return;
                }
            }
        }
        self.aggregator.add(row);
        if let Some(points) = &mut self.single_points {
            points.push(point);
            return;
        }
        let Some(replicates) = &mut self.replicates else {
            return;
        };
        // One replicate: the trials with the same values of the replicate parameters.
        let mut group = row.sweep.clone();
        for name in self.replicate.iter().flatten() {
            if let Some(v) = row.params.get(name) {
                group.push_str(&format!("\0{name}={v}"));
            }
        }
        replicates
            .entry(group)
            .or_default()
            .push((row.id.clone(), point));
    }

    /// Ranks the configurations. `reference` is the hypervolume reference point in the
    /// objectives' own units (default: the worst observed value of each objective).
    pub fn finish(self, reference: Option<&[f64]>) -> FrontReport {
        if let Some(points) = &self.single_points {
            let ranks = front_ranks(points);
            let hypervolume = hypervolume_of(&self.objectives, points, &ranks, reference);
            let front_only = self.front_only;
            let mut ranked: Vec<Ranked> = self
                .aggregator
                .finish_kept(|i| !front_only || ranks[i] == 1)
                .into_iter()
                .map(|(i, config)| Ranked {
                    config,
                    rank: ranks[i],
                    front_share: None,
                })
                .collect();
            ranked.sort_by_key(|r| r.rank);
            return FrontReport {
                objectives: self.objectives,
                ranked,
                excluded: self.excluded,
                hypervolume,
            };
        }
        let front_only = self.front_only;
        let on_front: Option<HashSet<String>> = self.replicates.map(|replicates| {
            let mut on_front = HashSet::new();
            for group in replicates.into_values() {
                let (ids, pts): (Vec<String>, Vec<Vec<f64>>) = group.into_iter().unzip();
                for (id, rank) in ids.into_iter().zip(front_ranks(&pts)) {
                    if rank == 1 {
                        on_front.insert(id);
                    }
                }
            }
            on_front
        });
        let mut report = rank(
            self.objectives,
            self.aggregator.finish(),
            on_front.as_ref(),
            self.excluded,
            reference,
        );
        if front_only {
            report.ranked.retain(|r| r.rank == 1);
        }
        report
    }
}

/// Why a trial that has not completed is left out, as every report words it.
pub(crate) fn not_completed(status: TrialStatus) -> String {
    format!("not completed ({})", status.as_str())
}

/// Per-replicate front shares ([`Ranked::front_share`]) in a [`FrontReport::read`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shares {
    /// Not counted.
    #[default]
    Never,
    /// Counted where every trial is read anyway; the store's summaries (which cannot count
    /// them) serve where they can.
    WhereRead,
    /// Counted: every trial is read.
    Always,
}

/// How a [`FrontReport::read`] reads the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontRead {
    /// Whether per-replicate front shares are counted.
    pub shares: Shares,
    /// Whether only the front's configurations are wanted where every trial is read (see
    /// [`FrontBuilder::front_only`]).
    pub front_only: bool,
}

impl FrontReport {
    /// The front of the trials in `stored`: from the store's per-configuration summaries
    /// where they give the same ranking (a sweep of 10^6 trials in a fraction of a second),
    /// otherwise by reading every trial. Returns the report and how many trials it covers.
    /// The one way `sweep report` and the dashboard both rank.
    pub async fn read(
        stored: &Stored<'_>,
        objectives: &[Objective],
        replicate: Option<&[String]>,
        reference: Option<&[f64]>,
        how: FrontRead,
    ) -> Result<(FrontReport, u64), StoreError> {
        if how.shares != Shares::Always {
            let summarised = FrontReport::from_summaries(stored, objectives, replicate, reference);
            if let Some(report) = summarised.await? {
                let ranked: usize = report.ranked.iter().map(|r| r.config.trials.len()).sum();
                let covered = ranked + report.excluded.values().sum::<usize>();
                return Ok((report, covered as u64));
            }
        }
        let mut builder = FrontBuilder::new(objectives, replicate);
        if how.shares != Shares::Never {
            builder = builder.with_front_shares();
        }
        if how.front_only {
            builder = builder.front_only();
        }
        let mut read = 0u64;
        stored
            .for_each(|row| {
                read += 1;
                builder.add(&row);
                true
            })
            .await?;
        Ok((builder.finish(reference), read))
    }

    /// The report from the store's per-configuration summaries, reading one row per
    /// configuration and metric: `None` where they cannot give the same ranking as reading
    /// every trial (see [`Stored::summarised`], and a trial without a finite value of every
    /// objective, which the ranking leaves out). Per-replicate front shares need every
    /// trial, so none are given.
    async fn from_summaries(
        stored: &Stored<'_>,
        objectives: &[Objective],
        replicate: Option<&[String]>,
        reference: Option<&[f64]>,
    ) -> Result<Option<FrontReport>, StoreError> {
        let Some(configs) = stored.summarised(replicate).await? else {
            return Ok(None);
        };
        if configs.is_empty() || !ranks_every_trial(&configs, objectives) {
            return Ok(None);
        }
        let excluded = stored.not_completed().await?;
        Ok(Some(rank(
            objectives.to_vec(),
            configs,
            None,
            excluded,
            reference,
        )))
    }
}

/// Whether `configs` (from the store's summaries) hold the ranking's configurations exactly:
/// every trial of each reports a finite value of every objective, so no trial would have been
/// left out of its means.
fn ranks_every_trial(configs: &[Configuration], objectives: &[Objective]) -> bool {
    configs.iter().all(|c| {
        objectives
            .iter()
            .all(|o| c.stats.get(&o.metric).map(|s| s.n) == Some(c.trials.len()))
    })
}

/// Ranks `configs` (each with a mean of every objective) by non-dominated sorting;
/// `on_front` holds the trials on their own replicate's front, where they were read.
pub fn rank(
    objectives: Vec<Objective>,
    configs: Vec<Configuration>,
    on_front: Option<&HashSet<String>>,
    excluded: BTreeMap<String, usize>,
    reference: Option<&[f64]>,
) -> FrontReport {
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
    let mut ranked: Vec<Ranked> = configs
        .into_iter()
        .zip(&ranks)
        .map(|(config, &rank)| {
            let front_share = on_front.map(|on_front| {
                let share = config
                    .trials
                    .iter()
                    .filter(|t| on_front.contains(*t))
                    .count();
                (share, config.trials.len())
            });
            Ranked {
                config,
                rank,
                front_share,
            }
        })
        .collect();
    ranked.sort_by_key(|r| r.rank);
    let hypervolume = hypervolume_of(&objectives, &points, &ranks, reference);
    FrontReport {
        objectives,
        ranked,
        excluded,
        hypervolume,
    }
}

/// The hypervolume of the front among `points` (oriented objective values, ranked by
/// `ranks`), against `reference` in the objectives' own units (default: the worst observed
/// value of each objective), with the reference used; `None` without points.
fn hypervolume_of(
    objectives: &[Objective],
    points: &[Vec<f64>],
    ranks: &[usize],
    reference: Option<&[f64]>,
) -> Option<(f64, Vec<f64>)> {
    (!points.is_empty()).then(|| {
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
            .zip(ranks)
            .filter(|(_, r)| **r == 1)
            .map(|(p, _)| p.clone())
            .collect();
        (hypervolume(&front, &oriented_ref), reference)
    })
}
