//! Running, retrying, timing out, interrupting, resuming and sharing sweeps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::{assert_code, text, wait_for, Project, TRIAL_SH};

fn grid(name: &str, extra_sweep: &str, body: &str) -> String {
    format!(
        "[sweep]\nname = \"{name}\"\ncommand = [\"sh\", \"trial.sh\", \"{{lr}}\", \"{{seed}}\"]\nbackoff = \"0s\"\n{extra_sweep}\n{body}"
    )
}

fn project_with_trial() -> Project {
    let p = Project::new();
    p.write("trial.sh", TRIAL_SH);
    p
}

#[test]
fn product_zip_and_exclude_give_exactly_the_expected_trials() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid(
            "shape",
            "parallel = 4",
            "[grid]\nlr = [0.1, 0.2]\nseed = [0, 1]\n[[zip]]\nbs = [8, 16, 32]\naccum = [4, 2, 1]\n\
             [[exclude]]\nlr = 0.2\nbs = 8\n[fixed]\nepochs = 1\n",
        ),
    );
    let out = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    let rows = p.export();
    let got: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["param_lr"].clone(),
                r["param_seed"].clone(),
                r["param_bs"].clone(),
                r["param_accum"].clone(),
            )
        })
        .collect();
    let mut want = BTreeSet::new();
    for lr in ["0.1", "0.2"] {
        for seed in ["0", "1"] {
            for (bs, accum) in [("8", "4"), ("16", "2"), ("32", "1")] {
                if !(lr == "0.2" && bs == "8") {
                    want.insert((
                        lr.to_string(),
                        seed.to_string(),
                        bs.to_string(),
                        accum.to_string(),
                    ));
                }
            }
        }
    }
    assert_eq!(got, want);
    assert_eq!(rows.len(), 10);
    // Metrics are the known function of the parameters; fixed values are columns too.
    for r in &rows {
        let lr: f64 = r["param_lr"].parse().unwrap();
        let seed: f64 = r["param_seed"].parse().unwrap();
        assert_eq!(r["metric_score"].parse::<f64>().unwrap(), lr * 10.0 + seed);
        assert_eq!(r["status"], "completed");
        assert_eq!(r["attempts"], "1");
        assert_eq!(r["param_epochs"], "1");
    }
    // Columns: the fixed block, then sorted parameters (swept and `[fixed]`), then metrics.
    let out = p.run(&["export", "--csv", "-"]);
    let header = text(&out.stdout).lines().next().unwrap().to_string();
    assert_eq!(
        header,
        "trial_id,sweep,status,attempts,out_of_memory,started_at,finished_at,duration_s,gpu,param_accum,param_bs,param_epochs,param_lr,param_seed,metric_score"
    );
    // Re-running a finished sweep runs nothing.
    let before = p.lines("runs.log").len();
    let out = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(p.lines("runs.log").len(), before);
}

#[test]
fn trials_get_their_parameters_directory_and_environment() {
    let p = Project::new();
    p.write(
        "env.sh",
        r#"#!/bin/sh
printf '%s\n' "$@" > "$SWEEP_TRIAL_DIR/argv"
echo "$SWEEP_PARAMS" > "$SWEEP_TRIAL_DIR/params"
echo "{\"event\":\"checkpoint\",\"step\":3}"
echo "{\"event\":\"result\",\"metrics\":{\"ok\":1}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"env\"\ncommand = [\"sh\", \"env.sh\", \"--lr={lr}\", \"{opt}\", \"{trial_id}\", \"; rm -rf {{x}}\"]\n\
         [grid]\nlr = [1e-5]\nopt = [\"adam w\"]\n[fixed]\nepochs = 2\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let rows = p.export();
    let id = &rows[0]["trial_id"];
    let dir = p.path().join("sweep-trials").join("env").join(id);
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert_eq!(
        argv,
        format!("--lr=0.00001\nadam w\n{id}\n; rm -rf {{x}}\n")
    );
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("params")).unwrap()).unwrap();
    assert_eq!(
        params,
        serde_json::json!({"epochs": 2, "lr": 1e-5, "opt": "adam w"})
    );
    assert!(dir.join("logs/attempt-1.stdout.log").exists());
}

