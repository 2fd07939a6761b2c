//! Log-likelihoods of a question's choices as lm-evaluation-harness computes them for a causal
//! model: the context's tokens, each choice's continuation tokens split off the encoding of
//! context and choice together, and the sum of the continuation's token log-probabilities.
//! The context runs once per question and its keys and values serve every choice.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, FloatDType, Int, TensorData};

use crate::model::{KvCache, Lm};

/// A question's tokens: one context per distinct prefix, and the continuations scored after
/// it. A question usually has one group; it has one a choice only when the model's context
/// window makes lm-eval cut each choice's context differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The question's contexts and what continues each.
    pub groups: Vec<Group>,
    /// How many choices the question has.
    pub choices: usize,
}

/// A context and the choices scored after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The context's tokens.
    pub context: Vec<u32>,
    /// `(choice index, continuation tokens)`.
    pub continuations: Vec<(usize, Vec<u32>)>,
}

/// Why a question cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    /// The choice adds no token to its context (lm-eval refuses it too).
    #[error("choice {0} adds no token after the context")]
    EmptyContinuation(usize),
    /// The choice alone is longer than the model's window.
    #[error("choice {0} is {1} tokens, longer than the model's {2}-token window")]
    TooLong(usize, usize, usize),
}

/// Splits `context` and each choice (after lm-eval's `target_delimiter`, a space) into tokens
/// as lm-eval's `_encode_pair` does: whitespace ending the context moves to the continuation,
/// the pair is encoded whole and the context's own encoding is cut off its front. Inputs are
/// cut from the left to `window + 1` tokens, as lm-eval does at its `max_length`.
pub fn tokens<E>(
    context: &str,
    choices: &[String],
    window: usize,
    encode: impl Fn(&str) -> Result<Vec<u32>, E>,
) -> Result<Result<Tokens, TokensError>, E> {
    let kept = context.trim_end();
    let moved = &context[kept.len()..];
    let context_ids = encode(kept)?;
    let mut groups: Vec<Group> = Vec::new();
    for (i, choice) in choices.iter().enumerate() {
        let whole = encode(&format!("{kept}{moved} {choice}"))?;
        let continuation = whole.get(context_ids.len()..).unwrap_or_default().to_vec();
        if continuation.is_empty() {
            return Ok(Err(TokensError::EmptyContinuation(i)));
        }
        if continuation.len() > window {
            return Ok(Err(TokensError::TooLong(i, continuation.len(), window)));
        }
        let cut = (context_ids.len() + continuation.len()).saturating_sub(window + 1);
        let prefix = context_ids[cut..].to_vec();
        match groups.iter_mut().find(|g| g.context == prefix) {
            Some(group) => group.continuations.push((i, continuation)),
            None => groups.push(Group {
                context: prefix,
                continuations: vec![(i, continuation)],
            }),
        }
    }
    Ok(Ok(Tokens {
        groups,
        choices: choices.len(),
    }))
}

/// Contexts run together in one batch.
const CONTEXTS_PER_BATCH: usize = 8;

/// Every choice's log-likelihood for each question, in order. Contexts of similar length are
/// batched (left-padded); each context's cache is repeated for its choices, which run as one
/// right-padded batch. Log-probabilities are taken in f32 whatever the model computes in.
pub fn loglikelihoods(
    model: &Lm,
    questions: &[Tokens],
    pad: u32,
    device: &Device,
) -> Vec<Vec<f64>> {
    let model = model.valid();
    // (question, group) pairs, shortest context first, so a batch pads little.
    let mut groups: Vec<(usize, usize)> = questions
        .iter()
        .enumerate()
        .flat_map(|(q, t)| (0..t.groups.len()).map(move |g| (q, g)))
        .collect();
    groups.sort_by_key(|&(q, g)| questions[q].groups[g].context.len());
    let mut out: Vec<Vec<f64>> = questions.iter().map(|t| vec![0.0; t.choices]).collect();
    for chunk in groups.chunks(CONTEXTS_PER_BATCH) {
        let batch: Vec<&Group> = chunk
            .iter()
            .map(|&(q, g)| &questions[q].groups[g])
            .collect();
        let scores = score_batch(&model, &batch, pad, device);
        for (&(q, g), group_scores) in chunk.iter().zip(scores) {
            for ((choice, _), ll) in questions[q].groups[g]
                .continuations
                .iter()
                .zip(group_scores)
            {
                out[q][*choice] = ll;
            }
        }
    }
    out
}

