//! The built-in trial's evaluation of any Hugging Face checkpoint directory, as `sweep eval`
//! runs it: the harmful and benign prompts, keywords, judge and benchmarks of a grid's
//! `[trainer]` table, on a model that transformers, TRL, axolotl or sweep's own `save` wrote.
//! A trial of a trainer sweep does not know (a Python script, say) ends with it and reports
//! the same metrics, under the same names, as the built-in trainer's `steps = 0`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::answers::{record_answers, record_benchmarks, Point, RESPONSES};
use crate::builtin::BuiltinError;
use crate::config::{Save, TrainerConfig};
use crate::judge::Judge;
use crate::report::TrialReport;
use crate::setup::{evaluate, Setup};
use crate::sizes::{HfSource, ModelSource, HF_MAX_SEQ};
use crate::trial::{judge, TrialError};

/// What `sweep eval` evaluates, and where its answers go.
#[derive(Debug, Clone)]
pub struct EvalInputs {
    /// The checkpoint directory, or a PEFT adapter directory (its base is `base`, or the
    /// one its `adapter_config.json` names).
    pub model: PathBuf,
    /// The checkpoint an adapter directory adapts, when not the one it names.
    pub base: Option<PathBuf>,
    /// The `[trainer]` settings (paths resolved); its model, alignment and `save` are
    /// ignored: the directory is evaluated as it is.
    pub trainer: TrainerConfig,
    /// Where `responses.jsonl` and `benchmarks.jsonl` are written; none without it.
    pub out: Option<PathBuf>,
    /// `CUDA_VISIBLE_DEVICES`: the GPUs this process may use.
    pub cuda_visible: String,
}

/// Evaluates the checkpoint and returns its metrics (and writes every answer to `out`).
pub fn evaluate_checkpoint(
    inputs: EvalInputs,
    report: &mut dyn FnMut(TrialReport),
) -> Result<BTreeMap<String, f64>, BuiltinError> {
    let mut config = inputs.trainer;
    // A trial's `[trainer.model] max_seq` holds for the directory it saved; the default else.
    let max_seq = config.model.hf().map_or(HF_MAX_SEQ, |h| h.max_seq);
    // An adapter is evaluated on its base, merged: the base's tokenizer and template.
    let base = crate::hf::peft::adapter_base(&inputs.model, inputs.base.as_deref())?;
    config.model = ModelSource::Hf(HfSource {
        dir: base.clone().unwrap_or_else(|| inputs.model.clone()),
        max_seq,
    });
    config.align = None;
    config.save = Save::None;
    let selected = config.backend.select(&inputs.cuda_visible)?;
    report(TrialReport::Note(format!("device: {}", selected.name)));
    let judge_of = Judge::from_config(
        config.judge.as_ref(),
        config.judge_name.as_deref(),
        config.judge_timeout,
    );
    let setup = Setup::new(config)?;
    let model = match &base {
        None => {
            report(TrialReport::Note(format!(
                "loading {}",
                inputs.model.display()
            )));
            crate::hf::load(&inputs.model, Some(max_seq), &selected.device)?.model
        }
        Some(base) => {
            report(TrialReport::Note(format!(
                "loading {} with the adapter {}",
                base.display(),
                inputs.model.display()
            )));
            let model = crate::hf::load(base, Some(max_seq), &selected.device)?.model;
            let arch = model.arch().clone();
            let adapters = crate::hf::peft::load_adapter(&inputs.model, &arch, &selected.device)?;
            report(TrialReport::Note(adapters.spec().to_string()));
            model.with_adapters(adapters).merged()
        }
    };
    let evaluation = evaluate(&model, &setup, &selected.device);
    let judged = judge(judge_of.as_ref(), evaluation)?;
    if let Some(out) = &inputs.out {
        let point = Point::AS_LOADED;
        record_answers(out, point, &judged.evaluation.answers, &judged.verdicts)
            .map_err(TrialError::from)?;
        record_benchmarks(out, point, &judged.evaluation.benchmarks).map_err(TrialError::from)?;
        report(TrialReport::Note(format!(
            "answers in {}",
            out.join(RESPONSES).display()
        )));
    }
    Ok(judged.evaluation.metrics)
}
