//! The exit codes of `sweep`, stable for scripts.

/// Everything asked for was done; every trial of the sweep completed.
pub const OK: i32 = 0;
/// The sweep ran to the end but some trials failed (their reasons are stored).
pub const TRIALS_FAILED: i32 = 1;
/// Bad input or a broken environment: a malformed grid, a missing file, a database error.
pub const ERROR: i32 = 2;
/// Stopped by Ctrl-C or SIGTERM; re-run the same command to resume.
pub const INTERRUPTED: i32 = 130;
