//! `--executor slurm` against a real SLURM cluster (`scripts/slurm-local start`: munged,
//! slurmctld and slurmd on this machine, 8 CPU slots, two fake GPUs through GRES). The tests
//! are ignored by default; `.ci/run` runs them with `SLURM_CONF` set, on the PostgreSQL
//! server when `SWEEP_TEST_POSTGRES` names one.

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{assert_code, text, wait_for, Project, TRIAL_SH};

/// The cluster's configuration; a test that needs SLURM fails without it.
fn cluster() -> String {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty() && std::path::Path::new(&conf).exists(),
        "SLURM_CONF is not set to a cluster's slurm.conf: start one with \
         `export SLURM_CONF=$(scripts/slurm-local start)`"
    );
    conf
}

/// A SLURM client command's stdout (it must succeed).
fn slurm(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The ids of the sweep's jobs still in the queue, found by the names sweep gives them.
fn queued_jobs(p: &Project) -> Vec<String> {
    let trials: BTreeSet<String> = p.sql("SELECT id FROM trials").into_iter().collect();
    slurm("squeue", &["-h", "-o", "%i|%j"])
        .lines()
        .filter_map(|line| {
            let (id, name) = line.split_once('|')?;
            let trial = name.strip_prefix("sweep-")?.rsplit_once('-')?.0;
            trials.contains(trial).then(|| id.to_string())
        })
        .collect()
}

/// Writes `g.toml` for `TRIAL_SH` over `lr` × `seed` with `extra` in `[sweep]`, polled fast.
fn grid(p: &Project, name: &str, lrs: usize, extra: &str, slurm: &str) {
    p.write("trial.sh", TRIAL_SH);
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"{name}\"\ncommand = [\"sh\", \"trial.sh\", \"{{lr}}\", \"{{seed}}\"]\n{extra}\n\
             [grid]\nlr = {{ lin = [0.1, 1.0], num = {lrs} }}\nseed = [0, 1]\n\
             [slurm]\npoll = \"300ms\"\n{slurm}\n"
        ),
    );
}

