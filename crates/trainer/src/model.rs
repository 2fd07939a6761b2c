//! A small Llama-style decoder: RMSNorm, rotary positions, causal multi-head attention,
//! SwiGLU MLP, untied output head. Sizes come from [`ModelConfig`].
//!
//! burn 0.22 notes that shaped this file: the backend is chosen by the `Device` at run time;
//! `tril_mask` is true *above* the diagonal (the positions to hide); burn's RoPE rotates
//! interleaved pairs.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig, RotaryEncoding,
    RotaryEncodingConfig, SwiGlu, SwiGluConfig,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, DType, Int, TensorData};

use crate::tokenizer::VOCAB_SIZE;

/// Model sizes. The defaults (the `small` preset, about 0.4 M parameters) train in minutes on
/// two CPU cores; [`crate::sizes::Preset`] names bigger ones for GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "crate::sizes::ModelTable")]
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

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        crate::sizes::Preset::Small.config()
    }
}

impl ModelConfig {
    /// Trainable parameters: the byte embedding, per block four attention projections, the
    /// SwiGLU MLP (gate, up, down) and two norms, then the final norm and the output head.
    pub fn num_params(&self) -> usize {
        let (d, ff) = (self.d_model, self.d_ff);
        let block = 4 * d * d + 3 * d * ff + 2 * d;
        2 * VOCAB_SIZE * d + self.n_layers * block + d
    }

    /// Builds a randomly initialised model on `device` (seed the device first).
    pub fn init(&self, device: &Device) -> Lm {
        let head_dim = self.d_model / self.n_heads;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).with_bias(false).init(device);
        Lm {
            embed: EmbeddingConfig::new(VOCAB_SIZE, self.d_model).init(device),
            blocks: (0..self.n_layers)
                .map(|_| Block {
                    attn_norm: RmsNormConfig::new(self.d_model).init(device),
                    q: linear(self.d_model, self.d_model),
                    k: linear(self.d_model, self.d_model),
                    v: linear(self.d_model, self.d_model),
                    o: linear(self.d_model, self.d_model),
                    mlp_norm: RmsNormConfig::new(self.d_model).init(device),
                    gate_up: SwiGluConfig::new(self.d_model, self.d_ff)
                        .with_bias(false)
                        .init(device),
                    down: linear(self.d_ff, self.d_model),
                })
                .collect(),
            norm: RmsNormConfig::new(self.d_model).init(device),
            head: linear(self.d_model, VOCAB_SIZE),
            rope: RotaryEncodingConfig::new(self.max_seq, head_dim).init(device),
            n_heads: self.n_heads,
        }
    }
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp_norm: RmsNorm,
    gate_up: SwiGlu,
    down: Linear,
}

/// The language model.
#[derive(Module, Debug)]
pub struct Lm {
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rope: RotaryEncoding,
    n_heads: usize,
}

/// Keys and values of earlier positions, one pair per block, for incremental decoding.
#[derive(Debug, Default)]
pub struct KvCache {
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
}

/// What masked attention scores are set to: finite, so a row that is all padding (a padding
/// query) stays finite instead of turning into NaN that its keys would spread.
const MASKED: f32 = -1e9;

/// Rotary positions for one forward pass, computed as burn's [`RotaryEncoding::apply`] does
/// (interleaved pairs, bit for bit) but with element-wise ops: burn rotates each pair with a
/// batched 2 × 4 matmul, a third of a libtorch training step at this model size.
struct Rope {
    /// `[1, 1, seq, head_dim]`: the cosine of each position's angle, per dimension.
    cos: Tensor<4>,
    /// The sine, likewise.
    sin: Tensor<4>,
}

impl Rope {
    /// The angles of positions `start..start + seq`, in `dtype`.
    fn new(encoding: &RotaryEncoding, start: usize, seq: usize, dtype: DType) -> Rope {
        let [_, head_dim, _] = encoding.freq_complex.dims();
        let angles = encoding.freq_complex.clone().narrow(0, start, seq);
        let part = |i: usize| {
            angles
                .clone()
                .narrow(2, i, 1)
                .reshape([1, 1, seq, head_dim])
                .cast(dtype)
        };
        Rope {
            cos: part(0),
            sin: part(1),
        }
    }

    /// Rotates each pair `(a, b)` of `x`'s last dimension to `(a cos - b sin, b cos + a sin)`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, heads, seq, dim] = x.dims();
        let pairs: Tensor<5> = x.clone().reshape([batch, heads, seq, dim / 2, 2]);
        let (a, b) = (pairs.clone().narrow(4, 0, 1), pairs.narrow(4, 1, 1));
        let turned = Tensor::cat(vec![b.neg(), a], 4).reshape([batch, heads, seq, dim]);
        x * self.cos.clone() + turned * self.sin.clone()
    }
}

impl Lm {
    /// The dtype the weights are stored in (all share it).
    pub fn weights_dtype(&self) -> DType {
        self.head.weight.val().dtype()
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

    fn forward_from(&self, tokens: Tensor<2, Int>, cache: &mut Option<KvCache>) -> Tensor<3> {
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
        let mut x = self.embed.forward(tokens);
        // Everything computed here follows the weights' dtype (bf16 in mixed precision).
        let dtype = x.dtype();
        // Added to the scores rather than filled in: the same softmax (a masked score is
        // -1e9 either way, to f32 precision), and its gradient needs no second masking.
        let mask_bias = Tensor::<4>::zeros(hidden.dims(), &device)
            .mask_fill(hidden, MASKED)
            .cast(dtype);
        let d_model = x.dims()[2];
        let head_dim = d_model / self.n_heads;
        let heads = |t: Tensor<3>| {
            t.reshape([batch, seq, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        let rope = Rope::new(&self.rope, start, seq, dtype);
        for (i, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(x.clone());
            let q = rope.apply(heads(block.q.forward(h.clone())));
            let mut k = rope.apply(heads(block.k.forward(h.clone())));
            let mut v = heads(block.v.forward(h));
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
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .div_scalar((head_dim as f32).sqrt());
            let scores = scores + mask_bias.clone();
            let attended = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([batch, seq, d_model]);
            x = x + block.o.forward(attended);
            let h = block.mlp_norm.forward(x.clone());
            x = x + block.down.forward(block.gate_up.forward(h));
        }
        if let Some(cache) = cache.as_mut() {
            cache.len = start + seq;
        }
        self.head.forward(self.norm.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn rope_rotates_exactly_as_burns_rotary_encoding() {
        let device = Device::flex();
        device.seed(7);
        let encoding = RotaryEncodingConfig::new(32, 8).init(&device);
        let x: Tensor<4> = Tensor::random([2, 3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        for start in [0, 4] {
            let ours = Rope::new(&encoding, start, 5, DType::F32).apply(x.clone());
            let burns = encoding.apply(x.clone(), start);
            assert_eq!(
                ours.into_data().try_to_vec::<f32>().unwrap(),
                burns.into_data().try_to_vec::<f32>().unwrap(),
                "start {start}"
            );
        }
    }
}
