//! LoRA on a tiny model: step 0 is the base exactly, training moves the adapters and nothing
//! else, the merged model computes what the adapters compute, and the EMA, feedback mode and
//! checkpoints work on the adapters (seconds in release).

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Int, Tensor};
use sweep_trainer::batch::{loss, make_batch};
use sweep_trainer::ema::Ema;
use sweep_trainer::lora::{parse_targets, LoraSpec};
use sweep_trainer::model::{Lm, ModelConfig};
use sweep_trainer::tokenizer::Encoded;
use sweep_trainer::train::{train, Mix, OptimConfig, RunShape, Trainer};
use sweep_trainer::{cpu_device, Device};

#[path = "support/examples.rs"]
mod examples;
use examples::examples;

fn tiny() -> ModelConfig {
    ModelConfig {
        d_model: 32,
        n_heads: 2,
        n_layers: 2,
        d_ff: 64,
        max_seq: 96,
    }
}

/// Seeding and drawing under one lock: the device's generator is shared by parallel tests.
fn seeded<T>(seed: u64, device: &Device, draw: impl FnOnce() -> T) -> T {
    static RNG: Mutex<()> = Mutex::new(());
    let _held = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    draw()
}

fn spec(targets: &str) -> LoraSpec {
    LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: parse_targets(targets).unwrap(),
        ..LoraSpec::default()
    }
}

/// A base model and the same with fresh adapters, on `device`.
fn base_and_lora(device: &Device, targets: &str) -> (Lm, Lm) {
    let base = seeded(3, device, || tiny().init(device));
    let lora = seeded(4, device, || base.clone().with_lora(&spec(targets), device));
    (base, lora)
}

fn optim() -> OptimConfig {
    OptimConfig {
        lr: 1e-2,
        ..OptimConfig::default()
    }
}

const SHAPE: RunShape = RunShape {
    steps: 12,
    batch_size: 4,
    micro_batch: 2,
};

/// Every float parameter's values, split into the trainable ones and the frozen ones.
fn weights(m: &Lm) -> (Vec<f32>, Vec<f32>) {
    struct Weights(Vec<f32>, Vec<f32>);
    impl ModuleVisitor for Weights {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let flat = param.val().inner().flatten::<1>(0, D - 1);
            let values = flat.into_data().try_to_vec::<f32>().expect("f32 weights");
            if param.is_require_grad() {
                self.0.extend(values);
            } else {
                self.1.extend(values);
            }
        }
    }
    let mut w = Weights(Vec::new(), Vec::new());
    m.visit(&mut w);
    (w.0, w.1)
}

fn all_weights(m: &Lm) -> Vec<f32> {
    let (mut trainable, frozen) = weights(m);
    trainable.extend(frozen);
    trainable
}

fn logits(m: &Lm, device: &Device) -> Tensor<3> {
    let tokens = Tensor::<2, Int>::from_ints([[3, 17, 42, 9, 100], [5, 6, 7, 8, 9]], device);
    m.valid().forward(tokens)
}

fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn a_lora_model_starts_as_its_base_and_trains_only_its_adapters() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let (base, lora) = base_and_lora(&ad, "all");
    // B is zero: the same logits, to the bit.
    assert_eq!(
        max_diff(logits(&base, &device), logits(&lora, &device)),
        0.0
    );
    let (adapters, frozen) = weights(&lora);
    assert_eq!(frozen, all_weights(&base), "every base weight is frozen");
    // r 4 beside 7 projections in 2 blocks of width 32 / 64.
    assert_eq!(adapters.len(), 2 * 4 * (4 * (32 + 32) + 3 * (32 + 64)));

    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let mut losses = Vec::new();
    let trained = train(lora, &ad, &mix, SHAPE, &optim(), 1, |_, l, m| {
        losses.push(l);
        m
    });
    assert!(losses[SHAPE.steps - 1] < losses[0], "{losses:?}");
    let (moved, still) = weights(&trained);
    assert_eq!(still, frozen, "training moved a frozen weight");
    assert_ne!(moved, adapters);

    // Folding the adapters in computes what they compute, in one plain model.
    let merged = trained.valid().merged();
    assert!(merged.adapters().is_none());
    let diff = max_diff(logits(&trained, &device), logits(&merged, &device));
    assert!(diff < 1e-4, "{diff}");
    let refs: Vec<&Encoded> = data.iter().collect();
    let batch = make_batch(&refs, &device);
    let (a, _) = loss(&trained.valid(), &batch);
    let (b, _) = loss(&merged, &batch);
    assert!((a.into_scalar::<f32>() - b.into_scalar::<f32>()).abs() < 1e-5);
}

#[test]
fn the_ema_and_feedback_average_the_adapters_and_leave_the_base() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let (_, start) = base_and_lora(&ad, "q,v");
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let trained = train(start.clone(), &ad, &mix, SHAPE, &optim(), 1, |_, _, m| m);
    let mut ema = Ema::new(&start, 0.5);
    ema.update(&trained);
    let (s, frozen) = weights(&start);
    let (t, _) = weights(&trained);
    // The shadow has no autodiff, so it is split where the trained model's weights split.
    let (shadow_adapters, shadow_frozen) = split_like(ema.shadow(), &start);
    assert_eq!(
        shadow_frozen, frozen,
        "the average of a frozen weight is itself"
    );
    for ((a, b), h) in s.iter().zip(&t).zip(&shadow_adapters) {
        let mid = 0.5 * a + 0.5 * b;
        assert!((h - mid).abs() <= 4.0 * f32::EPSILON * a.abs().max(b.abs()) + 1e-12);
    }
    // Feedback copies the averaged adapters back and keeps the base frozen and trainable
    // adapters trainable.
    let fed = ema.feed_back(trained);
    let (fed_adapters, fed_frozen) = weights(&fed);
    assert_eq!(fed_frozen, frozen);
    assert_eq!(fed_adapters, shadow_adapters);
    let after = train(fed, &ad, &mix, SHAPE, &optim(), 2, |_, _, m| m);
    let (after_adapters, after_frozen) = weights(&after);
    assert_eq!(after_frozen, frozen);
    assert_ne!(after_adapters, shadow_adapters);
}

