//! Opening a SQLite store: the embedded default. WAL mode with a busy timeout, so one
//! orchestrator (or several sharing a grid) writes while any number of `status` and
//! `report` processes read; a read-only open works on a file its user cannot write.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

use crate::{postgres, Access, Pool, Store, StoreError, SQLITE_MIGRATOR};

/// Opens (creating it for [`Access::Create`]) the SQLite database at `location`: a path or a
/// `sqlite://` URL.
pub(crate) async fn open(location: &str, access: Access) -> Result<Store, StoreError> {
    let options = connect_options(location)?;
    let in_memory = location.contains(":memory:");
    let path = options.get_filename().to_path_buf();
    if access != Access::Create && !in_memory && !path.exists() {
        return Err(StoreError::Missing(path));
    }
    if path.is_dir() {
        return Err(StoreError::IsADirectory(path));
    }
    if !in_memory && path.exists() && !path.is_file() {
        return Err(StoreError::NotAFile(path));
    }
    let options = options
        .create_if_missing(access == Access::Create)
        .busy_timeout(Duration::from_secs(60))
        .foreign_keys(true)
        // Reports walk the whole sweep: map the file and keep a 64 MiB page cache rather
        // than pread-ing each page into a 2 MiB one.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", "-65536")
        // Reading a million-trial sweep is slow by design; it is not worth a warning.
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
    let options = match access {
        Access::Read => options.read_only(true),
        Access::Create | Access::Write => options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal),
    };
    let fail = |e: sqlx::Error| StoreError::open(location, access == Access::Read, e);
    let pool = match connect(&options).await {
        Ok(pool) => pool,
        // A WAL database whose directory this user cannot write (so SQLite cannot create
        // its shared-memory file) opens only as immutable. That is exact when no
        // write-ahead log exists: then every committed row is in the file itself.
        Err(e) if access == Access::Read && is_read_only(&e) && !wal_exists(&path) => {
            connect(&options.immutable(true)).await.map_err(fail)?
        }
        Err(e) => return Err(fail(e)),
    };
    // Never add sweep's tables to somebody else's database.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .map_err(fail)?;
    let store = Store::new(Pool::Sqlite(pool), location.to_string());
    let ours = tables.iter().any(|t| t == "_sqlx_migrations");
    if !ours && tables.iter().any(|t| !t.starts_with("sqlite_")) {
        return Err(StoreError::Foreign(location.to_string(), tables.join(", ")));
    }
    if access == Access::Read {
        store.check_schema(ours).await?;
        return Ok(store);
    }
    // SQLite migrations take no lock: two processes creating the same new database race,
    // and the loser's CREATE TABLE fails. Running again sees the winner's work as applied.
    let Pool::Sqlite(pool) = &store.pool else {
        unreachable!("opened as SQLite")
    };
    let mut tries = 0;
    loop {
        match SQLITE_MIGRATOR.run(pool).await {
            Ok(()) => break,
            Err(e) if tries < 5 && !StoreError::is_version_error(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(StoreError::migrate(location, e)),
        }
    }
    Ok(store)
}

/// A pool on `options`. Switching a new database to WAL needs a moment of exclusive access,
/// and SQLite answers SQLITE_BUSY there without consulting the busy timeout: retry briefly.
async fn connect(options: &SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    no_memory_statistics();
    let mut tries = 0;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
        {
            Err(e) if tries < 20 && is_busy(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(25 * tries)).await;
            }
            done => return done,
        }
    }
}

/// SQLite counts every allocation under one process-wide mutex unless told not to, and sqlx
/// frees each row on the reading task's thread while its worker thread allocates the next:
/// reading 10^5 trials spent most of its time waiting on that mutex. Nothing here reads the
/// counts. Set once, before the first connection.
fn no_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the setting takes an int, and is only valid before SQLite initialises, which
        // the first connection does and every connection is opened after this (`Once` orders
        // them); called later it returns SQLITE_MISUSE and changes nothing.
        unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
        }
    });
}

fn is_read_only(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == 8))
}

/// Whether the database at `path` has a write-ahead log beside it.
fn wal_exists(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Path::new(&wal).exists()
}

fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "5" || c == "517"))
}

fn connect_options(location: &str) -> Result<SqliteConnectOptions, StoreError> {
    if location.trim().is_empty() {
        return Err(StoreError::EmptyLocation);
    }
    if location.starts_with("sqlite:") {
        return SqliteConnectOptions::from_str(location)
            .map_err(|e| StoreError::open(location, false, e));
    }
    if let Some(scheme) = ["postgres:", "postgresql:"]
        .into_iter()
        .find(|scheme| location.starts_with(scheme))
    {
        // `postgres://…` is handled before this: one slash, or none, is a typo.
        return Err(StoreError::MalformedUrl {
            location: postgres::redact(location),
            message: format!(
                "a PostgreSQL URL starts with `{scheme}//`, as in {scheme}//user@host/database"
            ),
        });
    }
    if let Some((scheme, _)) = location.split_once("://") {
        // `postgres://` is handled before this; anything else is not a database sweep knows.
        return Err(StoreError::UnsupportedUrl(scheme.to_string()));
    }
    Ok(SqliteConnectOptions::new().filename(Path::new(location)))
}
