//! The built-in trial's data and evaluation: what the model reads and how its answers are
//! scored.
//!
//! - [`tokenizer`]: bytes plus end-of-sequence and padding, and the chat template
//!   (`### Instruction:` / `### Response:`) with the loss on response tokens only.
//! - [`data`]: the miniature of the paper's setting made by code, deterministic and with no
//!   download (harmful requests with refusals, benign requests with helpful answers, a benign
//!   fine-tuning task with a held-out split, held-out harmful prompts), and readers for the real
//!   formats (AdvBench CSV, Alpaca JSON, Dolly JSONL).
//! - [`eval`]: keyword-matching safety (the 29-string GCG list, case-sensitive substrings, as in
//!   the paper), degenerate-output detection and exact-match utility.
//!
//! The burn model and training loop that consume these are the next piece of this crate.

pub mod base;
pub mod batch;
pub mod clip;
pub mod config;
pub mod data;
pub mod device;
pub mod ema;
pub mod eval;
pub mod generate;
pub mod model;
pub mod report;
pub mod setup;
pub mod spec;
pub mod tokenizer;
pub mod train;
pub mod trial;

pub use burn::tensor::Device;

/// The default device: burn's pure-Rust CPU backend (`flex`).
pub fn cpu_device() -> Device {
    Device::flex()
}