/// `model`'s weights split as `like`'s trainable/frozen split falls, position by position
/// (a model without autodiff has nothing trainable to split by).
fn split_like(model: &Lm, like: &Lm) -> (Vec<f32>, Vec<f32>) {
    struct Flags(Vec<(bool, usize)>);
    impl ModuleVisitor for Flags {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push((param.is_require_grad(), param.val().shape().num_elements()));
        }
    }
    struct Values(Vec<Vec<f32>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let flat = param.val().inner().flatten::<1>(0, D - 1);
            self.0
                .push(flat.into_data().try_to_vec::<f32>().expect("f32 weights"));
        }
    }
    let mut flags = Flags(Vec::new());
    like.visit(&mut flags);
    let mut values = Values(Vec::new());
    model.visit(&mut values);
    let (mut trainable, mut frozen) = (Vec::new(), Vec::new());
    for ((is_trainable, _), v) in flags.0.iter().zip(values.0) {
        if *is_trainable {
            trainable.extend(v);
        } else {
            frozen.extend(v);
        }
    }
    (trainable, frozen)
}

#[test]
fn a_lora_checkpoint_continues_exactly_and_keeps_no_state_for_the_base() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let (_, start) = base_and_lora(&ad, "attention");
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let mut straight = Trainer::new(start.clone(), &ad, &mix, SHAPE, &optim(), 9);
    let losses: Vec<f64> = (0..SHAPE.steps).map(|_| straight.advance()).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(start.clone(), &ad, &mix, SHAPE, &optim(), 9);
    for _ in 0..5 {
        first.advance();
    }
    first.save(dir.path()).unwrap();
    drop(first);
    let template = start.valid();
    let mut resumed = Trainer::new(start.clone(), &ad, &mix, SHAPE, &optim(), 9);
    resumed.restore(dir.path(), || template).unwrap();
    let rest: Vec<f64> = (5..SHAPE.steps).map(|_| resumed.advance()).collect();
    assert_eq!(rest, losses[5..]);
    let (_, frozen) = weights(resumed.model());
    assert_eq!(frozen, weights(&start).1, "restored frozen");

    // AdamW keeps two moments for each trainable weight only: the adapters' share.
    let full_dir = tempfile::tempdir().unwrap();
    let base = seeded(3, &ad, || tiny().init(&ad));
    let mut full = Trainer::new(base, &ad, &mix, SHAPE, &optim(), 9);
    full.advance();
    full.save(full_dir.path()).unwrap();
    let size = |d: &std::path::Path, file| std::fs::metadata(d.join(file)).unwrap().len();
    let (adapters, frozen) = weights(&start);
    let state = |d| size(d, "optimizer.bpk");
    let (lora_state, full_state) = (state(dir.path()), state(full_dir.path()));
    assert!(
        lora_state * 2 < full_state,
        "optimizer state: LoRA {lora_state} B, full {full_state} B \
         ({} adapter weights, {} frozen)",
        adapters.len(),
        frozen.len()
    );
    // Nor does it write the base again: the weights file holds the adapters (4 bytes each,
    // and the file's index), the starting model supplies the rest on restore.
    let lora_weights = size(dir.path(), "model.bpk");
    assert!(
        lora_weights < 4 * adapters.len() as u64 + 16_384 && lora_weights < frozen.len() as u64,
        "checkpoint weights: {lora_weights} B for {} adapter weights ({} frozen)",
        adapters.len(),
        frozen.len()
    );
}

/// Recomputing activations (`grad_checkpoint`) trains the adapters to the same losses.
#[test]
fn checkpointing_trains_the_adapters_to_the_same_losses() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let (_, start) = base_and_lora(&ad, "all");
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let losses = |on: bool| {
        let mut trainer =
            Trainer::new(start.clone(), &ad, &mix, SHAPE, &optim(), 9).checkpointing(on);
        (0..SHAPE.steps)
            .map(|_| trainer.advance())
            .collect::<Vec<f64>>()
    };
    assert_eq!(losses(false), losses(true));
}

/// Mixed precision trains on a working copy of the weights: a LoRA model's copy keeps its
/// base frozen too (here the copy is fp32, the path bf16 takes on a GPU).
#[test]
fn training_on_a_working_copy_moves_the_adapters_only() {
    let device = cpu_device();
    let ad = device.clone().autodiff();
    let (_, start) = base_and_lora(&ad, "all");
    let data = examples();
    let mix = Mix::new(vec![(&data, 1.0)]);
    let mut trainer = Trainer::new(start.clone(), &ad, &mix, SHAPE, &optim(), 3)
        .computing_in(Some(burn::tensor::FloatDType::F32));
    for _ in 0..3 {
        trainer.advance();
    }
    let (moved, still) = weights(trainer.model());
    let (adapters, frozen) = weights(&start);
    assert_eq!(still, frozen, "a frozen weight moved");
    assert_ne!(moved, adapters);
}
