//! The reference trial in Python (`scripts/reference_trial.py`, standard library only) run
//! through the real binary: cut short by its timeout again and again, it checkpoints on
//! SIGTERM, resumes, and ends with exactly the numbers of an uninterrupted run, without a
//! retry for the string among its metrics. Needs `python3` (CI has it; `--ignored` to run).

use crate::support::{assert_code, Project};

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/reference_trial.py"
);

fn grid(name: &str, timeout: &str) -> String {
    format!(
        "[sweep]\nname = \"{name}\"\ncommand = [\"python3\", \"{REFERENCE}\"]\n\
         timeout = \"{timeout}\"\ngrace = \"10s\"\nbackoff = \"0s\"\nmax_attempts = 10\n\
         [grid]\nseed = [0, 1]\n[fixed]\nsteps = 60\nstep_seconds = 0.05\ncheckpoint_every = 1000\n"
    )
}

#[test]
#[ignore = "needs python3"]
fn the_reference_trial_resumes_from_its_sigterm_checkpoint_to_the_uninterrupted_numbers() {
    let p = Project::new();
    p.write("whole.toml", &grid("whole", "1m"));
    p.write("cut.toml", &grid("cut", "1200ms"));
    assert_code(&p.run(&["run", "whole.toml"]), 0);
    assert_code(&p.run(&["run", "cut.toml"]), 0);
    let rows = p.export();
    let of = |sweep: &str, seed: &str| {
        rows.iter()
            .find(|r| r["sweep"] == sweep && r["param_seed"] == seed)
            .unwrap_or_else(|| panic!("{sweep} seed {seed} in {rows:?}"))
    };
    for seed in ["0", "1"] {
        let (whole, cut) = (of("whole", seed), of("cut", seed));
        assert_eq!(whole["status"], "completed");
        assert_eq!(
            whole["attempts"], "1",
            "a string among the metrics is no reason to retry"
        );
        assert_eq!(cut["status"], "completed");
        let attempts: u32 = cut["attempts"].parse().unwrap();
        assert!(attempts >= 2, "60 steps of 50 ms do not fit 1.2 s: {cut:?}");
        for metric in ["metric_w", "metric_b", "metric_fit_error"] {
            assert_eq!(whole[metric], cut[metric], "{metric} of seed {seed}");
        }
        let logs = p
            .path()
            .join("sweep-trials/cut")
            .join(&cut["trial_id"])
            .join("logs");
        let second = std::fs::read_to_string(logs.join("attempt-2.stderr.log")).unwrap();
        assert!(second.contains("resumed at step"), "{second}");
        let first = std::fs::read_to_string(logs.join("attempt-1.stderr.log")).unwrap();
        assert!(first.contains("stopped by SIGTERM"), "{first}");
    }
    assert_ne!(of("whole", "0")["metric_w"], of("whole", "1")["metric_w"]);
}