/// `SWEEP_AXES` offers a trial the values of an axis that pair with its own values of the axes
/// zipped with it, so a run that reports several step counts trains only as far as its own
/// batch size's: batch size at equal data does not train every batch to the longest run.
#[test]
fn a_zipped_trial_is_offered_only_the_values_its_partners_allow() {
    let p = Project::new();
    p.write(
        "axes.sh",
        r#"#!/bin/sh
echo "$SWEEP_AXES" > "$SWEEP_TRIAL_DIR/axes"
echo "{\"event\":\"result\",\"metrics\":{\"ok\":1}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"zipped\"\ncommand = [\"sh\", \"axes.sh\"]\n\
         [grid]\nlr = [1, 2]\n[[zip]]\nbatch_size = [4, 16]\nsteps = [400, 100]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let rows = p.export();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let dir = p.path().join("sweep-trials/zipped").join(&row["trial_id"]);
        let axes: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("axes")).unwrap()).unwrap();
        let steps: i64 = row["param_steps"].parse().unwrap();
        let batch: i64 = row["param_batch_size"].parse().unwrap();
        assert_eq!(
            axes,
            serde_json::json!({"lr": [1, 2], "batch_size": [batch], "steps": [steps]}),
            "{row:?}"
        );
    }
}

/// Axes too long for the environment (Linux refuses any one variable over 128 KiB) come in a
/// file, `SWEEP_AXES_FILE`, instead of failing every trial at its start.
#[test]
fn axes_too_long_for_the_environment_come_in_a_file() {
    let p = Project::new();
    p.write(
        "axes.sh",
        r#"#!/bin/sh
test -z "$SWEEP_AXES" || exit 9
cp "$SWEEP_AXES_FILE" "$SWEEP_TRIAL_DIR/axes"
echo "{\"event\":\"result\",\"metrics\":{\"ok\":1}}"
"#,
    );
    let values: Vec<String> = ["a", "b", "c"].map(|c| c.repeat(30_000)).into();
    let listed: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"long\"\ncommand = [\"sh\", \"axes.sh\"]\n[grid]\nx = [{}]\n",
            listed.join(", ")
        ),
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let rows = p.export();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["status"], "completed", "{row:?}");
        let dir = p.path().join("sweep-trials/long").join(&row["trial_id"]);
        let axes: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("axes")).unwrap()).unwrap();
        assert_eq!(axes, serde_json::json!({ "x": values }));
    }
}

#[test]
fn a_crashing_trial_is_retried_and_recorded() {
    let p = Project::new();
    p.write(
        "flaky.sh",
        r#"#!/bin/sh
if [ "$1" = "always" ] || [ "$SWEEP_ATTEMPT" = "1" ]; then
  echo "boom in attempt $SWEEP_ATTEMPT" >&2
  exit 3
fi
echo "{\"event\":\"result\",\"metrics\":{\"attempt\":$SWEEP_ATTEMPT,\"resume\":$SWEEP_RESUME}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"flaky\"\ncommand = [\"sh\", \"flaky.sh\", \"{mode}\"]\nmax_attempts = 3\nbackoff = \"10ms\"\n\
         [grid]\nmode = [\"once\", \"always\"]\n",
    );
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 1);
    let rows = p.export();
    let by_mode: BTreeMap<&str, _> = rows.iter().map(|r| (r["param_mode"].as_str(), r)).collect();
    assert_eq!(by_mode["once"]["status"], "completed");
    assert_eq!(by_mode["once"]["attempts"], "2");
    assert_eq!(by_mode["once"]["metric_attempt"], "2.0");
    assert_eq!(by_mode["once"]["metric_resume"], "1.0");
    assert_eq!(by_mode["always"]["status"], "failed");
    assert_eq!(by_mode["always"]["attempts"], "3");
    let status = text(&p.run(&["status", "flaky"]).stdout);
    assert!(status.contains("1 completed, 1 failed"), "{status}");
    assert!(
        status.contains("exited with code 3 (stderr: boom in attempt 3)"),
        "{status}"
    );
    let log = text(&out.stderr);
    assert!(log.contains("boom in attempt 3"), "{log}");
    // --retry-failed gives the failed trial a fresh budget; it fails again, still recorded.
    let out = p.run(&["run", "g.toml", "--retry-failed"]);
    assert_code(&out, 1);
    let rows = p.export();
    let always = rows.iter().find(|r| r["param_mode"] == "always").unwrap();
    assert_eq!(always["attempts"], "6");
}

