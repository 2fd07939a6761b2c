//! The SLURM executor: each attempt is one batch job (`sbatch --parsable --no-requeue`) that
//! runs a generated script which sets the trial's environment and execs its command. One
//! poller per orchestrator watches all of its jobs with a single `squeue` call a tick;
//! events are read by tailing the job's stdout file, which SLURM writes on the shared file
//! system. SLURM never requeues a job itself: a preempted, cancelled or failed job comes back
//! as an ended attempt, and sweep's own store decides what runs next, so a trial is never run
//! by two jobs at once and resumes from its checkpoint.

mod cli;
mod spec;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sweep_core::{Grid, GridError};
use sweep_store::Orphan;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use cli::CliError;
pub(crate) use spec::{SlurmSpec, TABLE};

use super::{Executor, JobRef, JobUpdate, RunningJob};
use crate::attempt::{read_stdout, tail_text, AttemptReport, Launch, Message, STDERR_TAIL_BYTES};
use crate::SchedulerError;
use cli::{call, shell_quote, Ending};
use watch::{JobState, Watcher};

/// One SLURM batch job per attempt: submits and watches this orchestrator's jobs.
pub struct Slurm {
    spec: SlurmSpec,
    /// `--gres` for every job (`[slurm].gres`, else `gpu:N` for `gpus_per_trial = N`).
    gres: Option<String>,
    /// `--time` for every job (`[slurm].time`, else timeout plus grace).
    time: Option<String>,
    watcher: Arc<Watcher>,
}

/// The name of the job that runs `attempt` of `trial_id`: unique, so that a job whose id was
/// never recorded (its orchestrator died right after `sbatch`) can still be found and
/// cancelled by name.
fn job_name(trial_id: &str, attempt: u32) -> String {
    format!("sweep-{trial_id}-{attempt}")
}

impl Slurm {
    /// The executor of a grid: its `[slurm]` table, `gpus_per_trial`, `timeout` and `grace`.
    pub(crate) fn for_grid(grid: &Grid) -> Result<Slurm, GridError> {
        Ok(Slurm::new(
            SlurmSpec::from_grid(grid)?,
            grid.gpus_per_trial,
            grid.timeout,
            grid.grace,
        ))
    }

    /// An executor for a grid with `spec`, `gpus_per_trial` and `timeout`/`grace`.
    pub(crate) fn new(
        spec: SlurmSpec,
        gpus_per_trial: usize,
        timeout: Option<Duration>,
        grace: Duration,
    ) -> Slurm {
        let gres = spec
            .gres
            .clone()
            .or_else(|| (gpus_per_trial > 0).then(|| format!("gpu:{gpus_per_trial}")));
        let time = spec
            .time
            .clone()
            .or_else(|| timeout.map(|t| time_limit(t + grace)));
        let watcher = Watcher::new(spec.poll);
        Slurm {
            spec,
            gres,
            time,
            watcher,
        }
    }

    /// The `sbatch` options every job of the sweep gets.
    fn options(&self) -> Vec<String> {
        let s = &self.spec;
        let mut args = vec!["--parsable".to_string(), "--no-requeue".to_string()];
        let mut opt = |name: &str, value: Option<&String>| {
            if let Some(v) = value {
                args.push(format!("--{name}={v}"));
            }
        };
        opt("partition", s.partition.as_ref());
        opt("account", s.account.as_ref());
        opt("qos", s.qos.as_ref());
        opt("time", self.time.as_ref());
        opt("gres", self.gres.as_ref());
        opt(
            "cpus-per-task",
            s.cpus_per_task.map(|n| n.to_string()).as_ref(),
        );
        opt("mem", s.mem.as_ref());
        args.extend(s.extra.iter().cloned());
        args
    }

    /// Asks SLURM whether it would accept the sweep's jobs (`sbatch --test-only`), so that a
    /// bad partition, account or limit is reported before any trial is claimed.
    async fn test_only(&self) -> Result<(), CliError> {
        let mut args = self.options();
        args.retain(|a| a != "--parsable");
        args.extend(["--test-only".into(), "--wrap=true".into()]);
        call("sbatch", &args).await.map(drop)
    }

