//! Hugging Face model directories: a tiny random checkpoint written by sweep itself (weights
//! through `save_weights`, a byte-level BPE tokenizer.json, a ChatML template) loads back with
//! the same logits, answers through its chat template, and every malformed variant is
//! refused with the file and the key or tensor at fault. Parity with transformers itself is
//! `tests/hf_parity.rs`, which needs the Python fixtures.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use serde_json::json;
use sweep_trainer::generate::{generate_ids, Tokens};
use sweep_trainer::hf::fixture::{self, config, CHATML};
use sweep_trainer::hf::{self, HfError};
use sweep_trainer::model::Lm;
use sweep_trainer::Device;

fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Writes a complete tiny checkpoint to `dir` and returns the model it holds.
fn checkpoint(dir: &Path, tied: bool, family: &str, device: &Device) -> Lm {
    fixture::write(dir, tied, family, 17, device).unwrap()
}

fn logits(model: &Lm, device: &Device) -> Vec<f32> {
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(vec![256i64, 117, 115, 101, 114, 10, 72, 105, 257], [1, 9]),
        device,
    );
    model
        .forward(tokens)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn a_saved_checkpoint_loads_back_with_the_same_logits() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for (tied, family) in [
        (true, "LlamaForCausalLM"),
        (false, "LlamaForCausalLM"),
        (true, "Qwen2ForCausalLM"),
    ] {
        let path = dir.path().join(format!("{family}-{tied}"));
        let saved = checkpoint(&path, tied, family, &device);
        let loaded = hf::load(&path, None, &device).unwrap();
        assert_eq!(loaded.model.arch().tied, tied);
        assert_eq!(
            logits(&saved, &device),
            logits(&loaded.model, &device),
            "{family} tied {tied}"
        );
    }
}

#[test]
fn sharded_and_half_precision_weights_load() {
    use burn::store::{
        BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
        SafetensorsStore,
    };
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let saved = checkpoint(dir.path(), false, "LlamaForCausalLM", &device);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    // Two shards: layer 0 in one, the rest in the other, stored as bf16.
    let mut names = serde_json::Map::new();
    for (file, pattern) in [
        ("model-00001-of-00002.safetensors", r"^layers\.0\."),
        (
            "model-00002-of-00002.safetensors",
            r"^(embed_tokens|norm|lm_head|layers\.1\.)",
        ),
    ] {
        let mut store = SafetensorsStore::from_file(dir.path().join(file))
            .with_regex(pattern)
            .with_to_adapter(
                BurnToPyTorchAdapter.chain(FloatCastAdapter::to(burn::tensor::DType::BF16)),
            )
            .with_key_remapping(r"^(embed_tokens|layers|norm)", "model.$1");
        saved.save_into(&mut store).unwrap();
        let mut written = SafetensorsStore::from_file(dir.path().join(file));
        for name in written.keys().unwrap() {
            names.insert(name, json!(file));
        }
    }
    write_json(
        &dir.path().join("model.safetensors.index.json"),
        &json!({"metadata": {}, "weight_map": names}),
    );
    let loaded = hf::load(dir.path(), None, &device).unwrap();
    let (a, b) = (logits(&saved, &device), logits(&loaded.model, &device));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    // bf16 keeps 8 bits of mantissa: close, not equal.
    assert!(worst > 0.0 && worst < 0.05, "{worst}");
}

#[test]
fn the_chat_template_renders_and_scores_only_the_answer() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path(), true, "LlamaForCausalLM", &device);
    let loaded = hf::load(dir.path(), None, &device).unwrap();
    let tok = &loaded.tokenizer;
    let text = tok
        .render(
            &[hf::Message {
                role: "user".into(),
                content: "Hi é".into(),
            }],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nHi é<|im_end|>\n<|im_start|>assistant\n"
    );
    let prompt = tok.encode_prompt("Hi é").unwrap();
    assert_eq!(prompt[0], 256);
    assert_eq!(tok.decode(&prompt), "user\nHi é\nassistant\n");
    let example = tok.encode_example("Hi é", "Yo", 100).unwrap();
    assert_eq!(&example.tokens[..prompt.len()], prompt.as_slice());
    assert!(example.target[..prompt.len()].iter().all(|t| !t));
    let answer: Vec<u32> = example.tokens[prompt.len()..].to_vec();
    assert_eq!(tok.decode(&answer), "Yo\n");
    assert_eq!(answer[2], 257, "the end of turn is scored");
    assert!(example.target[prompt.len()..].iter().all(|t| *t));
    assert_eq!(tok.stop_ids(), &[257]);
}

