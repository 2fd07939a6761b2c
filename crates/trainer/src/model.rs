//! A Llama-family decoder: RMSNorm, rotary positions, causal grouped-query attention, SwiGLU
//! MLP, a tied or untied output head. Two sources fill it: the built-in miniature
//! ([`ModelConfig`], trained from scratch here) and Hugging Face checkpoints
//! ([`crate::hf`]). Its fields carry Hugging Face's names (`embed_tokens`,
//! `layers.N.self_attn.q_proj`, …), so a checkpoint's safetensors load by name and save back
//! under the names transformers expects.
//!
//! burn 0.22 notes that shaped this file: the backend is chosen by the `Device` at run time;
//! `tril_mask` is true *above* the diagonal (the positions to hide); burn's RoPE rotates
//! interleaved pairs while Hugging Face's rotates halves, so both are written out here.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::{Bool, DType, Int, TensorData};

use crate::lora::{Adapters, LayerAdapters, Lora, LoraSpec, Target};
use crate::tokenizer::VOCAB_SIZE;

/// Sizes of the built-in miniature. The defaults (the `small` preset, about 0.4 M parameters)
/// train in minutes on two CPU cores; [`crate::sizes::Preset`] names bigger ones for GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ModelConfig {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`; head size must be even for RoPE).
    pub n_heads: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// Longest sequence (prompt and response) the model sees.
    pub max_seq: usize,
}

impl ModelConfig {
    /// Trainable parameters: the byte embedding, per block four attention projections, the
    /// SwiGLU MLP (gate, up, down) and two norms, then the final norm and the output head.
    pub fn num_params(&self) -> usize {
        self.arch().num_params()
    }

    /// The miniature as an architecture: byte vocabulary, one key/value head per query head,
    /// interleaved RoPE, untied head, no biases.
    pub fn arch(&self) -> Arch {
        Arch {
            vocab: VOCAB_SIZE,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_heads,
            head_dim: self.d_model / self.n_heads,
            d_ff: self.d_ff,
            rms_eps: 1e-5,
            rope: Rope {
                theta: 10_000.0,
                style: RopeStyle::Interleaved,
                scaling: RopeScaling::None,
            },
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            tied: false,
            fused: false,
            max_seq: self.max_seq,
        }
    }

    /// Builds a randomly initialised model on `device` (seed the device first).
    pub fn init(&self, device: &Device) -> Lm {
        self.arch().init(device)
    }
}

/// The shape of a decoder, everything [`Lm`] needs besides its weights: what a Hugging Face
/// `config.json` says, or what the miniature's sizes imply.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    /// Token ids are below this.
    pub vocab: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`; divides it).
    pub n_kv_heads: usize,
    /// Width of one head (even, for RoPE).
    pub head_dim: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// RMSNorm's epsilon.
    pub rms_eps: f64,
    /// Rotary positions.
    pub rope: Rope,
    /// Biases on the query, key and value projections (Qwen2, Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Biases in the MLP (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// The output head is the token embedding (no `lm_head` weights of its own).
    pub tied: bool,
    /// The checkpoint stores q, k and v as one `qkv_proj` and gate and up as one
    /// `gate_up_proj` (Phi-3): split at load, fused again at save; the model is the same.
    pub fused: bool,
    /// Longest sequence the model is run on.
    pub max_seq: usize,
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// The base of the frequencies (`rope_theta`).
    pub theta: f64,
    /// Which dimensions are rotated together.
    pub style: RopeStyle,
    /// Frequency scaling for long contexts.
    pub scaling: RopeScaling,
}

/// Which dimensions of a head RoPE rotates together. Checkpoints trained one way give
/// nonsense the other way, so this is part of the architecture, not a detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(0, 1), (2, 3), …` (the RoFormer paper, burn's `RotaryEncoding`, the miniature).
    Interleaved,
    /// Dimension `i` with `i + head_dim / 2` (Hugging Face's `rotate_half`).
    Halves,
}

