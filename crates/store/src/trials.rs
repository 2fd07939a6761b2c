//! The life of a trial: claimed, running, then completed, retried, failed or interrupted.

use sweep_core::value::params_from_json;
use sweep_core::Params;

use crate::{now_ms, with_pool, Backend, Store, StoreError, TrialStatus, WriteTx};

/// A trial this runner now holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// Trial id.
    pub id: String,
    /// Its swept parameters.
    pub params: Params,
    /// This launch's number, from 1.
    pub attempt: u32,
    /// Last checkpoint a previous attempt announced.
    pub checkpoint_step: Option<i64>,
    /// Earlier attempts that ran out of GPU memory: each halves the next one's micro-batch.
    pub out_of_memory: u32,
}

/// One point of a curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// Trial id.
    pub trial_id: String,
    /// Attempt that produced it.
    pub attempt: u32,
    /// Step.
    pub step: i64,
    /// Curve name.
    pub name: String,
    /// Value, `None` if not finite.
    pub value: Option<f64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited 0 after a result.
    Completed,
    /// Exited non-zero, by a signal, or without a result.
    Failed,
    /// Killed by its timeout.
    TimedOut,
    /// Stopped by the user (Ctrl-C / SIGTERM to the orchestrator).
    Interrupted,
    /// Failed because the GPU ran out of memory (a retry splits the micro-batch).
    OutOfMemory,
}

impl Outcome {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Interrupted => "interrupted",
            Outcome::OutOfMemory => "out_of_memory",
        }
    }
}

/// What is recorded about a finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    /// How it ended.
    pub outcome: Outcome,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    /// A human-readable reason for anything but success.
    pub reason: Option<String>,
    /// The last lines of its stderr.
    pub stderr_tail: String,
}

/// The next runnable trial of a sweep on SQLite: one ordered, index-backed probe per runnable
/// state (an `OR` over states would scan the whole sweep for every claim). The write lock taken
/// by `BEGIN IMMEDIATE` makes the claim atomic.
const SQLITE_NEXT_CLAIMABLE: &str = "SELECT id FROM (\
       SELECT * FROM (SELECT id, ordinal FROM trials WHERE sweep_id = $1 AND status = 'pending' \
           AND active = 1 AND not_before <= $2 ORDER BY ordinal LIMIT 1) AS p \
       UNION ALL SELECT * FROM (SELECT id, ordinal FROM trials WHERE sweep_id = $1 AND status = 'interrupted' \
           AND active = 1 ORDER BY ordinal LIMIT 1) AS i \
       UNION ALL SELECT * FROM (SELECT id, ordinal FROM trials WHERE sweep_id = $1 AND status = 'failed' \
           AND active = 1 AND failures < $3 AND not_before <= $2 ORDER BY ordinal LIMIT 1) AS f) AS c \
     ORDER BY ordinal LIMIT 1";

/// The same on PostgreSQL, where many orchestrators claim at once: the row is locked as it is
/// chosen, and rows other claimers hold locked are skipped rather than waited for, so claims
/// never serialise on one row and never hand one trial out twice.
const POSTGRES_NEXT_CLAIMABLE: &str =
    "SELECT id FROM trials WHERE sweep_id = $1 AND active = 1 AND (\
       (status = 'pending' AND not_before <= $2) OR status = 'interrupted' \
       OR (status = 'failed' AND failures < $3 AND not_before <= $2)) \
     ORDER BY ordinal LIMIT 1 FOR UPDATE SKIP LOCKED";

impl Store {
    /// Atomically takes the next runnable trial of a sweep for `runner_id`, in expansion
    /// order, on `gpu`. Two runners never get the same trial. [`Store::claim_many`] says
    /// which runners may claim.
    pub async fn claim(
        &self,
        sweep_id: i64,
        runner_id: &str,
        lease: std::time::Duration,
        max_attempts: u32,
        gpu: Option<&str>,
    ) -> Result<Option<Claimed>, StoreError> {
        let mut claimed = self
            .claim_many(sweep_id, runner_id, lease, max_attempts, &[gpu])
            .await?;
        Ok(claimed.pop())
    }