#[test]
fn generation_stops_at_the_end_of_turn_and_batches_like_single_prompts() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path(), true, "LlamaForCausalLM", &device);
    let loaded = hf::load(dir.path(), None, &device).unwrap();
    let tok = &loaded.tokenizer;
    let prompts: Vec<Vec<u32>> = ["Hi", "What is the capital of France?", "x"]
        .iter()
        .map(|p| tok.encode_prompt(p).unwrap())
        .collect();
    let tokens = Tokens {
        stop: tok.stop_ids(),
        pad: tok.pad_id(),
    };
    let together = generate_ids(&loaded.model, &prompts, tokens, 16, 128, &device);
    for (prompt, answer) in prompts.iter().zip(&together) {
        let alone = generate_ids(
            &loaded.model,
            std::slice::from_ref(prompt),
            tokens,
            16,
            128,
            &device,
        );
        assert_eq!(alone[0], *answer);
        assert!(answer.ended || answer.tokens.len() == 16);
    }
}

/// Loads `dir` and returns the error's text.
fn refusal(dir: &Path) -> String {
    match hf::load(dir, None, &Device::flex()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_checkpoints_are_refused_by_file_and_key_or_tensor() {
    let device = Device::flex();
    let root = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let dir = root.path().join(name);
        checkpoint(&dir, false, "LlamaForCausalLM", &device);
        dir
    };
    let edit_config = |dir: &Path, key: &str, value: serde_json::Value| {
        let mut c = config(false, "LlamaForCausalLM");
        c[key] = value;
        write_json(&dir.join("config.json"), &c);
    };

    // Sizes no weight file could hold are refused from the files' lengths, before a tensor
    // list is built (a trillion layers used to grow memory by 600 MB/s).
    for (key, value) in [
        ("num_hidden_layers", json!(1_000_000_000_000_u64)),
        ("num_hidden_layers", json!(1_000_000)),
        ("vocab_size", json!(u64::MAX)),
    ] {
        let dir = fresh(&format!("huge-{key}-{value}"));
        edit_config(&dir, key, value.clone());
        let started = std::time::Instant::now();
        let e = refusal(&dir);
        assert!(
            e.contains("config.json") && e.contains(key) && e.contains("can hold"),
            "{key} = {value}: {e}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{e}"
        );
    }

    let dir = fresh("arch");
    edit_config(&dir, "architectures", json!(["GemmaForCausalLM"]));
    let e = refusal(&dir);
    assert!(
        e.contains("config.json") && e.contains("architectures") && e.contains("Gemma"),
        "{e}"
    );

    // Fewer layers in config.json than in the file: the file's extra layer is named.
    let dir = fresh("extra");
    edit_config(&dir, "num_hidden_layers", json!(1));
    let e = refusal(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("model.layers.1."),
        "{e}"
    );

    // More layers in config.json than in the file: the missing tensor is named.
    let dir = fresh("missing");
    edit_config(&dir, "num_hidden_layers", json!(3));
    let e = refusal(&dir);
    assert!(
        e.contains("model.layers.2.") && e.contains("missing"),
        "{e}"
    );

    // A shape that disagrees with config.json, in PyTorch's orientation.
    let dir = fresh("shape");
    edit_config(&dir, "intermediate_size", json!(64));
    let e = refusal(&dir);
    assert!(
        e.contains("mlp") && e.contains("64") && e.contains("48"),
        "{e}"
    );

    // A tied config over a file with its own head: that head is reported, not dropped.
    let dir = fresh("untied-file");
    let mut c = config(true, "LlamaForCausalLM");
    c["tie_word_embeddings"] = json!(true);
    write_json(&dir.join("config.json"), &c);
    assert!(
        hf::load(&dir, None, &device).is_ok(),
        "transformers ignores a tied model's lm_head"
    );

    // A truncated weights file.
    let dir = fresh("truncated");
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = refusal(&dir);
    assert!(e.contains("model.safetensors"), "{e}");

    // No weights at all, no tokenizer, no template, a broken template, bad JSON.
    let dir = fresh("no-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(refusal(&dir).contains("model.safetensors: not found"));
    let dir = fresh("no-tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert!(refusal(&dir).contains("tokenizer.json: not found"));
    let dir = fresh("no-template");
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"eos_token": "<|im_end|>"}),
    );
    let e = refusal(&dir);
    assert!(
        e.contains("tokenizer_config.json") && e.contains("chat_template"),
        "{e}"
    );
    let dir = fresh("bad-template");
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.content }",
    )
    .unwrap();
    let e = refusal(&dir);
    assert!(
        e.contains("chat_template.jinja") && e.contains("chat template"),
        "{e}"
    );
    let dir = fresh("bad-eos");
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"chat_template": CHATML, "eos_token": "</s>"}),
    );
    let e = refusal(&dir);
    assert!(e.contains("eos_token") && e.contains("</s>"), "{e}");
    let dir = fresh("bad-json");
    std::fs::write(dir.join("config.json"), "{\"architectures\": [").unwrap();
    let e = refusal(&dir);
    assert!(e.contains("config.json") && e.contains("line"), "{e}");
    let e = refusal(&root.path().join("nowhere"));
    assert!(e.contains("nowhere") && e.contains("not found"), "{e}");
}

