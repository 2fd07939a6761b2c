//! The training loop shared by alignment and fine-tuning: AdamW, an optional warmup and
//! cosine decay, a batch reached by micro-batches and gradient accumulation, optional
//! gradient clipping, and a hook after every optimizer step (curves, EMA).

use std::path::Path;

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::tensor::FloatDType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adamw::AdamW;
use crate::batch::{loss, make_batch};
use crate::clip::clip_global_norm;
use crate::model::Lm;
use crate::precision::{compute_copy, grads_to_f32};
use crate::recompute;
use crate::tokenizer::Encoded;

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Constant after warmup.
    Constant,
    /// Cosine from the peak down to `min_ratio` × peak at the last step.
    Cosine {
        /// Final fraction of the peak rate.
        min_ratio: f64,
    },
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Adam β1.
    pub beta1: f32,
    /// Adam β2.
    pub beta2: f32,
    /// Adam ε (PyTorch's default, not burn's 1e-5).
    pub epsilon: f32,
    /// Clip the global norm of all gradients to this, if set (PyTorch's `clip_grad_norm_`).
    pub grad_clip: Option<f32>,
    /// Linear warmup steps.
    pub warmup: usize,
    /// Shape after warmup.
    pub schedule: Schedule,
}

impl Default for OptimConfig {
    /// The built-in trial's defaults (see [`crate::spec::KNOWN`]): lr 1e-3, no weight decay,
    /// β 0.9 / 0.95, ε 1e-8, global-norm clip 1.0, constant rate without warmup.
    fn default() -> OptimConfig {
        OptimConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            grad_clip: Some(1.0),
            warmup: 0,
            schedule: Schedule::Constant,
        }
    }
}

impl OptimConfig {
    /// The learning rate of optimizer step `step` (0-based) out of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine { min_ratio } => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let progress = ((step - self.warmup) as f64 / span).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.lr * (min_ratio + (1.0 - min_ratio) * cos)
            }
        }
    }
}

/// A weighted mixture of example pools to draw batches from.
pub struct Mix<'a> {
    pools: Vec<(&'a [Encoded], f64)>,
    total: f64,
}

impl<'a> Mix<'a> {
    /// Pools with their sampling weights (empty pools are dropped).
    pub fn new(pools: Vec<(&'a [Encoded], f64)>) -> Mix<'a> {
        let pools: Vec<_> = pools
            .into_iter()
            .filter(|(p, w)| !p.is_empty() && *w > 0.0)
            .collect();
        let total = pools.iter().map(|(_, w)| w).sum();
        Mix { pools, total }
    }

    /// Draws `n` examples.
    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> Vec<&'a Encoded> {
        (0..n)
            .map(|_| {
                let mut pick = rng.random::<f64>() * self.total;
                let mut pool = self.pools[self.pools.len() - 1].0;
                for (p, w) in &self.pools {
                    if pick < *w {
                        pool = p;
                        break;
                    }
                    pick -= w;
                }
                &pool[rng.random_range(0..pool.len())]
            })
            .collect()
    }
}

/// Sizes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward/backward pass (gradients are accumulated over
    /// `batch_size / micro_batch` passes).
    pub micro_batch: usize,
}

/// A training run that advances one optimizer step at a time and can be saved and restored
/// exactly: model, optimizer state and the position of the batch sampler.
pub struct Trainer<'a> {
    model: Option<Lm>,
    optimizer: ModuleOptimizer,
    rng: ChaCha8Rng,
    step: usize,
    mix: &'a Mix<'a>,
    shape: RunShape,
    optim: OptimConfig,
    device: Device,
    /// The dtype of the forward and backward passes when not the weights' fp32.
    compute: Option<FloatDType>,
    /// Recompute cheap activations in the backward pass ([`crate::recompute`]).
    checkpointing: bool,
}

/// A checkpoint that cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {message}")]
pub struct CheckpointError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

