//! Unix process-group handling for trials.
//!
//! Each trial runs in its own process group so a signal reaches everything it started, and on
//! Linux it is asked to receive SIGTERM if the orchestrator dies, so a `kill -9` of `sweep`
//! does not leave trials running unattended.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Sends `signal` to a process group; a group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {signal} to process group {pgid}: {e}"),
    }
}

/// Whether a process exists (it may belong to another user).
pub fn alive(pid: i64) -> bool {
    pid > 0 && !matches!(kill(Pid::from_raw(pid as i32), None), Err(Errno::ESRCH))
}

/// The environment variable naming the runner that started a trial's process: with
/// `SWEEP_TRIAL_ID` it marks every process of that attempt, whatever group it is in.
pub const RUNNER_VAR: &str = sweep_core::protocol::env::RUNNER;

/// Kills what a runner that is gone left running for `trial_id`: the process group `pgid`
/// it recorded, after checking (through `/proc`, where there is one) that the group still
/// runs that trial and not some unrelated program that reused the id, even when the
/// group's leader has exited; and the groups of every process marked with the trial and
/// `runner_id` (a runner killed before it could record the group). Returns the groups killed.
pub fn kill_orphan(pgid: Option<i64>, trial_id: &str, runner_id: Option<&str>) -> Vec<i64> {
    if !Path::new("/proc/self").exists() {
        // No /proc to check ownership with: trust the stored id if the group exists.
        let Some(pgid) = pgid.filter(|p| *p > 0) else {
            return Vec::new();
        };
        let exists = !matches!(killpg(Pid::from_raw(pgid as i32), None), Err(Errno::ESRCH));
        if exists {
            signal_group(pgid as u32, Signal::SIGKILL);
            return vec![pgid];
        }
        return Vec::new();
    }
    let trial = format!("SWEEP_TRIAL_ID={trial_id}");
    let runner = runner_id.map(|r| format!("{RUNNER_VAR}={r}"));
    let mut groups = std::collections::BTreeSet::new();
    for process in processes() {
        let in_group = pgid == Some(process.pgrp);
        if !in_group && runner.is_none() {
            continue;
        }
        let Some(environ) = process.environ() else {
            continue;
        };
        let has = |var: &str| holds(&environ, var);
        if has(&trial) && (in_group || runner.as_deref().is_some_and(has)) {
            groups.insert(process.pgrp);
        }
    }
    for &group in &groups {
        signal_group(group as u32, Signal::SIGKILL);
    }
    groups.into_iter().collect()
}

/// The live (not zombie) processes whose environment holds `var` exactly (`NAME=value`),
/// such as `SWEEP_SWEEP=<sweep>` for everything a sweep started: what a sweep left running.
/// Empty where there is no `/proc`.
pub fn processes_marked(var: &str) -> Vec<i64> {
    marked(&[var]).map(|p| p.pid).collect()
}

/// The process groups of the live processes whose environment holds any of `marks` exactly
/// (`NAME=value`): where a dead orchestrator's attempts run. Empty where there is no `/proc`.
pub fn groups_marked(marks: &[String]) -> std::collections::BTreeSet<i64> {
    marked(marks).map(|p| p.pgrp).collect()
}

/// The live (not zombie) processes whose environment holds any of `marks` exactly.
fn marked<M: AsRef<str>>(marks: &[M]) -> impl Iterator<Item = Process> + '_ {
    let all = if marks.is_empty() {
        Vec::new()
    } else {
        processes()
    };
    all.into_iter().filter(move |p| {
        !p.zombie
            && p.environ()
                .is_some_and(|env| marks.iter().any(|mark| holds(&env, mark.as_ref())))
    })
}

/// One process, as `/proc/PID/stat` describes it.
struct Process {
    pid: i64,
    pgrp: i64,
    /// Exited, not yet reaped: nothing runs any more.
    zombie: bool,
}

impl Process {
    /// Its environment (`NAME=value` entries separated by NUL), when readable. A process in
    /// the middle of `execve` reads as empty for a moment (its memory is being replaced), so
    /// an empty read is tried again briefly before it is believed.
    fn environ(&self) -> Option<Vec<u8>> {
        let path = format!("/proc/{}/environ", self.pid);
        let mut environ = std::fs::read(&path).ok()?;
        for _ in 0..10 {
            if !environ.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            environ = std::fs::read(&path).ok()?;
        }
        Some(environ)
    }
}

/// Whether a `/proc/PID/environ` block holds the entry `var` (`NAME=value`) exactly.
fn holds(environ: &[u8], var: &str) -> bool {
    environ.split(|b| *b == 0).any(|v| v == var.as_bytes())
}

/// Every process in a process group of its own making (not init's or the kernel's).
fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, pgrp) = parse_stat(&stat)?;
            Some(Process {
                pid,
                pgrp,
                zombie: state == "Z",
            })
        })
        .filter(|p| p.pgrp > 1)
        .collect()
}

/// The state and process group fields of a `/proc/PID/stat` line. The command name before
/// them is in parentheses and may itself contain spaces and parentheses, so fields are
/// counted from the last `)`: state, ppid, pgrp.
fn parse_stat(stat: &str) -> Option<(&str, i64)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    Some((state, fields.nth(1)?.parse().ok()?))
}

/// Configures a command to start its own process group and, on Linux, to get `on_death`
/// when the orchestrator exits.
pub fn isolate(cmd: &mut tokio::process::Command, on_death: Signal) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(on_death).map_err(std::io::Error::from)
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = on_death;
}

/// A signal's conventional name, for messages.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_group_is_read_after_the_last_parenthesis() {
        let stat = "4242 (sh (x) y) S 1 4240 4240 0 -1 4194560 112 0 0 0";
        assert_eq!(parse_stat(stat), Some(("S", 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_group_whose_leader_exited_is_still_found_and_killed() {
        // A leader that starts a child in its own new group and exits: the child is what a
        // wrapper script leaves behind when sweep dies.
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 >/dev/null & echo $!"])
            .env("SWEEP_TRIAL_ID", "orphan-test")
            .stdout(std::process::Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let leader = cmd.spawn().unwrap();
        let pgid = leader.id() as i64;
        let out = leader.wait_with_output().unwrap();
        let child: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // `$!` is printed as soon as the shell forks: let the child become `sleep` first,
        // as a trial's leftovers long have (under CI load the test once read it mid-exec).
        let became_sleep = (0..250).any(|_| {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            false
        });
        assert!(became_sleep, "the child never ran sleep");
        assert!(!alive(pgid), "the leader has exited");
        assert!(alive(child));
        assert!(
            kill_orphan(Some(pgid), "another-trial", None).is_empty(),
            "not ours: left alone"
        );
        assert!(alive(child));
        assert_eq!(kill_orphan(Some(pgid), "orphan-test", None), [pgid]);
        let gone = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            // Reaped by init, or a zombie of it: either way, not running.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "the leftover child still runs");
    }

    #[test]
    fn a_runners_processes_are_found_by_their_mark_without_a_recorded_group() {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30")
            .env("SWEEP_TRIAL_ID", "marked-test")
            .env(RUNNER_VAR, "runner-x");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let pgid = child.id() as i64;
        assert!(kill_orphan(None, "marked-test", Some("runner-y")).is_empty());
        assert!(kill_orphan(None, "other-trial", Some("runner-x")).is_empty());
        assert!(child.try_wait().unwrap().is_none(), "left alone");
        assert_eq!(kill_orphan(None, "marked-test", Some("runner-x")), [pgid]);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}
