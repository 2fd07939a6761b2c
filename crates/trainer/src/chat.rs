//! How a trial's prompts and answers become tokens and back: the built-in miniature's byte
//! template, or a checkpoint's own tokenizer and chat template. Everything downstream
//! (training pools, evaluation sets, greedy decoding) sees token ids only, so both kinds of
//! model run through the same trial.

use crate::eval::Response;
use crate::generate::{generate_ids, Tokens};
use crate::hf::{ChatTokenizer, HfError};
use crate::model::Lm;
use crate::tokenizer::{self, Encoded, EOS, PAD};

/// The tokenizer and chat template a trial speaks to its model with.
#[derive(Debug)]
pub enum Chat {
    /// The miniature's bytes and `### Instruction:` template ([`crate::tokenizer`]).
    Bytes,
    /// A checkpoint's `tokenizer.json` and Jinja chat template.
    Hf(Box<ChatTokenizer>),
}

impl Chat {
    /// The tokens that ask the model to answer `prompt`, as a user's one message.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, HfError> {
        match self {
            Chat::Bytes => Ok(tokenizer::encode_prompt(prompt)),
            Chat::Hf(t) => t.encode_prompt(prompt),
        }
    }

    /// A fine-tuning example, truncated to `max_len` tokens; only the answer (and the token
    /// that ends it) is scored by the loss.
    pub fn encode_example(
        &self,
        prompt: &str,
        response: &str,
        max_len: usize,
    ) -> Result<Encoded, HfError> {
        match self {
            Chat::Bytes => Ok(tokenizer::encode_example(prompt, response, max_len)),
            Chat::Hf(t) => t.encode_example(prompt, response, max_len),
        }
    }

    /// Greedy answers of `model` to already-encoded prompts, at most `max_new` tokens each
    /// and `max_seq` in all.
    pub fn answer(
        &self,
        model: &Lm,
        prompts: &[Vec<u32>],
        max_new: usize,
        max_seq: usize,
        device: &burn::tensor::Device,
    ) -> Vec<Response> {
        let tokens = match self {
            Chat::Bytes => Tokens {
                stop: &[EOS],
                pad: PAD,
            },
            Chat::Hf(t) => Tokens {
                stop: t.stop_ids(),
                pad: t.pad_id(),
            },
        };
        generate_ids(model, prompts, tokens, max_new, max_seq, device)
            .into_iter()
            .map(|g| Response {
                text: match self {
                    Chat::Bytes => tokenizer::decode(&g.tokens),
                    Chat::Hf(t) => t.decode(&g.tokens),
                },
                ended: g.ended,
            })
            .collect()
    }
}

/// Prompts with their tokens, encoded once when a trial starts (so a template that cannot
/// render one fails then, not halfway through an evaluation).
#[derive(Debug, Clone, Default)]
pub struct Prompts {
    /// The prompts as written.
    pub text: Vec<String>,
    /// Their tokens, as [`Chat::encode_prompt`] gives them.
    pub ids: Vec<Vec<u32>>,
}

impl Prompts {
    /// Encodes `text` through `chat`.
    pub fn new(text: Vec<String>, chat: &Chat) -> Result<Prompts, HfError> {
        let ids = text
            .iter()
            .map(|p| chat.encode_prompt(p))
            .collect::<Result<_, _>>()?;
        Ok(Prompts { text, ids })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}
