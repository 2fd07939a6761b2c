//! The parameters of a built-in trial, read from the trial's `SWEEP_PARAMS`.

use serde_json::{Map, Value};

use crate::lora::{parse_targets, LoraSpec};
use crate::train::{OptimConfig, Schedule};

/// How the EMA shadow is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmaMode {
    /// θ̄ is a shadow copy, evaluated in place of θ.
    Shadow,
    /// θ̄ is copied back into θ after every step.
    Feedback,
}

/// A fine-tuning trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSpec {
    /// Optimizer settings.
    pub optim: OptimConfig,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward/backward pass.
    pub micro_batch: usize,
    /// Optimizer steps; 0 evaluates the base model unchanged.
    pub steps: usize,
    /// EMA decay β; 0 disables it.
    pub ema_decay: f64,
    /// How the EMA is used.
    pub ema_mode: EmaMode,
    /// α of the interpolation baseline: the model evaluated is θ₀ + α(θ − θ₀), between the
    /// starting weights θ₀ and the fine-tuned (or EMA) weights θ; 1 is θ itself. Separates
    /// what an EMA does from simply staying near the base model.
    pub interpolation: f64,
    /// Seeds the order and content of the fine-tuning batches.
    pub seed: u64,
    /// The share of each fine-tuning batch drawn from the alignment's refusal examples
    /// (harmful training prompts answered with refusals, disjoint from the evaluated ones):
    /// the refusal-replay control, which tells erosion caused by the benign data apart from
    /// drift that any further training causes. 0 (the default) is the plain benign mix.
    pub refusal_replay: f64,
    /// Which base model the run starts from, overriding `[trainer] base_seed` (the built-in
    /// miniature only): zipped with `seed`, replicates then span base models too, so their
    /// intervals include base-to-base variance and not only the fine-tuning's.
    pub base_seed: Option<u64>,
    /// `method = "lora"`: adapters beside frozen weights, with these settings; `None` is
    /// full fine-tuning (`method = "full"`, the default).
    pub lora: Option<LoraSpec>,
}

impl Default for TrialSpec {
    /// The built-in trial's defaults, written once: [`TrialSpec::from_params`] starts from
    /// them and [`KNOWN`]'s help text is checked against them.
    fn default() -> TrialSpec {
        TrialSpec {
            optim: OptimConfig::default(),
            batch_size: 16,
            micro_batch: 16,
            steps: 200,
            ema_decay: 0.0,
            ema_mode: EmaMode::Shadow,
            interpolation: 1.0,
            seed: 0,
            refusal_replay: 0.0,
            base_seed: None,
            lora: None,
        }
    }
}

/// Parameters the built-in trial understands, with their defaults.
pub const KNOWN: [(&str, &str); 22] = [
    ("learning_rate", "1e-3"),
    ("batch_size", "16"),
    ("micro_batch", "batch_size"),
    ("steps", "200"),
    ("ema_decay", "0 (off)"),
    ("ema_mode", "\"shadow\" or \"feedback\""),
    ("interpolation", "1 (the fine-tuned model itself)"),
    ("seed", "0"),
    ("base_seed", "[trainer] base_seed"),
    ("refusal_replay", "0 (no refusal examples)"),
    ("weight_decay", "0"),
    ("warmup", "0"),
    ("schedule", "\"constant\" or \"cosine\""),
    ("grad_clip", "1.0 (0 = off)"),
    ("beta1", "0.9"),
    ("beta2", "0.95"),
    ("method", "\"full\" or \"lora\""),
    (
        "lora_rank",
        "8 (with method = \"lora\"; 0 on a full point: none)",
    ),
    (
        "lora_alpha",
        "8 (the adapter's output is scaled by lora_alpha / lora_rank)",
    ),
    ("lora_dropout", "0"),
    (
        "lora_targets",
        "\"q,v\" (any of q, k, v, o, gate, up, down, or attention, mlp, all)",
    ),
    (
        "lora_rslora",
        "false (true scales by lora_alpha / √lora_rank)",
    ),
];

