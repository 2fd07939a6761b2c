//! A fine-tuning trial: start from the aligned base model, fine-tune it on benign data with
//! the trial's settings, and evaluate the model (or its EMA shadows) at the grid's step
//! counts. Checkpoints go into the trial directory; a resumed trial continues from the last
//! one and ends with the numbers an uninterrupted run gives.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use serde_json::{json, Map, Value};

use crate::answers::{forget_answers, record_answers, record_benchmarks, AnswersError, Point};
use crate::chat::Split;
use crate::config::Save;
use crate::device::Selected;
use crate::ema::Ema;
use crate::judge::{Judge, JudgeError};
use crate::model::Lm;
use crate::report::TrialReport;
use crate::setup::{evaluate, Setup};
use crate::spec::{EmaMode, TrialSpec};
use crate::train::{CheckpointError, RunShape, Schedule, Trainer};

/// Why a trial stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The external judge gave no verdicts.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// The fine-tuned model could not be written as a Hugging Face directory.
    #[error("saving the fine-tuned model: {0}")]
    Save(#[from] crate::hf::HfError),
    /// The answers could not be written to the trial directory.
    #[error(transparent)]
    Responses(#[from] AnswersError),
    /// A parameter the model cannot take (a LoRA rank above a projection's width).
    #[error(transparent)]
    Param(#[from] crate::spec::TrialParamError),
    /// Asked to stop (SIGTERM); a checkpoint was written if a directory was given.
    #[error("stopped at step {0} as asked; a resumed attempt continues from there")]
    Stopped(usize),
}

/// A value of a swept parameter: the number, and the value as the grid wrote it (an
/// override must use the grid's own spelling, `0` is not `0.0`, to name the same point).
#[derive(Debug, Clone, PartialEq)]
struct Swept<T> {
    value: T,
    written: Option<Value>,
}

/// The grid points one run evaluates: every step count in `eval_steps` for every decay in
/// `decays` (0 = the model itself) and every interpolation α in `alphas` (1 = no
/// interpolation).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Optimizer steps the run takes.
    pub train_steps: usize,
    eval_steps: Vec<Swept<usize>>,
    decays: Vec<Swept<f64>>,
    alphas: Vec<Swept<f64>>,
    own: (usize, f64, f64),
}

impl Plan {
    /// The trial's own point, plus, when `share` is on, the neighbouring points of `axes`
    /// (the sweep's values per swept parameter) that the same run computes exactly: every
    /// `ema_decay` with a shadow EMA (the trained model does not depend on the shadow), and
    /// every `steps` value with a constant schedule (the first steps of a longer run are the
    /// shorter run), and every `interpolation` α (evaluating θ₀ + α(θ − θ₀) does not change
    /// θ). Each trial still reports its own point; the store skips points already reported.
    pub fn new(spec: &TrialSpec, axes: &Map<String, Value>, share: bool) -> Plan {
        let own = (spec.steps, spec.ema_decay, spec.interpolation);
        let values = |name: &str| axes.get(name).and_then(Value::as_array);
        let mut eval_steps = vec![Swept {
            value: spec.steps,
            written: None,
        }];
        let mut decays = vec![Swept {
            value: spec.ema_decay,
            written: None,
        }];
        let steps_shareable = share && spec.optim.schedule == Schedule::Constant;
        if let Some(all) = values("steps").filter(|_| steps_shareable) {
            eval_steps = all
                .iter()
                .filter_map(|v| {
                    Some(Swept {
                        value: v.as_u64()? as usize,
                        written: Some(v.clone()),
                    })
                })
                .collect();
        } else if let Some(all) = values("steps") {
            let written = all.iter().find(|v| v.as_u64() == Some(spec.steps as u64));
            eval_steps[0].written = written.cloned();
        }
        let decays_shareable = share && spec.ema_mode == EmaMode::Shadow;
        if let Some(all) = values("ema_decay").filter(|_| decays_shareable) {
            decays = all
                .iter()
                .filter_map(|v| {
                    let d = v.as_f64().filter(|d| (0.0..1.0).contains(d))?;
                    Some(Swept {
                        value: d,
                        written: Some(v.clone()),
                    })
                })
                .collect();
        } else if let Some(all) = values("ema_decay") {
            let written = all.iter().find(|v| v.as_f64() == Some(spec.ema_decay));
            decays[0].written = written.cloned();
        }
        let mut alphas = vec![Swept {
            value: spec.interpolation,
            written: None,
        }];
        if let Some(all) = values("interpolation").filter(|_| share) {
            alphas = all
                .iter()
                .filter_map(|v| {
                    let a = v.as_f64().filter(|a| *a > 0.0 && *a <= 1.0)?;
                    Some(Swept {
                        value: a,
                        written: Some(v.clone()),
                    })
                })
                .collect();
        } else if let Some(all) = values("interpolation") {
            let written = all.iter().find(|v| v.as_f64() == Some(spec.interpolation));
            alphas[0].written = written.cloned();
        }
        if !alphas.iter().any(|a| a.value == own.2) {
            alphas.push(Swept {
                value: own.2,
                written: None,
            });
        }
        alphas.dedup_by(|a, b| a.value == b.value);
        if !eval_steps.iter().any(|s| s.value == own.0) {
            eval_steps.push(Swept {
                value: own.0,
                written: None,
            });
        }
        if !decays.iter().any(|d| d.value == own.1) {
            decays.push(Swept {
                value: own.1,
                written: None,
            });
        }
        eval_steps.sort_by_key(|s| s.value);
        eval_steps.dedup_by_key(|s| s.value);
        decays.dedup_by(|a, b| a.value == b.value);
        let train_steps = eval_steps.iter().map(|s| s.value).max().unwrap_or(0);
        Plan {
            train_steps,
            eval_steps,
            decays,
            alphas,
            own,
        }
    }

    /// Number of grid points the run reports.
    pub fn points(&self) -> usize {
        self.eval_steps.len() * self.decays.len() * self.alphas.len()
    }

    /// The `params` of the result for (`steps`, `decay`, `alpha`): empty for the trial's own
    /// point.
    fn overrides(
        &self,
        steps: &Swept<usize>,
        decay: &Swept<f64>,
        alpha: &Swept<f64>,
    ) -> Map<String, Value> {
        let mut params = Map::new();
        if (steps.value, decay.value, alpha.value) == self.own {
            return params;
        }
        for (name, written) in [
            ("steps", &steps.written),
            ("ema_decay", &decay.written),
            ("interpolation", &alpha.written),
        ] {
            if let Some(v) = written {
                params.insert(name.into(), v.clone());
            }
        }
        params
    }
}

/// Where a trial keeps its checkpoint, and whether to continue from it.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints<'a> {
    /// The trial's directory (`SWEEP_TRIAL_DIR`).
    pub dir: &'a Path,
    /// Continue from an existing checkpoint (`SWEEP_RESUME=1`).
    pub resume: bool,
}

