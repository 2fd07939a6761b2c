//! Opening a PostgreSQL store: the cluster backend.
//!
//! The server and its database are the user's (or the cluster's): sweep creates its tables in
//! the database it is given, never the database itself, and refuses a database that already
//! holds tables of something else. Migrations take PostgreSQL's advisory lock, so any number of
//! `sweep run` processes may open a new database at once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::ConnectOptions;

use crate::{Access, Pool, Store, StoreError, POSTGRES_MIGRATOR};

/// Connections per `sweep` process: the dispatcher does one thing at a time, and a report
/// streams one query. A cluster of N orchestrators needs at most 4 N server connections.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection to a server that answers nothing is waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn open(location: &str, access: Access) -> Result<Store, StoreError> {
    let shown = redact(location);
    let fail = |e: sqlx::Error| StoreError::open(&shown, access == Access::Read, e);
    let options = PgConnectOptions::from_str(location)
        .map_err(fail)?
        .application_name("sweep")
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
    // One connection first, on its own: a pool that cannot connect says only that it timed
    // out, where the connection itself says why (refused, no such host, bad password).
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(first)) => drop(first),
        Ok(Err(e)) => return Err(fail(e)),
        Err(_) => return Err(fail(sqlx::Error::PoolTimedOut)),
    }
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        // A server that is down answers nothing: give up on a connection quickly and let
        // the retry loop decide how long to wait.
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(fail)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&pool)
    .await
    .map_err(fail)?;
    let ours = tables.iter().any(|t| t == "_sqlx_migrations");
    if !ours && !tables.is_empty() {
        return Err(StoreError::Foreign(shown, tables.join(", ")));
    }
    if !ours && access != Access::Create {
        return Err(StoreError::Empty(shown));
    }
    let store = Store::new(Pool::Postgres(pool.clone()), shown.clone());
    if access == Access::Read {
        store.check_schema(ours).await?;
        return Ok(store);
    }
    POSTGRES_MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::migrate(&shown, e))?;
    Ok(store)
}

/// `location` with any password replaced by `***`, for messages and logs.
pub fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => location.to_string(),
        },
        None => location.to_string(),
    }
}

/// The variable naming a PostgreSQL server (`postgres://user@host:port/db`) for the test
/// suites: when it is set, every test store is a fresh database on that server instead of a
/// SQLite file, so the same tests prove both backends.
pub const TEST_SERVER_ENV: &str = "SWEEP_TEST_POSTGRES";

/// Creates a new, empty database on the server `server` names and returns its URL: one per
/// test, so tests run in parallel without seeing each other's sweeps. For the test suites.
pub async fn fresh_database(server: &str) -> Result<String, StoreError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!(
        "sweep_test_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let fail = |e: sqlx::Error| StoreError::open(&redact(server), false, e);
    let options = PgConnectOptions::from_str(server).map_err(fail)?;
    let mut conn = options.connect().await.map_err(fail)?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(with_database(server, &name))
}

/// `url` with its database (the path) replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgres://sweep:s3cr:et@db.lab:5432/sweep?sslmode=require"),
            "postgres://sweep:***@db.lab:5432/sweep?sslmode=require"
        );
        assert_eq!(
            redact("postgres://sweep@db/sweep"),
            "postgres://sweep@db/sweep"
        );
        assert_eq!(redact("postgres://db/sweep"), "postgres://db/sweep");
        assert_eq!(redact("sweep.db"), "sweep.db");
    }

    #[test]
    fn a_test_database_replaces_only_the_path() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "t"),
            "postgres://u@h:1/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "t"), "postgres://u@h:1/t");
    }
}
