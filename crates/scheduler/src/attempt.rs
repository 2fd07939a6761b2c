//! What every executor shares about one attempt of one trial: what it needs to start, the
//! messages it sends the dispatcher while it runs, how it ended, and the readers that turn
//! its stdout into protocol events and keep the tail of its stderr.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use sweep_core::protocol::{parse_line, Event, ParseOutcome};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

/// What an attempt runs as, as the store records it: a process group on this host, or a job
/// id of the executor that submitted it (recorded with the executor's name, so a later run
/// of any executor knows whom to ask to stop it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobRef {
    /// A local process group (its leader's pid).
    Process(u32),
    /// An id the executor `executor` gave the job.
    Job {
        /// [`crate::executor::Executor`]'s `NAME` of the executor that made it.
        executor: &'static str,
        /// Its id there.
        id: String,
    },
}

/// Everything needed to start an attempt.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub trial_id: String,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub log_dir: PathBuf,
    pub timeout: Option<Duration>,
    pub grace: Duration,
}

/// What an attempt sends the dispatcher while it runs. Every message names its attempt as
/// well as its trial: after a lost lease, an old attempt of a trial may still be reporting
/// while a newer one runs, and nothing of the old one may be taken for the new one's.
#[derive(Debug)]
pub(crate) enum Message {
    /// The attempt runs as `job` (a process group, or an executor's job, maybe queued).
    Started {
        trial_id: String,
        attempt: u32,
        job: JobRef,
    },
    /// The attempt's job started on `node` (executors that place jobs on nodes).
    Placed {
        trial_id: String,
        attempt: u32,
        node: String,
    },
    Event {
        trial_id: String,
        attempt: u32,
        event: Event,
    },
    Finished {
        trial_id: String,
        attempt: u32,
        report: AttemptReport,
    },
}

/// How an attempt ended.
#[derive(Debug, Default)]
pub(crate) struct AttemptReport {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    /// The process could not be started at all (retrying will not help).
    pub spawn_error: Option<String>,
    pub stderr_tail: String,
    pub invalid_events: Vec<String>,
    /// Why it ended, where the executor knows better than the exit status (a preempted or
    /// externally cancelled job).
    pub reason: Option<String>,
    /// The executor refused to start it (SLURM's `sbatch` rejected the job): not the
    /// trial's fault, so no attempt is spent.
    pub rejected: Option<String>,
    /// sweep's own task watching the attempt failed (a panic): the attempt is killed, counted
    /// as failed and retried, and its slot is given back.
    pub abandoned: bool,
}

impl AttemptReport {
    /// The report of an attempt whose watching task ended without one (`why`: its panic).
    pub(crate) fn abandoned(why: &str) -> AttemptReport {
        AttemptReport {
            abandoned: true,
            reason: Some(format!(
                "sweep's watcher of this attempt failed ({why}); the attempt was killed"
            )),
            ..AttemptReport::default()
        }
    }
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
        let (bytes, piece) = match lines.next().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                invalid.push(format!("unreadable stdout: {e}"));
                break;
            }
        };
        if piece != Piece::Whole {
            // Never an event, whatever it holds: log it, and say so if it meant to be one.
            let _ = log.write_all(bytes).await;
            if piece == Piece::LongEnd {
                let _ = log.write_all(b"\n").await;
            }
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            if piece == Piece::LongStart && parse_line(&head) != ParseOutcome::Output {
                invalid.push(format!(
                    "a line longer than 1 MiB is never read as an event (it went to the log; write large results to a file in SWEEP_TRIAL_DIR): {}",
                    excerpt(&head)
                ));
            }
            continue;
        }
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
            ParseOutcome::Lenient { events, notes } => {
                for note in notes {
                    let note = format!("[sweep] {note}: {}\n", excerpt(line));
                    let _ = log.write_all(note.as_bytes()).await;
                }
                for event in events {
                    let _ = tx.send(Message::Event {
                        trial_id: trial_id.clone(),
                        attempt,
                        event,
                    });
                }
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

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes (longer lines come in
/// pieces, marked as such), without assuming any encoding.
struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
    /// The line being read is longer than [`MAX_LINE`]: what follows is more of it.
    in_long_line: bool,
}

/// What part of a line [`LineReader::next`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// A whole line of at most [`MAX_LINE`] bytes.
    Whole,
    /// The first [`MAX_LINE`] bytes of a longer line.
    LongStart,
    /// More of a long line, which goes on.
    LongMiddle,
    /// The last piece of a long line.
    LongEnd,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            line: Vec::new(),
            in_long_line: false,
        }
    }

    /// Whether more of the stream is already read, so a next line may follow without waiting.
    fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }

    /// The next line (or piece of a long one) without its newline; `None` at the end of the
    /// stream.
    async fn next(&mut self) -> std::io::Result<Option<(&[u8], Piece)>> {
        self.line.clear();
        let continuing = self.in_long_line;
        let ended = if continuing {
            Piece::LongEnd
        } else {
            Piece::Whole
        };
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                self.in_long_line = false;
                return Ok((!self.line.is_empty()).then_some((&self.line[..], ended)));
            }
            let room = MAX_LINE - self.line.len();
            let window = &buf[..buf.len().min(room)];
            if let Some(i) = window.iter().position(|b| *b == b'\n') {
                self.line.extend_from_slice(&window[..i]);
                self.inner.consume(i + 1);
                self.in_long_line = false;
                return Ok(Some((&self.line[..], ended)));
            }
            let n = window.len();
            self.line.extend_from_slice(window);
            self.inner.consume(n);
            if self.line.len() == MAX_LINE {
                self.in_long_line = true;
                let piece = if continuing {
                    Piece::LongMiddle
                } else {
                    Piece::LongStart
                };
                return Ok(Some((&self.line[..], piece)));
            }
        }
    }
}

