//! An external judge of the answers to harmful prompts: any command (a Llama-Guard script, a
//! GPT-4 client) that reads one JSON object per line on stdin, `{"prompt": …, "answer": …}`,
//! and writes one label per line on stdout: `unsafe` or `safe` (`1`/`0` and `true`/`false`
//! also do). Its verdicts become their own metric beside the refusal keywords', so the two
//! can be compared on the same answers.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a judge may take over one evaluation's answers unless `judge_timeout` says
/// otherwise: a hung judge fails its trial instead of holding the sweep for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A configured judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judge {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The name its metric carries: `<name>_unsafe_rate`.
    pub name: String,
    /// Longest time it may take over one call of [`Judge::label`].
    pub timeout: Duration,
}

/// Why the judge gave no verdicts. Each message carries its cause once, as text.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The command could not be started.
    #[error("judge `{command}` cannot start: {error}")]
    Spawn {
        /// The program.
        command: String,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// Reading its verdicts or writing the answers failed.
    #[error("judge `{command}`: {error}")]
    Io {
        /// The program.
        command: String,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("judge `{command}` failed ({status}); its stderr is in the trial's log")]
    Failed {
        /// The program.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// It did not finish within its timeout, and was killed.
    #[error("judge `{command}` gave no verdicts within {limit} and was killed\nhelp: raise [trainer] judge_timeout if it needs longer (its stderr is in the trial's log)")]
    TimedOut {
        /// The program.
        command: String,
        /// The timeout, as written.
        limit: String,
    },
    /// A line that is not a label, or the wrong number of lines.
    #[error("judge `{command}`: {message}")]
    Output {
        /// The program.
        command: String,
        /// What was wrong.
        message: String,
    },
}

/// Why a judge's program cannot be run, found at `sweep run` before any trial trains.
#[derive(Debug, thiserror::Error)]
#[error("judge `{program}` {problem}")]
pub struct MissingProgram {
    /// The program as written.
    pub program: String,
    /// What is wrong and what to do.
    pub problem: String,
}

impl Judge {
    /// The judge a `[trainer]` table names, if any.
    pub fn from_config(
        command: Option<&Vec<String>>,
        name: Option<&str>,
        timeout: Duration,
    ) -> Option<Judge> {
        command.map(|command| Judge {
            command: command.clone(),
            name: name.unwrap_or("judge").to_string(),
            timeout,
        })
    }

    /// The metric its verdicts are reported as.
    pub fn metric(&self) -> String {
        format!("{}_unsafe_rate", self.name)
    }

    /// Finds the judge's program as a trial running in `workdir` will: a path with a `/` is
    /// taken from `workdir`, a bare name from `PATH`. Checked before anything is stored, so
    /// a typo does not surface only after every trial has trained.
    pub fn find_program(&self, workdir: &Path) -> Result<PathBuf, MissingProgram> {
        let program = &self.command[0];
        let missing = |problem: String| MissingProgram {
            program: program.clone(),
            problem,
        };
        let runnable = |path: &Path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let path = workdir.join(program);
            return if runnable(&path) {
                Ok(path)
            } else if path.exists() {
                Err(missing(format!(
                    "is not an executable file ({}); `chmod +x` it, or run it through its interpreter, e.g. [\"python3\", \"{program}\"]",
                    path.display()
                )))
            } else {
                Err(missing(format!(
                    "does not exist ({}); relative paths are read from {}",
                    path.display(),
                    workdir.display()
                )))
            };
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .map(|dir| dir.join(program))
            .find(|candidate| runnable(candidate))
            .ok_or_else(|| {
                missing(format!(
                    "is not on PATH ({}); install it, or give its path",
                    path_var.to_string_lossy()
                ))
            })
    }

    /// One verdict per `(prompt, answer)`: `true` for unsafe. The judge stays in the trial's
    /// process group, so whatever it starts dies with the trial; past its timeout the judge
    /// itself is killed and the trial fails.
    pub fn label(&self, items: &[(&str, &str)]) -> Result<Vec<bool>, JudgeError> {
        let program = self.command[0].clone();
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| JudgeError::Spawn {
                command: program.clone(),
                error,
            })?;
        let mut input = String::new();
        for (prompt, answer) in items {
            input.push_str(&serde_json::json!({"prompt": prompt, "answer": answer}).to_string());
            input.push('\n');
        }
        let deadline = Instant::now() + self.timeout;
        let mut stdin = child.stdin.take().expect("piped");
        // Written from a thread: a judge that answers line by line would otherwise fill its
        // stdout pipe while we still write its stdin.
        std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let stdout = child.stdout.take().expect("piped");
        let (read_tx, read_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = read_tx.send(read_verdicts(stdout));
        });
        let read = match read_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(read) => read,
            Err(_) => return Err(self.timed_out(&mut child)),
        };
        let verdicts = match read {
            Ok(verdicts) => verdicts,
            Err(Unreadable::Io(error)) => {
                kill_judge(&mut child);
                return Err(JudgeError::Io {
                    command: program,
                    error,
                });
            }
            Err(Unreadable::Label { line, text }) => {
                kill_judge(&mut child);
                return Err(JudgeError::Output {
                    command: program,
                    message: format!(
                        "line {line}: {text:?} is not a label (write `unsafe` or `safe`)"
                    ),
                });
            }
        };
        // A judge that exits without reading everything closes the pipe: its exit status and
        // the count of verdicts say what went wrong, not the broken pipe. One that closed its
        // stdout but runs on is waited for until its deadline.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => return Err(self.timed_out(&mut child)),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => {
                    return Err(JudgeError::Io {
                        command: program,
                        error,
                    })
                }
            }
        };
        if !status.success() {
            return Err(JudgeError::Failed {
                command: program,
                status,
            });
        }
        if verdicts.len() != items.len() {
            return Err(JudgeError::Output {
                command: program,
                message: format!(
                    "{} label(s) for {} answers; write one line per input line",
                    verdicts.len(),
                    items.len()
                ),
            });
        }
        Ok(verdicts)
    }

    fn timed_out(&self, child: &mut Child) -> JudgeError {
        kill_judge(child);
        JudgeError::TimedOut {
            command: self.command[0].clone(),
            limit: humantime::format_duration(self.timeout).to_string(),
        }
    }
}

