//! Reading sweeps back for `status`, exports and reports. Reads never block the writer (WAL).

use std::collections::BTreeMap;

use sqlx::Row;
use sweep_core::value::params_from_json;
use sweep_core::Params;

use crate::{Store, StoreError, TrialStatus};

/// Trials per state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<TrialStatus, u64>);

impl Counts {
    /// Trials in `status`.
    pub fn get(&self, status: TrialStatus) -> u64 {
        self.0.get(&status).copied().unwrap_or(0)
    }

    /// All trials.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Counts {
    /// `0 pending, 1 running, 5 completed, 0 failed, 0 interrupted`: every state, always in
    /// the same order, so the line reads the same in logs and scripts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, status) in TrialStatus::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", self.get(*status), status.as_str())?;
        }
        Ok(())
    }
}

/// One trial with everything `status` and exports show.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    /// Trial id.
    pub id: String,
    /// Sweep name.
    pub sweep: String,
    /// Expansion order within the sweep.
    pub ordinal: i64,
    /// Swept parameters.
    pub params: Params,
    /// Current state.
    pub status: TrialStatus,
    /// Launches so far.
    pub attempts: u32,
    /// Of those, the ones that ran out of GPU memory.
    pub out_of_memory: u32,
    /// Start of the last attempt (Unix ms).
    pub started_at: Option<i64>,
    /// End of the last attempt (Unix ms).
    pub finished_at: Option<i64>,
    /// GPUs of the last attempt, comma-separated.
    pub gpu: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Trial whose process reported this one's result, when not itself.
    pub completed_by: Option<String>,
    /// Final metrics (completed trials only); `None` values were not finite.
    pub metrics: BTreeMap<String, Option<f64>>,
}

impl TrialRow {
    /// Seconds between start and end of the last attempt.
    pub fn duration_s(&self) -> Option<f64> {
        Some((self.finished_at? - self.started_at?) as f64 / 1000.0)
    }
}

