//! Peak memory of training, full fine-tuning against LoRA (ranks 8 and 64, attention only and
//! every linear layer), on a model with Qwen2.5-0.5B's shapes and random weights (built here
//! from its config.json's numbers; nothing is downloaded). Each case runs in a process of its
//! own (this program again), with and without activation checkpointing, takes two AdamW
//! steps on a batch of 2 × 256 tokens (the second with the optimizer state in place) and
//! reports its peak resident memory (`VmHWM`) and its step time; docs/performance.md has the
//! numbers. The bf16 cases compute as `precision = "bf16"` does on a GPU (the CPU trainer
//! computes in fp32): full fine-tuning on a bf16 copy of fp32 weights, LoRA over a base held
//! in bf16. flex multiplies bf16 matrices by converting both to fp32 first, so those cases
//! hold one product's fp32 operands more than a GPU would.
//!
//! `cargo bench -p sweep-trainer --bench lora_memory` (about 10 GB for the full case).

use std::process::Command;
use std::time::Instant;

use burn::module::Module;

use burn::tensor::FloatDType;
use sweep_trainer::lora::{parse_targets, LoraSpec};
use sweep_trainer::model::{Arch, Rope, RopeScaling, RopeStyle};
use sweep_trainer::precision::narrow_matrices;
use sweep_trainer::tokenizer::Encoded;
use sweep_trainer::train::{Mix, OptimConfig, RunShape, Trainer};

/// Qwen2.5-0.5B's `config.json`: 24 blocks of width 896, 14 query and 2 key/value heads of
/// 64, an MLP of 4864, biases on q/k/v, a tied head over 151,936 tokens.
fn qwen25_05b() -> Arch {
    Arch {
        vocab: 151_936,
        d_model: 896,
        n_layers: 24,
        n_heads: 14,
        n_kv_heads: 2,
        head_dim: 64,
        d_ff: 4864,
        rms_eps: 1e-6,
        rope: Rope {
            theta: 1_000_000.0,
            style: RopeStyle::Halves,
            scaling: RopeScaling::None,
        },
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        tied: true,
        fused: false,
        max_seq: 256,
    }
}

