//! `config.json`: what a Hugging Face checkpoint says about its shape, read into an [`Arch`].
//! Only the architectures whose forward pass [`crate::model::Lm`] reproduces are accepted;
//! anything else is refused by name before a weight is read.

use std::path::Path;

use serde::Deserialize;

use super::{read_json, HfError};
use crate::model::{Arch, Rope, RopeScaling, RopeStyle};

/// The keys of `config.json` that shape the model (transformers' `LlamaConfig` and
/// `Qwen2Config`, with their defaults).
#[derive(Debug, Deserialize)]
struct ConfigFile {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<serde_json::Map<String, serde_json::Value>>,
    /// Newer transformers nest `rope_theta` and the scaling here.
    rope_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    use_sliding_window: bool,
    /// Mistral's and Phi-3's attention window (`null`: none).
    sliding_window: Option<usize>,
    /// Phi-3's share of each head that RoPE rotates (1: all of it).
    partial_rotary_factor: Option<f64>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

/// A model family whose forward pass [`crate::model::Lm`] implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `LlamaForCausalLM`: Llama 2 and 3, SmolLM, TinyLlama, Mistral-shaped models without
    /// sliding windows.
    Llama,
    /// `Qwen2ForCausalLM`: biases on the query, key and value projections.
    Qwen2,
    /// `MistralForCausalLM`: Llama's blocks, with attention limited to a sliding window of
    /// earlier positions; sweep runs it within one window (its context is capped there), where
    /// the window hides nothing and the forward pass is Llama's.
    Mistral,
    /// `Phi3ForCausalLM`: Llama's blocks with fused `qkv_proj` and `gate_up_proj` weights
    /// (split at load, fused again at save), run within its sliding window as Mistral is.
    Phi3,
}

impl Family {
    /// The `architectures` entry transformers writes for this family.
    pub fn class_name(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Phi3 => "Phi3ForCausalLM",
        }
    }
}

/// What `config.json` says: the family and the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// The model family.
    pub family: Family,
    /// The shape [`crate::model::Lm`] is built with (its `max_seq` is the checkpoint's
    /// context length; the trainer lowers it to what it runs).
    pub arch: Arch,
}

/// Reads and checks `path` (a `config.json`).
pub fn read_config(path: &Path) -> Result<HfConfig, HfError> {
    let file: ConfigFile = read_json(path)?;
    let bad = |key: &str, message: String| HfError::Config {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let family = family(&file).map_err(|(key, message)| bad(key, message))?;
    if let Some(act) = file.hidden_act.as_deref().filter(|a| *a != "silu") {
        return Err(bad(
            "hidden_act",
            format!("{act:?}; only \"silu\" is supported"),
        ));
    }
    if file.use_sliding_window {
        return Err(bad(
            "use_sliding_window",
            "sliding-window attention is not supported".into(),
        ));
    }
    for (key, value) in [
        ("vocab_size", file.vocab_size),
        ("hidden_size", file.hidden_size),
        ("intermediate_size", file.intermediate_size),
        ("num_hidden_layers", file.num_hidden_layers),
        ("num_attention_heads", file.num_attention_heads),
    ] {
        if value == 0 {
            return Err(bad(key, "must be positive".into()));
        }
    }
    let n_heads = file.num_attention_heads;
    let n_kv_heads = file.num_key_value_heads.unwrap_or(n_heads);
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(bad(
            "num_key_value_heads",
            format!("{n_kv_heads} does not divide num_attention_heads ({n_heads})"),
        ));
    }
    let head_dim = match file.head_dim {
        Some(d) => d,
        None if file.hidden_size.is_multiple_of(n_heads) => file.hidden_size / n_heads,
        None => {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "{n_heads} does not divide hidden_size ({})",
                    file.hidden_size
                ),
            ))
        }
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(bad(
            "head_dim",
            format!("{head_dim} is not a positive even number"),
        ));
    }
    if !(file.rms_norm_eps.is_finite() && file.rms_norm_eps > 0.0) {
        return Err(bad("rms_norm_eps", "must be a positive number".into()));
    }
    let rope = rope(&file).map_err(|(key, message)| bad(key, message))?;
    let qwen = family == Family::Qwen2;
    let mut max_seq = file.max_position_embeddings.unwrap_or(2048);
    // Top level in transformers 4, inside `rope_parameters` in 5.
    let partial = file.partial_rotary_factor.or_else(|| {
        file.rope_parameters
            .as_ref()
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(|v| v.as_f64())
    });
    if let Some(factor) = partial.filter(|f| *f != 1.0) {
        return Err(bad(
            "partial_rotary_factor",
            format!("{factor}: RoPE on part of each head is not supported (only 1.0)"),
        ));
    }
    if matches!(family, Family::Mistral | Family::Phi3) {
        match file.sliding_window {
            Some(0) => return Err(bad("sliding_window", "must be positive".into())),
            // Within one window nothing is hidden: the context is capped at it.
            Some(window) => max_seq = max_seq.min(window),
            None => {}
        }
    }
    Ok(HfConfig {
        family,
        arch: Arch {
            vocab: file.vocab_size,
            d_model: file.hidden_size,
            n_layers: file.num_hidden_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            d_ff: file.intermediate_size,
            rms_eps: file.rms_norm_eps,
            rope,
            qkv_bias: qwen || file.attention_bias,
            o_bias: !qwen && file.attention_bias,
            mlp_bias: !qwen && file.mlp_bias,
            tied: file.tie_word_embeddings,
            fused: family == Family::Phi3,
            max_seq,
        },
    })
}

