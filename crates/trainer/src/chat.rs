//! How a trial's prompts and answers become tokens and back: the built-in miniature's byte
//! template, or a checkpoint's own tokenizer and chat template. Everything downstream
//! (training pools, evaluation sets, greedy decoding) sees token ids only, so both kinds of
//! model run through the same trial.

use crate::data::Example;
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

    /// The tokens of plain text, without a chat template, as lm-evaluation-harness encodes a
    /// benchmark's text: the miniature's bytes, or the tokenizer with its default special
    /// tokens (a BOS where the tokenizer adds one).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, HfError> {
        match self {
            Chat::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Chat::Hf(t) => t.encode_plain(text),
        }
    }

    /// The token that fills batches (never scored).
    pub fn pad_id(&self) -> u32 {
        match self {
            Chat::Bytes => PAD,
            Chat::Hf(t) => t.pad_id(),
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

    /// A fine-tuning example with its system message, if it has one: through the template's
    /// `system` turn for a checkpoint, on a paragraph before the request for the miniature
    /// (whose template has no such turn).
    pub fn encode(&self, example: &Example, max_len: usize) -> Result<Encoded, HfError> {
        let system = example.system.as_deref();
        match (self, system) {
            (_, None) => self.encode_example(&example.prompt, &example.response, max_len),
            (Chat::Bytes, Some(system)) => Ok(tokenizer::encode_example(
                &format!("{system}\n\n{}", example.prompt),
                &example.response,
                max_len,
            )),
            (Chat::Hf(t), Some(_)) => {
                t.encode_conversation(system, &example.prompt, &example.response, max_len)
            }
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

/// Which half of an evaluation set a prompt belongs to: configurations are chosen on the
/// validation half and reported on the test half, so the chosen one's numbers carry no
/// winner's curse. Fixed by the prompt's text alone (the lowest bit of its BLAKE3 hash), so
/// the halves are the same on every run, machine and sweep, and never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to choose.
    Validation,
    /// Used to report.
    Test,
}

impl Split {
    /// The half `prompt` belongs to.
    pub fn of(prompt: &str) -> Split {
        if blake3::hash(prompt.as_bytes()).as_bytes()[0] & 1 == 0 {
            Split::Validation
        } else {
            Split::Test
        }
    }

    /// The prefix of the metrics computed on this half: `val_` or `test_`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Validation => "val_",
            Split::Test => "test_",
        }
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
    /// The half each belongs to.
    pub split: Vec<Split>,
}

impl Prompts {
    /// Encodes `text` through `chat`.
    pub fn new(text: Vec<String>, chat: &Chat) -> Result<Prompts, HfError> {
        let ids = text
            .iter()
            .map(|p| chat.encode_prompt(p))
            .collect::<Result<_, _>>()?;
        let split = text.iter().map(|p| Split::of(p)).collect();
        Ok(Prompts { text, ids, split })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_fixed_by_the_text_and_about_even() {
        let prompts: Vec<String> = (0..1000)
            .map(|i| format!("How do I do thing {i}?"))
            .collect();
        let test = prompts
            .iter()
            .filter(|p| Split::of(p) == Split::Test)
            .count();
        assert!(
            (400..600).contains(&test),
            "{test} of 1000 in the test half"
        );
        // Pinned against Python's blake3 package (the lowest bit of the first byte): a change
        // to the rule would silently move prompts between the halves.
        assert_eq!(test, 489);
        let (v, t) = (Split::Validation, Split::Test);
        let first: Vec<Split> = prompts[..8].iter().map(|p| Split::of(p)).collect();
        assert_eq!(first, [v, v, t, v, v, v, t, t]);
    }
}