/// Why the judge's stdout could not be read as labels.
enum Unreadable {
    Io(std::io::Error),
    Label { line: usize, text: String },
}

fn read_verdicts(stdout: impl std::io::Read) -> Result<Vec<bool>, Unreadable> {
    let mut verdicts = Vec::new();
    for (i, line) in BufReader::new(stdout).lines().enumerate() {
        let line = line.map_err(Unreadable::Io)?;
        match line.trim().to_ascii_lowercase().as_str() {
            "unsafe" | "1" | "true" => verdicts.push(true),
            "safe" | "0" | "false" => verdicts.push(false),
            other => {
                return Err(Unreadable::Label {
                    line: i + 1,
                    text: other.to_string(),
                })
            }
        }
    }
    Ok(verdicts)
}

/// Kills the judge and reaps it. What it started itself is in the trial's process group,
/// which sweep kills when the trial ends.
fn kill_judge(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(script: &str) -> Judge {
        Judge {
            command: vec!["sh".into(), "-c".into(), script.into()],
            name: "guard".into(),
            timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn labels_come_back_in_order() {
        // Unsafe when the answer mentions "sure".
        let j = judge(
            r#"while read -r l; do case "$l" in *Sure*) echo unsafe;; *) echo safe;; esac; done"#,
        );
        let items = [("a", "Sure, here"), ("b", "I cannot"), ("c", "Sure")];
        assert_eq!(j.label(&items).unwrap(), [true, false, true]);
        assert_eq!(j.metric(), "guard_unsafe_rate");
    }

    #[test]
    fn bad_judges_say_what_went_wrong() {
        let items = [("a", "x"), ("b", "y")];
        let e = judge("read -r l; echo maybe").label(&items).unwrap_err();
        assert!(e.to_string().contains("line 1: \"maybe\""), "{e}");
        let e = judge("cat > /dev/null; echo safe")
            .label(&items)
            .unwrap_err();
        assert!(e.to_string().contains("1 label(s) for 2 answers"), "{e}");
        let e = judge("exit 3").label(&items).unwrap_err();
        assert!(e.to_string().contains("failed"), "{e}");
        let e = Judge {
            command: vec!["/nonexistent/judge".into()],
            name: "j".into(),
            timeout: Duration::from_secs(20),
        }
        .label(&items)
        .unwrap_err();
        let message = e.to_string();
        assert!(message.contains("cannot start"), "{message}");
        assert_eq!(message.matches("No such file").count(), 1, "{message}");
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is printed once"
        );
    }

    /// A judge that never answers, or that closes its output and never exits, is killed at
    /// its timeout.
    #[test]
    fn a_hanging_judge_is_killed_at_its_timeout() {
        let items = [("a", "x")];
        for script in ["exec sleep 1003", "exec >&-; exec sleep 1003"] {
            let mut j = judge(script);
            j.timeout = Duration::from_millis(300);
            let started = Instant::now();
            let e = j.label(&items).unwrap_err();
            assert!(matches!(e, JudgeError::TimedOut { .. }), "{script}: {e}");
            assert!(e.to_string().contains("judge_timeout"), "{e}");
            assert!(started.elapsed() < Duration::from_secs(5), "{script}");
        }
    }

    #[test]
    fn the_program_is_found_before_any_trial_runs() {
        let dir = tempfile::tempdir().unwrap();
        let find = |program: &str| {
            Judge {
                command: vec![program.into()],
                name: "j".into(),
                timeout: DEFAULT_TIMEOUT,
            }
            .find_program(dir.path())
        };
        assert!(find("sh").is_ok());
        let e = find("no-such-judge-program").unwrap_err().to_string();
        assert!(e.contains("is not on PATH"), "{e}");
        let e = find("./judge.py").unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("relative paths"),
            "{e}"
        );
        std::fs::write(dir.path().join("judge.py"), "print('safe')").unwrap();
        let e = find("./judge.py").unwrap_err().to_string();
        assert!(e.contains("chmod +x"), "{e}");
    }
}
