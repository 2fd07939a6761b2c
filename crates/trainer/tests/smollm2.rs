//! SmolLM2-135M-Instruct, the real chat model `scripts/smollm2` converts from the package
//! registry: it answers as it should through sweep's forward pass, tokenizer and chat
//! template; a short fine-tune lowers its loss; what sweep saves loads back with the same
//! logits. Ignored by default because it needs the converted model (about 540 MB):
//!
//!   scripts/smollm2 && cargo test --release --workspace --test smollm2 -- --ignored
//!
//! `SWEEP_SMOLLM2` points at another copy of the directory.

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use sweep_trainer::batch::{loss, make_batch};
use sweep_trainer::hf::{self, save_weights};
use sweep_trainer::train::{train, Mix, OptimConfig, RunShape};
use sweep_trainer::Device;

fn model_dir() -> PathBuf {
    std::env::var_os("SWEEP_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct")
        })
}

fn load(device: &Device) -> hf::HfModel {
    let dir = model_dir();
    hf::load(&dir, Some(256), device).unwrap_or_else(|e| panic!("{e} (run scripts/smollm2 first)"))
}

#[test]
#[ignore = "needs scripts/smollm2"]
fn it_knows_the_capital_of_france() {
    let device = Device::flex();
    let model = load(&device);
    let prompts = vec!["What is the capital of France?".to_string()];
    let answer = hf::answer(&model, &prompts, 16, &device).unwrap().remove(0);
    let text = model.tokenizer.decode(&answer.tokens);
    assert_eq!(text, "The capital of France is Paris.");
    assert!(answer.ended, "ended with <|im_end|>");
}

/// Token ids and chat renderings against the Python `tokenizers` package and Jinja2 set up as
/// transformers' `apply_chat_template` sets it up (`sweep-parity.json`, written by
/// `scripts/smollm2`): unicode, digits, special tokens inside text, whitespace runs, and the
/// template with and without a system prompt and a generation prompt.
#[test]
#[ignore = "needs scripts/smollm2"]
fn tokens_and_chat_renderings_equal_the_python_packages() {
    let device = Device::flex();
    let tok = load(&device).tokenizer;
    let path = model_dir().join("sweep-parity.json");
    let parity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    let corpus = parity["corpus"].as_array().unwrap();
    assert!(corpus.len() >= 5);
    for case in corpus {
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text).unwrap();
        assert_eq!(ours, ids(&case["ids"]), "{text:?}");
        if !text.contains("<|") {
            assert_eq!(tok.decode(&ours), text, "decoding round-trips");
        }
    }
    let chats = parity["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 3);
    for chat in chats {
        let messages: Vec<hf::Message> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| hf::Message {
                role: m["role"].as_str().unwrap().into(),
                content: m["content"].as_str().unwrap().into(),
            })
            .collect();
        let add = chat["add_generation_prompt"].as_bool().unwrap();
        let text = tok.render(&messages, add).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text).unwrap(), ids(&chat["ids"]));
    }
}

#[test]
#[ignore = "needs scripts/smollm2"]
fn two_fine_tuning_steps_lower_the_loss_and_a_saved_copy_gives_the_same_logits() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let loaded = load(&ad);
    let tok = &loaded.tokenizer;
    let examples: Vec<_> = [
        ("Name a color of the sky.", "Blue, on a clear day."),
        ("What do bees make?", "Bees make honey."),
    ]
    .iter()
    .map(|(p, r)| tok.encode_example(p, r, 256).unwrap())
    .collect();
    let refs: Vec<_> = examples.iter().collect();
    let batch = make_batch(&refs, &device);
    let score = |m: &sweep_trainer::model::Lm| loss(&m.valid(), &batch).0.into_scalar::<f32>();
    let before = score(&loaded.model);
    let mix = Mix::new(vec![(&examples, 1.0)]);
    let shape = RunShape {
        steps: 2,
        batch_size: 2,
        micro_batch: 2,
    };
    let optim = OptimConfig {
        lr: 1e-4,
        warmup: 0,
        ..OptimConfig::default()
    };
    let tuned = train(loaded.model, &ad, &mix, shape, &optim, 0, |_, _, m| m).valid();
    let after = score(&tuned);
    assert!(after < before, "loss {before} -> {after}");

    // Saved as a Hugging Face directory and loaded back: the same logits, bit for bit. The
    // directory stays (with sweep's logits beside it) for scripts/hf-parity, which checks that
    // transformers loads it and computes the same.
    let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smollm2-tuned");
    let _ = std::fs::remove_dir_all(&saved);
    std::fs::create_dir_all(&saved).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(model_dir().join(file), saved.join(file)).unwrap();
    }
    save_weights(&tuned, &saved).unwrap();
    let reloaded = hf::load(&saved, Some(256), &device).unwrap();
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(
            examples[0].tokens.iter().map(|&t| t as i64).collect(),
            [1, examples[0].tokens.len()],
        ),
        &device,
    );
    let logits = |m: &sweep_trainer::model::Lm| {
        m.forward(tokens.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let ours = logits(&tuned);
    assert_eq!(ours, logits(&reloaded.model));
    std::fs::write(
        saved.join("sweep-logits.json"),
        serde_json::json!({"ids": examples[0].tokens, "logits": ours}).to_string(),
    )
    .unwrap();
}
