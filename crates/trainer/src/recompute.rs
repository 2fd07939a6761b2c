//! Activation (gradient) checkpointing, `[trainer] grad_checkpoint = true`: the backward pass
//! recomputes the outputs of cheap, memory-bound operations (activations, norms, the
//! softmax's inputs) instead of keeping them from the forward pass, while the outputs of
//! matrix products are still kept. Less memory for the same gradients, bit for bit, at the
//! cost of recomputing those operations.
//!
//! burn 0.22.1 carries the strategy on every tensor, from the device it was made on, and
//! refuses to combine tensors that differ. A model moved to an autodiff device and put in
//! training mode (`Module::train`) carries the default strategy whatever the device says, and
//! so do the weights the optimizer hands back; so the trainer re-tags the weights on each
//! step ([`checkpointed`]) and makes the batch on a checkpointing device ([`device`]).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::GradientCheckpointingStrategy;

use crate::model::Lm;

struct Tag;

impl ModuleMapper for Tag {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // The same leaf (its gradient still finds the parameter), under the balanced strategy.
        param.map(|t| {
            t.with_gradient_checkpointing_strategy(GradientCheckpointingStrategy::Balanced)
        })
    }
}

/// `model` (in training mode on an autodiff device) with its weights under the checkpointing
/// strategy, so a forward pass on a batch from [`device`] recomputes rather than keeps.
pub fn checkpointed(model: Lm) -> Lm {
    model.map(&mut Tag)
}

/// The autodiff device `device` with checkpointing: where the batch's tensors are made.
pub fn device(device: &Device) -> Device {
    device.clone().gradient_checkpointing()
}

#[cfg(test)]
mod tests {
    use burn::optim::GradientsParams;

    use super::*;
    use crate::batch::{loss, make_batch};
    use crate::tokenizer::Encoded;

    /// Recomputing gives the same loss and the same gradient for every weight.
    #[test]
    fn checkpointing_changes_no_gradient() {
        let cpu = crate::cpu_device();
        cpu.seed(3);
        let base = crate::model::ModelConfig::default().arch().init(&cpu);
        let example = Encoded {
            tokens: vec![5, 9, 14, 3, 22, 7, 30, 2],
            target: vec![false, false, true, true, true, true, true, true],
        };
        let ad = cpu.clone().autodiff();
        let run = |model: Lm, batch_device: &Device| {
            let (mean, _) = loss(&model, &make_batch(&[&example], batch_device));
            let value = mean.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(mean.backward(), &model);
            let (flat, missing) = crate::testing::flat_gradients(&model, &grads);
            assert_eq!(missing, 0, "a weight without a gradient");
            (value, flat)
        };
        let model = base.to_device(&ad).train();
        let plain = run(model.clone(), &ad);
        let recomputed = run(checkpointed(model), &device(&ad));
        assert_eq!(plain, recomputed);
    }
}
