//! LoRA: trainable low-rank adapters beside frozen projections, with PEFT's semantics, so a
//! grid can cross `method = "full" | "lora"` with everything else and a model too large to
//! fine-tune fully on one GPU can still be swept.
//!
//! A projection `W x` becomes `W x + (alpha / r) · B A dropout(x)` (rsLoRA: `alpha / √r`),
//! A Kaiming-uniform and B zero, so step 0 is the base model exactly. The frozen weights take
//! no gradient and no optimizer state. burn 0.22's own `apply_lora` composes a dense
//! `W + s·A·B` in every forward pass (and keeps it, and its dense gradient, for backward),
//! draws A from a normal law and has no dropout on the adapter's input; this is PEFT's
//! computation instead: `x → A → B`, never a weight-sized product.
//!
//! Adapters are kept by layer and projection ([`Adapters`]); the model adds them in its
//! forward pass ([`crate::model::Lm`]), folds them into its weights for evaluation and for a
//! Hugging Face directory (`Lm::merged`), and [`crate::hf::peft`] writes and reads them as
//! PEFT's adapter directory.

use std::collections::BTreeSet;
use std::fmt;

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

/// A projection an adapter can sit beside: a block's attention (`q`, `k`, `v`, `o`) or MLP
/// (`gate`, `up`, `down`) projections, as every supported architecture has them (Phi-3's
/// fused ones are split at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// `q_proj`.
    Q,
    /// `k_proj`.
    K,
    /// `v_proj`.
    V,
    /// `o_proj`.
    O,
    /// `gate_proj`.
    Gate,
    /// `up_proj`.
    Up,
    /// `down_proj`.
    Down,
}

impl Target {
    /// Every target, in a block's order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The short name a grid uses (`q`, `gate`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// The module's name in a Hugging Face checkpoint and in PEFT's `target_modules`.
    pub fn module(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// Its parent in a checkpoint's block: `self_attn` or `mlp`.
    pub fn parent(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        }
    }

    /// The target a grid's word (`q`, `q_proj`) or PEFT's module name names.
    pub fn from_word(word: &str) -> Option<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == word || t.module() == word)
    }
}

/// The projections a `lora_targets` value names: words `q`, `k`, `v`, `o`, `gate`, `up`,
/// `down` (or their `_proj` names) separated by commas or spaces, or `attention` (q, k, v, o),
/// `mlp` (gate, up, down) or `all`. A grid value is a string, so a set of targets is one axis
/// value: `lora_targets = ["q,v", "all"]`.
pub fn parse_targets(text: &str) -> Result<BTreeSet<Target>, String> {
    let mut targets = BTreeSet::new();
    for word in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word {
            "attention" => targets.extend(&Target::ALL[..4]),
            "mlp" => targets.extend(&Target::ALL[4..]),
            "all" => targets.extend(Target::ALL),
            w => match Target::from_word(w) {
                Some(t) => {
                    targets.insert(t);
                }
                None => {
                    return Err(format!(
                        "{w:?} is not a projection of these models; give any of q, k, v, o, \
                         gate, up, down (comma-separated), or attention, mlp or all"
                    ))
                }
            },
        }
    }
    if targets.is_empty() {
        return Err("names no projection; give e.g. \"q,v\", \"attention\" or \"all\"".into());
    }
    Ok(targets)
}

/// A LoRA trial's adapter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// r, the adapters' rank.
    pub rank: usize,
    /// α: the adapter's output is scaled by α / r (α / √r with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input while training (PEFT's `lora_dropout`).
    pub dropout: f64,
    /// The projections that get adapters, in every block.
    pub targets: BTreeSet<Target>,
    /// Scale by α / √r (rank-stabilised LoRA) instead of α / r.
    pub rslora: bool,
}

impl Default for LoraSpec {
    /// PEFT's defaults: r 8, α 8, no dropout, `q_proj` and `v_proj`, α / r.
    fn default() -> LoraSpec {
        LoraSpec {
            rank: 8,
            alpha: 8.0,
            dropout: 0.0,
            targets: BTreeSet::from([Target::Q, Target::V]),
            rslora: false,
        }
    }
}

impl LoraSpec {
    /// The factor on `B A x`.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Refuses a rank above a targeted projection's width (`dims(target)` is its
    /// `(d_in, d_out)`): its factors would hold more than the weight they adapt.
    pub fn check_rank(&self, dims: impl Fn(Target) -> (usize, usize)) -> Result<(), String> {
        for target in &self.targets {
            let (d_in, d_out) = dims(*target);
            if self.rank > d_in.min(d_out) {
                return Err(format!(
                    "{} is above the width of {} ({d_in} → {d_out}); give at most {}",
                    self.rank,
                    target.module(),
                    d_in.min(d_out)
                ));
            }
        }
        Ok(())
    }

