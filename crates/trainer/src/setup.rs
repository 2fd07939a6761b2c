//! What every built-in trial works from: the `[trainer]` settings, the data (generated, or
//! read from the files the settings name) tokenised into training pools, and the evaluation
//! sets; and [`evaluate`], which scores a model on them.

use std::collections::BTreeMap;

use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{loss, make_batch};
use crate::config::{ConfigError, TrainerConfig};
use crate::data::{generate as generate_data, DataConfig, Example};
use crate::eval::{exact_match, over_refusal, safety, Keywords};
use crate::generate::generate;
use crate::model::Lm;
use crate::tokenizer::{encode_example, Encoded};
use crate::train::Mix;

/// Examples scored for `eval_loss` on fine-tuning data from a file, at most.
const MAX_LOSS_EXAMPLES: usize = 256;

/// The tokenised data and evaluation sets of a trial.
pub struct Setup {
    /// The `[trainer]` settings.
    pub config: TrainerConfig,
    keywords: Keywords,
    harmful: Vec<Encoded>,
    howto: Vec<Encoded>,
    facts: Vec<Encoded>,
    shout: Vec<Encoded>,
    /// Fine-tuning pools with their weights.
    finetune: Vec<(Vec<Encoded>, f64)>,
    eval_harmful: Vec<String>,
    eval_benign: Vec<String>,
    validation_harmful: Vec<String>,
    validation_benign: Vec<String>,
    /// Held-out task prompts and answers, scored by exact match (`utility`); empty when the
    /// fine-tuning data comes from a file.
    eval_task: Vec<Example>,
    /// Held-out fine-tuning examples for `eval_loss`.
    eval_loss: Vec<Encoded>,
    /// A hash of the generated data, for the base model's cache key.
    data_fingerprint: String,
}

impl Setup {
    /// Generates the built-in data and reads the files `config` names.
    pub fn new(config: TrainerConfig) -> Result<Setup, ConfigError> {
        // The generated data holds evaluation sets of these sizes; a config picks a prefix.
        let built_in = DataConfig::default();
        for (key, n, max) in [
            ("eval_harmful", config.eval_harmful, built_in.eval_harmful),
            ("eval_benign", config.eval_benign, built_in.eval_benign),
            ("eval_task", config.eval_task, built_in.eval_task),
        ] {
            if n > max && !(key == "eval_harmful" && config.harmful_prompts.is_some()) {
                return Err(ConfigError::Value {
                    key,
                    message: format!("the built-in data holds at most {max}, got {n}"),
                });
            }
        }
        let files = config.read_files()?;
        let data = generate_data(&built_in);
        let data_fingerprint = blake3::hash(format!("{data:?}").as_bytes())
            .to_hex()
            .to_string();
        let max_seq = config.model.max_seq;
        let enc = |v: &[Example]| -> Vec<Encoded> {
            v.iter()
                .map(|e| encode_example(&e.prompt, &e.response, max_seq))
                .collect()
        };
        let howto = enc(&data.howto);
        let facts = enc(&data.facts);
        let (finetune, eval_task, eval_loss) = match &files.finetune {
            None => {
                let eval_task: Vec<Example> = data.eval_task[..config.eval_task].to_vec();
                let eval_loss = enc(&eval_task);
                let finetune = vec![
                    (enc(&data.task), 0.5),
                    (howto.clone(), 0.35),
                    (facts.clone(), 0.15),
                ];
                (finetune, eval_task, eval_loss)
            }
            Some(examples) => {
                let mut examples = examples.clone();
                examples.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
                let held = (examples.len() / 10).clamp(1, MAX_LOSS_EXAMPLES);
                let (held_out, train) = examples.split_at(held);
                (vec![(enc(train), 1.0)], Vec::new(), enc(held_out))
            }
        };
        let eval_harmful = match files.harmful_prompts {
            Some(prompts) => prompts.into_iter().take(config.eval_harmful).collect(),
            None => data.eval_harmful[..config.eval_harmful].to_vec(),
        };
        let eval_benign = data.eval_benign[..config.eval_benign].to_vec();
        let (validation_harmful, validation_benign) = (
            data.validation_harmful.clone(),
            data.validation_benign.clone(),
        );
        Ok(Setup {
            harmful: enc(&data.harmful),
            shout: enc(&data.shout),
            howto,
            facts,
            finetune,
            eval_harmful,
            eval_benign,
            validation_harmful,
            validation_benign,
            eval_task,
            eval_loss,
            keywords: files.keywords,
            data_fingerprint,
            config,
        })
    }

    /// A hash of the generated data (the base model's training and validation sets), made
    /// once when the data is.
    pub fn data_fingerprint(&self) -> &str {
        &self.data_fingerprint
    }

    /// The refusal keywords safety is scored with.
    pub fn keywords(&self) -> &Keywords {
        &self.keywords
    }

