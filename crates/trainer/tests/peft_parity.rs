//! sweep's LoRA against PEFT's on tiny random checkpoints that `scripts/peft-parity` writes
//! with PEFT's adapters and reference numbers: the logits of a model with a given adapter, and
//! the adapter after one AdamW step (global-norm clipping, decoupled weight decay) from it.
//! Then it writes its own adapter directory and merged model, which the script's `check`
//! loads in PEFT and transformers. Ignored by default: it needs torch, transformers and peft.
//!
//!   scripts/libtorch-env && scripts/peft-parity

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use sweep_trainer::batch::{loss, make_batch};
use sweep_trainer::hf;
use sweep_trainer::lora::Target;
use sweep_trainer::model::{Arch, Lm};
use sweep_trainer::tokenizer::Encoded;
use sweep_trainer::train::{Mix, OptimConfig, RunShape, Schedule, Trainer};
use sweep_trainer::Device;

#[path = "support/numbers.rs"]
mod numbers;
use numbers::numbers;

#[test]
#[ignore = "needs scripts/peft-parity (torch, transformers and peft)"]
fn lora_logits_and_one_adamw_step_equal_pefts() {
    let root = PathBuf::from(
        std::env::var_os("SWEEP_PEFT_PARITY")
            .expect("SWEEP_PEFT_PARITY names the directory scripts/peft-parity writes"),
    );
    let devices = sweep_trainer::device::cpu_devices();
    let mut cases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("reference.json").is_file() {
            continue;
        }
        for (i, device) in devices.iter().enumerate() {
            // The first device's results are what `check` loads in PEFT and transformers.
            compare(&dir, device, i == 0);
        }
        cases += 1;
    }
    assert!(cases >= 2, "no references under {}", root.display());
}

fn compare(dir: &Path, device: &Device, save: bool) {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let base = hf::load(dir, Some(128), device).unwrap_or_else(|e| panic!("{e}"));
    let arch = base.model.arch().clone();
    let adapters = hf::peft::load_adapter(&dir.join("adapter"), &arch, device)
        .unwrap_or_else(|e| panic!("{e}"));
    let model = base.model.clone().with_adapters(adapters);
    let start = model.clone();
    let ids: Vec<u32> = numbers(&reference["ids"])
        .iter()
        .map(|&x| x as u32)
        .collect();
    let input = || {
        Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&t| i64::from(t)).collect(), [1, ids.len()]),
            device,
        )
    };
    let logits = |m: &Lm| -> Vec<f64> {
        m.forward(input())
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let expected = numbers(&reference["logits"]);
    let worst = worst_difference(&logits(&model), &expected);
    let adapted = worst_difference(&logits(&base.model), &expected);
    assert!(
        adapted > 0.1,
        "{}: the adapter moves the logits by {adapted} only",
        dir.display()
    );
    let scale = expected.iter().map(|x| x.abs()).fold(0.0, f64::max);
    println!(
        "{} on {device:?}: logits with PEFT's adapter, max |d| {worst:.2e} (logits up to {scale:.1})",
        dir.display()
    );
    // As tests/hf_parity.rs holds the base models: 1e-4, relative to logits beyond 50.
    assert!(
        worst <= 1e-4 * (scale / 50.0).max(1.0),
        "{}: logits differ by {worst}",
        dir.display()
    );

    // One AdamW step on the sequence, every next token a target, as PEFT + torch took it.
    let step = &reference["step"];
    let num = |k: &str| step[k].as_f64().unwrap();
    let optim = OptimConfig {
        lr: num("lr"),
        weight_decay: num("weight_decay") as f32,
        beta1: num("beta1") as f32,
        beta2: num("beta2") as f32,
        epsilon: num("eps") as f32,
        grad_clip: Some(num("grad_clip") as f32),
        warmup: 0,
        schedule: Schedule::Constant,
    };
    let example = vec![Encoded {
        tokens: ids.clone(),
        target: vec![true; ids.len()],
    }];
    let mix = Mix::new(vec![(&example, 1.0)]);
    let shape = RunShape {
        steps: 1,
        batch_size: 1,
        micro_batch: 1,
    };
    let ad = device.clone().autodiff();
    let mut trainer = Trainer::new(model.to_device(&ad).train(), &ad, &mix, shape, &optim, 0);
    let loss = trainer.advance();
    let torch_loss = reference["loss"].as_f64().unwrap();
    assert!(
        (loss - torch_loss).abs() < 1e-4,
        "{}: loss {loss} against torch's {torch_loss}",
        dir.display()
    );
    let stepped = trainer.model().valid();
    let ours = stepped.adapters().expect("a LoRA model");
    if arch.fused {
        // PEFT trains one A for q, k and v together (the fused module's), sweep one for each
        // projection: the same model at the start (the logits above), a different
        // parametrization after a step. The step is compared on the unfused models.
        println!(
            "{} on {device:?}: fused modules, one step taken (not compared)",
            dir.display()
        );
    } else {
        compare_step(dir, device, &arch, &start, &stepped, &example[0], &optim);
    }

    if save {
        let out = dir.join("sweep");
        std::fs::create_dir_all(&out).unwrap();
        hf::peft::save_adapter(ours, &arch, dir, &out.join("adapter")).unwrap();
        let merged = stepped.clone().merged();
        hf::save(&merged, dir, &out.join("merged")).unwrap();
        let reference = serde_json::json!({"ids": ids, "logits": logits(&stepped)});
        std::fs::write(out.join("logits.json"), reference.to_string()).unwrap();
    }
}

