//! The grid file's `[trainer]` table: model size, base-model training, data files and
//! evaluation settings of the built-in trainer. Every key is optional; a grid without the
//! table runs the built-in defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::benchmark::{Benchmark, BenchmarkSpec};
use crate::data::{read_advbench, read_examples, read_requests, Example, FormatError};
use crate::device::Backend;
use crate::eval::{Keywords, KeywordsError};
use crate::precision::Precision;
use crate::sizes::ModelSource;

/// The `[trainer]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// The burn backend: `flex` (CPU, built in) or `tch` (libtorch; `--features tch`).
    pub backend: Backend,
    /// `bf16`: fine-tune in bf16 with fp32 weights on a GPU (fp32 on the CPU).
    pub precision: Precision,
    /// Recompute cheap activations in the backward pass instead of keeping them: less
    /// memory for long sequences, the same gradients ([`crate::recompute`]).
    pub grad_checkpoint: bool,
    /// The model: the built-in miniature's sizes, or a Hugging Face checkpoint
    /// (`[trainer.model]`).
    pub model: ModelSource,
    /// Optimizer steps of the base model's safety alignment.
    pub base_steps: usize,
    /// Peak learning rate of the alignment (cosine to a tenth).
    pub base_lr: f64,
    /// Seed of the base model's initialisation and batch order.
    pub base_seed: u64,
    /// Where aligned base models are cached (default: `.cache` beside the sweep's trials).
    pub cache_dir: Option<PathBuf>,
    /// A miniature base model saved by `sweep base --save`, fine-tuned in place of one
    /// trained here: the same starting weights on every machine, and no alignment run first.
    pub base_model: Option<PathBuf>,
    /// Safety alignment of the checkpoint before it is fine-tuned (`[trainer.align]`), for
    /// chat models that are not aligned already; cached like the miniature's base.
    pub align: Option<AlignConfig>,
    /// Steps between checkpoints in the trial directory (0: none).
    pub checkpoint_every: usize,
    /// Let one run report every grid point it can compute exactly: all `ema_decay` values of
    /// the sweep (shadow EMA), and all smaller `steps` values when the learning rate does not
    /// depend on the run's length (constant schedule).
    pub share_runs: bool,
    /// Harmful prompts evaluated: of the built-in held-out ones (default 128, at most 128),
    /// or a fixed sample of a `harmful_prompts` file (default: all of it).
    pub eval_harmful: Option<usize>,
    /// Benign prompts evaluated for over-refusal: of the built-in held-out ones (at most 96),
    /// or a fixed sample of a `benign_prompts` file.
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
    /// Benign requests (Alpaca JSON, Dolly or MT-Bench JSONL, or one per line in `.txt`)
    /// replacing the built-in benign evaluation prompts, so that a checkpoint's over-refusal
    /// is measured on requests like those its users send.
    pub benign_prompts: Option<PathBuf>,
    /// Alpaca JSON, Dolly JSONL or ORCA JSONL (`system_prompt`, `question`, `response`; the
    /// system prompt goes through the chat template's system turn) instruction data replacing
    /// the built-in fine-tuning mix; a tenth is held out for `eval_loss`, and `utility` is not
    /// reported.
    pub finetune_data: Option<PathBuf>,
    /// Which fine-tuned weights a trial writes into its directory as a Hugging Face model
    /// (checkpoints only), for other tools (lm-eval, vLLM) to take over.
    pub save: Save,
    /// A command that labels the answers to harmful prompts: it reads JSON lines
    /// (`{"prompt", "answer"}`) on stdin and writes one label per line (`unsafe` or `safe`),
    /// so a Llama-Guard or GPT-4 judge can stand beside the refusal keywords.
    pub judge: Option<Vec<String>>,
    /// The judge's name in its metric, `<judge_name>_unsafe_rate` (default `judge`).
    pub judge_name: Option<String>,
    /// Longest the judge may take over one evaluation's answers (`"30m"`, `"2h"`; default
    /// 30 minutes): one that hangs fails its trial instead of holding the sweep for ever.
    #[serde(deserialize_with = "duration")]
    pub judge_timeout: std::time::Duration,
    /// Multiple-choice benchmarks scored as lm-evaluation-harness scores them (`"hellaswag"`,
    /// `"arc_easy"`, `"arc_challenge"`, `"piqa"`, `"mmlu"`, each `"NAME"` or `"NAME:PATH"`),
    /// each reported as `NAME_acc` and `NAME_acc_norm`: utility as the field measures it.
    pub benchmarks: Vec<BenchmarkSpec>,
    /// Where `"NAME"` benchmarks are read from, as `NAME.jsonl` (`scripts/benchmarks` writes
    /// them there).
    pub benchmark_dir: PathBuf,
    /// A fixed sample of this many items of each benchmark (default: all), the same on every
    /// run, so evaluations stay affordable and comparable.
    pub benchmark_items: Option<usize>,
}

