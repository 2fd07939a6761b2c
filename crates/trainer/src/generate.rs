//! Greedy decoding with a key/value cache, many prompts at a time.
//!
//! Prompts are sorted by length and decoded in batches, left-padded to the longest prompt of
//! their batch; the padding is masked out of attention, and rotary positions are relative, so
//! each response is the one the prompt would get alone (up to float rounding).

use burn::prelude::*;
use burn::tensor::{Bool, Int, TensorData};

use crate::eval::Response;
use crate::model::{KvCache, Lm};
use crate::tokenizer::{decode, encode_prompt, EOS, PAD};

/// Prompts decoded together. Larger batches amortise per-call overhead; beyond this the
/// padding of mixed lengths costs more than it saves.
const BATCH: usize = 32;

/// The model's greedy responses to `prompts`, at most `max_new` tokens each (and never past
/// `max_seq` tokens in all, padding included). Runs without autodiff.
pub fn generate(
    model: &Lm,
    prompts: &[String],
    max_new: usize,
    max_seq: usize,
    device: &Device,
) -> Vec<Response> {
    let encoded: Vec<Vec<u32>> = prompts.iter().map(|p| encode_prompt(p)).collect();
    let tokens = Tokens {
        stop: &[EOS],
        pad: PAD,
    };
    generate_ids(model, &encoded, tokens, max_new, max_seq, device)
        .into_iter()
        .map(|g| Response {
            text: decode(&g.tokens),
            ended: g.ended,
        })
        .collect()
}

/// The special tokens decoding needs.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// Ids that end an answer.
    pub stop: &'a [u32],
    /// The id prompts are left-padded with (masked out, so any id will do).
    pub pad: u32,
}

/// One greedy answer as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The answer, without the stop token.
    pub tokens: Vec<u32>,
    /// Whether a stop token ended it (as opposed to the length limit).
    pub ended: bool,
}

/// Greedy answers to already-tokenised prompts (each cut to leave room for one new token).
pub fn generate_ids(
    model: &Lm,
    prompts: &[Vec<u32>],
    tokens: Tokens<'_>,
    max_new: usize,
    max_seq: usize,
    device: &Device,
) -> Vec<Generated> {
    let model = model.valid();
    let prompts: Vec<&[u32]> = prompts
        .iter()
        .map(|p| &p[..p.len().min(max_seq.saturating_sub(1))])
        .collect();
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());
    let mut answers = vec![None; prompts.len()];
    for chunk in order.chunks(BATCH) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i]).collect();
        for (&i, answer) in chunk.iter().zip(generate_batch(
            &model, &batch, tokens, max_new, max_seq, device,
        )) {
            answers[i] = Some(answer);
        }
    }
    answers.into_iter().flatten().collect()
}

/// Greedy answers to one left-padded batch of prompts.
fn generate_batch(
    model: &Lm,
    prompts: &[&[u32]],
    tokens: Tokens<'_>,
    max_new: usize,
    max_seq: usize,
    device: &Device,
) -> Vec<Generated> {
    let rows = prompts.len();
    let width = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let max_new = max_new.min(max_seq.saturating_sub(width));
    let mut input = Vec::with_capacity(rows * width);
    let mut padding = Vec::with_capacity(rows * width);
    for p in prompts {
        let pad = width - p.len();
        input.extend(std::iter::repeat_n(tokens.pad as i64, pad));
        input.extend(p.iter().map(|&t| t as i64));
        padding.extend((0..width).map(|i| i < pad));
    }
    let mut cache = KvCache::with_padding(Tensor::<2, Bool>::from_data(
        TensorData::new(padding, [rows, width]),
        device,
    ));
    let mut next_input = Tensor::<2, Int>::from_data(TensorData::new(input, [rows, width]), device);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut ended = vec![false; rows];
    for _ in 0..max_new {
        let logits = model.forward_cached(next_input, &mut cache);
        let n = logits.dims()[1];
        let next: Tensor<2, Int> = logits
            .slice([0..rows, n - 1..n])
            .reshape([rows, model.arch().vocab])
            .argmax(1);
        let values: Vec<i64> = next
            .to_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("converted to i64 above");
        for (row, &token) in values.iter().enumerate() {
            if ended[row] {
                continue;
            }
            if tokens.stop.contains(&(token as u32)) {
                ended[row] = true;
            } else {
                out[row].push(token as u32);
            }
        }
        if ended.iter().all(|&e| e) {
            break;
        }
        next_input = next;
    }
    out.into_iter()
        .zip(ended)
        .map(|(tokens, ended)| Generated { tokens, ended })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn a_batch_answers_as_each_prompt_alone() {
        let device = Device::flex();
        device.seed(3);
        let model = ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 2,
            d_ff: 64,
            max_seq: 96,
        }
        .init(&device);
        let prompts: Vec<String> = ["Hi", "How do I fix a car?", "Uppercase: abc", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let together = generate(&model, &prompts, 12, 96, &device);
        for (prompt, response) in prompts.iter().zip(&together) {
            let alone = generate(&model, std::slice::from_ref(prompt), 12, 96, &device);
            assert_eq!(&alone[0], response, "{prompt}");
        }
    }
}
