//! SLURM's command-line client, called with a timeout and parsed from its plain output
//! (`--parsable`, `-h -o FORMAT`, `-P`), which is stable across SLURM versions where the JSON
//! output is not.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How long one client call may take before it counts as failed (a busy controller can be
/// slow; a dead one never answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a client call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The program is not installed here.
    #[error("`{0}` is not on PATH; --executor slurm runs where the SLURM client commands are (a cluster's login node)")]
    Missing(String),
    /// It did not answer in time.
    #[error("`{0}` did not answer within {1} s (is slurmctld up?)")]
    TimedOut(String, u64),
    /// It answered with an error.
    #[error("`{program}` failed: {message}")]
    Failed {
        /// The program.
        program: String,
        /// Its stderr (or exit status).
        message: String,
    },
}

/// Runs `program args`, returning its stdout and stderr on success.
pub(crate) async fn call(program: &str, args: &[String]) -> Result<(String, String), CliError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::Missing(program.to_string()),
        _ => CliError::Failed {
            program: program.to_string(),
            message: e.to_string(),
        },
    })?;
    let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| CliError::TimedOut(program.to_string(), CALL_TIMEOUT.as_secs()))?
        .map_err(|e| CliError::Failed {
            program: program.to_string(),
            message: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(CliError::Failed {
            program: program.to_string(),
            message: if stderr.is_empty() {
                format!("exited with {}", out.status)
            } else {
                stderr
            },
        })
    }
}

/// The job id in `sbatch --parsable` output (`id` or `id;cluster`).
pub(crate) fn parse_submitted(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// A job as `squeue -h -o '%i|%T|%N'` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// `%T`: PENDING, RUNNING, COMPLETING, ...
    pub state: String,
    /// `%N`: the node list, empty while pending.
    pub nodes: String,
}

/// The `squeue` format [`parse_squeue`] reads.
pub(crate) const SQUEUE_FORMAT: &str = "%i|%T|%N";

/// Parses `squeue -h -o '%i|%T|%N'` lines into jobs by id.
pub(crate) fn parse_squeue(stdout: &str) -> HashMap<String, Listed> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, '|');
            let id = fields.next()?.trim();
            let state = fields.next()?.trim();
            let nodes = fields.next().unwrap_or("").trim();
            (!id.is_empty()).then(|| {
                (
                    id.to_string(),
                    Listed {
                        state: state.to_string(),
                        nodes: nodes.to_string(),
                    },
                )
            })
        })
        .collect()
}

/// Whether `squeue -j` failed only because none of the ids is known any more (they all
/// ended and were purged): an empty listing, not an outage.
pub(crate) fn no_such_jobs(error: &CliError) -> bool {
    matches!(error, CliError::Failed { message, .. } if message.contains("Invalid job id"))
}

/// How a job ended, as SLURM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    /// COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, ...
    pub state: String,
    /// The exit code of the batch script (the trial's command, which it execs).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The node(s) it ran on, where SLURM still says.
    pub nodes: Option<String>,
}

/// Parses SLURM's `ExitCode` (`code:signal`).
fn parse_exit(text: &str) -> Option<(i32, Option<i32>)> {
    let (code, signal) = text.trim().split_once(':')?;
    let code = code.parse().ok()?;
    let signal: i32 = signal.parse().ok()?;
    Some((code, (signal != 0).then_some(signal)))
}

/// The end of a job in `scontrol show job -o ID` output (`JobState=... ExitCode=a:b`);
/// `None` while it has not ended.
pub(crate) fn parse_scontrol(stdout: &str) -> Option<Ending> {
    let mut state = None;
    let mut exit = None;
    let mut nodes = None;
    for field in stdout.split_whitespace() {
        if let Some(s) = field.strip_prefix("JobState=") {
            state = Some(s.to_string());
        } else if let Some(e) = field.strip_prefix("ExitCode=") {
            exit = parse_exit(e);
        } else if let Some(n) = field.strip_prefix("NodeList=") {
            nodes = (n != "(null)" && !n.is_empty()).then(|| n.to_string());
        }
    }
    let mut ending = ended(state?, exit?)?;
    ending.nodes = nodes;
    Some(ending)
}

