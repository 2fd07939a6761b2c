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

    /// Refreshes this runner's lease.
    pub async fn heartbeat(&self, runner_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runners SET heartbeat_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(runner_id)
            .execute(&self.pool)
            .await?;
        Ok(())
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

    /// Hands a dead runner's running trials back as interrupted, records why on their
    /// attempts, and ends the runner. Safe to race: each trial is taken back once.
    pub async fn reclaim(&self, dead: &Runner, reason: &str) -> Result<Vec<Orphan>, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "UPDATE trials SET status = 'interrupted', owner = NULL, finished_at = ?, error = ? \
             WHERE status = 'running' AND owner = ? RETURNING id, pid, attempts",
        )
        .bind(now)
        .bind(reason)
        .bind(&dead.id)
        .fetch_all(&mut *tx)
        .await?;
        let mut orphans = Vec::with_capacity(rows.len());
        for row in &rows {
            let trial_id: String = row.get("id");
            sqlx::query(
                "UPDATE attempts SET finished_at = ?, outcome = 'lost', reason = ? \
                 WHERE trial_id = ? AND attempt = ? AND outcome IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(&trial_id)
            .bind(row.get::<i64, _>("attempts"))
            .execute(&mut *tx)
            .await?;
            orphans.push(Orphan {
                trial_id,
                pid: row.get("pid"),
            });
        }
        sqlx::query("UPDATE runners SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(now)
            .bind(&dead.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(orphans)
    }
}