/// How RoPE frequencies are rescaled (`rope_scaling` in `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Unscaled.
    None,
    /// Every frequency divided by `factor` (`rope_type = "linear"`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's piecewise scaling (`rope_type = "llama3"`).
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max / high_freq_factor` are not scaled.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original_max: f64,
    },
}

impl Rope {
    /// The angular frequency of each of a head's `head_dim / 2` rotated pairs, computed in
    /// f32 step by step as transformers does, so positions agree with it to the last bit
    /// that matters.
    pub fn frequencies(&self, head_dim: usize) -> Vec<f32> {
        let base = self.theta as f32;
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        match self.scaling {
            RopeScaling::None => inv,
            RopeScaling::Linear { factor } => inv.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                let (factor, low, high, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    original_max as f32,
                );
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                inv.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

impl Arch {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        let (d, ff, hd) = (self.d_model, self.d_ff, self.head_dim);
        let (q, kv) = (self.n_heads * hd, self.n_kv_heads * hd);
        let bias = |on: bool, n: usize| if on { n } else { 0 };
        let attention =
            d * q + 2 * d * kv + q * d + bias(self.qkv_bias, q + 2 * kv) + bias(self.o_bias, d);
        let mlp = 3 * d * ff + bias(self.mlp_bias, 2 * ff + d);
        let head = if self.tied { 0 } else { self.vocab * d };
        self.vocab * d + self.n_layers * (attention + mlp + 2 * d) + d + head
    }

    /// Builds a randomly initialised model on `device` (seed the device first).
    pub fn init(&self, device: &Device) -> Lm {
        let linear =
            |i: usize, o: usize, bias: bool| LinearConfig::new(i, o).with_bias(bias).init(device);
        let norm = || {
            RmsNormConfig::new(self.d_model)
                .with_epsilon(self.rms_eps)
                .init(device)
        };
        let (d, q, kv) = (
            self.d_model,
            self.n_heads * self.head_dim,
            self.n_kv_heads * self.head_dim,
        );
        Lm {
            embed_tokens: EmbeddingConfig::new(self.vocab, d).init(device),
            layers: (0..self.n_layers)
                .map(|_| Layer {
                    input_layernorm: norm(),
                    self_attn: Attention {
                        q_proj: linear(d, q, self.qkv_bias),
                        k_proj: linear(d, kv, self.qkv_bias),
                        v_proj: linear(d, kv, self.qkv_bias),
                        o_proj: linear(q, d, self.o_bias),
                    },
                    post_attention_layernorm: norm(),
                    mlp: Mlp {
                        gate_proj: linear(d, self.d_ff, self.mlp_bias),
                        up_proj: linear(d, self.d_ff, self.mlp_bias),
                        down_proj: linear(self.d_ff, d, self.mlp_bias),
                    },
                })
                .collect(),
            norm: norm(),
            lm_head: (!self.tied).then(|| linear(d, self.vocab, false)),
            lora: None,
            arch: self.clone(),
        }
    }

    /// `(d_in, d_out)` of a block's projection `target`.
    pub fn projection_dims(&self, target: Target) -> (usize, usize) {
        let (d, q, kv) = (
            self.d_model,
            self.n_heads * self.head_dim,
            self.n_kv_heads * self.head_dim,
        );
        match target {
            Target::Q => (d, q),
            Target::K | Target::V => (d, kv),
            Target::O => (q, d),
            Target::Gate | Target::Up => (d, self.d_ff),
            Target::Down => (self.d_ff, d),
        }
    }
}

/// Attention projections of one block.
#[derive(Module, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
}

/// The SwiGLU MLP of one block: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Attention {
    /// The projection `target` (`q`, `k`, `v` or `o`) of this block.
    fn projection_mut(&mut self, target: Target) -> &mut Linear {
        match target {
            Target::Q => &mut self.q_proj,
            Target::K => &mut self.k_proj,
            Target::V => &mut self.v_proj,
            _ => &mut self.o_proj,
        }
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>, adapters: Option<&LayerAdapters>) -> Tensor<3> {
        let at = |t| adapters.and_then(|a| a.get(t));
        let gate = silu(project(&self.gate_proj, at(Target::Gate), x.clone()));
        let up = project(&self.up_proj, at(Target::Up), x);
        project(&self.down_proj, at(Target::Down), gate * up)
    }

    /// The projection `target` (`gate`, `up` or `down`) of this block.
    fn projection_mut(&mut self, target: Target) -> &mut Linear {
        match target {
            Target::Gate => &mut self.gate_proj,
            Target::Up => &mut self.up_proj,
            _ => &mut self.down_proj,
        }
    }
}

/// `linear(x)`, plus its adapter's output where it has one.
fn project(linear: &Linear, adapter: Option<&Lora>, x: Tensor<3>) -> Tensor<3> {
    match adapter {
        None => apply(linear, x),
        Some(adapter) => apply(linear, x.clone()) + adapter.forward(x),
    }
}

/// `linear(x)` computed in `x`'s dtype: a weight held narrower (a frozen base in bf16 under
/// fp32 evaluation) is widened for the product, which is exact; the same `Linear::forward`
/// otherwise (a cast to the same dtype is no operation).
fn apply<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    burn::tensor::module::linear(
        x,
        linear.weight.val().cast(dtype),
        linear.bias.as_ref().map(|b| b.val().cast(dtype)),
    )
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Layer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// The language model.
#[derive(Module, Debug)]
pub struct Lm {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    lm_head: Option<Linear>,
    /// LoRA adapters beside the blocks' projections (a LoRA trial's model; the rest is then
    /// frozen). Absent from files written without them, which load as before.
    lora: Option<Adapters>,
    #[module(skip)]
    arch: Arch,
}

/// Keys and values of earlier positions, one pair per block, for incremental decoding.
#[derive(Debug, Default)]
pub struct KvCache {
    /// Per block, `[batch, kv_heads, len, head_dim]` (before grouped-query repetition).
    layers: Vec<(Tensor<4>, Tensor<4>)>,
    len: usize,
    /// `[batch, len]`, true at left-padding positions no query may attend to.
    padding: Option<Tensor<2, Bool>>,
}

impl KvCache {
    /// A cache for a batch of left-padded prompts: `padding` `[batch, seq]` is true at the
    /// padding positions of the first call. Rotary positions are relative, so a left-padded
    /// row scores as it would alone.
    pub fn with_padding(padding: Tensor<2, Bool>) -> KvCache {
        KvCache {
            padding: Some(padding),
            ..KvCache::default()
        }
    }

    /// The cache of the given batch rows, in that order (a row may repeat): a context computed
    /// once, continued by several rows (the choices of a multiple-choice question).
    pub fn select_rows(&self, rows: &[usize], device: &Device) -> KvCache {
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
            device,
        );
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone().select(0, index.clone()),
                        v.clone().select(0, index.clone()),
                    )
                })
                .collect(),
            len: self.len,
            padding: self
                .padding
                .as_ref()
                .map(|p| p.clone().int().select(0, index.clone()).equal_elem(1)),
        }
    }
}

/// Below every real attention score: a masked score's bias, so a row's maximum is over the
/// keys its query may see.
const MASKED: f32 = -1e9;

/// One forward pass's attention mask, in the two forms its softmax uses: an additive bias
/// (0, or [`MASKED`] where a query must not see a key) and its complement as factors (1, or
/// 0). Both `[batch or 1, 1, queries, keys]`, broadcast over the heads.
struct AttentionMask {
    bias: Tensor<4>,
    keep: Tensor<4>,
}

impl AttentionMask {
    /// The mask true where a query must not see a key, in the model's compute dtype.
    fn new(masked: Tensor<4, Bool>, dtype: DType) -> Self {
        let keep = masked.clone().bool_not().float().cast(dtype);
        let bias = Tensor::<4>::zeros(masked.dims(), &masked.device())
            .mask_fill(masked, MASKED)
            .cast(dtype);
        Self { bias, keep }
    }

    /// The softmax of `scores` over the keys, masked keys given weight exactly 0, as adding
    /// the bias and taking `softmax` gives them.
    ///
    /// Why not that: `exp` of a score 10^9 below its row's maximum underflows, and libtorch's
    /// `exp` (MKL's, on x86) takes a slow path for every such element: 24× the time of an
    /// ordinary one (776 against 32 µs for a 16 × 4 × 64 × 64 tensor with its upper triangle
    /// masked, 2 threads), and burn's autodiff takes it twice, forward and again in the
    /// backward. Here the shifted scores are multiplied by the factors before `exp` and its
    /// results after, so nothing underflows on the masked half (factors, not `mask_fill`:
    /// libtorch's `masked_fill` is a scalar loop, 9× a multiplication's time). Each row's
    /// maximum is over the keys it may see, so for every row with one the result is bit for
    /// bit the bias's. A row with none (a padding query: its keys are all padding) gets
    /// all-zero weights instead of uniform ones; nothing reads it (its keys are masked for
    /// every real query), and it stays finite: the 10^-18 added to each row's sum changes no
    /// sum of at least 1 (every seeing row has its maximum's `exp(0)`) and keeps `0 / 0` out
    /// of the weights and of their gradient, whose denominator is the sum squared (10^-36,
    /// still a normal f32, where `MIN_POSITIVE` squared would be 0).
    fn softmax(&self, scores: Tensor<4>) -> Tensor<4> {
        let max = (scores.clone().detach() + self.bias.clone()).max_dim(3);
        let exp = ((scores - max) * self.keep.clone()).exp() * self.keep.clone();
        let sum = exp.clone().sum_dim(3).add_scalar(1e-18);
        exp / sum
    }
}

/// The cosines and sines of one forward pass's positions, laid out for its RoPE style.
struct RopeTable {
    style: RopeStyle,
    /// `[1, 1, seq, head_dim]`.
    cos: Tensor<4>,
    /// Likewise.
    sin: Tensor<4>,
}

impl RopeTable {
    /// The angles of positions `start..start + seq`, in `dtype`. Computed on the host in f32
    /// (a few thousand values), as transformers computes them.
    fn new(arch: &Arch, start: usize, seq: usize, dtype: DType, device: &Device) -> RopeTable {
        let dim = arch.head_dim;
        let freqs = arch.rope.frequencies(dim);
        let pair = |j: usize| match arch.rope.style {
            RopeStyle::Interleaved => j / 2,
            RopeStyle::Halves => j % (dim / 2),
        };
        let (mut cos, mut sin) = (Vec::with_capacity(seq * dim), Vec::with_capacity(seq * dim));
        for pos in start..start + seq {
            for j in 0..dim {
                let angle = pos as f32 * freqs[pair(j)];
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |values: Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(values, [1, 1, seq, dim]), device).cast(dtype)
        };
        RopeTable {
            style: arch.rope.style,
            cos: table(cos),
            sin: table(sin),
        }
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]`: each rotated pair `(a, b)` becomes
    /// `(a cos - b sin, b cos + a sin)`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, heads, seq, dim] = x.dims();
        let turned = match self.style {
            RopeStyle::Interleaved => {
                let pairs: Tensor<5> = x.clone().reshape([batch, heads, seq, dim / 2, 2]);
                let (a, b) = (pairs.clone().narrow(4, 0, 1), pairs.narrow(4, 1, 1));
                Tensor::cat(vec![b.neg(), a], 4).reshape([batch, heads, seq, dim])
            }
            RopeStyle::Halves => {
                let (a, b) = (
                    x.clone().narrow(3, 0, dim / 2),
                    x.clone().narrow(3, dim / 2, dim / 2),
                );
                Tensor::cat(vec![b.neg(), a], 3)
            }
        };
        x * self.cos.clone() + turned * self.sin.clone()
    }
}

