//! Four short examples the tiny-model tests train on (`tests/model.rs`, `tests/lora.rs`).

use sweep_trainer::tokenizer::{encode_example, Encoded};

/// Prompt and answer pairs in the miniature's template, at most 96 tokens.
pub fn examples() -> Vec<Encoded> {
    [
        ("Say hi", "hi"),
        ("Say yes", "yes"),
        ("Say no", "no"),
        ("Count", "one two"),
    ]
    .iter()
    .map(|(p, r)| encode_example(p, r, 96))
    .collect()
}
