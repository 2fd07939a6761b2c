//! The guard: one small process beside each `sweep run` that starts local attempts, which
//! outlives the orchestrator just long enough to take its trials down with it.
//!
//! A trial is often a wrapper around its real work (`sh run.sh` starting `python train.py`),
//! so each attempt runs in a process group of its own, and the kernel's parent-death signal
//! (which reaches one process) is not enough: killed with `kill -9`, the orchestrator would
//! leave the work running, untracked, until some later `sweep run` took the trial back. The
//! orchestrator starts the guard once, on its first attempt, with a pipe on its stdin, and
//! tells it each attempt's group as it starts and ends ([`GuardLine`]). When the pipe closes
//! without a goodbye (the orchestrator died), the guard sends SIGTERM to every group it was
//! told of and to every group holding a process marked with one of the run's runners
//! (`SWEEP_RUNNER`, which covers an attempt started in the instant before it was told), waits
//! out the grace period, then kills what is left.
//!
//! One guard per run (the `sweep` binary's hidden `guard` subcommand), not one per attempt:
//! starting a process costs a trivial trial more than everything else the orchestrator does
//! for it (docs/performance.md), and each attempt then starts its command with one
//! `posix_spawn`.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, Pid};

use crate::process;

/// What the guard is started with (`sweep guard --grace-ms MS`): written by the local
/// executor, read by the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardArgs {
    /// The trials' grace period between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl GuardArgs {
    /// The arguments that [`GuardArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        vec!["--grace-ms".into(), self.grace.as_millis().to_string()]
    }

    /// Reads what [`GuardArgs::to_args`] wrote; an error says what is wrong.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<GuardArgs, String> {
        let mut args = args.into_iter();
        let mut grace = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--grace-ms" => {
                    let value = args.next().ok_or("--grace-ms needs a value")?;
                    let ms = value
                        .parse()
                        .map_err(|_| format!("--grace-ms {value:?} is not a whole number"))?;
                    grace = Some(Duration::from_millis(ms));
                }
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        let grace = grace.ok_or("--grace-ms is required")?;
        Ok(GuardArgs { grace })
    }
}

/// One line the orchestrator writes to its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardLine {
    /// Attempts from now on are marked with this runner (`SWEEP_RUNNER`).
    Runner(String),
    /// An attempt started as this process group.
    Start(u32),
    /// The attempt of this process group ended and its group was killed.
    End(u32),
    /// The orchestrator is ending normally, with no attempt running: nothing to take down.
    Bye,
}

impl GuardLine {
    /// The line as written, newline included.
    pub fn to_line(&self) -> String {
        match self {
            GuardLine::Runner(id) => format!("runner {id}\n"),
            GuardLine::Start(group) => format!("start {group}\n"),
            GuardLine::End(group) => format!("end {group}\n"),
            GuardLine::Bye => "bye\n".into(),
        }
    }

    /// Reads what [`GuardLine::to_line`] wrote (without its newline).
    pub fn parse(line: &str) -> Option<GuardLine> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "runner" if !rest.is_empty() => Some(GuardLine::Runner(rest.to_string())),
            "start" => rest.parse().ok().map(GuardLine::Start),
            "end" => rest.parse().ok().map(GuardLine::End),
            "bye" if rest.is_empty() => Some(GuardLine::Bye),
            _ => None,
        }
    }
}

/// What the guard has been told: the run's runners and the groups of its running attempts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Told {
    runners: BTreeSet<String>,
    groups: BTreeSet<u32>,
    bye: bool,
}

impl Told {
    fn take(&mut self, line: GuardLine) {
        match line {
            GuardLine::Runner(id) => {
                self.runners.insert(id);
            }
            GuardLine::Start(group) => {
                self.groups.insert(group);
            }
            GuardLine::End(group) => {
                self.groups.remove(&group);
            }
            GuardLine::Bye => self.bye = true,
        }
    }

    /// Everything to write to a new guard for it to know what this one knew.
    fn replay(&self) -> Vec<GuardLine> {
        let runners = self.runners.iter().cloned().map(GuardLine::Runner);
        runners
            .chain(self.groups.iter().copied().map(GuardLine::Start))
            .collect()
    }

    /// The groups to take down: those told of, and those of every live process marked with
    /// one of the runners (through `/proc`, where there is one).
    fn groups_now(&self) -> BTreeSet<i64> {
        let marks: Vec<String> = self
            .runners
            .iter()
            .map(|id| format!("{}={id}", process::RUNNER_VAR))
            .collect();
        let own = getpgrp().as_raw() as i64;
        let mut groups = process::groups_marked(&marks);
        groups.extend(self.groups.iter().map(|g| *g as i64));
        groups.retain(|g| *g > 1 && *g != own);
        groups
    }
}

