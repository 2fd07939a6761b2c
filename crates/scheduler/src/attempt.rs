//! One attempt of one trial: start the process, stream its events, enforce its timeout,
//! obey stop requests, and report how it ended.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use sweep_core::protocol::{parse_line, Event, ParseOutcome};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::process;
use crate::{guard, Stop};

/// Everything needed to start an attempt.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub trial_id: String,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// The program whose `guard` subcommand starts the command (see [`crate::guard`]).
    pub guard: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub timeout: Option<Duration>,
    pub grace: Duration,
}

/// What an attempt sends the dispatcher while it runs.
#[derive(Debug)]
pub(crate) enum Message {
    Started {
        trial_id: String,
        pid: u32,
    },
    Event {
        trial_id: String,
        attempt: u32,
        event: Event,
    },
    Finished {
        trial_id: String,
        report: Report,
    },
}

/// How an attempt ended.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    /// The process could not be started at all (retrying will not help).
    pub spawn_error: Option<String>,
    pub stderr_tail: String,
    pub invalid_events: Vec<String>,
}

const STDERR_TAIL_BYTES: usize = 4096;

/// Runs the attempt to its end. Events go to `tx` as they arrive; the report is sent last.
pub(crate) async fn run(
    launch: Launch,
    tx: mpsc::UnboundedSender<Message>,
    mut stop: watch::Receiver<Stop>,
) {
    let trial_id = launch.trial_id.clone();
    let report = run_inner(&launch, &tx, &mut stop).await;
    let _ = tx.send(Message::Finished { trial_id, report });
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
        pid,
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

/// Longest stdout line read whole; the rest of a longer line goes to the log unread, so a
/// trial that prints without newlines cannot exhaust the orchestrator's memory.
const MAX_LINE: usize = 1 << 20;

/// Forwards protocol events and writes everything else to the stdout log. Reads to the end
/// whatever comes (bytes that are not UTF-8, endless lines), so the trial never dies of a
/// closed pipe. Returns the messages of malformed event lines.
async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    log: tokio::fs::File,
    trial_id: String,
    attempt: u32,
    tx: mpsc::UnboundedSender<Message>,
) -> Vec<String> {
    let mut log = BufWriter::new(log);
    let mut lines = LineReader::new(stdout);
    let mut invalid = Vec::new();
    loop {
        let bytes = match lines.next().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(e) => {
                invalid.push(format!("unreadable stdout: {e}"));
                break;
            }
        };
        let Ok(line) = std::str::from_utf8(bytes) else {
            // Not text, so not an event: keep it as it came.
            let _ = log.write_all(bytes).await;
            let _ = log.write_all(b"\n").await;
            continue;
        };
        match parse_line(line) {
            ParseOutcome::Event(event) => {
                let _ = tx.send(Message::Event {
                    trial_id: trial_id.clone(),
                    attempt,
                    event,
                });
            }
            ParseOutcome::Output => {
                let _ = log.write_all(bytes).await;
                let _ = log.write_all(b"\n").await;
            }
            ParseOutcome::Invalid(why) => {
                let note = format!("[sweep] ignored malformed event ({why}): {line}\n");
                let _ = log.write_all(note.as_bytes()).await;
                if invalid.len() < 10 {
                    invalid.push(format!("{why}: {}", excerpt(line)));
                }
            }
        }
    }
    let _ = log.flush().await;
    invalid
}

/// The start of a line, short enough for a stored reason.
fn excerpt(line: &str) -> String {
    const MAX: usize = 200;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes (longer lines are cut into
/// pieces), without assuming any encoding.
struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            line: Vec::new(),
        }
    }

    /// The next line without its newline; `None` at the end of the stream.
    async fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.line.clear();
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok((!self.line.is_empty()).then_some(&self.line[..]));
            }
            let room = MAX_LINE - self.line.len();
            let window = &buf[..buf.len().min(room)];
            if let Some(i) = window.iter().position(|b| *b == b'\n') {
                self.line.extend_from_slice(&window[..i]);
                self.inner.consume(i + 1);
                return Ok(Some(&self.line[..]));
            }
            let n = window.len();
            self.line.extend_from_slice(window);
            self.inner.consume(n);
            if self.line.len() == MAX_LINE {
                return Ok(Some(&self.line[..]));
            }
        }
    }
}

/// Copies stderr to its log and keeps the last few KiB for the store.
async fn read_stderr(mut stderr: tokio::process::ChildStderr, log: tokio::fs::File) -> String {
    let mut log = BufWriter::new(log);
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = vec![0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = log.write_all(&buf[..n]).await;
                tail.extend(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        }
    }
    let _ = log.flush().await;
    let bytes: Vec<u8> = tail.into();
    let text = String::from_utf8_lossy(&bytes);
    // Start at a line boundary when the tail was cut.
    match (bytes.len() == STDERR_TAIL_BYTES, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text.into_owned(),
    }
}