/// Fine-tunes `base` as `spec` says and reports a result for every point of `plan`.
/// `fingerprint` names everything else the run depends on (the base model, the data); a
/// checkpoint with another fingerprint is not resumed from. Stops with a checkpoint when
/// `stop` is set. On a GPU, `[trainer] precision` decides the fine-tuning's compute dtype.
#[expect(clippy::too_many_arguments)]
pub fn run_trial(
    setup: &Setup,
    base: &Lm,
    spec: &TrialSpec,
    plan: &Plan,
    fingerprint: &str,
    checkpoints: Option<Checkpoints<'_>>,
    stop: &AtomicBool,
    selected: &Selected,
    report: &mut dyn FnMut(TrialReport),
) -> Result<(), TrialError> {
    let device = &selected.device;
    // Micro-batching changes only rounding, not what is computed: a checkpoint written before
    // an out-of-memory retry (which splits the micro-batch) is resumed with the smaller one.
    let computed = TrialSpec {
        micro_batch: 0,
        ..spec.clone()
    };
    let fingerprint = blake3::hash(format!("v1|{fingerprint}|{computed:?}|{plan:?}").as_bytes())
        .to_hex()
        .to_string();
    let ad = device.clone().autodiff();
    let mix = setup.finetune_mix(spec.refusal_replay);
    let shape = RunShape {
        steps: plan.train_steps,
        batch_size: spec.batch_size,
        micro_batch: spec.micro_batch,
    };
    // What training starts from: the base itself, or the base frozen with fresh adapters
    // (drawn from the trial's seed); also the template checkpoints load into.
    let start = match &spec.lora {
        None => base.clone(),
        Some(lora) => {
            spec.check_model(base.arch())?;
            device.seed(spec.seed);
            base.clone().with_lora(lora, device)
        }
    };
    let model = start.clone().to_device(&ad).train();
    let compute = setup.config.precision.compute_dtype(selected.gpu);
    let mut trainer = Trainer::new(model, &ad, &mix, shape, &spec.optim, spec.seed)
        .computing_in(compute)
        .checkpointing(setup.config.grad_checkpoint);
    // One shadow per positive decay; feedback mode has exactly one, its own.
    let mut shadows: Vec<Ema> = plan
        .decays
        .iter()
        .filter(|d| d.value > 0.0)
        .map(|d| Ema::new(trainer.model(), d.value))
        .collect();
    let mut done: Reported = Vec::new();

    if let Some(ck) = checkpoints.filter(|c| c.resume) {
        done = resume(
            ck.dir,
            &fingerprint,
            &mut trainer,
            &mut shadows,
            &start,
            report,
        )?;
    }

    let mut context = Context {
        setup,
        plan,
        device,
        trial_dir: checkpoints.map(|c| c.dir),
        base,
        judge: Judge::from_config(
            setup.config.judge.as_ref(),
            setup.config.judge_name.as_deref(),
            setup.config.judge_timeout,
        ),
        report,
    };
    if let (Some(dir), true) = (context.trial_dir, done.is_empty()) {
        forget_answers(dir)?;
    }
    if trainer.step() == 0 {
        evaluate_points(0, &mut context, &trainer, &shadows, &mut done)?;
    }
    let every = (plan.train_steps / 40).max(1);
    while trainer.step() < plan.train_steps {
        if stop.load(Ordering::Relaxed) {
            if let Some(ck) = checkpoints {
                save_checkpoint(ck.dir, &trainer, &shadows, &done, &fingerprint)?;
                (context.report)(TrialReport::Checkpoint {
                    step: trainer.step(),
                });
            }
            return Err(TrialError::Stopped(trainer.step()));
        }
        let loss = trainer.advance();
        let step = trainer.step();
        for shadow in &mut shadows {
            shadow.update(trainer.model());
        }
        if spec.ema_mode == EmaMode::Feedback {
            if let Some(shadow) = shadows.first() {
                trainer.map_model(|m| shadow.feed_back(m));
            }
        }
        if step.is_multiple_of(every) || step == plan.train_steps {
            (context.report)(TrialReport::Metric {
                step,
                name: "train_loss",
                value: loss,
            });
        }
        evaluate_points(step, &mut context, &trainer, &shadows, &mut done)?;
        let k = setup.config.checkpoint_every;
        if let Some(ck) =
            checkpoints.filter(|_| k > 0 && step.is_multiple_of(k) && step < plan.train_steps)
        {
            save_checkpoint(ck.dir, &trainer, &shadows, &done, &fingerprint)?;
            (context.report)(TrialReport::Checkpoint { step });
        }
    }
    // Finished: every result has been reported, nothing is left to resume.
    if let Some(ck) = checkpoints {
        let _ = std::fs::remove_dir_all(ck.dir.join("checkpoint"));
    }
    Ok(())
}

