//! A checkpoint's tokenizer and chat template: prompts become the token ids the model was
//! tuned on, exactly as transformers' `apply_chat_template` makes them. `tokenizer.json` is
//! read by Hugging Face's own `tokenizers` crate; the Jinja template (from
//! `chat_template.jinja`, or `tokenizer_config.json` for older checkpoints) is rendered by
//! minijinja set up as transformers sets up Jinja2 (trimmed blocks, Python string methods,
//! `raise_exception`).

use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde_json::Value;

use super::{read_json, HfError};
use crate::tokenizer::Encoded;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// What was said.
    pub content: String,
}

impl Message {
    fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A checkpoint's tokenizer with its chat template and special tokens.
pub struct ChatTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// Where the template came from, for errors.
    template_path: PathBuf,
    env: Environment<'static>,
    /// Special tokens the template may use (`bos_token`, `eos_token`, …) as text.
    special: serde_json::Map<String, Value>,
    /// Ids that end an answer: the `eos_token`, and any `generation_config.json` adds.
    stop_ids: Vec<u32>,
    /// Id used to pad batches (never attended to, never a target).
    pad_id: u32,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("template", &self.template_path)
            .field("stop_ids", &self.stop_ids)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

/// Name of the compiled template inside the environment.
const TEMPLATE: &str = "chat";

impl ChatTokenizer {
    /// Reads `tokenizer.json`, `tokenizer_config.json`, the chat template and, if present,
    /// `generation_config.json` from `dir`.
    pub fn open(dir: &Path) -> Result<ChatTokenizer, HfError> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(HfError::Missing {
                path: tokenizer_path,
                what: "the tokenizer, as transformers saves it",
            });
        }
        let tokenizer =
            tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| HfError::Tokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = read_json(&config_path)?;
        let config = config.as_object().ok_or_else(|| HfError::Json {
            path: config_path.clone(),
            message: "not a JSON object".into(),
        })?;
        let jinja_path = dir.join("chat_template.jinja");
        let (template_path, source) = if jinja_path.is_file() {
            let source =
                std::fs::read_to_string(&jinja_path).map_err(|e| HfError::io(&jinja_path, e))?;
            (jinja_path, source)
        } else {
            (
                config_path.clone(),
                template_in_config(&config_path, config)?,
            )
        };
        let mut special = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(text) = config.get(key).and_then(token_text) {
                special.insert(key.into(), Value::String(text));
            }
        }
        let id_of = |key: &str| -> Result<Option<u32>, HfError> {
            let Some(Value::String(text)) = special.get(key) else {
                return Ok(None);
            };
            tokenizer
                .token_to_id(text)
                .map(Some)
                .ok_or_else(|| HfError::Config {
                    path: config_path.clone(),
                    key: key.into(),
                    message: format!("{text:?} is not a token of tokenizer.json"),
                })
        };
        let eos = id_of("eos_token")?;
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        let generation = dir.join("generation_config.json");
        if generation.is_file() {
            let ids = match read_json::<Value>(&generation)?.get("eos_token_id") {
                Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_u64).collect(),
                _ => Vec::new(),
            };
            stop_ids.extend(ids.into_iter().filter_map(|id| u32::try_from(id).ok()));
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        if stop_ids.is_empty() {
            return Err(HfError::Config {
                path: config_path,
                key: "eos_token".into(),
                message: "missing: generation needs a token that ends an answer".into(),
            });
        }
        let pad_id = id_of("pad_token")?.unwrap_or(stop_ids[0]);

        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE, source)
            .map_err(|e| HfError::Template {
                path: template_path.clone(),
                message: e.to_string(),
            })?;
        Ok(ChatTokenizer {
            tokenizer,
            template_path,
            env,
            special,
            stop_ids,
            pad_id,
        })
    }

    /// The chat as text, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` renders it.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, HfError> {
        let template = self.env.get_template(TEMPLATE).expect("added in open");
        let special = minijinja::Value::from(Serde(&self.special));
        template
            .render(context! {
                messages => Serde(messages),
                add_generation_prompt => add_generation_prompt,
                ..special
            })
            .map_err(|e| HfError::Template {
                path: self.template_path.clone(),
                message: e.to_string(),
            })
    }

    /// Token ids of `text`, which carries its special tokens already (as a rendered
    /// template does): none are added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, HfError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| HfError::Tokenizer {
                path: self.template_path.with_file_name("tokenizer.json"),
                message: e.to_string(),
            })
    }

    /// Token ids of plain text with the special tokens the tokenizer adds by default (its
    /// post-processor's, e.g. a BOS), as transformers' `tokenizer.encode(text)` gives them.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, HfError> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| HfError::Tokenizer {
                path: self.template_path.with_file_name("tokenizer.json"),
                message: e.to_string(),
            })
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// The token ids a model sees before answering `prompt` as a user's one message.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, HfError> {
        self.encode(&self.render(&[Message::new("user", prompt)], true)?)
    }

    /// A fine-tuning example: the prompt as [`ChatTokenizer::encode_prompt`] gives it, then
    /// the assistant's answer through the end of its turn, the only tokens scored.
    pub fn encode_example(
        &self,
        prompt: &str,
        response: &str,
        max_len: usize,
    ) -> Result<Encoded, HfError> {
        self.encode_conversation(None, prompt, response, max_len)
    }

    /// [`ChatTokenizer::encode_example`] after a system message (ORCA's `system_prompt`),
    /// where there is one.
    pub fn encode_conversation(
        &self,
        system: Option<&str>,
        prompt: &str,
        response: &str,
        max_len: usize,
    ) -> Result<Encoded, HfError> {
        let mut messages: Vec<Message> = system
            .map(|s| Message::new("system", s))
            .into_iter()
            .collect();
        messages.push(Message::new("user", prompt));
        let head = self.render(&messages, true)?;
        messages.push(Message::new("assistant", response));
        let whole = self.render(&messages, false)?;
        let Some(tail) = whole.strip_prefix(head.as_str()) else {
            return Err(HfError::Template {
                path: self.template_path.clone(),
                message: "the conversation with an answer does not begin with the prompt as \
                          rendered for generation, so the answer's tokens cannot be told apart"
                    .into(),
            });
        };
        let mut tokens = self.encode(&head)?;
        let mut target = vec![false; tokens.len()];
        tokens.extend(self.encode(tail)?);
        target.resize(tokens.len(), true);
        tokens.truncate(max_len);
        target.truncate(max_len);
        Ok(Encoded { tokens, target })
    }

    /// Ids that end an answer.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The id batches are padded with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

/// A special token as `tokenizer_config.json` writes it: a string, or an `AddedToken` object.
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The default template of a `tokenizer_config.json`: a string, or a list of named
/// templates of which `default` is the one `apply_chat_template` uses.
fn template_in_config(
    path: &Path,
    config: &serde_json::Map<String, Value>,
) -> Result<String, HfError> {
    let missing = || HfError::Config {
        path: path.to_path_buf(),
        key: "chat_template".into(),
        message: "missing (and no chat_template.jinja beside it): sweep renders prompts \
                  through the model's chat template"
            .into(),
    };
    match config.get("chat_template") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(missing),
        _ => Err(missing()),
    }
}