impl Lm {
    /// The architecture the model was built for.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The dtype the model computes in: its norms' weights'. A LoRA model's frozen matrices
    /// may be held narrower ([`crate::precision::narrow_matrices`]) and are widened where
    /// they are used.
    pub fn compute_dtype(&self) -> DType {
        self.norm.gamma.val().dtype()
    }

    /// Whether any matrix is held in a narrower dtype than the model computes in.
    pub(crate) fn has_narrow_matrices(&self) -> bool {
        self.embed_tokens.weight.val().dtype() != self.compute_dtype()
    }

    /// The model with fresh adapters beside the projections `spec` targets and every other
    /// weight frozen (no gradient, so no optimizer state): a LoRA trial's starting point,
    /// whose output equals this model's. Draws from `device`'s generator.
    pub fn with_lora(self, spec: &LoraSpec, device: &Device) -> Lm {
        let mut model = self.no_grad();
        let arch = model.arch.clone();
        model.lora = Some(Adapters::init(
            spec,
            arch.n_layers,
            |t| arch.projection_dims(t),
            device,
        ));
        model
    }

    /// The model with `adapters` beside its projections, every other weight frozen.
    pub fn with_adapters(self, adapters: Adapters) -> Lm {
        let mut model = self.no_grad();
        model.lora = Some(adapters);
        model
    }