/// Starts `sweep run g.toml --executor slurm` with trials sleeping `sleep` seconds.
fn start(p: &Project, sleep: &str) -> Child {
    cluster();
    p.sweep(&["run", "g.toml", "--executor", "slurm"])
        .env("LOG_DIR", p.path())
        .env("SLEEP", sleep)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_to_end(p: &Project, sleep: &str) -> Output {
    start(p, sleep).wait_with_output().unwrap()
}

/// Every trial completed, each by exactly one attempt that ran to its end.
fn assert_each_ran_once(p: &Project, trials: usize) {
    let runs = p.lines("runs.log");
    let unique: BTreeSet<_> = runs.iter().collect();
    assert_eq!(unique.len(), trials, "{runs:?}");
    assert_eq!(runs.len(), trials, "a trial ran to its end twice: {runs:?}");
    let rows = p.export();
    assert_eq!(rows.len(), trials);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "completed" && !r["metric_score"].is_empty()),
        "{rows:?}"
    );
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn a_twenty_trial_sweep_runs_every_trial_once_as_its_own_job() {
    let p = Project::new();
    grid(&p, "slurm-twenty", 10, "parallel = 8", "");
    let out = run_to_end(&p, "0.5");
    assert_code(&out, 0);
    assert_each_ran_once(&p, 20);
    assert!(p.export().iter().all(|r| r["attempts"] == "1"));
    // One job per attempt, each recorded with the node it ran on.
    let jobs: BTreeSet<String> = p
        .sql("SELECT job_id || '@' || node FROM attempts")
        .into_iter()
        .collect();
    assert_eq!(jobs.len(), 20, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.ends_with("@localhost")), "{jobs:?}");
    let status = p.run(&["status", "slurm-twenty"]);
    assert!(
        text(&status.stdout).contains("@localhost"),
        "{}",
        text(&status.stdout)
    );
    assert!(queued_jobs(&p).is_empty());
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn a_job_killed_mid_trial_is_requeued_and_resumes_from_its_checkpoint() {
    let p = Project::new();
    // The first attempt checkpoints, then waits to be killed; a resumed one finishes at once.
    p.write(
        "trial.sh",
        r#"#!/bin/sh
echo "start $SWEEP_ATTEMPT $SWEEP_RESUME" >> "$LOG_DIR/starts.log"
if [ "$SWEEP_RESUME" = 1 ] && [ -f "$SWEEP_TRIAL_DIR/ckpt" ]; then
  from=$(cat "$SWEEP_TRIAL_DIR/ckpt")
else
  echo 5 > "$SWEEP_TRIAL_DIR/ckpt"
  echo '{"event":"checkpoint","step":5}'
  echo running >> "$LOG_DIR/running.log"
  # A cancelled job's processes get SIGTERM before SIGKILL, and under load the shell can
  # outlive its sleep for a moment: it must not finish the trial then.
  sleep 60 || sleep 60
  from=0
fi
echo "{\"event\":\"result\",\"metrics\":{\"resumed_from\":$from}}"
echo "$SWEEP_TRIAL_ID" >> "$LOG_DIR/runs.log"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"slurm-kill\"\ncommand = [\"sh\", \"trial.sh\"]\n[grid]\nx = [1]\n\
         [slurm]\npoll = \"300ms\"\n",
    );
    let run = start(&p, "0");
    assert!(wait_for(Duration::from_secs(60), || !p
        .lines("running.log")
        .is_empty()));
    let job = p.sql("SELECT job_id FROM trials").remove(0);
    slurm("scancel", &["--signal=KILL", &job]);
    let out = run.wait_with_output().unwrap();
    assert_code(&out, 0);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("SLURM job {job} was cancelled outside sweep")),
        "{err}"
    );
    assert_eq!(p.lines("starts.log"), ["start 1 0", "start 2 1"]);
    assert_eq!(p.lines("runs.log").len(), 1);
    let rows = p.export();
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[0]["attempts"], "2");
    assert_eq!(rows[0]["metric_resumed_from"], "5.0");
    let outcomes = p.sql("SELECT outcome FROM attempts ORDER BY attempt");
    assert_eq!(outcomes, ["interrupted", "completed"]);
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn ctrl_c_leaves_nothing_in_the_queue_and_a_rerun_finishes() {
    let p = Project::new();
    // Six trials, four jobs at once: some run, and with 4 × 1 CPU of 8, none waits.
    grid(&p, "slurm-ctrl-c", 3, "parallel = 4\ngrace = \"2s\"", "");
    let run = start(&p, "60");
    assert!(wait_for(Duration::from_secs(60), || p
        .lines("starts.log")
        .len()
        >= 4));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_code(&out, 130);
    assert!(queued_jobs(&p).is_empty(), "{:?}", queued_jobs(&p));
    assert!(p.lines("runs.log").is_empty());
    let out = run_to_end(&p, "0");
    assert_code(&out, 0);
    assert_each_ran_once(&p, 6);
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn a_dead_orchestrators_jobs_are_cancelled_and_its_trials_rerun() {
    let p = Project::new();
    grid(&p, "slurm-orphans", 2, "parallel = 4", "");
    let mut run = start(&p, "60");
    assert!(wait_for(Duration::from_secs(60), || p
        .lines("starts.log")
        .len()
        >= 4));
    run.kill().unwrap();
    run.wait().unwrap();
    // The jobs outlive their orchestrator...
    let left = queued_jobs(&p);
    assert_eq!(left.len(), 4, "{left:?}");
    // ...until the next run takes the trials back and cancels them.
    let out = run_to_end(&p, "0");
    assert_code(&out, 0);
    let err = text(&out.stderr);
    for job in &left {
        assert!(
            err.contains(&format!("cancelled leftover SLURM job {job} ")),
            "{err}"
        );
    }
    assert!(queued_jobs(&p).is_empty());
    assert_each_ran_once(&p, 4);
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn two_runs_on_one_database_share_the_jobs() {
    let p = Project::new();
    grid(&p, "slurm-shared", 10, "parallel = 3", "");
    let first = start(&p, "0.5");
    let second = start(&p, "0.5");
    assert_code(&first.wait_with_output().unwrap(), 0);
    assert_code(&second.wait_with_output().unwrap(), 0);
    assert_each_ran_once(&p, 20);
    let runners = p.sql("SELECT DISTINCT owner FROM attempts");
    assert_eq!(runners.len(), 2, "both runs submitted jobs: {runners:?}");
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn each_trial_gets_its_own_gpu_from_gres() {
    let p = Project::new();
    grid(&p, "slurm-gpus", 2, "parallel = 4\ngpus_per_trial = 1", "");
    let out = run_to_end(&p, "1");
    assert_code(&out, 0);
    assert_each_ran_once(&p, 4);
    let devices: Vec<String> = p
        .lines("starts.log")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(devices.len(), 4);
    assert!(devices.iter().all(|d| d == "0" || d == "1"), "{devices:?}");
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn a_trial_past_its_timeout_is_stopped_and_its_job_leaves_the_queue() {
    let p = Project::new();
    grid(
        &p,
        "slurm-timeout",
        2,
        "timeout = \"1s\"\ngrace = \"1s\"\nmax_attempts = 1",
        "",
    );
    let out = run_to_end(&p, "60");
    assert_code(&out, 1);
    let reasons = p.sql("SELECT reason FROM attempts");
    assert_eq!(reasons.len(), 4);
    assert!(
        reasons.iter().all(|r| r == "timed out after 1s"),
        "{reasons:?}"
    );
    assert!(queued_jobs(&p).is_empty());
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn jobs_refused_mid_sweep_wait_for_running_ones_then_stop_the_run_with_nothing_lost() {
    let p = Project::new();
    grid(
        &p,
        "slurm-drained",
        3,
        "parallel = 2",
        "partition = \"drainable\"",
    );
    // Seed 1 runs 3 s longer than seed 0, so that the first refusal comes while a trial still
    // runs (two that end together are seen ending in one poll, and then nothing runs).
    p.write(
        "trial.sh",
        &TRIAL_SH.replace("sleep \"${SLEEP:-0}\"", "sleep $(( ${SLEEP:-0} + 3 * $2 ))"),
    );
    let drain = |state: &str| {
        slurm(
            "scontrol",
            &[
                "update",
                "PartitionName=drainable",
                &format!("State={state}"),
            ],
        )
    };
    let run = start(&p, "3");
    assert!(wait_for(Duration::from_secs(60), || p
        .lines("starts.log")
        .len()
        >= 2));
    // The partition stops taking jobs while two run: the next submission is refused.
    drain("DRAIN");
    let out = run.wait_with_output().unwrap();
    drain("UP");
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("it waits until one of the"), "{err}");
    assert!(
        err.contains("the slurm executor refused the job of trial")
            && err.contains("not available"),
        "{err}"
    );
    // The two that ran are stored; the refused trials spent no attempt.
    assert_eq!(p.lines("runs.log").len(), 2);
    assert_eq!(
        p.sql("SELECT CAST(COUNT(*) AS TEXT) FROM trials WHERE failures > 0"),
        ["0"]
    );
    let out = run_to_end(&p, "0");
    assert_code(&out, 0);
    assert_each_ran_once(&p, 6);
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/slurm-local start"]
fn a_partition_slurm_refuses_is_a_clear_error_before_anything_is_stored() {
    let p = Project::new();
    grid(
        &p,
        "slurm-refused",
        2,
        "",
        "partition = \"no-such-partition\"",
    );
    let out = run_to_end(&p, "0");
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid partition") && err.contains("[slurm]"),
        "{err}"
    );
    // Refused before the database was touched: no sweep, no trials, no attempts.
    let status = text(&p.run(&["status"]).stderr);
    assert!(
        status.contains("holds no sweeps") || status.contains("no database"),
        "{status}"
    );
}