    /// Atomically takes the next runnable trials of a sweep for `runner_id`, in expansion
    /// order, up to one for each of `gpus` (the `i`-th trial on `gpus[i]`): one transaction
    /// and one lease check for them all, so a runner filling many free slots at once pays for
    /// one. Fewer than asked means the queue has no more now. Two runners never get the same
    /// trial.
    ///
    /// Only a runner that holds a live lease may claim: one that has not ended and whose last
    /// heartbeat is younger than `lease`. That is checked in the claim's own transaction, with
    /// the runner's row locked, so a runner that wakes from a pause cannot take new trials
    /// under a lease that another runner is giving up at the same moment. A lapsed lease is
    /// [`StoreError::LeaseLapsed`]: renew it ([`Store::heartbeat`]) or register anew.
    pub async fn claim_many(
        &self,
        sweep_id: i64,
        runner_id: &str,
        lease: std::time::Duration,
        max_attempts: u32,
        gpus: &[Option<&str>],
    ) -> Result<Vec<Claimed>, StoreError> {
        let next = match self.backend() {
            Backend::Sqlite => SQLITE_NEXT_CLAIMABLE,
            Backend::Postgres => POSTGRES_NEXT_CLAIMABLE,
        };
        let sql = format!(
            "UPDATE trials SET status = 'running', owner = $4, attempts = attempts + 1, \
             started_at = $2, finished_at = NULL, gpu = $5, pid = NULL, job_id = NULL, executor = NULL, node = NULL, error = NULL \
             WHERE id = ({next}) \
             RETURNING id, params, attempts, checkpoint_step, out_of_memory"
        );
        type Row = (String, String, i64, Option<i64>, i64);
        let rows: Vec<Row> = with_pool!(self, |pool| {
            let now = now_ms();
            let mut tx = pool.write_tx().await?;
            // A no-op update rather than a read: it takes the row's lock on PostgreSQL (SQLite's
            // write transaction holds the whole database already), so a concurrent `reclaim`,
            // which ends the runner first, waits for this claim or makes it fail here.
            let live = sqlx::query(
                "UPDATE runners SET heartbeat_at = heartbeat_at \
                 WHERE id = $1 AND ended_at IS NULL AND heartbeat_at >= $2",
            )
            .bind(runner_id)
            .bind(now - lease.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
            if live.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::LeaseLapsed(runner_id.to_string()));
            }
            let mut rows = Vec::with_capacity(gpus.len());
            for gpu in gpus {
                let row: Option<Row> = sqlx::query_as(&sql)
                    .bind(sweep_id)
                    .bind(now)
                    .bind(max_attempts as i64)
                    .bind(runner_id)
                    .bind(gpu)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { break };
                sqlx::query(
                    "INSERT INTO attempts (trial_id, attempt, owner, gpu, started_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (trial_id, attempt) DO UPDATE SET owner = excluded.owner, gpu = excluded.gpu, \
                     started_at = excluded.started_at, finished_at = NULL, outcome = NULL, exit_code = NULL, \
                     signal = NULL, reason = NULL, stderr_tail = NULL, job_id = NULL, executor = NULL, node = NULL",
                )
                .bind(&row.0)
                .bind(row.2)
                .bind(runner_id)
                .bind(gpu)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                rows.push(row);
            }
            tx.commit().await?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(id, params, attempt, checkpoint_step, out_of_memory)| {
                let params = params_from_json(&params)
                    .map_err(|e| StoreError::Corrupt(format!("trial {id}: {e}")))?;
                Ok(Claimed {
                    id,
                    params,
                    attempt: attempt as u32,
                    checkpoint_step,
                    out_of_memory: out_of_memory as u32,
                })
            })
            .collect()
    }

    /// How many trials of the sweep are still to run (now or after a backoff), and the
    /// earliest time a backed-off one becomes runnable.
    pub async fn queue_state(
        &self,
        sweep_id: i64,
        max_attempts: u32,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let (count, earliest): (i64, Option<i64>) = with_pool!(self, |pool| {
            Ok(sqlx::query_as(
            "SELECT COUNT(*), MIN(not_before) FROM trials WHERE sweep_id = $1 AND active = 1 AND \
             (status IN ('pending', 'interrupted') OR (status = 'failed' AND failures < $2))",
        )
        .bind(sweep_id)
        .bind(max_attempts as i64)
        .fetch_one(pool)
        .await?)
        })?;
        Ok((count as u64, earliest))
    }