    /// Its adapters, if it is a LoRA model.
    pub fn adapters(&self) -> Option<&Adapters> {
        self.lora.as_ref()
    }

    /// The file a trial checkpoint of this model is written to and read back from. A LoRA
    /// model's holds its adapters only: the frozen base is the trial's starting model, which
    /// the checkpoint's fingerprint pins, so writing it again at every checkpoint (the whole
    /// 7 B base for an adapter of a few megabytes) would only cost time and disk.
    pub fn checkpoint_store(&self, path: &std::path::Path) -> burn::store::BurnpackStore {
        let store = burn::store::BurnpackStore::from_file(path);
        match self.lora {
            Some(_) => store.with_regex(r"^lora\.").allow_partial(true),
            None => store,
        }
    }

    /// The adapters folded into the weights they sit beside (`W + scale · A B`), leaving a
    /// plain model: what is evaluated (no adapter products in generation) and saved as a
    /// Hugging Face directory. A model without adapters is returned as it is.
    pub fn merged(mut self) -> Lm {
        let Some(adapters) = self.lora.take() else {
            return self;
        };
        // Merged weights are held in the dtype the model computes in: a base held in bf16
        // beside fp32 adapters is widened rather than the update rounded to bf16.
        let dtype = self.compute_dtype();
        for (layer, adapted) in self.layers.iter_mut().zip(&adapters.layers) {
            for target in Target::ALL {
                let Some(adapter) = adapted.get(target) else {
                    continue;
                };
                let linear = match target.parent() {
                    "self_attn" => layer.self_attn.projection_mut(target),
                    _ => layer.mlp.projection_mut(target),
                };
                let delta = adapter.delta().cast(dtype);
                // A clone of a parameter is a handle to the same tensor, not a copy.
                linear.weight = linear.weight.clone().map(|w| w.cast(dtype) + delta);
            }
        }
        self
    }