    /// Cancels jobs now (SLURM sends TERM, then KILL after its KillWait).
    async fn cancel(ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = call("scancel", ids).await {
            tracing::warn!("cannot cancel SLURM job(s) {}: {e}", ids.join(","));
        }
    }

    /// Cancels what a taken-back trial's attempt left queued or running: its recorded job,
    /// and any job of that attempt's name (submitted, but its id never recorded). Returns
    /// false where there is no SLURM client to ask.
    /// It waits (a minute at most) until the job has left the queue, so that the trial's
    /// next job never runs beside it in the same directory.
    async fn cancel_orphan(job_id: Option<&str>, trial_id: &str, attempt: u32) -> bool {
        let name = format!("--name={}", job_name(trial_id, attempt));
        let mut args = vec![name.clone()];
        args.extend(job_id.map(str::to_string));
        match call("scancel", &args).await {
            Ok(_) => {}
            Err(CliError::Missing(_)) => return false,
            Err(e) => {
                tracing::warn!("cannot cancel the SLURM job of trial {trial_id}: {e}");
                return true;
            }
        }
        let listed = ["-h".to_string(), "-o".into(), "%i".into(), name];
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            match call("squeue", &listed).await {
                Ok((out, _)) if out.trim().is_empty() => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(_) => break,
            }
        }
        true
    }

    /// Cancels the recorded job of a taken-back trial's attempt (and any job of that
    /// attempt's name), saying so.
    pub(crate) async fn clean_up(job_id: &str, orphan: &Orphan) -> Vec<String> {
        let attempt = u32::try_from(orphan.attempt).unwrap_or(0);
        if Slurm::cancel_orphan(Some(job_id), &orphan.trial_id, attempt).await {
            vec![format!(
                "cancelled leftover SLURM job {job_id} of trial {}",
                orphan.trial_id
            )]
        } else {
            Vec::new()
        }
    }
}

impl Executor for Slurm {
    type Job = SlurmJob;
    const NAME: &'static str = "slurm";

    async fn check(&self) -> Result<(), SchedulerError> {
        self.test_only()
            .await
            .map_err(|e| SchedulerError::Rejected {
                executor: Self::NAME,
                message: e.to_string(),
                help: "fix the grid's [slurm] table (partition, account, qos, time, gres; \
                       `sinfo` lists partitions)",
            })
    }

    fn leases_gpus(&self) -> bool {
        false
    }

    /// SLURM sets it for a job that asks for GPUs through GRES; a job that asks for none
    /// gets it empty, so the login node's value does not leak in.
    fn visible_devices(&self, _gpus: &[String]) -> Option<String> {
        match self.gres {
            Some(_) => None,
            None => Some(String::new()),
        }
    }

    async fn submit(
        &self,
        launch: &Launch,
        tx: mpsc::UnboundedSender<Message>,
    ) -> Result<SlurmJob, AttemptReport> {
        let files = JobFiles::create(launch, &self.spec.setup)
            .await
            .map_err(|e| AttemptReport {
                spawn_error: Some(e),
                ..AttemptReport::default()
            })?;
        let name = job_name(&launch.trial_id, launch.attempt);
        let mut args = self.options();
        args.extend([
            format!("--job-name={name}"),
            format!("--chdir={}", launch.workdir.display()),
            format!("--output={}", literal_path(&files.output)),
            format!("--error={}", literal_path(&files.stderr)),
            files.script.display().to_string(),
        ]);
        let rejected = |why: String| AttemptReport {
            rejected: Some(why),
            ..AttemptReport::default()
        };
        let job_id = match call("sbatch", &args)
            .await
            .map(|(out, _)| cli::parse_submitted(&out))
        {
            Ok(Some(id)) => id,
            Ok(None) => return Err(rejected("sbatch printed no job id".into())),
            Err(e) => {
                if matches!(e, CliError::TimedOut(..)) {
                    // It may have been submitted all the same: such a job must not run
                    // unwatched beside the next attempt.
                    let _ = call("scancel", &[format!("--name={name}")]).await;
                }
                return Err(rejected(e.to_string()));
            }
        };
        let state = self.watcher.watch(&job_id);
        let (tail_done, tail_stop) = tokio::sync::watch::channel(false);
        let (pipe_in, pipe_out) = tokio::io::duplex(64 * 1024);
        let tail = tokio::spawn(tail_file(files.output.clone(), pipe_in, tail_stop));
        let events = tokio::spawn(read_stdout(
            pipe_out,
            files.stdout_log,
            launch.trial_id.clone(),
            launch.attempt,
            tx,
        ));
        Ok(SlurmJob {
            job_id,
            state,
            started: false,
            ending: None,
            cancelled_by_us: false,
            tail_done,
            tail,
            events,
            output: files.output,
            stderr: files.stderr,
        })
    }

