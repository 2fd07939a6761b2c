//! What can go wrong with the database.
//!
//! Each message says what happened and what to do, and carries the underlying SQLite message
//! in its own text rather than as a `source`: sqlx's errors repeat their own cause in their
//! message, so a chained report would print it two or three times.

use std::path::PathBuf;

/// A failed store operation. Messages read well after "failed to …" and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `--db` (or `SWEEP_DB`) was empty.
    #[error("the database location is empty; pass --db FILE (or a sqlite:// or postgres:// URL), or unset an empty SWEEP_DB")]
    EmptyLocation,
    /// The database could not be opened or created.
    #[error("cannot open the database {location}: {message}{hint}")]
    Open {
        /// The location as given.
        location: String,
        /// SQLite's message.
        message: String,
        /// What to do, when the cause is recognised (starts with a newline).
        hint: String,
    },
    /// The file is a SQLite database, but not one of sweep's.
    #[error("{0} is not a sweep database (it has the tables: {1}); sweep will not add its own to it\n  help: pass --db with a new file name, or with a database `sweep run` created")]
    Foreign(String, String),
    /// Applying migrations failed.
    #[error("cannot bring the database {0} up to date: {1}")]
    Migrate(String, String),
    /// The file was written by a newer build (a read-only open cannot tell more).
    #[error("the database {0} is at schema version {1}, newer than this sweep knows\n  help: use the sweep that wrote it, or upgrade this one")]
    Newer(String, i64),
    /// The file needs migrations, which a read-only open cannot apply.
    #[error("the database {0} was written by an older sweep and needs upgrading, which reading it cannot do\n  help: run `sweep resume NAME` (or `sweep run GRID`) on it once, with write access")]
    Older(String),
    /// `open_existing` found no file.
    #[error("no database at {0}; run `sweep run GRID.toml` first, or pass --db")]
    Missing(PathBuf),
    /// The location names a directory.
    #[error("{0} is a directory, not a database file; pass --db with a file inside it, such as {0}/sweep.db")]
    IsADirectory(PathBuf),
    /// The location names something that is not a regular file (`/dev/null`, a pipe).
    #[error("{0} is not a regular file, so it cannot hold a database; pass --db with a file path, such as sweep.db")]
    NotAFile(PathBuf),
    /// A database URL that cannot be read.
    #[error("the database URL {location} is malformed: {message}")]
    MalformedUrl {
        /// The URL, password hidden.
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// A URL scheme this build does not speak.
    #[error("`{0}://` databases are not supported; use a file path, a sqlite:// URL or a postgres:// URL")]
    UnsupportedUrl(String),
    /// The grid's command or `[fixed]` changed since the sweep was created.
    #[error(
        "sweep `{name}` was created with a different command or [fixed] section\n  stored: {stored}\n  now:    {now}\n  help: results would mix two configurations; give the edited grid a new [sweep] name, or restore the old values"
    )]
    ConfigChanged {
        /// Sweep name.
        name: String,
        /// The stored configuration JSON.
        stored: String,
        /// The grid's configuration JSON.
        now: String,
    },
    /// No sweep by that name.
    #[error("no sweep named `{0}` in this database (known: {1})")]
    UnknownSweep(String, String),
    /// Stored JSON that does not parse (a damaged or hand-edited database).
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// The PostgreSQL server stopped answering and did not come back within the retry window.
    #[error("lost the connection to the database {location} and could not reconnect for {waited_s} s: {message}\n  help: results stored so far are safe; once the server is up again run `sweep resume NAME` (SWEEP_DB_RETRY_S sets how long to keep trying)")]
    Unreachable {
        /// The location, password hidden.
        location: String,
        /// How long it kept trying.
        waited_s: u64,
        /// The last error.
        message: String,
    },
    /// A PostgreSQL database without sweep's tables, opened to read or resume.
    #[error("the database {0} holds no sweeps yet; run `sweep run GRID.toml` with it first")]
    Empty(String),
    /// A claim by a runner whose lease has lapsed or was given up: another runner may be
    /// taking its trials back, so it must renew its heartbeat (or re-register) first.
    #[error("runner {0} holds no live lease (its heartbeat is older than the lease, or another runner took its trials back); it must renew it before claiming")]
    LeaseLapsed(String),
    /// Any other database error.
    #[error("database error: {}{}", message(.0), hint(.0))]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Sql(e)
    }
}

