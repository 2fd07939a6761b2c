//! The built-in trainer through the real binary, on a tiny model (seconds): shared runs,
//! checkpoints and resume, determinism, and bad `[trainer]` tables and data files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{text, Project};

/// A model small enough to align in a few seconds; the numbers mean nothing, the mechanics
/// are real.
pub(crate) const TINY: &str = r#"
[trainer]
base_steps = 30
checkpoint_every = 5
eval_harmful = 8
eval_benign = 8
eval_task = 8
max_new_tokens = 8
model = { d_model = 32, n_heads = 2, n_layers = 1, d_ff = 64 }
"#;

fn tiny_trainer_json() -> String {
    let table: toml::Table = toml::from_str(TINY).unwrap();
    serde_json::to_string(&table["trainer"]).unwrap()
}

/// Runs `sweep trial` directly, as the scheduler would, and returns its protocol lines.
fn trial(dir: &Path, cache: &Path, params: &str, resume: bool) -> Vec<serde_json::Value> {
    let out = trial_command(dir, cache, params, resume)
        .output()
        .expect("run sweep trial");
    assert!(out.status.success(), "trial failed: {}", text(&out.stderr));
    events(&out.stdout)
}

fn trial_command(dir: &Path, cache: &Path, params: &str, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sweep"));
    cmd.arg("trial")
        .env("SWEEP_PARAMS", params)
        .env("SWEEP_TRAINER", tiny_trainer_json())
        .env("SWEEP_AXES", r#"{"steps":[10,40],"ema_decay":[0,0.9]}"#)
        .env("SWEEP_TRIAL_DIR", dir)
        .env("SWEEP_CACHE_DIR", cache)
        .env("SWEEP_RESUME", if resume { "1" } else { "0" });
    cmd
}

/// Runs one trial that reports only its own point (`SWEEP_AXES` empty, no GPU leased) with
/// `env` on top; returns its result's metrics and its log.
fn single(dir: &Path, cache: &Path, params: &str, env: &[(&str, &str)]) -> (Value, String) {
    let mut cmd = trial_command(dir, cache, params, false);
    cmd.env("SWEEP_AXES", "{}")
        .env_remove("CUDA_VISIBLE_DEVICES");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("run sweep trial");
    let log = text(&out.stderr);
    assert!(out.status.success(), "{env:?}: {log}");
    (results(&events(&out.stdout))["null"].clone(), log)
}

fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    text(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The results of a run, keyed by their `params` override.
fn results(events: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == "result")
        .map(|e| (e["params"].to_string(), e["metrics"].clone()))
        .collect()
}

#[test]
fn one_run_reports_every_step_count_and_decay_of_its_sweep() {
    let p = Project::new();
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"g\"\n[grid]\nlearning_rate = [1e-3]\nsteps = [0, 10, 20]\nema_decay = [0, 0.9]\n{TINY}"
        ),
    );
    let out = p.run(&["run", "g.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = p.export();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    // One process ran (the first trial claimed); it reported the other five points.
    let launched = rows.iter().filter(|r| r["attempts"] != "0").count();
    assert_eq!(launched, 1, "{rows:?}");
    // steps = 0 is the base model, whatever the decay.
    let base: Vec<_> = rows.iter().filter(|r| r["param_steps"] == "0").collect();
    assert_eq!(base.len(), 2);
    assert_eq!(base[0]["metric_eval_loss"], base[1]["metric_eval_loss"]);
    let tuned: Vec<_> = rows.iter().filter(|r| r["param_steps"] == "20").collect();
    assert_ne!(
        tuned[0]["metric_eval_loss"], tuned[1]["metric_eval_loss"],
        "the shadow is not the model"
    );
    // The finished trial leaves no checkpoint behind.
    let trials = p.path().join("sweep-trials/g");
    for entry in std::fs::read_dir(trials).unwrap() {
        assert!(!entry.unwrap().path().join("checkpoint").exists());
    }
}

/// A point a shared run reports is the point an independent run of it computes, bit for bit
/// on the CPU: the first steps of a constant-rate run are the shorter run, and the shadow
/// EMA never touches the model.
#[test]
fn a_shared_run_point_is_the_independent_run_of_that_point() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let shared = results(&trial(
        &p.path().join("shared"),
        &cache,
        r#"{"learning_rate":0.01,"steps":40,"ema_decay":0}"#,
        false,
    ));
    let (shorter, reported): (Vec<_>, Vec<_>) = shared
        .iter()
        .filter(|(params, _)| params.contains(r#""steps":10"#) && params.contains("0.9"))
        .map(|(params, metrics)| (params.clone(), metrics.clone()))
        .unzip();
    assert_eq!(
        shorter.len(),
        1,
        "the run reports steps 10 with EMA 0.9: {shared:?}"
    );
    let (alone, _) = single(
        &p.path().join("alone"),
        &cache,
        r#"{"learning_rate":0.01,"steps":10,"ema_decay":0.9}"#,
        &[],
    );
    assert_eq!(reported[0], alone, "{}", shorter[0]);
}

/// The interpolation baseline is a grid axis computed in the same run: θ₀ + α(θ − θ₀) is the
/// starting model at step 0 whatever α, and lies elsewhere once the model has moved.
#[test]
fn interpolation_points_come_from_the_same_run() {
    let p = Project::new();
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"i\"\n[grid]\nlearning_rate = [1e-2]\nsteps = [0, 10]\ninterpolation = [0.5, 1]\n{TINY}"
        ),
    );
    let out = p.run(&["run", "g.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = p.export();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r["attempts"] != "0").count(), 1);
    let loss = |steps: &str, alpha: f64| -> String {
        rows.iter()
            .find(|r| {
                r["param_steps"] == steps && r["param_interpolation"].parse::<f64>() == Ok(alpha)
            })
            .map(|r| r["metric_eval_loss"].clone())
            .unwrap()
    };
    assert_eq!(loss("0", 0.5), loss("0", 1.0));
    assert_ne!(loss("10", 0.5), loss("10", 1.0));
}

#[test]
fn sigterm_checkpoints_and_a_resumed_trial_ends_with_the_same_numbers() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let params = r#"{"learning_rate":0.003,"steps":40,"ema_decay":0.9,"seed":4}"#;
    let straight = trial(&p.path().join("a"), &cache, params, false);

    // Stop the second run with SIGTERM right after its first checkpoint.
    let dir = p.path().join("b");
    let mut child = trial_command(&dir, &cache, params, false)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_part = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let checkpoint = line.contains(r#""event":"checkpoint""#);
        first_part.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        if checkpoint {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(143),
        "a stopped trial exits 128 + SIGTERM"
    );
    assert!(dir.join("checkpoint/trial.json").exists());
    let stopped_at = first_part
        .iter()
        .rev()
        .find(|e| e["event"] == "checkpoint")
        .unwrap()["step"]
        .as_u64()
        .unwrap();
    assert!(stopped_at < 40, "stopped before the end: {stopped_at}");

    let resumed = trial(&dir, &cache, params, true);
    assert_eq!(results(&resumed), results(&straight));
    assert_eq!(results(&straight).len(), 4, "2 step counts × 2 decays");
    // The loss curve after the checkpoint is the uninterrupted one.
    let curve = |events: &[serde_json::Value]| -> Vec<(u64, String)> {
        events
            .iter()
            .filter(|e| e["name"] == "train_loss" && e["step"].as_u64() > Some(stopped_at))
            .map(|e| (e["step"].as_u64().unwrap(), e["value"].to_string()))
            .collect()
    };
    assert_eq!(curve(&resumed), curve(&straight));
    assert!(!curve(&resumed).is_empty());
}

/// A trial that starts over writes its answers afresh: none are left from grid points an
/// earlier attempt evaluated and this one no longer has.
#[test]
fn a_trial_started_over_keeps_only_the_answers_of_its_own_points() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let dir = p.path().join("t");
    let params = r#"{"learning_rate":0.003,"steps":40,"seed":2}"#;
    let steps_answered = || -> std::collections::BTreeSet<u64> {
        std::fs::read_to_string(dir.join("responses.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["steps"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    trial(&dir, &cache, params, false);
    assert_eq!(steps_answered(), [10, 40].into());
    let out = trial_command(&dir, &cache, params, true)
        .env("SWEEP_AXES", r#"{"steps":[40]}"#)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(steps_answered(), [40].into());
}

#[test]
fn the_same_seed_gives_the_same_numbers_and_another_seed_does_not() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let run = |dir: &str, seed: u32| {
        let params = format!(r#"{{"learning_rate":0.003,"steps":10,"seed":{seed}}}"#);
        results(&trial(&p.path().join(dir), &cache, &params, false))
    };
    let first = run("a", 1);
    assert_eq!(first, run("b", 1));
    let other = run("c", 2);
    let loss = |r: &BTreeMap<String, serde_json::Value>| r["null"]["eval_loss"].clone();
    assert_ne!(loss(&first), loss(&other));
}

/// `base_seed` starts a trial from another base model (aligned with that seed, trained once
/// and cached beside the first), and `base_seed` equal to `[trainer] base_seed` is the
/// trial without it; `sweep base --seed` trains that same model ahead of the sweep.
#[test]
fn base_seed_picks_the_base_model_and_sweep_base_trains_it_ahead() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let base = |params: &str, dir: &str| single(&p.path().join(dir), &cache, params, &[]).0;
    let default = base(r#"{"steps":0}"#, "a");
    assert_eq!(default, base(r#"{"steps":0,"base_seed":0}"#, "b"));
    let other = base(r#"{"steps":0,"base_seed":1}"#, "c");
    assert_ne!(default["eval_loss"], other["eval_loss"]);
    let cached = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "bpk"))
        })
        .count();
    assert_eq!(cached, 2, "one base model per base seed");
    p.write(
        "g.toml",
        &format!("[sweep]\nname = \"g\"\n[grid]\nseed = [0]\n{TINY}"),
    );
    let ahead = p.run(
        &["base", "g.toml", "--seed", "1", "--cache-dir"]
            .into_iter()
            .chain([cache.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(ahead.status.success(), "{}", text(&ahead.stderr));
    assert!(
        !text(&ahead.stderr).contains("training the base model"),
        "seed 1's base was cached by the trial: {}",
        text(&ahead.stderr)
    );
    // A checkpoint has no alignment seeds: refused before anything is loaded.
    p.write(
        "hf.toml",
        "[sweep]\nname = \"h\"\n[grid]\nseed = [0]\n[trainer]\nmodel = { hf = \"m\" }\n",
    );
    let refused = p.run(&["base", "hf.toml", "--seed", "1"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--seed picks which base model to train"),
        "{}",
        text(&refused.stderr)
    );
}

/// `sweep base --save` writes the base model with where it came from; a grid naming the file
/// (`[trainer] base_model`) fine-tunes exactly those weights without training or caching a
/// base, says whether the file is this trainer's recipe, and refuses `base_seed`.
#[test]
fn a_saved_base_model_is_fine_tuned_as_saved_without_training_one() {
    let p = Project::new();
    p.write(
        "g.toml",
        &format!("[sweep]\nname = \"g\"\n[grid]\nseed = [0]\n{TINY}"),
    );
    let cache = p.path().join("cache");
    let saved = p.run(&[
        "base",
        "g.toml",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--save",
        "base.bpk",
    ]);
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let provenance: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("base.json")).unwrap())
            .unwrap();
    let summary = text(&saved.stdout);
    assert!(
        summary.contains(&format!(
            "base model {} ",
            provenance["key"].as_str().unwrap()
        )),
        "{summary} vs {provenance}"
    );
    assert!(provenance["metrics"]["unsafe_rate"].is_number());

    let from_cache = single(&p.path().join("a"), &cache, r#"{"steps":0}"#, &[]).0;
    let mut trainer: Value = serde_json::from_str(&tiny_trainer_json()).unwrap();
    trainer["base_model"] = p.path().join("base.bpk").to_str().unwrap().into();
    let other_cache = p.path().join("empty-cache");
    let from_file = |dir: &str| {
        single(
            &p.path().join(dir),
            &other_cache,
            r#"{"steps":0}"#,
            &[("SWEEP_TRAINER", &trainer.to_string())],
        )
    };
    let (metrics, log) = from_file("b");
    assert_eq!(
        metrics, from_cache,
        "the file holds the cached base exactly"
    );
    assert!(log.contains("(this trainer's recipe and build)"), "{log}");
    assert!(!log.contains("training the base model"), "{log}");
    assert!(!other_cache.exists(), "nothing trained, nothing cached");

    // A file saved by another build of the same recipe, or under another recipe, is used
    // as saved, and says which.
    let mut stale = provenance.clone();
    stale["key"] = "0123456789abcdef".into();
    p.write("base.json", &stale.to_string());
    let (metrics, log) = from_file("c");
    assert_eq!(metrics, from_cache);
    assert!(log.contains("saved by another build of it"), "{log}");
    stale["recipe"] = "fedcba9876543210".into();
    p.write("base.json", &stale.to_string());
    let (metrics, log) = from_file("d");
    assert_eq!(metrics, from_cache);
    assert!(
        log.contains("another recipe (fedcba9876543210") && log.contains("sweep base --save"),
        "{log}"
    );

    // base_seed picks a base to train: with a file there is none to pick.
    p.write(
        "s.toml",
        &format!(
            "[sweep]\nname = \"s\"\n[grid]\nbase_seed = [0, 1]\n{TINY}base_model = \"base.bpk\"\n"
        ),
    );
    let refused = p.run(&["run", "s.toml"]);
    let err = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("base_seed") && err.contains("base_model"),
        "{err}"
    );
}

/// The refusal-replay control trains on refusals too: the same run with a share of them is
/// another run, and no share is the plain benign fine-tune.
#[test]
fn refusal_replay_changes_the_run_and_zero_is_the_plain_fine_tune() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let run = |params: &str, dir: &str| single(&p.path().join(dir), &cache, params, &[]).0;
    let plain = run(r#"{"learning_rate":0.003,"steps":10}"#, "a");
    assert_eq!(
        plain,
        run(
            r#"{"learning_rate":0.003,"steps":10,"refusal_replay":0}"#,
            "b"
        )
    );
    let replayed = run(
        r#"{"learning_rate":0.003,"steps":10,"refusal_replay":0.5}"#,
        "c",
    );
    assert_ne!(plain["eval_loss"], replayed["eval_loss"]);
}

/// After an out-of-memory attempt the scheduler asks for a split micro-batch: the trial
/// accumulates more, smaller passes to the same effective batch, so it computes the same
/// numbers up to rounding, and says in its result that it did.
#[test]
fn a_split_micro_batch_gives_the_same_numbers_and_is_recorded() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let params = r#"{"learning_rate":0.003,"steps":10,"batch_size":8,"seed":1}"#;
    let run = |dir: &str, split: &str| {
        single(
            &p.path().join(dir),
            &cache,
            params,
            &[("SWEEP_MICRO_BATCH_SPLIT", split)],
        )
        .0
    };
    let whole = run("whole", "1");
    let split = run("split", "4");
    assert_eq!(split["micro_batch_split"], 4.0);
    assert!(whole.get("micro_batch_split").is_none(), "{whole}");
    let (a, b) = (
        whole["eval_loss"].as_f64().unwrap(),
        split["eval_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-4 * a, "eval_loss {a} vs {b}");
}

/// bf16 is for GPUs: on the CPU the trial runs fp32, says so, and records `bf16 = 0`, with
/// the numbers of an fp32 run.
#[test]
fn bf16_on_the_cpu_runs_fp32_and_says_so() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let params = r#"{"learning_rate":0.003,"steps":10,"seed":1}"#;
    let run = |dir: &str, trainer: String| {
        single(
            &p.path().join(dir),
            &cache,
            params,
            &[("SWEEP_TRAINER", &trainer)],
        )
    };
    let (fp32, _) = run("fp32", tiny_trainer_json());
    let bf16_table = tiny_trainer_json().replacen('{', r#"{"precision":"bf16","#, 1);
    let (bf16, log) = run("bf16", bf16_table);
    assert!(
        log.contains("precision: fp32 (bf16 applies on a GPU only)"),
        "{log}"
    );
    assert_eq!(bf16["bf16"], 0.0);
    assert!(fp32.get("bf16").is_none(), "{fp32}");
    assert_eq!(bf16["eval_loss"], fp32["eval_loss"]);
}

#[test]
fn bad_trainer_tables_and_data_files_are_refused_before_anything_runs() {
    let p = Project::new();
    p.write(
        "bad.jsonl",
        "{\"instruction\": \"hi\", \"response\": \"yo\"}\nnot json\n",
    );
    // Each complaint names the line of the key at fault (line 7), not the [trainer] header.
    let head = "[sweep]\nname = \"b\"\n[grid]\nlearning_rate = [1e-3]\n\n";
    for (body, needles) in [
        (
            "[trainer]\nbase_step = 10\n",
            vec!["b.toml:7", "unknown field `base_step`"],
        ),
        (
            "[trainer]\nmodel = { n_heads = 3 }\n",
            vec!["b.toml:7", "n_heads must divide d_model"],
        ),
        (
            "[trainer]\nfinetune_data = \"bad.jsonl\"\n",
            vec!["b.toml:7", "bad.jsonl:2:"],
        ),
        (
            "[trainer]\nkeywords = \"missing.txt\"\n",
            vec!["missing.txt", "relative paths are read from"],
        ),
        (
            "[trainer]\neval_harmful = 1000\n",
            vec!["eval_harmful", "at most 128"],
        ),
        (
            "[trainer]\nbase_model = \"missing.bpk\"\n",
            vec!["b.toml:7", "missing.bpk", "sweep base --save"],
        ),
        (
            "[trainer]\nbase_model = \"bad.jsonl\"\n",
            vec!["b.toml:7", "bad.jsonl", "cannot load it as a base model"],
        ),
        (
            "[trainer]\nbase_model = \"m.bpk\"\nmodel = { hf = \"m\" }\n",
            vec!["b.toml:7", "base_model", "drop one of them"],
        ),
    ] {
        p.write("b.toml", &format!("{head}{body}"));
        let out = p.run(&["run", "b.toml"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{body}: missing {needle:?} in {err}");
        }
        assert!(!p.db().exists() || p.run(&["status", "b"]).status.code() != Some(0));
    }
    p.write(
        "c.toml",
        "[sweep]\nname = \"c\"\n[grid]\nlearning_rate = [1e-3, -1e-3]\n",
    );
    let out = p.run(&["run", "c.toml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("c.toml:4: "), "the axis's line: {err}");
    assert!(err.contains("`learning_rate`: must be positive"), "{err}");
    assert!(
        err.contains(r#""learning_rate":-0.001"#),
        "names the point: {err}"
    );
}

/// The libtorch backend gives the numbers flex gives, from the same base weights. The two
/// backends draw different random initialisations and round differently, so each caches its
/// own base model (the device kind is part of the cache key); the test puts flex's base
/// weights under libtorch's key before the compared run. The fine-tuning sampler is the same
/// on both. On the CPU libtorch is deterministic by seed as flex is: a second process computes
/// the same numbers bit for bit.
#[cfg(feature = "tch")]
#[test]
fn tch_matches_flex_from_the_same_base_weights_and_repeats_itself() {
    let p = Project::new();
    let cache = p.path().join("cache");
    let params = r#"{"learning_rate":0.003,"steps":20,"ema_decay":0.9,"seed":3}"#;
    let run = |dir: &str, backend: &str| {
        let trainer = tiny_trainer_json().replacen('{', &format!(r#"{{"backend":"{backend}","#), 1);
        let (metrics, log) = single(
            &p.path().join(dir),
            &cache,
            params,
            &[("SWEEP_TRAINER", &trainer)],
        );
        assert!(log.contains(&format!("device: {backend} cpu")), "{log}");
        metrics
    };
    let bases = || -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "bpk"))
            .collect()
    };
    let f = &run("flex", "flex");
    let flex_base = bases().into_iter().next().expect("flex cached its base");
    run("tch-own-base", "tch");
    let tch_base = bases()
        .into_iter()
        .find(|p| *p != flex_base)
        .expect("libtorch cached a base of its own");
    std::fs::copy(&flex_base, &tch_base).unwrap();
    let t = &run("tch", "tch");
    assert_eq!(
        t,
        &run("tch-again", "tch"),
        "the same trial and seed on libtorch gives the same numbers"
    );
    assert_eq!(
        t["on_gpu"], 0.0,
        "no GPU leased: on the CPU, and it says so"
    );
    let (fl, tl) = (
        f["eval_loss"].as_f64().unwrap(),
        t["eval_loss"].as_f64().unwrap(),
    );
    assert!(
        (fl - tl).abs() <= 1e-3 * fl.abs(),
        "eval_loss flex {fl} vs tch {tl}"
    );
    for metric in ["unsafe_rate", "over_refusal_rate", "utility"] {
        let (a, b) = (f[metric].as_f64().unwrap(), t[metric].as_f64().unwrap());
        // Greedy decoding may flip one answer of eight on a near-tie.
        assert!(
            (a - b).abs() <= 0.125 + 1e-9,
            "{metric}: flex {a} vs tch {b}"
        );
    }
}

/// `sweep generate` on a directory that is not a usable checkpoint: an error that names the
/// file and what is wrong, printed once, and a failing exit status; never a panic.
#[test]
fn generate_refuses_what_is_not_a_checkpoint() {
    let p = Project::new();
    let out = p.run(&["generate", "no-such-model", "Hi"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-model") && err.contains("not found"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    std::fs::create_dir_all(p.path().join("m")).unwrap();
    p.write(
        "m/config.json",
        r#"{"architectures": ["GPT2LMHeadModel"], "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}"#,
    );
    let out = p.run(&["generate", "m", "Hi"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("config.json") && err.contains("architectures") && err.contains("GPT2"),
        "{err}"
    );
    assert_eq!(
        err.matches("GPT2LMHeadModel").count(),
        1,
        "the cause once: {err}"
    );
}

/// `sweep base` trains the base model a grid's `[trainer]` table describes, caches it, prints
/// its key and scores (and every answer with `--show-responses`), and a second call loads it
/// from the cache under the same key.
#[test]
fn base_trains_once_and_reports_its_scores() {
    let p = Project::new();
    p.write(
        "g.toml",
        &format!("[sweep]\nname = \"g\"\n[grid]\nseed = [0]\n{TINY}"),
    );
    let cache = p.path().join("cache");
    let cache = cache.to_str().unwrap();
    let first = p.run(&["base", "g.toml", "--cache-dir", cache, "--show-responses"]);
    let (out, err) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{err}");
    assert!(err.contains("training the base model"), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("[harmful ")).count(),
        8,
        "{out}"
    );
    let summary = out.lines().last().unwrap();
    let key = summary.split(' ').nth(2).unwrap();
    let metrics: Value = serde_json::from_str(&summary[summary.find('{').unwrap()..]).unwrap();
    for name in [
        "unsafe_rate",
        "complies_rate",
        "over_refusal_rate",
        "degenerate_rate",
    ] {
        assert!(metrics[name].is_number(), "{name} in {summary}");
    }
    let again = p.run(&["base", "g.toml", "--cache-dir", cache]);
    let out = text(&again.stdout);
    assert!(again.status.success());
    assert!(!text(&again.stderr).contains("training the base model"));
    assert!(out.starts_with(&format!("base model {key} ")), "{out}");
    assert!(std::path::Path::new(cache)
        .join(format!("base-{key}.bpk"))
        .exists());
}

/// Writes and runs sweep `g` over `axes` (lines of `[grid]`) on the tiny model, with `extra`
/// `[trainer]` keys.
fn run_tiny(p: &Project, axes: &str, extra: &str) {
    p.write(
        "g.toml",
        &format!("[sweep]\nname = \"g\"\n[grid]\n{axes}\n{TINY}{extra}"),
    );
    let out = p.run(&["run", "g.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Files of `name` anywhere under `root`.
fn find_files(root: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found
}

/// `[trainer] benchmarks`: each benchmark's accuracy metrics with their fixed halves, on every
/// point a run reports, and each item's log-likelihoods in the trial's `benchmarks.jsonl`.
#[test]
fn benchmarks_are_scored_into_metrics_and_per_item_lines() {
    let p = Project::new();
    std::fs::create_dir(p.path().join("b")).unwrap();
    p.write(
        "b/piqa.jsonl",
        include_str!("../../crates/trainer/tests/fixtures/benchmarks/piqa.jsonl"),
    );
    p.write(
        "arc.jsonl",
        include_str!("../../crates/trainer/tests/fixtures/benchmarks/arc_easy.jsonl"),
    );
    run_tiny(
        &p,
        "learning_rate = [1e-3]\nsteps = [0, 10]",
        "benchmarks = [\"piqa\", \"arc_easy:arc.jsonl\"]\nbenchmark_dir = \"b\"\nbenchmark_items = 12\n",
    );
    let rows = p.export();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        for name in ["piqa", "arc_easy"] {
            for metric in ["acc", "acc_norm"] {
                for prefix in ["", "val_", "test_"] {
                    let column = format!("metric_{prefix}{name}_{metric}");
                    let value: f64 = row[&column]
                        .parse()
                        .unwrap_or_else(|_| panic!("{column}: {row:?}"));
                    assert!((0.0..=1.0).contains(&value), "{column} = {value}");
                }
            }
        }
    }
    let files = find_files(p.path(), "benchmarks.jsonl");
    assert_eq!(files.len(), 1, "one run reported both points: {files:?}");
    let lines: Vec<Value> = std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 12 items of each benchmark at each of the two points.
    assert_eq!(lines.len(), 2 * 2 * 12);
    for line in &lines {
        let choices = line["loglikelihoods"].as_array().unwrap();
        let expected = if line["benchmark"] == "piqa" { 2 } else { 3 };
        assert!(choices.len() >= expected, "{line}");
        assert!(choices.iter().all(|c| c.as_f64().unwrap() < 0.0), "{line}");
        assert!(
            line["split"] == "validation" || line["split"] == "test",
            "{line}"
        );
    }
    // The metric is the share of the items' verdicts.
    let base_piqa: Vec<&Value> = lines
        .iter()
        .filter(|l| l["steps"] == 0 && l["benchmark"] == "piqa")
        .collect();
    let right = base_piqa.iter().filter(|l| l["acc"] == true).count() as f64;
    let row = rows.iter().find(|r| r["param_steps"] == "0").unwrap();
    let stored = row["metric_piqa_acc"].parse::<f64>().unwrap();
    assert!(
        (stored - right / 12.0).abs() < 1e-12,
        "{stored} vs {right}/12"
    );
}

/// A benchmark that cannot be read is refused before the sweep is stored, naming the grid's
/// line, the file, its line and the field.
#[test]
fn a_bad_benchmark_is_refused_before_anything_is_stored() {
    let p = Project::new();
    p.write(
        "piqa.jsonl",
        "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 0}\n",
    );
    let head = "[sweep]\nname = \"b\"\n[grid]\nlearning_rate = [1e-3]\n\n[trainer]\n";
    for (body, needles) in [
        (
            "benchmarks = [\"piqa:piqa.jsonl\"]\n",
            vec!["b.toml:7", "piqa.jsonl", "line 2", "`sol2` is missing"],
        ),
        (
            "benchmarks = [\"hellaswag\"]\n",
            vec![
                "b.toml:7",
                "benchmarks/hellaswag.jsonl",
                "scripts/benchmarks",
            ],
        ),
        (
            "benchmarks = [\"winogrande\"]\n",
            vec![
                "b.toml:7",
                "unknown benchmark \"winogrande\"",
                "hellaswag, arc_easy",
            ],
        ),
        (
            "benchmarks = [\"piqa:piqa.jsonl\"]\nbenchmark_items = 0\n",
            vec!["b.toml:8", "benchmark_items"],
        ),
    ] {
        p.write("b.toml", &format!("{head}{body}"));
        let out = p.run(&["run", "b.toml"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{body}: missing {needle:?} in {err}");
        }
        assert!(!p.db().exists(), "{body}: the database was created");
    }
}

/// `sweep compare`: two configurations paired prompt by prompt over the same seeds, from the
/// answers their trials kept (a trial a shared run completed included), against a recount of
/// those files and a binomial written out here.
#[test]
fn compare_pairs_verdicts_by_seed_and_prompt() {
    let p = Project::new();
    run_tiny(
        &p,
        "learning_rate = [1e-3, 3e-2]\nsteps = [5, 10]\nseed = [0, 1]",
        "",
    );
    let compare = |a: &str, b: &str, metric: &str| {
        let out = p.run(&["compare", "g", a, b, "--metric", metric, "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // Steps 5 is reported by each steps-10 run: its verdicts are in that trial's file.
    let got = compare(
        "learning_rate=1e-3,steps=5",
        "learning_rate=3e-2,steps=5",
        "unsafe_rate",
    );
    // The recount: each seed's run wrote responses.jsonl; steps-5 answers to harmful prompts.
    let rows = p.export();
    let mut pairs: Vec<(bool, bool)> = Vec::new();
    for seed in ["0", "1"] {
        let verdicts = |lr: &str| -> BTreeMap<String, bool> {
            // The run of this learning rate and seed wrote its file in its own directory.
            let file = rows
                .iter()
                .filter(|r| r["param_learning_rate"] == lr && r["param_seed"] == seed)
                .map(|r| {
                    p.path()
                        .join("sweep-trials/g")
                        .join(&r["trial_id"])
                        .join("responses.jsonl")
                })
                .find(|f| f.is_file())
                .unwrap();
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|l| l["steps"] == 5 && l["set"] == "harmful")
                .map(|l| {
                    (
                        l["prompt"].as_str().unwrap().to_string(),
                        l["refused"] == false,
                    )
                })
                .collect()
        };
        let (a, b) = (verdicts("0.001"), verdicts("0.03"));
        pairs.extend(a.iter().map(|(prompt, &x)| (x, b[prompt])));
    }
    assert_eq!(got["prompts"], pairs.len());
    let share = |pick: fn(&(bool, bool)) -> bool| {
        pairs.iter().filter(|p| pick(p)).count() as f64 / pairs.len() as f64
    };
    assert_eq!(got["a"]["rate"].as_f64().unwrap(), share(|p| p.0));
    assert_eq!(got["b"]["rate"].as_f64().unwrap(), share(|p| p.1));
    let only_a = pairs.iter().filter(|p| p.0 && !p.1).count() as u64;
    let only_b = pairs.iter().filter(|p| !p.0 && p.1).count() as u64;
    assert_eq!(
        (got["only_a"].as_u64(), got["only_b"].as_u64()),
        (Some(only_a), Some(only_b))
    );
    // McNemar, exact: twice the smaller binomial tail, by integer coefficients.
    let n = only_a + only_b;
    let choose = |k: u64| (0..k).fold(1u128, |v, i| v * u128::from(n - i) / u128::from(i + 1));
    let tail: u128 = (0..=only_a.min(only_b)).map(choose).sum();
    let expected = (2.0 * tail as f64 / 2f64.powi(n as i32)).min(1.0);
    let p_value = got["p_value"].as_f64().unwrap();
    assert!(
        (p_value - expected).abs() <= 1e-12,
        "{p_value} vs {expected}"
    );
    let (lo, hi) = (
        got["ci95"][0].as_f64().unwrap(),
        got["ci95"][1].as_f64().unwrap(),
    );
    let d = got["difference"].as_f64().unwrap();
    assert!(lo <= d && d <= hi, "{got}");
    assert_eq!(got["replicates"].as_array().unwrap().len(), 2);

    // Every format writes it; the table names both sides.
    for format in ["table", "csv", "markdown", "latex"] {
        let out = p.run(&[
            "compare",
            "g",
            "learning_rate=1e-3,steps=10",
            "learning_rate=3e-2,steps=10",
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("unsafe"), "{format}");
    }
    // Across sweeps (`--b-sweep`): B read in another sweep that evaluated the same prompts.
    // Its steps-5 runs, with the same settings and seeds, give the verdicts the steps-10 runs
    // reported here at step 5, so the comparison comes out as it did within one sweep; and a
    // configuration may meet itself across two sweeps, with nothing to tell them apart. There
    // the seed is fixed, here swept: replicates pair by value either way.
    p.write(
        "h.toml",
        &format!(
            "[sweep]\nname = \"h\"\n[grid]\nlearning_rate = [3e-2]\nsteps = [5]\n[fixed]\nseed = 0\n{TINY}"
        ),
    );
    let out = p.run(&["run", "h.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let across = |a: &str| {
        let out = p.run(&[
            "compare",
            "g",
            a,
            "learning_rate=3e-2,steps=5",
            "--b-sweep",
            "h",
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let within = compare(
        "learning_rate=1e-3,steps=5,seed=0",
        "learning_rate=3e-2,steps=5,seed=0",
        "unsafe_rate",
    );
    let got = across("learning_rate=1e-3,steps=5");
    for key in ["prompts", "only_a", "only_b", "difference", "p_value"] {
        assert_eq!(got[key], within[key], "{key}: {got} against {within}");
    }
    assert_eq!(got["replicates"].as_array().unwrap().len(), 1, "{got}");
    let itself = across("learning_rate=3e-2,steps=5");
    assert_eq!(
        (itself["only_a"].as_u64(), itself["only_b"].as_u64()),
        (Some(0), Some(0)),
        "{itself}"
    );
    // Seeds run as separate sweeps (h: seed 0, h1: seed 1) are read as one design when
    // named together: the comparison over both seeds comes out as within g.
    p.write(
        "h1.toml",
        &format!(
            "[sweep]\nname = \"h1\"\n[grid]\nlearning_rate = [3e-2]\nsteps = [5]\n[fixed]\nseed = 1\n{TINY}"
        ),
    );
    let out = p.run(&["run", "h1.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let both_seeds = compare(
        "learning_rate=1e-3,steps=5",
        "learning_rate=3e-2,steps=5",
        "unsafe_rate",
    );
    let out = p.run(&[
        "compare",
        "g",
        "learning_rate=1e-3,steps=5",
        "learning_rate=3e-2,steps=5",
        "--b-sweep",
        "h,h1",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let split = serde_json::from_slice::<Value>(&out.stdout).unwrap();
    for key in ["prompts", "only_a", "only_b", "difference", "p_value"] {
        assert_eq!(
            split[key], both_seeds[key],
            "{key}: {split} against {both_seeds}"
        );
    }
    assert_eq!(split["replicates"].as_array().unwrap().len(), 2, "{split}");
    // Sweeps that repeat a replicate are refused, naming both trials; an unknown sweep is
    // named.
    for (b_sweep, needles) in [
        ("h,g", ["both have seed=0", "(h)"]),
        ("nosuch", ["configuration B", "nosuch"]),
    ] {
        let out = p.run(&[
            "compare",
            "g",
            "learning_rate=1e-3,steps=5",
            "learning_rate=3e-2,steps=5",
            "--b-sweep",
            b_sweep,
        ]);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{b_sweep}");
        assert!(needles.iter().all(|n| err.contains(n)), "{b_sweep}: {err}");
    }
    // What cannot be compared says why.
    for (a, b, metric, needle) in [
        (
            "learning_rate=1e-3",
            "learning_rate=3e-2,steps=10",
            "unsafe_rate",
            "matches 2 configurations",
        ),
        (
            "learning_rate=1e-3,steps=5",
            "learning_rate=1e-3,steps=5",
            "unsafe_rate",
            "same configuration",
        ),
        (
            "learning_rate=1e-3,steps=5",
            "learning_rate=3e-2,steps=5",
            "eval_loss",
            "no per-prompt verdicts",
        ),
        (
            "learning_rate=1e-4,steps=5",
            "learning_rate=3e-2,steps=5",
            "unsafe_rate",
            "no completed trial",
        ),
        (
            "learning_rate=1e-3,steps=5",
            "learning_rate=3e-2,steps=5",
            "hellaswag_acc",
            "benchmarks.jsonl",
        ),
    ] {
        let out = p.run(&["compare", "g", a, b, "--metric", metric]);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{a} {b} {metric}");
        assert!(
            err.contains(needle),
            "{a} / {b} / {metric}: missing {needle:?} in {err}"
        );
    }
}

/// `sweep confirm`: the configuration `--best` chooses and a baseline run again on new seeds
/// as a sweep of their own; the original's trials are not run again, the report uses the new
/// seeds only, and a second `confirm` resumes instead of running anything twice.
#[test]
fn confirm_runs_the_choice_on_new_seeds_only() {
    let p = Project::new();
    run_tiny(
        &p,
        "learning_rate = [1e-3, 3e-2]\nsteps = [10]\nseed = [0, 1]",
        "",
    );
    let best = p.run(&["report", "g", "--best", "eval_loss:min", "--format", "json"]);
    let best: Value = serde_json::from_slice(&best.stdout).unwrap();
    let chosen_lr = best["sweeps"][0]["chosen"]["params"]["learning_rate"]
        .as_f64()
        .unwrap();
    let baseline = if chosen_lr == 1e-3 {
        "learning_rate=3e-2"
    } else {
        "learning_rate=1e-3"
    };
    let attempts = |p: &Project, sweep: &str| -> Vec<String> {
        p.export()
            .into_iter()
            .filter(|r| r["sweep"] == sweep)
            .map(|r| format!("{}:{}", r["trial_id"], r["attempts"]))
            .collect()
    };
    let before = attempts(&p, "g");

    let confirm = |format: &str| {
        p.run(&[
            "confirm",
            "g",
            "--best",
            "eval_loss:min",
            "--baseline",
            baseline,
            "--seeds",
            "2",
            "--format",
            format,
        ])
    };
    let out = confirm("json");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sweep"], "g-confirm");
    assert_eq!(report["seeds"], serde_json::json!([2, 3]));
    assert_eq!(report["metric"], "test_eval_loss");
    assert_eq!(
        attempts(&p, "g"),
        before,
        "the original's trials are not run again"
    );
    let rows: Vec<_> = p
        .export()
        .into_iter()
        .filter(|r| r["sweep"] == "g-confirm")
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    let mut seeds: Vec<&str> = rows.iter().map(|r| r["param_seed"].as_str()).collect();
    seeds.sort();
    assert_eq!(seeds, ["2", "2", "3", "3"]);
    // The chosen configuration's number is the mean over its new seeds, and nothing else.
    let chosen = &report["configurations"][0];
    assert_eq!(chosen["role"], "chosen");
    assert_eq!(chosen["stat"]["n"], 2);
    let new_values: Vec<f64> = rows
        .iter()
        .filter(|r| r["param_learning_rate"].parse::<f64>().unwrap() == chosen_lr)
        .map(|r| r["metric_test_eval_loss"].parse().unwrap())
        .collect();
    let mean = new_values.iter().sum::<f64>() / 2.0;
    assert!(
        (chosen["stat"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
        "{report}"
    );

    // Again: the same sweep, resumed; nothing runs twice.
    let after = attempts(&p, "g-confirm");
    let out = confirm("table");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("0 new, 4 already stored"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("new seeds [2, 3]"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(attempts(&p, "g-confirm"), after);

    // A baseline the sweep does not have stores nothing.
    let out = p.run(&[
        "confirm",
        "g",
        "--best",
        "eval_loss:min",
        "--baseline",
        "learning_rate=5e-1",
        "--as",
        "nope",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no completed trial matches"),
        "{}",
        text(&out.stderr)
    );
    assert!(p.export().iter().all(|r| r["sweep"] != "nope"));
}
