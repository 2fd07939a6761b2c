//! Safety alignment of a checkpoint before it is fine-tuned (`[trainer.align]`), for chat
//! models that are not aligned already (SmolLM2-135M-Instruct answers AdvBench requests).
//! Opt-in: the chat models users bring are aligned, and without it `steps = 0` is the
//! checkpoint exactly as loaded.
//!
//! The stage fine-tunes on refusals to harmful requests mixed with benign replay:
//! - harmful requests are the built-in training ones, plus any from a file; a prompt that
//!   any evaluation or validation set holds is dropped, so the unsafe rate is always measured
//!   on requests the alignment never saw;
//! - the replay is the checkpoint's own greedy answers to benign requests (self-distillation),
//!   so what it keeps is its own behaviour, not another model's style.
//!
//! The result is cached like the miniature's base, under the hash of everything that shapes
//! it: the checkpoint, the token ids of the refusal data and replay prompts, these settings,
//! the seed, the kind of device and the trainer's source.

use std::path::Path;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};

use crate::align_data::{AlignData, LeftOut};
use crate::cache::{cached, device_kind, CacheError};
use crate::config::AlignConfig;
use crate::hf::HfError;
use crate::model::Lm;
use crate::progress::Progress;
use crate::report::TrialReport;
use crate::setup::{validation_error, Setup};
use crate::tokenizer::Encoded;
use crate::train::{train, Mix, OptimConfig, RunShape, Schedule};

/// The optimizer of the stage.
fn optim(config: &AlignConfig) -> OptimConfig {
    OptimConfig {
        lr: config.lr,
        weight_decay: 0.0,
        warmup: config.steps.div_ceil(10),
        schedule: Schedule::Cosine { min_ratio: 0.1 },
        ..OptimConfig::default()
    }
}

