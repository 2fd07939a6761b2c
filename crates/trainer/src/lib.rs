//! The built-in trial: a miniature of the paper's setting that runs anywhere, on burn.
//!
//! Data flows through these modules in order:
//! - [`config`]: the grid's `[trainer]` table ([`grid`] checks a whole grid before it runs);
//!   [`device`]: which backend runs it.
//! - [`data`] and [`tokenizer`]: harmful and benign requests, a fine-tuning task and its skill,
//!   made by code (or read from AdvBench/Alpaca/Dolly files), in the chat template, and
//!   [`benchmark`]'s multiple-choice files, scored as lm-evaluation-harness scores them;
//!   [`setup`] tokenises them into training pools and evaluation sets.
//! - [`model`] (a small Llama-style decoder, with [`lora`] adapters in a LoRA trial), [`batch`] (masked loss), [`train`] (AdamW,
//!   schedules, micro-batches, [`clip`]ping, resumable [`train::Trainer`]) and [`ema`].
//! - [`base`]: the safety-aligned base model, trained once and cached by config hash;
//!   [`align`]: the same for a checkpoint that is not aligned already, on the data of
//!   [`align_data`]; both keep their models with [`cache`] and say how they go with
//!   [`progress`].
//! - [`trial`]: a fine-tuning trial with checkpoints, reporting every grid point its run
//!   computes; [`generate`] and [`eval`] score it (GCG keywords, degenerate answers, exact
//!   match); [`report`] is what it says as it runs; [`builtin`] is all of it, as `sweep trial`
//!   runs it; [`evaluator`] is its evaluation alone, of any checkpoint (`sweep eval`).

pub mod adamw;
pub mod align;
pub mod align_data;
pub mod answers;
pub mod base;
pub mod batch;
pub mod benchmark;
pub mod builtin;
pub mod cache;
pub mod chat;
pub mod clip;
pub mod config;
pub mod data;
pub mod device;
pub mod ema;
pub mod eval;
pub mod evaluator;
pub mod generate;
pub mod grid;
pub mod hf;
pub mod judge;
pub mod lora;
pub mod model;
pub mod precision;
pub mod progress;
pub mod recompute;
pub mod report;
pub mod setup;
pub mod sizes;
pub mod spec;
pub mod tokenizer;
pub mod train;
pub mod trial;

pub use burn::tensor::Device;

/// The default device: burn's pure-Rust CPU backend (`flex`).
pub fn cpu_device() -> Device {
    Device::flex()
}

/// Helpers the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod testing {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use crate::lora::{Adapters, LoraSpec, Target};
    use crate::model::{Arch, Lm};

    /// A two-block model small enough to build in every test: width 32, 4 heads, MLP 48.
    pub fn tiny_arch() -> Arch {
        crate::model::ModelConfig {
            d_model: 32,
            n_heads: 4,
            n_layers: 2,
            d_ff: 48,
            max_seq: 64,
        }
        .arch()
    }

    /// Adapters of `spec` for `arch` whose B is drawn too (PEFT's init leaves it zero), so
    /// each has a delta to compare.
    pub fn random_adapters(arch: &Arch, spec: &LoraSpec, device: &Device) -> Adapters {
        let mut adapters = Adapters::init(spec, arch.n_layers, |t| arch.projection_dims(t), device);
        for layer in &mut adapters.layers {
            for target in Target::ALL {
                if let Some(lora) = layer.slot(target).as_mut() {
                    let shape = lora.b.val().dims();
                    lora.b = Param::from_tensor(Tensor::random(
                        shape,
                        burn::tensor::Distribution::Normal(0.0, 1.0),
                        device,
                    ));
                }
            }
        }
        adapters
    }

    struct Flatten<'a>(&'a GradientsParams, Vec<f32>, usize);

    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.0.get::<D>(param.id) {
                Some(g) => self.1.extend(g.into_data().convert::<f32>().iter::<f32>()),
                None => self.2 += 1,
            }
        }
    }

    /// Every gradient of `model`'s weights in `grads`, in the model's order, and how many of
    /// its weights have none.
    pub fn flat_gradients(model: &Lm, grads: &GradientsParams) -> (Vec<f32>, usize) {
        let mut visit = Flatten(grads, Vec::new(), 0);
        model.visit(&mut visit);
        (visit.1, visit.2)
    }
}
