//! What can go wrong with the database.

use std::path::PathBuf;

/// A failed store operation. Messages read well after "failed to …" and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the database {0}: {1}")]
    Open(String, #[source] sqlx::Error),
    /// Applying migrations failed, e.g. a database written by a newer sweep.
    #[error("cannot migrate the database {0} (was it written by a newer sweep?): {1}")]
    Migrate(String, #[source] sqlx::migrate::MigrateError),
    /// `open_existing` found no file.
    #[error("no database at {0}; run `sweep run GRID.toml` first, or pass --db")]
    Missing(PathBuf),
    /// A URL scheme this build does not speak.
    #[error("`{0}://` databases are not supported yet; use a file path or a sqlite:// URL")]
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
    /// Any other database error.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}
