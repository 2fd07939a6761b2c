//! Mixed precision for fine-tuning on a GPU (`[trainer] precision = "bf16"`): the forward and
//! backward passes run on a bf16 copy of the weights, while the weights the optimizer updates,
//! its state, the EMA shadows and the loss stay in fp32, as PyTorch's autocast keeps them.
//! Pure bf16 weights would lose most updates of a small learning rate and freeze an EMA with
//! β = 0.99 (bf16 keeps 8 significant bits). Base-model training and evaluation stay fp32, so
//! results of both precisions are measured the same way from the same base model.

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

struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // A LoRA model's frozen weights stay frozen in the copy: no gradient, no update.
        let trainable = param.is_require_grad();
        let (id, value, mapper) = param.consume();
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

    #[test]
    fn bf16_applies_on_a_gpu_only() {
        assert_eq!(Precision::default(), Precision::Fp32);
        assert_eq!(Precision::Fp32.compute_dtype(true), None);
        assert_eq!(Precision::Bf16.compute_dtype(false), None);
        assert_eq!(Precision::Bf16.compute_dtype(true), Some(FloatDType::BF16));
    }
}
