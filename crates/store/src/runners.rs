//! Orchestrator leases: who is running which trials, and whether they are still alive.
//!
//! Every `sweep run` registers a runner row and refreshes its heartbeat while it works. A
//! runner that stopped beating (or, on the same host, whose process is gone) has died: its
//! running trials are handed back as interrupted, so a later or concurrent run resumes them.

use crate::{now_ms, with_pool, Store, StoreError, WriteTx};

/// One orchestrator process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// Random id.
    pub id: String,
    /// Host name it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Last heartbeat (Unix ms).
    pub heartbeat_at: i64,
}

/// A trial taken back from a dead runner, with the process group it may have left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Trial id.
    pub trial_id: String,
    /// Process group id of its last attempt, if it was started.
    pub pid: Option<i64>,
    /// The host that attempt ran on, when its runner is known.
    pub host: Option<String>,
    /// The runner that held it.
    pub runner: Option<String>,
    /// The executor's job its attempt ran as (a SLURM job id), to cancel.
    pub job_id: Option<String>,
    /// The name of the executor that made `job_id`; `None` for jobs recorded before
    /// executors were (SLURM's, then the only one with job ids).
    pub executor: Option<String>,
    /// The number of that attempt.
    pub attempt: i64,
}

impl Store {
    /// Registers this process as a runner.
    pub async fn register_runner(&self, host: &str, pid: u32) -> Result<Runner, StoreError> {
        let now = now_ms();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let id =
            blake3::hash(format!("{host}\0{pid}\0{nanos}").as_bytes()).to_hex()[..12].to_string();
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO runners (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&id)
            .bind(host)
            .bind(pid as i64)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })?;
        Ok(Runner {
            id,
            host: host.to_string(),
            pid: pid as i64,
            heartbeat_at: now,
        })
    }

    /// Refreshes this runner's lease. Returns false when the lease was already given up:
    /// another runner presumed this one dead (it was paused, or could not reach the database,
    /// for longer than the lease) and took its trials back.
    pub async fn heartbeat(&self, runner_id: &str) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let renewed = sqlx::query(
                "UPDATE runners SET heartbeat_at = $1 WHERE id = $2 AND ended_at IS NULL",
            )
            .bind(now_ms())
            .bind(runner_id)
            .execute(pool)
            .await?;
            Ok(renewed.rows_affected() == 1)
        })
    }

    /// Marks this runner as finished.
    pub async fn end_runner(&self, runner_id: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE runners SET ended_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(runner_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Runners that have not ended.
    pub async fn live_runners(&self) -> Result<Vec<Runner>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = with_pool!(self, |pool| Ok(sqlx::query_as(
            "SELECT id, host, pid, heartbeat_at FROM runners WHERE ended_at IS NULL"
        )
        .fetch_all(pool)
        .await?))?;
        Ok(rows
            .into_iter()
            .map(|(id, host, pid, heartbeat_at)| Runner {
                id,
                host,
                pid,
                heartbeat_at,
            })
            .collect())
    }

    /// Hands a runner's running trials back as interrupted, records why on their attempts,
    /// and ends the runner: for a runner whose process is gone, and for one that stops
    /// holding trials (by an error, say). Safe to race: each trial is taken back once.
    pub async fn reclaim(&self, runner_id: &str, reason: &str) -> Result<Vec<Orphan>, StoreError> {
        self.take_back(runner_id, None, reason).await
    }

    /// [`Store::reclaim`] for a runner presumed dead because it has been silent: done only if
    /// its last heartbeat is still older than `silent_before` (Unix ms) when the runner is
    /// ended, in the same transaction. A runner that renewed its lease in the meantime (it was
    /// paused and woke up) keeps its trials, so no trial is ever held by both.
    pub async fn reclaim_silent(
        &self,
        runner_id: &str,
        silent_before: i64,
        reason: &str,
    ) -> Result<Vec<Orphan>, StoreError> {
        self.take_back(runner_id, Some(silent_before), reason).await
    }

    async fn take_back(
        &self,
        runner_id: &str,
        silent_before: Option<i64>,
        reason: &str,
    ) -> Result<Vec<Orphan>, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            // The runner is ended first: on PostgreSQL that locks its row, so a claim it makes
            // at the same moment either commits before (and its trial is handed back here) or
            // finds the runner ended and is refused.
            let ended = sqlx::query(
                "UPDATE runners SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL \
                 AND heartbeat_at < $3",
            )
            .bind(now_ms())
            .bind(runner_id)
            .bind(silent_before.unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            if silent_before.is_some() && ended.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            let orphans = hand_back!(tx, "t.owner = $1", Some(runner_id), reason);
            tx.commit().await?;
            Ok(orphans)
        })
    }

    /// Hands back running trials that no live runner holds (their runner ended without
    /// handing them back, as older versions did after an error), so they are never stranded.
    pub async fn reclaim_stranded(&self, reason: &str) -> Result<Vec<Orphan>, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            let orphans = hand_back!(
                tx,
                "(t.owner IS NULL OR t.owner NOT IN (SELECT id FROM runners WHERE ended_at IS NULL))",
                None::<&str>,
                reason
            );
            tx.commit().await?;
            Ok(orphans)
        })
    }
}

/// A running trial as `hand_back!` reads it: id, process group, attempt, owner, host, job id
/// and the executor that made the job.
type OrphanRow = (
    String,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Marks the running trials that `owned_by` (a condition on `t`, the trials, with `owner` bound
/// to its one placeholder if it has one) selects as interrupted, closes their attempts as
/// lost, and evaluates to them with the host, process group and job their attempt ran as.
/// A macro rather than a function so that one text serves the transaction of either backend.
macro_rules! hand_back {
    ($tx:expr, $owned_by:expr, $owner:expr, $reason:expr) => {{
        let now = now_ms();
        let select = format!(
            "SELECT t.id, t.pid, t.attempts, t.owner, r.host, t.job_id, t.executor FROM trials t LEFT JOIN runners r ON r.id = t.owner \
             WHERE t.status = 'running' AND {}",
            $owned_by
        );
        let mut query = sqlx::query_as(&select);
        if let Some(owner) = $owner {
            query = query.bind(owner);
        }
        let rows: Vec<OrphanRow> =
            query.fetch_all(&mut *$tx).await?;
        let mut orphans = Vec::with_capacity(rows.len());
        for (trial_id, pid, attempts, runner, host, job_id, executor) in rows {
            sqlx::query(
                "UPDATE trials SET status = 'interrupted', owner = NULL, pid = NULL, finished_at = $1, \
                 error = $2 WHERE id = $3 AND status = 'running'",
            )
            .bind(now)
            .bind($reason)
            .bind(&trial_id)
            .execute(&mut *$tx)
            .await?;
            sqlx::query(
                "UPDATE attempts SET finished_at = $1, outcome = 'lost', reason = $2 \
                 WHERE trial_id = $3 AND attempt = $4 AND outcome IS NULL",
            )
            .bind(now)
            .bind($reason)
            .bind(&trial_id)
            .bind(attempts)
            .execute(&mut *$tx)
            .await?;
            orphans.push(Orphan {
                trial_id,
                pid,
                host,
                runner,
                job_id,
                executor,
                attempt: attempts,
            });
        }
        orphans
    }};
}
use hand_back;
