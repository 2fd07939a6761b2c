//! What a training run of the base or an alignment says as it goes.

use burn::prelude::*;

use crate::model::Lm;
use crate::report::TrialReport;
use crate::setup::{evaluate, Setup};

/// What a training run of `sweep base` says as it goes: its loss every `loss_every` steps
/// (and at its end), and its scores every `eval_every` steps when asked
/// (`sweep base --eval-every`), to see where the bars are reached.
pub struct Progress {
    /// The loss metric's name.
    pub loss_name: &'static str,
    /// Steps between loss reports.
    pub loss_every: usize,
    /// The run's steps.
    pub steps: usize,
    /// Steps between evaluations, if any.
    pub eval_every: Option<usize>,
}

impl Progress {
    /// Reports what step `step` (ending with `loss`, giving `model`) has to say.
    pub fn report(
        &self,
        step: usize,
        loss: f64,
        model: &Lm,
        setup: &Setup,
        device: &Device,
        report: &mut dyn FnMut(TrialReport),
    ) {
        if step.is_multiple_of(self.loss_every) || step == self.steps {
            report(TrialReport::Metric {
                step,
                name: self.loss_name,
                value: loss,
            });
        }
        if self.eval_every.is_some_and(|n| step.is_multiple_of(n)) {
            for (name, value) in evaluate(&model.valid(), setup, device).metrics {
                report(TrialReport::Note(format!("step {step}: {name} {value:.4}")));
            }
        }
    }
}
