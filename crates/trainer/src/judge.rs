//! An external judge of the answers to harmful prompts: any command (a Llama-Guard script, a
//! GPT-4 client) that reads one JSON object per line on stdin, `{"prompt": …, "answer": …}`,
//! and writes one label per line on stdout: `unsafe` or `safe` (`1`/`0` and `true`/`false`
//! also do). Its verdicts become their own metric beside the refusal keywords', so the two
//! can be compared on the same answers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// A configured judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judge {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The name its metric carries: `<name>_unsafe_rate`.
    pub name: String,
}

/// Why the judge gave no verdicts.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The command could not be started.
    #[error("judge `{command}` cannot start: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading its verdicts or writing the answers failed.
    #[error("judge `{command}`: {source}")]
    Io {
        /// The program.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("judge `{command}` failed ({status}); its stderr is in the trial's log")]
    Failed {
        /// The program.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
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

impl Judge {
    /// The judge a `[trainer]` table names, if any.
    pub fn from_config(command: Option<&Vec<String>>, name: Option<&str>) -> Option<Judge> {
        command.map(|command| Judge {
            command: command.clone(),
            name: name.unwrap_or("judge").to_string(),
        })
    }

    /// The metric its verdicts are reported as.
    pub fn metric(&self) -> String {
        format!("{}_unsafe_rate", self.name)
    }

    /// One verdict per `(prompt, answer)`: `true` for unsafe.
    pub fn label(&self, items: &[(&str, &str)]) -> Result<Vec<bool>, JudgeError> {
        let program = self.command[0].clone();
        let io = |source| JudgeError::Io {
            command: program.clone(),
            source,
        };
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| JudgeError::Spawn {
                command: program.clone(),
                source,
            })?;
        let mut input = String::new();
        for (prompt, answer) in items {
            input.push_str(&serde_json::json!({"prompt": prompt, "answer": answer}).to_string());
            input.push('\n');
        }
        let mut stdin = child.stdin.take().expect("piped");
        // Written from a thread: a judge that answers line by line would otherwise fill its
        // stdout pipe while we still write its stdin.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let stdout = child.stdout.take().expect("piped");
        let mut verdicts = Vec::with_capacity(items.len());
        for (i, line) in BufReader::new(stdout).lines().enumerate() {
            let line = line.map_err(io)?;
            let verdict = match line.trim().to_ascii_lowercase().as_str() {
                "unsafe" | "1" | "true" => true,
                "safe" | "0" | "false" => false,
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(JudgeError::Output {
                        command: program,
                        message: format!(
                            "line {}: {other:?} is not a label (write `unsafe` or `safe`)",
                            i + 1
                        ),
                    });
                }
            };
            verdicts.push(verdict);
        }
        // A judge that exits without reading everything closes the pipe: its exit status and
        // the count of verdicts say what went wrong, not the broken pipe.
        let _ = writer.join();
        let status = child.wait().map_err(io)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(script: &str) -> Judge {
        Judge {
            command: vec!["sh".into(), "-c".into(), script.into()],
            name: "guard".into(),
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
        }
        .label(&items)
        .unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
    }
}
