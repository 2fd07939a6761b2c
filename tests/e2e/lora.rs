//! LoRA beside full fine-tuning in one sweep, through the real binary on the tiny model:
//! one zip crosses the methods, step 0 is the base for both, and LoRA keys that would mean
//! nothing are refused with the grid's line.

use crate::support::{text, Project};
use crate::trainer::TINY;

#[test]
fn full_and_lora_fine_tuning_run_in_one_grid() {
    let p = Project::new();
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"g\"\n[grid]\nlearning_rate = [1e-2]\nsteps = [0, 10]\n\
             ema_decay = [0, 0.9]\n\
             [[zip]]\nmethod = [\"full\", \"lora\", \"lora\"]\nlora_rank = [0, 4, 4]\n\
             lora_targets = [\"none\", \"q,v\", \"all\"]\n{TINY}"
        ),
    );
    let out = p.run(&["run", "g.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = p.export();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    let loss = |targets: &str, steps: &str, decay: &str| {
        rows.iter()
            .find(|r| {
                r["param_lora_targets"] == targets
                    && r["param_steps"] == steps
                    && r["param_ema_decay"] == decay
            })
            .unwrap_or_else(|| panic!("no row {targets} {steps} {decay}"))["metric_eval_loss"]
            .clone()
    };
    // B starts at zero: before the first step every method evaluates the base itself.
    assert_eq!(loss("none", "0", "0"), loss("q,v", "0", "0"));
    assert_eq!(loss("none", "0", "0"), loss("all", "0", "0"));
    // Trained, they differ: fewer weights move, and the shadow is not the model.
    let trained = [
        loss("none", "10", "0"),
        loss("q,v", "10", "0"),
        loss("all", "10", "0"),
    ];
    assert_ne!(trained[0], trained[1]);
    assert_ne!(trained[1], trained[2]);
    assert_ne!(loss("q,v", "10", "0"), loss("q,v", "10", "0.9"));
    // The log names the method.
    let logs = p.run(&[
        "logs",
        &rows
            .iter()
            .find(|r| r["param_lora_targets"] == "all")
            .unwrap()["trial_id"],
    ]);
    assert!(
        text(&logs.stdout).contains("LoRA r 4"),
        "{}",
        text(&logs.stdout)
    );
}

#[test]
fn lora_keys_that_mean_nothing_are_refused_with_their_line() {
    let p = Project::new();
    for (axes, line, needles) in [
        (
            "method = [\"full\", \"lora\"]\nlora_rank = [8]",
            6,
            vec![
                "lora_rank",
                "8 means nothing with method = \"full\"",
                "[[zip]]",
            ],
        ),
        (
            "method = [\"lora\"]\nlora_rank = [0, 4]",
            6,
            vec!["lora_rank", "must be at least 1"],
        ),
        (
            "method = [\"lora\"]\nlora_rank = [64]",
            6,
            vec!["lora_rank", "64 is above the width of q_proj (32 → 32)"],
        ),
        (
            "method = [\"lora\"]\nlora_targets = [\"qkv\"]",
            6,
            vec!["lora_targets", "\"qkv\" is not a projection"],
        ),
    ] {
        p.write(
            "g.toml",
            &format!("[sweep]\nname = \"g\"\n[grid]\nsteps = [1]\n{axes}\n{TINY}"),
        );
        let out = p.run(&["run", "g.toml"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{axes}: {err}");
        assert!(err.contains(&format!("g.toml:{line}:")), "{axes}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{axes}: {needle:?} not in {err}");
        }
        assert!(!p.db().exists(), "{axes}: nothing is stored");
    }
}
