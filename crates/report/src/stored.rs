//! The stream every report starts from: a sweep's stored trials (or every sweep's), each with
//! its sweep's `[fixed]` values among its parameters, kept or dropped by `--where`. One
//! place, so `report`, `export` and `confirm` see the same trials with the same parameters.

use std::collections::HashMap;

use sweep_core::{Grid, Params};
use sweep_store::{Store, StoreError, SweepRecord, TrialRow};

use crate::aggregate::{Aggregator, Configuration};
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
        if let Some(values) = self.0.get(&row.sweep) {
            for (k, v) in values {
                row.params.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        row
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
    /// trial its own).
    pub async fn aggregate(
        &self,
        replicate: Option<&[String]>,
    ) -> Result<Vec<Configuration>, StoreError> {
        let mut aggregator = Aggregator::new(replicate);
        self.for_each(|row| {
            aggregator.add(&row);
            true
        })
        .await?;
        Ok(aggregator.finish())
    }
}
