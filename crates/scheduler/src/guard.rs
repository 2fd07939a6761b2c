//! The guard: the first process of every attempt, which starts the trial's command as its
//! child in the same process group and stays to watch the orchestrator.
//!
//! A trial is often a wrapper around its real work (`sh run.sh` starting `python train.py`),
//! and the kernel's parent-death signal reaches only the orchestrator's direct child: killed
//! with `kill -9`, the orchestrator would leave the work running, untracked, until some later
//! `sweep run` took the trial back. The guard is that direct child. When the orchestrator
//! dies it sends the whole group SIGTERM (a trial checkpoints on it), waits out the grace
//! period, then kills the group. Otherwise it is transparent: it passes the command's exit
//! status (or death by signal) on as its own, and leaves signals sent to the group to the
//! command.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, killpg, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, getppid, Pid};

/// The signal the kernel sends the guard when the orchestrator dies (its parent-death
/// signal), distinct from the SIGTERM the orchestrator sends the group itself.
pub const PARENT_DIED: Signal = Signal::SIGUSR1;

/// The exit code of a guard whose command could not be started, as shells use for a
/// command not found; its stderr then starts with [`SPAWN_FAILED`].
pub const SPAWN_FAILED_CODE: i32 = 127;

/// How a guard's stderr says that the command could not be started.
const SPAWN_FAILED: &str = "sweep guard: cannot start";

/// Why the guard could not start the command, from the stderr of a guard that exited with
/// [`SPAWN_FAILED_CODE`] (`cannot start `prog` in DIR: error`); `None` when the command did
/// start (and exited 127 itself).
pub fn spawn_failure(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.starts_with(SPAWN_FAILED))?;
    Some(line.trim_start_matches("sweep guard: ").to_string())
}

/// Runs `argv` under the guard; returns the exit code to leave with, when the command's
/// status is not a death by signal (which the guard then dies of too). `parent` is the
/// orchestrator's pid and `grace` its grace period. Call it in a process with one thread:
/// it takes its signals by blocking them.
pub fn run(parent: u32, grace: Duration, argv: &[String]) -> i32 {
    let mut watched = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        PARENT_DIED,
        Signal::SIGCHLD,
    ] {
        watched.add(sig);
    }
    // Blocked, these wait for `wait` below; the command gets an empty mask back.
    if let Err(e) = watched.thread_block() {
        eprintln!("{SPAWN_FAILED}: cannot block signals: {e}");
        return SPAWN_FAILED_CODE;
    }
    if getppid() != Pid::from_raw(parent as i32) {
        // The orchestrator died before the parent-death signal was armed: start nothing.
        return 128 + PARENT_DIED as i32;
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("{SPAWN_FAILED}: no command");
        return SPAWN_FAILED_CODE;
    };
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: between fork and exec only sigprocmask(2), which is async-signal-safe: the
    // command must not inherit the signals blocked here (a shell's `wait` would hang).
    unsafe {
        command.pre_exec(|| {
            signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let dir = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            eprintln!("{SPAWN_FAILED} `{program}` in {dir}: {e}");
            return SPAWN_FAILED_CODE;
        }
    };
    loop {
        match watched.wait() {
            Ok(Signal::SIGCHLD) => match child.try_wait() {
                Ok(Some(status)) => return leave_as(status),
                Ok(None) => {}
                Err(_) => return SPAWN_FAILED_CODE,
            },
            Ok(sig) if sig == PARENT_DIED => {
                let group = getpgrp();
                let _ = killpg(group, Signal::SIGTERM);
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Whatever is left in the group, the guard included.
                let _ = killpg(group, Signal::SIGKILL);
            }
            // Sent to the whole group, by the orchestrator or a terminal: the command's to
            // act on; the guard reports what it does.
            Ok(_) | Err(_) => {}
        }
    }
}

/// The exit code for `status`; a death by signal is passed on by dying of the same signal.
fn leave_as(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code;
    }
    let Some(raw) = status.signal() else {
        return 1;
    };
    if let Ok(sig) = Signal::try_from(raw) {
        // SAFETY: restoring the default disposition is async-signal-safe and nothing else
        // in this single-threaded process relies on a handler for `sig`.
        unsafe {
            let _ = signal::signal(sig, SigHandler::SigDfl);
        }
        let mut only = SigSet::empty();
        only.add(sig);
        let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
        let _ = signal::raise(sig);
    }
    128 + raw
}
