//! The tidy CSV export: one row per trial, readable by pandas as is.
//!
//! Columns are `trial_id, sweep, status, attempts, started_at, finished_at, duration_s, gpu`,
//! then `param_<name>` and `metric_<name>`, each group sorted by name. Missing values are
//! empty cells; a metric the trial reported as non-finite is `NaN`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use sweep_core::value::format_float;
use sweep_store::TrialRow;

/// A failed export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing a record failed (e.g. a closed pipe or a full disk).
    #[error("cannot write the CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Flushing the output failed.
    #[error("cannot write the CSV: {0}")]
    Io(#[from] std::io::Error),
}

/// The fixed leading columns.
pub const BASE_COLUMNS: [&str; 8] = [
    "trial_id",
    "sweep",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "duration_s",
    "gpu",
];

/// Writes `rows` as CSV to `out`.
pub fn write_csv(rows: &[TrialRow], out: impl Write) -> Result<(), ExportError> {
    let params: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.params.keys().map(String::as_str))
        .collect();
    let metrics: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().map(String::as_str))
        .collect();
    let mut w = csv::Writer::from_writer(out);
    let header = BASE_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(params.iter().map(|p| format!("param_{p}")))
        .chain(metrics.iter().map(|m| format!("metric_{m}")));
    w.write_record(header)?;
    for row in rows {
        let mut record: Vec<String> = vec![
            row.id.clone(),
            row.sweep.clone(),
            row.status.as_str().to_string(),
            row.attempts.to_string(),
            row.started_at.map(rfc3339).unwrap_or_default(),
            row.finished_at.map(rfc3339).unwrap_or_default(),
            row.duration_s().map(format_float).unwrap_or_default(),
            row.gpu.clone().unwrap_or_default(),
        ];
        record.extend(params.iter().map(|p| {
            row.params
                .get(*p)
                .map(|v| v.to_string())
                .unwrap_or_default()
        }));
        record.extend(metrics.iter().map(|m| match row.metrics.get(*m) {
            Some(Some(v)) => format_float(*v),
            Some(None) => "NaN".to_string(),
            None => String::new(),
        }));
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

/// A Unix-ms timestamp in RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
