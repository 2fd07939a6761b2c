//! The grid file's `[trainer]` table: model size, base-model training, data files and
//! evaluation settings of the built-in trainer. Every key is optional; a grid without the
//! table runs the built-in defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::{read_advbench, read_examples, Example, FormatError};
use crate::device::Backend;
use crate::eval::{Keywords, KeywordsError};
use crate::model::ModelConfig;
use crate::precision::Precision;

/// The `[trainer]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// The burn backend: `flex` (CPU, built in) or `tch` (libtorch; `--features tch`).
    pub backend: Backend,
    /// `bf16`: fine-tune in bf16 with fp32 weights on a GPU (fp32 on the CPU).
    pub precision: Precision,
    /// Model sizes (`[trainer.model]`).
    pub model: ModelConfig,
    /// Optimizer steps of the base model's safety alignment.
    pub base_steps: usize,
    /// Peak learning rate of the alignment (cosine to a tenth).
    pub base_lr: f64,
    /// Seed of the base model's initialisation and batch order.
    pub base_seed: u64,
    /// Where aligned base models are cached (default: `.cache` beside the sweep's trials).
    pub cache_dir: Option<PathBuf>,
    /// Steps between checkpoints in the trial directory (0: none).
    pub checkpoint_every: usize,
    /// Let one run report every grid point it can compute exactly: all `ema_decay` values of
    /// the sweep (shadow EMA), and all smaller `steps` values when the learning rate does not
    /// depend on the run's length (constant schedule).
    pub share_runs: bool,
    /// Held-out harmful prompts evaluated (built-in data).
    pub eval_harmful: usize,
    /// Held-out benign prompts evaluated for over-refusal.
    pub eval_benign: usize,
    /// Held-out task items scored by exact match.
    pub eval_task: usize,
    /// Longest greedy response, in tokens.
    pub max_new_tokens: usize,
    /// A file of refusal keywords (one per line, or a JSON list) replacing the GCG list.
    pub keywords: Option<PathBuf>,
    /// An AdvBench-style CSV (`goal,target`) whose goals replace the built-in harmful
    /// evaluation prompts.
    pub harmful_prompts: Option<PathBuf>,
    /// Alpaca JSON or Dolly JSONL instruction data replacing the built-in fine-tuning mix;
    /// a tenth is held out for `eval_loss`, and `utility` is not reported.
    pub finetune_data: Option<PathBuf>,
}

impl Default for TrainerConfig {
    fn default() -> TrainerConfig {
        TrainerConfig {
            backend: Backend::Flex,
            precision: Precision::Fp32,
            model: ModelConfig::default(),
            base_steps: 2000,
            base_lr: 3e-3,
            base_seed: 0,
            cache_dir: None,
            checkpoint_every: 100,
            share_runs: true,
            eval_harmful: 128,
            eval_benign: 96,
            eval_task: 100,
            max_new_tokens: 48,
            keywords: None,
            harmful_prompts: None,
            finetune_data: None,
        }
    }
}