/// The end of a job in `sacct -P -n -X -o State,ExitCode -j ID` output (`CANCELLED by 0|0:15`).
pub(crate) fn parse_sacct(stdout: &str) -> Option<Ending> {
    let line = stdout.lines().find(|l| !l.trim().is_empty())?;
    let (state, exit) = line.trim().split_once('|')?;
    let state = state.split_whitespace().next()?.to_string();
    ended(state, parse_exit(exit)?)
}

fn ended(state: String, (exit_code, signal): (i32, Option<i32>)) -> Option<Ending> {
    (!is_active(&state)).then_some(Ending {
        state,
        exit_code,
        signal,
        nodes: None,
    })
}

/// Whether a job in `state` is still queued or running (not ended).
pub(crate) fn is_active(state: &str) -> bool {
    is_queued(state)
        || matches!(
            state,
            "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
        )
}

/// Whether a job in `state` waits to start (its timeout has not begun).
pub(crate) fn is_queued(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT"
    )
}

/// Quotes `text` for a POSIX shell.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitted_ids_are_read_with_or_without_a_cluster() {
        assert_eq!(parse_submitted("1234\n").as_deref(), Some("1234"));
        assert_eq!(
            parse_submitted("1234;gpu-cluster\n").as_deref(),
            Some("1234")
        );
        assert_eq!(parse_submitted("sbatch: error\n"), None);
        assert_eq!(parse_submitted(""), None);
    }

    #[test]
    fn squeue_lines_give_state_and_nodes() {
        let jobs = parse_squeue("12|RUNNING|node01\n13|PENDING|\n\n");
        assert_eq!(jobs["12"].state, "RUNNING");
        assert_eq!(jobs["12"].nodes, "node01");
        assert_eq!(jobs["13"].nodes, "");
        assert_eq!(jobs.len(), 2);
    }

    #[test]
    fn scontrol_gives_the_end_only_once_the_job_ended() {
        let done = "JobId=7 JobName=sweep-x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                    Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 ExitCode=3:0 RunTime=00:00:01";
        assert_eq!(
            parse_scontrol(done),
            Some(Ending {
                state: "FAILED".into(),
                exit_code: 3,
                signal: None,
                nodes: None
            })
        );
        let killed = "JobId=8 JobState=CANCELLED Reason=None ExitCode=0:9 NodeList=gpu07";
        let killed = parse_scontrol(killed).unwrap();
        assert_eq!(killed.signal, Some(9));
        assert_eq!(killed.nodes.as_deref(), Some("gpu07"));
        assert_eq!(
            parse_scontrol("JobId=9 JobState=RUNNING Reason=None ExitCode=0:0"),
            None
        );
        assert_eq!(
            parse_scontrol("slurm_load_jobs error: Invalid job id"),
            None
        );
    }

    #[test]
    fn sacct_states_lose_their_by_clause() {
        let end = parse_sacct("CANCELLED by 0|0:15\n").unwrap();
        assert_eq!(end.state, "CANCELLED");
        assert_eq!(end.signal, Some(15));
        assert_eq!(parse_sacct("COMPLETED|0:0").unwrap().exit_code, 0);
        assert_eq!(parse_sacct("RUNNING|0:0"), None);
        assert_eq!(parse_sacct(""), None);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn a_missing_program_says_where_to_run() {
        let e = call("sweep-no-such-sbatch", &[]).await.unwrap_err();
        assert!(matches!(e, CliError::Missing(_)), "{e}");
        assert!(e.to_string().contains("login node"), "{e}");
        let e = call("sh", &["-c".into(), "echo nope >&2; exit 1".into()])
            .await
            .unwrap_err();
        assert_eq!(
            e,
            CliError::Failed {
                program: "sh".into(),
                message: "nope".into()
            }
        );
    }
}
