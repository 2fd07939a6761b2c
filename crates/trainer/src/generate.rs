//! Greedy decoding with a key/value cache.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};

use crate::eval::Response;
use crate::model::{KvCache, Lm};
use crate::tokenizer::{decode, encode_prompt, EOS};

/// The model's greedy responses to `prompts`, at most `max_new` tokens each (and never past
/// `max_seq` tokens in all). Runs without autodiff.
pub fn generate(
    model: &Lm,
    prompts: &[String],
    max_new: usize,
    max_seq: usize,
    device: &Device,
) -> Vec<Response> {
    let model = model.valid();
    prompts
        .iter()
        .map(|prompt| {
            let mut tokens: Vec<u32> = encode_prompt(prompt);
            tokens.truncate(max_seq.saturating_sub(1));
            let mut cache = KvCache::default();
            let mut input = tokens.clone();
            let mut out = Vec::new();
            let mut ended = false;
            while out.len() < max_new && tokens.len() < max_seq {
                let n = input.len();
                let data: Vec<i64> = input.iter().map(|&t| t as i64).collect();
                let logits = model.forward_cached(
                    Tensor::<2, Int>::from_data(TensorData::new(data, [1, n]), device),
                    &mut cache,
                );
                let last = logits.slice([0..1, n - 1..n]).reshape([-1]);
                let next = last.argmax(0).into_scalar::<i64>() as u32;
                if next == EOS {
                    ended = true;
                    break;
                }
                out.push(next);
                tokens.push(next);
                input = vec![next];
            }
            Response {
                text: decode(&out),
                ended,
            }
        })
        .collect()
}