/// The adapters' gradients and the adapters after one AdamW step, against PEFT + torch's.
fn compare_step(
    dir: &Path,
    device: &Device,
    arch: &Arch,
    start: &Lm,
    stepped: &Lm,
    example: &Encoded,
    optim: &OptimConfig,
) {
    let ours = stepped.adapters().expect("a LoRA model");
    let theirs = hf::peft::load_adapter(&dir.join("stepped"), arch, device).unwrap();
    let their_grads = hf::peft::load_adapter(&dir.join("grads"), arch, device).unwrap();
    let my_grads = gradients(start, example, device);
    let (mut grad_worst, mut grad_scale, mut step_worst, mut noise, mut compared) =
        (0f64, 0f64, 0f64, 0, 0);
    // The step sees the gradients clipped to the global norm: Adam's ε meets them there.
    let squares: f64 = their_grads
        .layers
        .iter()
        .flat_map(|l| Target::ALL.into_iter().filter_map(|t| l.get(t)))
        .flat_map(|l| [l.a.val(), l.b.val()])
        .map(|t| f64::from(t.powi_scalar(2).sum().into_scalar::<f32>()))
        .sum();
    let clip = optim
        .grad_clip
        .map_or(1.0, |c| (f64::from(c) / (squares.sqrt() + 1e-6)).min(1.0));
    let factors = |l: &sweep_trainer::lora::Lora| [l.a.val(), l.b.val()];
    let layers = ours
        .layers
        .iter()
        .zip(&theirs.layers)
        .zip(&their_grads.layers);
    for (i, ((mine, peft), grads)) in layers.enumerate() {
        for target in Target::ALL {
            let (Some(m), Some(p), Some(g)) =
                (mine.get(target), peft.get(target), grads.get(target))
            else {
                continue;
            };
            for f in 0..2 {
                let values =
                    |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let (x, y, g) = (
                    values(factors(m)[f].clone()),
                    values(factors(p)[f].clone()),
                    values(factors(g)[f].clone()),
                );
                let ours_g = values(my_grads[i][&(target, f)].clone());
                for k in 0..x.len() {
                    grad_worst = grad_worst.max(f64::from((ours_g[k] - g[k]).abs()));
                    grad_scale = grad_scale.max(f64::from(g[k].abs()));
                    // Adam's first step is lr · g / (|g| + ε): where |g| is within a hundred ε
                    // of zero, f32 rounding in either implementation decides it.
                    if clip * f64::from(g[k].abs()) < 100.0 * f64::from(optim.epsilon) {
                        noise += 1;
                        continue;
                    }
                    compared += 1;
                    step_worst = step_worst.max(f64::from((x[k] - y[k]).abs()));
                }
            }
        }
    }
    println!(
        "{} on {device:?}: gradients max |d| {grad_worst:.2e} (largest {grad_scale:.2e}); \
         adapter after one AdamW step max |d| {step_worst:.2e} ({noise} weight(s) with clipped |g| < 100 ε left out, {compared} compared)",
        dir.display()
    );
    assert!(
        grad_worst <= 1e-4 * grad_scale,
        "{}: gradients differ by {grad_worst}",
        dir.display()
    );
    assert!(
        step_worst < 1e-5,
        "{}: adapters differ by {step_worst}",
        dir.display()
    );
    assert!(
        noise * 20 < compared,
        "{}: {noise} of {} gradients near zero",
        dir.display(),
        noise + compared
    );
}

fn worst_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The adapters' gradients of the mean next-token loss on `example`, by block, target and
/// factor (0: A, 1: B), without clipping.
fn gradients(
    model: &Lm,
    example: &Encoded,
    device: &Device,
) -> Vec<std::collections::HashMap<(Target, usize), Tensor<2>>> {
    let ad = device.clone().autodiff();
    let model = model.clone().to_device(&ad).train();
    let batch = make_batch(&[example], &ad);
    let (mean, _) = loss(&model, &batch);
    let grads = GradientsParams::from_grads(mean.backward(), &model);
    model
        .adapters()
        .expect("a LoRA model")
        .layers
        .iter()
        .map(|layer| {
            let mut out = std::collections::HashMap::new();
            for target in Target::ALL {
                if let Some(lora) = layer.get(target) {
                    for (f, id) in [(0, lora.a.id), (1, lora.b.id)] {
                        out.insert((target, f), grads.get::<2>(id).expect("a gradient"));
                    }
                }
            }
            out
        })
        .collect()
}