    async fn kill(&self, jobs: &[JobRef]) {
        let ids: Vec<String> = jobs
            .iter()
            .filter_map(|job| match job {
                JobRef::Job { id, .. } => Some(id.clone()),
                JobRef::Process(_) => None,
            })
            .collect();
        Slurm::cancel(&ids).await;
    }

    /// A job submitted for the attempt whose id was never recorded (its runner died right
    /// after `sbatch`) is found by its name and cancelled.
    async fn clean_up_unrecorded(&self, orphan: &Orphan) -> Vec<String> {
        if orphan.pid.is_none() {
            let attempt = u32::try_from(orphan.attempt).unwrap_or(0);
            Slurm::cancel_orphan(None, &orphan.trial_id, attempt).await;
        }
        Vec::new()
    }
}

/// One attempt's SLURM job, watched through the orchestrator's poller; its events are read
/// by tailing the job's stdout file.
pub(crate) struct SlurmJob {
    job_id: String,
    state: tokio::sync::watch::Receiver<JobState>,
    /// Whether [`RunningJob::next`] has said it runs.
    started: bool,
    /// How it ended, once it has.
    ending: Option<Ending>,
    cancelled_by_us: bool,
    tail_done: tokio::sync::watch::Sender<bool>,
    tail: JoinHandle<()>,
    events: JoinHandle<Vec<String>>,
    output: PathBuf,
    stderr: PathBuf,
}

impl RunningJob for SlurmJob {
    fn job_ref(&self) -> JobRef {
        JobRef::Job {
            executor: Slurm::NAME,
            id: self.job_id.clone(),
        }
    }

    async fn next(&mut self) -> JobUpdate {
        loop {
            if let Some(ending) = &self.ending {
                if let (false, Some(node)) = (self.started, &ending.nodes) {
                    // It ran between two polls.
                    self.started = true;
                    return JobUpdate::Running {
                        node: Some(node.clone()),
                    };
                }
                return JobUpdate::Ended;
            }
            if self.state.changed().await.is_err() {
                self.ending = Some(Ending {
                    state: "UNKNOWN".into(),
                    exit_code: 0,
                    signal: None,
                    nodes: None,
                });
                continue;
            }
            let now = self.state.borrow_and_update().clone();
            match now {
                JobState::Queued => {}
                JobState::Running { node } => {
                    if !self.started {
                        self.started = true;
                        return JobUpdate::Running { node: Some(node) };
                    }
                }
                JobState::Ended(ending) => self.ending = Some(ending),
            }
        }
    }

    async fn terminate(&mut self) {
        signal(&self.job_id, "TERM").await;
    }

    async fn kill(&mut self) {
        self.cancelled_by_us = true;
        Slurm::cancel(std::slice::from_ref(&self.job_id)).await;
    }

