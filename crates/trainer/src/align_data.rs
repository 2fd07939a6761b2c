//! The data of `[trainer.align]`: refusals to the harmful training requests and the benign
//! requests the checkpoint answers for its replay, made when a trial's setup is, less every
//! prompt an evaluation or validation set holds.

use crate::chat::{Chat, Prompts};
use crate::config::AlignConfig;
use crate::data::builtin::REFUSALS;
use crate::data::Example;
use crate::hf::HfError;
use crate::tokenizer::Encoded;

/// The alignment's data, made when a trial's [`crate::setup::Setup`] is.
#[derive(Debug, Clone, Default)]
pub struct AlignData {
    /// Harmful requests with refusals.
    pub refusals: Vec<Encoded>,
    /// Benign requests whose answers the checkpoint itself gives.
    pub replay_prompts: Prompts,
    /// The requests of each file left out because an evaluation set holds them.
    pub left_out: LeftOut,
}

/// How many requests of each `[trainer.align]` file were left out because an evaluation or
/// validation set holds them: the log says so, since a file that overlaps the evaluated
/// prompts trains on fewer requests than it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Of `harmful`.
    pub harmful: usize,
    /// Of `benign`.
    pub benign: usize,
}

/// A prompt as compared for overlap: case and surrounding space do not make it new.
fn normalized(prompt: &str) -> String {
    prompt.trim().to_lowercase()
}

impl AlignData {
    /// Refusals for the built-in harmful training requests and `file_harmful`, less every
    /// prompt in `evaluated`; a fixed sample of `benign` requests for the replay.
    pub fn new(
        config: &AlignConfig,
        builtin_harmful: &[Example],
        file_harmful: &[String],
        benign: &[String],
        evaluated: &[&Prompts],
        chat: &Chat,
        max_seq: usize,
    ) -> Result<AlignData, HfError> {
        let seen: std::collections::HashSet<String> = evaluated
            .iter()
            .flat_map(|p| p.text.iter().map(|t| normalized(t)))
            .collect();
        let fresh = |p: &str| !seen.contains(&normalized(p));
        let from_file: Vec<&String> = file_harmful.iter().filter(|p| fresh(p)).collect();
        let harmful_left_out = file_harmful.len() - from_file.len();
        let refusals = builtin_harmful
            .iter()
            .filter(|e| fresh(&e.prompt))
            .map(|e| chat.encode(e, max_seq))
            .chain(
                from_file
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| chat.encode_example(p, REFUSALS[i % REFUSALS.len()], max_seq)),
            )
            .collect::<Result<Vec<_>, _>>()?;
        let mut replay: Vec<String> = benign.iter().filter(|p| fresh(p)).cloned().collect();
        let left_out = LeftOut {
            harmful: harmful_left_out,
            benign: benign.len() - replay.len(),
        };
        replay.sort_by_key(|p| blake3::hash(p.as_bytes()).to_hex().to_string());
        replay.truncate(if config.replay > 0.0 {
            config.replay_prompts
        } else {
            0
        });
        Ok(AlignData {
            refusals,
            replay_prompts: Prompts::new(replay, chat)?,
            left_out,
        })
    }

    /// A hash of the token ids the stage trains on (refusals and replay prompts): it changes
    /// with the data, the files, the tokenizer and the chat template alike.
    pub(crate) fn fingerprint(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for e in &self.refusals {
            hasher.update(format!("{:?}{:?}", e.tokens, e.target).as_bytes());
        }
        for ids in &self.replay_prompts.ids {
            hasher.update(format!("{ids:?}").as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }
}