#[test]
fn an_out_of_memory_trial_is_recorded_as_such_and_retried_with_a_split_micro_batch() {
    let p = Project::new();
    // Runs out of memory unless each micro-batch is split in at least `need` parts, the way
    // PyTorch reports it; records the split it finally ran with.
    p.write(
        "oom.sh",
        r#"#!/bin/sh
if [ "$SWEEP_MICRO_BATCH_SPLIT" -lt "$1" ]; then
  echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" >&2
  exit 1
fi
echo "{\"event\":\"result\",\"metrics\":{\"split\":$SWEEP_MICRO_BATCH_SPLIT}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"oom\"\ncommand = [\"sh\", \"oom.sh\", \"{need}\"]\nmax_attempts = 3\nbackoff = \"10ms\"\n\
         [grid]\nneed = [1, 2, 4, 8]\n",
    );
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 1);
    let rows = p.export();
    let by_need: BTreeMap<&str, _> = rows.iter().map(|r| (r["param_need"].as_str(), r)).collect();
    for (need, attempts, oom) in [("1", "1", "0"), ("2", "2", "1"), ("4", "3", "2")] {
        let row = by_need[need];
        assert_eq!(row["status"], "completed", "need {need}");
        assert_eq!(row["attempts"], attempts, "need {need}");
        assert_eq!(row["out_of_memory"], oom, "need {need}");
        assert_eq!(row["metric_split"], format!("{need}.0"));
    }
    // Three attempts (splits 1, 2, 4) are not enough for 8: failed, and said why.
    assert_eq!(by_need["8"]["status"], "failed");
    assert_eq!(by_need["8"]["out_of_memory"], "3");
    let status = text(&p.run(&["status", "oom"]).stdout);
    assert!(status.contains("3 (2 OOM)"), "{status}");
    assert!(status.contains("ran out of GPU memory"), "{status}");
    let outcomes: Vec<String> = p.sql(
        "SELECT outcome FROM attempts a JOIN trials t ON t.id = a.trial_id \
         WHERE t.params LIKE '%\"need\":4%' ORDER BY attempt",
    );
    assert_eq!(outcomes, ["out_of_memory", "out_of_memory", "completed"]);
}

#[test]
fn a_hanging_trial_is_killed_by_its_timeout() {
    let p = Project::new();
    p.write("hang.sh", "#!/bin/sh\ntrap '' TERM\nsleep 60\n");
    p.write(
        "g.toml",
        "[sweep]\nname = \"hang\"\ncommand = [\"sh\", \"hang.sh\"]\ntimeout = \"500ms\"\ngrace = \"300ms\"\nmax_attempts = 1\n\
         [grid]\nx = [1]\n",
    );
    let start = Instant::now();
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    let status = text(&p.run(&["status", "hang"]).stdout);
    assert!(status.contains("timed out after 500ms"), "{status}");
    assert_eq!(p.export()[0]["status"], "failed");
}

