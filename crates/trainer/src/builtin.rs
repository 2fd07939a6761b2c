//! The built-in trial from end to end, as `sweep trial` runs it: read what the scheduler
//! passed (parameters, the `[trainer]` table, the sweep's axes, the trial directory), load or
//! train the base model, fine-tune, and report every grid point the run computes. The binary
//! only turns the reports into protocol lines.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::base::{base_file_key, base_model, load_base_file, save_base_file, BaseConfig};
use crate::cache::CacheError;
use crate::config::{ConfigError, TrainerConfig};
use crate::device::{Backend, DeviceError};
use crate::precision::{narrow_matrices, Precision};
use crate::report::TrialReport;
use crate::setup::Setup;
use crate::spec::{TrialParamError, TrialSpec};
use crate::trial::{run_trial, Checkpoints, Plan, TrialError};

/// What the scheduler gives a built-in trial (its `SWEEP_*` variables).
#[derive(Debug, Clone)]
pub struct TrialInputs {
    /// The trial's parameters, swept and fixed, as a JSON object.
    pub params: String,
    /// The grid's `[trainer]` table as JSON.
    pub trainer: String,
    /// Every value of every swept parameter, as JSON.
    pub axes: String,
    /// Where checkpoints go; none without it.
    pub trial_dir: Option<PathBuf>,
    /// Continue from the checkpoint in the trial directory.
    pub resume: bool,
    /// Where the base model is cached, unless the `[trainer]` table says.
    pub cache_dir: Option<PathBuf>,
    /// Split each micro-batch into this many parts (after out-of-memory attempts).
    pub micro_batch_split: u32,
    /// `CUDA_VISIBLE_DEVICES`: the GPUs the scheduler leased.
    pub cuda_visible: String,
}