    /// The targets as `lora_targets` writes them (`q,v`).
    pub fn targets_text(&self) -> String {
        let names: Vec<&str> = self.targets.iter().map(|t| t.name()).collect();
        names.join(",")
    }
}

impl fmt::Display for LoraSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LoRA r {} α {} on {}{}{}",
            self.rank,
            self.alpha,
            self.targets_text(),
            if self.dropout > 0.0 {
                format!(", dropout {}", self.dropout)
            } else {
                String::new()
            },
            if self.rslora { ", rsLoRA" } else { "" }
        )
    }
}

/// One adapter: `scale · B A dropout(x)`, held in burn's orientation (`x · a · b`).
#[derive(Module, Debug)]
pub struct Lora {
    /// A, `[d_in, rank]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<2>>,
    /// B, `[rank, d_out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<2>>,
    dropout: Dropout,
    #[module(skip)]
    scale: f64,
}

impl Lora {
    /// A fresh adapter for a `[d_in, d_out]` projection: A Kaiming-uniform as PyTorch's
    /// `kaiming_uniform_(a=√5)` draws it (bounds ±1/√d_in), B zero. Draws from `device`'s
    /// generator (seed it first).
    pub fn init(d_in: usize, d_out: usize, spec: &LoraSpec, device: &Device) -> Lora {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::random(
            [d_in, spec.rank],
            Distribution::Uniform(-bound, bound),
            device,
        );
        let b = Tensor::zeros([spec.rank, d_out], device);
        Lora::from_factors(a, b, spec)
    }

    /// An adapter with the given factors (`a` `[d_in, rank]`, `b` `[rank, d_out]`).
    pub fn from_factors(a: Tensor<2>, b: Tensor<2>, spec: &LoraSpec) -> Lora {
        Lora {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            dropout: DropoutConfig::new(spec.dropout).init(),
            scale: spec.scale(),
        }
    }

    /// The adapter's output for `x` `[batch, seq, d_in]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.dropout
            .forward(x)
            .matmul(self.a.val().unsqueeze())
            .matmul(self.b.val().unsqueeze())
            .mul_scalar(self.scale)
    }

    /// `scale · A B`, `[d_in, d_out]`: what merging adds to the projection's weight.
    pub fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

/// The adapters of one block, by projection.
#[derive(Module, Debug)]
pub struct LayerAdapters {
    /// Beside `q_proj`.
    pub q: Option<Lora>,
    /// Beside `k_proj`.
    pub k: Option<Lora>,
    /// Beside `v_proj`.
    pub v: Option<Lora>,
    /// Beside `o_proj`.
    pub o: Option<Lora>,
    /// Beside `gate_proj`.
    pub gate: Option<Lora>,
    /// Beside `up_proj`.
    pub up: Option<Lora>,
    /// Beside `down_proj`.
    pub down: Option<Lora>,
}

impl LayerAdapters {
    /// The adapter beside `target`, if it has one.
    pub fn get(&self, target: Target) -> Option<&Lora> {
        match target {
            Target::Q => self.q.as_ref(),
            Target::K => self.k.as_ref(),
            Target::V => self.v.as_ref(),
            Target::O => self.o.as_ref(),
            Target::Gate => self.gate.as_ref(),
            Target::Up => self.up.as_ref(),
            Target::Down => self.down.as_ref(),
        }
    }

    /// The slot of `target`'s adapter.
    pub fn slot(&mut self, target: Target) -> &mut Option<Lora> {
        match target {
            Target::Q => &mut self.q,
            Target::K => &mut self.k,
            Target::V => &mut self.v,
            Target::O => &mut self.o,
            Target::Gate => &mut self.gate,
            Target::Up => &mut self.up,
            Target::Down => &mut self.down,
        }
    }

    /// No adapter anywhere: the slots [`Adapters::init`] fills.
    pub fn empty() -> LayerAdapters {
        LayerAdapters {
            q: None,
            k: None,
            v: None,
            o: None,
            gate: None,
            up: None,
            down: None,
        }
    }
}

/// Every block's adapters, and the settings they were made with.
#[derive(Module, Debug)]
pub struct Adapters {
    /// One entry per block, in order.
    pub layers: Vec<LayerAdapters>,
    #[module(skip)]
    spec: LoraSpec,
}

impl Adapters {
    /// Fresh adapters for `n_layers` blocks; `dims(target)` is a projection's
    /// `(d_in, d_out)`. Drawn block by block, target by target, in [`Target::ALL`]'s order.
    pub fn init(
        spec: &LoraSpec,
        n_layers: usize,
        dims: impl Fn(Target) -> (usize, usize),
        device: &Device,
    ) -> Adapters {
        let layers = (0..n_layers)
            .map(|_| {
                let mut layer = LayerAdapters::empty();
                for target in &spec.targets {
                    let (d_in, d_out) = dims(*target);
                    *layer.slot(*target) = Some(Lora::init(d_in, d_out, spec, device));
                }
                layer
            })
            .collect();
        Adapters {
            layers,
            spec: spec.clone(),
        }
    }