    /// Records the job that runs a trial's attempt, with the name of the executor that made
    /// it (a SLURM job id of `slurm`) and, once it is known, the node it runs on: `sweep
    /// status` shows them, and a run that takes the trial back asks that executor to stop
    /// the job. Only the runner that holds the trial may.
    pub async fn set_job(
        &self,
        trial_id: &str,
        runner_id: &str,
        attempt: u32,
        executor: &str,
        job_id: &str,
        node: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            let owned = sqlx::query(
                "UPDATE trials SET job_id = $1, executor = $6, node = COALESCE($2, node) \
                 WHERE id = $3 AND owner = $4 AND attempts = $5",
            )
            .bind(job_id)
            .bind(node)
            .bind(trial_id)
            .bind(runner_id)
            .bind(attempt as i64)
            .bind(executor)
            .execute(&mut *tx)
            .await?;
            if owned.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE attempts SET job_id = $1, executor = $5, node = COALESCE($2, node) \
                     WHERE trial_id = $3 AND attempt = $4",
                )
                .bind(job_id)
                .bind(node)
                .bind(trial_id)
                .bind(attempt as i64)
                .bind(executor)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records that a trial announced a checkpoint. Only the attempt that holds the trial may.
    pub async fn set_checkpoint(
        &self,
        trial_id: &str,
        runner_id: &str,
        attempt: u32,
        step: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE trials SET checkpoint_step = $1 WHERE id = $2 AND owner = $3 AND attempts = $4 AND status = 'running'",
            )
            .bind(step)
            .bind(trial_id)
            .bind(runner_id)
            .bind(attempt as i64)
            .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Appends curve points in one transaction.
    pub async fn add_curve_points(&self, points: &[CurvePoint]) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            for p in points {
                sqlx::query(
                    "INSERT INTO curves (trial_id, attempt, step, name, value) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&p.trial_id)
                .bind(p.attempt as i64)
                .bind(p.step)
                .bind(&p.name)
                .bind(p.value)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records an attempt that did not succeed. A failure is retried (status `pending` until
    /// `retry_at`) while the trial has failed fewer than `max_attempts` times, else the trial
    /// is `failed`; an interruption leaves it `interrupted` without using up an attempt.
    /// A failure that is not `retryable` (the command cannot even start) uses up the whole
    /// budget at once. Does nothing, not even to the attempt's own row, unless this attempt
    /// of `runner_id` still holds the trial: the end of an attempt that was taken over (its
    /// row already says `lost`) is never recorded against the trial or a newer attempt.
    #[expect(clippy::too_many_arguments)]
    pub async fn end_unsuccessful(
        &self,
        trial_id: &str,
        runner_id: &str,
        attempt: u32,
        end: &AttemptEnd,
        retry_at: i64,
        max_attempts: u32,
        retryable: bool,
    ) -> Result<Option<TrialStatus>, StoreError> {
        let status: Option<String> = with_pool!(self, |pool| {
            let now = now_ms();
            let mut tx = pool.write_tx().await?;
            let status: Option<String> = if end.outcome == Outcome::Interrupted {
                sqlx::query_scalar(
                    "UPDATE trials SET status = 'interrupted', owner = NULL, pid = NULL, finished_at = $1, error = $2 \
                     WHERE id = $3 AND owner = $4 AND attempts = $5 AND status = 'running' RETURNING status",
                )
                .bind(now)
                .bind(&end.reason)
                .bind(trial_id)
                .bind(runner_id)
                .bind(attempt as i64)
                .fetch_optional(&mut *tx)
                .await?
            } else {
                // `$1`: retryable; a failure that is not uses up the whole budget at once.
                sqlx::query_scalar(
                    "UPDATE trials SET \
                     failures = CASE WHEN $1 OR failures + 1 >= $2 THEN failures + 1 ELSE $2 END, \
                     status = CASE WHEN $1 AND failures + 1 < $2 THEN 'pending' ELSE 'failed' END, \
                     not_before = $3, owner = NULL, pid = NULL, finished_at = $4, error = $5, \
                     out_of_memory = out_of_memory + $8 \
                     WHERE id = $6 AND owner = $7 AND attempts = $9 AND status = 'running' RETURNING status",
                )
                .bind(retryable)
                .bind(max_attempts as i64)
                .bind(retry_at)
                .bind(now)
                .bind(&end.reason)
                .bind(trial_id)
                .bind(runner_id)
                .bind(i64::from(end.outcome == Outcome::OutOfMemory))
                .bind(attempt as i64)
                .fetch_optional(&mut *tx)
                .await?
            };
            if status.is_some() {
                crate::batch::finish_attempts!(tx, &[(trial_id, attempt, end)], now)?;
            }
            tx.commit().await?;
            Ok(status)
        })?;
        Ok(status.as_deref().and_then(TrialStatus::parse))
    }

    /// Gives every failed trial of a sweep a fresh attempt budget (`sweep run --retry-failed`).
    pub async fn reset_failed(&self, sweep_id: i64) -> Result<u64, StoreError> {
        with_pool!(self, |pool| {
            let done = sqlx::query(
                "UPDATE trials SET status = 'pending', failures = 0, not_before = 0 WHERE sweep_id = $1 AND status = 'failed'",
            )
            .bind(sweep_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}