/// Why a built-in trial could not run.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    /// `SWEEP_PARAMS` or `SWEEP_AXES` is not a JSON object.
    #[error("{0} is not a JSON object: {1}")]
    Json(&'static str, String),
    /// A parameter the trial cannot use.
    #[error(transparent)]
    Spec(#[from] TrialParamError),
    /// The `[trainer]` table or its files.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend cannot run here.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The base model could not be trained or loaded.
    #[error(transparent)]
    Base(#[from] CacheError),
    /// The checkpoint (`[trainer.model] hf`) could not be loaded.
    #[error("[trainer.model] hf: {0}")]
    Checkpoint(#[from] crate::hf::HfError),
    /// The run itself failed or was stopped.
    #[error(transparent)]
    Trial(#[from] TrialError),
    /// SIGTERM could not be watched for.
    #[error("cannot watch for SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// Runs the trial, sending everything it has to say to `report`. Once the base model is
/// ready, SIGTERM makes the run write a checkpoint and end with [`TrialError::Stopped`]
/// (before that, it ends the process as usual: the base model's cache is only written whole).
pub fn run(inputs: TrialInputs, report: &mut dyn FnMut(TrialReport)) -> Result<(), BuiltinError> {
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&inputs.params)
            .map_err(|e| BuiltinError::Json("the trial parameters", e.to_string()))?;
    let axes: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&inputs.axes)
        .map_err(|e| BuiltinError::Json(sweep_core::protocol::env::AXES, e.to_string()))?;
    let mut spec = TrialSpec::from_params(&params)?;
    let split = inputs.micro_batch_split.max(1) as usize;
    spec.micro_batch = spec.micro_batch.div_ceil(split);
    let config = TrainerConfig::from_json(&inputs.trainer)?;
    let share = config.share_runs;
    let cache = config
        .cache_dir
        .clone()
        .or(inputs.cache_dir)
        .unwrap_or_else(|| default_cache_dir(inputs.trial_dir.as_deref()));
    let mut base_config = BaseConfig::from_trainer(&config);
    if let Some(seed) = spec.base_seed {
        if !config.trains_its_base() {
            return Err(crate::spec::base_seed_needs_a_trained_base().into());
        }
        base_config.seed = seed;
    }
    let backend = config.backend;
    let setup = Setup::new(config)?;
    let selected = backend.select(&inputs.cuda_visible)?;
    report(TrialReport::Note(format!("device: {}", selected.name)));
    let (base, starting_key) =
        starting_model(&base_config, &setup, &cache, &selected.device, None, report)?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .map_err(BuiltinError::Signal)?;
    let plan = Plan::new(&spec, &axes, share);
    let mode = match (spec.ema_decay > 0.0, spec.ema_mode) {
        (false, _) => "off".to_string(),
        (true, mode) => format!("{mode:?}").to_lowercase(),
    };
    let method = match &spec.lora {
        None => "every weight".to_string(),
        Some(lora) => lora.to_string(),
    };
    report(TrialReport::Note(format!(
        "fine-tuning {} steps ({method}; ema: {mode}); reporting {} grid point(s) from this run",
        plan.train_steps,
        plan.points()
    )));
    // On libtorch, every result says whether it was computed on a GPU, so a CPU fallback on
    // a GPU machine shows in `sweep status` and in exports.
    let on_gpu = (backend == Backend::Tch).then_some(if selected.gpu { 1.0 } else { 0.0 });
    // `precision = "bf16"` says in every result whether it took effect (a GPU) or not.
    let compute = setup.config.precision.compute_dtype(selected.gpu);
    let bf16 = (setup.config.precision == Precision::Bf16).then(|| {
        let used = compute.is_some();
        report(TrialReport::Note(format!(
            "precision: {}",
            match (used, spec.lora.is_some()) {
                (true, false) => "bf16 compute, fp32 weights and optimizer state",
                (true, true) => {
                    "bf16 compute, the frozen base held in bf16, fp32 adapters and optimizer state"
                }
                (false, _) => "fp32 (bf16 applies on a GPU only)",
            }
        )));
        if used {
            1.0
        } else {
            0.0
        }
    });
    if split > 1 {
        report(TrialReport::Note(format!(
            "an earlier attempt ran out of GPU memory: micro-batch {} ({split}x the accumulation)",
            spec.micro_batch
        )));
    }
    let mut annotated = |r: TrialReport| match r {
        TrialReport::Result {
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
            report(TrialReport::Result { params, metrics })
        }
        other => report(other),
    };
    let checkpoints = inputs.trial_dir.as_deref().map(|dir| Checkpoints {
        dir,
        resume: inputs.resume,
    });
    let fingerprint = format!("{starting_key}|{:?}", setup.config);
    // LoRA under bf16 compute holds its frozen base in bf16: the fp32 copy is not kept.
    let base = match (&spec.lora, compute) {
        (Some(_), Some(dtype)) => narrow_matrices(base, dtype),
        _ => base,
    };
    run_trial(
        &setup,
        &base,
        &spec,
        &plan,
        &fingerprint,
        checkpoints,
        &stop,
        &selected,
        &mut annotated,
    )?;
    Ok(())
}

/// The model fine-tuning starts from, and a key that names it: the checkpoint
/// `[trainer.model] hf` names, as loaded (keyed by its content) or as `[trainer.align]`
/// aligns it (once, then cached; keyed by the alignment's cache key), the base model file
/// `[trainer] base_model` names (keyed by its hash), or the built-in miniature's aligned base
/// (trained once, then cached; keyed by its cache key). The checkpoint's content is hashed
/// once here, for both the alignment's cache and the key.
fn starting_model(
    base_config: &BaseConfig,
    setup: &Setup,
    cache: &Path,
    device: &crate::Device,
    eval_every: Option<usize>,
    report: &mut dyn FnMut(TrialReport),
) -> Result<(crate::model::Lm, String), BuiltinError> {
    if let Some(file) = &setup.config.base_model {
        let model = load_base_file(file, base_config, setup, device, report)?;
        return Ok((model, base_file_key(file)?));
    }
    match setup.config.model.hf() {
        Some(hf) => {
            report(TrialReport::Note(format!("loading {}", hf.dir.display())));
            let model = crate::hf::load(&hf.dir, Some(hf.max_seq), device)?.model;
            let checkpoint = crate::hf::fingerprint(&hf.dir)?;
            let Some((config, data)) = setup.align() else {
                return Ok((model, checkpoint));
            };
            let key = crate::align::key(
                config,
                &checkpoint,
                data,
                base_config.seed,
                setup.config.model.max_seq(),
                device,
            );
            let aligned = crate::align::aligned(
                model,
                &checkpoint,
                (config, data),
                setup,
                base_config.seed,
                cache,
                device,
                eval_every,
                report,
            )?;
            Ok((aligned, format!("aligned-{key}")))
        }
        None => {
            let model = base_model(base_config, setup, cache, device, eval_every, report)?;
            Ok((model, base_config.key(setup, device)))
        }
    }
}

/// The base-model cache of a trial directory `<root>/<sweep>/<trial>`: one per root, shared
/// by every sweep there.
fn default_cache_dir(trial_dir: Option<&Path>) -> PathBuf {
    trial_dir
        .and_then(|d| d.parent()?.parent().map(|root| root.join(".cache")))
        .unwrap_or_else(|| PathBuf::from("sweep-trials/.cache"))
}

/// What `sweep base` reports about the base model.
#[derive(Debug, Clone)]
pub struct BaseSummary {
    /// Its cache key.
    pub key: String,
    /// Seconds to train (or load) and evaluate it.
    pub seconds: f64,
    /// Its scores on the evaluation sets.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Every evaluation prompt with its answer, when asked for.
    pub transcripts: Vec<crate::setup::Transcript>,
}

/// `sweep base`: trains (or loads from `cache_dir`, unless the `[trainer]` table names
/// another) the base model `config` describes, or loads its checkpoint or base model file,
/// evaluates it, with `show_responses` collects its answers, and with `save` writes it (and
/// its provenance) to a base model file; progress goes to `report`.
pub fn base(
    config: TrainerConfig,
    cache_dir: PathBuf,
    cuda_visible: &str,
    eval_every: Option<usize>,
    show_responses: bool,
    save: Option<&Path>,
    report: &mut dyn FnMut(TrialReport),
) -> Result<BaseSummary, BuiltinError> {
    if save.is_some() && config.starts_from_a_file() {
        return Err(ConfigError::Value {
            key: if config.base_model.is_some() {
                "base_model"
            } else {
                "model"
            },
            message: "--save writes a base model this trainer aligns; a checkpoint or a saved \
                      base model is its own file already (copy it, with its .json)"
                .into(),
        }
        .into());
    }
    let cache = config.cache_dir.clone().unwrap_or(cache_dir);
    let base_config = BaseConfig::from_trainer(&config);
    let backend = config.backend;
    let setup = Setup::new(config)?;
    let selected = backend.select(cuda_visible)?;
    report(TrialReport::Note(format!("device: {}", selected.name)));
    let device = selected.device;
    let start = std::time::Instant::now();
    let (model, key) = starting_model(&base_config, &setup, &cache, &device, eval_every, report)?;
    let transcripts = if show_responses {
        crate::setup::transcripts(&model, &setup, &device).map_err(ConfigError::from)?
    } else {
        Vec::new()
    };
    let metrics = crate::setup::evaluate(&model, &setup, &device).metrics;
    if let Some(file) = save {
        let provenance = crate::base::BaseProvenance {
            key: base_config.key(&setup, &device),
            recipe: base_config.recipe(&setup, &device),
            metrics: metrics.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        save_base_file(&model, file, &provenance)?;
        report(TrialReport::Note(format!("saved as {}", file.display())));
    }
    Ok(BaseSummary {
        key,
        seconds: start.elapsed().as_secs_f64(),
        metrics,
        transcripts,
    })
}