    /// The model as it is evaluated (generation, scoring): [`Lm::merged`], except beside a
    /// base held narrower than the model computes in, where merging would hold every
    /// adapted weight again at full width for the evaluation (on a 7 B model, 2 bytes a
    /// parameter more than the training itself held): there the adapters stay beside it,
    /// computing the same function.
    pub fn evaluated(self) -> Lm {
        match self.has_narrow_matrices() {
            true => self,
            false => self.merged(),
        }
    }

    /// The model with its adapters' outputs scaled by `alpha`: `W + alpha · scale · A B`,
    /// the interpolation baseline's `θ₀ + α(θ − θ₀)` for a LoRA model whose base is `θ₀`.
    pub fn with_adapters_scaled(mut self, alpha: f64) -> Lm {
        if let Some(adapters) = self.lora.as_mut() {
            adapters.scale_by(alpha);
        }
        self
    }

    /// Logits `[batch, seq, vocab]` for every position of `tokens` `[batch, seq]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_from(tokens, &mut None)
    }

    /// Logits for `tokens` that continue what `cache` holds, extending the cache.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let mut slot = Some(std::mem::take(cache));
        let logits = self.forward_from(tokens, &mut slot);
        *cache = slot.unwrap_or_default();
        logits
    }

    /// The last block's output, normed: what the output head reads at each position. The
    /// training loss takes it at the predicted positions only ([`Lm::head`]).
    pub fn hidden(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.hidden_from(tokens, &mut None)
    }

    /// The output head: hidden states (any leading shape) to logits over the vocabulary.
    pub fn head<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.lm_head {
            Some(head) => apply(head, x),
            // Tied: the embedding matrix `[vocab, d_model]` read as the output projection.
            None => {
                let dtype = x.dtype();
                x.matmul(
                    self.embed_tokens
                        .weight
                        .val()
                        .cast(dtype)
                        .transpose()
                        .unsqueeze(),
                )
            }
        }
    }

    fn forward_from(&self, tokens: Tensor<2, Int>, cache: &mut Option<KvCache>) -> Tensor<3> {
        self.head(self.hidden_from(tokens, cache))
    }

    fn hidden_from(&self, tokens: Tensor<2, Int>, cache: &mut Option<KvCache>) -> Tensor<3> {
        let arch = &self.arch;
        let [batch, seq] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let device = tokens.device();
        // True at every (query, key) a query must not see: the future, and left padding.
        let keys = start + seq;
        let mut hidden: Tensor<4, Bool> =
            Tensor::<2, Bool>::tril_mask([seq, keys], start as i64, &device).unsqueeze();
        if let Some(padding) = cache.as_mut().and_then(|c| c.padding.as_mut()) {
            let known = padding.dims()[1];
            if known < keys {
                let real =
                    TensorData::new(vec![false; batch * (keys - known)], [batch, keys - known]);
                *padding = Tensor::cat(vec![padding.clone(), Tensor::from_data(real, &device)], 1);
            }
            let shape = [batch, 1, seq, keys];
            hidden = hidden
                .expand(shape)
                .bool_or(padding.clone().reshape([batch, 1, 1, keys]).expand(shape));
        }
        // Everything computed here follows the norms' dtype (bf16 in mixed precision); an
        // embedding held narrower is widened row by row, exactly.
        let dtype = self.compute_dtype();
        let mut x = self.embed_tokens.forward(tokens).cast(dtype);
        let mask = AttentionMask::new(hidden, dtype);
        let (head_dim, groups) = (arch.head_dim, arch.n_heads / arch.n_kv_heads);
        let heads = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, head_dim]).swap_dims(1, 2);
        // Each key/value head serves `groups` consecutive query heads (transformers'
        // `repeat_kv`); the cache keeps them unrepeated.
        let repeat = |t: Tensor<4>| {
            if groups == 1 {
                return t;
            }
            let [b, kv, len, hd] = t.dims();
            t.unsqueeze_dim::<5>(2)
                .expand([b, kv, groups, len, hd])
                .reshape([b, kv * groups, len, hd])
        };
        let rope = RopeTable::new(arch, start, seq, dtype, &device);
        let scale = (head_dim as f64).powf(-0.5);
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = &layer.self_attn;
            let adapters = self.lora.as_ref().map(|l| &l.layers[i]);
            let at = |t| adapters.and_then(|a| a.get(t));
            let h = layer.input_layernorm.forward(x.clone());
            let q = project(&attn.q_proj, at(Target::Q), h.clone());
            let q = rope.apply(heads(q, arch.n_heads));
            let k = project(&attn.k_proj, at(Target::K), h.clone());
            let mut k = rope.apply(heads(k, arch.n_kv_heads));
            let mut v = heads(project(&attn.v_proj, at(Target::V), h), arch.n_kv_heads);
            if let Some(cache) = cache.as_mut() {
                if let Some((pk, pv)) = cache.layers.get(i) {
                    k = Tensor::cat(vec![pk.clone(), k], 2);
                    v = Tensor::cat(vec![pv.clone(), v], 2);
                }
                if i < cache.layers.len() {
                    cache.layers[i] = (k.clone(), v.clone());
                } else {
                    cache.layers.push((k.clone(), v.clone()));
                }
            }
            let scores = q.matmul(repeat(k).swap_dims(2, 3)).mul_scalar(scale);
            let attended = mask
                .softmax(scores)
                .matmul(repeat(v))
                .swap_dims(1, 2)
                .reshape([batch, seq, arch.n_heads * head_dim]);
            x = x + project(&attn.o_proj, at(Target::O), attended);
            let h = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(h, adapters);
        }
        if let Some(cache) = cache.as_mut() {
            cache.len = start + seq;
        }
        self.norm.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::Distribution;

    use super::*;

    fn tiny(style: RopeStyle) -> Arch {
        let mut arch = crate::testing::tiny_arch();
        arch.rope.style = style;
        arch
    }

    /// Our interleaved rotation against burn's own `RotaryEncoding`, to f32 rounding (the
    /// frequencies are computed differently: transformers' way here).
    #[test]
    fn interleaved_rope_rotates_as_burns_rotary_encoding() {
        let device = Device::flex();
        device.seed(7);
        let encoding = RotaryEncodingConfig::new(32, 8).init(&device);
        let arch = Arch {
            head_dim: 8,
            ..tiny(RopeStyle::Interleaved)
        };
        let x: Tensor<4> = Tensor::random([2, 3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        for start in [0, 4, 20] {
            let ours = RopeTable::new(&arch, start, 5, DType::F32, &device).apply(x.clone());
            let burns = encoding.apply(x.clone(), start);
            let diff = (ours - burns).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "start {start}: {diff}");
        }
    }

    /// Rotating halves is rotating interleaved pairs after moving dimension `i + d/2` next
    /// to dimension `i`: the permutation llama.cpp applies to q and k when it converts.
    #[test]
    fn halves_are_interleaved_pairs_permuted() {
        let device = Device::flex();
        device.seed(3);
        let (dim, seq) = (8, 6);
        let x: Tensor<4> =
            Tensor::random([1, 2, seq, dim], Distribution::Normal(0.0, 1.0), &device);
        let permute = |t: Tensor<4>| {
            t.reshape([1, 2, seq, 2, dim / 2])
                .swap_dims(3, 4)
                .reshape([1, 2, seq, dim])
        };
        let arch = |style| Arch {
            head_dim: dim,
            ..tiny(style)
        };
        let halves =
            RopeTable::new(&arch(RopeStyle::Halves), 3, seq, DType::F32, &device).apply(x.clone());
        let pairs = RopeTable::new(&arch(RopeStyle::Interleaved), 3, seq, DType::F32, &device)
            .apply(permute(x));
        let diff = (permute(halves) - pairs).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }

    /// Llama 3's scaling leaves high frequencies alone, divides low ones by `factor`, and
    /// blends in between (values from transformers' `_compute_llama3_parameters`).
    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let plain = Rope {
            theta: 500_000.0,
            style: RopeStyle::Halves,
            scaling: RopeScaling::None,
        };
        let scaled = Rope {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max: 8192.0,
            },
            ..plain.clone()
        };
        let (p, s) = (plain.frequencies(64), scaled.frequencies(64));
        assert_eq!(p[0], s[0]);
        assert_eq!(p[31] / 8.0, s[31]);
        let blended = p.iter().zip(&s).filter(|(p, s)| *s < *p && **s > **p / 8.0);
        assert!(blended.count() > 0);
    }

    /// A grouped-query model whose key/value heads are copies gives the same logits as the
    /// multi-head model with those copies spelled out.
    #[test]
    fn grouped_query_attention_equals_repeated_heads() {
        let device = Device::flex();
        device.seed(11);
        let mha = tiny(RopeStyle::Halves).init(&device);
        let gqa_arch = Arch {
            n_kv_heads: 2,
            ..tiny(RopeStyle::Halves)
        };
        // Keep every other head's key/value projection: heads 0,1 share kv head 0, and 2,3 kv 1.
        let take = |w: Tensor<2>| {
            let [d, _] = w.dims();
            let w = w.reshape([d, 4, 8]);
            let kept = Tensor::cat(vec![w.clone().narrow(1, 0, 1), w.narrow(1, 2, 1)], 1);
            (
                kept.clone().reshape([d, 16]),
                kept.unsqueeze_dim::<4>(2)
                    .expand([d, 2, 2, 8])
                    .reshape([d, 32]),
            )
        };
        let mut gqa = gqa_arch.init(&device);
        let mut mha = mha;
        for (g, m) in gqa.layers.iter_mut().zip(mha.layers.iter_mut()) {
            for (gp, mp) in [
                (&mut g.self_attn.k_proj, &mut m.self_attn.k_proj),
                (&mut g.self_attn.v_proj, &mut m.self_attn.v_proj),
            ] {
                let (small, full) = take(mp.weight.val());
                gp.weight = burn::module::Param::from_tensor(small);
                mp.weight = burn::module::Param::from_tensor(full);
            }
            g.self_attn.q_proj = m.self_attn.q_proj.clone();
            g.self_attn.o_proj = m.self_attn.o_proj.clone();
            g.mlp = m.mlp.clone();
        }
        gqa.embed_tokens = mha.embed_tokens.clone();
        gqa.lm_head = mha.lm_head.clone();
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 1, 4, 1, 5], [1, 5]), &device);
        let diff = (gqa.forward(tokens.clone()) - mha.forward(tokens))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    /// The masked softmax is the additive mask's softmax bit for bit on every row that sees
    /// a key, in value and (to rounding) in gradient, on every backend built; a row that sees
    /// none has weights 0 and a finite gradient.
    #[test]
    fn the_masked_softmax_is_the_biased_one_where_a_row_sees_a_key() {
        for device in crate::device::cpu_devices() {
            let ad = device.autodiff();
            ad.seed(9);
            let shape = [2, 3, 5, 6];
            let scores = Tensor::<4>::random(shape, Distribution::Normal(0.0, 8.0), &ad);
            let weights = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &ad);
            // Causal over the last five keys, and the first row of batch 1 sees nothing.
            let mut mask = vec![false; 2 * 5 * 6];
            for (i, m) in mask.iter_mut().enumerate() {
                let (b, q, k) = (i / 30, i / 6 % 5, i % 6);
                *m = k > q + 1 || (b == 1 && (q == 0 || k == 0));
            }
            // Broadcast over the heads, as the model passes it.
            let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [2, 1, 5, 6]), &ad);
            let bias = Tensor::<4>::zeros([2, 1, 5, 6], &ad).mask_fill(mask.clone(), MASKED);

            let ours_x = scores.clone().detach().require_grad();
            let ours = AttentionMask::new(mask, DType::F32).softmax(ours_x.clone());
            let plain_x = scores.detach().require_grad();
            let plain = burn::tensor::activation::softmax(plain_x.clone() + bias, 3);
            let (o, p) = (ours.clone().into_data(), plain.clone().into_data());
            let (o, p) = (o.as_slice::<f32>().unwrap(), p.as_slice::<f32>().unwrap());
            for (i, (o, p)) in o.iter().zip(p).enumerate() {
                let unseeing = i / 90 == 1 && i / 6 % 5 == 0;
                let want = if unseeing { 0.0 } else { *p };
                assert_eq!(o.to_bits(), want.to_bits(), "element {i}: {o} vs {p}");
            }

            let go = (ours * weights.clone()).sum().backward();
            let gp = (plain * weights).sum().backward();
            let go = ours_x.grad(&go).expect("grad");
            let gp = plain_x.grad(&gp).expect("grad");
            let (go, gp) = (go.into_data(), gp.into_data());
            let (go, gp) = (go.as_slice::<f32>().unwrap(), gp.as_slice::<f32>().unwrap());
            for (i, (o, p)) in go.iter().zip(gp).enumerate() {
                let unseeing = i / 90 == 1 && i / 6 % 5 == 0;
                let want = if unseeing { 0.0 } else { *p };
                assert!((o - want).abs() <= 1e-6, "gradient {i}: {o} vs {want}");
            }
        }
    }

    /// A tied head computes the logits with the embedding matrix.
    #[test]
    fn a_tied_head_reads_the_embedding() {
        let device = Device::flex();
        device.seed(5);
        let tied = Arch {
            tied: true,
            ..tiny(RopeStyle::Halves)
        };
        let model = tied.init(&device);
        assert!(model.lm_head.is_none());
        assert_eq!(model.num_params(), tied.num_params());
        let mut untied = tiny(RopeStyle::Halves).init(&device);
        untied.embed_tokens = model.embed_tokens.clone();
        untied.layers = model.layers.clone();
        let head = untied.lm_head.as_mut().expect("untied");
        head.weight = burn::module::Param::from_tensor(model.embed_tokens.weight.val().transpose());
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(vec![7i64, 2, 9], [1, 3]), &device);
        let diff = (model.forward(tokens.clone()) - untied.forward(tokens))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }
}
