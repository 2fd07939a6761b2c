//! `trials_wide`: one row per trial, one column per parameter and per metric, named as the
//! per-trial export names them (`param_<name>`, `metric_<name>`), so results are one query
//! from a data frame:
//!
//! ```python
//! pd.read_sql("select * from trials_wide", sqlite3.connect("sweep.db"))
//! ```
//!
//! SQL cannot pivot on names it does not know, so the view is rewritten when a name first
//! appears: parameter names are recorded as sweeps and trials are registered, metric names by
//! a trigger on `results` (migration 0005), and the definition the view was last written with
//! is kept in `views`, so it is rewritten only when it would change. A store notices new
//! metric names in what it commits itself, which costs nothing while the names are known.

use std::collections::BTreeSet;

use crate::{with_pool, Backend, Store, StoreError, WriteTx};

/// The view's name.
pub const WIDE_VIEW: &str = "trials_wide";

/// SQLite allows 2000 columns in a result; the leading ones and a margin are kept free.
const MAX_NAMED_COLUMNS: usize = 1950;

/// The columns every trial row starts with, in the view and in the per-trial export alike.
pub const TRIAL_COLUMNS: [&str; 9] = [
    "trial_id",
    "sweep",
    "status",
    "attempts",
    "out_of_memory",
    "started_at",
    "finished_at",
    "duration_s",
    "gpu",
];

impl Store {
    /// Records parameter names (swept or `[fixed]`) that `trials_wide` should show.
    pub(crate) async fn note_param_names(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO param_names (name) VALUES {} ON CONFLICT DO NOTHING",
            (1..=names.len())
                .map(|i| format!("(${i})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql);
            for name in names {
                query = query.bind(name);
            }
            query.execute(pool).await?;
            Ok(())
        })
    }

