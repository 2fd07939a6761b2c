//! `sweep trial` (hidden): the built-in trial, started by the scheduler for grids without a
//! `command`. Speaks the trial protocol on stdout. `sweep base` trains and caches the aligned
//! base model on demand and prints its scores.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::json;
use sweep_core::protocol::Event;
use sweep_core::Grid;
use sweep_trainer::base::{base_model, BaseConfig};
use sweep_trainer::config::TrainerConfig;
use sweep_trainer::device::Backend;
use sweep_trainer::precision::Precision;
use sweep_trainer::report::Report;
use sweep_trainer::setup::{evaluate, transcripts, Setup};
use sweep_trainer::spec::TrialSpec;
use sweep_trainer::trial::{run_trial, Checkpoints, Plan, TrialError};

use crate::exit_codes;
use crate::output::say;

/// Exit status of a trial stopped by SIGTERM after writing its checkpoint (128 + 15, as if
/// the signal had ended it).
const STOPPED: i32 = 143;

/// `sweep trial`.
#[derive(Debug, Args)]
pub struct TrialArgs {
    /// Parameters as a JSON object (default: $SWEEP_PARAMS).
    #[arg(long, env = "SWEEP_PARAMS", default_value = "{}")]
    params: String,
    /// The grid's `[trainer]` table as JSON (default: $SWEEP_TRAINER).
    #[arg(long, env = "SWEEP_TRAINER", default_value = "{}")]
    trainer: String,
    /// Values of every swept parameter, as JSON (default: $SWEEP_AXES).
    #[arg(long, env = "SWEEP_AXES", default_value = "{}")]
    axes: String,
    /// Where checkpoints go (default: $SWEEP_TRIAL_DIR; none without it).
    #[arg(long, env = "SWEEP_TRIAL_DIR")]
    trial_dir: Option<PathBuf>,
    /// Continue from the checkpoint in the trial directory ($SWEEP_RESUME=1).
    #[arg(long, env = "SWEEP_RESUME", value_parser = parse_flag, default_value = "0")]
    resume: bool,
    /// Where the base model is cached (default: `.cache` in the sweep's trial directory root).
    #[arg(long, env = "SWEEP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Split each micro-batch into this many parts (set by the scheduler after an attempt ran
    /// out of GPU memory; the effective batch is unchanged).
    #[arg(long, env = sweep_scheduler::SPLIT_VAR, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    micro_batch_split: u32,
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(format!("expected 1 or 0, got {other:?}")),
    }
}

/// `sweep base`.
#[derive(Debug, Args)]
pub struct BaseArgs {
    /// A grid file whose `[trainer]` table shapes the base model (default: built-in settings).
    grid: Option<PathBuf>,
    /// Where the base model is cached.
    #[arg(long, env = "SWEEP_CACHE_DIR", default_value = "sweep-trials/.cache")]
    cache_dir: PathBuf,
    /// Also evaluate every N steps while training (slower; shows when the bars are reached).
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Print every evaluation prompt with the base model's answer.
    #[arg(long)]
    show_responses: bool,
}

fn emit(event: Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_line());
    let _ = out.flush();
}

/// Turns the trainer's reports into protocol events (and log lines on stderr).
fn reporter(r: Report) {
    match r {
        Report::Metric { step, name, value } => emit(Event::Metric {
            step: step as u64,
            name: name.to_string(),
            value: Some(value),
        }),
        Report::Note(text) => say!("{text}"),
        // The trainer writes swept values back as the grid gave them (numbers, text, bools),
        // so they always read as parameters; a result it could not attribute is not reported.
        Report::Result { params, metrics } => {
            match serde_json::from_value(serde_json::Value::Object(params)) {
                Ok(params) => emit(Event::Result {
                    metrics: metrics.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    params,
                }),
                Err(e) => say!("a result for unreadable grid parameters was not reported: {e}"),
            }
        }
        Report::Checkpoint { step } => emit(Event::Checkpoint { step: step as u64 }),
    }
}

fn default_cache_dir(trial_dir: Option<&Path>) -> PathBuf {
    // SWEEP_TRIAL_DIR is <root>/<sweep>/<trial>: share one cache per root.
    trial_dir
        .and_then(|d| d.parent()?.parent().map(|root| root.join(".cache")))
        .unwrap_or_else(|| PathBuf::from("sweep-trials/.cache"))
}

