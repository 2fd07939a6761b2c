//! The training loop shared by alignment and fine-tuning: AdamW, an optional warmup and
//! cosine decay, a batch reached by micro-batches and gradient accumulation, optional
//! gradient clipping, and a hook after every optimizer step (curves, EMA).

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{loss, make_batch};
use crate::model::Lm;
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
    /// Clip the global gradient norm to this, if set.
    pub grad_clip: Option<f32>,
    /// Linear warmup steps.
    pub warmup: usize,
    /// Shape after warmup.
    pub schedule: Schedule,
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

/// Trains `model` (on an autodiff device) for `shape.steps` steps. After each step
/// `after_step(step, loss, model)` runs and returns the model to continue with (so an EMA in
/// feedback mode can replace it).
pub fn train(
    mut model: Lm,
    device: &Device,
    mix: &Mix<'_>,
    shape: RunShape,
    optim: &OptimConfig,
    rng: &mut ChaCha8Rng,
    mut after_step: impl FnMut(usize, f64, Lm) -> Lm,
) -> Lm {
    let mut config = AdamWConfig::new()
        .with_beta_1(optim.beta1)
        .with_beta_2(optim.beta2)
        .with_epsilon(optim.epsilon)
        .with_weight_decay(optim.weight_decay);
    if let Some(clip) = optim.grad_clip {
        config = config.with_grad_clipping(Some(GradientClippingConfig::Norm(clip)));
    }
    let mut optimizer = config.init();
    let micro = shape.micro_batch.clamp(1, shape.batch_size.max(1));
    for step in 0..shape.steps {
        let examples = mix.sample(rng, shape.batch_size);
        let mut accumulator = GradientsAccumulator::new();
        let mut step_loss = 0.0;
        for chunk in examples.chunks(micro) {
            let batch = make_batch(chunk, device);
            let (mean, _) = loss(&model, &batch);
            let weight = chunk.len() as f64 / examples.len() as f64;
            step_loss += mean.clone().into_scalar::<f32>() as f64 * weight;
            let grads = mean.mul_scalar(weight).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let lr = optim.lr_at(step, shape.steps);
        model = optimizer.step(lr, model, accumulator.grads());
        model = after_step(step + 1, step_loss, model);
    }
    model
}

#[cfg(test)]
mod tests {
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
}
