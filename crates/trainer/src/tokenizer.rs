//! A byte-level tokenizer with the chat template of the built-in model.
//!
//! Tokens 0–255 are bytes, [`EOS`] ends a response and [`PAD`] fills batches. Bytes never fail
//! to encode, so any prompt (in any language) can be fed to the model without a vocabulary.

/// End of a response.
pub const EOS: u32 = 256;
/// Padding; never a training target.
pub const PAD: u32 = 257;
/// Vocabulary size (256 bytes, EOS, PAD).
pub const VOCAB_SIZE: usize = 258;

/// The text before a prompt.
pub const INSTRUCTION_HEADER: &str = "### Instruction:\n";
/// The text between a prompt and its response.
pub const RESPONSE_HEADER: &str = "\n### Response:\n";

/// The tokens that ask the model to respond to `prompt`.
pub fn encode_prompt(prompt: &str) -> Vec<u32> {
    let text = format!("{INSTRUCTION_HEADER}{prompt}{RESPONSE_HEADER}");
    text.bytes().map(u32::from).collect()
}

/// A training example: the tokens of prompt, response and EOS, and per token whether it is a
/// target of the loss (the response and EOS only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// `true` where the token is predicted by the loss.
    pub target: Vec<bool>,
}

impl Encoded {
    /// How many of its tokens the loss predicts (the first token is never predicted).
    pub fn predicted(&self) -> usize {
        self.target.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Encodes a prompt/response pair, truncated to `max_len` tokens (the prompt is kept; the
/// response is cut, losing its EOS if it does not fit).
pub fn encode_example(prompt: &str, response: &str, max_len: usize) -> Encoded {
    let mut tokens = encode_prompt(prompt);
    let mut target = vec![false; tokens.len()];
    tokens.extend(response.bytes().map(u32::from));
    tokens.push(EOS);
    target.resize(tokens.len(), true);
    tokens.truncate(max_len);
    target.truncate(max_len);
    Encoded { tokens, target }
}

/// Text of generated tokens, up to the first EOS; invalid UTF-8 is replaced, PAD dropped.
pub fn decode(tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens
        .iter()
        .take_while(|&&t| t != EOS)
        .filter_map(|&t| u8::try_from(t).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_covers_the_response_and_eos_only() {
        let e = encode_example("Hi", "Yo", 1000);
        let prompt_len = encode_prompt("Hi").len();
        assert_eq!(e.tokens.len(), prompt_len + 3);
        assert!(e.target[..prompt_len].iter().all(|t| !t));
        assert!(e.target[prompt_len..].iter().all(|t| *t));
        assert_eq!(*e.tokens.last().unwrap(), EOS);
        assert_eq!(decode(&e.tokens[prompt_len..]), "Yo");
    }

    #[test]
    fn truncation_keeps_lengths_in_step() {
        let e = encode_example("Hi", "a long response", 30);
        assert_eq!(e.tokens.len(), 30);
        assert_eq!(e.target.len(), 30);
    }

    #[test]
    fn decodes_multibyte_text() {
        let tokens: Vec<u32> = "café".bytes().map(u32::from).chain([EOS, 65]).collect();
        assert_eq!(decode(&tokens), "café");
    }
}