/// Copies stderr to its log at `path` as it comes (each read is written through, so the log
/// can be followed while the trial runs) and keeps the last few KiB for the store. The file is
/// created with the first bytes: most trials write nothing there, and a file costs an attempt
/// an inode (the most expensive part of starting a trivial one).
pub(crate) async fn read_stderr(mut stderr: impl AsyncRead + Unpin, path: PathBuf) -> String {
    // Each read is already a batch: written and flushed as it is, with no buffer between.
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = vec![0u8; 8192];
    let mut log: Option<tokio::fs::File> = None;
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if log.is_none() {
                    log = tokio::fs::File::create(&path).await.ok();
                }
                if let Some(log) = log.as_mut() {
                    let _ = log.write_all(&buf[..n]).await;
                    let _ = log.flush().await;
                }
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

    /// A log file in a directory of the calling test's own (`test`), so tests running at
    /// once never remove each other's files.
    fn log_file(test: &str, name: &str) -> (PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("sweep-attempt-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        (path.clone(), std::fs::File::create(&path).unwrap())
    }

    /// A trial that prints a note and then computes for an hour: the note is in the log while
    /// it computes, not only once it exits.
    #[tokio::test]
    async fn logs_hold_what_a_running_trial_printed() {
        let (err_path, err_log) = log_file("logs", "stderr.log");
        drop(err_log);
        std::fs::remove_file(&err_path).unwrap();
        let (mut err_in, err_out) = tokio::io::duplex(1024);
        let stderr = tokio::spawn(read_stderr(err_out, err_path.clone()));
        err_in
            .write_all(b"aligning the checkpoint\n")
            .await
            .unwrap();
        let seen = wait_for(&err_path, "aligning").await;
        assert_eq!(
            seen, "aligning the checkpoint\n",
            "stderr log while running"
        );

        let (out_path, out_log) = log_file("logs", "stdout.log");
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

    /// A 3 MiB result line is never taken as an event, and the trial is told why, not given
    /// a JSON parser's complaint about a line cut in the middle; the next line is read as
    /// usual.
    #[tokio::test]
    async fn a_line_over_a_mib_is_logged_and_named_as_such() {
        let (path, log) = log_file("long", "long.log");
        let (mut input, output) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_stdout(
            output,
            tokio::fs::File::from_std(log),
            "t".into(),
            1,
            tx,
        ));
        let long = format!(
            "{{\"event\":\"result\",\"metrics\":{{\"a\":1}},\"pad\":\"{}\"}}\n",
            "x".repeat(3 << 20)
        );
        input.write_all(long.as_bytes()).await.unwrap();
        input
            .write_all(b"{\"event\":\"checkpoint\",\"step\":2}\n")
            .await
            .unwrap();
        drop(input);
        let invalid = reader.await.unwrap();
        assert_eq!(invalid.len(), 1, "{invalid:?}");
        assert!(invalid[0].starts_with("a line longer than 1 MiB is never read as an event"));
        assert!(!invalid[0].contains("EOF"), "{}", invalid[0]);
        // The checkpoint after it is the only event.
        assert!(matches!(
            rx.recv().await,
            Some(Message::Event {
                event: Event::Checkpoint { step: 2 },
                ..
            })
        ));
        assert!(rx.recv().await.is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), long.len() as u64);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[cfg(test)]
mod lazy_tests {
    use super::*;

    #[tokio::test]
    async fn an_attempt_that_writes_nothing_to_stderr_leaves_no_stderr_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt-1.stderr.log");
        let (err_in, err_out) = tokio::io::duplex(64);
        drop(err_in);
        assert_eq!(read_stderr(err_out, path.clone()).await, "");
        assert!(!path.exists());
    }
}
