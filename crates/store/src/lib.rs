//! The sweep database, behind one seam ([`Store`]) with two backends.
//!
//! SQLite in WAL mode with a busy timeout is the embedded default: one orchestrator (or
//! several sharing a grid) writes, any number of `sweep status` / `report` processes read at
//! the same time. PostgreSQL is for clusters, where SQLite on a network file system is not
//! safe: every node reaches one server, trials are claimed with `FOR UPDATE SKIP LOCKED`, and
//! a lost connection is retried with backoff. Migrations under the repository's
//! `migrations/<backend>/` are embedded and applied on open. Every state change of a trial is
//! one statement or one transaction, so a crash at any point leaves the store consistent and
//! resumable.

mod batch;
mod browse;
mod error;
mod postgres;
mod read;
mod retry;
mod runners;
mod sqlite;
mod summaries;
mod sweeps;
mod trials;
mod wide;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{PgPool, SqlitePool};

pub use batch::{AttemptPid, Completion};
pub use browse::{TrialOrder, TrialPage};
pub use error::StoreError;
pub use postgres::{fresh_database as fresh_postgres_database, redact, TEST_SERVER_ENV};
pub use read::{AttemptRow, Counts, CurveRow, TrialRow};
pub use retry::RETRY_ENV;
pub use runners::{Orphan, Runner};
pub use summaries::{ConfigSummary, Sums};
pub use sweeps::SweepRecord;
pub use trials::{AttemptEnd, Claimed, CurvePoint, Outcome};
pub use wide::{TRIAL_COLUMNS, WIDE_VIEW};

/// The state of a trial, with the words used in the store, `status` and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrialStatus {
    /// Not started, or waiting for a retry.
    Pending,
    /// An orchestrator holds it and its process runs.
    Running,
    /// Exited 0 after reporting a result; its metrics are stored.
    Completed,
    /// Used up its attempts.
    Failed,
    /// Stopped by Ctrl-C, SIGTERM or a lost orchestrator; runs again on resume.
    Interrupted,
}

impl TrialStatus {
    /// Every state, in display order.
    pub const ALL: [TrialStatus; 5] = [
        TrialStatus::Pending,
        TrialStatus::Running,
        TrialStatus::Completed,
        TrialStatus::Failed,
        TrialStatus::Interrupted,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Completed => "completed",
            TrialStatus::Failed => "failed",
            TrialStatus::Interrupted => "interrupted",
        }
    }

    /// Parses a stored word.
    pub fn parse(word: &str) -> Option<TrialStatus> {
        TrialStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// A handle on one sweep database: the seam between sweep and the database it runs on.
/// Everything above the store (the dispatcher, the CLI, reports) sees only this type; which
/// backend holds the rows is chosen once, by the location given to [`Store::open`].
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// The location as given, with any password hidden, for error messages.
    location: String,
    /// Metric names `trials_wide` is known to have a column for (see [`wide`]).
    wide_names: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

/// The two backends. The SQL is written once, with `$N` placeholders, which both accept; the
/// few statements whose SQL must differ match on [`Store::backend`].
#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file: one machine, no server (the default).
    Sqlite,
    /// A PostgreSQL server that every node of a cluster can reach.
    Postgres,
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend that is, and
/// retries it while a PostgreSQL server is unreachable (see [`retry`]). Each body is one
/// statement or one transaction, so running it again after a lost connection is safe: the
/// server rolled back whatever the lost connection had not committed.
macro_rules! with_pool {
    // Without retrying: for reads that hand rows to a visitor as they stream, which must not
    // see a row twice.
    (once $store:expr, |$pool:ident| $body:expr) => {{
        let store: &$crate::Store = $store;
        let done: Result<_, $crate::StoreError> = match &store.pool {
            $crate::Pool::Sqlite($pool) => async { $body }.await,
            $crate::Pool::Postgres($pool) => async { $body }.await,
        };
        done
    }};
    ($store:expr, |$pool:ident| $body:expr) => {{
        let store: &$crate::Store = $store;
        let mut retry = $crate::retry::Retry::new(store.backend());
        loop {
            let attempt: Result<_, $crate::StoreError> = match &store.pool {
                $crate::Pool::Sqlite($pool) => async { $body }.await,
                $crate::Pool::Postgres($pool) => async { $body }.await,
            };
            match attempt {
                Err(e) if retry.should_retry(&e).await => continue,
                Err(e) => break Err(retry.give_up(e, &store.location)),
                done => {
                    retry.succeeded();
                    break done;
                }
            }
        }
    }};
}
pub(crate) use with_pool;

/// The migrations this build applies, embedded from the repository's `migrations/`: one
/// directory per backend, with the same version numbers for the same change.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Opens (creating if needed) the database at `location`: a file path, a `sqlite://` URL
    /// or a `postgres://` URL (the database itself must exist; its tables are created).
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        Store::open_with(location, Access::Create).await
    }

    /// Opens an existing database to write to it; a missing file is an error rather than a
    /// new empty store.
    pub async fn open_existing(location: &str) -> Result<Store, StoreError> {
        Store::open_with(location, Access::Write).await
    }

    /// Opens an existing database only to read it (`status`, `export`, `report`): this works
    /// on a file or directory the user cannot write, and never changes the file.
    pub async fn open_read_only(location: &str) -> Result<Store, StoreError> {
        Store::open_with(location, Access::Read).await
    }

    fn new(pool: Pool, location: String) -> Store {
        Store {
            pool,
            location,
            wide_names: Default::default(),
        }
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    async fn open_with(location: &str, access: Access) -> Result<Store, StoreError> {
        if is_postgres(location) {
            postgres::open(location, access).await
        } else {
            sqlite::open(location, access).await
        }
    }

    /// For a read-only open, which cannot migrate: the database must be at this build's schema.
    async fn check_schema(&self, has_migrations: bool) -> Result<(), StoreError> {
        let migrator = match self.backend() {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let stored: Option<i64> = if has_migrations {
            with_pool!(self, |pool| Ok(sqlx::query_scalar(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success"
            )
            .fetch_one(pool)
            .await?))?
        } else {
            None
        };
        let location = self.location.clone();
        match stored {
            Some(v) if v == latest => Ok(()),
            Some(v) if v > latest => Err(StoreError::Newer(location, v)),
            // No table at all (an empty file): nothing was ever stored in it.
            None => Err(StoreError::Empty(location)),
            _ => Err(StoreError::Older(location)),
        }
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        match self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Starts a write transaction on either backend. On SQLite it takes the write lock up front:
/// a deferred transaction that reads and then writes can fail with SQLITE_BUSY_SNAPSHOT when
/// another process wrote in between, which the busy timeout cannot wait out. PostgreSQL's
/// row locks (and `FOR UPDATE SKIP LOCKED` where trials are claimed) need nothing up front.
trait WriteTx {
    type Db: sqlx::Database;
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl WriteTx for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WriteTx for PgPool {
    type Db = sqlx::Postgres;
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// What an open is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Create the file if needed, then migrate.
    Create,
    /// The file must exist; migrate.
    Write,
    /// The file must exist; read only, never migrate.
    Read,
}

/// Whether `location` names a PostgreSQL server rather than a SQLite file.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
