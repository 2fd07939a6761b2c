//! Turning examples into padded tensors and the masked next-token loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, TensorData};

use crate::model::Lm;
use crate::tokenizer::{Encoded, PAD};

/// Inputs, next-token targets and the loss mask of a batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, seq]` input tokens.
    pub inputs: Tensor<2, Int>,
    /// `[batch, seq]` the token each position should predict.
    pub targets: Tensor<2, Int>,
    /// `[batch, seq]` 1 where the prediction counts (response tokens), else 0.
    pub mask: Tensor<2>,
}

/// Pads examples to the longest one; position `i` predicts token `i + 1`.
pub fn make_batch(examples: &[&Encoded], device: &Device) -> Batch {
    let seq = examples
        .iter()
        .map(|e| e.tokens.len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = examples.len();
    let mut inputs = vec![PAD as i64; n * seq];
    let mut targets = vec![PAD as i64; n * seq];
    let mut mask = vec![0f32; n * seq];
    for (row, e) in examples.iter().enumerate() {
        for i in 0..e.tokens.len().saturating_sub(1) {
            inputs[row * seq + i] = e.tokens[i] as i64;
            targets[row * seq + i] = e.tokens[i + 1] as i64;
            mask[row * seq + i] = if e.target[i + 1] { 1.0 } else { 0.0 };
        }
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [n, seq]), device),
        targets: Tensor::from_data(TensorData::new(targets, [n, seq]), device),
        mask: Tensor::from_data(TensorData::new(mask, [n, seq]), device),
    }
}

/// Mean cross-entropy over the masked positions, and the number of such positions.
pub fn loss(model: &Lm, batch: &Batch) -> (Tensor<1>, Tensor<1>) {
    // The softmax and the loss in fp32 whatever the model computes in (as autocast does).
    let logits = model.forward(batch.inputs.clone()).cast(FloatDType::F32);
    let log_probs = log_softmax(logits, 2);
    let picked: Tensor<2> = log_probs
        .gather(2, batch.targets.clone().unsqueeze_dim(2))
        .squeeze_dim(2);
    let count = batch.mask.clone().sum();
    let total = (picked * batch.mask.clone()).sum().neg();
    (total / count.clone().clamp_min(1.0), count)
}