/// The `[trainer.align]` table: how a checkpoint is safety-aligned before fine-tuning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (a tenth of the steps warm up, then cosine to a tenth).
    pub lr: f64,
    /// An AdvBench-style CSV of more harmful requests to refuse; rows that an evaluation set
    /// holds are dropped (so the same file can also be `harmful_prompts`).
    pub harmful: Option<PathBuf>,
    /// Share of each batch drawn from the benign replay, in [0, 1).
    pub replay: f64,
    /// Benign requests the checkpoint answers for the replay: a fixed sample of those of the
    /// `benign` file, or of the built-in training ones.
    pub replay_prompts: usize,
    /// Benign requests for the replay (Alpaca JSON, Dolly or MT-Bench JSONL, or one a line in
    /// `.txt`), closer to what users ask than the built-in ones; rows that an evaluation set
    /// holds are dropped, like the harmful file's.
    pub benign: Option<PathBuf>,
    /// Longest replay answer, in tokens; a longer one is cut at its last full sentence.
    pub replay_tokens: usize,
}

impl Default for AlignConfig {
    fn default() -> AlignConfig {
        AlignConfig {
            steps: 60,
            batch_size: 8,
            lr: 5e-5,
            harmful: None,
            replay: 0.5,
            replay_prompts: 128,
            replay_tokens: 64,
            benign: None,
        }
    }
}

impl AlignConfig {
    /// The value at fault, if any, with what to do.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.steps == 0 {
            return Some((
                "steps",
                "must be positive (drop [trainer.align] for no alignment)",
            ));
        }
        if self.batch_size == 0 {
            return Some(("batch_size", "must be positive"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Some(("lr", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.replay) {
            return Some(("replay", "is a share of each batch: at least 0 and below 1"));
        }
        if self.replay > 0.0 && (self.replay_prompts == 0 || self.replay_tokens == 0) {
            return Some((
                "replay_prompts/replay_tokens",
                "must be positive while replay is (or set replay = 0)",
            ));
        }
        None
    }
}

/// A duration written as humantime text (`"90s"`, `"30m"`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?}: {e} (write e.g. \"90s\" or \"30m\")"))
    })
}

/// `[trainer] save`: the weights a trial writes back as a Hugging Face directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Save {
    /// Nothing (the default: a grid of many trials would fill the disk).
    #[default]
    None,
    /// The fine-tuned weights at the trial's own step count, as `model-final/`.
    Final,
    /// The trial's EMA shadow (`ema_decay` > 0) at its step count, as `model-ema/`.
    Ema,
    /// Both.
    Both,
}

