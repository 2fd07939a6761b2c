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
use std::path::{Path, PathBuf};
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

/// The small binary that is only the guard, installed beside `sweep`: starting it costs an
/// attempt far less than starting the whole `sweep` binary (which also parses its full
/// command line) would.
pub const GUARD_BINARY: &str = "sweep-guard";

/// The program that starts each attempt under the guard, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardProgram {
    /// The executable.
    pub program: PathBuf,
    /// The subcommand before the guard's arguments (`guard` for the `sweep` binary).
    pub subcommand: Option<&'static str>,
}

impl GuardProgram {
    /// [`GUARD_BINARY`] beside `exe` (the running `sweep`) where it was built or installed
    /// with it; otherwise `exe guard`, which does the same, more slowly.
    pub fn beside(exe: &Path) -> GuardProgram {
        let small = exe.with_file_name(GUARD_BINARY);
        if small.is_file() {
            GuardProgram {
                program: small,
                subcommand: None,
            }
        } else {
            GuardProgram {
                program: exe.to_path_buf(),
                subcommand: Some("guard"),
            }
        }
    }
}

/// What the guard is asked to do: written by the local executor, read by `sweep-guard` and
/// `sweep guard` alike (`--parent PID --grace-ms MS -- COMMAND...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardArgs {
    /// The orchestrator's pid.
    pub parent: u32,
    /// The trial's grace period after SIGTERM.
    pub grace: Duration,
    /// The trial's command.
    pub command: Vec<String>,
}

impl GuardArgs {
    /// The arguments that [`GuardArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--parent".to_string(),
            self.parent.to_string(),
            "--grace-ms".to_string(),
            self.grace.as_millis().to_string(),
            "--".to_string(),
        ];
        args.extend(self.command.iter().cloned());
        args
    }

    /// Reads what [`GuardArgs::to_args`] wrote; an error says what is wrong.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<GuardArgs, String> {
        let mut args = args.into_iter();
        let mut parent = None;
        let mut grace = None;
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                let value = args.next().ok_or(format!("{name} needs a value"))?;
                value
                    .parse()
                    .map_err(|_| format!("{name} {value:?} is not a whole number"))
            };
            match arg.as_str() {
                "--parent" => parent = Some(number("--parent")? as u32),
                "--grace-ms" => grace = Some(Duration::from_millis(number("--grace-ms")?)),
                "--" => break,
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        let command: Vec<String> = args.collect();
        match (parent, grace) {
            _ if command.is_empty() => Err("no command after --".into()),
            (Some(parent), Some(grace)) => Ok(GuardArgs {
                parent,
                grace,
                command,
            }),
            _ => Err("--parent and --grace-ms are required".into()),
        }
    }
}

/// Why the guard could not start the command, from the stderr of a guard that exited with
/// [`SPAWN_FAILED_CODE`] (`cannot start `prog` in DIR: error`); `None` when the command did
/// start (and exited 127 itself).
pub fn spawn_failure(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.starts_with(SPAWN_FAILED))?;
    Some(line.trim_start_matches("sweep guard: ").to_string())
}

/// The guard as a program: reads its arguments ([`GuardArgs`]) and runs; returns the exit
/// code to leave with. An argument it cannot read is a command it cannot start.
pub fn main(args: impl IntoIterator<Item = String>) -> i32 {
    match GuardArgs::parse(args) {
        Ok(a) => run(a.parent, a.grace, &a.command),
        Err(e) => {
            eprintln!("{SPAWN_FAILED}: {e}");
            SPAWN_FAILED_CODE
        }
    }
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
    // The guard arms its own parent-death signal (the orchestrator then starts it without a
    // `pre_exec` hook, so with a cheap `posix_spawn`, not a `fork` of its whole address
    // space); an orchestrator that died before this line is caught just below.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_pdeathsig(PARENT_DIED) {
        eprintln!("{SPAWN_FAILED}: cannot arm the parent-death signal: {e}");
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

#[cfg(test)]
mod args_tests {
    use super::*;

    #[test]
    fn the_guards_arguments_read_back_as_written() {
        let args = GuardArgs {
            parent: 42,
            grace: Duration::from_millis(1500),
            command: vec!["sh".into(), "-c".into(), "--parent 1".into()],
        };
        assert_eq!(GuardArgs::parse(args.to_args()), Ok(args));
        for (bad, says) in [
            (vec!["--parent", "x", "--", "true"], "not a whole number"),
            (vec!["--parent", "1", "--", "true"], "required"),
            (vec!["--parent", "1", "--grace-ms", "5", "--"], "no command"),
            (vec!["--oops"], "unexpected"),
        ] {
            let e = GuardArgs::parse(bad.iter().map(|s| s.to_string())).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_small_guard_is_used_where_it_sits_beside_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("sweep");
        std::fs::write(&sweep, "").unwrap();
        let alone = GuardProgram::beside(&sweep);
        assert_eq!(
            (alone.program.as_path(), alone.subcommand),
            (sweep.as_path(), Some("guard"))
        );
        std::fs::write(dir.path().join(GUARD_BINARY), "").unwrap();
        let small = GuardProgram::beside(&sweep);
        assert_eq!(small.program, dir.path().join(GUARD_BINARY));
        assert_eq!(small.subcommand, None);
    }
}