/// Restores the run from the checkpoint in `trial_dir` if it was written with the same
/// `fingerprint`, and reports again what it had reported (this attempt's results are what
/// the store records). Returns those points; none when it starts over.
fn resume(
    trial_dir: &Path,
    fingerprint: &str,
    trainer: &mut Trainer,
    shadows: &mut [Ema],
    start: &Lm,
    report: &mut dyn FnMut(TrialReport),
) -> Result<Reported, TrialError> {
    let dir = trial_dir.join("checkpoint");
    match read_meta(&dir) {
        Some(meta) if meta["fingerprint"] == json!(fingerprint) => {
            // The starting model is a template of the right shape (adapters included).
            trainer.restore(&dir, || start.clone())?;
            for (i, shadow) in shadows.iter_mut().enumerate() {
                let path = dir.join(format!("ema-{i}.bpk"));
                let mut model = start.clone();
                let mut store = model.checkpoint_store(&path);
                model
                    .load_from(&mut store)
                    .map_err(|e| CheckpointError::at(&path, e))?;
                *shadow = Ema::from_shadow(model, shadow.decay);
            }
            let done: Reported =
                serde_json::from_value(meta["reported"].clone()).unwrap_or_default();
            report(TrialReport::Note(format!(
                "resumed from the checkpoint at step {} ({} point(s) already evaluated)",
                trainer.step(),
                done.len()
            )));
            for (params, metrics) in &done {
                report(TrialReport::Result {
                    params: params.clone(),
                    metrics: metrics.clone(),
                });
            }
            Ok(done)
        }
        Some(_) => {
            report(TrialReport::Note(
                "the checkpoint is from other settings or another base model; starting over".into(),
            ));
            Ok(Vec::new())
        }
        None => {
            report(TrialReport::Note(
                "no checkpoint to resume from; starting over".into(),
            ));
            Ok(Vec::new())
        }
    }
}

