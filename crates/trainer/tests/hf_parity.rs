//! sweep's forward pass and greedy decoding against transformers' on tiny random checkpoints
//! (grouped-query attention, tied and untied heads, Llama 3 RoPE scaling, Qwen2's biases)
//! that `scripts/hf-parity` writes with transformers' own reference outputs, and on the
//! converted SmolLM2-135M-Instruct when `scripts/smollm2` has made it. Ignored by
//! default because it needs torch and transformers:
//!
//!   scripts/libtorch-env && scripts/hf-parity

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use sweep_trainer::generate::{generate_ids, Tokens};
use sweep_trainer::hf;
use sweep_trainer::Device;

#[path = "support/numbers.rs"]
mod numbers;
use numbers::numbers;

#[test]
#[ignore = "needs scripts/hf-parity (torch and transformers)"]
fn logits_and_greedy_tokens_equal_transformers() {
    let root = PathBuf::from(
        std::env::var_os("SWEEP_HF_PARITY")
            .expect("SWEEP_HF_PARITY names the directory scripts/hf-parity writes"),
    );
    // Flex always; libtorch too in the libtorch build.
    let devices = sweep_trainer::device::cpu_devices();
    for device in &devices {
        compare(&root, device);
    }
}

/// Every checkpoint under `root` against its reference, on `device`.
fn compare(root: &std::path::Path, device: &Device) {
    let device = device.clone();
    let mut cases = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        // A reference may point at a model directory elsewhere (the converted SmolLM2).
        let model_dir = reference["model"]
            .as_str()
            .map_or(dir.clone(), PathBuf::from);
        let model = hf::load(&model_dir, Some(128), &device).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<u32> = numbers(&reference["ids"])
            .iter()
            .map(|&x| x as u32)
            .collect();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]),
            &device,
        );
        let ours = model
            .model
            .forward(input.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let theirs = numbers(&reference["logits"]);
        assert_eq!(ours.len(), theirs.len(), "{}", dir.display());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        let scale = theirs.iter().map(|x| x.abs()).fold(0.0, f64::max);
        eprintln!(
            "{} on {device:?}: max |Δlogit| {worst:.2e} (logits up to {scale:.1})",
            dir.display()
        );
        // Thirty layers accumulate more f32 rounding than two: relative to the logits' scale.
        let tolerance = 1e-4 * (scale / 50.0).max(1.0) * (model.config.arch.n_layers as f64 / 2.0);
        assert!(
            worst <= tolerance,
            "{}: logits differ by {worst}",
            dir.display()
        );

        // What sweep saves loads back to the same numbers (Phi-3's projections fused again,
        // under transformers' names); scripts/hf_parity.py's `saved` loads it in transformers.
        if reference["model"].is_null() {
            let saved = dir.join("saved-by-sweep");
            hf::save(&model.model, &dir, &saved).unwrap_or_else(|e| panic!("{e}"));
            let again = hf::load(&saved, Some(128), &device).unwrap_or_else(|e| panic!("{e}"));
            let diff = (again.model.forward(input.clone()) - model.model.forward(input))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert_eq!(diff, 0.0, "{}: saved and loaded again", dir.display());
            let logits = serde_json::json!({"ids": ids.clone(), "logits": ours});
            std::fs::write(saved.join("sweep-logits.json"), logits.to_string()).unwrap();
        }

        let greedy: Vec<u32> = numbers(&reference["greedy"])
            .iter()
            .map(|&x| x as u32)
            .collect();
        let tokens = Tokens { stop: &[], pad: 0 };
        let ours = generate_ids(&model.model, &[ids], tokens, greedy.len(), 128, &device);
        assert_eq!(ours[0].tokens, greedy, "{}: greedy tokens", dir.display());
        cases += 1;
    }
    assert!(cases >= 3, "the checkpoints of scripts/hf_parity.py");
}
