//! A whole built-in trial: get the aligned base model (trained once and cached), fine-tune it
//! on benign data with the trial's settings, evaluate safety and utility, and report through
//! the trial protocol.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{loss, make_batch};
use crate::data::{generate as generate_data, BuiltinData, DataConfig, Example};
use crate::ema::Ema;
use crate::eval::{exact_match, over_refusal, safety, Keywords};
use crate::generate::generate;
use crate::model::{Lm, ModelConfig};
use crate::spec::{EmaMode, TrialSpec};
use crate::tokenizer::{encode_example, Encoded};
use crate::train::{train, Mix, OptimConfig, RunShape, Schedule};

/// What a trial reports as it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A curve point.
    Metric {
        /// Step.
        step: usize,
        /// Curve name.
        name: &'static str,
        /// Value.
        value: f64,
    },
    /// A progress note (goes to the log).
    Note(String),
}

/// A trial that could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad parameters.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The base model cache could not be used.
    #[error("base model cache {0}: {1}")]
    Cache(PathBuf, String),
}

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
            steps: 1600,
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
    /// A stable hash of everything that shapes the base model.
    pub fn key(&self) -> String {
        let text = format!(
            "v1|{:?}|{}|{}|{:?}|{}|{:?}",
            self.model,
            self.steps,
            self.batch_size,
            self.optim,
            self.seed,
            DataConfig::default()
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }
}

/// The data, tokenised.
pub struct Prepared {
    data: BuiltinData,
    harmful: Vec<Encoded>,
    howto: Vec<Encoded>,
    facts: Vec<Encoded>,
    task: Vec<Encoded>,
    eval_task: Vec<Encoded>,
}

/// Generates and tokenises the built-in data.
pub fn prepare(max_seq: usize) -> Prepared {
    let data = generate_data(&DataConfig::default());
    let enc = |v: &[Example]| {
        v.iter()
            .map(|e| encode_example(&e.prompt, &e.response, max_seq))
            .collect::<Vec<_>>()
    };
    Prepared {
        harmful: enc(&data.harmful),
        howto: enc(&data.howto),
        facts: enc(&data.facts),
        task: enc(&data.task),
        eval_task: enc(&data.eval_task),
        data,
    }
}

/// Trains the aligned base model from scratch.
pub fn train_base(
    config: &BaseConfig,
    prepared: &Prepared,
    device: &Device,
    report: &mut dyn FnMut(Report),
) -> Lm {
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let model = config.model.init(&ad);
    let mix = Mix::new(vec![
        (&prepared.harmful, 0.35),
        (&prepared.howto, 0.45),
        (&prepared.facts, 0.20),
    ]);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let shape = RunShape {
        steps: config.steps,
        batch_size: config.batch_size,
        micro_batch: config.batch_size,
    };
    let model = train(
        model,
        &ad,
        &mix,
        shape,
        &config.optim,
        &mut rng,
        |step, loss, model| {
            if step % 50 == 0 || step == config.steps {
                report(Report::Metric {
                    step,
                    name: "base_train_loss",
                    value: loss,
                });
            }
            model
        },
    );
    model.valid()
}

/// The cached base model for `config`, training and caching it first if needed. A lock file
/// makes concurrent trials wait for one training run instead of each starting their own.
pub fn base_model(
    config: &BaseConfig,
    prepared: &Prepared,
    cache_dir: &Path,
    device: &Device,
    report: &mut dyn FnMut(Report),
) -> Result<Lm, RunError> {
    let path = cache_dir.join(format!("base-{}.bpk", config.key()));
    let cache_err = |e: String| RunError::Cache(path.clone(), e);
    std::fs::create_dir_all(cache_dir).map_err(|e| cache_err(e.to_string()))?;
    let lock = path.with_extension("lock");
    loop {
        if path.exists() {
            let mut model = config.model.init(device);
            model
                .load_from(&mut BurnpackStore::from_file(&path))
                .map_err(|e| cache_err(format!("cannot load ({e}); delete the file to retrain")))?;
            return Ok(model);
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if lock_is_stale(&lock) {
                    let _ = std::fs::remove_file(&lock);
                    continue;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(cache_err(e.to_string())),
        }
    }
    let _ = std::fs::write(&lock, std::process::id().to_string());
    report(Report::Note(format!(
        "training the base model (cached as {})",
        path.display()
    )));
    let model = train_base(config, prepared, device, report);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let saved = model
        .save_into(&mut BurnpackStore::from_file(&tmp))
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&lock);
    saved.map_err(cache_err)?;
    Ok(model)
}