impl CheckpointError {
    /// The error for `path`.
    pub(crate) fn at(path: &Path, message: impl ToString) -> CheckpointError {
        CheckpointError {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

impl<'a> Trainer<'a> {
    /// Starts training `model` (on an autodiff device) with fresh optimizer state; batches
    /// are drawn from `mix` in an order fixed by `seed`.
    pub fn new(
        model: Lm,
        device: &Device,
        mix: &'a Mix<'a>,
        shape: RunShape,
        optim: &OptimConfig,
        seed: u64,
    ) -> Trainer<'a> {
        Trainer {
            model: Some(model),
            optimizer: ModuleOptimizer::from(AdamW::new(optim)),
            rng: ChaCha8Rng::seed_from_u64(seed),
            step: 0,
            mix,
            shape,
            optim: optim.clone(),
            device: device.clone(),
            compute: None,
            checkpointing: false,
        }
    }

    /// Recomputes cheap activations in the backward pass instead of keeping them (see
    /// [`crate::recompute`]): less memory, the same gradients.
    pub fn checkpointing(mut self, on: bool) -> Trainer<'a> {
        self.checkpointing = on;
        self
    }

    /// Runs the forward and backward passes in `dtype` (bf16) on a copy of the fp32 weights,
    /// which the optimizer keeps updating in fp32 (see [`crate::precision`]); `None`: fp32.
    pub fn computing_in(mut self, dtype: Option<FloatDType>) -> Trainer<'a> {
        self.compute = dtype;
        self
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model as trained so far.
    pub fn model(&self) -> &Lm {
        self.model
            .as_ref()
            .expect("the model is only taken inside a step")
    }

    /// Replaces the model (an EMA in feedback mode copies its shadow back).
    pub fn map_model(&mut self, f: impl FnOnce(Lm) -> Lm) {
        let model = self
            .model
            .take()
            .expect("the model is only taken inside a step");
        self.model = Some(f(model));
    }

    /// One optimizer step over `shape.batch_size` examples, in micro-batches; returns the
    /// mean loss of the batch.
    pub fn advance(&mut self) -> f64 {
        let examples = self.mix.sample(&mut self.rng, self.shape.batch_size);
        let micro = self
            .shape
            .micro_batch
            .clamp(1, self.shape.batch_size.max(1));
        let model = self
            .model
            .take()
            .expect("the model is only taken inside a step");
        let mut accumulator = GradientsAccumulator::new();
        // The batch loss is the mean over all its predicted tokens: each micro-batch's mean
        // weighs by its share of them, so splitting a batch changes only rounding.
        let batch_tokens = examples.iter().map(|e| e.predicted()).sum::<usize>().max(1);
        let mut step_loss = None;
        let working = self.compute.map(|dtype| compute_copy(&model, dtype));
        let forward = working.as_ref().unwrap_or(&model);
        let tagged = self
            .checkpointing
            .then(|| recompute::checkpointed(forward.clone()));
        let forward = tagged.as_ref().unwrap_or(forward);
        let batch_device = match self.checkpointing {
            true => recompute::device(&self.device),
            false => self.device.clone(),
        };
        for chunk in examples.chunks(micro) {
            let batch = make_batch(chunk, &batch_device);
            let (mean, _) = loss(forward, &batch);
            let tokens = chunk.iter().map(|e| e.predicted()).sum::<usize>();
            let part = mean.mul_scalar(tokens as f64 / batch_tokens as f64);
            // Summed on the device: one host sync per step, not one per micro-batch.
            let detached = part.clone().inner();
            step_loss = Some(match step_loss {
                None => detached,
                Some(sum) => sum + detached,
            });
            let grads = GradientsParams::from_grads(part.backward(), forward);
            let grads = match working {
                Some(_) => grads_to_f32(&model, grads),
                None => grads,
            };
            accumulator.accumulate(&model, grads);
        }
        let step_loss = step_loss.map_or(0.0, |l| l.into_scalar::<f32>() as f64);
        let mut grads = accumulator.grads();
        if let Some(max_norm) = self.optim.grad_clip {
            clip_global_norm(&model, &mut grads, max_norm);
        }
        let lr = self.optim.lr_at(self.step, self.shape.steps);
        self.model = Some(self.optimizer.step(lr, model, grads));
        self.step += 1;
        step_loss
    }

    /// Writes the model, optimizer state and sampler position into `dir` (which must exist).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let model_path = dir.join("model.bpk");
        let model = self.model().valid();
        model
            .save_into(&mut model.checkpoint_store(&model_path))
            .map_err(|e| CheckpointError::at(&model_path, e))?;
        let optim_path = dir.join("optimizer.bpk");
        self.optimizer
            .save(&optim_path)
            .map_err(|e| CheckpointError::at(&optim_path, e))?;
        let state_path = dir.join("trainer.json");
        let state = serde_json::json!({
            "step": self.step,
            "sampler_word_pos": self.rng.get_word_pos().to_string(),
        });
        std::fs::write(&state_path, state.to_string())
            .map_err(|e| CheckpointError::at(&state_path, e))
    }

