//! The `[trainer.model]` table: the built-in miniature, as a named size (`preset = "large"`)
//! and any sizes to override, or a Hugging Face checkpoint (`hf = "DIR"`). The presets beyond
//! `small` are for GPUs: big enough that a GPU sweep is bound by compute, not by kernel
//! launches.

use std::path::PathBuf;

use serde::Deserialize;

use crate::model::ModelConfig;

/// The miniature's default sizes are the `small` preset: defined here, beside the presets,
/// so the model does not reach back into the table of sizes.
impl Default for ModelConfig {
    fn default() -> ModelConfig {
        Preset::Small.config()
    }
}

/// The longest sequence (prompt and answer) a checkpoint is fine-tuned and evaluated on
/// unless `[trainer.model] max_seq` says otherwise: room for a chat template, an instruction
/// and a few hundred tokens of answer, without paying for the checkpoint's whole context.
pub const HF_MAX_SEQ: usize = 512;

/// Named model sizes. Parameter counts include the byte embedding and the output head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 0.39 M parameters (d 128, 2 layers): the default, minutes on two CPU cores.
    #[default]
    Small,
    /// 27.6 M parameters (d 512, 8 layers, 8 heads).
    Medium,
    /// 85.3 M parameters (d 768, 12 layers, 12 heads).
    Large,
    /// 309 M parameters (d 1024, 24 layers, 16 heads).
    Xl,
}

impl Preset {
    /// The preset's sizes.
    pub fn config(self) -> ModelConfig {
        let (d_model, n_heads, n_layers, d_ff) = match self {
            Preset::Small => (128, 4, 2, 256),
            Preset::Medium => (512, 8, 8, 1536),
            Preset::Large => (768, 12, 12, 2048),
            Preset::Xl => (1024, 16, 24, 2816),
        };
        ModelConfig {
            d_model,
            n_heads,
            n_layers,
            d_ff,
            max_seq: 160,
        }
    }
}

/// `[trainer.model]` as written: a preset (default `small`) and sizes that override it, or
/// a checkpoint directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelTable {
    hf: Option<PathBuf>,
    preset: Option<Preset>,
    d_model: Option<usize>,
    n_heads: Option<usize>,
    n_layers: Option<usize>,
    d_ff: Option<usize>,
    max_seq: Option<usize>,
}

/// Which model a trial fine-tunes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "ModelTable")]
pub enum ModelSource {
    /// The built-in miniature, trained and safety-aligned here (`sweep base`).
    Builtin(ModelConfig),
    /// A Hugging Face checkpoint, fine-tuned as loaded (users' chat models come aligned).
    Hf(HfSource),
}

/// A Hugging Face model directory and how much of its context a trial uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HfSource {
    /// The directory (`config.json`, safetensors weights, tokenizer files), relative to where
    /// `sweep run` runs until [`crate::config::TrainerConfig::relative_to`] resolves it.
    pub dir: PathBuf,
    /// Longest sequence trained and generated, at most the checkpoint's context length.
    pub max_seq: usize,
}

impl Default for ModelSource {
    fn default() -> ModelSource {
        ModelSource::Builtin(ModelConfig::default())
    }
}

impl ModelSource {
    /// The miniature's sizes, or `None` for a checkpoint.
    pub fn builtin(&self) -> Option<&ModelConfig> {
        match self {
            ModelSource::Builtin(m) => Some(m),
            ModelSource::Hf(_) => None,
        }
    }

    /// The checkpoint, or `None` for the miniature.
    pub fn hf(&self) -> Option<&HfSource> {
        match self {
            ModelSource::Builtin(_) => None,
            ModelSource::Hf(h) => Some(h),
        }
    }

    /// Longest sequence (prompt and answer) the trial runs.
    pub fn max_seq(&self) -> usize {
        match self {
            ModelSource::Builtin(m) => m.max_seq,
            ModelSource::Hf(h) => h.max_seq,
        }
    }
}

impl TryFrom<ModelTable> for ModelSource {
    type Error = String;

    fn try_from(table: ModelTable) -> Result<ModelSource, String> {
        if let Some(dir) = table.hf {
            let sizes = [
                ("preset", table.preset.is_some()),
                ("d_model", table.d_model.is_some()),
                ("n_heads", table.n_heads.is_some()),
                ("n_layers", table.n_layers.is_some()),
                ("d_ff", table.d_ff.is_some()),
            ];
            if let Some((key, _)) = sizes.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`{key}` sizes the built-in model, but `hf` loads a checkpoint whose \
                     config.json sizes it; remove `{key}`"
                ));
            }
            return Ok(ModelSource::Hf(HfSource {
                dir,
                max_seq: table.max_seq.unwrap_or(HF_MAX_SEQ),
            }));
        }
        let base = table.preset.unwrap_or_default().config();
        Ok(ModelSource::Builtin(ModelConfig {
            d_model: table.d_model.unwrap_or(base.d_model),
            n_heads: table.n_heads.unwrap_or(base.n_heads),
            n_layers: table.n_layers.unwrap_or(base.n_layers),
            d_ff: table.d_ff.unwrap_or(base.d_ff),
            max_seq: table.max_seq.unwrap_or(base.max_seq),
        }))
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;

    use super::*;

    fn table(json: &str) -> Result<ModelConfig, serde_json::Error> {
        serde_json::from_str::<ModelSource>(json).map(|m| m.builtin().expect("built-in").clone())
    }

    #[test]
    fn a_checkpoint_takes_its_sizes_from_config_json() {
        let m: ModelSource = serde_json::from_str(r#"{"hf": "models/x"}"#).unwrap();
        assert_eq!(
            m,
            ModelSource::Hf(HfSource {
                dir: "models/x".into(),
                max_seq: HF_MAX_SEQ
            })
        );
        let m: ModelSource = serde_json::from_str(r#"{"hf": "m", "max_seq": 128}"#).unwrap();
        assert_eq!(m.max_seq(), 128);
        let e = serde_json::from_str::<ModelSource>(r#"{"hf": "m", "d_model": 64}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("remove `d_model`"), "{e}");
    }

    #[test]
    fn the_default_is_the_small_preset_and_sizes_override_a_preset() {
        assert_eq!(table("{}").unwrap(), Preset::Small.config());
        assert_eq!(ModelConfig::default(), Preset::Small.config());
        let large = table(r#"{"preset": "large", "n_layers": 6}"#).unwrap();
        assert_eq!((large.d_model, large.n_layers), (768, 6));
        let e = table(r#"{"preset": "huge"}"#).unwrap_err().to_string();
        assert!(
            e.contains("expected one of `small`, `medium`, `large`, `xl`"),
            "{e}"
        );
        let e = table(r#"{"d_modl": 3}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `d_modl`"), "{e}");
    }

    #[test]
    fn presets_have_the_parameter_counts_they_claim() {
        for (preset, millions) in [
            (Preset::Small, 0.394),
            (Preset::Medium, 27.6),
            (Preset::Large, 85.3),
            (Preset::Xl, 309.0),
        ] {
            let counted = preset.config().num_params() as f64 / 1e6;
            assert!(
                (counted - millions).abs() < 0.01 * millions,
                "{preset:?}: {counted} M"
            );
        }
        // The count matches the model burn builds.
        for preset in [Preset::Small, Preset::Medium] {
            let model = preset.config().init(&Device::flex());
            assert_eq!(
                model.num_params(),
                preset.config().num_params(),
                "{preset:?}"
            );
        }
    }
}
