//! Hugging Face checkpoints: a model directory as transformers writes it (`config.json`,
//! safetensors weights, `tokenizer.json`, `tokenizer_config.json`, the chat template) loaded
//! into the trainer's [`Lm`], with its tokenizer and chat template. Everything is checked
//! before training starts; a file that does not fit is refused with its path and the key or
//! tensor at fault.

mod chat;
mod config;
pub mod fixture;
mod fused;
pub mod peft;
mod weights;

use std::path::{Path, PathBuf};

pub use chat::{ChatTokenizer, Message};
pub use config::{read_config, Family, HfConfig};
pub use weights::{check_weights, expected_tensors, load_weights, save_weights};

use crate::model::Lm;

/// A Hugging Face model directory that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file that could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file the directory needs is not there.
    #[error("{path}: not found ({what})")]
    Missing {
        /// The expected file.
        path: PathBuf,
        /// What it holds.
        what: &'static str,
    },
    /// A JSON file that does not parse.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A setting that sweep cannot run.
    #[error("{path}: `{key}`: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong and what would work.
        message: String,
    },
    /// A weights file that cannot be read as safetensors (truncated, corrupt).
    #[error("{path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor that is missing, unexpected, or of the wrong shape for `config.json`.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The weights file (or the directory, for a tensor no file holds).
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// `tokenizer.json` that the tokenizers crate cannot use.
    #[error("{path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer's message.
        message: String,
    },
    /// A chat template that does not compile or render.
    #[error("{path}: chat template: {message}")]
    Template {
        /// The file holding the template.
        path: PathBuf,
        /// Jinja's message.
        message: String,
    },
}

impl HfError {
    fn io(path: &Path, source: std::io::Error) -> HfError {
        HfError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads the JSON file `path` as a `T`, with errors that name the file (and the parser's line
/// and column).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, HfError> {
    let text = std::fs::read_to_string(path).map_err(|e| HfError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| HfError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A loaded checkpoint: the model, its tokenizer and what `config.json` said.
#[derive(Debug)]
pub struct HfModel {
    /// The weights, in f32.
    pub model: Lm,
    /// The tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
    /// The architecture it was read as.
    pub config: HfConfig,
}

/// Checks the checkpoint in `dir` as far as can be done without loading its weights (its
/// config.json, tokenizer and chat template, and the weight files' headers), so that a grid
/// naming a checkpoint that cannot load is refused before anything is stored.
pub fn check(dir: &Path) -> Result<HfConfig, HfError> {
    let (config, _) = open_config(dir, None)?;
    check_weights(dir, &config.arch)?;
    Ok(config)
}

/// Reads `dir`'s config.json and tokenizer (with its chat template), and checks that they
/// agree: everything of a checkpoint but its weights.
pub fn open_config(
    dir: &Path,
    max_seq: Option<usize>,
) -> Result<(HfConfig, ChatTokenizer), HfError> {
    if !dir.is_dir() {
        return Err(HfError::Missing {
            path: dir.to_path_buf(),
            what: "a Hugging Face model directory: config.json, safetensors weights, \
                   tokenizer.json, tokenizer_config.json",
        });
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(HfError::Missing {
            path: config_path,
            what: "the model's configuration, which every Hugging Face model directory has",
        });
    }
    let mut config = read_config(&config_path)?;
    if let Some(max) = max_seq {
        config.arch.max_seq = config.arch.max_seq.min(max);
    }
    let tokenizer = ChatTokenizer::open(dir)?;
    if tokenizer.vocab_size() > config.arch.vocab {
        return Err(HfError::Config {
            path: config_path,
            key: "vocab_size".into(),
            message: format!(
                "{} is smaller than the tokenizer's {} tokens",
                config.arch.vocab,
                tokenizer.vocab_size()
            ),
        });
    }
    Ok((config, tokenizer))
}

/// Loads the checkpoint in `dir` onto `device`, running sequences of at most `max_seq`
/// tokens (at most the checkpoint's own context length).
pub fn load(
    dir: &Path,
    max_seq: Option<usize>,
    device: &burn::tensor::Device,
) -> Result<HfModel, HfError> {
    let (config, tokenizer) = open_config(dir, max_seq)?;
    let model = load_weights(dir, &config.arch, device)?;
    Ok(HfModel {
        model,
        tokenizer,
        config,
    })
}

/// A short hash of what the checkpoint in `dir` holds: its config.json and each weight file's
/// name and content (not where it lies or when it was written, which a copy changes and an
/// edit in place may keep), so a trial's checkpoint is never resumed, nor an aligned
/// checkpoint reused, onto other starting weights. Hashing reads the weights once, as loading
/// them does (blake3, memory-mapped, on every core: well under a second for SmolLM2's 270 MB).
pub fn fingerprint(dir: &Path) -> Result<String, HfError> {
    let config_path = dir.join("config.json");
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::fs::read(&config_path).map_err(|e| HfError::io(&config_path, e))?);
    for file in weights::weight_files(dir)? {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let content = blake3::Hasher::new()
            .update_mmap_rayon(&file)
            .map_err(|e| HfError::io(&file, e))?
            .finalize();
        hasher.update(format!("{name}|{}", content.to_hex()).as_bytes());
    }
    Ok(hasher.finalize().to_hex()[..16].to_string())
}

/// The files of a model directory besides its weights that other tools need to use it.
const COMPANIONS: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
];

/// Writes `model` as a Hugging Face directory `out` that transformers (and so lm-eval, vLLM)
/// loads: f32 safetensors under transformers' names, `source`'s config.json with its dtype
/// set to float32, and `source`'s tokenizer files. The directory appears whole or not at all.
pub fn save(model: &Lm, source: &Path, out: &Path) -> Result<(), HfError> {
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| HfError::io(&partial, e))?;
    let config_path = source.join("config.json");
    let mut config: serde_json::Value = read_json(&config_path)?;
    if let Some(object) = config.as_object_mut() {
        // transformers 4 reads `torch_dtype`, 5 writes `dtype`.
        for key in ["torch_dtype", "dtype"] {
            object.insert(key.into(), serde_json::Value::String("float32".into()));
        }
    }
    let written = partial.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("a JSON value");
    std::fs::write(&written, text).map_err(|e| HfError::io(&written, e))?;
    for name in COMPANIONS {
        let from = source.join(name);
        if from.is_file() {
            std::fs::copy(&from, partial.join(name)).map_err(|e| HfError::io(&from, e))?;
        }
    }
    // Declared float32 above, so written so: a base held in bf16 is widened here.
    save_weights(&crate::precision::widened(model.clone()), &partial)?;
    let _ = std::fs::remove_dir_all(out);
    std::fs::rename(&partial, out).map_err(|e| HfError::io(out, e))
}

/// Greedy answers of `model` to `prompts`, each asked as a user's one message through the
/// chat template, at most `max_new` tokens each: what a researcher runs first on a checkpoint
/// to see that it loaded right (`sweep generate`).
pub fn answer(
    model: &HfModel,
    prompts: &[String],
    max_new: usize,
    device: &burn::tensor::Device,
) -> Result<Vec<crate::generate::Generated>, HfError> {
    let encoded = prompts
        .iter()
        .map(|p| model.tokenizer.encode_prompt(p))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = crate::generate::Tokens {
        stop: model.tokenizer.stop_ids(),
        pad: model.tokenizer.pad_id(),
    };
    Ok(crate::generate::generate_ids(
        &model.model,
        &encoded,
        tokens,
        max_new,
        model.config.arch.max_seq,
        device,
    ))
}
