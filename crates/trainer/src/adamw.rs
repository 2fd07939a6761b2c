//! AdamW as the trainer runs it: burn's update, except on libtorch, where the same update is
//! written into the parameter and its moments in place, as PyTorch's own AdamW does.
//!
//! burn's AdamW is written in whole-tensor expressions: every step allocates about five
//! parameter-sized temporaries and passes over memory thirteen times. For SmolLM2-135M that is
//! most of the gap between sweep's step and transformers' (docs/performance.md). The in-place
//! update makes seven passes and allocates nothing. Its state is burn's (`AdamWState`), so
//! checkpoints written by either path load into the other.

use burn::optim::{AdamW as BurnAdamW, AdamWConfig, AdamWState, LearningRate, Optimizer};
use burn::prelude::*;

use crate::train::OptimConfig;

/// The optimizer [`crate::train::Trainer`] wraps in a `ModuleOptimizer`.
#[derive(Clone)]
pub struct AdamW {
    burn: BurnAdamW,
    #[cfg_attr(
        not(feature = "tch"),
        expect(dead_code, reason = "read by the libtorch path")
    )]
    hyper: Hyper,
}

/// What the in-place update needs of the configuration (burn's config keeps its fields to
/// itself).
#[derive(Clone, Copy)]
#[cfg_attr(
    not(feature = "tch"),
    expect(dead_code, reason = "read by the libtorch path")
)]
struct Hyper {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
}

impl AdamW {
    /// The optimizer for `optim`'s betas, epsilon and decoupled weight decay (its clipping
    /// and schedule are the trainer's business).
    pub fn new(optim: &OptimConfig) -> AdamW {
        let burn = AdamWConfig::new()
            .with_beta_1(optim.beta1)
            .with_beta_2(optim.beta2)
            .with_epsilon(optim.epsilon)
            .with_weight_decay(optim.weight_decay)
            .build();
        let hyper = Hyper {
            beta_1: f64::from(optim.beta1),
            beta_2: f64::from(optim.beta2),
            epsilon: f64::from(optim.epsilon),
            weight_decay: f64::from(optim.weight_decay),
        };
        AdamW { burn, hyper }
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "tch")]
        let (tensor, grad, state) = match in_place::step(self.hyper, lr, tensor, grad, state) {
            Ok(done) => return done,
            Err(given_back) => given_back,
        };
        self.burn.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        BurnAdamW::to_device(state, device)
    }
}

