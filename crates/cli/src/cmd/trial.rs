//! `sweep trial` (hidden): the built-in trial, started by the scheduler for grids without a
//! `command`. Speaks the trial protocol on stdout. `sweep base` trains and caches the aligned
//! base model on demand and prints its scores.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use sweep_trainer::run::{base_model, evaluate, fine_tune, prepare, BaseConfig, Report};
use sweep_trainer::spec::TrialSpec;

use crate::exit_codes;

/// `sweep trial`.
#[derive(Debug, Args)]
pub struct TrialArgs {
    /// Parameters as a JSON object (default: $SWEEP_PARAMS).
    #[arg(long, env = "SWEEP_PARAMS", default_value = "{}")]
    params: String,
    /// Where the base model is cached (default: `.cache` in the sweep's trial directory root).
    #[arg(long, env = "SWEEP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

/// `sweep base`.
#[derive(Debug, Args)]
pub struct BaseArgs {
    /// Where the base model is cached.
    #[arg(long, env = "SWEEP_CACHE_DIR", default_value = "sweep-trials/.cache")]
    cache_dir: PathBuf,
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn reporter(r: Report) {
    match r {
        Report::Metric { step, name, value } => {
            emit(json!({"event": "metric", "step": step, "name": name, "value": value}))
        }
        Report::Note(text) => eprintln!("{text}"),
    }
}

fn default_cache_dir() -> PathBuf {
    // SWEEP_TRIAL_DIR is <root>/<sweep>/<trial>: share one cache per root.
    std::env::var_os("SWEEP_TRIAL_DIR")
        .map(PathBuf::from)
        .and_then(|d| d.parent()?.parent().map(|root| root.join(".cache")))
        .unwrap_or_else(|| PathBuf::from("sweep-trials/.cache"))
}

pub fn trial(args: TrialArgs) -> anyhow::Result<i32> {
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.params).context("the trial parameters are not a JSON object")?;
    let spec = TrialSpec::from_params(&params)?;
    let device = sweep_trainer::cpu_device();
    let config = BaseConfig::default();
    let prepared = prepare(config.model.max_seq);
    let cache = args.cache_dir.unwrap_or_else(default_cache_dir);
    let base = base_model(&config, &prepared, &cache, &device, &mut reporter)?;
    let model = fine_tune(&spec, &base, &prepared, &device, &mut reporter);
    let metrics = evaluate(&model, &prepared, config.model.max_seq, &device);
    let mode = if spec.ema_decay > 0.0 {
        format!("{:?}", spec.ema_mode).to_lowercase()
    } else {
        "off".into()
    };
    eprintln!(
        "evaluated the {} model (ema: {mode})",
        if spec.steps == 0 {
            "base"
        } else {
            "fine-tuned"
        }
    );
    emit(json!({"event": "result", "metrics": metrics}));
    Ok(exit_codes::OK)
}

pub fn base(args: BaseArgs) -> anyhow::Result<i32> {
    let device = sweep_trainer::cpu_device();
    let config = BaseConfig::default();
    let prepared = prepare(config.model.max_seq);
    let start = std::time::Instant::now();
    let base = base_model(
        &config,
        &prepared,
        &args.cache_dir,
        &device,
        &mut |r| match r {
            Report::Metric { step, name, value } => eprintln!("{name} step {step}: {value:.4}"),
            Report::Note(text) => eprintln!("{text}"),
        },
    )?;
    let metrics = evaluate(&base, &prepared, config.model.max_seq, &device);
    println!(
        "base model {} ({:.0} s): {}",
        config.key(),
        start.elapsed().as_secs_f64(),
        json!(metrics)
    );
    Ok(exit_codes::OK)
}
