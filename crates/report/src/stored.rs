//! The stream every report starts from: a sweep's stored trials (or every sweep's), each with
//! its sweep's `[fixed]` values among its parameters, kept or dropped by `--where`. One
//! place, so `report`, `export` and `confirm` see the same trials with the same parameters.

use std::collections::{BTreeMap, HashMap};

use sweep_core::value::params_to_json;
use sweep_core::{Grid, Params};
use sweep_store::{Store, StoreError, Sums, SweepRecord, TrialRow};

use crate::aggregate::{Aggregator, Configuration, Stat};
use crate::filter::{Condition, Filter, FilterError};

/// Each sweep's `[fixed]` values, from the grid stored with it. A grid that no longer parses
/// (stored by an older sweep) contributes none.
#[derive(Debug, Default)]
pub struct FixedParams(HashMap<String, Params>);

impl FixedParams {
    /// The `[fixed]` values of the sweep `name`, or of every sweep.
    pub async fn load(store: &Store, name: Option<&str>) -> Result<FixedParams, StoreError> {
        let records = match name {
            Some(name) => vec![store.sweep(name).await?],
            None => store.sweeps().await?,
        };
        Ok(FixedParams::of(records))
    }

    /// The `[fixed]` values of sweeps already read.
    fn of(records: Vec<SweepRecord>) -> FixedParams {
        FixedParams(
            records
                .into_iter()
                .filter_map(|r| {
                    let grid =
                        Grid::parse(std::path::Path::new(&r.grid_path), &r.grid_toml).ok()?;
                    Some((r.name, grid.fixed))
                })
                .collect(),
        )
    }

    /// `row` with its sweep's `[fixed]` values added to its parameters (a swept value of the
    /// same name, which a grid cannot have, would win).
    pub fn apply(&self, mut row: TrialRow) -> TrialRow {
        self.add_to(&row.sweep, &mut row.params);
        row
    }

    /// Adds the `[fixed]` values of `sweep` to `params`, as [`FixedParams::apply`] does.
    fn add_to(&self, sweep: &str, params: &mut Params) {
        if let Some(values) = self.0.get(sweep) {
            for (k, v) in values {
                params.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }

    /// The swept parameters' names with the `[fixed]` ones, sorted.
    pub fn with_names(&self, mut swept: Vec<String>) -> Vec<String> {
        swept.extend(self.0.values().flat_map(|f| f.keys().cloned()));
        swept.sort();
        swept.dedup();
        swept
    }
}

/// Why a report's trials could not be opened: the store failed, or a `--where` condition
/// names nothing the sweep holds.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading the sweep, its grid or its names failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A condition names neither a parameter nor a metric.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// What a report reads: which sweep, its `[fixed]` values, and the `--where` filter, with
/// the parameter and metric names the filter was resolved against.
pub struct Stored<'a> {
    store: &'a Store,
    sweep_id: Option<i64>,
    fixed: FixedParams,
    filter: Filter,
    params: Vec<String>,
    metrics: Vec<String>,
}

impl<'a> Stored<'a> {
    /// The trials of sweep `name` (every sweep's when `None`) that `conditions` keep. Every
    /// report, export, comparison and dashboard table opens its trials here, so they all
    /// see the same trials with the same parameters.
    pub async fn open(
        store: &'a Store,
        name: Option<&str>,
        conditions: &[Condition],
    ) -> Result<Stored<'a>, OpenError> {
        // `[fixed]` values are parameters of every trial too.
        let (sweep_id, fixed) = match name {
            Some(name) => {
                let record = store.sweep(name).await?;
                (Some(record.id), FixedParams::of(vec![record]))
            }
            None => (None, FixedParams::load(store, None).await?),
        };
        let params = fixed.with_names(store.param_names(sweep_id).await?);
        let metrics = store.metric_names(sweep_id).await?;
        let filter = Filter::new(conditions, &params, &metrics)?;
        Ok(Stored {
            store,
            sweep_id,
            fixed,
            filter,
            params,
            metrics,
        })
    }