#[cfg(feature = "tch")]
#[expect(
    deprecated,
    reason = "burn-tch is deprecated upstream; it is the libtorch path burn 0.22 has"
)]
mod in_place {
    use burn::backend::libtorch::TchTensor;
    use burn::backend::LibTorch;
    use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate};
    use burn::prelude::*;

    use super::Hyper;

    /// A step's parameter, gradient and state, given back for burn's update.
    type Parts<const D: usize> = (Tensor<D>, Tensor<D>, Option<AdamWState<D>>);

    /// libtorch's handle on `tensor`, or `None` off libtorch.
    fn libtorch<const D: usize>(tensor: &Tensor<D>) -> Option<TchTensor> {
        tensor.clone().try_into_primitive::<LibTorch>().ok()
    }

    /// `t` as a contiguous tensor nothing else holds, so it can be written in place: copied
    /// where its storage is shared (a model clone, an EMA, a state still saved elsewhere).
    fn writable(t: TchTensor) -> TchTensor {
        if t.can_mut() && t.tensor.is_contiguous() {
            t
        } else {
            TchTensor::new(t.tensor.contiguous().copy())
        }
    }

    /// PyTorch's single-tensor AdamW (`torch/optim/adam.py`, decoupled weight decay) on
    /// libtorch tensors, in place. Gives its arguments back off libtorch, where burn's update
    /// runs instead.
    pub(super) fn step<const D: usize>(
        hyper: Hyper,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> Result<(Tensor<D>, Option<AdamWState<D>>), Parts<D>> {
        let moments = match &state {
            Some(s) => libtorch(&s.momentum.moment_1).zip(libtorch(&s.momentum.moment_2)),
            None => libtorch(&grad).map(|g| {
                let zeros = || TchTensor::new(g.tensor.zeros_like());
                (zeros(), zeros())
            }),
        };
        let (Some(param), Some(g), Some((m, v))) = (libtorch(&tensor), libtorch(&grad), moments)
        else {
            return Err((tensor, grad, state));
        };
        // libtorch's in-place ops panic on mixed kinds or devices; burn's update casts.
        let same = |t: &TchTensor| {
            t.tensor.kind() == param.tensor.kind() && t.tensor.device() == param.tensor.device()
        };
        if ![&g, &m, &v].into_iter().all(same) {
            return Err((tensor, grad, state));
        }
        // The handles above are the only ones left, so `writable` copies only what is shared
        // outside this step.
        let time = state.map_or(0, |s| s.momentum.time) + 1;
        drop((tensor, grad));
        let (mut param, mut g, mut m, mut v) =
            (writable(param), writable(g), writable(m), writable(v));

        let Hyper {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } = hyper;
        let bias_1 = 1.0 - beta_1.powi(time as i32);
        let bias_2_sqrt = (1.0 - beta_2.powi(time as i32)).sqrt();
        let step_size = lr / bias_1;
        let decay = lr * weight_decay;
        if decay != 0.0 {
            let _ = param.tensor.g_mul_scalar_(1.0 - decay);
        }
        let _ = m.tensor.lerp_(&g.tensor, 1.0 - beta_1);
        // The gradient's buffer becomes its square, then the denominator.
        let square = g.tensor.shallow_clone();
        let _ = g.tensor.g_mul_(&square);
        let _ = v.tensor.lerp_(&g.tensor, 1.0 - beta_2);
        let _ = v.tensor.sqrt_out(&g.tensor);
        // denom = sqrt(v) / sqrt(bias_2) + eps, scaled by -1 / step_size so that one
        // `addcdiv_` (whose factor is 1 in libtorch's C API) applies -step_size * m / denom.
        // A zero learning rate (a warmup's first step) moves the moments only.
        if step_size != 0.0 {
            let _ = g.tensor.g_div_scalar_(bias_2_sqrt);
            let _ = g.tensor.g_add_scalar_(epsilon);
            let _ = g.tensor.g_mul_scalar_(-1.0 / step_size);
            let _ = param.tensor.addcdiv_(&m.tensor, &g.tensor);
        }
        drop(g);

        let state = AdamWState {
            momentum: AdaptiveMomentumState {
                time,
                moment_1: Tensor::from_primitive::<LibTorch>(m),
                moment_2: Tensor::from_primitive::<LibTorch>(v),
                max_moment_2: None,
            },
        };
        Ok((Tensor::from_primitive::<LibTorch>(param), Some(state)))
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    /// Four steps of the in-place update give burn's parameters and moments (to rounding),
    /// and a clone of the parameter taken before the step keeps its values.
    #[test]
    fn in_place_update_is_burns() {
        let device = crate::device::Backend::Tch
            .select("")
            .expect("built with tch")
            .device;
        device.seed(5);
        let optim = OptimConfig {
            weight_decay: 0.1,
            ..OptimConfig::default()
        };
        let ours = AdamW::new(&optim);
        let burns = ours.burn.clone();
        let start = Tensor::<2>::random([7, 9], Distribution::Normal(0.0, 1.0), &device);
        let kept = start.clone();
        let before = kept.to_data();
        let (mut a, mut b) = (start.clone(), start);
        let (mut sa, mut sb) = (None, None);
        // A warmup's zero learning rate among them.
        for (step, lr) in [1e-2, 0.0, 1e-2, 3e-3].into_iter().enumerate() {
            let grad = Tensor::<2>::random([7, 9], Distribution::Normal(0.0, 1.0), &device)
                .mul_scalar(step as f64 + 1.0);
            (a, sa) = ours.step(lr, a, grad.clone(), sa);
            (b, sb) = burns.step(lr, b, grad, sb);
        }
        let tolerance = Tolerance::absolute(1e-6);
        a.to_data().assert_approx_eq::<f32>(&b.to_data(), tolerance);
        let (sa, sb) = (sa.expect("state").momentum, sb.expect("state").momentum);
        assert_eq!(sa.time, sb.time);
        sa.moment_1
            .to_data()
            .assert_approx_eq::<f32>(&sb.moment_1.to_data(), tolerance);
        sa.moment_2
            .to_data()
            .assert_approx_eq::<f32>(&sb.moment_2.to_data(), tolerance);
        assert_eq!(
            kept.to_data(),
            before,
            "a shared parameter was written over"
        );
    }
}
