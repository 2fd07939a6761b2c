//! Reading sweeps back for `status`, exports and reports. Reads never block the writer (WAL).

use std::collections::BTreeMap;

use sqlx::Row;
use sweep_core::Params;

use crate::{with_pool, Backend, Store, StoreError, TrialStatus};

/// Trials per state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<TrialStatus, u64>);

impl Counts {
    /// The counts a `SELECT status, COUNT(*) … GROUP BY status` returns.
    pub(crate) fn of(rows: Vec<(String, i64)>) -> Counts {
        Counts(
            rows.into_iter()
                .filter_map(|(s, n)| Some((TrialStatus::parse(&s)?, n as u64)))
                .collect(),
        )
    }

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

/// One trial with everything `status` and exports show. Read from the JSON array that
/// [`packed`] builds, field by field in this order: the two change together.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
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
    #[serde(deserialize_with = "status_word")]
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
    /// The executor's job that runs (or last ran) it, such as a SLURM job id.
    pub job_id: Option<String>,
    /// The node that job runs on, once known.
    pub node: Option<String>,
    /// Final metrics (completed trials only); `None` values were not finite.
    #[serde(deserialize_with = "null_as_none")]
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// A state from its stored word.
fn status_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrialStatus, D::Error> {
    let word = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    TrialStatus::parse(&word)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown status {word:?}")))
}

/// A trial's metrics, `null` where it has none (PostgreSQL's aggregate of no rows).
fn null_as_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<f64>>, D::Error> {
    Ok(
        <Option<BTreeMap<String, Option<f64>>> as serde::Deserialize>::deserialize(d)?
            .unwrap_or_default(),
    )
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
        let rows: Vec<(String, i64)> = with_pool!(self, |pool| {
            Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM trials WHERE sweep_id = $1 AND active = 1 GROUP BY status",
        )
        .bind(sweep_id)
        .fetch_all(pool)
        .await?)
        })?;
        Ok(Counts::of(rows))
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
            "AND t.sweep_id = $1"
        } else {
            ""
        };
        // Trials come packed CHUNK to a row: sqlx hands each row from its worker thread to
        // this one, and a wake-up per trial was a third of the time of reading 10^6 of them.
        let chunk = format!("t.sweep_id, t.ordinal / {CHUNK}");
        let trials = match self.backend() {
            Backend::Sqlite => format!(
                "json_group_array({} ORDER BY t.ordinal)",
                packed(Backend::Sqlite)
            ),
            Backend::Postgres => format!(
                "json_agg({} ORDER BY t.ordinal)::TEXT",
                packed(Backend::Postgres)
            ),
        };
        let sql = format!(
            "SELECT {trials} AS trials FROM trials t JOIN sweeps s ON s.id = t.sweep_id \
             WHERE (t.active = 1 OR t.status = 'completed') {filter} \
             GROUP BY {chunk} ORDER BY {chunk}"
        );
        with_pool!(once self, |pool| {
            let mut query = sqlx::query(&sql);
            if let Some(id) = sweep_id {
                query = query.bind(id);
            }
            let mut stream = query.fetch(pool);
            while let Some(r) = stream.try_next().await? {
                let text: &str = r.try_get("trials")?;
                let chunk: Vec<TrialRow> = serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("trials: {e}")))?;
                for row in chunk {
                    if !visit(row) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    /// One trial's state, or `None` if no trial has this id: what `sweep logs --follow`
    /// polls to know when to stop.
    pub async fn trial_status(&self, trial_id: &str) -> Result<Option<TrialStatus>, StoreError> {
        let status: Option<String> = with_pool!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT status FROM trials WHERE id = $1")
                    .bind(trial_id)
                    .fetch_optional(pool)
                    .await?,
            )
        })?;
        Ok(status.as_deref().and_then(TrialStatus::parse))
    }

    /// Names of all swept parameters of one sweep (or all), sorted: every name a trial of it
    /// was registered with, kept as they are registered.
    pub async fn param_names(&self, sweep_id: Option<i64>) -> Result<Vec<String>, StoreError> {
        self.names("sweep_param_names", sweep_id).await
    }

    /// Names of all reported metrics of one sweep (or all), sorted, kept as results are
    /// recorded.
    pub async fn metric_names(&self, sweep_id: Option<i64>) -> Result<Vec<String>, StoreError> {
        self.names("sweep_result_names", sweep_id).await
    }

    async fn names(&self, table: &str, sweep_id: Option<i64>) -> Result<Vec<String>, StoreError> {
        let sql = match sweep_id {
            Some(_) => format!("SELECT name FROM {table} WHERE sweep_id = $1 ORDER BY name"),
            None => format!("SELECT DISTINCT name FROM {table} ORDER BY name"),
        };
        with_pool!(self, |pool| {
            let mut query = sqlx::query_scalar(&sql);
            if let Some(id) = sweep_id {
                query = query.bind(id);
            }
            Ok(query.fetch_all(pool).await?)
        })
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
    /// Where each running trial of a sweep has got to: every curve point at the highest step
    /// of its latest attempt, by trial. What `sweep status` shows before a trial has results.
    pub async fn latest_points(
        &self,
        sweep_id: i64,
    ) -> Result<BTreeMap<String, Vec<CurveRow>>, StoreError> {
        let sql = "SELECT c.trial_id, c.step, c.name, c.value FROM curves c \
                   JOIN trials t ON t.id = c.trial_id \
                   WHERE t.sweep_id = $1 AND t.status = 'running' \
                   AND c.attempt = (SELECT MAX(a.attempt) FROM curves a WHERE a.trial_id = c.trial_id) \
                   AND c.step = (SELECT MAX(s.step) FROM curves s \
                                 WHERE s.trial_id = c.trial_id AND s.attempt = c.attempt) \
                   ORDER BY c.trial_id, c.name";
        let rows: Vec<(String, i64, String, Option<f64>)> = with_pool!(self, |pool| {
            Ok(sqlx::query_as(sql).bind(sweep_id).fetch_all(pool).await?)
        })?;
        let mut out: BTreeMap<String, Vec<CurveRow>> = BTreeMap::new();
        for (trial_id, step, name, value) in rows {
            let points = out.entry(trial_id.clone()).or_default();
            // A step reported twice keeps its last value.
            points.retain(|p| p.name != name);
            points.push(CurveRow {
                trial_id,
                step,
                name,
                value,
            });
        }
        Ok(out)
    }

    /// Curve points of one sweep (or all), ordered by trial, name and step. Where a resumed
    /// trial reported the same step twice, the later attempt's value wins.
    pub async fn curves(&self, sweep_id: Option<i64>) -> Result<Vec<CurveRow>, StoreError> {
        let filter = if sweep_id.is_some() {
            "WHERE t.sweep_id = $1"
        } else {
            ""
        };
        // Insertion order breaks ties: SQLite's rowid, PostgreSQL's identity column.
        let inserted = match self.backend() {
            Backend::Sqlite => "c.rowid",
            Backend::Postgres => "c.seq",
        };
        let sql = format!(
            "SELECT c.trial_id, c.step, c.name, c.value FROM curves c JOIN trials t ON t.id = c.trial_id {filter} \
             ORDER BY t.sweep_id, t.ordinal, c.name, c.step, c.attempt, {inserted}"
        );
        let rows: Vec<(String, i64, String, Option<f64>)> = with_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql);
            if let Some(id) = sweep_id {
                query = query.bind(id);
            }
            Ok(query.fetch_all(pool).await?)
        })?;
        Ok(last_value_per_step(rows))
    }
}