    /// Continues from what [`Trainer::save`] wrote into `dir`. `init` builds a model of the
    /// right shape (without autodiff) to load the weights into.
    pub fn restore(
        &mut self,
        dir: &Path,
        init: impl FnOnce() -> Lm,
    ) -> Result<(), CheckpointError> {
        let state_path = dir.join("trainer.json");
        let text = std::fs::read_to_string(&state_path)
            .map_err(|e| CheckpointError::at(&state_path, e))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CheckpointError::at(&state_path, e))?;
        let step = state["step"].as_u64();
        let word_pos = state["sampler_word_pos"]
            .as_str()
            .and_then(|s| s.parse::<u128>().ok());
        let (Some(step), Some(word_pos)) = (step, word_pos) else {
            return Err(CheckpointError::at(
                &state_path,
                "missing step or sampler position",
            ));
        };
        let model_path = dir.join("model.bpk");
        let mut model = init();
        let mut store = model.checkpoint_store(&model_path);
        model
            .load_from(&mut store)
            .map_err(|e| CheckpointError::at(&model_path, e))?;
        let optim_path = dir.join("optimizer.bpk");
        let blank = ModuleOptimizer::from(AdamW::new(&self.optim));
        let optimizer = std::mem::replace(&mut self.optimizer, blank);
        self.optimizer = optimizer
            .load(&optim_path)
            .map_err(|e| CheckpointError::at(&optim_path, e))?;
        self.model = Some(model.to_device(&self.device).train());
        self.rng.set_word_pos(word_pos);
        self.step = step as usize;
        Ok(())
    }
}

/// Trains `model` (on an autodiff device) for `shape.steps` steps. After each step
/// `after_step(step, loss, model)` runs and returns the model to continue with.
pub fn train(
    model: Lm,
    device: &Device,
    mix: &Mix<'_>,
    shape: RunShape,
    optim: &OptimConfig,
    seed: u64,
    mut after_step: impl FnMut(usize, f64, Lm) -> Lm,
) -> Lm {
    let mut trainer = Trainer::new(model, device, mix, shape, optim, seed);
    while trainer.step() < shape.steps {
        let loss = trainer.advance();
        let step = trainer.step();
        trainer.map_model(|m| after_step(step, loss, m));
    }
    trainer
        .model
        .take()
        .expect("the model is only taken inside a step")
}

#[cfg(test)]
mod tests {
    use burn::tensor::DType;

    use super::*;

    #[test]
    fn schedules() {
        let o = OptimConfig {
            lr: 1.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            grad_clip: None,
            warmup: 10,
            schedule: Schedule::Cosine { min_ratio: 0.1 },
        };
        assert_eq!(o.lr_at(0, 110), 0.1);
        assert_eq!(o.lr_at(9, 110), 1.0);
        assert!((o.lr_at(10, 110) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(110, 110) - 0.1).abs() < 1e-12);
        let c = OptimConfig {
            warmup: 0,
            schedule: Schedule::Constant,
            ..o
        };
        assert_eq!(c.lr_at(50, 100), 1.0);
    }

