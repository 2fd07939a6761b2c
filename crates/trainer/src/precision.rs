//! Mixed precision for fine-tuning on a GPU (`[trainer] precision = "bf16"`): the forward and
//! backward passes run on a bf16 copy of the weights, while the weights the optimizer updates,
//! its state, the EMA shadows and the loss stay in fp32, as PyTorch's autocast keeps them.
//! Pure bf16 weights would lose most updates of a small learning rate and freeze an EMA with
//! β = 0.99 (bf16 keeps 8 significant bits). Base-model training and evaluation stay fp32, so
//! results of both precisions are measured the same way from the same base model. A LoRA
//! model's frozen base, which nothing updates, is held in bf16 outright ([`narrow_matrices`]).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::Deserialize;

use crate::model::Lm;

/// The `[trainer] precision` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 throughout.
    #[default]
    Fp32,
    /// bf16 compute with fp32 weights, on a GPU; fp32 on the CPU, where bf16 is slower.
    Bf16,
}

impl Precision {
    /// The dtype fine-tuning computes in on a device (`gpu` or not); `None` is fp32.
    pub fn compute_dtype(self, gpu: bool) -> Option<FloatDType> {
        match (self, gpu) {
            (Precision::Bf16, true) => Some(FloatDType::BF16),
            _ => None,
        }
    }
}

/// Casts a model's weights of at least `min_rank` dimensions to `dtype` (rank 2: its
/// matrices, the embedding, projections and head, leaving the norms and biases as they are).
struct CastWeights {
    dtype: FloatDType,
    min_rank: usize,
}

impl ModuleMapper for CastWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < self.min_rank {
            return param;
        }
        param.map(|value| value.cast(self.dtype))
    }
}

/// `base` with its matrices held in `dtype` (bf16), for LoRA on a GPU under `precision =
/// "bf16"`: the frozen base is what holds most of the memory (4 bytes a parameter in fp32,
/// plus the bf16 working copy each step), and in bf16 it is 2 bytes a parameter and already
/// its own working copy. The norms and biases stay fp32 and keep the model computing in
/// fp32 outside training ([`Lm::compute_dtype`]), so its evaluation is the fp32 evaluation
/// of the base rounded to bf16: exact for a checkpoint published in bf16 (Llama-3, Qwen2.5,
/// Phi-3). The adapters, their optimizer state and EMA shadows stay fp32.
pub fn narrow_matrices(base: Lm, dtype: FloatDType) -> Lm {
    base.map(&mut CastWeights { dtype, min_rank: 2 })
}

/// Every weight of `model` in fp32 (a no-op for those already fp32): what a Hugging Face
/// directory declared `float32` is written from.
pub fn widened(model: Lm) -> Lm {
    model.map(&mut CastWeights {
        dtype: FloatDType::F32,
        min_rank: 0,
    })
}

struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // A LoRA model's frozen weights stay frozen in the copy: no gradient, no update.
        let trainable = param.is_require_grad();
        let (id, value, mapper) = param.consume();
        // A matrix already held in the dtype (a narrowed frozen base) is used as it is: the
        // cast below is then no operation and the leaf shares its storage.
        // A fresh leaf with the master weight's id, so its gradients find the master.
        let copy = value.inner().cast(self.0).autodiff();
        let copy = if trainable { copy.require_grad() } else { copy };
        Param::from_mapped_value(id, copy, mapper)
    }
}

/// A copy of `master` (on an autodiff device) whose weights are `dtype`: run the forward and
/// backward passes on it, then hand its gradients to [`grads_to_f32`].
pub fn compute_copy(master: &Lm, dtype: FloatDType) -> Lm {
    master.clone().map(&mut CastParams(dtype))
}

struct ToF32<'a>(&'a mut GradientsParams);

impl ModuleVisitor for ToF32<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(grad) = self.0.remove::<D>(id) {
            self.0.register(id, grad.cast(FloatDType::F32));
        }
    }
}