/// Curve rows ordered by trial, name, step and insertion, folded so that a step reported twice
/// (by a resumed trial) keeps its last value.
pub(crate) fn last_value_per_step(rows: Vec<(String, i64, String, Option<f64>)>) -> Vec<CurveRow> {
    let mut out: Vec<CurveRow> = Vec::new();
    for (trial_id, step, name, value) in rows {
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
    out
}

/// How many trials [`Store::for_each_trial`] reads per row.
const CHUNK: u32 = 256;

/// One trial (`t`, with its sweep `s`) as one JSON array the database builds, the fields of
/// [`TrialRow`] in its order, its metrics an object inside it: each value a row carries is copied and freed once more on its way
/// through sqlx, which was most of the cost of reading large sweeps when a trial came as
/// fifteen columns.
fn packed(backend: Backend) -> String {
    let fields = "t.id, s.name, t.ordinal, PARAMS, t.status, t.attempts, t.out_of_memory, \
                  t.started_at, t.finished_at, t.gpu, t.error, t.completed_by, t.job_id, t.node";
    match backend {
        Backend::Sqlite => format!(
            "json_array({}, json((SELECT json_group_object(r.name, r.value) FROM results r \
             WHERE r.trial_id = t.id)))",
            fields.replace("PARAMS", "json(t.params)")
        ),
        Backend::Postgres => format!(
            "json_build_array({}, (SELECT json_object_agg(r.name, r.value) FROM results r \
             WHERE r.trial_id = t.id))",
            fields.replace("PARAMS", "t.params::JSON")
        ),
    }
}

/// The `SELECT … FROM` that [`trial_row`] reads, for `t` (trials) joined with `s` (sweeps):
/// one trial a row, packed.
pub(crate) fn trial_select(backend: Backend) -> String {
    let trial = match backend {
        Backend::Sqlite => packed(backend),
        Backend::Postgres => format!("{}::TEXT", packed(backend)),
    };
    format!("SELECT t.id, {trial} AS trial FROM trials t JOIN sweeps s ON s.id = t.sweep_id")
}

/// A trial row as [`trial_select`] selects it, from either backend.
pub(crate) fn trial_row<'r, R>(r: &'r R) -> Result<TrialRow, StoreError>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: &str = r.try_get("trial")?;
    serde_json::from_str(text).map_err(|e| {
        let id: &str = r.try_get("id").unwrap_or("?");
        StoreError::Corrupt(format!("trial {id}: {e}"))
    })
}