/// The model family `architectures` names, or why it cannot be run (the key and what is wrong).
fn family(file: &ConfigFile) -> Result<Family, (&'static str, String)> {
    match file.architectures.as_deref() {
        Some([one]) if one == "LlamaForCausalLM" => Ok(Family::Llama),
        Some([one]) if one == "Qwen2ForCausalLM" => Ok(Family::Qwen2),
        Some([one]) if one == "MistralForCausalLM" => Ok(Family::Mistral),
        Some([one]) if one == "Phi3ForCausalLM" => Ok(Family::Phi3),
        Some(other) => Err((
            "architectures",
            format!(
                "{other:?} is not supported; sweep runs LlamaForCausalLM, \
                 Qwen2ForCausalLM, MistralForCausalLM and Phi3ForCausalLM checkpoints"
            ),
        )),
        None => Err((
            "architectures",
            format!(
                "missing (model_type {:?}); sweep runs LlamaForCausalLM, \
                 Qwen2ForCausalLM, MistralForCausalLM and Phi3ForCausalLM checkpoints",
                file.model_type.as_deref().unwrap_or("unknown")
            ),
        )),
    }
}

/// The rotary positions: θ and the scaling kind, from `rope_parameters` (transformers 5) or
/// `rope_theta` with `rope_scaling` (earlier), or why not (the key and what is wrong).
fn rope(file: &ConfigFile) -> Result<Rope, (&'static str, String)> {
    let (theta, scaling_key, scaling) = match &file.rope_parameters {
        Some(params) => (
            params
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(file.rope_theta),
            "rope_parameters",
            Some(params),
        ),
        None => (file.rope_theta, "rope_scaling", file.rope_scaling.as_ref()),
    };
    if !(theta.is_finite() && theta > 0.0) {
        return Err(("rope_theta", "must be a positive number".into()));
    }
    let scaling = match scaling {
        None => RopeScaling::None,
        Some(table) => rope_scaling(table).map_err(|m| (scaling_key, m))?,
    };
    Ok(Rope {
        theta,
        style: RopeStyle::Halves,
        scaling,
    })
}