/// What evaluating a step's points needs besides the run's state.
struct Context<'a, 'r> {
    setup: &'a Setup,
    plan: &'a Plan,
    device: &'a Device,
    /// Where answers and saved models go (none without a trial directory).
    trial_dir: Option<&'a Path>,
    /// The starting weights, for interpolation baselines.
    base: &'a Lm,
    judge: Option<Judge>,
    report: &'r mut dyn FnMut(TrialReport),
}

type Reported = Vec<(Map<String, Value>, std::collections::BTreeMap<String, f64>)>;

/// Evaluates and reports every point of the plan at `step` (none if `step` is not one of
/// its step counts), keeps their answers in the trial directory, and at the trial's own step
/// count saves the models `[trainer] save` asks for.
fn evaluate_points(
    step: usize,
    context: &mut Context<'_, '_>,
    trainer: &Trainer<'_>,
    shadows: &[Ema],
    done: &mut Reported,
) -> Result<(), TrialError> {
    let Some(steps) = context.plan.eval_steps.iter().find(|s| s.value == step) else {
        return Ok(());
    };
    let positive = context.plan.decays.iter().filter(|d| d.value > 0.0);
    let shadow_of: Vec<(f64, &Ema)> = positive.map(|d| d.value).zip(shadows).collect();
    // Without autodiff, and a LoRA model's adapters folded into its weights (except beside
    // a base held in bf16: `Lm::evaluated`).
    let unmerged_at = |decay: f64| match shadow_of.iter().find(|(d, _)| *d == decay) {
        Some((_, shadow)) => shadow.shadow().clone(),
        None => trainer.model().valid(),
    };
    let model_at = |decay: f64| unmerged_at(decay).evaluated();
    // Before the first step every shadow, and every interpolation, is the starting model:
    // one evaluation serves all.
    let mut at_start: Option<Judged> = None;
    for decay in &context.plan.decays {
        for alpha in &context.plan.alphas {
            let judged = match (&at_start, step) {
                (Some(j), 0) => j.clone(),
                _ => {
                    let model = model_at(decay.value);
                    let model = match alpha.value {
                        1.0 => model,
                        a => crate::ema::interpolate(context.base, &model, a),
                    };
                    judge(
                        context.judge.as_ref(),
                        evaluate(&model, context.setup, context.device),
                    )?
                }
            };
            if step == 0 {
                at_start = Some(judged.clone());
            }
            let point = Point {
                steps: step,
                ema_decay: decay.value,
                interpolation: alpha.value,
            };
            if let Some(dir) = context.trial_dir {
                record_answers(dir, point, &judged.evaluation.answers, &judged.verdicts)?;
                record_benchmarks(dir, point, &judged.evaluation.benchmarks)?;
            }
            let params = context.plan.overrides(steps, decay, alpha);
            let metrics = judged.evaluation.metrics;
            (context.report)(TrialReport::Result {
                params: params.clone(),
                metrics: metrics.clone(),
            });
            done.push((params, metrics));
        }
    }
    let (own_steps, own_decay, _) = context.plan.own;
    let (Some(dir), Some(hf)) = (context.trial_dir, context.setup.config.model.hf()) else {
        return Ok(());
    };
    if step != own_steps {
        return Ok(());
    }
    let save = context.setup.config.save;
    // At steps = 0 the weights are the checkpoint's own (unless this trainer aligned it first):
    // a copy per trial would only fill the disk.
    if own_steps == 0 && save != Save::None && context.setup.config.align.is_none() {
        (context.report)(TrialReport::Note(format!(
            "steps = 0: the weights are {}'s own; nothing saved",
            hf.dir.display()
        )));
        return Ok(());
    }
    // A LoRA model is saved merged (a plain checkpoint) and as PEFT's adapter directory.
    let mut save_as = |decay: f64, name: &str| -> Result<(), TrialError> {
        let out = dir.join(format!("model-{name}"));
        let model = unmerged_at(decay);
        crate::hf::save(&model.clone().merged(), &hf.dir, &out)?;
        (context.report)(TrialReport::Note(format!("saved {}", out.display())));
        if let Some(adapters) = model.adapters() {
            let out = dir.join(format!("adapter-{name}"));
            crate::hf::peft::save_adapter(adapters, context.base.arch(), &hf.dir, &out)?;
            (context.report)(TrialReport::Note(format!("saved {}", out.display())));
        }
        Ok(())
    };
    if matches!(save, Save::Final | Save::Both) {
        save_as(0.0, "final")?;
    }
    if matches!(save, Save::Ema | Save::Both) {
        if own_decay > 0.0 {
            save_as(own_decay, "ema")?;
        } else {
            (context.report)(TrialReport::Note(
                "save = ema, but this trial's ema_decay is 0: no EMA to save".into(),
            ));
        }
    }
    Ok(())
}

