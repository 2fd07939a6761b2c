//! An exponential moving average of the parameters: θ̄ ← β·θ̄ + (1−β)·θ after each step,
//! started from the base weights. The shadow is what gets evaluated; in `feedback` mode it is
//! also copied back into the trained model after every step.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use crate::model::Lm;

/// The shadow copy and its decay.
#[derive(Debug)]
pub struct Ema {
    /// β.
    pub decay: f64,
    shadow: Option<Lm>,
}

/// A model's parameters by id; with `trainable_only`, only those that take gradients (a
/// LoRA model's adapters: its frozen weights never move, so their average is themselves).
struct Collect {
    values: HashMap<ParamId, Tensor<1>>,
    trainable_only: bool,
}

impl Collect {
    fn of(model: &Lm, trainable_only: bool) -> HashMap<ParamId, Tensor<1>> {
        let mut collect = Collect {
            values: HashMap::new(),
            trainable_only,
        };
        model.visit(&mut collect);
        collect.values
    }
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.trainable_only && !param.is_require_grad() {
            return;
        }
        self.values
            .insert(param.id, param.val().inner().flatten(0, D - 1));
    }
}

struct Blend<'a> {
    current: &'a HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, shadow, mapper) = param.consume();
        let Some(current) = self.current.get(&id) else {
            return Param::from_mapped_value(id, shadow, mapper);
        };
        let shape = shadow.shape();
        let blended = shadow.mul_scalar(self.decay)
            + current.clone().reshape(shape).mul_scalar(1.0 - self.decay);
        Param::from_mapped_value(id, blended, mapper)
    }
}

struct Replace<'a>(&'a HashMap<ParamId, Tensor<1>>);

impl ModuleMapper for Replace<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // A frozen weight stays as it is, and frozen.
        if !param.is_require_grad() {
            return param;
        }
        let (id, value, mapper) = param.consume();
        let value = match self.0.get(&id) {
            Some(v) => {
                let device = value.device();
                let shape = value.shape();
                let fresh = v.clone().reshape(shape);
                // Keep the trained model trainable: a fresh autodiff leaf that wants gradients.
                if device.is_autodiff() {
                    fresh.autodiff().require_grad()
                } else {
                    fresh
                }
            }
            None => value,
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

impl Ema {
    /// Starts the shadow at `model`'s current weights.
    pub fn new(model: &Lm, decay: f64) -> Ema {
        Ema {
            decay,
            shadow: Some(model.valid()),
        }
    }

    /// Continues from a saved shadow (a resumed run).
    pub fn from_shadow(shadow: Lm, decay: f64) -> Ema {
        Ema {
            decay,
            shadow: Some(shadow),
        }
    }

    /// θ̄, without autodiff.
    pub fn shadow(&self) -> &Lm {
        self.shadow
            .as_ref()
            .expect("the shadow is only taken inside update")
    }

    /// θ̄ ← β·θ̄ + (1−β)·θ.
    pub fn update(&mut self, model: &Lm) {
        let current = Collect::of(model, true);
        let shadow = self
            .shadow
            .take()
            .expect("the shadow is only taken inside update");
        self.shadow = Some(shadow.map(&mut Blend {
            current: &current,
            decay: self.decay,
        }));
    }

    /// Copies θ̄ into `model` (the `feedback` reading of EMA).
    pub fn feed_back(&self, model: Lm) -> Lm {
        model.map(&mut Replace(&Collect::of(self.shadow(), false)))
    }
}

/// Every float parameter of a model, in visiting order.
struct Ordered(Vec<Tensor<1>>);

impl ModuleVisitor for Ordered {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().inner().flatten(0, D - 1));
    }
}

/// Maps each parameter to `start + alpha (param - start)`, taking `start` in visiting order.
struct Towards {
    start: std::vec::IntoIter<Tensor<1>>,
    alpha: f64,
}

impl ModuleMapper for Towards {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let start = self
            .start
            .next()
            .expect("both models have the same parameters")
            .reshape(value.shape());
        let blended = start.clone() + (value - start).mul_scalar(self.alpha);
        Param::from_mapped_value(id, blended, mapper)
    }
}

/// θ₀ + α(θ − θ₀): the interpolation baseline between the starting weights `start` and
/// `model` (same architecture), without autodiff. Parameters are matched by position, so it
/// holds whatever their ids. A `model` whose adapters sit beside `start`, its frozen base
/// (not merged: [`Lm::evaluated`]), is `W + α · scale · A B`: its adapters' output scaled.
pub fn interpolate(start: &Lm, model: &Lm, alpha: f64) -> Lm {
    if model.adapters().is_some() && start.adapters().is_none() {
        return model.valid().with_adapters_scaled(alpha);
    }
    let mut ordered = Ordered(Vec::new());
    start.visit(&mut ordered);
    model.valid().map(&mut Towards {
        start: ordered.0.into_iter(),
        alpha,
    })
}
