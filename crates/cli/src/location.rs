//! Where the database and the trial directories live.

use std::path::{Path, PathBuf};

/// The database file a location string points at (for placing trial directories beside it).
pub fn db_file(location: &str) -> PathBuf {
    let path = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    PathBuf::from(path.split('?').next().unwrap_or(path))
}

/// Default root of trial directories: `sweep-trials/` next to a database file, or in the
/// current directory for a database server.
pub fn default_trials_root(location: &str) -> PathBuf {
    if sweep_store::is_postgres(location) {
        return PathBuf::from("sweep-trials");
    }
    let file = db_file(location);
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join("sweep-trials")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_root_sits_beside_the_database() {
        assert_eq!(default_trials_root("sweep.db"), Path::new("./sweep-trials"));
        assert_eq!(default_trials_root("/x/y.db"), Path::new("/x/sweep-trials"));
        assert_eq!(
            default_trials_root("sqlite:///x/y.db?mode=rwc"),
            Path::new("/x/sweep-trials")
        );
        assert_eq!(
            default_trials_root("postgres://u@db:5432/sweep"),
            Path::new("sweep-trials")
        );
    }
}
