//! Executors: how an attempt is started, watched, signalled and cleaned up after. The
//! dispatcher claims trials and records what attempts report; an executor decides where they
//! run: as local child processes, or as SLURM jobs on a cluster.

mod local;
mod slurm;

use std::sync::Arc;

use nix::sys::signal::Signal;
use sweep_core::Grid;
use sweep_store::Orphan;
use tokio::sync::{mpsc, watch};

use crate::attempt::{Job, Launch, Message, Report};
use crate::{process, SchedulerError, Stop};
pub use slurm::CliError;

/// Which executor runs a sweep's attempts (`sweep run --executor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Child processes of this orchestrator, on this machine.
    #[default]
    Local,
    /// One SLURM batch job per attempt, configured by the grid's `[slurm]` table.
    Slurm,
}

/// A running executor.
pub(crate) enum Executor {
    Local,
    Slurm(Arc<slurm::Slurm>),
}

impl Executor {
    /// The executor of `kind` for `grid`. Call [`Executor::check`] before anything is stored.
    pub(crate) fn new(kind: ExecutorKind, grid: &Grid) -> Executor {
        match kind {
            ExecutorKind::Local => Executor::Local,
            ExecutorKind::Slurm => Executor::Slurm(Arc::new(slurm::Slurm::new(
                grid.slurm.clone(),
                grid.gpus_per_trial,
                grid.timeout,
                grid.grace,
            ))),
        }
    }

    /// Checks that it can run the grid's jobs at all (SLURM: its commands are there and
    /// `sbatch --test-only` accepts the job), so a run that cannot work stores nothing.
    pub(crate) async fn check(&self) -> Result<(), SchedulerError> {
        match self {
            Executor::Local => Ok(()),
            Executor::Slurm(slurm) => slurm.check().await.map_err(SchedulerError::Rejected),
        }
    }

    /// Whether attempts get their GPUs from the dispatcher's pool (`--gpus`), rather than
    /// from the executor (SLURM's GRES).
    pub(crate) fn leases_gpus(&self) -> bool {
        matches!(self, Executor::Local)
    }

    /// `CUDA_VISIBLE_DEVICES` for an attempt that leased `gpus` (none: the CPU), or `None`
    /// where the executor sets it: SLURM does for a job that asks for GPUs through GRES; a
    /// job that asks for none gets it empty, so the login node's value does not leak in.
    pub(crate) fn visible_devices(&self, gpus: &[String]) -> Option<String> {
        match self {
            Executor::Local => Some(gpus.join(",")),
            Executor::Slurm(slurm) if slurm.requests_gres() => None,
            Executor::Slurm(_) => Some(String::new()),
        }
    }

    /// Starts an attempt in its own task; it reports through `tx` and ends with
    /// [`Message::Finished`].
    pub(crate) fn spawn(
        &self,
        launch: Launch,
        tx: mpsc::UnboundedSender<Message>,
        stop: watch::Receiver<Stop>,
    ) {
        let (trial_id, attempt, done) = (launch.trial_id.clone(), launch.attempt, tx.clone());
        let task = match self {
            Executor::Local => tokio::spawn(local::run(launch, tx, stop)),
            Executor::Slurm(slurm) => tokio::spawn(slurm.clone().run(launch, tx, stop)),
        };
        tokio::spawn(supervise(task, trial_id, attempt, done));
    }

    /// Kills these attempts now, without waiting for them to end (the dispatcher is giving
    /// up its trials).
    pub(crate) async fn kill(jobs: &[Job]) {
        let mut slurm_ids = Vec::new();
        for job in jobs {
            match job {
                Job::Process(pgid) => process::signal_group(*pgid, Signal::SIGKILL),
                Job::Slurm(id) => slurm_ids.push(id.clone()),
            }
        }
        slurm::Slurm::cancel(&slurm_ids).await;
    }

    /// Stops what a trial taken back from a dead runner left running: its SLURM job (on any
    /// node) or, on this host, its process groups. Returns lines saying what was stopped.
    pub(crate) async fn clean_up(&self, orphan: &Orphan, host: &str) -> Vec<String> {
        let mut said = Vec::new();
        let attempt = u32::try_from(orphan.attempt).unwrap_or(0);
        // Its job; or, on a cluster, a job that was submitted but whose id was never
        // recorded (found by its name).
        let unrecorded = orphan.pid.is_none() && matches!(self, Executor::Slurm(_));
        let cancel = orphan.job_id.is_some() || unrecorded;
        if cancel
            && slurm::Slurm::cancel_orphan(orphan.job_id.as_deref(), &orphan.trial_id, attempt)
                .await
        {
            if let Some(id) = &orphan.job_id {
                said.push(format!(
                    "cancelled leftover SLURM job {id} of trial {}",
                    orphan.trial_id
                ));
            }
        }
        if orphan.host.as_deref() == Some(host) && orphan.job_id.is_none() {
            for group in
                process::kill_orphan(orphan.pid, &orphan.trial_id, orphan.runner.as_deref())
            {
                said.push(format!(
                    "killed leftover process group {group} of trial {}",
                    orphan.trial_id
                ));
            }
        }
        said
    }
}

/// Waits for an attempt's task and, if it ended without its report (a panic), sends one for
/// it: without this a panicking task would hold its slot (and GPUs) for ever and the sweep
/// would never end.
async fn supervise(
    task: tokio::task::JoinHandle<()>,
    trial_id: String,
    attempt: u32,
    tx: mpsc::UnboundedSender<Message>,
) {
    let Err(e) = task.await else {
        return;
    };
    let why = match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(_) => "cancelled".into(),
    };
    let _ = tx.send(Message::Finished {
        trial_id,
        attempt,
        report: Report::abandoned(&why),
    });
}

#[cfg(test)]
mod supervise_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_attempt_still_reports_its_end() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async { panic!("watcher bug") });
        supervise(task, "t1".into(), 3, tx.clone()).await;
        let Some(Message::Finished {
            trial_id,
            attempt,
            report,
        }) = rx.recv().await
        else {
            panic!("no report")
        };
        assert_eq!((trial_id.as_str(), attempt), ("t1", 3));
        assert!(report.abandoned);
        assert!(report.reason.unwrap().contains("watcher bug"));
        // A task that ends normally sent its own report; nothing is added.
        supervise(tokio::spawn(async {}), "t2".into(), 1, tx).await;
        assert!(rx.try_recv().is_err());
    }
}