    /// The alignment mix: refusals for harmful requests, help for benign ones, and the skill
    /// next to the fine-tuning task.
    pub fn alignment_mix(&self) -> Mix<'_> {
        Mix::new(vec![
            (&self.harmful, 0.35),
            (&self.howto, 0.40),
            (&self.facts, 0.15),
            (&self.shout, 0.10),
        ])
    }

    /// The benign fine-tuning mix: no refusal data at all.
    pub fn finetune_mix(&self) -> Mix<'_> {
        Mix::new(
            self.finetune
                .iter()
                .map(|(p, w)| (p.as_slice(), *w))
                .collect(),
        )
    }
}

/// Safety and utility of `model` (without autodiff): `unsafe_rate`, `degenerate_rate`,
/// `complies_rate`, `over_refusal_rate`, `utility` (built-in task only) and `eval_loss`.
pub fn evaluate(model: &Lm, setup: &Setup, device: &Device) -> BTreeMap<String, f64> {
    let max_seq = setup.config.model.max_seq;
    let max_new = setup.config.max_new_tokens;
    let harmful = generate(model, &setup.eval_harmful, max_new, max_seq, device);
    let benign = generate(model, &setup.eval_benign, max_new, max_seq, device);
    let mut metrics = BTreeMap::new();
    if let Some(s) = safety(&harmful, &setup.keywords) {
        metrics.insert("unsafe_rate".into(), s.unsafe_rate);
        metrics.insert("degenerate_rate".into(), s.degenerate_rate);
        metrics.insert("complies_rate".into(), s.complies_rate);
    }
    if let Some(r) = over_refusal(&benign, &setup.keywords) {
        metrics.insert("over_refusal_rate".into(), r);
    }
    if !setup.eval_task.is_empty() {
        let prompts: Vec<String> = setup.eval_task.iter().map(|e| e.prompt.clone()).collect();
        let longest = setup.eval_task.iter().map(|e| e.response.len()).max();
        let task = generate(model, &prompts, longest.unwrap_or(0) + 2, max_seq, device);
        let expected: Vec<String> = setup.eval_task.iter().map(|e| e.response.clone()).collect();
        if let Some(u) = exact_match(&task, &expected) {
            metrics.insert("utility".into(), u);
        }
    }
    if let Some(l) = mean_loss(model, &setup.eval_loss, device) {
        metrics.insert("eval_loss".into(), l);
    }
    metrics
}

/// How far `model` is from the refusal bars on the validation prompts (never the evaluation
/// ones): its unsafe rate plus its over-refusal rate. Lower is better.
pub fn validation_error(model: &Lm, setup: &Setup, device: &Device) -> (f64, f64) {
    let max_seq = setup.config.model.max_seq;
    let max_new = setup.config.max_new_tokens;
    let harmful = generate(model, &setup.validation_harmful, max_new, max_seq, device);
    let benign = generate(model, &setup.validation_benign, max_new, max_seq, device);
    let unsafe_rate = safety(&harmful, &setup.keywords).map_or(1.0, |s| s.unsafe_rate);
    let over = over_refusal(&benign, &setup.keywords).unwrap_or(1.0);
    (unsafe_rate, over)
}

/// One evaluation prompt and what the model answered, for reading by eye.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// `harmful`, `benign`, `task` (the fine-tuning task) or `skill` (the same items asked
    /// as the base model learned them).
    pub set: &'static str,
    /// The prompt.
    pub prompt: String,
    /// The greedy response.
    pub response: String,
    /// Whether the response contains a refusal keyword.
    pub refused: bool,
}

/// The model's answers to the harmful and benign evaluation prompts.
pub fn transcripts(model: &Lm, setup: &Setup, device: &Device) -> Vec<Transcript> {
    let max_seq = setup.config.model.max_seq;
    let max_new = setup.config.max_new_tokens;
    let task: Vec<String> = setup.eval_task.iter().map(|e| e.prompt.clone()).collect();
    let shout: Vec<String> = task
        .iter()
        .map(|p| p.replacen("Uppercase:", "Shout:", 1))
        .collect();
    [
        ("harmful", &setup.eval_harmful),
        ("benign", &setup.eval_benign),
        ("task", &task),
        ("skill", &shout),
    ]
    .into_iter()
    .flat_map(|(set, prompts)| {
        generate(model, prompts, max_new, max_seq, device)
            .into_iter()
            .zip(prompts.iter())
            .map(move |(r, prompt)| Transcript {
                set,
                prompt: prompt.clone(),
                refused: setup.keywords.refuses(&r.text),
                response: r.text,
            })
    })
    .collect()
}

/// Mean per-token loss over `examples`, in batches.
fn mean_loss(model: &Lm, examples: &[Encoded], device: &Device) -> Option<f64> {
    let (mut total, mut count) = (0.0, 0.0);
    for chunk in examples.chunks(32) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let (mean, n) = loss(model, &make_batch(&refs, device));
        let n = n.into_scalar::<f32>() as f64;
        total += mean.into_scalar::<f32>() as f64 * n;
        count += n;
    }
    (count > 0.0).then(|| total / count)
}
