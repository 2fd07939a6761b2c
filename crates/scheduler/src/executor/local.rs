//! The local executor: each attempt is a child process in a process group of its own, of
//! which the run's guard ([`crate::guard`]) is told, so that it dies with the orchestrator.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use sweep_store::Orphan;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{Executor, JobRef, JobUpdate, RunningJob};
use crate::attempt::{read_stderr, read_stdout, AttemptReport, Launch, Message};
use crate::guard::Guard;
use crate::{process, SchedulerError};

/// Child processes of this orchestrator, on this machine.
pub struct Local {
    /// The run's guard; without one, each attempt's first process gets the parent-death
    /// signal, and only it.
    guard: Option<Arc<Guard>>,
}

impl Local {
    /// Runs attempts watched by `guard` (the `sweep` binary whose `guard` subcommand is the
    /// guard, started with the first attempt), whose trials have `grace` between SIGTERM and
    /// SIGKILL.
    pub fn new(guard: Option<PathBuf>, grace: Duration) -> Local {
        Local {
            guard: guard.map(|program| Arc::new(Guard::new(program, grace))),
        }
    }
}

/// A running child process group.
pub(crate) struct LocalJob {
    child: Child,
    /// The group's id (the child's pid).
    pid: u32,
    /// Whether [`RunningJob::next`] has said it runs (it does from the start).
    announced: bool,
    status: Option<std::io::Result<ExitStatus>>,
    events: JoinHandle<Vec<String>>,
    tail: JoinHandle<String>,
    /// Told when the job's group is gone.
    guard: Option<Arc<Guard>>,
}

impl Drop for LocalJob {
    fn drop(&mut self) {
        if let Some(guard) = &self.guard {
            guard.ended(self.pid);
        }
    }
}

impl Executor for Local {
    type Job = LocalJob;
    const NAME: &'static str = "local";

    async fn check(&self) -> Result<(), SchedulerError> {
        Ok(())
    }

    fn leases_gpus(&self) -> bool {
        true
    }

    fn visible_devices(&self, gpus: &[String]) -> Option<String> {
        Some(gpus.join(","))
    }

