//! SmolLM2-135M-Instruct on sweep's trainer: one AdamW step on a fixed 4 × 128-token batch
//! (every weight, every next token a target; then the same with the first 64 positions a
//! prompt the loss leaves out; then LoRA r 8 on all seven projections), and batched greedy
//! generation (8 prompts of 24 tokens, 32 new tokens each, KV cache).
//! The same shapes and token ids as `scripts/bench_smollm2.py` (transformers, eager), so
//! `scripts/bench-smollm2` puts the two side by side. Prints medians.
//!
//! `scripts/smollm2 && cargo bench --workspace --bench smollm2`; with
//! `SWEEP_BENCH_BACKEND=tch` (after `. .venv-torch/sweep-tch.env`, `--features sweep/tch`)
//! on libtorch.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sweep_trainer::device::Backend;
use sweep_trainer::generate::{generate_ids, Tokens};
use sweep_trainer::hf;
use sweep_trainer::lora::{parse_targets, LoraSpec};
use sweep_trainer::tokenizer::Encoded;
use sweep_trainer::train::{Mix, OptimConfig, RunShape, Trainer};

/// Token `j` of row `i` of the synthetic batches (the Python side computes the same).
/// Positions of an instruction batch's prompt: their next tokens are not predicted.
const PROMPT: usize = 64;

fn token(i: usize, j: usize) -> u32 {
    ((i * 7919 + j * 104_729) % 48_000 + 100) as u32
}

fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs[xs.len() / 2].as_secs_f64()
}

/// The median time of `runs` optimizer steps of `trainer`, after one to warm up.
fn step_time(mut trainer: Trainer<'_>, runs: usize) -> f64 {
    let mut times = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        trainer.advance();
        if run > 0 {
            times.push(start.elapsed());
        }
    }
    median(times)
}

fn main() {
    let name = std::env::var("SWEEP_BENCH_BACKEND").unwrap_or_else(|_| "flex".into());
    let backend: Backend = serde_json::from_value(serde_json::Value::String(name.clone()))
        .unwrap_or_else(|_| panic!("SWEEP_BENCH_BACKEND: flex or tch, not {name}"));
    let selected = backend.select("").expect("backend built in");
    let device = selected.device;
    let dir = std::env::var_os("SWEEP_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct")
        });
    let runs: usize = std::env::var("SWEEP_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);

    // Generation: 8 prompts × 24 tokens, 32 new tokens each, no stop token.
    let model = hf::load(&dir, Some(256), &device).unwrap_or_else(|e| panic!("{e}"));
    let prompts: Vec<Vec<u32>> = (0..8)
        .map(|i| (0..24).map(|j| token(i, j)).collect())
        .collect();
    let tokens = Tokens { stop: &[], pad: 0 };
    let mut times = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let out = generate_ids(&model.model, &prompts, tokens, 32, 256, &device);
        assert!(out.iter().all(|g| g.tokens.len() == 32));
        if run > 0 {
            times.push(start.elapsed());
        }
    }
    let generation = median(times);
    drop(model);

    // Training: AdamW steps on one 4 × 128 batch, every position a target.
    let ad = device.clone().autodiff();
    let model = hf::load(&dir, Some(256), &ad)
        .unwrap_or_else(|e| panic!("{e}"))
        .model;
    let batch: Vec<Encoded> = (0..4)
        .map(|i| Encoded {
            tokens: (0..129).map(|j| token(i, j)).collect(),
            target: vec![true; 129],
        })
        .collect();
    let mix = Mix::new(vec![(&batch, 1.0)]);
    let shape = RunShape {
        steps: runs + 1,
        batch_size: 4,
        micro_batch: 4,
    };
    let optim = OptimConfig {
        lr: 1e-5,
        warmup: 0,
        ..OptimConfig::default()
    };
    let step = step_time(
        Trainer::new(model.clone(), &ad, &mix, shape, &optim, 0),
        runs,
    );

    // The same step on an instruction batch: the first 64 positions are the prompt, whose
    // next tokens the loss leaves out, as fine-tuning on instruction data does.
    let instruction: Vec<Encoded> = batch
        .iter()
        .map(|e| Encoded {
            tokens: e.tokens.clone(),
            target: (0..129).map(|j| j > PROMPT).collect(),
        })
        .collect();
    let instruction_mix = Mix::new(vec![(&instruction, 1.0)]);
    let instruction_step = step_time(
        Trainer::new(model, &ad, &instruction_mix, shape, &optim, 0),
        runs,
    );

    // LoRA r 8, α 16, on all seven projections: the same batch and step.
    let spec = LoraSpec {
        rank: 8,
        alpha: 16.0,
        targets: parse_targets("all").expect("targets"),
        ..LoraSpec::default()
    };
    let model = hf::load(&dir, Some(256), &ad)
        .unwrap_or_else(|e| panic!("{e}"))
        .model
        .with_lora(&spec, &ad);
    let lora_optim = OptimConfig { lr: 1e-4, ..optim };
    let lora_step = step_time(Trainer::new(model, &ad, &mix, shape, &lora_optim, 0), runs);
    println!(
        "{}",
        serde_json::json!({
            "impl": format!("sweep {}", selected.name),
            "runs": runs,
            "train_step_s": step,
            "instruction_step_s": instruction_step,
            "lora_step_s": lora_step,
            "generate_s": generation,
            "generate_tokens_per_s": 8.0 * 32.0 / generation,
        })
    );
}
