//! Registering sweeps and their trials.

use std::collections::BTreeSet;

use sweep_core::value::params_to_json;
use sweep_core::{trial_id, Grid, Trial};

use crate::{now_ms, with_pool, Store, StoreError, WriteTx};

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
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            // Two runs creating the same sweep at once: the second one's insert does nothing
            // and it then sees the first one's row.
            sqlx::query(
                "INSERT INTO sweeps (name, grid_path, grid_toml, workdir, config, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&grid.name)
            .bind(&path)
            .bind(&grid.source)
            .bind(workdir)
            .bind(&config)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let (id, stored): (i64, String) =
                sqlx::query_as("SELECT id, config FROM sweeps WHERE name = $1")
                    .bind(&grid.name)
                    .fetch_one(&mut *tx)
                    .await?;
            if stored != config {
                tx.rollback().await?;
                return Err(StoreError::ConfigChanged {
                    name: grid.name.clone(),
                    stored,
                    now: config.clone(),
                });
            }
            sqlx::query("UPDATE sweeps SET grid_path = $1, grid_toml = $2, workdir = $3, updated_at = $4 WHERE id = $5")
                .bind(&path)
                .bind(&grid.source)
                .bind(workdir)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })?;
        self.note_param_names(&grid.fixed.keys().cloned().collect())
            .await?;
        self.sweep(&grid.name).await
    }

    /// Stores the grid's trials. Trials already stored keep their state and results; stored
    /// trials no longer in the grid are set aside (not run, not deleted).
    pub async fn register_trials(
        &self,
        sweep: &SweepRecord,
        trials: &[Trial],
    ) -> Result<Registered, StoreError> {
        let rows: Vec<(String, i64, String)> = trials
            .iter()
            .map(|t| {
                (
                    trial_id(&sweep.name, &t.key),
                    t.ordinal as i64,
                    params_to_json(&t.params),
                )
            })
            .collect();
        let names: BTreeSet<String> = trials
            .iter()
            .flat_map(|t| t.params.keys().cloned())
            .collect();
        // The sweep's own list of names, in the same transaction as its trials.
        let note_names = format!(
            "INSERT INTO sweep_param_names (sweep_id, name) VALUES {} ON CONFLICT DO NOTHING",
            (2..names.len() + 2)
                .map(|i| format!("($1, ${i})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (before, after): (i64, i64) = with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE sweep_id = $1")
                .bind(sweep.id)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("UPDATE trials SET active = 0 WHERE sweep_id = $1")
                .bind(sweep.id)
                .execute(&mut *tx)
                .await?;
            for chunk in rows.chunks(INSERT_CHUNK) {
                let sql = insert_trials_sql(chunk.len());
                let mut query = sqlx::query(&sql).bind(sweep.id);
                for (id, ordinal, params) in chunk {
                    query = query.bind(id).bind(ordinal).bind(params);
                }
                query.execute(&mut *tx).await?;
            }
            if !names.is_empty() {
                let mut query = sqlx::query(&note_names).bind(sweep.id);
                for name in &names {
                    query = query.bind(name);
                }
                query.execute(&mut *tx).await?;
            }
            let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE sweep_id = $1")
                .bind(sweep.id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((before, after))
        })?;
        self.note_param_names(&names).await?;
        self.refresh_wide_view_or_warn().await;
        let added = (after - before) as u64;
        Ok(Registered {
            added,
            existing: trials.len() as u64 - added,
        })
    }

    /// The sweep named `name`.
    pub async fn sweep(&self, name: &str) -> Result<SweepRecord, StoreError> {
        let row: Option<SweepColumns> = with_pool!(self, |pool| {
            Ok(sqlx::query_as(
            "SELECT id, name, grid_path, grid_toml, workdir, created_at FROM sweeps WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?)
        })?;
        match row {
            Some(row) => Ok(sweep_from_row(row)),
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
        let rows: Vec<SweepColumns> = with_pool!(self, |pool| {
            Ok(sqlx::query_as(
            "SELECT id, name, grid_path, grid_toml, workdir, created_at FROM sweeps ORDER BY id",
        )
        .fetch_all(pool)
        .await?)
        })?;
        Ok(rows.into_iter().map(sweep_from_row).collect())
    }
}

/// A `sweeps` row as selected above.
type SweepColumns = (i64, String, String, String, String, i64);

fn sweep_from_row(
    (id, name, grid_path, grid_toml, workdir, created_at): SweepColumns,
) -> SweepRecord {
    SweepRecord {
        id,
        name,
        grid_path,
        grid_toml,
        workdir,
        created_at,
    }
}

/// `INSERT` of `n` trials of the sweep bound to `$1`, each as (id, ordinal, params); a trial
/// already stored keeps its state and results and is put back in the grid.
fn insert_trials_sql(n: usize) -> String {
    let mut sql = String::from("INSERT INTO trials (id, sweep_id, ordinal, params) VALUES ");
    for i in 0..n {
        let p = 2 + 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${p}, $1, ${}, ${})", p + 1, p + 2));
    }
    sql.push_str(" ON CONFLICT (id) DO UPDATE SET active = 1, ordinal = excluded.ordinal");
    sql
}
