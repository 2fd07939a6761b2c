//! The safety-aligned base model: trained from scratch on refusals and helpful answers,
//! once per configuration, and cached by the hash of everything that shapes it. A lock file
//! makes trials that start together wait for one training run instead of each doing it.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};

use crate::cache::{cached, device_kind, write_whole, CacheError};
use crate::config::TrainerConfig;
use crate::ema::Ema;
use crate::model::{Lm, ModelConfig};
use crate::progress::Progress;
use crate::report::TrialReport;
use crate::setup::{validation_error, Setup};
use crate::train::{train, OptimConfig, RunShape, Schedule};

/// How the safety-aligned base model is trained. Part of its cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseConfig {
    /// Model sizes.
    pub model: ModelConfig,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Optimizer settings.
    pub optim: OptimConfig,
    /// Initialisation and batch-order seed.
    pub seed: u64,
}

impl Default for BaseConfig {
    fn default() -> BaseConfig {
        BaseConfig {
            model: ModelConfig::default(),
            steps: 4000,
            batch_size: 16,
            optim: OptimConfig {
                lr: 3e-3,
                weight_decay: 0.1,
                beta1: 0.9,
                beta2: 0.95,
                epsilon: 1e-8,
                grad_clip: Some(1.0),
                warmup: 50,
                schedule: Schedule::Cosine { min_ratio: 0.1 },
            },
            seed: 0,
        }
    }
}

impl BaseConfig {
    /// The base model a `[trainer]` table asks for.
    pub fn from_trainer(config: &TrainerConfig) -> BaseConfig {
        let default = BaseConfig::default();
        BaseConfig {
            // A checkpoint is fine-tuned as loaded; these sizes only key the miniature.
            model: config.model.builtin().cloned().unwrap_or_default(),
            steps: config.base_steps,
            optim: OptimConfig {
                lr: config.base_lr,
                ..default.optim
            },
            seed: config.base_seed,
            ..default
        }
    }

