//! What only a database server can do to a sweep: go away for a while.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{assert_code, postgres_server, text, wait_for, Project, TRIAL_SH};

/// Stops or restarts the suite's server through the project's script (`scripts/pg-local`).
fn server(verb: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-local");
    let out = Command::new(script).arg(verb).output().unwrap();
    assert!(
        out.status.success(),
        "pg-local {verb}: {}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "stops the shared PostgreSQL server: run alone, as .ci/run does"]
fn a_ten_second_database_outage_mid_sweep_loses_nothing() {
    outage(&[]);
}

#[test]
#[ignore = "stops the shared PostgreSQL server and needs a SLURM cluster: run alone, as .ci/run does"]
fn a_ten_second_database_outage_mid_slurm_sweep_loses_nothing() {
    assert!(
        std::env::var_os("SLURM_CONF").is_some(),
        "SLURM_CONF is not set: `export SLURM_CONF=$(scripts/slurm-local start)`"
    );
    outage(&["--executor", "slurm"]);
}

/// A 20-trial sweep at `parallel = 4`, run with `args`, loses its server for 10 s.
fn outage(args: &[&str]) {
    assert!(
        postgres_server().is_some(),
        "SWEEP_TEST_POSTGRES is not set: `SWEEP_TEST_POSTGRES=$(scripts/pg-local start)`"
    );
    let p = Project::new();
    p.write("trial.sh", TRIAL_SH);
    p.write(
        "g.toml",
        "[sweep]\nname = \"outage\"\ncommand = [\"sh\", \"trial.sh\", \"{lr}\", \"{seed}\"]\nparallel = 4\n\
         [grid]\nlr = { lin = [0.1, 1.0], num = 10 }\nseed = [0, 1]\n[slurm]\npoll = \"300ms\"\n",
    );
    let run = p
        .sweep(&[&["run", "g.toml"], args].concat())
        .env("LOG_DIR", p.path())
        .env("SLEEP", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || p
        .lines("runs.log")
        .len()
        >= 4));
    server("stop");
    // Trials go on finishing while the server is down; their results wait for it.
    std::thread::sleep(Duration::from_secs(10));
    server("restart");
    let out = run.wait_with_output().unwrap();
    assert_code(&out, 0);
    let err = text(&out.stderr);
    assert!(err.contains("lost the connection to the database"), "{err}");
    let runs = p.lines("runs.log");
    let unique: BTreeSet<_> = runs.iter().collect();
    assert_eq!(unique.len(), 20, "{runs:?}");
    // Nothing ran twice: no attempt had to be repeated, and every result is stored.
    assert_eq!(runs.len(), 20, "{runs:?}");
    let rows = p.export();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r["status"] == "completed"
        && r["attempts"] == "1"
        && !r["metric_score"].is_empty()));
}