/// A `[trainer]` table that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the right shape (unknown key, wrong type).
    #[error("[trainer]: {0}")]
    Shape(String),
    /// A value out of range.
    #[error("[trainer] {key}: {message}")]
    Value {
        /// Key.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A data file cannot be read.
    #[error("[trainer]: {0}")]
    Data(#[from] FormatError),
    /// The keywords file cannot be read.
    #[error("[trainer] keywords: {0}")]
    Keywords(#[from] KeywordsError),
}

/// The data files of a `[trainer]` table, read.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// Refusal keywords (the GCG list unless a file is given).
    pub keywords: Keywords,
    /// Harmful evaluation prompts from a file.
    pub harmful_prompts: Option<Vec<String>>,
    /// Fine-tuning data from a file.
    pub finetune: Option<Vec<Example>>,
}

impl TrainerConfig {
    /// Reads the table (as the scheduler passes it in `SWEEP_TRAINER`) and checks its values.
    pub fn from_json(text: &str) -> Result<TrainerConfig, ConfigError> {
        let config: TrainerConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::Shape(strip_position(&e)))?;
        config.check()?;
        Ok(config)
    }

    /// The same settings with relative file paths made relative to `dir` (where trials run).
    pub fn relative_to(mut self, dir: &Path) -> TrainerConfig {
        for path in [
            &mut self.keywords,
            &mut self.harmful_prompts,
            &mut self.finetune_data,
            &mut self.cache_dir,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.backend.check_built().map_err(|e| ConfigError::Value {
            key: "backend",
            message: e.to_string(),
        })?;
        let bad = |key, message: &str| {
            Err(ConfigError::Value {
                key,
                message: message.to_string(),
            })
        };
        let m = &self.model;
        if m.d_model == 0 || m.n_heads == 0 || m.n_layers == 0 || m.d_ff == 0 {
            return bad("model", "sizes must be positive");
        }
        if !m.d_model.is_multiple_of(m.n_heads) || !(m.d_model / m.n_heads).is_multiple_of(2) {
            return bad(
                "model",
                "n_heads must divide d_model into an even head size (rotary positions rotate pairs)",
            );
        }
        if m.max_seq < 64 {
            return bad(
                "model.max_seq",
                "must be at least 64 to hold the chat template and a response",
            );
        }
        if self.base_steps == 0 {
            return bad("base_steps", "must be positive");
        }
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return bad("base_lr", "must be a positive number");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be positive");
        }
        if self.eval_harmful == 0 || self.eval_benign == 0 || self.eval_task == 0 {
            return bad(
                "eval_harmful/eval_benign/eval_task",
                "must be positive; these are the sizes of the evaluation sets",
            );
        }
        Ok(())
    }

    /// Reads the data files the table names, so that a bad file is reported before any trial
    /// starts (and again by each trial, which reads them for itself).
    pub fn read_files(&self) -> Result<Files, ConfigError> {
        let keywords = match &self.keywords {
            Some(path) => Keywords::load(path)?,
            None => Keywords::default(),
        };
        let harmful_prompts = self
            .harmful_prompts
            .as_deref()
            .map(read_advbench)
            .transpose()?;
        let finetune = self
            .finetune_data
            .as_deref()
            .map(read_examples)
            .transpose()?;
        if let Some(examples) = &finetune {
            if examples.len() < 10 {
                return Err(ConfigError::Value {
                    key: "finetune_data",
                    message: format!(
                        "{} has {} examples; give at least 10 (a tenth is held out)",
                        self.finetune_data
                            .as_deref()
                            .unwrap_or(Path::new(""))
                            .display(),
                        examples.len()
                    ),
                });
            }
        }
        Ok(Files {
            keywords,
            harmful_prompts,
            finetune,
        })
    }
}

/// serde_json appends "at line 1 column 57" of the JSON it was given, which is not the grid
/// file the user wrote; drop it.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_is_the_default() {
        assert_eq!(
            TrainerConfig::from_json("{}").unwrap(),
            TrainerConfig::default()
        );
    }

    #[test]
    fn partial_model_table_keeps_other_sizes() {
        let c = TrainerConfig::from_json(r#"{"model":{"n_layers":1},"base_steps":10}"#).unwrap();
        assert_eq!(c.model.n_layers, 1);
        assert_eq!(c.model.d_model, ModelConfig::default().d_model);
        assert_eq!(c.base_steps, 10);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = TrainerConfig::from_json(r#"{"base_step":10}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `base_step`"), "{e}");
        assert!(!e.to_string().contains("line 1"), "{e}");
        let e = TrainerConfig::from_json(r#"{"model":{"n_heads":3}}"#).unwrap_err();
        assert!(e.to_string().contains("[trainer] model: n_heads"), "{e}");
        let e = TrainerConfig::from_json(r#"{"base_lr":-1}"#).unwrap_err();
        assert!(e.to_string().contains("base_lr"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let c = TrainerConfig::from_json(r#"{"finetune_data":"/nonexistent/data.jsonl"}"#).unwrap();
        let e = c.read_files().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/data.jsonl"), "{e}");
    }
}