impl Store {
    /// Trial counts by state for one sweep (only points in its current grid).
    pub async fn counts(&self, sweep_id: i64) -> Result<Counts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM trials WHERE sweep_id = ? AND active = 1 GROUP BY status",
        )
        .bind(sweep_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Counts(
            rows.into_iter()
                .filter_map(|(s, n)| Some((TrialStatus::parse(&s)?, n as u64)))
                .collect(),
        ))
    }

    /// Every trial of one sweep (or of all sweeps), in sweep then expansion order, with
    /// metrics. Points dropped from a sweep's grid are included only if they completed.
    pub async fn trial_rows(&self, sweep_id: Option<i64>) -> Result<Vec<TrialRow>, StoreError> {
        let mut rows = Vec::new();
        self.for_each_trial(sweep_id, |row| {
            rows.push(row);
            true
        })
        .await?;
        Ok(rows)
    }

    /// Like [`Store::trial_rows`], but hands the trials to `visit` one at a time, so a sweep of
    /// millions of trials is never held in memory. `visit` returns false to stop early.
    pub async fn for_each_trial(
        &self,
        sweep_id: Option<i64>,
        mut visit: impl FnMut(TrialRow) -> bool,
    ) -> Result<(), StoreError> {
        use futures_util::TryStreamExt;
        let filter = if sweep_id.is_some() {
            "AND t.sweep_id = ?"
        } else {
            ""
        };
        // One row per trial, metrics folded into a JSON object by SQLite: row transfer is the
        // cost that dominates reading large sweeps.
        let sql = format!(
            "SELECT t.id, s.name AS sweep, t.ordinal, t.params, t.status, t.attempts, t.out_of_memory, t.started_at, \
                    t.finished_at, t.gpu, t.error, t.completed_by, \
                    (SELECT json_group_object(r.name, r.value) FROM results r WHERE r.trial_id = t.id) AS metrics \
             FROM trials t JOIN sweeps s ON s.id = t.sweep_id \
             WHERE (t.active = 1 OR t.status = 'completed') {filter} ORDER BY t.sweep_id, t.ordinal"
        );
        let mut query = sqlx::query(&sql);
        if let Some(id) = sweep_id {
            query = query.bind(id);
        }
        let mut stream = query.fetch(&self.pool);
        while let Some(r) = stream.try_next().await? {
            let id: String = r.get("id");
            let corrupt = |what: &str| StoreError::Corrupt(format!("trial {id}: {what}"));
            let params = params_from_json(r.get("params")).map_err(|e| corrupt(&e.to_string()))?;
            let metrics: BTreeMap<String, Option<f64>> = match r.get::<Option<&str>, _>("metrics") {
                Some(text) => serde_json::from_str(text).map_err(|e| corrupt(&e.to_string()))?,
                None => BTreeMap::new(),
            };
            let status: &str = r.get("status");
            let row = TrialRow {
                metrics,
                sweep: r.get("sweep"),
                ordinal: r.get("ordinal"),
                params,
                status: TrialStatus::parse(status)
                    .ok_or_else(|| corrupt(&format!("status {status:?}")))?,
                attempts: r.get::<i64, _>("attempts") as u32,
                out_of_memory: r.get::<i64, _>("out_of_memory") as u32,
                started_at: r.get("started_at"),
                finished_at: r.get("finished_at"),
                gpu: r.get("gpu"),
                error: r.get("error"),
                completed_by: r.get("completed_by"),
                id,
            };
            if !visit(row) {
                break;
            }
        }
        Ok(())
    }

    /// Names of all swept parameters of one sweep (or all), sorted.
    pub async fn param_names(&self, sweep_id: Option<i64>) -> Result<Vec<String>, StoreError> {
        let filter = if sweep_id.is_some() {
            "AND t.sweep_id = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT DISTINCT j.key FROM trials t, json_each(t.params) j \
             WHERE (t.active = 1 OR t.status = 'completed') {filter} ORDER BY j.key"
        );
        let mut query = sqlx::query_scalar(&sql);
        if let Some(id) = sweep_id {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Names of all reported metrics of one sweep (or all), sorted.
    pub async fn metric_names(&self, sweep_id: Option<i64>) -> Result<Vec<String>, StoreError> {
        let sql = match sweep_id {
            Some(_) => "SELECT DISTINCT r.name FROM results r JOIN trials t ON t.id = r.trial_id WHERE t.sweep_id = ? ORDER BY r.name",
            None => "SELECT DISTINCT name FROM results ORDER BY name",
        };
        let mut query = sqlx::query_scalar(sql);
        if let Some(id) = sweep_id {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}

/// One point of a stored curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    /// Trial id.
    pub trial_id: String,
    /// Step.
    pub step: i64,
    /// Curve name.
    pub name: String,
    /// Value; `None` if it was not finite.
    pub value: Option<f64>,
}

impl Store {
    /// Curve points of one sweep (or all), ordered by trial, name and step. Where a resumed
    /// trial reported the same step twice, the later attempt's value wins.
    pub async fn curves(&self, sweep_id: Option<i64>) -> Result<Vec<CurveRow>, StoreError> {
        let filter = if sweep_id.is_some() {
            "WHERE t.sweep_id = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT c.trial_id, c.step, c.name, c.value FROM curves c JOIN trials t ON t.id = c.trial_id {filter} \
             ORDER BY t.sweep_id, t.ordinal, c.name, c.step, c.attempt, c.rowid"
        );
        let mut query = sqlx::query_as::<_, (String, i64, String, Option<f64>)>(&sql);
        if let Some(id) = sweep_id {
            query = query.bind(id);
        }
        let mut out: Vec<CurveRow> = Vec::new();
        for (trial_id, step, name, value) in query.fetch_all(&self.pool).await? {
            if let Some(last) = out.last_mut() {
                if last.trial_id == trial_id && last.name == name && last.step == step {
                    last.value = value;
                    continue;
                }
            }
            out.push(CurveRow {
                trial_id,
                step,
                name,
                value,
            });
        }
        Ok(out)
    }
}
