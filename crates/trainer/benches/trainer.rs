//! The built-in trainer on the CPU backend: optimizer step time (the real alignment batches,
//! and a fixed 16 × 64 batch comparable with `scripts/bench_pytorch.py`), the EMA update as a
//! share of a step, and greedy generation throughput. Prints medians; see
//! docs/performance.md.
//!
//! `cargo bench -p sweep-trainer --bench trainer`; after `. .venv-torch/sweep-tch.env`,
//! `SWEEP_BENCH_BACKEND=tch cargo bench --workspace --features sweep/tch --bench trainer` the
//! same on libtorch (CPU, or GPU `SWEEP_BENCH_GPU`). With `SWEEP_BENCH_PHASES=N` it times
//! only the fixed batch's phases, over `N` steps: the loop to run under `perf record`.

use std::time::{Duration, Instant};

use burn::module::Module;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sweep_trainer::config::TrainerConfig;
use sweep_trainer::device::Backend;
use sweep_trainer::ema::Ema;
use sweep_trainer::generate::generate;
use sweep_trainer::model::ModelConfig;
use sweep_trainer::setup::Setup;
use sweep_trainer::tokenizer::Encoded;
use sweep_trainer::train::{Mix, OptimConfig, RunShape, Trainer};

use burn::optim::{GradientsParams, ModuleOptimizer};
use sweep_trainer::adamw::AdamW;
use sweep_trainer::batch::{loss, make_batch};
use sweep_trainer::clip::clip_global_norm;

/// The backend under test: `SWEEP_BENCH_BACKEND` (`flex` by default, or `tch`), on the GPU
/// `SWEEP_BENCH_GPU` names (tch only; the CPU without it).
fn device() -> sweep_trainer::Device {
    let name = std::env::var("SWEEP_BENCH_BACKEND").unwrap_or_else(|_| "flex".into());
    let backend: Backend = serde_json::from_value(serde_json::Value::String(name.clone()))
        .unwrap_or_else(|_| panic!("SWEEP_BENCH_BACKEND: flex or tch, not {name}"));
    let gpu = std::env::var("SWEEP_BENCH_GPU").unwrap_or_default();
    let selected = backend.select(&gpu).expect("backend built in");
    println!("device: {}", selected.name);
    selected.device
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn optim() -> OptimConfig {
    OptimConfig {
        weight_decay: 0.1,
        ..OptimConfig::default()
    }
}

/// Median time of `n` optimizer steps after 3 warm-up steps.
fn step_time(mix: &Mix<'_>, config: &ModelConfig, n: usize) -> Duration {
    let device = device();
    let ad = device.autodiff();
    ad.seed(0);
    let model = config.init(&ad);
    let shape = RunShape {
        steps: n + 3,
        batch_size: 16,
        micro_batch: 16,
    };
    let mut trainer = Trainer::new(model, &ad, mix, shape, &optim(), 0);
    for _ in 0..3 {
        trainer.advance();
    }
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                trainer.advance();
                t.elapsed()
            })
            .collect(),
    )
}

/// Median milliseconds of the three phases of a step on `examples` (one batch): forward and
/// loss (read back to the host), backward (to parameter gradients), and clipping with the
/// AdamW update; to see where one backend loses to another.
fn phases(config: &ModelConfig, examples: &[Encoded], n: usize) -> (f64, f64, f64) {
    let device = device();
    let ad = device.autodiff();
    ad.seed(0);
    let mut model = config.init(&ad);
    let o = optim();
    let mut optimizer = ModuleOptimizer::from(AdamW::new(&o));
    let refs: Vec<&Encoded> = examples.iter().collect();
    let batch = make_batch(&refs, &ad);
    let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + 3 {
        let t = Instant::now();
        let (mean, _) = loss(&model, &batch);
        let _ = mean.clone().inner().into_scalar::<f32>();
        let t1 = Instant::now();
        let mut grads = GradientsParams::from_grads(mean.backward(), &model);
        let t2 = Instant::now();
        clip_global_norm(&model, &mut grads, 1.0);
        model = optimizer.step(o.lr, model, grads);
        ad.sync().expect("device sync");
        let t3 = Instant::now();
        if i >= 3 {
            fwd.push(t1 - t);
            bwd.push(t2 - t1);
            opt.push(t3 - t2);
        }
    }
    (ms(median(fwd)), ms(median(bwd)), ms(median(opt)))
}

/// `n` random 65-byte sequences (64 predictions each), every token a target: batches of 16 of
/// them are the fixed batch that `scripts/bench_pytorch.py` times too.
fn fixed_examples(n: usize) -> Vec<Encoded> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    (0..n)
        .map(|_| Encoded {
            tokens: (0..65).map(|_| rng.random_range(0..256)).collect(),
            target: vec![true; 65],
        })
        .collect()
}

fn main() {
    let setup = Setup::new(TrainerConfig::default()).expect("built-in data");
    let device = device();
    let config = ModelConfig::default();
    if let Ok(n) = std::env::var("SWEEP_BENCH_PHASES") {
        let n = n.parse().expect("SWEEP_BENCH_PHASES: a number of steps");
        let (f, b, u) = phases(&config, &fixed_examples(16), n);
        println!("phases {f:.1} / {b:.1} / {u:.1} ms");
        return;
    }
    let params = config.init(&device).num_params();
    println!("model: {config:?}, {params} parameters");

    let aligned = step_time(&setup.alignment_mix(), &config, 20);
    let finetune = step_time(&setup.finetune_mix(0.0), &config, 20);
    let fixed = fixed_examples(64);
    let fixed_mix = Mix::new(vec![(&fixed, 1.0)]);
    let fixed_step = step_time(&fixed_mix, &config, 20);
    let (forward, backward, update) = phases(&config, &fixed[..16], 20);

    let start = config.init(&device);
    let mut ema = Ema::new(&start, 0.99);
    let ad_model = start.clone().to_device(&device.clone().autodiff()).train();
    let ema_time = median(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                ema.update(&ad_model);
                t.elapsed()
            })
            .collect(),
    );

    let prompts: Vec<String> = (0..128)
        .map(|i| format!("How do I fix a car number {i}?"))
        .collect();
    let mut tokens = 0;
    let gen = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let out = generate(&start, &prompts, 48, config.max_seq, &device);
                tokens = out
                    .iter()
                    .map(|r| r.text.len() + usize::from(r.ended))
                    .sum();
                t.elapsed()
            })
            .collect(),
    );

    println!("| measurement | median |");
    println!("|---|---|");
    println!(
        "| step, alignment batches (16 examples, padded to the longest) | {:.1} ms |",
        ms(aligned)
    );
    println!(
        "| step, fine-tuning batches (16 examples) | {:.1} ms |",
        ms(finetune)
    );
    println!(
        "| step, fixed 16 × 64 batch (the PyTorch comparison) | {:.1} ms |",
        ms(fixed_step)
    );
    println!(
        "| fixed batch: forward + loss / backward / clip + AdamW | {forward:.1} / {backward:.1} / {update:.1} ms |"
    );
    println!(
        "| EMA update (all parameters) | {:.2} ms ({:.1} % of an alignment step) |",
        ms(ema_time),
        100.0 * ema_time.as_secs_f64() / aligned.as_secs_f64()
    );
    println!(
        "| greedy generation, 128 prompts × ≤ 48 tokens, KV cache, batches of 32 | {:.2} s, {:.0} tokens/s |",
        gen.as_secs_f64(),
        tokens as f64 / gen.as_secs_f64()
    );
}
