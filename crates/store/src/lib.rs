//! The sweep database.
//!
//! SQLite in WAL mode with a busy timeout: one orchestrator (or several sharing a grid) writes,
//! any number of `sweep status` / `report` processes read at the same time. Migrations under
//! the repository's `migrations/` are embedded and applied on open. Every state change of a
//! trial is one statement or one transaction, so a crash at any point leaves the store
//! consistent and resumable.

mod error;
mod read;
mod runners;
mod sweeps;
mod trials;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

pub use error::StoreError;
pub use read::{Counts, CurveRow, TrialRow};
pub use runners::{Orphan, Runner};
pub use sweeps::SweepRecord;
pub use trials::{AttemptEnd, Claimed, CurvePoint, Outcome};

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

/// A handle on one sweep database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `location`: a file path or a `sqlite://` URL.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        Store::open_with(location, true).await
    }

    /// Opens an existing database; a missing file is an error rather than a new empty store.
    pub async fn open_existing(location: &str) -> Result<Store, StoreError> {
        Store::open_with(location, false).await
    }

    async fn open_with(location: &str, create: bool) -> Result<Store, StoreError> {
        let options = connect_options(location)?;
        if !create && !location.contains(":memory:") {
            let path = options.get_filename();
            if !path.exists() {
                return Err(StoreError::Missing(path.to_path_buf()));
            }
        }
        let options = options
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(60))
            .foreign_keys(true)
            // Reports walk the whole sweep: map the file and keep a 64 MiB page cache rather
            // than pread-ing each page into a 2 MiB one.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-65536")
            // Reading a million-trial sweep is slow by design; it is not worth a warning.
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
        // Switching a new database to WAL needs a moment of exclusive access, and SQLite
        // answers SQLITE_BUSY there without consulting the busy timeout: retry briefly.
        let mut tries = 0;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if tries < 20 && is_busy(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(25 * tries)).await;
                }
                Err(e) => return Err(StoreError::Open(location.to_string(), e)),
            }
        };
        // SQLite migrations take no lock: two processes creating the same new database race,
        // and the loser's CREATE TABLE fails. Running again sees the winner's work as applied.
        let mut tries = 0;
        loop {
            match sqlx::migrate!("../../migrations").run(&pool).await {
                Ok(()) => break,
                Err(_) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(e) => return Err(StoreError::Migrate(location.to_string(), e)),
            }
        }
        Ok(Store { pool })
    }

    /// Starts a write transaction that takes the write lock up front. A deferred transaction
    /// that reads and then writes can fail with SQLITE_BUSY_SNAPSHOT when another process
    /// wrote in between, which the busy timeout cannot wait out.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "5" || c == "517"))
}

fn connect_options(location: &str) -> Result<SqliteConnectOptions, StoreError> {
    if location.starts_with("sqlite:") {
        return SqliteConnectOptions::from_str(location)
            .map_err(|e| StoreError::Open(location.to_string(), e));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(StoreError::UnsupportedUrl(scheme.to_string()));
    }
    Ok(SqliteConnectOptions::new().filename(Path::new(location)))
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