    /// The small model the training tests start from, and the run they train it for: one
    /// repeated example, 30 steps of 4 at lr 1e-2.
    fn tiny_start(device: &Device) -> Lm {
        device.seed(3);
        crate::model::ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 1,
            d_ff: 64,
            max_seq: 64,
        }
        .init(device)
    }

    /// Trains `start` on one repeated example, in fp32 or with `compute`, keeping or
    /// recomputing activations; returns the loss of every step and the trained model. Every
    /// run of the same `start` draws nothing from the device's generator, so runs compare
    /// bit for bit even while other tests draw from it.
    fn overfit(
        start: &Lm,
        device: &Device,
        compute: Option<FloatDType>,
        checkpointing: bool,
    ) -> (Vec<f64>, Lm) {
        let ad = device.clone().autodiff();
        let example = crate::tokenizer::encode_example("Say hi", "hi there", 64);
        let pool = vec![example];
        let mix = Mix::new(vec![(&pool, 1.0)]);
        let shape = RunShape {
            steps: 30,
            batch_size: 4,
            micro_batch: 4,
        };
        let optim = OptimConfig {
            lr: 1e-2,
            ..OptimConfig::default()
        };
        let model = start.clone().to_device(&ad).train();
        let mut trainer = Trainer::new(model, &ad, &mix, shape, &optim, 0)
            .computing_in(compute)
            .checkpointing(checkpointing);
        let losses = (0..30).map(|_| trainer.advance()).collect();
        (losses, trainer.model().valid())
    }

    /// Recomputing activations in the backward pass trains to the same losses, bit for bit,
    /// in fp32 and on a bf16 working copy (whose weights are re-tagged every step).
    #[test]
    fn checkpointing_trains_to_the_same_losses() {
        let device = crate::cpu_device();
        let start = tiny_start(&device);
        for compute in [None, Some(FloatDType::BF16)] {
            assert_eq!(
                overfit(&start, &device, compute, false).0,
                overfit(&start, &device, compute, true).0,
                "{compute:?}"
            );
        }
    }

    /// Mixed precision learns as fp32 does, and the weights it updates stay fp32.
    fn bf16_compute_learns_with_fp32_weights(device: &Device) {
        let start = tiny_start(device);
        let (fp32, fp32_model) = overfit(&start, device, None, false);
        let (bf16, bf16_model) = overfit(&start, device, Some(FloatDType::BF16), false);
        assert_eq!(fp32_model.compute_dtype(), DType::F32);
        assert_eq!(bf16_model.compute_dtype(), DType::F32);
        assert_ne!(fp32, bf16, "bf16 compute rounds differently");
        let (first, last) = (bf16[0], bf16[bf16.len() - 1]);
        assert!(last < first * 0.3, "bf16 loss {first} -> {last}");
        // The first step sees the same weights: the losses agree to bf16 precision.
        assert!(
            (fp32[0] - bf16[0]).abs() < 0.02 * fp32[0],
            "{fp32:?} vs {bf16:?}"
        );
        let fp32_last = fp32[fp32.len() - 1];
        assert!(
            (last - fp32_last).abs() < 0.05 + 0.5 * fp32_last,
            "{fp32:?} vs {bf16:?}"
        );
    }

    /// Each weight of `model`: whether it trains, its dtype, its values.
    fn weights(model: &Lm) -> Vec<(bool, DType, Vec<f32>)> {
        struct Weights(Vec<(bool, DType, Vec<f32>)>);
        impl burn::module::ModuleVisitor for Weights {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let value = param.val();
                let dtype = value.dtype();
                let values = value
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("floats");
                self.0.push((param.is_require_grad(), dtype, values));
            }
        }
        let mut visit = Weights(Vec::new());
        model.visit(&mut visit);
        visit.0
    }

    /// LoRA over a base held in bf16, computing in bf16: the loss falls, with and without
    /// checkpointing (bit for bit the same), the adapters train in fp32, and the frozen
    /// matrices stay bf16 and untouched.
    fn lora_trains_fp32_adapters_over_a_bf16_base(device: &Device) {
        use crate::lora::{parse_targets, LoraSpec};
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            targets: parse_targets("all").expect("targets"),
            ..LoraSpec::default()
        };
        let base = crate::precision::narrow_matrices(tiny_start(device), FloatDType::BF16);
        let start = base.with_lora(&spec, device);
        let bf16 = Some(FloatDType::BF16);
        let (losses, trained) = overfit(&start, device, bf16, false);
        assert_eq!(
            overfit(&start, device, bf16, true).0,
            losses,
            "checkpointing"
        );
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < first * 0.7, "loss {first} -> {last}");
        // Which weights train is known on an autodiff device only.
        let training = weights(&start.clone().to_device(&device.clone().autodiff()).train());
        let (before, after) = (weights(&start), weights(&trained));
        assert_eq!(before.len(), after.len());
        let mut narrow = 0;
        for (((trains, _, _), (_, dtype, old)), (_, new_dtype, new)) in
            training.iter().zip(&before).zip(&after)
        {
            assert_eq!(dtype, new_dtype);
            if *trains {
                assert_eq!(*dtype, DType::F32, "adapters train in fp32");
            } else {
                assert_eq!(old, new, "a frozen weight moved");
                narrow += usize::from(*dtype == DType::BF16);
            }
        }
        assert!(narrow > 0, "no matrix held in bf16");
        assert!(training
            .iter()
            .zip(&before)
            .zip(&after)
            .any(|((t, b), a)| t.0 && b.2 != a.2));
    }

    #[test]
    fn lora_trains_fp32_adapters_over_a_bf16_base_on_flex() {
        lora_trains_fp32_adapters_over_a_bf16_base(&Device::flex());
    }

    #[cfg(feature = "tch")]
    #[test]
    #[expect(deprecated, reason = "burn-tch is deprecated upstream")]
    fn lora_trains_fp32_adapters_over_a_bf16_base_on_libtorch() {
        lora_trains_fp32_adapters_over_a_bf16_base(&Device::libtorch());
    }

    #[test]
    fn bf16_compute_learns_with_fp32_weights_on_flex() {
        bf16_compute_learns_with_fp32_weights(&Device::flex());
    }

    #[cfg(feature = "tch")]
    #[test]
    #[expect(deprecated, reason = "burn-tch is deprecated upstream")]
    fn bf16_compute_learns_with_fp32_weights_on_libtorch() {
        bf16_compute_learns_with_fp32_weights(&Device::libtorch());
    }
}
