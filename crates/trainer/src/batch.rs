//! Turning examples into padded tensors and the masked next-token loss.

use burn::prelude::*;
use burn::tensor::{FloatDType, Int, TensorData};

use crate::model::Lm;
use crate::tokenizer::{Encoded, PAD};

/// Inputs and the predictions that count in a batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, seq]` input tokens.
    pub inputs: Tensor<2, Int>,
    /// `[n]` the positions whose next token counts (response tokens), flattened
    /// (`row · seq + i`); the padding and the prompt are left out.
    pub positions: Tensor<1, Int>,
    /// `[n]` the token each of those positions should predict.
    pub labels: Tensor<1, Int>,
    /// How many predictions count (`n`, or 0 where `positions` holds one placeholder).
    pub count: usize,
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
    let (mut positions, mut labels) = (Vec::new(), Vec::new());
    for (row, e) in examples.iter().enumerate() {
        for i in 0..e.tokens.len().saturating_sub(1) {
            inputs[row * seq + i] = e.tokens[i] as i64;
            if e.target[i + 1] {
                positions.push((row * seq + i) as i64);
                labels.push(e.tokens[i + 1] as i64);
            }
        }
    }
    let count = positions.len();
    if count == 0 {
        // One placeholder, weighted 0 by `loss`, so the loss still has a graph to follow.
        positions.push(0);
        labels.push(PAD as i64);
    }
    let vector = |v: Vec<i64>| {
        let len = v.len();
        Tensor::from_data(TensorData::new(v, [len]), device)
    };
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [n, seq]), device),
        positions: vector(positions),
        labels: vector(labels),
        count,
    }
}

/// Mean cross-entropy over the predicted positions, and their number.
///
/// Only those positions reach the output head: on instruction data most positions are the
/// prompt and padding, and over SmolLM2's 49,152-token vocabulary the head and its softmax
/// were a fifth of the step's arithmetic at every position. Each row's logits are the ones
/// the whole sequence's forward pass gives.
pub fn loss(model: &Lm, batch: &Batch) -> (Tensor<1>, Tensor<1>) {
    let hidden = model.hidden(batch.inputs.clone());
    let [rows, seq, width] = hidden.dims();
    let picked_rows = hidden
        .reshape([rows * seq, width])
        .select(0, batch.positions.clone());
    // The softmax and the loss in fp32 whatever the model computes in (as autocast does).
    let logits = model.head(picked_rows).cast(FloatDType::F32);
    let device = logits.device();
    let total = cross_entropy_sum(logits, batch.labels.clone());
    let mean = match batch.count {
        0 => total.mul_scalar(0.0),
        n => total.div_scalar(n as f64),
    };
    (mean, Tensor::from_floats([batch.count as f32], &device))
}

