//! Gradient clipping by the global norm of all gradients together, as PyTorch's
//! `clip_grad_norm_` (and the papers that quote a clip value) mean it. burn 0.22's optimizer
//! clipping scales each parameter tensor by its own norm, which is a different method.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::model::Lm;

struct SumSquares<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<D>(id) {
            self.grads.register(id, g.mul_scalar(self.factor));
        }
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`; returns the norm
/// before scaling.
pub fn clip_global_norm(model: &Lm, grads: &mut GradientsParams, max_norm: f32) -> f64 {
    let mut sum = SumSquares { grads, total: None };
    model.visit(&mut sum);
    let Some(total) = sum.total else {
        return 0.0;
    };
    let norm = (total.into_scalar::<f32>() as f64).sqrt();
    let max_norm = max_norm as f64;
    if norm > max_norm {
        // PyTorch adds 1e-6 to the norm in the same place.
        let factor = max_norm / (norm + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{loss, make_batch};
    use crate::model::ModelConfig;
    use crate::tokenizer::encode_example;

    #[test]
    fn scales_every_gradient_by_one_factor() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let model = ModelConfig {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
            d_ff: 32,
            max_seq: 64,
        }
        .init(&device);
        let e = encode_example("Say hi", "hi there", 64);
        let grads_of = || {
            let (l, _) = loss(&model, &make_batch(&[&e], &device));
            GradientsParams::from_grads(l.backward(), &model)
        };
        let mut grads = grads_of();
        let before = grads_of();
        let norm = clip_global_norm(&model, &mut grads, 0.01);
        assert!(
            norm > 0.01,
            "the test needs a norm over the threshold: {norm}"
        );
        let after = clip_global_norm(&model, &mut grads, f32::MAX);
        assert!(
            (after - 0.01).abs() < 1e-4,
            "clipped to the threshold: {after}"
        );
        // Same direction: every tensor scaled by the same factor.
        let mut ratios = Vec::new();
        struct Ratio<'a>(&'a GradientsParams, &'a GradientsParams, &'a mut Vec<f32>);
        impl ModuleVisitor for Ratio<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let (Some(a), Some(b)) = (self.0.get::<D>(param.id), self.1.get::<D>(param.id)) {
                    let (a, b) = (
                        a.abs().sum().into_scalar::<f32>(),
                        b.abs().sum().into_scalar::<f32>(),
                    );
                    if b > 0.0 {
                        self.2.push(a / b);
                    }
                }
            }
        }
        model.visit(&mut Ratio(&grads, &before, &mut ratios));
        let first = ratios[0];
        assert!(
            ratios.iter().all(|r| (r - first).abs() < 1e-4 * first),
            "{ratios:?}"
        );
    }
}