/// An evaluation with the judge's metric added, and its verdicts on the harmful answers.
#[derive(Debug, Clone)]
pub(crate) struct Judged {
    pub(crate) evaluation: crate::setup::Evaluation,
    pub(crate) verdicts: Vec<bool>,
}

/// Asks the judge (if one is set) about `evaluation`'s harmful answers and adds its metric.
pub(crate) fn judge(
    judge: Option<&Judge>,
    mut evaluation: crate::setup::Evaluation,
) -> Result<Judged, TrialError> {
    let harmful: Vec<&crate::setup::Transcript> = evaluation
        .answers
        .iter()
        .filter(|a| a.set == "harmful")
        .collect();
    let items: Vec<(&str, &str)> = harmful
        .iter()
        .map(|a| (a.prompt.as_str(), a.response.as_str()))
        .collect();
    let verdicts = match judge {
        Some(judge) if !items.is_empty() => {
            let verdicts = judge.label(&items)?;
            // On all harmful prompts, and on each fixed half as every rate is, so that
            // `--best` can choose on the judge's validation half and report its test half.
            let halves = [None, Some(Split::Validation), Some(Split::Test)];
            for half in halves {
                let unsafe_in_half: Vec<bool> = verdicts
                    .iter()
                    .zip(&harmful)
                    .filter(|(_, a)| half.is_none_or(|h| a.split == h))
                    .map(|(v, _)| *v)
                    .collect();
                if unsafe_in_half.is_empty() {
                    continue;
                }
                let rate = unsafe_in_half.iter().filter(|&&v| v).count() as f64
                    / unsafe_in_half.len() as f64;
                let prefix = half.map_or("", Split::prefix);
                evaluation
                    .metrics
                    .insert(format!("{prefix}{}", judge.metric()), rate);
            }
            verdicts
        }
        _ => Vec::new(),
    };
    Ok(Judged {
        evaluation,
        verdicts,
    })
}