/// The summed cross-entropy of `logits` `[n, vocab]` against `labels` `[n]`:
/// `Σ logsumexp(row) − row[label]`. Written this way rather than as `log_softmax` and
/// `gather`, it never builds the `[n, vocab]` log-probabilities, and its backward is the
/// softmax minus the one-hot labels with two fewer passes over the logits (which, with a 49k
/// vocabulary, are the largest tensors of a step). Both terms are taken relative to the row's
/// maximum (held constant, as in PyTorch's `logsumexp`): `exp` stays finite, and the
/// difference is of two small numbers, as precise as `log_softmax`'s.
fn cross_entropy_sum(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let max = logits.clone().detach().max_dim(1);
    let picked = logits.clone().gather(1, labels.unsqueeze_dim(1)) - max.clone();
    let log_sum_exp = (logits - max).exp().sum_dim(1).log();
    (log_sum_exp - picked).sum()
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::activation::log_softmax;
    use burn::tensor::Distribution;

    use super::*;

    /// The log-sum-exp form is `log_softmax` and `gather` in value and gradient, on every
    /// backend built, with logits large enough that an unshifted `exp` would overflow.
    #[test]
    fn cross_entropy_is_log_softmax_gathered() {
        for device in crate::device::cpu_devices() {
            let ad = device.autodiff();
            ad.seed(3);
            let base =
                Tensor::<2>::random([6, 50], Distribution::Normal(0.0, 4.0), &ad).add_scalar(200.0);
            let labels = Tensor::<1, Int>::from_ints([0, 7, 49, 3, 3, 21], &ad);
            let fused_x = base.clone().detach().require_grad();
            let fused = cross_entropy_sum(fused_x.clone(), labels.clone());
            let plain_x = base.detach().require_grad();
            let plain = log_softmax(plain_x.clone(), 1)
                .gather(1, labels.unsqueeze_dim(1))
                .sum()
                .neg();
            let (f, p) = (
                fused.clone().into_scalar::<f32>(),
                plain.clone().into_scalar::<f32>(),
            );
            assert!(
                f.is_finite() && (f - p).abs() <= 1e-5 * p.abs(),
                "{f} vs {p}"
            );
            let (gf, gp) = (fused.backward(), plain.backward());
            let gf = fused_x.grad(&gf).expect("grad").into_data();
            let gp = plain_x.grad(&gp).expect("grad").into_data();
            gf.assert_approx_eq::<f32>(&gp, burn::tensor::Tolerance::absolute(1e-6));
        }
    }

    /// The loss over every position's logits, masked: what `loss` computed before it took
    /// the head at the predicted positions only.
    fn masked_over_all_positions(model: &Lm, examples: &[&Encoded], device: &Device) -> Tensor<1> {
        let batch = make_batch(examples, device);
        let [rows, seq] = batch.inputs.dims();
        let (mut targets, mut mask) = (vec![0i64; rows * seq], vec![0f32; rows * seq]);
        for (row, e) in examples.iter().enumerate() {
            for i in 0..e.tokens.len() - 1 {
                targets[row * seq + i] = i64::from(e.tokens[i + 1]);
                mask[row * seq + i] = if e.target[i + 1] { 1.0 } else { 0.0 };
            }
        }
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [rows, seq]), device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, seq]), device);
        let picked: Tensor<2> = log_softmax(model.forward(batch.inputs), 2)
            .gather(2, targets.unsqueeze_dim(2))
            .squeeze_dim(2);
        (picked * mask.clone()).sum().neg() / mask.sum()
    }

    /// Taking the head at the predicted positions only gives the loss, and every gradient,
    /// of the whole sequence's logits masked to those positions.
    #[test]
    fn the_loss_at_predicted_positions_is_the_masked_loss_over_all() {
        let device = crate::cpu_device();
        let ad = device.clone().autodiff();
        device.seed(11);
        let model = crate::model::ModelConfig::default()
            .arch()
            .init(&device)
            .to_device(&ad)
            .train();
        // A prompt (not predicted), a response, and a shorter example padded after it.
        let long = Encoded {
            tokens: vec![5, 9, 14, 3, 22, 7, 30, 2],
            target: vec![false, false, false, true, true, true, true, true],
        };
        let short = Encoded {
            tokens: vec![8, 4, 19, 2],
            target: vec![false, false, true, true],
        };
        let examples = [&long, &short];
        let (mean, count) = loss(&model, &make_batch(&examples, &ad));
        let reference = masked_over_all_positions(&model, &examples, &ad);
        assert_eq!(count.into_scalar::<f32>(), 7.0);
        let (a, b) = (
            mean.clone().into_scalar::<f32>(),
            reference.clone().into_scalar::<f32>(),
        );
        assert!((a - b).abs() < 1e-6, "{a} against {b}");
        let grads = |t: Tensor<1>| {
            let g = GradientsParams::from_grads(t.backward(), &model);
            crate::testing::flat_gradients(&model, &g).0
        };
        let (ours, theirs) = (grads(mean), grads(reference));
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "gradients differ by {worst}");

        // A batch that predicts nothing has loss 0, and a graph backward can follow.
        let prompt_only = Encoded {
            tokens: vec![5, 9, 14],
            target: vec![false; 3],
        };
        let (mean, count) = loss(&model, &make_batch(&[&prompt_only], &ad));
        assert_eq!(count.into_scalar::<f32>(), 0.0);
        assert_eq!(mean.clone().into_scalar::<f32>(), 0.0);
        assert!(grads(mean).iter().all(|g| *g == 0.0));
    }
}