    /// A stable hash of everything that shapes the base model and its choice: these
    /// settings, the generated data, the refusal keywords and generation length its
    /// checkpoints are validated with, the kind of device it trains on (float rounding
    /// differs), and the trainer's source code.
    pub fn key(&self, setup: &Setup, device: &Device) -> String {
        let text = format!(
            "{}|{}",
            self.recipe(setup, device),
            env!("SWEEP_TRAINER_SOURCE")
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }

    /// [`BaseConfig::key`] without the trainer's source: what a saved base model file is
    /// compared on, since a file stays the same weights whichever build reads it.
    pub fn recipe(&self, setup: &Setup, device: &Device) -> String {
        let device_kind = device_kind(device);
        let text = format!(
            "{:?}|{}|{}|{:?}|{}|{}|{:?}|{}|{device_kind}",
            self.model,
            self.steps,
            self.batch_size,
            self.optim,
            self.seed,
            setup.data_fingerprint(),
            setup.keywords(),
            setup.config.max_new_tokens,
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }
}

/// Trains the aligned base model from scratch, evaluating it every `eval_every` steps if set
/// (to see where the refusal bars are reached).
pub fn train_base(
    config: &BaseConfig,
    setup: &Setup,
    device: &Device,
    eval_every: Option<usize>,
    report: &mut dyn FnMut(TrialReport),
) -> Lm {
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let model = config.model.init(&ad);
    let mix = setup.alignment_mix();
    let shape = RunShape {
        steps: config.steps,
        batch_size: config.batch_size,
        micro_batch: config.batch_size,
    };
    // Checkpoint-to-checkpoint noise in refusals is large at this size (a tenth of the
    // prompts can change sides in 100 steps), and which side a checkpoint falls on depends on
    // the machine's float rounding. So the second half of the run is averaged (an EMA of the
    // weights, which smooths that noise), the average is validated every `SELECT_EVERY` steps
    // on held-out prompts disjoint from the evaluation set, and the best one is kept.
    let mut best: Option<(f64, usize, Lm)> = None;
    let mut average: Option<Ema> = None;
    let progress = Progress {
        loss_name: "base_train_loss",
        loss_every: 50,
        steps: config.steps,
        eval_every,
    };
    let model = train(
        model,
        &ad,
        &mix,
        shape,
        &config.optim,
        config.seed,
        |step, loss, model| {
            if step * 2 >= config.steps {
                match average.as_mut() {
                    Some(ema) => ema.update(&model),
                    None => average = Some(Ema::new(&model, AVERAGE_DECAY)),
                }
            }
            if let Some(ema) = average
                .as_ref()
                .filter(|_| step % SELECT_EVERY == 0 || step == config.steps)
            {
                let candidate = ema.shadow().clone();
                let (u, o) = validation_error(&candidate, setup, device);
                report(TrialReport::Note(format!(
                    "step {step}: validation unsafe {u:.4}, over-refusal {o:.4}"
                )));
                if best.as_ref().is_none_or(|(e, _, _)| u + o < *e) {
                    best = Some((u + o, step, candidate));
                }
            }
            progress.report(step, loss, &model, setup, device, report);
            model
        },
    );
    match best {
        Some((_, step, best)) => {
            report(TrialReport::Note(format!(
                "kept the weight average at step {step}"
            )));
            best
        }
        None => model.valid(),
    }
}

/// The decay of the weight average over the base run's second half: a horizon of about a
/// hundred steps, one validation interval.
const AVERAGE_DECAY: f64 = 0.99;

/// Steps between validations of the base model's checkpoints (second half of its run).
const SELECT_EVERY: usize = 100;

/// The cached base model for `config`, training and caching it first if needed. A lock file
/// makes concurrent trials wait for one training run instead of each starting their own.
pub fn base_model(
    config: &BaseConfig,
    setup: &Setup,
    cache_dir: &Path,
    device: &Device,
    eval_every: Option<usize>,
    report: &mut dyn FnMut(TrialReport),
) -> Result<Lm, CacheError> {
    let path = cache_dir.join(format!("base-{}.bpk", config.key(setup, device)));
    let load = |path: &Path| {
        let mut model = config.model.init(device);
        model
            .load_from(&mut BurnpackStore::from_file(path))
            .map(|_| model)
            .map_err(|e| e.to_string())
    };
    cached(&path, "training the base model", load, report, |report| {
        Ok(train_base(config, setup, device, eval_every, report))
    })
}

/// What `sweep base --save` writes beside a base model file (`<file>.json`): where the
/// weights came from, so that a file used on another machine or by a later version of the
/// trainer says so instead of passing for this trainer's base.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseProvenance {
    /// The cache key of the base the file holds ([`BaseConfig::key`]).
    pub key: String,
    /// Its recipe ([`BaseConfig::recipe`]): the key less the trainer's source.
    pub recipe: String,
    /// Its scores on the evaluation sets when it was saved.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The `sweep` version that saved it.
    pub version: String,
}

/// The provenance file of a base model file.
fn provenance_path(file: &Path) -> PathBuf {
    file.with_extension("json")
}

/// Writes `model` to `file` (whole or not at all) with its provenance beside it.
pub fn save_base_file(
    model: &Lm,
    file: &Path,
    provenance: &BaseProvenance,
) -> Result<(), CacheError> {
    let err = |e: String| CacheError(file.to_path_buf(), e);
    write_whole(model, file).map_err(err)?;
    let text = serde_json::to_string_pretty(provenance).map_err(|e| err(e.to_string()))?;
    let path = provenance_path(file);
    std::fs::write(&path, text + "\n").map_err(|e| CacheError(path, e.to_string()))
}

/// A key for a base model file: the hash of its bytes.
pub fn base_file_key(file: &Path) -> Result<String, CacheError> {
    let bytes = std::fs::read(file).map_err(|e| CacheError(file.to_path_buf(), e.to_string()))?;
    Ok(format!("file-{}", &blake3::hash(&bytes).to_hex()[..16]))
}

/// Reads a base model file into a model of `model`'s sizes.
fn read_base_file(file: &Path, model: &ModelConfig, device: &Device) -> Result<Lm, CacheError> {
    if !file.is_file() {
        return Err(CacheError(
            file.to_path_buf(),
            "no such file; `sweep base --save <file>` writes one".into(),
        ));
    }
    let mut lm = model.init(device);
    lm.load_from(&mut BurnpackStore::from_file(file))
        .map_err(|e| {
            CacheError(
                file.to_path_buf(),
                format!(
                    "cannot load it as a base model of the miniature's sizes ({e}); \
                     `sweep base --save <file>` writes one"
                ),
            )
        })?;
    Ok(lm)
}

/// Whether `file` loads as a base model of the sizes `config` asks for (on the CPU), so a
/// grid naming a bad file is refused before any trial runs.
pub fn check_base_file(file: &Path, config: &TrainerConfig) -> Result<(), CacheError> {
    let model = config.model.builtin().cloned().unwrap_or_default();
    read_base_file(file, &model, &Device::default()).map(|_| ())
}

/// The base model saved in `file`. When it was saved under another recipe than `config`'s
/// (another version of the trainer, other data, another kind of device), or says nothing of
/// where it came from, a note says so: it is used as saved either way.
pub fn load_base_file(
    file: &Path,
    config: &BaseConfig,
    setup: &Setup,
    device: &Device,
    report: &mut dyn FnMut(TrialReport),
) -> Result<Lm, CacheError> {
    let model = read_base_file(file, &config.model, device)?;
    let (key, recipe) = (config.key(setup, device), config.recipe(setup, device));
    let provenance = std::fs::read_to_string(provenance_path(file))
        .ok()
        .and_then(|text| serde_json::from_str::<BaseProvenance>(&text).ok());
    let name = file.display();
    report(TrialReport::Note(match provenance {
        Some(p) if p.key == key => format!("base model: {name} (this trainer's recipe and build)"),
        Some(p) if p.recipe == recipe => {
            format!("base model: {name} (this trainer's recipe, saved by another build of it)")
        }
        Some(p) => format!(
            "base model: {name} as saved by sweep {} under another recipe ({}; this trainer's \
             is {recipe}: other settings or data, or another kind of device). It is used as \
             saved; `sweep base --save {name}` trains this trainer's own in its place",
            p.version, p.recipe,
        ),
        None => format!(
            "base model: {name} (no {} says where it came from)",
            provenance_path(file).display()
        ),
    }));
    Ok(model)
}