/// Casts the gradients of a [`compute_copy`] of `master` to fp32, for the fp32 optimizer.
pub fn grads_to_f32(master: &Lm, mut grads: GradientsParams) -> GradientsParams {
    master.visit(&mut ToF32(&mut grads));
    grads
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The working copy of a LoRA model trains its adapters only, as the master does.
    #[test]
    fn the_working_copy_keeps_frozen_weights_frozen() {
        struct Flags(Vec<bool>);
        impl ModuleVisitor for Flags {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.is_require_grad());
            }
        }
        let flags = |m: &Lm| {
            let mut f = Flags(Vec::new());
            m.visit(&mut f);
            f.0
        };
        let device = crate::cpu_device();
        let ad = device.clone().autodiff();
        let arch = crate::model::ModelConfig::default().arch();
        let master = arch
            .init(&device)
            .with_lora(&crate::lora::LoraSpec::default(), &device)
            .to_device(&ad)
            .train();
        let copy = compute_copy(&master, FloatDType::F32);
        let (m, c) = (flags(&master), flags(&copy));
        assert_eq!(m, c);
        assert!(m.iter().any(|t| *t) && m.iter().any(|t| !t), "{m:?}");
    }

    /// A LoRA model over a base held in bf16 computes, outside training, what the fp32 model
    /// over that rounded base computes: with its adapters kept beside it (evaluation), folded
    /// in (saving) and scaled (the interpolation baseline).
    #[test]
    fn a_base_held_in_bf16_evaluates_as_the_rounded_base_in_fp32() {
        use crate::lora::{parse_targets, LoraSpec};
        use burn::tensor::DType;
        let device = crate::cpu_device();
        device.seed(5);
        let arch = crate::testing::tiny_arch();
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            targets: parse_targets("all").expect("targets"),
            ..LoraSpec::default()
        };
        let adapters = crate::testing::random_adapters(&arch, &spec, &device);
        let narrow = narrow_matrices(arch.init(&device), FloatDType::BF16);
        assert_eq!(narrow.compute_dtype(), DType::F32);
        // Built the way every fp32 LoRA model is evaluated, from the rounded weights.
        let rounded = widened(narrow.clone());
        let reference = rounded.clone().with_adapters(adapters.clone()).merged();
        let adapted = narrow.with_adapters(adapters);
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(
                (0..24).map(|t| (t * 37) % 250).collect::<Vec<i64>>(),
                [2, 12],
            ),
            &device,
        );
        let logits = |m: &Lm| m.forward(tokens.clone());
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        let expected = logits(&reference);

        let evaluated = adapted.clone().evaluated();
        assert!(evaluated.adapters().is_some(), "kept beside the bf16 base");
        assert_eq!(logits(&evaluated).dtype(), DType::F32);
        let d = diff(logits(&evaluated), expected.clone());
        assert!(d < 1e-4, "evaluated: {d}");

        let merged = adapted.clone().merged();
        assert!(merged.adapters().is_none());
        let d = diff(logits(&merged), expected.clone());
        assert!(d < 1e-4, "merged: {d}");
        let saved = widened(merged);
        assert!(!saved.has_narrow_matrices());

        let halfway = crate::ema::interpolate(&rounded, &reference, 0.5);
        let d = diff(
            logits(&crate::ema::interpolate(&rounded, &evaluated, 0.5)),
            logits(&halfway),
        );
        assert!(d < 1e-4, "interpolated: {d}");
    }

    #[test]
    fn bf16_applies_on_a_gpu_only() {
        assert_eq!(Precision::default(), Precision::Fp32);
        assert_eq!(Precision::Fp32.compute_dtype(true), None);
        assert_eq!(Precision::Bf16.compute_dtype(false), None);
        assert_eq!(Precision::Bf16.compute_dtype(true), Some(FloatDType::BF16));
    }
}
