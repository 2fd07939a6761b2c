//! A tiny random checkpoint in the layout transformers writes (config.json, f32 safetensors,
//! a byte-level BPE tokenizer.json, a ChatML template): what sweep's own tests load, fine-tune
//! and refuse in broken variants, with no download and no Python. Its answers are noise; it
//! exercises the machinery, not the science.

use std::path::Path;

use serde_json::json;

use super::{read_config, save_weights, HfError};
use crate::model::Lm;

/// ChatML, as SmolLM2 and Qwen2 write it (without a default system prompt).
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// `config.json` of the tiny model: grouped-query attention, tied or not.
pub fn config(tied: bool, family: &str) -> serde_json::Value {
    json!({
        "architectures": [family],
        "model_type": "llama",
        "vocab_size": 260,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "torch_dtype": "float32"
    })
}

/// A byte-level BPE tokenizer.json (every byte a token, no merges) with ChatML's two
/// special tokens at 256 and 257.
pub fn tokenizer_json() -> serde_json::Value {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort_unstable();
    let vocab: serde_json::Map<String, serde_json::Value> = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), json!(i)))
        .collect();
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(256, "<|im_start|>"), special(257, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// Writes a complete tiny checkpoint of `family` (`LlamaForCausalLM` or `Qwen2ForCausalLM`)
/// to `dir`, its weights drawn from `seed`, and returns the model it holds.
pub fn write(
    dir: &Path,
    tied: bool,
    family: &str,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<Lm, HfError> {
    let io = |path: &Path, e| HfError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let write_json = |name: &str, value: &serde_json::Value| {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(value).expect("a JSON value");
        std::fs::write(&path, text).map_err(|e| io(&path, e))
    };
    write_json("config.json", &config(tied, family))?;
    write_json("tokenizer.json", &tokenizer_json())?;
    write_json(
        "tokenizer_config.json",
        &json!({"chat_template": CHATML, "eos_token": "<|im_end|>", "bos_token": null,
                "pad_token": "<|im_end|>"}),
    )?;
    let arch = read_config(&dir.join("config.json"))?.arch;
    device.seed(seed);
    let model = arch.init(device);
    save_weights(&model, dir)?;
    Ok(model)
}
