//! What every executor shares about one attempt of one trial: what it needs to start, the
//! messages it sends the dispatcher while it runs, how it ended, and the readers that turn
//! its stdout into protocol events and keep the tail of its stderr.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use sweep_core::protocol::{parse_line, Event, ParseOutcome};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

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
    /// The attempt runs as `job` (a process group, or a queued SLURM job).
    Started {
        trial_id: String,
        job: Job,
    },
    /// The attempt's SLURM job started on `node`.
    Placed {
        trial_id: String,
        node: String,
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

/// What an attempt runs as, to record, watch and kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// A local process group.
    Process(u32),
    /// A SLURM job id.
    Slurm(String),
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
    /// Why it ended, where the executor knows better than the exit status (a preempted or
    /// externally cancelled SLURM job).
    pub reason: Option<String>,
    /// The executor refused to start it (`sbatch` rejected the job): not the trial's fault,
    /// so no attempt is spent.
    pub rejected: Option<String>,
}

pub(crate) const STDERR_TAIL_BYTES: usize = 4096;

/// Longest stdout line read whole; the rest of a longer line goes to the log unread, so a
/// trial that prints without newlines cannot exhaust the orchestrator's memory.
const MAX_LINE: usize = 1 << 20;

/// Forwards protocol events and writes everything else to the stdout log. Reads to the end
/// whatever comes (bytes that are not UTF-8, endless lines), so the trial never dies of a
/// closed pipe. The log is flushed whenever the trial has nothing more to say for the moment,
/// so it can be followed while an hour-long trial runs and survives an orchestrator killed
/// mid-trial. Returns the messages of malformed event lines.
pub(crate) async fn read_stdout(
    stdout: impl AsyncRead + Unpin,
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
        if !lines.has_buffered() {
            let _ = log.flush().await;
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

    /// Whether more of the stream is already read, so a next line may follow without waiting.
    fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
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

/// Copies stderr to its log as it comes (each read is written through, so the log can be
/// followed while the trial runs) and keeps the last few KiB for the store.
pub(crate) async fn read_stderr(
    mut stderr: impl AsyncRead + Unpin,
    mut log: tokio::fs::File,
) -> String {
    // Each read is already a batch: written and flushed as it is, with no buffer between.
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = vec![0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = log.write_all(&buf[..n]).await;
                let _ = log.flush().await;
                tail.extend(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        }
    }
    tail_text(tail.into())
}

/// The last [`STDERR_TAIL_BYTES`] of an output as text, starting at a line boundary when cut.
pub(crate) fn tail_text(bytes: Vec<u8>) -> String {
    let text = String::from_utf8_lossy(&bytes);
    // Start at a line boundary when the tail was cut.
    match (bytes.len() == STDERR_TAIL_BYTES, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `path` until it holds `want` (or ten seconds pass) and returns what it holds.
    async fn wait_for(path: &std::path::Path, want: &str) -> String {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(want) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn log_file(name: &str) -> (PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("sweep-attempt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        (path.clone(), std::fs::File::create(&path).unwrap())
    }

    /// A trial that prints a note and then computes for an hour: the note is in the log while
    /// it computes, not only once it exits.
    #[tokio::test]
    async fn logs_hold_what_a_running_trial_printed() {
        let (err_path, err_log) = log_file("stderr.log");
        let (mut err_in, err_out) = tokio::io::duplex(1024);
        let stderr = tokio::spawn(read_stderr(err_out, tokio::fs::File::from_std(err_log)));
        err_in
            .write_all(b"aligning the checkpoint\n")
            .await
            .unwrap();
        let seen = wait_for(&err_path, "aligning").await;
        assert_eq!(
            seen, "aligning the checkpoint\n",
            "stderr log while running"
        );

        let (out_path, out_log) = log_file("stdout.log");
        let (mut out_in, out_out) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stdout = tokio::spawn(read_stdout(
            out_out,
            tokio::fs::File::from_std(out_log),
            "t".into(),
            1,
            tx,
        ));
        out_in
            .write_all(b"step 10 of 120\n{\"event\":\"checkpoint\",\"step\":10}\n")
            .await
            .unwrap();
        let seen = wait_for(&out_path, "step 10").await;
        assert_eq!(seen, "step 10 of 120\n", "stdout log while running");
        assert!(matches!(rx.recv().await, Some(Message::Event { .. })));

        drop((err_in, out_in));
        assert_eq!(stderr.await.unwrap(), "aligning the checkpoint\n");
        assert!(stdout.await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(err_path.parent().unwrap());
    }
}