/// The log-likelihood of each continuation of each group, in order.
fn score_batch(model: &Lm, groups: &[&Group], pad: u32, device: &Device) -> Vec<Vec<f64>> {
    let n = groups.len();
    let width = groups.iter().map(|g| g.context.len()).max().unwrap_or(0);
    let (mut input, mut padding) = (Vec::with_capacity(n * width), Vec::with_capacity(n * width));
    for group in groups {
        let gap = width - group.context.len();
        input.extend(std::iter::repeat_n(pad as i64, gap));
        input.extend(group.context.iter().map(|&t| t as i64));
        padding.extend((0..width).map(|i| i < gap));
    }
    let mut cache = KvCache::with_padding(Tensor::<2, Bool>::from_data(
        TensorData::new(padding, [n, width]),
        device,
    ));
    let logits = model.forward_cached(
        Tensor::<2, Int>::from_data(TensorData::new(input, [n, width]), device),
        &mut cache,
    );
    let vocab = logits.dims()[2];
    // The last context position predicts each continuation's first token.
    let last = log_softmax(
        logits.slice([0..n, width - 1..width]).cast(FloatDType::F32),
        2,
    );
    // One row per continuation: its group, its tokens.
    let rows: Vec<(usize, &[u32])> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            group
                .continuations
                .iter()
                .map(move |(_, c)| (g, c.as_slice()))
        })
        .collect();
    let r = rows.len();
    let row_group: Vec<usize> = rows.iter().map(|(g, _)| *g).collect();
    let index = |values: Vec<i64>, shape: [usize; 3]| {
        Tensor::<3, Int>::from_data(TensorData::new(values, shape), device)
    };
    let first_tokens = index(rows.iter().map(|(_, c)| c[0] as i64).collect(), [r, 1, 1]);
    let group_index = Tensor::<1, Int>::from_data(
        TensorData::new(row_group.iter().map(|&g| g as i64).collect(), [r]),
        device,
    );
    let mut total: Tensor<1> = last
        .select(0, group_index)
        .reshape([r, 1, vocab])
        .gather(2, first_tokens)
        .reshape([r]);
    let longest = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(1);
    if longest > 1 {
        let rest = longest - 1;
        let (mut inputs, mut targets, mut mask) = (
            vec![pad as i64; r * rest],
            vec![0i64; r * rest],
            vec![0f32; r * rest],
        );
        for (row, (_, c)) in rows.iter().enumerate() {
            for i in 0..c.len() - 1 {
                inputs[row * rest + i] = c[i] as i64;
                targets[row * rest + i] = c[i + 1] as i64;
                mask[row * rest + i] = 1.0;
            }
        }
        let mut row_cache = cache.select_rows(&row_group, device);
        let logits = model.forward_cached(
            Tensor::<2, Int>::from_data(TensorData::new(inputs, [r, rest]), device),
            &mut row_cache,
        );
        let picked: Tensor<2> = log_softmax(logits.cast(FloatDType::F32), 2)
            .gather(2, index(targets, [r, rest, 1]))
            .reshape([r, rest]);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [r, rest]), device);
        total = total + (picked * mask).sum_dim(1).reshape([r]);
    }
    let values: Vec<f32> = total
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("converted to f32 above");
    let mut values = values.into_iter().map(f64::from);
    groups
        .iter()
        .map(|group| {
            group
                .continuations
                .iter()
                .map(|_| values.next().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    fn bytes(text: &str) -> Result<Vec<u32>, std::convert::Infallible> {
        Ok(text.bytes().map(u32::from).collect())
    }

    #[test]
    fn the_trailing_space_moves_to_the_continuation() {
        let t = tokens("Q: x\nA: ", &["yes".into(), "no".into()], 100, bytes)
            .unwrap()
            .unwrap();
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].context, bytes("Q: x\nA:").unwrap());
        assert_eq!(t.groups[0].continuations[0].1, bytes("  yes").unwrap());
        assert_eq!(t.groups[0].continuations[1], (1, bytes("  no").unwrap()));
    }

    #[test]
    fn a_long_context_is_cut_from_the_left_for_each_choice() {
        let t = tokens("abcdefgh", &["x".into(), "xyz".into()], 8, bytes)
            .unwrap()
            .unwrap();
        // Inputs of at most window + 1 = 9 tokens: "defgh" + " xyz", "bcdefgh" + " x".
        assert_eq!(t.groups.len(), 2);
        assert_eq!(t.groups[0].context, bytes("bcdefgh").unwrap());
        assert_eq!(t.groups[1].context, bytes("defgh").unwrap());
        let long = tokens("ab", &["x".repeat(20)], 8, bytes).unwrap();
        assert_eq!(long, Err(TokensError::TooLong(0, 21, 8)));
    }

    /// The cached, batched path against the plain sum over one whole sequence at a time.
    #[test]
    fn loglikelihoods_equal_a_whole_sequence_forward() {
        let device = Device::flex();
        device.seed(11);
        let model = ModelConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 2,
            d_ff: 64,
            max_seq: 96,
        }
        .init(&device);
        let questions: Vec<Tokens> = [
            (
                "Question: which is red?\nAnswer:",
                vec!["a tomato", "the sky", "grass"],
            ),
            ("Hi", vec!["!", " there, friend"]),
            (
                "A much longer context that pads the others in its batch.",
                vec!["x", "y z"],
            ),
        ]
        .iter()
        .map(|(c, choices)| {
            let choices: Vec<String> = choices.iter().map(|s| s.to_string()).collect();
            tokens(c, &choices, 96, bytes).unwrap().unwrap()
        })
        .collect();
        let got = loglikelihoods(&model, &questions, crate::tokenizer::PAD, &device);
        for (q, t) in questions.iter().enumerate() {
            for Group {
                context,
                continuations,
            } in &t.groups
            {
                for (choice, continuation) in continuations {
                    let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
                    let n = whole.len() - 1;
                    let input = Tensor::<2, Int>::from_data(
                        TensorData::new(whole[..n].iter().map(|&t| t as i64).collect(), [1, n]),
                        &device,
                    );
                    let lp = log_softmax(model.forward(input), 2);
                    let values: Vec<f32> = lp.into_data().convert::<f32>().try_into_vec().unwrap();
                    let vocab = model.arch().vocab;
                    let expected: f64 = (context.len() - 1..n)
                        .map(|p| values[p * vocab + whole[p + 1] as usize] as f64)
                        .sum();
                    let diff = (got[q][*choice] - expected).abs();
                    assert!(
                        diff < 1e-4,
                        "question {q} choice {choice}: {} vs {expected}",
                        got[q][*choice]
                    );
                }
            }
        }
    }
}