impl StoreError {
    /// Whether the error says the connection to a database server is gone (or cannot be made
    /// now), which waiting can cure, rather than that a statement was wrong.
    pub fn is_connection_lost(&self) -> bool {
        let StoreError::Sql(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
            sqlx::Error::Protocol(_) => true,
            // PostgreSQL's SQLSTATE class 08 (connection exception) and 57P01-57P03
            // (the server shuts down, crashed, or is still starting up).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        }
    }

    /// The message alone, for a warning line.
    pub(crate) fn short(&self) -> String {
        match self {
            StoreError::Sql(e) => message(e),
            other => other.to_string(),
        }
    }

    /// An open that failed, with a hint when SQLite's code says why.
    pub(crate) fn open(location: &str, read_only: bool, e: sqlx::Error) -> StoreError {
        let hint = match code(&e).as_deref() {
            Some("26") => format!(
                "\n  help: {location} is not a SQLite database (or is damaged); pass --db with another file"
            ),
            Some("14") if read_only => {
                "\n  help: the file or its directory cannot be read, or the database is in WAL mode in a directory this user cannot write; run the command as the database's owner, or copy the file somewhere writable".to_string()
            }
            _ => hint(&e),
        };
        StoreError::Open {
            location: location.to_string(),
            message: message(&e),
            hint,
        }
    }

    /// A migration that failed, worded by why.
    pub(crate) fn migrate(location: &str, e: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError as M;
        let why = match &e {
            M::VersionMissing(v) => format!(
                "it records migration {v}, which this sweep does not have: it was written by a newer sweep; use that one, or upgrade"
            ),
            M::VersionMismatch(v) => format!(
                "its migration {v} differs from this sweep's: it was written by another build of sweep"
            ),
            M::Dirty(v) => format!(
                "migration {v} was interrupted part-way; restore the file from a backup"
            ),
            M::Execute(e) => format!("{}{}", message(e), hint(e)),
            other => other.to_string(),
        };
        StoreError::Migrate(location.to_string(), why)
    }

    /// Whether a migration error is about versions, which retrying cannot fix.
    pub(crate) fn is_version_error(e: &sqlx::migrate::MigrateError) -> bool {
        use sqlx::migrate::MigrateError as M;
        matches!(
            e,
            M::VersionMissing(_) | M::VersionMismatch(_) | M::Dirty(_)
        )
    }
}

/// SQLite's primary result code, as text, for database errors.
fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| {
            // Extended codes carry the primary code in their low byte.
            let n: i64 = c.parse().unwrap_or(-1);
            if n >= 0 {
                (n & 0xff).to_string()
            } else {
                c.into_owned()
            }
        }),
        _ => None,
    }
}

/// The error's own message, without sqlx's wrapping ("error returned from database:",
/// "error with configuration:"), which would repeat what the caller's message says.
fn message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Configuration(cause) => format!("the URL is malformed: {cause}"),
        other => other.to_string(),
    }
}

/// What to do about a recognised SQLite or PostgreSQL failure (starts with a newline), else
/// nothing.
fn hint(e: &sqlx::Error) -> String {
    let pg = match e {
        sqlx::Error::Database(db)
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some() =>
        {
            db.code().map(|c| c.into_owned())
        }
        _ => None,
    };
    let help = match pg.as_deref() {
        Some("3D000") => Some("the server has no database by that name: create it (`createdb NAME`, or CREATE DATABASE) and run the same command again"),
        Some("28P01") | Some("28000") => Some("the server refused these credentials: check the user and password in the URL (or PGPASSWORD / ~/.pgpass) and pg_hba.conf"),
        Some("53300") => Some("the server has no connection slots left: raise max_connections, or run fewer `sweep` processes against it"),
        Some(_) => Some(""),
        None => None,
    };
    if let Some(help) = help {
        return if help.is_empty() {
            String::new()
        } else {
            format!("\n  help: {help}")
        };
    }
    if matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) {
        return "\n  help: is the database server running and reachable from this machine? Check the host and port in the URL".to_string();
    }
    if message(e).starts_with("no such table") {
        return "\n  help: the database is missing one of sweep's tables: it was damaged or edited by hand; restore it from a backup, or pass --db with a new file".to_string();
    }
    let help = match code(e).as_deref() {
        Some("8") => "the database file (or its directory) is read-only: `status`, `export` and `report` can still read it; to run trials, make it writable or pass --db with a copy",
        Some("13") => "the disk holding the database is full: free space and run the same command again; results already stored are safe",
        Some("10") => "the disk or file system failed to read or write the database: check it, then run the same command again",
        Some("11") => "the database file is damaged: restore it from a backup",
        Some("5") | Some("6") => "another process holds the database locked for too long; try again",
        _ => return String::new(),
    };
    format!("\n  help: {help}")
}
