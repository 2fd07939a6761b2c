//! Runs the trials of a sweep, as child processes or as SLURM jobs.
//!
//! One dispatcher owns the store and the slots; each attempt runs in its own task, on an
//! executor (`executor`: local processes or SLURM jobs), and only sends messages back
//! (started, events, finished), like nextest's runner. Trials are claimed
//! from the store one at a time, so several `sweep run` processes can share a sweep, and a
//! heartbeat lease lets any of them take back the trials of one that died.

mod attempt;
mod dispatcher;
mod executor;
mod gpus;
pub mod guard;
mod oom;
mod process;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

pub use dispatcher::{preflight, run_sweep};
pub use executor::{check_table_names, check_tables, CliError, ExecutorKind};
pub use gpus::{parse_nvidia_smi, GpuPool, GpuRequest};
pub use oom::SPLIT_VAR;
pub use process::{alive, processes_marked};

/// What the user asked the sweep to do, as the dispatcher and attempts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    Run,
    /// Launch nothing new; send SIGTERM to trials and give them their grace period.
    Graceful,
    /// Kill every trial's process group now.
    Now,
}

/// Where and how to run, beyond what the grid says.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Trials start in this directory.
    pub workdir: PathBuf,
    /// Trial directories are `trials_root/<sweep>/<trial id>`.
    pub trials_root: PathBuf,
    /// Trials at once (the grid's `parallel` unless overridden).
    pub parallel: usize,
    /// GPU ids trials may lease; empty runs every trial on CPU.
    pub gpus: Vec<String>,
    /// How often this orchestrator renews its lease.
    pub heartbeat: Duration,
    /// How long without a heartbeat before another orchestrator is presumed dead.
    pub lease: Duration,
    /// This machine's name, to tell local orchestrators (whose pids can be checked) apart.
    pub host: String,
    /// The program whose `trial` subcommand runs built-in trials (grids without `command`).
    pub builtin_trial: PathBuf,
    /// The `sweep` binary whose hidden `guard` subcommand ([`guard`]) takes local attempts'
    /// process groups down when the orchestrator dies; without one, only each attempt's
    /// first process gets the parent-death signal.
    pub guard: Option<PathBuf>,
    /// Where attempts run: local processes, or SLURM jobs.
    pub executor: ExecutorKind,
}

impl RunConfig {
    /// Defaults for a run from `workdir` keeping trial directories under `trials_root`.
    pub fn new(workdir: PathBuf, trials_root: PathBuf) -> RunConfig {
        RunConfig {
            workdir,
            trials_root,
            parallel: 1,
            gpus: Vec::new(),
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into()),
            builtin_trial: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("sweep")),
            guard: None,
            executor: ExecutorKind::Local,
        }
    }
}

/// Where a sweep stands, for progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Trials in the grid.
    pub total: u64,
    /// Completed (by any run).
    pub completed: u64,
    /// Failed for good.
    pub failed: u64,
    /// Running in this orchestrator.
    pub running: u64,
}

/// Receives progress while a sweep runs (a progress bar, or log lines).
pub trait Reporter: Send {
    /// The counts changed.
    fn progress(&mut self, progress: &Progress);
    /// Something worth a line happened (a trial finished, failed or was retried).
    fn note(&mut self, line: &str);
}

/// What one `run_sweep` call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Trials completed by this run (including points reported by another trial's process).
    pub completed: u64,
    /// Trials that used up their attempts in this run.
    pub failed: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Trials stopped by the user.
    pub interrupted: u64,
    /// Trials taken back from dead orchestrators.
    pub reclaimed: u64,
    /// Whether the run was stopped before the queue was empty.
    pub stopped: bool,
}

/// Why a sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The store failed; results already stored are safe.
    #[error(transparent)]
    Store(#[from] sweep_store::StoreError),
    /// The grid asks for more GPUs per trial than there are.
    #[error("the grid asks for {per_trial} GPUs per trial but only {available} are available ({ids}); lower gpus_per_trial or pass --gpus with more ids")]
    NotEnoughGpus {
        /// `gpus_per_trial`.
        per_trial: usize,
        /// GPUs given.
        available: usize,
        /// Their ids.
        ids: String,
    },
    /// `parallel` (or `--parallel`) was 0.
    #[error("no trial could ever run: --parallel (or the grid's `parallel`) is 0\n  help: give it 1 or more")]
    NoSlots,
    /// A trial directory could not be created.
    #[error("cannot create the trial directory {0}: {1}\n  help: check --trials-dir (it must be a writable directory) and free disk space, then run the same command again")]
    TrialDir(PathBuf, std::io::Error),
    /// The file that gives trials their axes where `SWEEP_AXES` would be too long could not
    /// be written.
    #[error("cannot write {0} (the sweep's axes, too long for the environment): {1}\n  help: check --trials-dir (it must be a writable directory) and free disk space, then run the same command again")]
    AxesFile(PathBuf, std::io::Error),
    /// The executor would not run the sweep's jobs at all (SLURM's `sbatch --test-only`
    /// refused them: a bad partition or account, a limit), or its commands are missing.
    #[error("the {executor} executor will not run this sweep's jobs: {message}\n  help: {help}, then run the same command again; nothing was started")]
    Rejected {
        /// Its name.
        executor: &'static str,
        /// What it said.
        message: String,
        /// What to change.
        help: &'static str,
    },
    /// A job was refused while none of this run's others was running.
    #[error("the {executor} executor refused the job of trial {trial}: {message}\n  help: the trial is back in the queue with its attempts untouched and results so far are stored; fix the cause, then run the same command again")]
    Submission {
        /// The executor's name.
        executor: &'static str,
        /// The trial whose job was refused.
        trial: String,
        /// What the executor said.
        message: String,
    },
    /// The grid's table of an executor is wrong (checked by [`executor::check_tables`]
    /// before a run, so met here only by a grid that skipped that check).
    #[error(transparent)]
    Grid(#[from] sweep_core::GridError),
    /// The directory trials run in no longer exists.
    #[error("the sweep's working directory {0} no longer exists, so no trial can start there\n  help: recreate it, or run the grid again from another directory under a new [sweep] name")]
    WorkdirGone(PathBuf),
}
