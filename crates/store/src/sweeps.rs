//! Registering sweeps and their trials.

use sqlx::Row;
use sweep_core::value::params_to_json;
use sweep_core::{trial_id, Grid, Trial};

use crate::{now_ms, Store, StoreError};

/// A sweep as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRecord {
    /// Row id.
    pub id: i64,
    /// Unique name from `[sweep] name`.
    pub name: String,
    /// Where the grid file was when last run.
    pub grid_path: String,
    /// The grid file's text.
    pub grid_toml: String,
    /// The directory trials run in.
    pub workdir: String,
    /// When it was first registered (Unix ms).
    pub created_at: i64,
}

/// How registering a grid's trials changed the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registered {
    /// Trials new to the store.
    pub added: u64,
    /// Trials already stored (kept with their results).
    pub existing: u64,
}

const INSERT_CHUNK: usize = 2_000;

impl Store {
    /// Creates the sweep for `grid`, or checks that an existing one has the same command and
    /// `[fixed]` values and updates its stored grid text.
    pub async fn register_sweep(
        &self,
        grid: &Grid,
        workdir: &str,
    ) -> Result<SweepRecord, StoreError> {
        let config = grid.config_json();
        let now = now_ms();
        let path = grid.path.display().to_string();
        let mut tx = self.write_tx().await?;
        let stored: Option<(i64, String)> =
            sqlx::query_as("SELECT id, config FROM sweeps WHERE name = ?")
                .bind(&grid.name)
                .fetch_optional(&mut *tx)
                .await?;
        match stored {
            Some((_, stored)) if stored != config => {
                return Err(StoreError::ConfigChanged {
                    name: grid.name.clone(),
                    stored,
                    now: config,
                });
            }
            Some((id, _)) => {
                sqlx::query("UPDATE sweeps SET grid_path = ?, grid_toml = ?, workdir = ?, updated_at = ? WHERE id = ?")
                    .bind(&path)
                    .bind(&grid.source)
                    .bind(workdir)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO sweeps (name, grid_path, grid_toml, workdir, config, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&grid.name)
                .bind(&path)
                .bind(&grid.source)
                .bind(workdir)
                .bind(&config)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.sweep(&grid.name).await
    }

    /// Stores the grid's trials. Trials already stored keep their state and results; stored
    /// trials no longer in the grid are set aside (not run, not deleted).
    pub async fn register_trials(
        &self,
        sweep: &SweepRecord,
        trials: &[Trial],
    ) -> Result<Registered, StoreError> {
        let mut tx = self.write_tx().await?;
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE sweep_id = ?")
            .bind(sweep.id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE trials SET active = 0 WHERE sweep_id = ?")
            .bind(sweep.id)
            .execute(&mut *tx)
            .await?;
        for chunk in trials.chunks(INSERT_CHUNK) {
            let mut sql =
                String::from("INSERT INTO trials (id, sweep_id, ordinal, params) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
            }
            sql.push_str(" ON CONFLICT (id) DO UPDATE SET active = 1, ordinal = excluded.ordinal");
            let mut query = sqlx::query(&sql);
            for t in chunk {
                query = query
                    .bind(trial_id(&sweep.name, &t.key))
                    .bind(sweep.id)
                    .bind(t.ordinal as i64)
                    .bind(params_to_json(&t.params));
            }
            query.execute(&mut *tx).await?;
        }
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE sweep_id = ?")
            .bind(sweep.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let added = (after - before) as u64;
        Ok(Registered {
            added,
            existing: trials.len() as u64 - added,
        })
    }

    /// The sweep named `name`.
    pub async fn sweep(&self, name: &str) -> Result<SweepRecord, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, grid_path, grid_toml, workdir, created_at FROM sweeps WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(sweep_from_row(&row)),
            None => {
                let known: Vec<String> = self.sweeps().await?.into_iter().map(|s| s.name).collect();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                Err(StoreError::UnknownSweep(name.to_string(), known))
            }
        }
    }

    /// Every sweep, oldest first.
    pub async fn sweeps(&self) -> Result<Vec<SweepRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, grid_path, grid_toml, workdir, created_at FROM sweeps ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(sweep_from_row).collect())
    }
}

fn sweep_from_row(row: &sqlx::sqlite::SqliteRow) -> SweepRecord {
    SweepRecord {
        id: row.get("id"),
        name: row.get("name"),
        grid_path: row.get("grid_path"),
        grid_toml: row.get("grid_toml"),
        workdir: row.get("workdir"),
        created_at: row.get("created_at"),
    }
}
