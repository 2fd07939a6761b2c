//! `sweep report --pareto` (from the store's per-configuration summaries, and reading every
//! trial) and `sweep export --csv` over a store of 10^6 completed trials: wall time and peak
//! memory of the real binary. See docs/performance.md.
//!
//! `cargo build --release && cargo bench -p sweep --bench report` (BENCH_TRIALS to resize).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/big_store.rs"]
mod big_store;

/// Runs the command, returning wall time and peak resident memory (VmHWM, polled).
fn measure(cmd: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{cmd:?} failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (start.elapsed(), peak_kb)
}

fn main() {
    let n = big_store::trials_wanted();
    let bin = big_store::sweep_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("big.db");
    let trials = big_store::build(&db, n);

    if let Ok(keep) = std::env::var("BENCH_KEEP_DB") {
        std::fs::copy(&db, &keep).expect("copy the store");
    }
    let db_arg = db.to_str().unwrap();
    for (label, args) in [
        (
            "report --pareto",
            vec!["--db", db_arg, "report", "--pareto"],
        ),
        (
            "report --pareto --seed-fronts (reads every trial)",
            vec!["--db", db_arg, "report", "--pareto", "--seed-fronts"],
        ),
        (
            "report --pareto --per-trial",
            vec!["--db", db_arg, "report", "--pareto", "--per-trial"],
        ),
        (
            "export --csv",
            vec![
                "--db",
                db_arg,
                "export",
                "--csv",
                dir.path().join("out.csv").to_str().unwrap(),
            ],
        ),
    ] {
        let runs: Vec<(Duration, u64)> = (0..3)
            .map(|_| measure(Command::new(&bin).args(&args)))
            .collect();
        let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
        times.sort();
        let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
        println!(
            "{label} over {} trials: median {:.2} s, peak RSS {:.0} MiB (3 runs)",
            trials,
            times[1].as_secs_f64(),
            peak as f64 / 1024.0
        );
    }
}