/// One attempt of a trial, as recorded: who ran it and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// Its number, from 1.
    pub attempt: u32,
    /// The runner (lease) that claimed it.
    pub owner: Option<String>,
    /// `completed`, `failed`, `timed_out`, `interrupted`, `out_of_memory`, `lost` (taken
    /// back from a runner presumed dead), or `None` while it runs.
    pub outcome: Option<String>,
    /// Why it ended, for anything but success.
    pub reason: Option<String>,
    /// When it started and ended (Unix ms).
    pub started_at: i64,
    /// See `started_at`; `None` while it runs.
    pub finished_at: Option<i64>,
    /// The process's exit code, or the signal that ended it.
    pub exit_code: Option<i64>,
    /// See `exit_code`.
    pub signal: Option<i64>,
    /// The last lines the attempt wrote to stderr, as stored when it ended.
    pub stderr_tail: Option<String>,
}

impl Store {
    /// The attempts of one trial, in order: what `sweep status` cannot show in one line, and
    /// what a reader checks to see that every attempt had a fair run.
    pub async fn attempts(&self, trial_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        const SQL: &str = "SELECT attempt, owner, outcome, reason, started_at, finished_at, \
                           exit_code, signal, stderr_tail FROM attempts \
                           WHERE trial_id = $1 ORDER BY attempt";
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL).bind(trial_id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(AttemptRow {
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    owner: r.try_get("owner")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    exit_code: r.try_get::<Option<i64>, _>("exit_code")?,
                    signal: r.try_get::<Option<i64>, _>("signal")?,
                    stderr_tail: r.try_get("stderr_tail")?,
                });
            }
            Ok(out)
        })
    }
}