    /// After committing results with these metric names: rewrites `trials_wide` if one of them
    /// is new to this store. A failure is logged, never returned: the results are committed,
    /// and the view is rewritten by the next store that notices.
    pub(crate) async fn note_metric_names<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let new = {
            let known = self.wide_names.lock().expect("a lock nobody panics under");
            names.into_iter().any(|n| !known.contains(n))
        };
        if new {
            self.refresh_wide_view_or_warn().await;
        }
    }

    /// [`Store::refresh_wide_view`] where the view is a convenience beside work that has
    /// succeeded (results committed, trials registered): a failure is logged, not returned.
    pub(crate) async fn refresh_wide_view_or_warn(&self) {
        if let Err(e) = self.refresh_wide_view().await {
            tracing::warn!("cannot update the {WIDE_VIEW} view: {e}");
        }
    }

    /// Rewrites `trials_wide` if the names it should have differ from those it has. Reads
    /// first, so a store whose view is current takes no write lock.
    pub async fn refresh_wide_view(&self) -> Result<(), StoreError> {
        let (definition, metrics) = self.wide_definition().await?;
        let current: Option<String> = with_pool!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT definition FROM views WHERE name = $1")
                    .bind(WIDE_VIEW)
                    .fetch_optional(pool)
                    .await?,
            )
        })?;
        if current.as_deref() != Some(definition.as_str()) {
            self.write_wide_view().await?;
        }
        self.wide_names
            .lock()
            .expect("a lock nobody panics under")
            .extend(metrics);
        Ok(())
    }

    /// Writes the view in one transaction that holds the write lock (SQLite) or an advisory
    /// lock (PostgreSQL), reading the names again inside it, so two stores rewriting at once
    /// leave the later names, not an error.
    async fn write_wide_view(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.write_tx().await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sweep trials_wide'))")
                    .execute(&mut *tx)
                    .await?;
            }
            let params: Vec<String> =
                sqlx::query_scalar("SELECT name FROM param_names ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await?;
            let metrics: Vec<String> =
                sqlx::query_scalar("SELECT name FROM result_names ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await?;
            let definition = view_sql(self.backend(), &params, &metrics);
            sqlx::query(&format!("DROP VIEW IF EXISTS {WIDE_VIEW}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&definition).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO views (name, definition) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET definition = excluded.definition",
            )
            .bind(WIDE_VIEW)
            .bind(&definition)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The view's SQL for the names stored now, and the metric names it covers.
    async fn wide_definition(&self) -> Result<(String, Vec<String>), StoreError> {
        let (params, metrics): (Vec<String>, Vec<String>) = with_pool!(self, |pool| {
            let params = sqlx::query_scalar("SELECT name FROM param_names ORDER BY name")
                .fetch_all(pool)
                .await?;
            let metrics = sqlx::query_scalar("SELECT name FROM result_names ORDER BY name")
                .fetch_all(pool)
                .await?;
            Ok((params, metrics))
        })?;
        Ok((view_sql(self.backend(), &params, &metrics), metrics))
    }
}

/// `CREATE VIEW trials_wide AS …` for these names. Trials are those every export shows:
/// points of the current grid, and completed points dropped from it since.
fn view_sql(backend: Backend, params: &[String], metrics: &[String]) -> String {
    let timestamp = |column: &str| match backend {
        Backend::Sqlite => {
            format!("strftime('%Y-%m-%dT%H:%M:%fZ', t.{column} / 1000.0, 'unixepoch')")
        }
        Backend::Postgres => format!(
            "to_char(to_timestamp(t.{column} / 1000.0) AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        ),
    };
    let leading = [
        "t.id".to_string(),
        "s.name".to_string(),
        "t.status".to_string(),
        "t.attempts".to_string(),
        "t.out_of_memory".to_string(),
        timestamp("started_at"),
        timestamp("finished_at"),
        match backend {
            Backend::Sqlite => "(t.finished_at - t.started_at) / 1000.0",
            Backend::Postgres => "(t.finished_at - t.started_at) / 1000.0::DOUBLE PRECISION",
        }
        .to_string(),
        "t.gpu".to_string(),
    ];
    let mut columns: Vec<String> = leading
        .iter()
        .zip(TRIAL_COLUMNS)
        .map(|(expr, name)| format!("{expr} AS {name}"))
        .collect();
    // A swept value wins over a `[fixed]` one of the same name (a grid cannot have both).
    let param = |name: &str| {
        match backend {
        Backend::Sqlite => format!(
            "COALESCE(json_extract(t.params, '$.\"{path}\"'), \
             json_extract(s.config, '$.fixed.\"{path}\"')) AS {column}",
            path = literal(name),
            column = identifier(&format!("param_{name}")),
        ),
        Backend::Postgres => format!(
            "COALESCE(t.params::JSONB -> '{key}', s.config::JSONB -> 'fixed' -> '{key}') AS {column}",
            key = literal(name),
            column = identifier(&format!("param_{name}")),
        ),
    }
    };
    // JSON paths quote a key with `"`, which a key cannot then hold; sweep's own parameter
    // names never do (they are identifiers).
    let params = params.iter().filter(|p| !p.contains(['"', '\\']));
    columns.extend(params.map(|p| param(p)));
    let room = MAX_NAMED_COLUMNS.saturating_sub(columns.len());
    if metrics.len() > room {
        tracing::warn!(
            "{WIDE_VIEW} shows the first {room} of {} metrics (SQLite's column limit)",
            metrics.len()
        );
    }
    columns.extend(metrics.iter().take(room).map(|m| {
        format!(
            "(SELECT r.value FROM results r WHERE r.trial_id = t.id AND r.name = '{name}') AS {column}",
            name = literal(m),
            column = identifier(&format!("metric_{m}")),
        )
    }));
    format!(
        "CREATE VIEW {WIDE_VIEW} AS SELECT {} FROM trials t JOIN sweeps s ON s.id = t.sweep_id \
         WHERE (t.active = 1 OR t.status = 'completed') ORDER BY t.sweep_id, t.ordinal",
        columns.join(", ")
    )
}

/// A string literal's body, quotes doubled.
fn literal(text: &str) -> String {
    text.replace('\'', "''")
}

/// A quoted identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_so_no_name_can_break_the_statement() {
        let sql = view_sql(
            Backend::Sqlite,
            &["lr".into(), "bad\"name".into()],
            &["it's".into(), "a\"b".into()],
        );
        assert!(sql.contains(r#"AS "param_lr""#), "{sql}");
        assert!(
            !sql.contains("bad"),
            "a key a JSON path cannot hold is left out: {sql}"
        );
        assert!(
            sql.contains("r.name = 'it''s') AS \"metric_it's\""),
            "{sql}"
        );
        assert!(sql.contains(r#"AS "metric_a""b""#), "{sql}");
    }
}