#[test]
fn kill_9_then_resume_completes_every_trial_exactly_once() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid(
            "crash",
            "parallel = 2",
            "[grid]\nlr = [0.1, 0.2, 0.3, 0.4]\nseed = [0, 1]\n",
        ),
    );
    let mut child = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .env("SLEEP", "1")
        .spawn()
        .unwrap();
    // Kill the orchestrator once some trials have finished while others are running.
    assert!(wait_for(Duration::from_secs(30), || {
        let finished = p.lines("runs.log").len();
        finished >= 2 && p.lines("starts.log").len() > finished
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let done_before: BTreeSet<String> = p
        .export()
        .into_iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| r["trial_id"].clone())
        .collect();
    assert!(
        !done_before.is_empty() && done_before.len() < 8,
        "{done_before:?}"
    );
    let resumed = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&resumed, 0);
    let rows = p.export();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    // Results stored before the crash were kept, not re-run.
    for r in rows.iter().filter(|r| done_before.contains(&r["trial_id"])) {
        assert_eq!(r["attempts"], "1", "{r:?}");
    }
    // Trials cut off by the crash were resumed with SWEEP_RESUME=1.
    let starts = p.lines("starts.log");
    let resumed_starts = starts
        .iter()
        .filter(|l| l.split(' ').nth(3) == Some("1"))
        .count();
    let rerun: Vec<_> = rows.iter().filter(|r| r["attempts"] != "1").collect();
    assert!(!rerun.is_empty(), "the kill cut off a running trial");
    assert_eq!(resumed_starts, rerun.len());
    let stderr = text(&resumed.stderr);
    assert!(stderr.contains("re-queued"), "{stderr}");
}

#[test]
fn ctrl_c_interrupts_and_a_rerun_resumes() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid(
            "int",
            "parallel = 2\ngrace = \"5s\"",
            "[grid]\nlr = [0.1, 0.2, 0.3]\nseed = [0]\n",
        ),
    );
    let mut child = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .env("SLEEP", "30")
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || p
        .lines("starts.log")
        .len()
        >= 2));
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // sh dies on SIGTERM at once; no need to wait for the grace period.
    assert!(started.elapsed() < Duration::from_secs(5));
    let rows = p.export();
    let states: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["status"].clone()).or_default() += 1;
        m
    });
    assert_eq!(states.get("interrupted"), Some(&2), "{states:?}");
    assert_eq!(states.get("pending"), Some(&1), "{states:?}");
    let out = p
        .sweep(&["resume", "int"])
        .env("LOG_DIR", p.path())
        .env("SLEEP", "0")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(p.export().iter().all(|r| r["status"] == "completed"));
}