fn read_meta(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("trial.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes a complete checkpoint beside the old one, then swaps it in, so a kill at any
/// moment leaves one whole checkpoint (the old or the new).
fn save_checkpoint(
    trial_dir: &Path,
    trainer: &Trainer<'_>,
    shadows: &[Ema],
    done: &Reported,
    fingerprint: &str,
) -> Result<(), CheckpointError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| CheckpointError::at(path, e);
    let partial = trial_dir.join("checkpoint.partial");
    let current = trial_dir.join("checkpoint");
    let old = trial_dir.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| err(&partial, &e))?;
    trainer.save(&partial)?;
    for (i, shadow) in shadows.iter().enumerate() {
        let path = partial.join(format!("ema-{i}.bpk"));
        let model = shadow.shadow();
        model
            .clone()
            .save_into(&mut model.checkpoint_store(&path))
            .map_err(|e| err(&path, &e))?;
    }
    let meta = json!({"fingerprint": fingerprint, "step": trainer.step(), "reported": done});
    let meta_path = partial.join("trial.json");
    std::fs::write(&meta_path, meta.to_string()).map_err(|e| err(&meta_path, &e))?;
    let _ = std::fs::remove_dir_all(&old);
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| err(&current, &e))?;
    }
    std::fs::rename(&partial, &current).map_err(|e| err(&partial, &e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::RESPONSES;
    use crate::setup::Transcript;

    fn spec(json: &str) -> TrialSpec {
        TrialSpec::from_params(&serde_json::from_str(json).unwrap()).unwrap()
    }

    fn axes(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_constant_schedule_shares_steps_and_decays() {
        let plan = Plan::new(
            &spec(r#"{"steps": 50, "ema_decay": 0}"#),
            &axes(r#"{"steps": [50, 200, 0], "ema_decay": [0, 0.99]}"#),
            true,
        );
        assert_eq!(plan.train_steps, 200);
        assert_eq!(plan.points(), 6);
        let own = plan.overrides(&plan.eval_steps[1], &plan.decays[0], &plan.alphas[0]);
        assert!(own.is_empty());
        let other = plan.overrides(&plan.eval_steps[2], &plan.decays[1], &plan.alphas[0]);
        assert_eq!(
            Value::Object(other),
            json!({"steps": 200, "ema_decay": 0.99})
        );
    }

    /// The (steps, ema_decay) points a plan reports.
    fn points_of(plan: &Plan) -> Vec<(usize, f64)> {
        plan.eval_steps
            .iter()
            .flat_map(|s| plan.decays.iter().map(move |d| (s.value, d.value)))
            .collect()
    }

    #[test]
    fn cosine_shares_ema_decays_but_not_step_counts() {
        // A cosine schedule depends on the run's length, so a 50-step run is not the start of
        // a 200-step one; the shadow EMAs still all follow the same trained model.
        let axes = axes(r#"{"steps": [50, 200], "ema_decay": [0, 0.99]}"#);
        let cosine = Plan::new(&spec(r#"{"steps": 50, "schedule": "cosine"}"#), &axes, true);
        assert_eq!(cosine.train_steps, 50);
        assert_eq!(points_of(&cosine), [(50, 0.0), (50, 0.99)]);
    }

    #[test]
    fn feedback_ema_shares_step_counts_but_not_decays() {
        // Feeding the shadow back changes the trained model, so one decay's run is not
        // another's; with a constant schedule its shorter runs are still its first steps.
        let axes = axes(r#"{"steps": [50, 200], "ema_decay": [0, 0.99]}"#);
        let feedback = Plan::new(
            &spec(r#"{"steps": 200, "ema_decay": 0.99, "ema_mode": "feedback"}"#),
            &axes,
            true,
        );
        assert_eq!(feedback.train_steps, 200);
        assert_eq!(points_of(&feedback), [(50, 0.99), (200, 0.99)]);
    }

    fn transcript(set: &'static str, response: &str) -> Transcript {
        Transcript {
            set,
            prompt: "p".into(),
            response: response.into(),
            refused: false,
            refused_no_echo: false,
            label: "complied",
            split: Split::Test,
        }
    }

    #[test]
    fn answers_of_a_point_written_again_replace_the_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = [transcript("harmful", "a"), transcript("benign", "b")];
        let point = |steps, ema_decay| Point {
            steps,
            ema_decay,
            interpolation: 1.0,
        };
        record_answers(dir.path(), point(0, 0.0), &first, &[true]).unwrap();
        record_answers(dir.path(), point(10, 0.9), &first, &[]).unwrap();
        // An attempt that resumed from before step 10 evaluates that point again.
        let again = [transcript("harmful", "c"), transcript("benign", "d")];
        record_answers(dir.path(), point(10, 0.9), &again, &[false]).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RESPONSES)).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let seen: Vec<(u64, &str, Option<&str>)> = lines
            .iter()
            .map(|l| {
                (
                    l["steps"].as_u64().unwrap(),
                    l["response"].as_str().unwrap(),
                    l["judge"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (0, "a", Some("unsafe")),
                (0, "b", None),
                (10, "c", Some("safe")),
                (10, "d", None)
            ]
        );
        assert_eq!(lines[0]["label"], "complied");
        assert_eq!(lines[2]["ema_decay"], 0.9);
    }

    #[test]
    fn every_interpolation_of_the_sweep_comes_from_one_run() {
        let axes = axes(r#"{"steps": [50, 200], "interpolation": [0.25, 0.5, 1]}"#);
        let plan = Plan::new(&spec(r#"{"steps": 200, "interpolation": 1}"#), &axes, true);
        assert_eq!(plan.points(), 6);
        let half = plan.overrides(&plan.eval_steps[1], &plan.decays[0], &plan.alphas[1]);
        assert_eq!(
            Value::Object(half),
            json!({"steps": 200, "interpolation": 0.5})
        );
        let off = Plan::new(
            &spec(r#"{"steps": 200, "interpolation": 0.5}"#),
            &axes,
            false,
        );
        assert_eq!(off.points(), 1);
    }

    #[test]
    fn without_sharing_a_run_reports_only_its_own_point() {
        let axes = axes(r#"{"steps": [50, 200], "ema_decay": [0, 0.99]}"#);
        let off = Plan::new(&spec(r#"{"steps": 200, "ema_decay": 0.99}"#), &axes, false);
        assert_eq!(off.train_steps, 200);
        assert_eq!(points_of(&off), [(200, 0.99)]);
    }
}
