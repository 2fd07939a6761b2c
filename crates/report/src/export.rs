//! Exports are views of stored results: one row per trial (tidy), one per configuration
//! (aggregated over replicates), or one per curve point (long form).
//!
//! Trial columns are `trial_id, sweep, status, attempts, out_of_memory, started_at, finished_at,
//! duration_s, gpu`, then `param_<name>` and `metric_<name>`, each group sorted by name, so the
//! column order is the same on every run. Missing values are empty; a metric the trial reported as
//! non-finite is `NaN` in CSV and `null` in JSON.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use sweep_store::{CurveRow, TrialRow};

use crate::aggregate::Configuration;
use crate::table::{Cell, Table};

/// A failed export. The cause is the `source`, not part of the message, so a report of the
/// whole chain says it once.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The CSV writer refused a record.
    #[error("cannot write the CSV")]
    Csv(#[source] csv::Error),
    /// Writing failed (a closed pipe, a full disk): the I/O error itself, so callers can
    /// tell a reader that went away from a real failure.
    #[error("cannot write the output")]
    Io(#[from] std::io::Error),
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        if e.is_io_error() {
            if let csv::ErrorKind::Io(io) = e.into_kind() {
                return ExportError::Io(io);
            }
            unreachable!("is_io_error means ErrorKind::Io");
        }
        ExportError::Csv(e)
    }
}

/// The fixed leading columns of the per-trial export: those of the store's `trials_wide`
/// view, so a data frame read either way has the same columns.
pub use sweep_store::TRIAL_COLUMNS as BASE_COLUMNS;

/// The per-trial columns for the given parameter and metric names (each sorted).
pub fn trial_columns(params: &[String], metrics: &[String]) -> Vec<String> {
    BASE_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(params.iter().map(|p| format!("param_{p}")))
        .chain(metrics.iter().map(|m| format!("metric_{m}")))
        .collect()
}

/// One trial's cells, matching [`trial_columns`].
pub fn trial_cells(row: &TrialRow, params: &[String], metrics: &[String]) -> Vec<Cell> {
    let mut cells = vec![
        Cell::Text(row.id.clone()),
        Cell::Text(row.sweep.clone()),
        Cell::Text(row.status.as_str().to_string()),
        Cell::Int(row.attempts as i64),
        Cell::Int(row.out_of_memory as i64),
        row.started_at
            .map_or(Cell::Empty, |t| Cell::Text(rfc3339(t))),
        row.finished_at
            .map_or(Cell::Empty, |t| Cell::Text(rfc3339(t))),
        row.duration_s().map_or(Cell::Empty, Cell::Num),
        row.gpu.clone().map_or(Cell::Empty, Cell::Text),
    ];
    cells.extend(
        params
            .iter()
            .map(|p| row.params.get(p).map_or(Cell::Empty, Cell::from)),
    );
    cells.extend(metrics.iter().map(|m| match row.metrics.get(m) {
        Some(Some(v)) => Cell::Num(*v),
        Some(None) => Cell::Num(f64::NAN),
        None => Cell::Empty,
    }));
    cells
}

/// One row per configuration (see [`crate::aggregate::Aggregator`]), with
/// `metric_<name>_mean`, `_std`, `_n` and `_ci95`: the per-trial column's name with the
/// statistic after it, so one prefix selects the metrics of either export.
pub fn aggregate_table(configs: &[Configuration]) -> Table {
    let params: BTreeSet<&str> = configs
        .iter()
        .flat_map(|c| c.params.keys().map(String::as_str))
        .collect();
    let metrics: BTreeSet<&str> = configs
        .iter()
        .flat_map(|c| c.stats.keys().map(String::as_str))
        .collect();
    let mut columns = vec!["sweep".to_string(), "trials".to_string()];
    columns.extend(params.iter().map(|p| format!("param_{p}")));
    for m in &metrics {
        for s in ["mean", "std", "n", "ci95"] {
            columns.push(format!("metric_{m}_{s}"));
        }
    }
    let rows = configs
        .iter()
        .map(|c| {
            let mut cells = vec![
                Cell::Text(c.sweep.clone()),
                Cell::Int(c.trials.len() as i64),
            ];
            cells.extend(
                params
                    .iter()
                    .map(|p| c.params.get(*p).map_or(Cell::Empty, Cell::from)),
            );
            for m in &metrics {
                match c.stats.get(*m) {
                    Some(s) => cells.extend([
                        Cell::Num(s.mean),
                        Cell::Num(s.std),
                        Cell::Int(s.n as i64),
                        Cell::Num(s.ci95),
                    ]),
                    None => cells.extend([Cell::Empty, Cell::Empty, Cell::Int(0), Cell::Empty]),
                }
            }
            cells
        })
        .collect();
    Table { columns, rows }
}

/// Curve points in long form: `trial_id, sweep, param_<name>…, step, name, value`, each
/// point with its trial's parameters (as the per-trial export has them), so a learning-curve
/// plot groups by a parameter without a join. Points of trials not in `trials` are left out.
pub fn curves_table(
    points: &[CurveRow],
    params: &[String],
    trials: &HashMap<String, TrialRow>,
) -> Table {
    let mut columns = vec!["trial_id".to_string(), "sweep".to_string()];
    columns.extend(params.iter().map(|p| format!("param_{p}")));
    columns.extend(["step", "name", "value"].map(String::from));
    let rows = points
        .iter()
        .filter_map(|p| {
            let trial = trials.get(&p.trial_id)?;
            let mut cells = vec![
                Cell::Text(p.trial_id.clone()),
                Cell::Text(trial.sweep.clone()),
            ];
            cells.extend(
                params
                    .iter()
                    .map(|name| trial.params.get(name).map_or(Cell::Empty, Cell::from)),
            );
            cells.extend([
                Cell::Int(p.step),
                Cell::Text(p.name.clone()),
                p.value.map_or(Cell::Num(f64::NAN), Cell::Num),
            ]);
            Some(cells)
        })
        .collect();
    Table { columns, rows }
}

/// A Unix-ms timestamp in RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