#[test]
fn two_concurrent_runs_share_a_sweep_without_duplicates() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid(
            "shared",
            "parallel = 2",
            "[grid]\nlr = { lin = [0.1, 1.0], num = 10 }\nseed = [0, 1]\n",
        ),
    );
    let start = || {
        p.sweep(&["run", "g.toml"])
            .env("LOG_DIR", p.path())
            .env("SLEEP", "0.1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_code(&a, 0);
    assert_code(&b, 0);
    let runs = p.lines("runs.log");
    let unique: BTreeSet<_> = runs.iter().collect();
    assert_eq!(runs.len(), 20, "{runs:?}");
    assert_eq!(unique.len(), 20);
    assert!(p
        .export()
        .iter()
        .all(|r| r["status"] == "completed" && r["attempts"] == "1"));
    // Both orchestrators did part of the work.
    for out in [&a, &b] {
        assert!(
            text(&out.stderr).contains("INFO completed"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn gpus_are_never_leased_twice() {
    let p = Project::new();
    p.write(
        "gpu.sh",
        r#"#!/bin/sh
echo "+ $CUDA_VISIBLE_DEVICES" >> "$LOG_DIR/gpu.log"
sleep 0.2
echo "- $CUDA_VISIBLE_DEVICES" >> "$LOG_DIR/gpu.log"
echo "{\"event\":\"result\",\"metrics\":{\"ok\":1}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"gpu\"\ncommand = [\"sh\", \"gpu.sh\"]\nparallel = 8\ngpus_per_trial = 1\n[grid]\nx = { lin = [1, 9], num = 9 }\n",
    );
    let out = p
        .sweep(&["run", "g.toml", "--gpus", "0,1,2"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    let mut busy: BTreeSet<String> = BTreeSet::new();
    let mut max_busy = 0;
    for line in p.lines("gpu.log") {
        let (sign, gpu) = line.split_once(' ').unwrap();
        assert!(["0", "1", "2"].contains(&gpu), "{line}");
        if sign == "+" {
            assert!(busy.insert(gpu.to_string()), "GPU {gpu} leased twice");
        } else {
            busy.remove(gpu);
        }
        max_busy = max_busy.max(busy.len());
    }
    assert_eq!(max_busy, 3);
    let rows = p.export();
    assert!(rows
        .iter()
        .all(|r| ["0", "1", "2"].contains(&r["gpu"].as_str())));
    // Asking for GPUs where none exist is a clear error, not a silent CPU run.
    let out = p
        .sweep(&["run", "g.toml"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("--gpus none"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn one_process_can_report_several_grid_points() {
    let p = Project::new();
    // The steps=200 trial also reports its state at step 50.
    p.write(
        "multi.sh",
        r#"#!/bin/sh
echo "$1" >> "$LOG_DIR/runs.log"
if [ "$1" = "200" ]; then
  echo '{"event":"result","params":{"steps":50},"metrics":{"loss":2.0}}'
fi
echo "{\"event\":\"result\",\"metrics\":{\"loss\":$(awk "BEGIN{print 100/$1}")}}"
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"multi\"\ncommand = [\"sh\", \"multi.sh\", \"{steps}\"]\n[grid]\nsteps = [200, 50]\n",
    );
    let out = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(p.lines("runs.log"), ["200"]);
    let rows = p.export();
    let loss: BTreeMap<&str, &str> = rows
        .iter()
        .map(|r| (r["param_steps"].as_str(), r["metric_loss"].as_str()))
        .collect();
    assert_eq!(loss, BTreeMap::from([("200", "0.5"), ("50", "2.0")]));
}

#[test]
fn an_edited_grid_adds_points_and_a_changed_command_is_reported() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid("edit", "", "[grid]\nlr = [0.1]\nseed = [0]\n"),
    );
    assert_code(
        &p.sweep(&["run", "g.toml"])
            .env("LOG_DIR", p.path())
            .output()
            .unwrap(),
        0,
    );
    p.write(
        "g.toml",
        &grid("edit", "", "[grid]\nlr = [0.1, 0.2]\nseed = [0]\n"),
    );
    let out = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(
        text(&out.stderr).contains("2 trials (1 new, 1 already stored"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(p.lines("runs.log").len(), 2);
    p.write(
        "g.toml",
        &format!(
            "{}[fixed]\nepochs = 3\n",
            grid("edit", "", "[grid]\nlr = [0.1, 0.2]\nseed = [0]\n")
        ),
    );
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("sweep `edit` was created with a different command or [fixed]"),
        "{err}"
    );
    assert!(err.contains("new [sweep] name"), "{err}");
    assert_eq!(p.export().len(), 2);
}

#[test]
fn status_and_export_need_an_existing_database() {
    let p = Project::new();
    let out = p.run(&["status"]);
    assert_code(&out, 2);
    // A server's database exists before sweep does, but holds no sweep yet.
    let expected = if p.on_postgres() {
        "holds no sweeps yet"
    } else {
        "no database at"
    };
    assert!(
        text(&out.stderr).contains(expected),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.db().exists());
}

#[test]
fn a_missing_program_fails_at_once_with_its_name() {
    let p = Project::new();
    p.write("g.toml", "[sweep]\nname = \"nope\"\ncommand = [\"./no-such-trainer\"]\nmax_attempts = 5\n[grid]\nx = [1]\n");
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 1);
    let rows = p.export();
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["attempts"], "1");
    let status = text(&p.run(&["status"]).stdout);
    assert!(
        status.contains("cannot start `./no-such-trainer`"),
        "{status}"
    );
}

/// A failed trial is found by state, read as JSON, and its attempt's own words are one
/// command away: `sweep status --state failed --json`, `sweep logs ID`.
#[test]
fn status_filters_by_state_and_logs_shows_an_attempts_output() {
    let p = Project::new();
    p.write(
        "t.sh",
        "#!/bin/sh\necho \"working on $1\"\nif [ \"$1\" = 2 ]; then echo \"no GPU for x=$1\" >&2; exit 3; fi\necho '{\"event\":\"result\",\"metrics\":{\"ok\":1}}'\n",
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"l\"\ncommand = [\"sh\", \"t.sh\", \"{x}\"]\nmax_attempts = 1\n[grid]\nx = [1, 2]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 1);
    let out = p.run(&["status", "l", "--state", "failed", "--json"]);
    assert_code(&out, 0);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["params"]["x"], 2);
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("no GPU for x=2"),
        "{rows:?}"
    );
    let id = rows[0]["trial_id"].as_str().unwrap();
    let out = p.run(&["logs", &id[..8], "--stream", "stderr"]);
    assert_code(&out, 0);
    assert!(
        text(&out.stdout).contains("no GPU for x=2"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("working on"), "stderr only");
    let out = p.run(&["logs", id, "--stream", "stdout", "--tail", "1"]);
    assert!(
        text(&out.stdout).contains("working on 2"),
        "{}",
        text(&out.stdout)
    );
    let out = p.run(&["logs", "zzzz"]);
    assert!(
        text(&out.stderr).contains("no trial's id starts with this"),
        "{}",
        text(&out.stderr)
    );
    // By the point's parameters, as `compare` names configurations.
    let out = p.run(&["logs", "x=2", "--sweep", "l", "--stream", "stderr"]);
    assert_code(&out, 0);
    assert!(
        text(&out.stdout).contains("no GPU for x=2"),
        "{}",
        text(&out.stdout)
    );
    let out = p.run(&["logs", "x>=1"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("names 2 trials"),
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["status", "--state", "done"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("one of pending, running"),
        "{}",
        text(&out.stderr)
    );
}

/// A running trial without results shows where it has got to: its last step's curves.
#[test]
fn status_shows_a_running_trials_last_step() {
    let p = project_with_trial();
    p.write(
        "g.toml",
        &grid("live", "", "[grid]\nlr = [0.1]\nseed = [0]\n"),
    );
    let mut child = p
        .sweep(&["run", "g.toml"])
        .env("LOG_DIR", p.path())
        .env("SLEEP", "30")
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let shown = wait_for(Duration::from_secs(30), || {
        seen = text(&p.run(&["status", "live"]).stdout);
        seen.contains("step 1: loss=1.5")
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    assert!(shown, "{seen}");
    assert!(seen.contains("running"), "{seen}");
}

/// `sweep logs --follow` prints a running trial's output as it comes, moves on to its next
/// attempt, marks stderr, and stops by itself when the trial is done.
#[test]
fn logs_follow_a_trial_through_its_attempts_until_it_ends() {
    let p = Project::new();
    p.write(
        "t.sh",
        "#!/bin/sh
for i in 0 1 2 3 4; do echo \"a$SWEEP_ATTEMPT tick $i\"; sleep 0.3; done
\
         echo \"a$SWEEP_ATTEMPT warns\" >&2
\
         if [ \"$SWEEP_ATTEMPT\" = 1 ]; then exit 1; fi\n\
         echo '{\"event\":\"result\",\"metrics\":{\"ok\":1}}'\n",
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"f\"\ncommand = [\"sh\", \"t.sh\"]\nbackoff = \"0s\"\n[grid]\nx = [1]\n",
    );
    let mut run = p
        .sweep(&["run", "g.toml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Follow from the moment the first attempt has written something.
    let started = wait_for(Duration::from_secs(20), || {
        p.path().join("sweep-trials/f").exists()
    });
    assert!(started, "the sweep never started");
    std::thread::sleep(Duration::from_millis(200));
    let mut follow = p
        .sweep(&["logs", "x=1", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stopped = wait_for(Duration::from_secs(30), || {
        follow.try_wait().unwrap().is_some()
    });
    assert!(stopped, "--follow did not stop after the trial ended");
    let out = follow.wait_with_output().unwrap();
    assert_code(&out, 0);
    assert!(run.wait().unwrap().success());
    let shown = text(&out.stdout);
    for line in [
        "a1 tick 4",
        "stderr| a1 warns",
        "# attempt 2",
        "a2 tick 0",
        "a2 tick 4",
        "stderr| a2 warns",
    ] {
        assert!(shown.contains(line), "{line:?} missing from:\n{shown}");
    }
    assert!(
        shown.find("a1 tick 4").unwrap() < shown.find("a2 tick 0").unwrap(),
        "{shown}"
    );
}