/// A parameter the built-in trial cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("built-in trainer parameter `{name}`: {message}")]
pub struct TrialParamError {
    /// Parameter name.
    pub name: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Checks that every name is a parameter of the built-in trial.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), TrialParamError> {
    for name in names {
        if !KNOWN.iter().any(|(k, _)| *k == name) {
            let known: Vec<&str> = KNOWN.iter().map(|(k, _)| *k).collect();
            return Err(TrialParamError {
                name: name.to_string(),
                message: format!(
                    "unknown; the built-in trainer takes {} (or give [sweep] a `command`)",
                    known.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// `base_seed` names one of the miniature's base models to train; a checkpoint or a base
/// model file has only itself.
pub fn base_seed_needs_a_trained_base() -> TrialParamError {
    TrialParamError {
        name: "base_seed".into(),
        message: "picks which base model to train (the built-in miniature's, or a \
                  checkpoint's [trainer.align]); a checkpoint without [trainer.align] or a \
                  base model file ([trainer] base_model) is fine-tuned as loaded, so drop \
                  the parameter"
            .into(),
    }
}

impl TrialSpec {
    /// Reads the parameters (unknown names and bad values are errors).
    pub fn from_params(params: &Map<String, Value>) -> Result<TrialSpec, TrialParamError> {
        check_names(params.keys().map(String::as_str))?;
        let p = Reader(params);
        let d = TrialSpec::default();
        let lr = p.num("learning_rate", d.optim.lr)?;
        if lr <= 0.0 {
            return Err(bad("learning_rate", format!("must be positive, got {lr}")));
        }
        let batch_size = p.count("batch_size", d.batch_size)?;
        if batch_size == 0 {
            return Err(bad("batch_size", "must be at least 1".into()));
        }
        let micro_batch = p.count("micro_batch", batch_size)?;
        if micro_batch == 0 || micro_batch > batch_size {
            return Err(bad(
                "micro_batch",
                format!("must be from 1 to batch_size ({batch_size}), got {micro_batch}"),
            ));
        }
        let share = |name: &str, default: f64, what: &str| -> Result<f64, TrialParamError> {
            let x = p.num(name, default)?;
            if (0.0..1.0).contains(&x) {
                Ok(x)
            } else {
                Err(bad(name, format!("must be {what}, got {x}")))
            }
        };
        let interpolation = p.num("interpolation", d.interpolation)?;
        if !(interpolation > 0.0 && interpolation <= 1.0) {
            return Err(bad(
                "interpolation",
                format!("must be in (0, 1] (1 is the fine-tuned model), got {interpolation}"),
            ));
        }
        let ema_mode = match p.choice("ema_mode", &["shadow", "feedback"])? {
            None => d.ema_mode,
            Some("shadow") => EmaMode::Shadow,
            Some(_) => EmaMode::Feedback,
        };
        let schedule = match p.choice("schedule", &["constant", "cosine"])? {
            None => d.optim.schedule,
            Some("constant") => Schedule::Constant,
            Some(_) => Schedule::Cosine { min_ratio: 0.1 },
        };
        let weight_decay = p.num("weight_decay", f64::from(d.optim.weight_decay))?;
        if weight_decay < 0.0 {
            return Err(bad(
                "weight_decay",
                format!("must be ≥ 0, got {weight_decay}"),
            ));
        }
        let grad_clip = p.num("grad_clip", d.optim.grad_clip.map_or(0.0, f64::from))?;
        Ok(TrialSpec {
            optim: OptimConfig {
                lr,
                weight_decay: weight_decay as f32,
                beta1: share("beta1", f64::from(d.optim.beta1), "in [0, 1)")? as f32,
                beta2: share("beta2", f64::from(d.optim.beta2), "in [0, 1)")? as f32,
                grad_clip: (grad_clip > 0.0).then_some(grad_clip as f32),
                warmup: p.count("warmup", d.optim.warmup)?,
                schedule,
                ..d.optim
            },
            batch_size,
            micro_batch,
            steps: p.count("steps", d.steps)?,
            ema_decay: share("ema_decay", d.ema_decay, "in [0, 1)")?,
            interpolation,
            ema_mode,
            seed: p.whole("seed")?.unwrap_or(d.seed),
            refusal_replay: share(
                "refusal_replay",
                d.refusal_replay,
                "a share in [0, 1) of each batch",
            )?,
            base_seed: p.whole("base_seed")?,
            lora: lora(&p)?,
        })
    }
}

impl TrialSpec {
    /// Refuses what the model's shapes rule out: a LoRA rank above a targeted projection's
    /// width. Checked by `sweep run` for every grid point and by the trial itself.
    pub fn check_model(&self, arch: &crate::model::Arch) -> Result<(), TrialParamError> {
        let Some(lora) = &self.lora else {
            return Ok(());
        };
        lora.check_rank(|t| arch.projection_dims(t))
            .map_err(|message| bad("lora_rank", message))
    }
}

/// The LoRA parameters: checked for `method = "lora"`; on a full point each must be absent
/// or say "none" (rank 0), since it would change nothing there and a grid that crosses them
/// with `method` would run the same full fine-tuning once per LoRA value.
fn lora(p: &Reader<'_>) -> Result<Option<LoraSpec>, TrialParamError> {
    let d = LoraSpec::default();
    let lora = match p.choice("method", &["full", "lora"])? {
        None | Some("full") => false,
        Some(_) => true,
    };
    let targets = match p.0.get("lora_targets") {
        None => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(other) => {
            return Err(bad(
                "lora_targets",
                format!("must be a string such as \"q,v\" or \"all\", got {other}"),
            ))
        }
    };
    let rslora = match p.0.get("lora_rslora") {
        None => d.rslora,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(bad(
                "lora_rslora",
                format!("must be true or false, got {other}"),
            ))
        }
    };
    if !lora {
        let none = |name: &str, is_none: bool| -> Result<(), TrialParamError> {
            if is_none {
                return Ok(());
            }
            Err(bad(
                name,
                format!(
                    "{} means nothing with method = \"full\" (this point fine-tunes every \
                     weight); to cross full fine-tuning with LoRA settings, zip them: \
                     [[zip]] method = [\"full\", \"lora\"], lora_rank = [0, 8] (0: none)",
                    p.0[name]
                ),
            ))
        };
        none("lora_rank", p.whole("lora_rank")?.is_none_or(|r| r == 0))?;
        none(
            "lora_alpha",
            p.0.get("lora_alpha")
                .is_none_or(|v| v.as_f64() == Some(0.0)),
        )?;
        none(
            "lora_dropout",
            p.0.get("lora_dropout")
                .is_none_or(|v| v.as_f64() == Some(0.0)),
        )?;
        none(
            "lora_targets",
            targets.is_none_or(|t| matches!(t.trim(), "" | "none")),
        )?;
        none("lora_rslora", !rslora)?;
        return Ok(None);
    }
    let rank = p.count("lora_rank", d.rank)?;
    if rank == 0 {
        return Err(bad(
            "lora_rank",
            "must be at least 1 with method = \"lora\" (0 means no adapter: method = \"full\")"
                .into(),
        ));
    }
    let alpha = p.num("lora_alpha", d.alpha)?;
    if alpha <= 0.0 {
        return Err(bad("lora_alpha", format!("must be positive, got {alpha}")));
    }
    let dropout = p.num("lora_dropout", d.dropout)?;
    if !(0.0..1.0).contains(&dropout) {
        return Err(bad(
            "lora_dropout",
            format!("must be in [0, 1), got {dropout}"),
        ));
    }
    let targets = match targets {
        None => d.targets,
        Some(text) => parse_targets(text).map_err(|e| bad("lora_targets", e))?,
    };
    Ok(Some(LoraSpec {
        rank,
        alpha,
        dropout,
        targets,
        rslora,
    }))
}

/// A parameter `name` with a bad value.
fn bad(name: &str, message: String) -> TrialParamError {
    TrialParamError {
        name: name.into(),
        message,
    }
}

/// Reads a trial's parameters by kind, naming the parameter in every error.
struct Reader<'a>(&'a Map<String, Value>);

impl Reader<'_> {
    /// A finite number, or `default` when absent.
    fn num(&self, name: &str, default: f64) -> Result<f64, TrialParamError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(name, format!("must be a number, got {v}"))),
        }
    }

    /// A whole number ≥ 0, if given.
    fn whole(&self, name: &str) -> Result<Option<u64>, TrialParamError> {
        self.0
            .get(name)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| bad(name, format!("must be a whole number ≥ 0, got {v}")))
            })
            .transpose()
    }

    /// A whole number ≥ 0, or `default` when absent.
    fn count(&self, name: &str, default: usize) -> Result<usize, TrialParamError> {
        Ok(self.whole(name)?.map_or(default, |n| n as usize))
    }

    /// One of `allowed` words, if given.
    fn choice<'w>(
        &self,
        name: &str,
        allowed: &[&'w str],
    ) -> Result<Option<&'w str>, TrialParamError> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        let quoted: Vec<String> = allowed.iter().map(|w| format!("{w:?}")).collect();
        let wanted = quoted.join(" or ");
        match v {
            Value::String(s) => match allowed.iter().find(|w| **w == s.as_str()) {
                Some(w) => Ok(Some(*w)),
                None => Err(bad(name, format!("must be {wanted}, got {s:?}"))),
            },
            other => Err(bad(name, format!("must be a string, got {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KNOWN`'s help text states the defaults `from_params` uses: the first number of each
    /// entry (or its first quoted word) is the default's value.
    #[test]
    fn the_help_text_states_the_defaults() {
        let d = TrialSpec::from_params(&Map::new()).unwrap();
        assert_eq!(d, TrialSpec::default());
        let lora = LoraSpec::default();
        let numbers = [
            ("learning_rate", d.optim.lr),
            ("batch_size", d.batch_size as f64),
            ("steps", d.steps as f64),
            ("ema_decay", d.ema_decay),
            ("interpolation", d.interpolation),
            ("seed", d.seed as f64),
            ("refusal_replay", d.refusal_replay),
            ("weight_decay", f64::from(d.optim.weight_decay)),
            ("warmup", d.optim.warmup as f64),
            ("grad_clip", d.optim.grad_clip.map_or(0.0, f64::from)),
            ("beta1", f64::from(d.optim.beta1)),
            ("beta2", f64::from(d.optim.beta2)),
            ("lora_rank", lora.rank as f64),
            ("lora_alpha", lora.alpha),
            ("lora_dropout", lora.dropout),
        ];
        let help = |name: &str| KNOWN.iter().find(|(k, _)| *k == name).unwrap().1;
        for (name, value) in numbers {
            let stated: f64 = help(name)
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (stated - value).abs() < 1e-6,
                "{name}: help says {stated}, default is {value}"
            );
        }
        let first_word = |name: &str| help(name).split('"').nth(1).unwrap().to_string();
        assert_eq!(first_word("method"), "full");
        assert_eq!(d.lora, None);
        assert_eq!(first_word("lora_targets"), lora.targets_text());
        assert!(help("lora_rslora").starts_with(&lora.rslora.to_string()));
        assert_eq!(first_word("ema_mode"), "shadow");
        assert_eq!(d.ema_mode, EmaMode::Shadow);
        assert_eq!(first_word("schedule"), "constant");
        assert_eq!(d.optim.schedule, Schedule::Constant);
        assert_eq!(help("micro_batch"), "batch_size");
        assert_eq!(d.micro_batch, d.batch_size);
        // Every parameter with a default in the help is one `from_params` reads.
        assert_eq!(
            KNOWN.len(),
            numbers.len() + 4 + 3,
            "ema_mode, schedule, micro_batch, base_seed, method, lora_targets, lora_rslora"
        );
    }

    fn params(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_overrides() {
        let s = TrialSpec::from_params(&params(
            r#"{"learning_rate": 3e-4, "ema_decay": 0.99, "seed": 2}"#,
        ))
        .unwrap();
        assert_eq!(
            (s.batch_size, s.micro_batch, s.steps, s.seed),
            (16, 16, 200, 2)
        );
        assert_eq!(s.optim.lr, 3e-4);
        assert_eq!(s.ema_mode, EmaMode::Shadow);
        assert_eq!((s.refusal_replay, s.base_seed), (0.0, None));
        let s =
            TrialSpec::from_params(&params(r#"{"refusal_replay": 0.1, "base_seed": 3}"#)).unwrap();
        assert_eq!((s.refusal_replay, s.base_seed), (0.1, Some(3)));
    }

    #[test]
    fn lora_settings_are_read_and_none_values_pass_on_full_points() {
        let s = TrialSpec::from_params(&params(
            r#"{"method": "lora", "lora_rank": 64, "lora_alpha": 16, "lora_targets": "all",
                "lora_dropout": 0.05, "lora_rslora": true}"#,
        ))
        .unwrap();
        let lora = s.lora.unwrap();
        assert_eq!((lora.rank, lora.alpha, lora.dropout), (64, 16.0, 0.05));
        assert_eq!(lora.targets_text(), "q,k,v,o,gate,up,down");
        assert!(lora.rslora);
        let d = TrialSpec::from_params(&params(r#"{"method": "lora"}"#)).unwrap();
        assert_eq!(d.lora, Some(LoraSpec::default()));
        // The zip's row of a full point: each LoRA key at its "none".
        let full = TrialSpec::from_params(&params(
            r#"{"method": "full", "lora_rank": 0, "lora_alpha": 0, "lora_targets": "none",
                "lora_dropout": 0, "lora_rslora": false}"#,
        ))
        .unwrap();
        assert_eq!(full.lora, None);
    }

    #[test]
    fn bad_values_are_named() {
        for (json, needle) in [
            (
                r#"{"learning_rate": -1e-3}"#,
                "learning_rate`: must be positive",
            ),
            (r#"{"lerning_rate": 1e-3}"#, "`lerning_rate`: unknown"),
            (
                r#"{"batch_size": 8, "micro_batch": 16}"#,
                "micro_batch`: must be from 1 to batch_size (8)",
            ),
            (r#"{"ema_decay": 1.0}"#, "ema_decay`: must be in [0, 1)"),
            (
                r#"{"interpolation": 0}"#,
                "interpolation`: must be in (0, 1]",
            ),
            (
                r#"{"ema_mode": "both"}"#,
                "ema_mode`: must be \"shadow\" or \"feedback\"",
            ),
            (r#"{"steps": -3}"#, "steps`: must be a whole number"),
            (
                r#"{"refusal_replay": 1}"#,
                "refusal_replay`: must be a share in [0, 1)",
            ),
            (
                r#"{"base_seed": 1.5}"#,
                "base_seed`: must be a whole number",
            ),
            (
                r#"{"method": "qlora"}"#,
                "method`: must be \"full\" or \"lora\"",
            ),
            (
                r#"{"lora_rank": 8}"#,
                "lora_rank`: 8 means nothing with method = \"full\"",
            ),
            (
                r#"{"method": "full", "lora_targets": "all"}"#,
                "lora_targets`: \"all\" means nothing",
            ),
            (
                r#"{"method": "lora", "lora_rank": 0}"#,
                "lora_rank`: must be at least 1",
            ),
            (
                r#"{"method": "lora", "lora_targets": "qkv"}"#,
                "lora_targets`: \"qkv\" is not a projection",
            ),
            (
                r#"{"method": "lora", "lora_dropout": 1}"#,
                "lora_dropout`: must be in [0, 1)",
            ),
            (
                r#"{"method": "lora", "lora_alpha": -2}"#,
                "lora_alpha`: must be positive",
            ),
            (
                r#"{"method": "lora", "lora_rslora": 1}"#,
                "lora_rslora`: must be true or false",
            ),
        ] {
            let e = TrialSpec::from_params(&params(json))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