    /// Adapters with given layers (read from a file).
    pub fn from_layers(spec: &LoraSpec, layers: Vec<LayerAdapters>) -> Adapters {
        Adapters {
            layers,
            spec: spec.clone(),
        }
    }

    /// The settings they were made with.
    pub fn spec(&self) -> &LoraSpec {
        &self.spec
    }

    /// Scales every adapter's output by `alpha` (the interpolation baseline between the
    /// base and the adapted model, without folding the adapters in).
    pub fn scale_by(&mut self, alpha: f64) {
        for layer in &mut self.layers {
            for target in Target::ALL {
                if let Some(adapter) = layer.slot(target) {
                    adapter.scale *= alpha;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_words_and_aliases() {
        let t = |text: &str| parse_targets(text).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(t("q,v").unwrap(), [Target::Q, Target::V]);
        assert_eq!(t("v q_proj").unwrap(), [Target::Q, Target::V]);
        assert_eq!(t("attention").unwrap(), Target::ALL[..4]);
        assert_eq!(
            t("mlp, q").unwrap(),
            [Target::Q, Target::Gate, Target::Up, Target::Down]
        );
        assert_eq!(t("all").unwrap(), Target::ALL);
        assert!(t("qkv")
            .unwrap_err()
            .contains("\"qkv\" is not a projection"));
        assert!(t("lm_head").is_err());
        assert!(t(" , ").unwrap_err().contains("names no projection"));
    }

    #[test]
    fn the_scale_is_alpha_over_r_or_over_its_root() {
        let spec = LoraSpec {
            rank: 16,
            alpha: 32.0,
            ..LoraSpec::default()
        };
        assert_eq!(spec.scale(), 2.0);
        assert_eq!(
            LoraSpec {
                rslora: true,
                ..spec
            }
            .scale(),
            8.0
        );
    }

    /// A fresh adapter adds nothing (B is zero), and a trained one adds exactly what its
    /// merged delta adds to the weight.
    #[test]
    fn an_adapter_adds_its_delta() {
        let device = crate::cpu_device();
        device.seed(1);
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            ..LoraSpec::default()
        };
        let x: Tensor<3> = Tensor::random([2, 3, 12], Distribution::Normal(0.0, 1.0), &device);
        let fresh = Lora::init(12, 10, &spec, &device);
        let zero = fresh.forward(x.clone()).abs().max().into_scalar::<f32>();
        assert_eq!(zero, 0.0);
        let bound = fresh.a.val().abs().max().into_scalar::<f32>();
        assert!(bound <= 1.0 / 12f32.sqrt() && bound > 0.0, "{bound}");

        let b: Tensor<2> = Tensor::random([4, 10], Distribution::Normal(0.0, 1.0), &device);
        let trained = Lora::from_factors(fresh.a.val(), b, &spec);
        let through = trained.forward(x.clone());
        let merged = x.matmul(trained.delta().unsqueeze());
        let diff = (through - merged).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "{diff}");
    }

    /// PEFT's placement of `lora_dropout`: it drops the adapter's *input* (`B A dropout(x)`),
    /// so every output unit sees the same inputs kept (a dropout on the output would zero
    /// some units and not others), scaled by 1 / (1 − p); and it drops nothing once the model
    /// is evaluated.
    #[test]
    fn dropout_drops_the_adapters_input_while_training_only() {
        let ad = crate::cpu_device().autodiff();
        ad.seed(2);
        let spec = LoraSpec {
            rank: 1,
            alpha: 1.0,
            dropout: 0.5,
            ..LoraSpec::default()
        };
        let (d_in, d_out) = (64, 6);
        // A sums the input, B copies the sum to every output unit: each unit reads
        // Σ kept inputs / (1 − p), here twice the number kept.
        let lora = Lora::from_factors(
            Tensor::ones([d_in, 1], &ad),
            Tensor::ones([1, d_out], &ad),
            &spec,
        )
        .train();
        let x = Tensor::<3>::ones([1, 1, d_in], &ad);
        let values = |t: Tensor<3>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let out = values(lora.forward(x.clone()));
        assert!(out.iter().all(|v| *v == out[0]), "{out:?}");
        let kept = out[0] / 2.0;
        assert!(
            kept.fract() == 0.0 && kept > 16.0 && kept < 48.0,
            "{kept} of {d_in} inputs kept"
        );
        let evaluated = values(lora.valid().forward(x.inner()));
        assert!(evaluated.iter().all(|v| *v == d_in as f32), "{evaluated:?}");
    }
}