    async fn finish(self, report: &mut AttemptReport) {
        let _ = self.tail_done.send(true);
        let _ = self.tail.await;
        report.invalid_events = self.events.await.unwrap_or_default();
        report.stderr_tail = read_tail(&self.stderr).await;
        let ending = self.ending.unwrap_or(Ending {
            state: "UNKNOWN".into(),
            exit_code: 0,
            signal: None,
            nodes: None,
        });
        describe(report, &ending, &self.job_id, self.cancelled_by_us);
        let ran = self.started || ending.nodes.is_some();
        if ran && report.reason.is_none() && !self.output.exists() {
            report.reason = Some(format!(
                "SLURM job {} ran but its output {} never appeared here: the trials \
                 directory must be on a file system the compute nodes share (--trials-dir)",
                self.job_id,
                self.output.display()
            ));
        }
    }
}

/// Sends `signal` to a job's batch script and everything it started.
async fn signal(job_id: &str, signal: &str) {
    let args = [
        "--full".to_string(),
        format!("--signal={signal}"),
        job_id.to_string(),
    ];
    if let Err(e) = call("scancel", &args).await {
        tracing::warn!("cannot send {signal} to SLURM job {job_id}: {e}");
    }
}

/// Fills in the report of an attempt from how its job ended.
fn describe(report: &mut AttemptReport, ending: &Ending, job_id: &str, cancelled_by_us: bool) {
    let Ending {
        state,
        exit_code,
        signal,
        ..
    } = ending;
    match signal {
        Some(s) => report.signal = Some(*s),
        None => report.exit_code = Some(*exit_code),
    }
    let why = match state.as_str() {
        "COMPLETED" | "FAILED" => return,
        "CANCELLED" if cancelled_by_us || report.interrupted || report.timed_out => return,
        "TIMEOUT" => {
            report.timed_out = true;
            format!("SLURM job {job_id} reached its time limit (raise [slurm].time)")
        }
        "OUT_OF_MEMORY" => {
            report.exit_code = None;
            format!("SLURM job {job_id} ran out of memory (raise [slurm].mem)")
        }
        // Not the trial's doing: it goes back to the queue without using an attempt, and
        // resumes from its checkpoint.
        "CANCELLED" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" => {
            report.interrupted = true;
            let what = match state.as_str() {
                "CANCELLED" => "was cancelled outside sweep".to_string(),
                "PREEMPTED" => "was preempted".to_string(),
                "NODE_FAIL" | "BOOT_FAIL" => "lost its node".to_string(),
                other => format!("ended as {other}"),
            };
            format!("SLURM job {job_id} {what}; the trial is requeued")
        }
        "UNKNOWN" => {
            report.exit_code = None;
            format!("SLURM no longer knows job {job_id} (neither squeue, scontrol nor sacct); its end is unknown")
        }
        other => {
            report.exit_code = None;
            format!("SLURM job {job_id} ended as {other}")
        }
    };
    report.reason = Some(why);
}

/// The files of one attempt's job, under the trial's `logs/`.
struct JobFiles {
    script: PathBuf,
    /// The job's raw stdout, written by SLURM (events and output).
    output: PathBuf,
    /// Its stderr, written by SLURM.
    stderr: PathBuf,
    /// The stdout lines that are not events, as for a local attempt.
    stdout_log: tokio::fs::File,
}

impl JobFiles {
    async fn create(launch: &Launch, setup: &[String]) -> Result<JobFiles, String> {
        let dir = &launch.log_dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let stem = dir.join(format!("attempt-{}", launch.attempt));
        let script = stem.with_extension("sbatch");
        let output = stem.with_extension("job.out");
        let stderr = stem.with_extension("stderr.log");
        // A retry of the same attempt number (after a lost run) starts from empty files.
        for stale in [&output, &stderr] {
            let _ = tokio::fs::remove_file(stale).await;
        }
        let write = async {
            let mut file = tokio::fs::File::create(&script).await?;
            file.write_all(job_script(launch, setup).as_bytes()).await?;
            file.flush().await
        };
        write
            .await
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let stdout_log = tokio::fs::File::create(stem.with_extension("stdout.log"))
            .await
            .map_err(|e| format!("cannot create log files in {}: {e}", dir.display()))?;
        Ok(JobFiles {
            script,
            output,
            stderr,
            stdout_log,
        })
    }
}