#[test]
fn templates_from_the_config_list_and_from_jinja_files_render_like_transformers() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path(), true, "LlamaForCausalLM", &device);
    let user = |s: &str| hf::Message {
        role: "user".into(),
        content: s.into(),
    };
    let system = |s: &str| hf::Message {
        role: "system".into(),
        content: s.into(),
    };
    // Llama 2's template: a system prompt folded into the first [INST], raise_exception on
    // out-of-order roles, Python's .strip().
    let llama2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    write_json(
        &dir.path().join("tokenizer_config.json"),
        &json!({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": llama2}],
                "eos_token": {"content": "<|im_end|>", "special": true}, "bos_token": "<|im_start|>"}),
    );
    let tok = hf::load(dir.path(), None, &device).unwrap().tokenizer;
    assert_eq!(
        tok.render(&[system("Be brief."), user("  Hi  ")], false)
            .unwrap(),
        "<|im_start|>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n  Hi [/INST]"
    );
    let e = tok
        .render(&[user("a"), user("b")], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("alternate"), "{e}");

    // Llama 3's, from chat_template.jinja (which wins over tokenizer_config.json), with
    // trimmed blocks: the newlines after block tags are not output.
    let llama3 = "{{ bos_token }}\n{% for message in messages %}\n{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}\n{{ content }}\n{% endfor %}\n{% if add_generation_prompt %}\n{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{% endif %}\n";
    std::fs::write(dir.path().join("chat_template.jinja"), llama3).unwrap();
    let tok = hf::load(dir.path(), None, &device).unwrap().tokenizer;
    assert_eq!(
        tok.render(&[user(" Hi ")], true).unwrap(),
        "<|im_start|>\n<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\n<|start_header_id|>assistant<|end_header_id|>\n\n\n"
    );
}

#[test]
fn errors_are_typed() {
    let e = hf::load(Path::new("/nonexistent-sweep-model"), None, &Device::flex()).unwrap_err();
    assert!(matches!(e, HfError::Missing { .. }));
}

/// The checkpoint's key follows what its files hold: the same bytes elsewhere keep it; one
/// weight changed in place, with the file's size and modification time put back, changes it.
#[test]
fn the_fingerprint_follows_the_weights_content_not_their_file_times() {
    let device = Device::flex();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    checkpoint(&dir, true, "LlamaForCausalLM", &device);
    let key = hf::fingerprint(&dir).unwrap();
    let copy = root.path().join("b");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    assert_eq!(
        hf::fingerprint(&copy).unwrap(),
        key,
        "a copy is the same checkpoint"
    );

    let weights = dir.join("model.safetensors");
    let modified = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        modified
    );
    assert_ne!(
        hf::fingerprint(&dir).unwrap(),
        key,
        "other weights, same size and mtime"
    );
}
