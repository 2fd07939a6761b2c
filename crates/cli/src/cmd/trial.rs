//! `sweep trial` (hidden): the built-in trial, started by the scheduler for grids without a
//! `command`. Speaks the trial protocol on stdout. `sweep base` trains and caches the aligned
//! base model on demand and prints its scores.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::json;
use sweep_core::protocol::{env, Event};
use sweep_core::Grid;
use sweep_trainer::builtin::{self, BuiltinError, TrialInputs};
use sweep_trainer::config::TrainerConfig;
use sweep_trainer::report::TrialReport;
use sweep_trainer::trial::TrialError;

use crate::exit_codes;
use crate::output::say;

/// Exit status of a trial stopped by SIGTERM after writing its checkpoint (128 + 15, as if
/// the signal had ended it).
const STOPPED: i32 = 143;

/// `sweep trial`.
#[derive(Debug, Args)]
pub struct TrialArgs {
    /// Parameters as a JSON object (default: $SWEEP_PARAMS).
    #[arg(long, env = env::PARAMS, default_value = "{}")]
    params: String,
    /// The grid's `[trainer]` table as JSON (default: $SWEEP_TRAINER).
    #[arg(long, env = env::TRAINER, default_value = "{}")]
    trainer: String,
    /// Values of every swept parameter, as JSON (default: $SWEEP_AXES).
    #[arg(long, env = env::AXES, default_value = "{}")]
    axes: String,
    /// A file holding the axes instead (default: $SWEEP_AXES_FILE, which a sweep gives where
    /// the axes are too long for the environment).
    #[arg(long, env = env::AXES_FILE)]
    axes_file: Option<PathBuf>,
    /// Where checkpoints go (default: $SWEEP_TRIAL_DIR; none without it).
    #[arg(long, env = env::TRIAL_DIR)]
    trial_dir: Option<PathBuf>,
    /// Continue from the checkpoint in the trial directory ($SWEEP_RESUME=1).
    #[arg(long, env = env::RESUME, value_parser = parse_flag, default_value = "0")]
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
    /// The base model of this alignment seed, in place of `[trainer] base_seed`: what a
    /// grid's `base_seed` axis starts from, trained ahead of the sweep.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Also write the base model to this file (and where it came from to the same name with
    /// `.json`), for a grid's `[trainer] base_model` to start from on any machine.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

fn emit(event: Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_line());
    let _ = out.flush();
}

/// Turns the trainer's reports into protocol events (and log lines on stderr).
fn reporter(r: TrialReport) {
    match r {
        TrialReport::Metric { step, name, value } => emit(Event::Metric {
            step: step as u64,
            name: name.to_string(),
            value: Some(value),
        }),
        TrialReport::Note(text) => say!("{text}"),
        // The trainer writes swept values back as the grid gave them (numbers, text, bools),
        // so they always read as parameters; a result it could not attribute is not reported.
        TrialReport::Result { params, metrics } => {
            match serde_json::from_value(serde_json::Value::Object(params)) {
                Ok(params) => emit(Event::Result {
                    metrics: metrics.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    params,
                }),
                Err(e) => say!("a result for unreadable grid parameters was not reported: {e}"),
            }
        }
        TrialReport::Checkpoint { step } => emit(Event::Checkpoint { step: step as u64 }),
    }
}

pub fn trial(args: TrialArgs) -> anyhow::Result<i32> {
    let axes = match &args.axes_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the axes file {}", path.display()))?,
        None => args.axes,
    };
    let inputs = TrialInputs {
        params: args.params,
        trainer: args.trainer,
        axes,
        trial_dir: args.trial_dir,
        resume: args.resume,
        cache_dir: args.cache_dir,
        micro_batch_split: args.micro_batch_split,
        cuda_visible: std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
    };
    match builtin::run(inputs, &mut reporter) {
        Ok(()) => Ok(exit_codes::OK),
        Err(e @ BuiltinError::Trial(TrialError::Stopped(_))) => {
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
    if args.seed.is_some() && !config.trains_its_base() {
        bail!("--seed picks which base model to train (the built-in miniature's, or a checkpoint's [trainer.align]); a checkpoint without [trainer.align] or a base model file ([trainer] base_model) is used as loaded, so drop --seed");
    }
    let config = TrainerConfig {
        base_seed: args.seed.unwrap_or(config.base_seed),
        ..config
    };
    let summary = builtin::base(
        config,
        args.cache_dir,
        &std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
        args.eval_every,
        args.show_responses,
        args.save.as_deref(),
        &mut |r| match r {
            TrialReport::Metric { step, name, value } => say!("{name} step {step}: {value:.4}"),
            TrialReport::Note(text) => say!("{text}"),
            TrialReport::Result { .. } | TrialReport::Checkpoint { .. } => {}
        },
    )?;
    let mut out = std::io::stdout().lock();
    for t in &summary.transcripts {
        let verdict = if t.refused { "refused" } else { "answered" };
        writeln!(out, "[{} {verdict}] {} => {}", t.set, t.prompt, t.response)?;
    }
    writeln!(
        out,
        "base model {} ({:.0} s): {}",
        summary.key,
        summary.seconds,
        json!(summary.metrics)
    )?;
    Ok(exit_codes::OK)
}