/// The guard as a program: reads its arguments ([`GuardArgs`]), then its stdin; returns the
/// exit code to leave with.
pub fn main(args: impl IntoIterator<Item = String>) -> i32 {
    match GuardArgs::parse(args) {
        Ok(args) => {
            watch(std::io::stdin().lock(), args.grace);
            0
        }
        Err(e) => {
            eprintln!("sweep guard: {e}");
            2
        }
    }
}

/// Reads the orchestrator's lines until the pipe closes; then, unless it said goodbye, takes
/// every attempt's process group down: SIGTERM (a trial checkpoints on it), `grace` for them
/// to exit, then SIGKILL for whatever is left.
pub fn watch(input: impl BufRead, grace: Duration) {
    let mut told = Told::default();
    for line in input.lines() {
        let Ok(line) = line else { break };
        match GuardLine::parse(&line) {
            Some(line) => told.take(line),
            None => eprintln!("sweep guard: ignoring the line {line:?}"),
        }
    }
    if told.bye {
        return;
    }
    let groups = told.groups_now();
    for &group in &groups {
        process::signal_group(group as u32, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let exists = |group: i64| killpg(Pid::from_raw(group as i32), None).is_ok();
    while Instant::now() < deadline && groups.iter().any(|g| exists(*g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever is left, and anything marked that started during the grace period.
    for group in groups.into_iter().chain(told.groups_now()) {
        process::signal_group(group as u32, Signal::SIGKILL);
    }
}

/// The orchestrator's side of its guard: started on the first attempt, told of each attempt
/// as it starts and ends, and started again (and told everything again) should it die.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The `sweep` binary, whose hidden `guard` subcommand is the guard.
    program: PathBuf,
    grace: Duration,
    state: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    told: Told,
    running: Option<(Child, ChildStdin)>,
    /// The guard could not be started or told: said once, not for every attempt.
    warned: bool,
    /// The run is over ([`Guard::close`]): what still ends is not told to a new guard.
    closed: bool,
}

impl Guard {
    /// A guard run by `program guard` for trials with `grace`; nothing starts until an
    /// attempt does.
    pub(crate) fn new(program: PathBuf, grace: Duration) -> Guard {
        Guard {
            program,
            grace,
            state: Mutex::new(GuardState::default()),
        }
    }

    /// An attempt started as process group `group`, marked with `runner`.
    pub(crate) fn started(&self, group: u32, runner: Option<&str>) {
        let mut lines = Vec::new();
        let mut state = self.lock();
        if let Some(runner) = runner.filter(|r| !state.told.runners.contains(*r)) {
            lines.push(GuardLine::Runner(runner.to_string()));
        }
        lines.push(GuardLine::Start(group));
        self.tell(&mut state, lines);
    }

    /// The attempt of process group `group` ended, and its group was killed.
    pub(crate) fn ended(&self, group: u32) {
        let mut state = self.lock();
        self.tell(&mut state, vec![GuardLine::End(group)]);
    }

    /// The run is over: the guard is told goodbye (or, with attempts still running, left to
    /// take them down), and not started again. A run that ends normally says so here rather
    /// than when the last attempt's handle is dropped, which may be after the process exits.
    pub(crate) fn close(&self) {
        self.lock().close();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        // A panic elsewhere while holding it leaves the state as whole as before.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `lines`, starting the guard first where none runs (or the last one died).
    fn tell(&self, state: &mut GuardState, lines: Vec<GuardLine>) {
        let text: String = lines.iter().map(GuardLine::to_line).collect();
        for line in lines {
            state.told.take(line);
        }
        if state.closed {
            return;
        }
        if let Some((_, stdin)) = &mut state.running {
            if stdin.write_all(text.as_bytes()).is_ok() {
                return;
            }
            // The guard died (killed by hand, the OOM killer): a new one takes over.
            if let Some((mut child, _)) = state.running.take() {
                let _ = child.try_wait();
            }
        }
        if state.told.groups.is_empty() {
            // Nothing to watch (the last attempt ended): the next to start starts a guard.
            return;
        }
        let everything: String = state.told.replay().iter().map(GuardLine::to_line).collect();
        match self.spawn().and_then(|(child, mut stdin)| {
            stdin.write_all(everything.as_bytes())?;
            Ok((child, stdin))
        }) {
            Ok(running) => state.running = Some(running),
            Err(e) if !state.warned => {
                state.warned = true;
                tracing::warn!(
                    "cannot start the guard `{}` ({e}): if this sweep is killed, its trials keep running until the next `sweep run` takes them back",
                    self.program.display()
                );
            }
            Err(_) => {}
        }
    }

    fn spawn(&self) -> std::io::Result<(Child, ChildStdin)> {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.arg("guard")
            .args(GuardArgs { grace: self.grace }.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own group: a Ctrl-C at the terminal is the orchestrator's to handle.
            .process_group(0);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        Ok((child, stdin))
    }
}

impl GuardState {
    /// Ends the guard: a goodbye where no attempt runs; otherwise (an attempt was
    /// abandoned) the closed pipe sends the guard after what is left. Nothing is started
    /// again after this.
    fn close(&mut self) {
        self.closed = true;
        if let Some((mut child, mut stdin)) = self.running.take() {
            if self.told.groups.is_empty() {
                let _ = stdin.write_all(GuardLine::Bye.to_line().as_bytes());
            }
            drop(stdin);
            let _ = child.try_wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .close();
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn the_guards_arguments_and_lines_read_back_as_written() {
        let args = GuardArgs {
            grace: Duration::from_millis(1500),
        };
        assert_eq!(GuardArgs::parse(args.to_args()), Ok(args));
        for (bad, says) in [
            (vec!["--grace-ms", "x"], "not a whole number"),
            (vec![], "required"),
            (vec!["--oops"], "unexpected"),
        ] {
            let e = GuardArgs::parse(bad.iter().map(|s| s.to_string())).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        for line in [
            GuardLine::Runner("r-1 x".into()),
            GuardLine::Start(42),
            GuardLine::End(7),
            GuardLine::Bye,
        ] {
            let text = line.to_line();
            assert_eq!(GuardLine::parse(text.trim_end_matches('\n')), Some(line));
        }
        for bad in [
            "", "start", "start x", "end -1", "runner", "bye now", "stop 3",
        ] {
            assert_eq!(GuardLine::parse(bad), None, "{bad:?}");
        }
    }

    /// A process group of its own running `script`, with `env` set, once the script has
    /// printed its first line (so it is past its set-up, a `trap` say, when it is signalled).
    fn group(script: &str, env: &[(&str, &str)]) -> std::process::Child {
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready, "ready\n");
        child
    }

    /// Waits (up to 5 s) for `child` to end; its exit status, or `None` while it still runs.
    fn ended(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait().unwrap() {
                Some(status) => return Some(status),
                None if Instant::now() > deadline => return None,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn a_closed_pipe_takes_down_the_groups_told_of_and_those_marked() {
        use std::os::unix::process::ExitStatusExt;
        // Told of by its group; it ignores SIGTERM, so only the kill after the grace stops it.
        let mut told = group("trap '' TERM; echo ready; sleep 30 & wait; sleep 30", &[]);
        // Never told of, but marked with the run's runner.
        let marks = [(process::RUNNER_VAR, "runner-guard-test")];
        let mut marked = group("echo ready; exec sleep 30", &marks);
        // Neither: left alone.
        let marks = [(process::RUNNER_VAR, "another-runner")];
        let mut other = group("echo ready; exec sleep 30", &marks);
        let lines = format!(
            "runner runner-guard-test\nstart {}\nstart 999999\nend 999999\n",
            told.id()
        );
        let started = Instant::now();
        watch(lines.as_bytes(), Duration::from_millis(300));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(ended(&mut told).and_then(|s| s.signal()), Some(9));
        assert_eq!(ended(&mut marked).and_then(|s| s.signal()), Some(15));
        // Signals are sent before `watch` returns: a moment is enough to see one arrive.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(other.try_wait().unwrap(), None);
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_goodbye_leaves_everything_as_it_is() {
        let marks = [(process::RUNNER_VAR, "runner-bye-test")];
        let mut child = group("echo ready; exec sleep 30", &marks);
        let lines = format!("runner runner-bye-test\nstart {}\nbye\n", child.id());
        watch(lines.as_bytes(), Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(child.try_wait().unwrap(), None);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A guard that died is started again only when there is an attempt to watch: not by
    /// the end of the last one.
    #[test]
    fn a_dead_guard_is_not_started_again_for_nothing_to_watch() {
        // A guard that dies once it has read what it is first told, as one killed by hand
        // would (a pipe with nobody reading refuses the next line).
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("guard");
        // Written by another process: a file this one held open for writing could be
        // inherited by a concurrent test's fork, and exec would then fail with ETXTBSY.
        let written = std::process::Command::new("sh")
            .args([
                "-c",
                r#"printf '#!/bin/sh\nread line\n' > "$1" && chmod +x "$1""#,
                "sh",
            ])
            .arg(&program)
            .status()
            .unwrap();
        assert!(written.success());
        let guard = Guard::new(program, Duration::from_secs(1));
        let dead = |guard: &Guard| {
            let mut state = guard.lock();
            let (child, _) = state.running.as_mut().expect("a guard was started");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        guard.started(1, Some("r"));
        dead(&guard);
        guard.started(2, None);
        dead(&guard);
        guard.ended(1);
        assert!(
            guard.lock().running.is_some(),
            "group 2 still runs: a new guard watches it"
        );
        dead(&guard);
        guard.ended(2);
        assert!(guard.lock().running.is_none());
        guard.started(3, None);
        assert!(guard.lock().running.is_some());
    }
}