pub fn trial(args: TrialArgs) -> anyhow::Result<i32> {
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.params).context("the trial parameters are not a JSON object")?;
    let axes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.axes).context("SWEEP_AXES is not a JSON object")?;
    let mut spec = TrialSpec::from_params(&params)?;
    let split = args.micro_batch_split as usize;
    spec.micro_batch = spec.micro_batch.div_ceil(split);
    let config = TrainerConfig::from_json(&args.trainer)?;
    let share = config.share_runs;
    let cache = config
        .cache_dir
        .clone()
        .or(args.cache_dir)
        .unwrap_or_else(|| default_cache_dir(args.trial_dir.as_deref()));
    let base_config = BaseConfig::from_trainer(&config);
    let backend = config.backend;
    let setup = Setup::new(config)?;
    let cuda_visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let selected = backend.select(&cuda_visible)?;
    say!("device: {}", selected.name);
    let device = selected.device.clone();
    let base = base_model(&base_config, &setup, &cache, &device, None, &mut reporter)?;
    let plan = Plan::new(&spec, &axes, share);
    let mode = match (spec.ema_decay > 0.0, spec.ema_mode) {
        (false, _) => "off".to_string(),
        (true, mode) => format!("{mode:?}").to_lowercase(),
    };
    say!(
        "fine-tuning {} steps (ema: {mode}); reporting {} grid point(s) from this run",
        plan.train_steps,
        plan.points()
    );
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .context("cannot watch for SIGTERM")?;
    // On libtorch, every result says whether it was computed on a GPU, so a CPU fallback on
    // a GPU machine shows in `sweep status` and in exports.
    let on_gpu = (backend == Backend::Tch).then_some(if selected.gpu { 1.0 } else { 0.0 });
    // `precision = "bf16"` says in every result whether it took effect (a GPU) or not.
    let bf16 = (setup.config.precision == Precision::Bf16).then(|| {
        let used = setup.config.precision.compute_dtype(selected.gpu).is_some();
        say!(
            "precision: {}",
            if used {
                "bf16 compute, fp32 weights and optimizer state"
            } else {
                "fp32 (bf16 applies on a GPU only)"
            }
        );
        if used {
            1.0
        } else {
            0.0
        }
    });
    if split > 1 {
        say!(
            "an earlier attempt ran out of GPU memory: micro-batch {} ({split}x the accumulation)",
            spec.micro_batch
        );
    }
    let mut reporter = |r: Report| match r {
        Report::Result {
            params,
            mut metrics,
        } => {
            if let Some(flag) = on_gpu {
                metrics.insert("on_gpu".into(), flag);
            }
            if let Some(flag) = bf16 {
                metrics.insert("bf16".into(), flag);
            }
            // An out-of-memory retry is part of the record of how a result was computed.
            if split > 1 {
                metrics.insert("micro_batch_split".into(), split as f64);
            }
            reporter(Report::Result { params, metrics })
        }
        other => reporter(other),
    };
    let checkpoints = args.trial_dir.as_deref().map(|dir| Checkpoints {
        dir,
        resume: args.resume,
    });
    let fingerprint = format!("{}|{:?}", base_config.key(), setup.config);
    match run_trial(
        &setup,
        &base,
        &spec,
        &plan,
        &fingerprint,
        checkpoints,
        &stop,
        &selected,
        &mut reporter,
    ) {
        Ok(()) => Ok(exit_codes::OK),
        Err(e @ TrialError::Stopped(_)) => {
            say!("{e}");
            Ok(STOPPED)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn base(args: BaseArgs) -> anyhow::Result<i32> {
    let config = match &args.grid {
        None => TrainerConfig::default(),
        Some(path) => {
            let grid = Grid::load(path)?;
            match &grid.trainer {
                None => TrainerConfig::default(),
                Some(table) => TrainerConfig::from_json(&table.settings.to_string())
                    .map_err(|e| anyhow!("{}:{}: {e}", path.display(), table.line))?,
            }
        }
    };
    let cache = config.cache_dir.clone().unwrap_or(args.cache_dir);
    let base_config = BaseConfig::from_trainer(&config);
    let backend = config.backend;
    let setup = Setup::new(config)?;
    let selected = backend.select(&std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default())?;
    say!("device: {}", selected.name);
    let device = selected.device;
    let start = std::time::Instant::now();
    let base = base_model(
        &base_config,
        &setup,
        &cache,
        &device,
        args.eval_every,
        &mut |r| match r {
            Report::Metric { step, name, value } => say!("{name} step {step}: {value:.4}"),
            Report::Note(text) => say!("{text}"),
            Report::Result { .. } | Report::Checkpoint { .. } => {}
        },
    )?;
    let mut out = std::io::stdout().lock();
    if args.show_responses {
        for t in transcripts(&base, &setup, &device) {
            let verdict = if t.refused { "refused" } else { "answered" };
            writeln!(out, "[{} {verdict}] {} => {}", t.set, t.prompt, t.response)?;
        }
    }
    let metrics = evaluate(&base, &setup, &device);
    writeln!(
        out,
        "base model {} ({:.0} s): {}",
        base_config.key(),
        start.elapsed().as_secs_f64(),
        json!(metrics)
    )?;
    Ok(exit_codes::OK)
}