    async fn submit(
        &self,
        launch: &Launch,
        tx: mpsc::UnboundedSender<Message>,
    ) -> Result<LocalJob, AttemptReport> {
        let never_started = |why: String| AttemptReport {
            spawn_error: Some(why),
            ..AttemptReport::default()
        };
        tokio::fs::create_dir_all(&launch.log_dir)
            .await
            .map_err(|e| {
                never_started(format!("cannot create {}: {e}", launch.log_dir.display()))
            })?;
        let stem = launch.log_dir.join(format!("attempt-{}", launch.attempt));
        // The stdout log always (it marks the attempt, and a trial's result line is there);
        // the stderr log only once the trial writes to stderr.
        let out_log = tokio::fs::File::create(stem.with_extension("stdout.log"))
            .await
            .map_err(|e| {
                never_started(format!(
                    "cannot create log files in {}: {e}",
                    launch.log_dir.display()
                ))
            })?;
        let err_path = stem.with_extension("stderr.log");
        let mut child = command(launch, self.guard.is_some()).spawn().map_err(|e| {
            never_started(format!(
                "cannot start `{}` in {}: {e}",
                launch.argv[0],
                launch.workdir.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        if let Some(guard) = &self.guard {
            let runner = launch.env.iter().find(|(k, _)| k == process::RUNNER_VAR);
            guard.started(pid, runner.map(|(_, v)| v.as_str()));
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let events = tokio::spawn(read_stdout(
            stdout,
            out_log,
            launch.trial_id.clone(),
            launch.attempt,
            tx,
        ));
        let tail = tokio::spawn(read_stderr(stderr, err_path));
        Ok(LocalJob {
            child,
            pid,
            announced: false,
            status: None,
            events,
            tail,
            guard: self.guard.clone(),
        })
    }

    async fn kill(&self, jobs: &[JobRef]) {
        for job in jobs {
            if let JobRef::Process(pid) = job {
                process::signal_group(*pid, Signal::SIGKILL);
            }
        }
    }

    async fn clean_up_unrecorded(&self, _orphan: &Orphan) -> Vec<String> {
        // Its processes are found by their marks on this host (see `Local::clean_up`).
        Vec::new()
    }

    async fn close(&self) {
        if let Some(guard) = &self.guard {
            guard.close();
        }
    }
}

impl Local {
    /// Kills what an attempt of a taken-back trial left running on this host: its recorded
    /// process group, and any process marked with its trial and runner (an attempt whose
    /// pid was never recorded). Nothing for an attempt on another host.
    pub(crate) fn clean_up(orphan: &Orphan, host: &str) -> Vec<String> {
        if orphan.host.as_deref() != Some(host) {
            return Vec::new();
        }
        process::kill_orphan(orphan.pid, &orphan.trial_id, orphan.runner.as_deref())
            .into_iter()
            .map(|group| {
                format!(
                    "killed leftover process group {group} of trial {}",
                    orphan.trial_id
                )
            })
            .collect()
    }
}

/// The attempt's command, in its own process group, with the trial's environment, stdin
/// closed and both outputs piped. Without a guard, its first process gets SIGTERM when the
/// orchestrator dies (which costs a `fork` of the orchestrator instead of a `posix_spawn`).
fn command(launch: &Launch, guarded: bool) -> Command {
    // Relative to the working directory, not to the orchestrator's.
    let mut program = PathBuf::from(&launch.argv[0]);
    if program.is_relative() && program.components().count() > 1 {
        program = launch.workdir.join(program);
    }
    let mut cmd = Command::new(&program);
    cmd.args(&launch.argv[1..]);
    if guarded {
        cmd.process_group(0);
    } else {
        process::isolate(&mut cmd, Signal::SIGTERM);
    }
    cmd.current_dir(&launch.workdir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    cmd
}

impl RunningJob for LocalJob {
    fn job_ref(&self) -> JobRef {
        JobRef::Process(self.pid)
    }

    async fn next(&mut self) -> JobUpdate {
        if !self.announced {
            self.announced = true;
            return JobUpdate::Running { node: None };
        }
        if self.status.is_none() {
            // Cancel-safe: a wait dropped half-way leaves the child to be waited for again.
            self.status = Some(self.child.wait().await);
        }
        JobUpdate::Ended
    }

    async fn terminate(&mut self) {
        process::signal_group(self.pid, Signal::SIGTERM);
    }

    async fn kill(&mut self) {
        process::signal_group(self.pid, Signal::SIGKILL);
    }

    async fn finish(mut self, report: &mut AttemptReport) {
        // Anything the trial left running in its group goes with it.
        process::signal_group(self.pid, Signal::SIGKILL);
        match self.status.take() {
            Some(Ok(status)) => {
                report.exit_code = status.code();
                report.signal = status.signal();
            }
            Some(Err(e)) => {
                report.spawn_error = Some(format!("cannot wait for the trial process: {e}"))
            }
            None => {}
        }
        // What the trial wrote before it exited is in the pipes now; a process that left the
        // group (setsid, a daemon) may hold them open for ever, so read for a bounded while
        // only.
        let drain = Instant::now() + DRAIN;
        report.invalid_events = finish_reader(&mut self.events, drain, "stdout").await;
        report.stderr_tail = finish_reader(&mut self.tail, drain, "stderr").await;
    }
}

/// How long the output of an exited trial is still read, for anything it left holding the
/// pipes open.
const DRAIN: Duration = Duration::from_secs(2);

/// Waits for a pipe reader until `deadline`, then stops it.
async fn finish_reader<T: Default>(reader: &mut JoinHandle<T>, deadline: Instant, pipe: &str) -> T {
    tokio::select! {
        done = &mut *reader => done.unwrap_or_default(),
        _ = sleep_until(deadline) => {
            reader.abort();
            tracing::warn!(
                "a process the trial started outside its process group keeps its {pipe} open; no longer reading it"
            );
            T::default()
        }
    }
}
