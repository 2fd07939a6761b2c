//! `sweep eval MODEL_DIR`: the built-in trial's evaluation of any Hugging Face checkpoint, so a
//! sweep of somebody else's trainer gets the same metrics: a trial script that saves its
//! model ends with `sweep eval`, whose result event becomes the trial's result.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use sweep_core::protocol::{env, Event};
use sweep_core::Grid;
use sweep_trainer::config::TrainerConfig;
use sweep_trainer::evaluator::{evaluate_checkpoint, EvalInputs};
use sweep_trainer::report::TrialReport;

use crate::exit_codes;
use crate::output::say;

/// `sweep eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A Hugging Face model directory (config.json, safetensors, tokenizer.json,
    /// tokenizer_config.json), as transformers, TRL or `[trainer] save` write them; or a PEFT
    /// LoRA adapter directory (adapter_config.json), evaluated merged into its base.
    model: PathBuf,
    /// The checkpoint an adapter directory adapts (default: its base_model_name_or_path).
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// A grid file whose `[trainer]` table says what to evaluate with (prompts, keywords,
    /// judge, benchmarks, max_new_tokens); its model and alignment are ignored. Default: the
    /// running sweep's table ($SWEEP_TRAINER) inside a trial, the built-in settings outside.
    #[arg(long, value_name = "GRID")]
    config: Option<PathBuf>,
    /// Where `responses.jsonl` and `benchmarks.jsonl` go. Default: the trial's directory
    /// ($SWEEP_TRIAL_DIR) inside a trial, the current directory outside.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// `event`: the trial protocol's result line; `table`: a metric a line. Default: a table
    /// on a terminal, the event otherwise (as a trial's stdout is).
    #[arg(long, value_enum)]
    format: Option<EvalFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvalFormat {
    Table,
    Event,
}

/// The `[trainer]` settings: of a grid file (checked as `sweep run` checks it), of a file
/// holding only a `[trainer]` table (for a sweep whose trials run a command, which cannot
/// have one), of the running sweep, or the built-in ones.
fn trainer_config(file: Option<&PathBuf>) -> anyhow::Result<TrainerConfig> {
    let Some(path) = file else {
        return match std::env::var(env::TRAINER) {
            Ok(json) => TrainerConfig::from_json(&json)
                .map_err(|e| anyhow!("$SWEEP_TRAINER (the sweep's [trainer] table): {e}")),
            Err(_) => Ok(TrainerConfig::default()),
        };
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if table.contains_key("sweep") {
        let grid = Grid::load(path)?;
        return match &grid.trainer {
            None => Ok(TrainerConfig::default()),
            Some(t) => TrainerConfig::from_json(&t.settings.to_string()).map_err(|e| {
                let line = e.key(None).map_or(t.line, |k| grid.trainer_key_line(&k));
                anyhow!("{}:{line}: {e}", path.display())
            }),
        };
    }
    let Some(trainer) = table.get("trainer") else {
        bail!(
            "{}: no [trainer] table; give a grid file, or a file with the [trainer] keys to \
             evaluate with",
            path.display()
        );
    };
    let json = serde_json::to_string(trainer).expect("TOML values are JSON values");
    TrainerConfig::from_json(&json).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn run(args: EvalArgs) -> anyhow::Result<i32> {
    if !args.model.is_dir() {
        anyhow::bail!(
            "{}: not a directory; give a Hugging Face checkpoint directory (config.json, \
             model.safetensors, tokenizer.json, tokenizer_config.json)",
            args.model.display()
        );
    }
    let trainer = trainer_config(args.config.as_ref())?;
    let out = args
        .out
        .or_else(|| std::env::var_os(env::TRIAL_DIR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let inputs = EvalInputs {
        model: args.model,
        base: args.base,
        trainer,
        out: Some(out),
        cuda_visible: std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
    };
    let metrics = evaluate_checkpoint(inputs, &mut |r| {
        if let TrialReport::Note(text) = r {
            say!("{text}");
        }
    })?;
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        EvalFormat::Table
    } else {
        EvalFormat::Event
    });
    let mut stdout = std::io::stdout().lock();
    match format {
        EvalFormat::Event => {
            let event = Event::Result {
                metrics: metrics.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                params: Default::default(),
            };
            writeln!(stdout, "{}", event.to_line())?;
        }
        EvalFormat::Table => {
            let width = metrics.keys().map(String::len).max().unwrap_or(0);
            for (name, value) in &metrics {
                writeln!(stdout, "{name:<width$}  {value:.4}")?;
            }
        }
    }
    stdout.flush()?;
    Ok(exit_codes::OK)
}