/// One process's training setup.
struct Case {
    name: &'static str,
    /// LoRA's rank and targets; none: full fine-tuning.
    lora: Option<(usize, &'static str)>,
    /// Whether the backward pass recomputes activations (`grad_checkpoint`).
    checkpointing: bool,
    /// bf16 compute, as `precision = "bf16"` runs on a GPU: full fine-tuning on a bf16 copy
    /// of its fp32 weights, LoRA over a base held in bf16 with fp32 adapters.
    bf16: bool,
}

const fn case(
    name: &'static str,
    lora: Option<(usize, &'static str)>,
    checkpointing: bool,
    bf16: bool,
) -> Case {
    Case {
        name,
        lora,
        checkpointing,
        bf16,
    }
}

const ATTN8: Option<(usize, &str)> = Some((8, "attention"));
const ATTN64: Option<(usize, &str)> = Some((64, "attention"));
const ALL8: Option<(usize, &str)> = Some((8, "all"));
const ALL64: Option<(usize, &str)> = Some((64, "all"));

/// Each precision's first case is full fine-tuning, which the cases after it are shares of.
const CASES: [Case; 16] = [
    case("full fine-tuning", None, false, false),
    case("LoRA r 8, attention", ATTN8, false, false),
    case("LoRA r 64, attention", ATTN64, false, false),
    case("LoRA r 8, all linear", ALL8, false, false),
    case("LoRA r 64, all linear", ALL64, false, false),
    case("full fine-tuning, checkpointing", None, true, false),
    case("LoRA r 8, attention, checkpointing", ATTN8, true, false),
    case("LoRA r 64, attention, checkpointing", ATTN64, true, false),
    case("LoRA r 8, all linear, checkpointing", ALL8, true, false),
    case("LoRA r 64, all linear, checkpointing", ALL64, true, false),
    case("full fine-tuning, bf16", None, false, true),
    case("LoRA r 8, attention, bf16", ATTN8, false, true),
    case("LoRA r 64, all linear, bf16", ALL64, false, true),
    case("full fine-tuning, bf16, checkpointing", None, true, true),
    case(
        "LoRA r 8, attention, bf16, checkpointing",
        ATTN8,
        true,
        true,
    ),
    case(
        "LoRA r 64, all linear, bf16, checkpointing",
        ALL64,
        true,
        true,
    ),
];

/// The process's peak resident memory, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024.0
}

/// One case, in this process: prints `peak_mib step_s trainable`.
fn run_case(index: usize) {
    let Case {
        lora,
        checkpointing,
        bf16,
        ..
    } = CASES[index];
    let compute = bf16.then_some(FloatDType::BF16);
    let device = sweep_trainer::cpu_device();
    let ad = device.clone().autodiff();
    device.seed(0);
    let arch = qwen25_05b();
    let mut model = arch.init(&device);
    let mut trainable = arch.num_params();
    if let Some((rank, targets)) = lora {
        let spec = LoraSpec {
            rank,
            alpha: 2.0 * rank as f64,
            targets: parse_targets(targets).expect("targets"),
            ..LoraSpec::default()
        };
        if let Some(dtype) = compute {
            model = narrow_matrices(model, dtype);
        }
        model = model.with_lora(&spec, &device);
        trainable = spec
            .targets
            .iter()
            .map(|t| {
                let (i, o) = arch.projection_dims(*t);
                rank * (i + o)
            })
            .sum::<usize>()
            * arch.n_layers;
    }
    let examples: Vec<Encoded> = (0..2)
        .map(|k| Encoded {
            tokens: (0..257)
                .map(|i| ((i * 7919 + k * 104_729) % 151_936) as u32)
                .collect(),
            target: vec![true; 257],
        })
        .collect();
    let mix = Mix::new(vec![(&examples, 1.0)]);
    let shape = RunShape {
        steps: 2,
        batch_size: 2,
        micro_batch: 2,
    };
    let mut trainer = Trainer::new(
        model.to_device(&ad).train(),
        &ad,
        &mix,
        shape,
        &OptimConfig::default(),
        0,
    )
    .computing_in(compute)
    .checkpointing(checkpointing);
    trainer.advance();
    let start = Instant::now();
    trainer.advance();
    let step = start.elapsed().as_secs_f64();
    println!("{} {step} {trainable}", peak_mib());
}

fn main() {
    if let Ok(case) = std::env::var("SWEEP_LORA_MEMORY_CASE") {
        run_case(case.parse().expect("a case number"));
        return;
    }
    let arch = qwen25_05b();
    println!(
        "Qwen2.5-0.5B shapes, random weights ({:.0} M parameters), flex, batch 2 × 256 tokens, AdamW; shares within each precision",
        arch.num_params() as f64 / 1e6
    );
    println!(
        "| case | trainable parameters | peak resident memory | share of full | second step |"
    );
    println!("|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("this program");
    let mut full = None;
    let mut precision = None;
    for (index, Case { name, bf16, .. }) in CASES.iter().enumerate() {
        if precision != Some(*bf16) {
            (precision, full) = (Some(*bf16), None);
        }
        let out = Command::new(&exe)
            .env("SWEEP_LORA_MEMORY_CASE", index.to_string())
            .output()
            .expect("run a case");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(|f| f.parse().expect("numbers"))
            .collect();
        let (peak, step, trainable) = (fields[0], fields[1], fields[2]);
        let full_peak = *full.get_or_insert(peak);
        println!(
            "| {name} | {:.2} M | {:.0} MiB | {:.0} % | {step:.1} s |",
            trainable / 1e6,
            peak,
            100.0 * peak / full_peak
        );
    }
}
