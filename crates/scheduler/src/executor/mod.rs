//! Executors: where an attempt runs. The seam is two traits: an [`Executor`] submits an
//! attempt and gets back a [`RunningJob`], which can be waited on, sent a termination
//! request and killed. Everything else about an attempt's life (its timeout, the grace
//! between a termination request and a kill, Ctrl-C, the report it ends with) is the one
//! supervisor's ([`crate::supervisor`]), the same for every executor, as nextest keeps its
//! policy apart from how a process is run.
//!
//! Adding an executor is one file implementing the two traits (and reading its own grid
//! table, if it has settings), and one line each in [`ExecutorKind`], [`with_executor!`],
//! [`clean_up_orphan`], `EXECUTOR_TABLES` and [`check_tables`]: nothing else in the
//! scheduler, the store, core or the CLI knows the executors' names.

mod local;
#[cfg(test)]
pub(crate) mod scripted;
mod slurm;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use sweep_core::{Grid, GridError};
use sweep_store::Orphan;

pub(crate) use crate::attempt::JobRef;
use crate::attempt::{AttemptReport, Launch, Message};
use crate::SchedulerError;
pub use local::Local;
pub use slurm::{CliError, Slurm};

/// Which executor runs a sweep's attempts (`sweep run --executor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Child processes of this `sweep run`, on this machine.
    #[default]
    Local,
    /// SLURM batch jobs (sbatch, squeue, scancel), on a cluster's shared file system; one
    /// per attempt, configured by the grid's `[slurm]` table.
    Slurm,
}

impl ExecutorKind {
    /// Whether its attempts are child processes of this run, on this machine: they lease
    /// its GPUs (`--gpus`) and its guard watches them.
    pub fn runs_here(self) -> bool {
        matches!(self, ExecutorKind::Local)
    }
}

/// Runs `$body` with `$executor` bound to the executor that `$config` (a [`crate::RunConfig`])
/// names for `$grid`: the one place that turns a kind into an implementation.
macro_rules! with_executor {
    ($config:expr, $grid:expr, |$executor:ident| $body:expr) => {
        match $config.executor {
            $crate::executor::ExecutorKind::Local => {
                let $executor = $crate::executor::Local::new($config.guard.clone(), $grid.grace);
                $body
            }
            $crate::executor::ExecutorKind::Slurm => {
                let $executor = $crate::executor::Slurm::for_grid($grid)?;
                $body
            }
        }
    };
}
pub(crate) use with_executor;

/// A change in a running job's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobUpdate {
    /// It started running (on `node`, where the executor places jobs): its timeout counts
    /// from here, not from a queue.
    Running {
        /// Where it runs, when that is news.
        node: Option<String>,
    },
    /// It ended; [`RunningJob::finish`] says how.
    Ended,
}

/// Where attempts run. See the module's description.
pub(crate) trait Executor: Send + Sync + 'static {
    /// An attempt submitted to it.
    type Job: RunningJob;

    /// Its name, recorded beside the job ids it makes (`local`, `slurm`).
    const NAME: &'static str;

    /// Checks that it can run the grid's jobs at all, so a run that cannot work stores
    /// nothing. The error says what to fix.
    fn check(&self) -> impl Future<Output = Result<(), SchedulerError>> + Send;

    /// Whether attempts get their GPUs from the dispatcher's pool (`--gpus`), rather than
    /// from the executor (SLURM's GRES).
    fn leases_gpus(&self) -> bool;

    /// `CUDA_VISIBLE_DEVICES` for an attempt that leased `gpus` (none: the CPU), or `None`
    /// where the executor sets it.
    fn visible_devices(&self, gpus: &[String]) -> Option<String>;

    /// Starts an attempt; its stdout's events go to `events`. A job that never started is
    /// its report (a command that cannot start, a refused submission).
    fn submit(
        &self,
        launch: &Launch,
        events: tokio::sync::mpsc::UnboundedSender<Message>,
    ) -> impl Future<Output = Result<Self::Job, AttemptReport>> + Send;

    /// Kills this run's jobs now, without waiting for them (the dispatcher is giving up its
    /// trials).
    fn kill(&self, jobs: &[JobRef]) -> impl Future<Output = ()> + Send;

    /// Stops what an attempt of a trial taken back from a dead runner left behind when its
    /// job was never recorded (submitted, then the runner died): only the executor that
    /// would have made it can look for it. Returns lines saying what was stopped.
    fn clean_up_unrecorded(&self, orphan: &Orphan) -> impl Future<Output = Vec<String>> + Send;

    /// The run ended normally, with no attempt running: whatever the executor keeps for its
    /// attempts' sake (the local guard) can go.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// One submitted attempt. Methods are called by the supervisor only, in its loop.