/// The `rope_scaling` table (or `rope_parameters`), for the kinds transformers' Llama and
/// Qwen2 define that [`Rope`] implements.
fn rope_scaling(table: &serde_json::Map<String, serde_json::Value>) -> Result<RopeScaling, String> {
    let kind = table
        .get("rope_type")
        .or_else(|| table.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let number = |key: &str| {
        table
            .get(key)
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("{kind} scaling needs a positive `{key}`"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        "llama3" => {
            let scaling = RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max: number("original_max_position_embeddings")?,
            };
            match scaling {
                RopeScaling::Llama3 {
                    low_freq_factor,
                    high_freq_factor,
                    ..
                } if high_freq_factor <= low_freq_factor => {
                    Err("high_freq_factor must exceed low_freq_factor".into())
                }
                s => Ok(s),
            }
        }
        other => Err(format!(
            "rope type {other:?} is not supported (default, linear and llama3 are)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<HfConfig, HfError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        read_config(&path)
    }

    const SMOL: &str = r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "rms_norm_eps": 1e-05, "rope_theta": 100000.0, "tie_word_embeddings": true,
        "hidden_act": "silu", "max_position_embeddings": 8192, "torch_dtype": "bfloat16"}"#;

    #[test]
    fn smollm2_reads_as_a_tied_grouped_query_llama() {
        let c = read(SMOL).unwrap();
        assert_eq!(c.family, Family::Llama);
        let a = c.arch;
        assert_eq!((a.n_heads, a.n_kv_heads, a.head_dim), (9, 3, 64));
        assert!(a.tied && !a.qkv_bias && !a.o_bias);
        assert_eq!(a.rope.theta, 100_000.0);
        assert_eq!(a.rope.style, RopeStyle::Halves);
        // 134.5 M parameters, as the GGUF's metadata implies.
        assert_eq!(a.num_params(), 134_515_008);
    }

    #[test]
    fn qwen2_has_query_key_value_biases_only() {
        let json = SMOL.replace("LlamaForCausalLM", "Qwen2ForCausalLM");
        let a = read(&json).unwrap().arch;
        assert!(a.qkv_bias && !a.o_bias && !a.mlp_bias);
    }

    #[test]
    fn mistral_runs_within_its_window() {
        let json = SMOL
            .replace("LlamaForCausalLM", "MistralForCausalLM")
            .replace("\"hidden_act\"", "\"sliding_window\": 4096, \"hidden_act\"");
        let c = read(&json).unwrap();
        assert_eq!(c.family, Family::Mistral);
        assert_eq!(c.arch.max_seq, 4096, "capped at the window");
        assert!(!c.arch.qkv_bias && !c.arch.o_bias);
        let unwindowed = json.replace("\"sliding_window\": 4096", "\"sliding_window\": null");
        assert_eq!(read(&unwindowed).unwrap().arch.max_seq, 8192);
        let zero = json.replace("4096", "0");
        assert!(read(&zero)
            .unwrap_err()
            .to_string()
            .contains("sliding_window"));
    }

    #[test]
    fn phi3_is_fused_windowed_and_rotates_whole_heads() {
        let json = SMOL
            .replace("LlamaForCausalLM", "Phi3ForCausalLM")
            .replace("\"hidden_act\"", "\"sliding_window\": 2047, \"hidden_act\"");
        let c = read(&json).unwrap();
        assert_eq!(c.family, Family::Phi3);
        assert!(c.arch.fused);
        assert_eq!(c.arch.max_seq, 2047);
        let partial = json.replace(
            "\"rope_theta\": 100000.0",
            "\"rope_parameters\": {\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.75}",
        );
        let err = read(&partial).unwrap_err().to_string();
        assert!(err.contains("partial_rotary_factor"), "{err}");
    }

    #[test]
    fn llama3_scaling_is_read_and_unknown_kinds_are_refused() {
        let json = SMOL.replace(
            "\"tie_word_embeddings\": true",
            r#""tie_word_embeddings": false, "rope_scaling": {"rope_type": "llama3",
            "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}"#,
        );
        let a = read(&json).unwrap().arch;
        assert!(matches!(a.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0));
        let yarn = json.replace("llama3", "yarn");
        let err = read(&yarn).unwrap_err().to_string();
        assert!(
            err.contains("rope_scaling") && err.contains("yarn"),
            "{err}"
        );
    }

    #[test]
    fn bad_configs_name_the_file_and_key() {
        for (json, key) in [
            (
                SMOL.replace("LlamaForCausalLM", "GPT2LMHeadModel"),
                "architectures",
            ),
            (
                SMOL.replace("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"),
                "num_key_value_heads",
            ),
            (SMOL.replace("\"silu\"", "\"gelu\""), "hidden_act"),
            (SMOL.replace("\"hidden_size\": 576,", ""), "hidden_size"),
            (
                SMOL.replace("\"num_attention_heads\": 9", "\"num_attention_heads\": 7"),
                "num_attention_heads",
            ),
        ] {
            let err = read(&json).unwrap_err().to_string();
            assert!(
                err.contains("config.json") && err.contains(key),
                "{key}: {err}"
            );
        }
    }
}