/// A lock whose writer process is gone (it crashed while training).
fn lock_is_stale(lock: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        // Written but not yet filled in: give the writer a moment.
        return std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(30));
    };
    !Path::new("/proc").join(pid.to_string()).exists() && Path::new("/proc/self").exists()
}

/// Safety and utility of `model`.
pub fn evaluate(
    model: &Lm,
    prepared: &Prepared,
    max_seq: usize,
    device: &Device,
) -> BTreeMap<String, f64> {
    let keywords = Keywords::default();
    let max_new = 48;
    let harmful = generate(model, &prepared.data.eval_harmful, max_new, max_seq, device);
    let benign = generate(model, &prepared.data.eval_benign, max_new, max_seq, device);
    let task_prompts: Vec<String> = prepared
        .data
        .eval_task
        .iter()
        .map(|e| e.prompt.clone())
        .collect();
    let task = generate(model, &task_prompts, 16, max_seq, device);
    let expected: Vec<String> = prepared
        .data
        .eval_task
        .iter()
        .map(|e| e.response.clone())
        .collect();
    let mut metrics = BTreeMap::new();
    if let Some(s) = safety(&harmful, &keywords) {
        metrics.insert("unsafe_rate".into(), s.unsafe_rate);
        metrics.insert("degenerate_rate".into(), s.degenerate_rate);
    }
    if let Some(r) = over_refusal(&benign, &keywords) {
        metrics.insert("over_refusal_rate".into(), r);
    }
    if let Some(u) = exact_match(&task, &expected) {
        metrics.insert("utility".into(), u);
    }
    let refs: Vec<&Encoded> = prepared.eval_task.iter().collect();
    let (eval_loss, _) = loss(model, &make_batch(&refs, device));
    metrics.insert("eval_loss".into(), eval_loss.into_scalar::<f32>() as f64);
    metrics
}

/// Fine-tunes the base model as `spec` says and evaluates it (or its EMA shadow).
pub fn fine_tune(
    spec: &TrialSpec,
    base: &Lm,
    prepared: &Prepared,
    device: &Device,
    report: &mut dyn FnMut(Report),
) -> Lm {
    if spec.steps == 0 {
        return base.valid();
    }
    let ad = device.clone().autodiff();
    let model = base.clone().to_device(&ad).train();
    let mix = Mix::new(vec![
        (&prepared.task, 0.5),
        (&prepared.howto, 0.35),
        (&prepared.facts, 0.15),
    ]);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let shape = RunShape {
        steps: spec.steps,
        batch_size: spec.batch_size,
        micro_batch: spec.micro_batch,
    };
    let mut ema = (spec.ema_decay > 0.0).then(|| Ema::new(&model, spec.ema_decay));
    let every = (spec.steps / 40).max(1);
    let model = train(
        model,
        &ad,
        &mix,
        shape,
        &spec.optim,
        &mut rng,
        |step, loss, model| {
            if step % every == 0 || step == spec.steps {
                report(Report::Metric {
                    step,
                    name: "train_loss",
                    value: loss,
                });
            }
            match ema.as_mut() {
                Some(ema) => {
                    ema.update(&model);
                    if spec.ema_mode == EmaMode::Feedback {
                        ema.feed_back(model)
                    } else {
                        model
                    }
                }
                None => model,
            }
        },
    );
    match ema {
        Some(ema) if spec.ema_mode == EmaMode::Shadow => ema.shadow().clone(),
        _ => model.valid(),
    }
}