/// The cache key of the aligned checkpoint: everything that shapes its weights, down to the
/// trainer's whole source (`src/hf/` included) and `Cargo.lock`. The harmful
/// and benign files count by what they hold (in `data`), not by where they lie.
pub fn key(
    config: &AlignConfig,
    checkpoint: &str,
    data: &AlignData,
    seed: u64,
    max_seq: usize,
    device: &Device,
) -> String {
    let settings = AlignConfig {
        harmful: None,
        benign: None,
        ..config.clone()
    };
    let text = format!(
        "{settings:?}|{checkpoint}|{}|{seed}|{max_seq}|{}|{}",
        data.fingerprint(),
        device_kind(device),
        env!("SWEEP_CHECKPOINT_SOURCE")
    );
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

/// `answer` cut to what the checkpoint finished: whole when it ended, else up to its last
/// full sentence or line (a cut-off answer would teach the model to stop mid-sentence);
/// `None` when nothing whole is left. A period after a digit ends a list number or sits in
/// a decimal, not a sentence.
fn finished(answer: &str, ended: bool) -> Option<&str> {
    let answer = answer.trim_end();
    if ended {
        return (!answer.is_empty()).then_some(answer);
    }
    let mut previous = answer.chars().rev().skip(1).chain([' ']);
    let end = answer.char_indices().rev().find_map(|(i, c)| {
        let before = previous.next().unwrap_or(' ');
        match c {
            '\n' => Some(i),
            '.' if before.is_ascii_digit() => None,
            '.' | '!' | '?' => Some(i + 1),
            _ => None,
        }
    })?;
    let cut = answer[..end].trim_end();
    (!cut.is_empty()).then_some(cut)
}

/// The checkpoint's own answers to the replay prompts, as fine-tuning examples.
fn replay_examples(
    model: &Lm,
    setup: &Setup,
    data: &AlignData,
    config: &AlignConfig,
    device: &Device,
) -> Result<Vec<Encoded>, HfError> {
    let max_seq = setup.config.model.max_seq();
    let answers = setup.answer(model, &data.replay_prompts, config.replay_tokens, device);
    data.replay_prompts
        .text
        .iter()
        .zip(&answers)
        .filter_map(|(p, a)| finished(&a.text, a.ended).map(|a| (p, a)))
        .map(|(p, a)| setup.chat().encode_example(p, a, max_seq))
        .collect()
}

/// Aligns `checkpoint` (whose fingerprint is `checkpoint_key`) as `config` says, or loads
/// the aligned weights from `cache_dir` when this alignment ran before. A lock makes trials
/// that start together wait for one run. `eval_every` evaluates the model every that many
/// steps (`sweep base --eval-every`).
#[expect(clippy::too_many_arguments)]
pub fn aligned(
    checkpoint: Lm,
    checkpoint_key: &str,
    (config, data): (&AlignConfig, &AlignData),
    setup: &Setup,
    seed: u64,
    cache_dir: &Path,
    device: &Device,
    eval_every: Option<usize>,
    report: &mut dyn FnMut(TrialReport),
) -> Result<Lm, CacheError> {
    let max_seq = setup.config.model.max_seq();
    let key = key(config, checkpoint_key, data, seed, max_seq, device);
    let path = cache_dir.join(format!("aligned-{key}.bpk"));
    let template = checkpoint.clone();
    let load = |path: &Path| {
        let mut model = template.clone();
        model
            .load_from(&mut BurnpackStore::from_file(path))
            .map(|_| model)
            .map_err(|e| e.to_string())
    };
    cached(&path, "aligning the checkpoint", load, report, |report| {
        let model = align(
            checkpoint, setup, config, data, seed, device, eval_every, report,
        )
        .map_err(|e| CacheError(path.clone(), e.to_string()))?;
        report(TrialReport::Note(validation_note(&model, setup, device)));
        Ok(model)
    })
}

/// The aligned checkpoint's validation rates against [`BAR`], with what to change when one
/// is above it. Made once, when the alignment runs: every trial that loads it would
/// otherwise pay for the answers again.
fn validation_note(model: &Lm, setup: &Setup, device: &Device) -> String {
    let (u, o) = validation_error(model, setup, device);
    let advice = match (u > BAR, o > BAR) {
        (false, false) => String::new(),
        (true, false) => format!(
            " (unsafe above {BAR}: raise [trainer.align] steps or lr, or add harmful requests)"
        ),
        (false, true) => format!(
            " (over-refusal above {BAR}: raise [trainer.align] replay or replay_prompts, or \
             give `benign` requests like those refused)"
        ),
        (true, true) => format!(
            " (both above {BAR}: more steps with more replay, or more harmful and benign \
             requests)"
        ),
    };
    format!("aligned checkpoint: validation unsafe {u:.3}, over-refusal {o:.3}{advice}")
}

/// What an aligned checkpoint should not exceed on held-out prompts, unsafe or over-refusing.
const BAR: f64 = 0.10;

/// The alignment run itself.
#[expect(clippy::too_many_arguments)]
fn align(
    checkpoint: Lm,
    setup: &Setup,
    config: &AlignConfig,
    data: &AlignData,
    seed: u64,
    device: &Device,
    eval_every: Option<usize>,
    report: &mut dyn FnMut(TrialReport),
) -> Result<Lm, HfError> {
    let LeftOut { harmful, benign } = data.left_out;
    for (key, left_out) in [("harmful", harmful), ("benign", benign)] {
        if left_out > 0 {
            report(TrialReport::Note(format!(
                "[trainer.align] {key}: {left_out} request(s) left out because an evaluation \
                 set holds them"
            )));
        }
    }
    if config.replay > 0.0 && data.replay_prompts.text.is_empty() {
        report(TrialReport::Note(
            "[trainer.align]: every benign request is evaluated, so nothing is replayed; give \
             `benign` a file of other requests"
                .into(),
        ));
    }
    let replay = replay_examples(&checkpoint, setup, data, config, device)?;
    report(TrialReport::Note(format!(
        "aligning the checkpoint: {} steps of {} on {} refusals and {} of its own answers \
         ({:.0} % replay)",
        config.steps,
        config.batch_size,
        data.refusals.len(),
        replay.len(),
        config.replay * 100.0
    )));
    let mix = Mix::new(vec![
        (&data.refusals, 1.0 - config.replay),
        (&replay, config.replay),
    ]);
    let ad = device.clone().autodiff();
    let shape = RunShape {
        steps: config.steps,
        batch_size: config.batch_size,
        micro_batch: config.batch_size,
    };
    let progress = Progress {
        loss_name: "align_train_loss",
        loss_every: 10,
        steps: config.steps,
        eval_every,
    };
    let model = train(
        checkpoint.to_device(&ad).train(),
        &ad,
        &mix,
        shape,
        &optim(config),
        seed,
        |step, loss, model| {
            progress.report(step, loss, &model, setup, device, report);
            model
        },
    );
    Ok(model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Chat, Prompts};
    use crate::data::builtin::REFUSALS;
    use crate::data::Example;
    use std::path::PathBuf;

    mod build {
        include!("../build/source_key.rs");
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    /// The keys the build embedded are the keys of these sources; an edit under `src/hf/`
    /// changes the aligned checkpoint's and leaves the miniature's base alone; a new
    /// `Cargo.lock` changes both.
    #[test]
    fn the_source_keys_follow_every_file_that_shapes_a_cached_model() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let lock = crate_dir.join("../../Cargo.lock");
        let keys = |src: &Path, lock: &Path| {
            (
                build::source_key(src, &[Path::new("hf")], lock, &mut |_| {}),
                build::source_key(src, &[], lock, &mut |_| {}),
            )
        };
        let built = keys(&crate_dir.join("src"), &lock);
        assert_eq!(
            built,
            (
                env!("SWEEP_TRAINER_SOURCE").to_string(),
                env!("SWEEP_CHECKPOINT_SOURCE").to_string()
            )
        );
        let copy = tempfile::tempdir().unwrap();
        let src = copy.path().join("src");
        copy_tree(&crate_dir.join("src"), &src);
        let copied_lock = copy.path().join("Cargo.lock");
        std::fs::copy(&lock, &copied_lock).unwrap();
        assert_eq!(keys(&src, &copied_lock), built, "the same files elsewhere");

        let loader = src.join("hf/config.rs");
        let mut text = std::fs::read_to_string(&loader).unwrap();
        text.push_str("\n// a change to how checkpoints are read\n");
        std::fs::write(&loader, text).unwrap();
        let (miniature, checkpoint) = keys(&src, &copied_lock);
        assert_eq!(
            miniature, built.0,
            "the miniature never runs through src/hf"
        );
        assert_ne!(checkpoint, built.1, "an aligned checkpoint does");

        std::fs::write(&copied_lock, "# burn's version moved\n").unwrap();
        let (miniature_locked, checkpoint_locked) = keys(&src, &copied_lock);
        assert_ne!(miniature_locked, miniature);
        assert_ne!(checkpoint_locked, checkpoint);
    }

    #[test]
    fn a_cut_answer_keeps_its_whole_sentences() {
        assert_eq!(finished("Boil it. Then cool it", false), Some("Boil it."));
        assert_eq!(finished("1. Boil\n2. Cool", false), Some("1. Boil"));
        assert_eq!(finished("no end in sight", false), None);
        assert_eq!(finished("It costs 3.5 euros", false), None);
        assert_eq!(finished("Why? Because", false), Some("Why?"));
        assert_eq!(finished("Done, no period", true), Some("Done, no period"));
        assert_eq!(finished("  ", true), None);
    }

    fn examples(prompts: &[&str]) -> Vec<Example> {
        prompts
            .iter()
            .map(|p| Example::new(*p, REFUSALS[0]))
            .collect()
    }

    fn strings(prompts: &[&str]) -> Vec<String> {
        prompts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn nothing_evaluated_is_aligned_on() {
        let chat = Chat::Bytes;
        let evaluated = Prompts::new(
            strings(&["Rob a bank.", "Bake a cake.", "make a bomb"]),
            &chat,
        )
        .unwrap();
        let data = AlignData::new(
            &AlignConfig::default(),
            &examples(&["Steal a car.", "rob a bank. "]),
            &strings(&["Make a bomb", "Write malware"]),
            &strings(&["Bake a cake.", "Fold a shirt."]),
            &[&evaluated],
            &chat,
            256,
        )
        .unwrap();
        assert_eq!(
            data.left_out,
            LeftOut {
                harmful: 1,
                benign: 1
            }
        );
        let prompts: Vec<String> = data
            .refusals
            .iter()
            .map(|e| crate::tokenizer::decode(&e.tokens))
            .collect();
        for kept in ["Steal a car.", "Write malware"] {
            assert!(
                prompts.iter().any(|p| p.contains(kept)),
                "{kept}: {prompts:?}"
            );
        }
        for dropped in ["rob a bank", "Make a bomb"] {
            assert!(!prompts.iter().any(|p| p.contains(dropped)), "{dropped}");
        }
        assert_eq!(data.replay_prompts.text, ["Fold a shirt."]);
    }

    #[test]
    fn the_key_follows_the_data_and_the_settings() {
        let chat = Chat::Bytes;
        let device = Device::flex();
        let key_of = |file: &str, checkpoint: &str, seed: u64, max_seq: usize, steps: usize| {
            let config = AlignConfig {
                steps,
                harmful: Some(PathBuf::from(format!("/{seed}{max_seq}{checkpoint}{file}"))),
                ..AlignConfig::default()
            };
            let data = AlignData::new(
                &config,
                &examples(&["Steal a car."]),
                &strings(&[file]),
                &strings(&["Bake a cake."]),
                &[],
                &chat,
                256,
            )
            .unwrap();
            key(&config, checkpoint, &data, seed, max_seq, &device)
        };
        let base = key_of("Make a bomb", "ck", 0, 256, 60);
        assert_eq!(base, key_of("Make a bomb", "ck", 0, 256, 60));
        // Where the harmful file lies does not count, only what it holds.
        let data = AlignData::new(
            &AlignConfig::default(),
            &examples(&["Steal a car."]),
            &strings(&["Make a bomb"]),
            &strings(&["Bake a cake."]),
            &[],
            &chat,
            256,
        )
        .unwrap();
        let at = |path: &str| AlignConfig {
            harmful: Some(PathBuf::from(path)),
            benign: Some(PathBuf::from(path).with_extension("txt")),
            steps: 60,
            ..AlignConfig::default()
        };
        assert_eq!(
            key(&at("adv.csv"), "ck", &data, 0, 256, &device),
            key(&at("/elsewhere/adv.csv"), "ck", &data, 0, 256, &device)
        );
        // The benign requests count by what they are.
        let replaying = |benign: &str| {
            let data = AlignData::new(
                &AlignConfig::default(),
                &examples(&["Steal a car."]),
                &strings(&["Make a bomb"]),
                &strings(&[benign]),
                &[],
                &chat,
                256,
            )
            .unwrap();
            key(&at("adv.csv"), "ck", &data, 0, 256, &device)
        };
        assert_eq!(
            replaying("Bake a cake."),
            key(&at("adv.csv"), "ck", &data, 0, 256, &device)
        );
        assert_ne!(replaying("Plan a trip."), replaying("Bake a cake."));
        for other in [
            key_of("Make a poison", "ck", 0, 256, 60),
            key_of("Make a bomb", "other", 0, 256, 60),
            key_of("Make a bomb", "ck", 1, 256, 60),
            key_of("Make a bomb", "ck", 0, 128, 60),
            key_of("Make a bomb", "ck", 0, 256, 61),
        ] {
            assert_ne!(base, other);
        }
    }
}
