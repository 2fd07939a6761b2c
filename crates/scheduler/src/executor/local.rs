//! The local executor: each attempt is a child process in a process group of its own (or a
//! `sweep guard` that starts one), watched until it exits.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::attempt::{read_stderr, read_stdout, Job, Launch, Message, Report};
use crate::process;
use crate::{guard, Stop};

/// Runs the attempt to its end. Events go to `tx` as they arrive; the report is sent last.
pub(crate) async fn run(
    launch: Launch,
    tx: mpsc::UnboundedSender<Message>,
    mut stop: watch::Receiver<Stop>,
) {
    let trial_id = launch.trial_id.clone();
    let report = run_inner(&launch, &tx, &mut stop).await;
    let _ = tx.send(Message::Finished {
        trial_id,
        attempt: launch.attempt,
        report,
    });
}

async fn run_inner(
    launch: &Launch,
    tx: &mpsc::UnboundedSender<Message>,
    stop: &mut watch::Receiver<Stop>,
) -> Report {
    if let Err(e) = tokio::fs::create_dir_all(&launch.log_dir).await {
        return Report {
            spawn_error: Some(format!("cannot create {}: {e}", launch.log_dir.display())),
            ..Report::default()
        };
    }
    let stem = launch.log_dir.join(format!("attempt-{}", launch.attempt));
    let (out_log, err_log) = match (
        tokio::fs::File::create(stem.with_extension("stdout.log")).await,
        tokio::fs::File::create(stem.with_extension("stderr.log")).await,
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            return Report {
                spawn_error: Some(format!(
                    "cannot create log files in {}: {e}",
                    launch.log_dir.display()
                )),
                ..Report::default()
            }
        }
    };

    let mut cmd = match &launch.guard {
        Some(guard) => {
            let mut cmd = Command::new(guard);
            cmd.arg("guard")
                .arg("--parent")
                .arg(std::process::id().to_string())
                .arg("--grace-ms")
                .arg(launch.grace.as_millis().to_string())
                .arg("--")
                // The guard runs in the working directory: relative paths resolve there.
                .args(&launch.argv);
            process::isolate(&mut cmd, guard::PARENT_DIED);
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
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Report {
                spawn_error: Some(format!(
                    "cannot start `{}` in {}: {e}",
                    launch.argv[0],
                    launch.workdir.display()
                )),
                ..Report::default()
            }
        }
    };
    let pid = child.id().unwrap_or(0);
    let _ = tx.send(Message::Started {
        trial_id: launch.trial_id.clone(),
        attempt: launch.attempt,
        job: Job::Process(pid),
    });

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let events = tokio::spawn(read_stdout(
        stdout,
        out_log,
        launch.trial_id.clone(),
        launch.attempt,
        tx.clone(),
    ));
    let tail = tokio::spawn(read_stderr(stderr, err_log));

    let mut report = Report::default();
    let deadline = launch.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut stop_open = true;
    let status = loop {
        let stop_now = *stop.borrow();
        if stop_now == Stop::Now {
            process::signal_group(pid, Signal::SIGKILL);
        }
        tokio::select! {
            status = child.wait() => break status,
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && kill_at.is_none() => {
                report.timed_out = true;
                process::signal_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + launch.grace);
            }
            _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                process::signal_group(pid, Signal::SIGKILL);
                kill_at = Some(far);
            }
            changed = stop.changed(), if stop_open => {
                if changed.is_err() {
                    stop_open = false;
                    continue;
                }
                match *stop.borrow() {
                    Stop::Run => {}
                    Stop::Graceful => {
                        if !report.timed_out {
                            report.interrupted = true;
                        }
                        process::signal_group(pid, Signal::SIGTERM);
                        kill_at = Some(Instant::now() + launch.grace);
                    }
                    Stop::Now => {
                        report.interrupted |= !report.timed_out;
                        process::signal_group(pid, Signal::SIGKILL);
                    }
                }
            }
        }
    };
    // Anything the trial left running in its group goes with it.
    process::signal_group(pid, Signal::SIGKILL);
    match status {
        Ok(status) => {
            report.exit_code = status.code();
            report.signal = status.signal();
        }
        Err(e) => report.spawn_error = Some(format!("cannot wait for the trial process: {e}")),
    }
    // What the trial wrote before it exited is in the pipes now; a process that left the
    // group (setsid, a daemon) may hold them open for ever, so read for a bounded while only.
    let drain = Instant::now() + DRAIN;
    report.invalid_events = finish_reader(events, drain, "stdout").await;
    report.stderr_tail = finish_reader(tail, drain, "stderr").await;
    if report.exit_code == Some(guard::SPAWN_FAILED_CODE) {
        // The guard could not start the command: as good as a failed spawn.
        report.spawn_error = guard::spawn_failure(&report.stderr_tail);
    }
    report
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
