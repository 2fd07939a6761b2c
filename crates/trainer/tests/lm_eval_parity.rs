//! sweep's benchmark scoring against lm-evaluation-harness's on the same items: the 20-item
//! fixtures of every format sweep reads, scored on a tiny random Llama whose 128-token window
//! makes both cut long contexts from the left. `scripts/lm-eval-parity` writes the model and
//! lm-eval's per-item numbers; ignored by default because it needs torch and lm-eval:
//!
//!   scripts/libtorch-env && scripts/lm-eval-parity

use std::path::{Path, PathBuf};

use sweep_trainer::benchmark::BenchmarkSpec;
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
    #[allow(unused_mut)]
    let mut devices = vec![Device::flex()];
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    // burn-tch is deprecated upstream; it is the libtorch path burn 0.22 has
    devices.push(Device::libtorch());
    for device in &devices {
        compare(&root, device);
    }
}

fn compare(root: &Path, device: &Device) {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("reference.json")).unwrap())
            .unwrap();
    let loaded = hf::load(&root.join("model"), None, device).unwrap_or_else(|e| panic!("{e}"));
    let window = loaded.config.arch.max_seq;
    let chat = Chat::Hf(Box::new(loaded.tokenizer));
    let benchmarks = reference.as_object().expect("one entry per benchmark");
    assert_eq!(benchmarks.len(), 5, "every format, ARC in both forms");
    for (name, theirs) in benchmarks {
        let spec = BenchmarkSpec::try_from(name.clone()).unwrap();
        let prepared = spec
            .read(Path::new(FIXTURES), None)
            .unwrap()
            .prepare(window, |t| chat.encode_text(t))
            .unwrap_or_else(|e| panic!("{e}"));
        let ours = prepared.score(&loaded.model, chat.pad_id(), device);
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