/// The batch script: the trial's environment, the `[slurm] setup` lines (any failing ends
/// the job with its status), then its command in place of the shell, so that SLURM's signals
/// reach the trial itself.
fn job_script(launch: &Launch, setup: &[String]) -> String {
    let mut script = String::from("#!/bin/sh\n# Written by sweep for one attempt of one trial.\n");
    for (name, value) in &launch.env {
        script.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    if !setup.is_empty() {
        script.push_str(&format!(
            "cd {} || exit\n",
            shell_quote(&launch.workdir.display().to_string())
        ));
        for line in setup {
            script.push_str(&format!("{line} || exit\n"));
        }
    }
    let mut argv = launch.argv.clone();
    // Relative to the working directory, as for a local attempt.
    let program = PathBuf::from(&argv[0]);
    if program.is_relative() && program.components().count() > 1 {
        argv[0] = launch.workdir.join(program).display().to_string();
    }
    let command: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    script.push_str(&format!("exec {}\n", command.join(" ")));
    script
}

/// A path as `sbatch --output` reads it literally: `%` starts a pattern there (`%j`), `%%` is
/// a percent sign.
fn literal_path(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

/// A `--time` value in whole minutes, at least one, covering `limit`.
fn time_limit(limit: Duration) -> String {
    limit.as_secs().div_ceil(60).max(1).to_string()
}

/// Copies a growing file into `pipe` until `done`, then whatever is left, then closes it.
async fn tail_file(
    path: PathBuf,
    mut pipe: tokio::io::DuplexStream,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    const IDLE: Duration = Duration::from_millis(200);
    let mut file: Option<tokio::fs::File> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let finished = *done.borrow();
        if file.is_none() {
            file = tokio::fs::File::open(&path).await.ok();
        }
        let mut read_any = false;
        if let Some(f) = file.as_mut() {
            loop {
                match f.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        read_any = true;
                        if pipe.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if finished {
            let _ = pipe.shutdown().await;
            return;
        }
        if !read_any {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = done.changed() => {}
            }
        }
    }
}

/// The last few KiB of a file, as a stderr tail.
async fn read_tail(path: &Path) -> String {
    let Ok(bytes) = tokio::fs::read(path).await else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    tail_text(bytes[start..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            trial_id: "t1".into(),
            attempt: 2,
            argv: vec!["./bin/train".into(), "--lr".into(), "it's 0.1".into()],
            env: vec![("SWEEP_PARAMS".into(), r#"{"lr":0.1}"#.into())],
            workdir: PathBuf::from("/work/dir"),
            log_dir: PathBuf::from("/work/dir/logs"),
            timeout: Some(Duration::from_secs(90)),
            grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn setup_lines_run_before_the_trial_and_stop_the_job_when_they_fail() {
        let setup = [
            "module load cuda/12.1".to_string(),
            ". venv/bin/activate".to_string(),
        ];
        let script = job_script(&launch(), &setup);
        let cd = script
            .find("cd '/work/dir' || exit\n")
            .expect("in the working directory");
        let module = script
            .find("module load cuda/12.1 || exit\n")
            .expect("the first line");
        let venv = script
            .find(". venv/bin/activate || exit\n")
            .expect("the second line");
        let exec = script.find("exec ").unwrap();
        assert!(script.find("export SWEEP_PARAMS").unwrap() < cd);
        assert!(cd < module && module < venv && venv < exec, "{script}");
    }

    #[test]
    fn the_script_exports_the_environment_and_execs_the_command() {
        let script = job_script(&launch(), &[]);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains("export SWEEP_PARAMS='{\"lr\":0.1}'\n"),
            "{script}"
        );
        assert!(
            script.ends_with("exec '/work/dir/./bin/train' '--lr' 'it'\\''s 0.1'\n"),
            "{script}"
        );
    }

    #[test]
    fn options_come_from_the_slurm_table_or_the_grid() {
        let spec = SlurmSpec {
            partition: Some("gpu".into()),
            cpus_per_task: Some(4),
            extra: vec!["--exclusive".into()],
            ..SlurmSpec::default()
        };
        let slurm = Slurm::new(
            spec,
            2,
            Some(Duration::from_secs(90)),
            Duration::from_secs(10),
        );
        assert_eq!(
            slurm.options(),
            [
                "--parsable",
                "--no-requeue",
                "--partition=gpu",
                "--time=2",
                "--gres=gpu:2",
                "--cpus-per-task=4",
                "--exclusive"
            ]
        );
        let spec = SlurmSpec {
            gres: Some("gpu:a100:1".into()),
            time: Some("04:00:00".into()),
            ..SlurmSpec::default()
        };
        let slurm = Slurm::new(spec, 1, None, Duration::from_secs(10));
        assert_eq!(
            slurm.options()[2..],
            ["--time=04:00:00", "--gres=gpu:a100:1"]
        );
        let slurm = Slurm::new(SlurmSpec::default(), 0, None, Duration::from_secs(10));
        assert_eq!(slurm.options(), ["--parsable", "--no-requeue"]);
    }

    #[test]
    fn output_paths_keep_their_percent_signs() {
        assert_eq!(literal_path(Path::new("/s/100%/out")), "/s/100%%/out");
    }

    #[test]
    fn time_limits_round_up_to_whole_minutes() {
        assert_eq!(time_limit(Duration::from_secs(1)), "1");
        assert_eq!(time_limit(Duration::from_secs(60)), "1");
        assert_eq!(time_limit(Duration::from_secs(61)), "2");
    }

    #[test]
    fn endings_map_to_outcomes() {
        let end = |state: &str, exit_code, signal| Ending {
            state: state.into(),
            exit_code,
            signal,
            nodes: None,
        };
        let mut r = AttemptReport::default();
        describe(&mut r, &end("COMPLETED", 0, None), "5", false);
        assert_eq!((r.exit_code, r.reason.as_deref()), (Some(0), None));

        let mut r = AttemptReport::default();
        describe(&mut r, &end("FAILED", 0, Some(9)), "5", false);
        assert_eq!((r.exit_code, r.signal), (None, Some(9)));

        let mut r = AttemptReport::default();
        describe(&mut r, &end("PREEMPTED", 0, Some(15)), "5", false);
        assert!(r.interrupted && r.reason.unwrap().contains("preempted"));

        let mut r = AttemptReport::default();
        describe(&mut r, &end("CANCELLED", 0, Some(15)), "5", false);
        assert!(r.interrupted && r.reason.unwrap().contains("outside sweep"));

        let mut r = AttemptReport {
            interrupted: true,
            ..AttemptReport::default()
        };
        describe(&mut r, &end("CANCELLED", 0, Some(15)), "5", true);
        assert!(r.interrupted && r.reason.is_none());

        let mut r = AttemptReport::default();
        describe(&mut r, &end("TIMEOUT", 0, Some(15)), "5", false);
        assert!(r.timed_out && r.reason.unwrap().contains("time limit"));
    }

    #[tokio::test]
    async fn a_tailed_file_arrives_whole_once_done() {
        let dir = std::env::temp_dir().join(format!("sweep-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out");
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let (pipe_in, mut pipe_out) = tokio::io::duplex(16);
        let tail = tokio::spawn(tail_file(path.clone(), pipe_in, done_rx));
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut pipe_out, &mut text)
                .await
                .unwrap();
            text
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, "first line\n").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"second line, long enough to fill the pipe\n").unwrap();
        done_tx.send(true).unwrap();
        tail.await.unwrap();
        assert_eq!(
            reader.await.unwrap(),
            "first line\nsecond line, long enough to fill the pipe\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