pub(crate) trait RunningJob: Send + 'static {
    /// What to record, and to kill by.
    fn job_ref(&self) -> JobRef;

    /// Waits for the next change. Cancel-safe: the supervisor waits on it beside its timers.
    fn next(&mut self) -> impl Future<Output = JobUpdate> + Send;

    /// Asks the job to stop (SIGTERM to its process group; for SLURM, to its steps), so it
    /// can checkpoint within its grace period.
    fn terminate(&mut self) -> impl Future<Output = ()> + Send;

    /// Stops it now.
    fn kill(&mut self) -> impl Future<Output = ()> + Send;

    /// After [`JobUpdate::Ended`]: collects its output and fills in how it ended (exit
    /// status, stderr tail, malformed events, the executor's reason).
    fn finish(self, report: &mut AttemptReport) -> impl Future<Output = ()> + Send;
}

/// Stops what a trial taken back from a dead runner left running, whichever executor ran it:
/// its recorded job through the executor that made it; otherwise its process groups, if it
/// ran on this host, and a job the executor running now may have submitted without
/// recording it.
pub(crate) async fn clean_up_orphan<E: Executor>(
    current: &E,
    orphan: &Orphan,
    host: &str,
) -> Vec<String> {
    match (&orphan.job_id, orphan.executor.as_deref()) {
        // Job ids stored before executors were recorded are SLURM's, the only one that made
        // them then.
        (Some(id), Some(Slurm::NAME) | None) => Slurm::clean_up(id, orphan).await,
        (Some(id), Some(other)) => vec![format!(
            "trial {} left job {id} of an executor this build does not know ({other}); stop it by hand",
            orphan.trial_id
        )],
        (None, _) => {
            let mut said = Local::clean_up(orphan, host);
            said.extend(current.clean_up_unrecorded(orphan).await);
            said
        }
    }
}

/// The tables the executors read (`[slurm]`).
const EXECUTOR_TABLES: [&str; 1] = [slurm::TABLE];

/// Checks the executors' tables of `grid` (every top-level table core leaves to them, read
/// whichever executor runs it, so a mistake in `[slurm]` is found on the laptop too) and that
/// no table is left that no executor reads.
pub fn check_tables(grid: &Grid) -> Result<(), GridError> {
    unclaimed(&grid.path, &grid.other_tables)?;
    slurm::SlurmSpec::from_grid(grid)?;
    Ok(())
}

/// [`check_tables`]' refusal of a table nobody reads, for a grid file that does not parse:
/// a misspelt table is the cause to name first.
pub fn check_table_names(path: &Path, source: &str) -> Result<(), GridError> {
    unclaimed(path, &Grid::top_level_tables(path, source)?)
}

/// The first of `tables` that no executor reads, as an error at its line.
fn unclaimed(path: &Path, tables: &BTreeMap<String, usize>) -> Result<(), GridError> {
    match tables
        .iter()
        .find(|(name, _)| !EXECUTOR_TABLES.contains(&name.as_str()))
    {
        None => Ok(()),
        Some((name, &line)) => Err(GridError {
            path: path.to_path_buf(),
            position: Some((line, 1)),
            key: name.clone(),
            message: "unknown table: no part of sweep reads it".into(),
            help: Some(format!(
                "check the spelling; a grid's tables are [sweep], [grid], [[zip]], [[exclude]], [fixed], [trainer] and the executors': {}",
                EXECUTOR_TABLES.map(|t| format!("[{t}]")).join(", ")
            )),
        }),
    }
}

/// Checks, before anything is stored, that the executor `config` names can run `grid`.
pub(crate) async fn check(config: &crate::RunConfig, grid: &Grid) -> Result<(), SchedulerError> {
    with_executor!(config, grid, |executor| executor.check().await)
}
