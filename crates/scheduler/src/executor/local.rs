//! The local executor: each attempt is a child process in a process group of its own (or a
//! guard (`sweep-guard`, or `sweep guard`) that starts one).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use sweep_store::Orphan;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{Executor, JobRef, JobUpdate, RunningJob};
use crate::attempt::{read_stderr, read_stdout, AttemptReport, Launch, Message};
use crate::{guard, process, SchedulerError};

/// Child processes of this orchestrator, on this machine.
pub struct Local;

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
        let mut child = command(launch).spawn().map_err(|e| {
            never_started(format!(
                "cannot start `{}` in {}: {e}",
                launch.argv[0],
                launch.workdir.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
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

/// The attempt's command: through the guard when there is one, in its own process group,
/// with the trial's environment, stdin closed and both outputs piped.
fn command(launch: &Launch) -> Command {
    let mut cmd = match &launch.guard {
        Some(guard) => {
            let mut cmd = Command::new(&guard.program);
            let args = guard::GuardArgs {
                parent: std::process::id(),
                grace: launch.grace,
                // The guard runs in the working directory: relative paths resolve there.
                command: launch.argv.clone(),
            };
            cmd.args(guard.subcommand).args(args.to_args());
            // Its own process group; the guard arms its parent-death signal itself.
            cmd.process_group(0);
            cmd
        }
        None => {
            // Relative to the working directory, not to the orchestrator's.
            let mut program = PathBuf::from(&launch.argv[0]);
            if program.is_relative() && program.components().count() > 1 {
                program = launch.workdir.join(program);
            }
            let mut cmd = Command::new(&program);
            cmd.args(&launch.argv[1..]);
            process::isolate(&mut cmd, Signal::SIGTERM);
            cmd
        }
    };
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

    async fn finish(self, report: &mut AttemptReport) {
        // Anything the trial left running in its group goes with it.
        process::signal_group(self.pid, Signal::SIGKILL);
        match self.status {
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
        report.invalid_events = finish_reader(self.events, drain, "stdout").await;
        report.stderr_tail = finish_reader(self.tail, drain, "stderr").await;
        if report.exit_code == Some(guard::SPAWN_FAILED_CODE) {
            // The guard could not start the command: as good as a failed spawn.
            report.spawn_error = guard::spawn_failure(&report.stderr_tail);
        }
    }
}

/// How long the output of an exited trial is still read, for anything it left holding the
/// pipes open.
const DRAIN: Duration = Duration::from_secs(2);

/// Waits for a pipe reader until `deadline`, then stops it.
async fn finish_reader<T: Default>(
    mut reader: tokio::task::JoinHandle<T>,
    deadline: Instant,
    pipe: &str,
) -> T {
    tokio::select! {
        done = &mut reader => done.unwrap_or_default(),
        _ = sleep_until(deadline) => {
            reader.abort();
            tracing::warn!(
                "a process the trial started outside its process group keeps its {pipe} open; no longer reading it"
            );
            T::default()
        }
    }
}
