//! The model, the training loop and the EMA on a tiny configuration (seconds in release).

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Tensor;
use std::sync::Mutex;
use sweep_trainer::batch::{loss, make_batch};
use sweep_trainer::ema::{interpolate, Ema};
use sweep_trainer::generate::generate;
use sweep_trainer::model::{KvCache, Lm, ModelConfig};
use sweep_trainer::tokenizer::{encode_prompt, Encoded};
use sweep_trainer::train::{train, Mix, OptimConfig, RunShape, Trainer};
use sweep_trainer::{cpu_device, Device};

#[path = "support/examples.rs"]
mod examples;
use examples::examples;

fn tiny() -> ModelConfig {
    ModelConfig {
        d_model: 32,
        n_heads: 2,
        n_layers: 1,
        d_ff: 64,
        max_seq: 96,
    }
}

/// A model initialised from `seed`. The device's random generator is one per process and the
/// tests run on parallel threads, so seeding and drawing happen under one lock: otherwise a
/// neighbouring test's draws land between them and "the same seed" gives other weights.
fn seeded(seed: u64, device: &Device) -> Lm {
    static RNG: Mutex<()> = Mutex::new(());
    let _held = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    tiny().init(device)
}

fn optim(lr: f64) -> OptimConfig {
    OptimConfig {
        lr,
        ..OptimConfig::default()
    }
}

fn run(seed: u64, steps: usize, device: &Device) -> (Vec<f64>, f32) {
    let ad = device.clone().autodiff();
    let model = seeded(seed, &ad);
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let mut losses = Vec::new();
    let shape = RunShape {
        steps,
        batch_size: 4,
        micro_batch: 2,
    };
    let model = train(model, &ad, &mix, shape, &optim(1e-2), seed, |_, l, m| {
        losses.push(l);
        m
    });
    let refs: Vec<&Encoded> = data.iter().collect();
    let (final_loss, _) = loss(&model.valid(), &make_batch(&refs, device));
    (losses, final_loss.into_scalar::<f32>())
}

#[test]
fn training_lowers_the_loss_and_is_deterministic() {
    let device = cpu_device();
    let (losses, final_loss) = run(7, 60, &device);
    assert!(
        final_loss < 0.5 * losses[0] as f32,
        "{} -> {final_loss}",
        losses[0]
    );
    let (again, again_final) = run(7, 60, &device);
    assert_eq!(losses, again);
    assert_eq!(final_loss, again_final);
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let device = cpu_device();
    let model = seeded(3, &device);
    let prompt = encode_prompt("Hello there");
    let mut cache = KvCache::default();
    let to_tensor = |t: &[u32]| {
        burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(
                t.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                [1, t.len()],
            ),
            &device,
        )
    };
    let mut tokens = prompt.clone();
    let mut cached_logits = model.forward_cached(to_tensor(&prompt), &mut cache);
    for _ in 0..6 {
        let n = tokens.len();
        let full = model.forward(to_tensor(&tokens));
        let full_last: Vec<f32> = full
            .slice([0..1, n - 1..n])
            .into_data()
            .try_to_vec()
            .unwrap();
        let m = cached_logits.dims()[1];
        let cached_last: Vec<f32> = cached_logits
            .slice([0..1, m - 1..m])
            .into_data()
            .try_to_vec()
            .unwrap();
        let diff = full_last
            .iter()
            .zip(&cached_last)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "cached logits differ by {diff}");
        let next = full_last
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap();
        tokens.push(next);
        cached_logits = model.forward_cached(to_tensor(&[next]), &mut cache);
    }
    // And the generator agrees with itself.
    let a = generate(&model, &["Hello there".to_string()], 6, 96, &device);
    let b = generate(&model, &["Hello there".to_string()], 6, 96, &device);
    assert_eq!(a, b);
}

/// Every weight of a model, in visiting order.
fn weights(m: &sweep_trainer::model::Lm) -> Vec<f32> {
    struct Weights(Vec<f32>);
    impl ModuleVisitor for Weights {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let flat = param.val().inner().flatten::<1>(0, D - 1);
            self.0
                .extend(flat.into_data().try_to_vec::<f32>().expect("f32 weights"));
        }
    }
    let mut w = Weights(Vec::new());
    m.visit(&mut w);
    w.0
}

#[test]
fn ema_blends_from_the_starting_weights() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let start = seeded(11, &ad);
    let params = weights;
    let mut ema = Ema::new(&start, 0.5);
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let trained = train(
        start.clone(),
        &ad,
        &mix,
        RunShape {
            steps: 30,
            batch_size: 4,
            micro_batch: 4,
        },
        &optim(1e-2),
        1,
        |_, _, m| m,
    );
    let (s, t) = (params(&start), params(&trained));
    assert_eq!(s.len(), t.len());
    let moved = s.iter().zip(&t).filter(|(a, b)| a != b).count();
    assert!(
        moved > s.len() / 2,
        "training moved {moved} of {} weights",
        s.len()
    );
    // β = 0: the shadow follows the model exactly; β near 1 barely moves from the start.
    let mut follow = Ema::new(&start, 0.0);
    follow.update(&trained);
    assert_eq!(params(follow.shadow()), t);
    // f32 arithmetic: a few units in the last place of slack, and no more.
    let ulps = |a: f32, b: f32| 4.0 * f32::EPSILON * a.abs().max(b.abs());
    let mut stay = Ema::new(&start, 0.999_999);
    stay.update(&trained);
    for ((a, b), st) in s.iter().zip(&t).zip(params(stay.shadow())) {
        assert!(
            (st - a).abs() <= 1e-5 * (b - a).abs() + ulps(*a, *b),
            "start {a} trained {b} shadow {st}"
        );
    }
    // β = 0.5: every weight is the midpoint of its start and trained values, so it lies
    // between them.
    ema.update(&trained);
    for ((a, b), h) in s.iter().zip(&t).zip(params(ema.shadow())) {
        let mid = 0.5 * a + 0.5 * b;
        assert!(
            (h - mid).abs() <= ulps(*a, *b),
            "start {a} trained {b}: a β = 0.5 shadow is {h}, not {mid}"
        );
        assert!(
            a.min(*b) - ulps(*a, *b) <= h && h <= a.max(*b) + ulps(*a, *b),
            "start {a} trained {b}: shadow {h} is not between them"
        );
    }
    // Feedback mode copies the shadow into the trained model.
    let fed = ema.feed_back(trained);
    assert_eq!(params(&fed), params(ema.shadow()));
    // ... and it stays trainable.
    let before = params(&fed);
    let after = train(
        fed,
        &ad,
        &mix,
        RunShape {
            steps: 5,
            batch_size: 4,
            micro_batch: 4,
        },
        &optim(1e-2),
        1,
        |_, _, m| m,
    );
    assert_ne!(params(&after), before);
}

