//! sweep's benchmark scoring against lm-evaluation-harness's on the same items: the 20-item
//! fixtures of every format sweep reads, scored on a tiny random Llama whose 128-token window
//! makes both cut long contexts from the left. `scripts/lm-eval-parity` writes the model and
//! lm-eval's per-item numbers; ignored by default because it needs torch and lm-eval:
//!
//!   scripts/libtorch-env && scripts/lm-eval-parity

use std::path::{Path, PathBuf};
use std::time::Instant;

use sweep_trainer::benchmark::{BenchmarkSpec, ItemScore};
use sweep_trainer::chat::Chat;
use sweep_trainer::hf;
use sweep_trainer::Device;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/benchmarks");

#[test]
#[ignore = "needs scripts/lm-eval-parity (torch and lm-evaluation-harness)"]
fn loglikelihoods_and_verdicts_equal_lm_evaluation_harness() {
    let root = PathBuf::from(
        std::env::var_os("SWEEP_LM_EVAL_PARITY")
            .expect("SWEEP_LM_EVAL_PARITY names the directory scripts/lm-eval-parity writes"),
    );
    // Flex always; libtorch too in the libtorch build.
    let devices = sweep_trainer::device::cpu_devices();
    for device in &devices {
        compare(&root, device);
    }
}

fn compare(root: &Path, device: &Device) {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("reference.json")).unwrap())
            .unwrap();
    let benchmarks = reference["tasks"]
        .as_object()
        .expect("one entry per benchmark");
    assert_eq!(benchmarks.len(), 5, "every format, ARC in both forms");
    let ours = score(&root.join("model"), Path::new(FIXTURES), benchmarks, device);
    for (name, theirs) in benchmarks {
        let (ours, _) = &ours[name];
        let theirs = theirs.as_array().unwrap();
        assert_eq!(ours.len(), 20, "{name}");
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let mut worst: f64 = 0.0;
        for (i, (our, their)) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(their["doc_id"].as_u64(), Some(i as u64), "{name}");
            let lls: Vec<f64> = their["loglikelihoods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(
                our.loglikelihoods.len(),
                lls.len(),
                "{name} item {i}: choices"
            );
            for (a, b) in our.loglikelihoods.iter().zip(&lls) {
                worst = worst.max((a - b).abs());
                assert!(
                    (a - b).abs() <= 1e-4,
                    "{name} item {i} on {device:?}: log-likelihoods {:?} against lm-eval's {lls:?}",
                    our.loglikelihoods
                );
            }
            assert_eq!(
                our.acc,
                their["acc"].as_f64() == Some(1.0),
                "{name} item {i}: acc"
            );
            assert_eq!(
                our.acc_norm,
                their["acc_norm"].as_f64() == Some(1.0),
                "{name} item {i}: acc_norm"
            );
        }
        eprintln!("{name} on {device:?}: 20 items, max |Δ log-likelihood| {worst:.2e}");
    }
}

/// sweep's scores of each benchmark named in `names`, read from `dir`, on the checkpoint in
/// `model`, with the seconds each took (tokenising and scoring).
fn score(
    model: &Path,
    dir: &Path,
    names: &serde_json::Map<String, serde_json::Value>,
    device: &Device,
) -> std::collections::BTreeMap<String, (Vec<ItemScore>, f64)> {
    let loaded = hf::load(model, None, device).unwrap_or_else(|e| panic!("{e}"));
    let window = loaded.config.arch.max_seq;
    let chat = Chat::Hf(Box::new(loaded.tokenizer));
    names
        .keys()
        .map(|name| {
            let benchmark = BenchmarkSpec::try_from(name.clone())
                .unwrap()
                .read(dir, None)
                .unwrap();
            let started = Instant::now();
            let prepared = benchmark
                .prepare(window, |t| chat.encode_text(t))
                .unwrap_or_else(|e| panic!("{e}"));
            let scores = prepared.score(&loaded.model, chat.pad_id(), device);
            (name.clone(), (scores, started.elapsed().as_secs_f64()))
        })
        .collect()
}

/// SmolLM2-135M-Instruct on items of the public HellaSwag and ARC-Easy files: the same
/// `acc_norm` as lm-evaluation-harness on every item, log-likelihoods within f32 rounding of
/// 30 layers, and each side's items per second (docs/performance.md):
///
///   scripts/benchmarks && scripts/lm-eval-parity --smollm2 200
#[test]
#[ignore = "needs scripts/benchmarks, scripts/smollm2 and scripts/lm-eval-parity --smollm2"]
fn smollm2_acc_norm_equals_lm_evaluation_harness() {
    let root = PathBuf::from(
        std::env::var_os("SWEEP_LM_EVAL_SMOLLM2")
            .expect("SWEEP_LM_EVAL_SMOLLM2 names the directory scripts/lm-eval-parity writes"),
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("reference.json")).unwrap())
            .unwrap();
    let model = PathBuf::from(reference["model"].as_str().unwrap());
    let benchmarks = reference["tasks"].as_object().unwrap();
    // Flex always; libtorch too in the libtorch build.
    let devices = sweep_trainer::device::cpu_devices();
    let items: usize = benchmarks
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    let theirs_seconds = reference["seconds"].as_f64().unwrap();
    eprintln!(
        "lm-eval (transformers, {} threads): {items} items in {theirs_seconds:.1} s, {:.2} items/s",
        reference["threads"],
        items as f64 / theirs_seconds
    );
    for device in &devices {
        let ours = score(&model, &root.join("subset"), benchmarks, device);
        let mut seconds = 0.0;
        for (name, theirs) in benchmarks {
            let (ours, took) = &ours[name];
            seconds += took;
            let theirs = theirs.as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "{name}");
            let share = |hits: usize| hits as f64 / ours.len() as f64;
            let ours_norm = share(ours.iter().filter(|s| s.acc_norm).count());
            let theirs_norm = share(
                theirs
                    .iter()
                    .filter(|t| t["acc_norm"].as_f64() == Some(1.0))
                    .count(),
            );
            let (mut worst, mut differ) = (0.0f64, 0);
            for (our, their) in ours.iter().zip(theirs) {
                for (a, b) in our
                    .loglikelihoods
                    .iter()
                    .zip(their["loglikelihoods"].as_array().unwrap())
                {
                    let gap = (a - b.as_f64().unwrap()).abs();
                    if gap > 1e-2 {
                        eprintln!(
                            "{name} line {}: {:?} against lm-eval's {}",
                            our.line, our.loglikelihoods, their["loglikelihoods"]
                        );
                    }
                    worst = worst.max(gap);
                }
                differ += usize::from(our.acc_norm != (their["acc_norm"].as_f64() == Some(1.0)));
            }
            eprintln!(
                "{name} on {device:?}: {} items, acc_norm {ours_norm:.3} (lm-eval {theirs_norm:.3}), \
                 {differ} items judged differently, max |Δ log-likelihood| {worst:.2e}",
                ours.len()
            );
            assert_eq!(
                differ, 0,
                "{name}: acc_norm verdicts differ on {differ} items"
            );
        }
        eprintln!(
            "sweep on {device:?}: {items} items in {seconds:.1} s, {:.2} items/s ({:.2}x lm-eval's)",
            items as f64 / seconds,
            theirs_seconds / seconds
        );
    }
}