impl Default for TrainerConfig {
    fn default() -> TrainerConfig {
        TrainerConfig {
            backend: Backend::Flex,
            precision: Precision::Fp32,
            grad_checkpoint: false,
            model: ModelSource::default(),
            base_steps: 4000,
            base_lr: 3e-3,
            base_seed: 0,
            cache_dir: None,
            base_model: None,
            align: None,
            checkpoint_every: 100,
            share_runs: true,
            eval_harmful: None,
            eval_benign: 96,
            eval_task: 100,
            max_new_tokens: 48,
            keywords: None,
            harmful_prompts: None,
            benign_prompts: None,
            finetune_data: None,
            save: Save::None,
            judge: None,
            judge_name: None,
            judge_timeout: crate::judge::DEFAULT_TIMEOUT,
            benchmarks: Vec::new(),
            benchmark_dir: PathBuf::from("benchmarks"),
            benchmark_items: None,
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
    /// The checkpoint's tokenizer or chat template cannot be used.
    #[error("[trainer.model] hf: {0}")]
    Checkpoint(#[from] crate::hf::HfError),
}

impl ConfigError {
    /// The `[trainer]` key at fault (dotted, as in `model.hf`), where the error knows it, so
    /// the grid's line of that key can be named.
    pub fn key(&self, config: Option<&TrainerConfig>) -> Option<String> {
        match self {
            ConfigError::Value { key, .. } => {
                Some(key.split('/').next().unwrap_or(key).to_string())
            }
            ConfigError::Keywords(_) => Some("keywords".into()),
            ConfigError::Checkpoint(_) => Some("model.hf".into()),
            ConfigError::Shape(message) if message.contains("unknown benchmark") => {
                Some("benchmarks".into())
            }
            ConfigError::Shape(message) => message
                .split_once("unknown field `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(key, _)| key.to_string()),
            ConfigError::Data(error) => {
                let config = config?;
                let align = config.align.as_ref();
                [
                    ("harmful_prompts", config.harmful_prompts.as_ref()),
                    ("benign_prompts", config.benign_prompts.as_ref()),
                    ("finetune_data", config.finetune_data.as_ref()),
                    ("align.harmful", align.and_then(|a| a.harmful.as_ref())),
                    ("align.benign", align.and_then(|a| a.benign.as_ref())),
                ]
                .into_iter()
                .find(|(_, path)| path.is_some_and(|p| p.display().to_string() == error.path()))
                .map(|(key, _)| key.to_string())
                .or_else(|| {
                    let dir = &config.benchmark_dir;
                    config
                        .benchmarks
                        .iter()
                        .any(|b| b.file(dir).display().to_string() == error.path())
                        .then(|| "benchmarks".to_string())
                })
            }
        }
    }
}

/// The data files of a `[trainer]` table, read.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// Refusal keywords (the GCG list unless a file is given).
    pub keywords: Keywords,
    /// Harmful evaluation prompts from a file.
    pub harmful_prompts: Option<Vec<String>>,
    /// Benign evaluation prompts from a file.
    pub benign_prompts: Option<Vec<String>>,
    /// Fine-tuning data from a file.
    pub finetune: Option<Vec<Example>>,
    /// More harmful requests for `[trainer.align]` to refuse.
    pub align_harmful: Vec<String>,
    /// Benign requests for `[trainer.align]`'s replay, in place of the built-in ones.
    pub align_benign: Option<Vec<String>>,
    /// The benchmarks' items (their fixed samples).
    pub benchmarks: Vec<Benchmark>,
}

impl TrainerConfig {
    /// Whether fine-tuning starts from weights read from a file (a checkpoint or a saved
    /// base model) rather than from a base model this trainer aligns.
    pub fn starts_from_a_file(&self) -> bool {
        self.model.hf().is_some() || self.base_model.is_some()
    }

    /// Whether this trainer makes the model fine-tuning starts from (aligning the miniature
    /// from scratch, or a checkpoint with `[trainer.align]`), so that `base_seed` picks one.
    pub fn trains_its_base(&self) -> bool {
        self.base_model.is_none() && (self.model.hf().is_none() || self.align.is_some())
    }

    /// Reads the table (as the scheduler passes it in `SWEEP_TRAINER`) and checks its values.
    pub fn from_json(text: &str) -> Result<TrainerConfig, ConfigError> {
        let config: TrainerConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::Shape(strip_position(&e)))?;
        config.check()?;
        Ok(config)
    }

    /// The same settings with relative file paths made relative to `dir` (where trials run).
    pub fn relative_to(mut self, dir: &Path) -> TrainerConfig {
        let checkpoint = match &mut self.model {
            ModelSource::Hf(hf) => Some(&mut hf.dir),
            ModelSource::Builtin(_) => None,
        };
        for path in [
            &mut self.keywords,
            &mut self.harmful_prompts,
            &mut self.benign_prompts,
            &mut self.finetune_data,
            &mut self.cache_dir,
            &mut self.base_model,
        ]
        .into_iter()
        .chain(self.benchmarks.iter_mut().map(|b| &mut b.path))
        .chain(
            self.align
                .as_mut()
                .into_iter()
                .flat_map(|a| [&mut a.harmful, &mut a.benign]),
        )
        .flatten()
        .chain(checkpoint)
        .chain(std::iter::once(&mut self.benchmark_dir))
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
        self.check_model()?;
        self.check_align()?;
        self.check_evaluation()
    }

    /// The model and how its base is made: sizes, window, the miniature's base recipe, a
    /// checkpoint's directory.
    fn check_model(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| {
            Err(ConfigError::Value {
                key,
                message: message.to_string(),
            })
        };
        if self.base_model.is_some() && self.model.hf().is_some() {
            return bad(
                "base_model",
                "is a base for the built-in miniature; a checkpoint ([trainer.model] hf) is \
                 fine-tuned as loaded: drop one of them",
            );
        }
        if let Some(m) = self.model.builtin() {
            if m.d_model == 0 || m.n_heads == 0 || m.n_layers == 0 || m.d_ff == 0 {
                return bad("model", "sizes must be positive");
            }
            if !m.d_model.is_multiple_of(m.n_heads) || !(m.d_model / m.n_heads).is_multiple_of(2) {
                return bad(
                    "model",
                    "n_heads must divide d_model into an even head size (rotary positions rotate pairs)",
                );
            }
        }
        if self.model.max_seq() < 64 {
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
        if self
            .model
            .hf()
            .is_some_and(|hf| hf.dir.as_os_str().is_empty())
        {
            return bad(
                "model.hf",
                "is empty; give the directory of a Hugging Face checkpoint (config.json, \
                 model.safetensors, tokenizer.json, tokenizer_config.json)",
            );
        }
        if self.save != Save::None && self.model.hf().is_none() {
            return bad(
                "save",
                "writes a Hugging Face directory, so it needs a checkpoint ([trainer.model] hf = \"DIR\")",
            );
        }
        Ok(())
    }

    /// `[trainer.align]`: for a checkpoint only, with sound settings.
    fn check_align(&self) -> Result<(), ConfigError> {
        let Some(align) = &self.align else {
            return Ok(());
        };
        if self.model.hf().is_none() {
            return Err(ConfigError::Value {
                key: "align",
                message: "aligns a checkpoint ([trainer.model] hf); the miniature's base is \
                          aligned by base_steps and base_lr"
                    .into(),
            });
        }
        if let Some((key, message)) = align.problem() {
            return Err(ConfigError::Value {
                key: match key {
                    "steps" => "align.steps",
                    "batch_size" => "align.batch_size",
                    "lr" => "align.lr",
                    "replay" => "align.replay",
                    _ => "align.replay_prompts/replay_tokens",
                },
                message: message.into(),
            });
        }
        Ok(())
    }

    /// What evaluation reads: generation length, set sizes, the judge, the benchmarks.
    fn check_evaluation(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| {
            Err(ConfigError::Value {
                key,
                message: message.to_string(),
            })
        };
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be positive");
        }
        if self.eval_harmful == Some(0) || self.eval_benign == 0 || self.eval_task == 0 {
            return bad(
                "eval_harmful/eval_benign/eval_task",
                "must be positive; these are the sizes of the evaluation sets",
            );
        }
        if self.judge.as_ref().is_some_and(|c| c.is_empty()) {
            return bad(
                "judge",
                "is an empty command; give the program and its arguments, e.g. [\"python3\", \"judge.py\"]",
            );
        }
        if self.judge_timeout.is_zero() {
            return bad(
                "judge_timeout",
                "is zero; leave it out for the default (30m)",
            );
        }
        if self.benchmark_items == Some(0) {
            return bad(
                "benchmark_items",
                "is zero; leave it out to score every item, or give the sample's size",
            );
        }
        let mut named = std::collections::HashSet::new();
        if let Some(twice) = self.benchmarks.iter().find(|b| !named.insert(&b.name)) {
            return Err(ConfigError::Value {
                key: "benchmarks",
                message: format!(
                    "names {:?} twice; its metrics ({0}_acc, {0}_acc_norm) would collide",
                    twice.name
                ),
            });
        }
        if let Some(name) = &self.judge_name {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad("judge_name", "names a metric: letters, digits and `_` only");
            }
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
        let benign_prompts = self
            .benign_prompts
            .as_deref()
            .map(read_requests)
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
        let align_harmful = self
            .align
            .as_ref()
            .and_then(|a| a.harmful.as_deref())
            .map(read_advbench)
            .transpose()?
            .unwrap_or_default();
        let align_benign = self
            .align
            .as_ref()
            .and_then(|a| a.benign.as_deref())
            .map(read_requests)
            .transpose()?;
        let benchmarks = self
            .benchmarks
            .iter()
            .map(|b| b.read(&self.benchmark_dir, self.benchmark_items))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Files {
            benchmarks,
            keywords,
            harmful_prompts,
            benign_prompts,
            finetune,
            align_harmful,
            align_benign,
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
        let m = c.model.builtin().unwrap();
        assert_eq!(m.n_layers, 1);
        assert_eq!(m.d_model, crate::model::ModelConfig::default().d_model);
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
    fn checkpoint_settings_are_checked() {
        let e = TrainerConfig::from_json(r#"{"save":"final"}"#).unwrap_err();
        assert!(e.to_string().contains("[trainer] save"), "{e}");
        let c = TrainerConfig::from_json(r#"{"model":{"hf":"m"},"save":"both"}"#).unwrap();
        assert_eq!(c.save, Save::Both);
        let c = c.relative_to(Path::new("/work"));
        assert_eq!(c.model.hf().unwrap().dir, Path::new("/work/m"));
        let e = TrainerConfig::from_json(r#"{"judge":[]}"#).unwrap_err();
        assert!(e.to_string().contains("[trainer] judge"), "{e}");
        let e = TrainerConfig::from_json(r#"{"judge":["j"],"judge_name":"a b"}"#).unwrap_err();
        assert!(e.to_string().contains("judge_name"), "{e}");
    }

    #[test]
    fn alignment_is_for_checkpoints_and_checked() {
        let e = TrainerConfig::from_json(r#"{"align":{}}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("[trainer] align: aligns a checkpoint"),
            "{e}"
        );
        let hf = |align: &str| {
            TrainerConfig::from_json(&format!(r#"{{"model":{{"hf":"m"}},"align":{align}}}"#))
        };
        let c = hf("{}").unwrap();
        assert_eq!(c.align, Some(AlignConfig::default()));
        assert!(c.trains_its_base());
        assert!(!hf("null").unwrap().trains_its_base());
        for (align, key) in [
            (r#"{"steps":0}"#, "align.steps"),
            (r#"{"lr":-1e-5}"#, "align.lr"),
            (r#"{"replay":1.0}"#, "align.replay"),
            (
                r#"{"replay_tokens":0}"#,
                "align.replay_prompts/replay_tokens",
            ),
        ] {
            let e = hf(align).unwrap_err();
            assert!(
                e.to_string().contains(&format!("[trainer] {key}:")),
                "{align}: {e}"
            );
        }
        let e = hf(r#"{"step":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `step`"), "{e}");
        let c = hf(r#"{"harmful":"adv.csv"}"#)
            .unwrap()
            .relative_to(Path::new("/g"));
        assert_eq!(c.align.unwrap().harmful.unwrap(), Path::new("/g/adv.csv"));
    }

    #[test]
    fn missing_files_are_named() {
        let c = TrainerConfig::from_json(r#"{"finetune_data":"/nonexistent/data.jsonl"}"#).unwrap();
        let e = c.read_files().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/data.jsonl"), "{e}");
    }
}