/// The interpolation baseline θ₀ + α(θ − θ₀), checked weight by weight against the hand
/// computation: α = 1 is the trained model, α = 0.25 a quarter of the way from the start.
#[test]
fn interpolation_is_the_straight_line_from_the_start() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let start = seeded(13, &ad);
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let shape = RunShape {
        steps: 10,
        batch_size: 4,
        micro_batch: 4,
    };
    let trained = train(
        start.clone(),
        &ad,
        &mix,
        shape,
        &optim(1e-2),
        1,
        |_, _, m| m,
    );
    let (s, t) = (weights(&start), weights(&trained));
    assert_ne!(s, t);
    for alpha in [1.0f32, 0.25] {
        let blended = weights(&interpolate(&start.valid(), &trained, alpha as f64));
        for ((a, b), q) in s.iter().zip(&t).zip(blended) {
            let want = a + alpha * (b - a);
            assert!(
                (q - want).abs() <= 4.0 * f32::EPSILON * a.abs().max(b.abs()),
                "α {alpha}: start {a} trained {b}: {q}, not {want}"
            );
        }
    }
}

#[test]
fn a_restored_checkpoint_continues_exactly() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let start = seeded(5, &ad);
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let shape = RunShape {
        steps: 20,
        batch_size: 4,
        micro_batch: 2,
    };
    let mut straight = Trainer::new(start.clone(), &ad, &mix, shape, &optim(1e-2), 9);
    let losses: Vec<f64> = (0..20).map(|_| straight.advance()).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(start, &ad, &mix, shape, &optim(1e-2), 9);
    for _ in 0..8 {
        first.advance();
    }
    first.save(dir.path()).unwrap();
    drop(first);
    // A new process: fresh weights and optimizer, then the checkpoint.
    let mut resumed = Trainer::new(seeded(6, &ad), &ad, &mix, shape, &optim(1e-2), 9);
    resumed.restore(dir.path(), || seeded(0, &device)).unwrap();
    assert_eq!(resumed.step(), 8);
    let rest: Vec<f64> = (8..20).map(|_| resumed.advance()).collect();
    assert_eq!(rest, losses[8..]);
}

/// Feedback EMA with AdamW is AdamW with the learning rate scaled by (1 − β). With θ̄ = θ
/// before a step (feedback keeps them equal), θ̄ ← βθ̄ + (1 − β)(θ + Δ) = θ + (1 − β)Δ, and
/// AdamW's Δ (moments and decoupled weight decay alike) is linear in the learning rate, while
/// the gradients, and so the moments, follow the same trajectory. So the feedback reading
/// of the paper's EMA is a learning-rate change, not a separate mechanism; the shadow reading
/// is the one that can differ (docs/reproduction.md).
#[test]
fn feedback_ema_is_adamw_with_the_learning_rate_scaled_by_one_minus_beta() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let shape = RunShape {
        steps: 30,
        batch_size: 4,
        micro_batch: 4,
    };
    let (lr, beta) = (2e-2, 0.9);
    let start = seeded(5, &ad);

    let mut feedback = Trainer::new(start.clone(), &ad, &mix, shape, &optim(lr), 1);
    let mut shadow = Ema::new(feedback.model(), beta);
    let mut scaled = Trainer::new(
        start.clone(),
        &ad,
        &mix,
        shape,
        &optim(lr * (1.0 - beta)),
        1,
    );
    let mut plain = Trainer::new(start.clone(), &ad, &mix, shape, &optim(lr), 1);
    for _ in 0..shape.steps {
        feedback.advance();
        shadow.update(feedback.model());
        feedback.map_model(|m| shadow.feed_back(m));
        scaled.advance();
        plain.advance();
    }
    let (f, s, p) = (
        weights(feedback.model()),
        weights(scaled.model()),
        weights(plain.model()),
    );
    let differ = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let moved = differ(&f, &weights(&start));
    // Equal up to f32 rounding of the two orders of operations, which is far below how far
    // training moved the weights and how far plain AdamW (lr unscaled) ends up.
    assert!(
        differ(&f, &s) < 1e-4 * moved.max(1.0),
        "{} vs moved {moved}",
        differ(&f, &s)
    );
    assert!(
        differ(&f, &p) > 100.0 * differ(&f, &s),
        "plain AdamW is not the same"
    );
}
