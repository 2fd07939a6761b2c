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

/// A LoRA trial on a checkpoint saves its merged model and PEFT's adapter directory, and
/// `sweep eval` reads either: the adapter on its base (named in the adapter, or by `--base`)
/// scores what the merged directory scores, and what the trial recorded.
#[test]
fn a_lora_trial_saves_an_adapter_that_eval_reads() {
    let p = Project::new();
    let device = sweep_trainer::cpu_device();
    sweep_trainer::hf::fixture::write(&p.path().join("tiny"), true, "LlamaForCausalLM", 3, &device)
        .unwrap();
    let trainer = "[trainer]\neval_harmful = 4\neval_benign = 4\nmax_new_tokens = 6\n\
                   save = \"final\"\n\n[trainer.model]\nhf = \"tiny\"\nmax_seq = 96\n";
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"g\"\n[grid]\nlearning_rate = [1e-2]\nsteps = [3]\n\
             [fixed]\nbatch_size = 2\nmethod = \"lora\"\nlora_rank = 4\nlora_targets = \"all\"\n{trainer}"
        ),
    );
    let out = p.run(&["run", "g.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row = p.export().remove(0);
    let trial = p.path().join("sweep-trials/g").join(&row["trial_id"]);
    assert!(trial.join("adapter-final/adapter_config.json").is_file());
    assert!(trial
        .join("adapter-final/adapter_model.safetensors")
        .is_file());
    assert!(trial.join("model-final/model.safetensors").is_file());

    p.write("eval.toml", trainer);
    let metrics = |args: &[&str]| -> serde_json::Map<String, serde_json::Value> {
        let out = p.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let event: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one result line");
        event["metrics"].as_object().unwrap().clone()
    };
    let adapter = trial.join("adapter-final");
    let merged = trial.join("model-final");
    let (adapter, merged) = (adapter.to_str().unwrap(), merged.to_str().unwrap());
    let on_named_base = metrics(&["eval", adapter, "--config", "eval.toml", "--out", "a"]);
    let on_given_base = metrics(&[
        "eval",
        adapter,
        "--base",
        "tiny",
        "--config",
        "eval.toml",
        "--out",
        "b",
    ]);
    let from_merged = metrics(&["eval", merged, "--config", "eval.toml", "--out", "c"]);
    assert_eq!(on_named_base, on_given_base);
    for (name, value) in &from_merged {
        let a = on_named_base[name].as_f64().unwrap();
        let m = value.as_f64().unwrap();
        assert!(
            (a - m).abs() <= 1e-6 * m.abs().max(1.0),
            "{name}: adapter {a}, merged {m}"
        );
        let stored: f64 = row[&format!("metric_{name}")].parse().unwrap();
        assert!(
            (stored - m).abs() <= 1e-6 * m.abs().max(1.0),
            "{name}: trial {stored}, merged {m}"
        );
    }

    // An adapter whose base is not here is refused with the key and what to do.
    let moved = p.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    let from = trial.join("adapter-final");
    std::fs::copy(
        from.join("adapter_model.safetensors"),
        moved.join("adapter_model.safetensors"),
    )
    .unwrap();
    let written = std::fs::read_to_string(from.join("adapter_config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&written).unwrap();
    config["base_model_name_or_path"] = "org/some-hub-model".into();
    std::fs::write(moved.join("adapter_config.json"), config.to_string()).unwrap();
    let out = p.run(&["eval", "moved", "--config", "eval.toml"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("base_model_name_or_path") && err.contains("--base DIR"),
        "{err}"
    );
}