    /// The sweep read, or `None` for every sweep.
    pub fn sweep_id(&self) -> Option<i64> {
        self.sweep_id
    }

    /// The parameters' names, `[fixed]` ones included, sorted.
    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// The metrics' names.
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// The filter the trials are read through.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The sweeps' `[fixed]` values.
    pub fn fixed(&self) -> &FixedParams {
        &self.fixed
    }

    /// Hands the kept trials to `visit` one at a time (`visit` returns false to stop), so a
    /// sweep of millions of trials is never held in memory.
    pub async fn for_each(
        &self,
        mut visit: impl FnMut(TrialRow) -> bool,
    ) -> Result<(), StoreError> {
        self.store
            .for_each_trial(self.sweep_id, |row| {
                let row = self.fixed.apply(row);
                !self.filter.keep(&row) || visit(row)
            })
            .await
    }

    /// The kept trials folded into configurations (replicates by `replicate`; `None`: every
    /// trial its own): from the store's summaries where they answer, else trial by trial.
    pub async fn aggregate(
        &self,
        replicate: Option<&[String]>,
    ) -> Result<Vec<Configuration>, StoreError> {
        if let Some(configs) = self.summarised(replicate).await? {
            return Ok(configs);
        }
        let mut aggregator = Aggregator::new(replicate);
        self.for_each(|row| {
            aggregator.add(&row);
            true
        })
        .await?;
        Ok(aggregator.finish())
    }

    /// The configurations (replicates by `replicate`) from the store's summaries: one row
    /// per configuration and metric instead of one per trial. `None` where the summaries
    /// cannot answer: a `--where` filter, single trials, or replicates without `seed` (the
    /// parameter the summaries group over; wider replicate sets merge them).
    pub async fn summarised(
        &self,
        replicate: Option<&[String]>,
    ) -> Result<Option<Vec<Configuration>>, StoreError> {
        let Some(names) = replicate else {
            return Ok(None);
        };
        if !self.filter.keeps_all() || !names.iter().any(|n| n == SUMMARISED_OVER) {
            return Ok(None);
        }
        struct Merged {
            sweep: String,
            params: Params,
            trials: Vec<(i64, String)>,
            sums: BTreeMap<String, Sums>,
        }
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut merged: Vec<Merged> = Vec::new();
        // In sweep and first-trial order, so each merged configuration comes where its first
        // trial does, as when trials are read in expansion order.
        for summary in self.store.config_summaries(self.sweep_id).await? {
            let mut params = summary.params;
            self.fixed.add_to(&summary.sweep, &mut params);
            for name in names {
                params.remove(name);
            }
            let key = (summary.sweep.clone(), params_to_json(&params));
            let next = merged.len();
            let at = *index.entry(key).or_insert(next);
            if at == next {
                merged.push(Merged {
                    sweep: summary.sweep,
                    params,
                    trials: summary.trials,
                    sums: summary.sums,
                });
                continue;
            }
            let into = &mut merged[at];
            into.trials.extend(summary.trials);
            for (name, sums) in summary.sums {
                let entry = into.sums.entry(name).or_default();
                *entry = entry.merge(sums);
            }
        }
        Ok(Some(
            merged
                .into_iter()
                .map(|mut m| {
                    m.trials.sort_unstable();
                    Configuration {
                        sweep: m.sweep,
                        params: m.params,
                        trials: m.trials.into_iter().map(|(_, id)| id).collect(),
                        stats: m
                            .sums
                            .into_iter()
                            .filter_map(|(name, sums)| Some((name, Stat::from_sums(sums)?)))
                            .collect(),
                    }
                })
                .collect(),
        ))
    }

    /// Trials left out of every configuration because they have not completed, by reason, as
    /// [`crate::FrontBuilder`] counts them: what a report from the summaries says it left out.
    pub async fn not_completed(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        let counts = self.store.unfinished_counts(self.sweep_id).await?;
        Ok(counts
            .0
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(status, n)| (crate::front::not_completed(status), n as usize))
            .collect())
    }
}

/// The replicate parameter the store's summaries group over.
const SUMMARISED_OVER: &str = "seed";
