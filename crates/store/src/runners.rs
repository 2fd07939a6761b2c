//! Orchestrator leases: who is running which trials, and whether they are still alive.
//!
//! Every `sweep run` registers a runner row and refreshes its heartbeat while it works. A
//! runner that stopped beating (or, on the same host, whose process is gone) has died: its
//! running trials are handed back as interrupted, so a later or concurrent run resumes them.

use sqlx::Row;

use crate::{now_ms, Store, StoreError};

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
        sqlx::query(
            "INSERT INTO runners (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(host)
        .bind(pid as i64)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
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
        let renewed =
            sqlx::query("UPDATE runners SET heartbeat_at = ? WHERE id = ? AND ended_at IS NULL")
                .bind(now_ms())
                .bind(runner_id)
                .execute(&self.pool)
                .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Marks this runner as finished.
    pub async fn end_runner(&self, runner_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runners SET ended_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(runner_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runners that have not ended.
    pub async fn live_runners(&self) -> Result<Vec<Runner>, StoreError> {
        let rows =
            sqlx::query("SELECT id, host, pid, heartbeat_at FROM runners WHERE ended_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| Runner {
                id: r.get("id"),
                host: r.get("host"),
                pid: r.get("pid"),
                heartbeat_at: r.get("heartbeat_at"),
            })
            .collect())
    }

    /// Hands a runner's running trials back as interrupted, records why on their attempts,
    /// and ends the runner: for a runner that died, and for one that stops holding trials (by
    /// an error, say). Safe to race: each trial is taken back once.
    pub async fn reclaim(&self, runner_id: &str, reason: &str) -> Result<Vec<Orphan>, StoreError> {
        let mut tx = self.write_tx().await?;
        let orphans = hand_back(&mut tx, "t.owner = ?", Some(runner_id), reason).await?;
        sqlx::query("UPDATE runners SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(now_ms())
            .bind(runner_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(orphans)
    }

    /// Hands back running trials that no live runner holds (their runner ended without
    /// handing them back, as older versions did after an error), so they are never stranded.
    pub async fn reclaim_stranded(&self, reason: &str) -> Result<Vec<Orphan>, StoreError> {
        let mut tx = self.write_tx().await?;
        let orphans = hand_back(
            &mut tx,
            "(t.owner IS NULL OR t.owner NOT IN (SELECT id FROM runners WHERE ended_at IS NULL))",
            None,
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(orphans)
    }
}

/// Marks the running trials that `owned_by` (a condition on `t`, the trials, with `owner` bound
/// to its one placeholder if it has one) selects as interrupted, closes their attempts as
/// lost, and returns them with the host and process group their attempt ran as.
async fn hand_back(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    owned_by: &str,
    owner: Option<&str>,
    reason: &str,
) -> Result<Vec<Orphan>, StoreError> {
    let now = now_ms();
    let select = format!(
        "SELECT t.id, t.pid, t.attempts, t.owner, r.host FROM trials t LEFT JOIN runners r ON r.id = t.owner \
         WHERE t.status = 'running' AND {owned_by}"
    );
    let mut query = sqlx::query(&select);
    if let Some(owner) = owner {
        query = query.bind(owner);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut orphans = Vec::with_capacity(rows.len());
    for row in &rows {
        let trial_id: String = row.get("id");
        let attempts: i64 = row.get("attempts");
        sqlx::query(
            "UPDATE trials SET status = 'interrupted', owner = NULL, pid = NULL, finished_at = ?, \
             error = ? WHERE id = ? AND status = 'running'",
        )
        .bind(now)
        .bind(reason)
        .bind(&trial_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE attempts SET finished_at = ?, outcome = 'lost', reason = ? \
             WHERE trial_id = ? AND attempt = ? AND outcome IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(&trial_id)
        .bind(attempts)
        .execute(&mut **tx)
        .await?;
        orphans.push(Orphan {
            trial_id,
            pid: row.get("pid"),
            host: row.get("host"),
            runner: row.get("owner"),
        });
    }
    Ok(orphans)
}
