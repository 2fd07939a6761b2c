//! The `[trainer.model]` table: a named size (`preset = "large"`) and any sizes to override.
//! The presets beyond `small` are for GPUs: big enough that a GPU sweep is bound by compute,
//! not by kernel launches.

use serde::Deserialize;

use crate::model::ModelConfig;

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

/// `[trainer.model]` as written: a preset (default `small`) and sizes that override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelTable {
    preset: Preset,
    d_model: Option<usize>,
    n_heads: Option<usize>,
    n_layers: Option<usize>,
    d_ff: Option<usize>,
    max_seq: Option<usize>,
}

impl From<ModelTable> for ModelConfig {
    fn from(table: ModelTable) -> ModelConfig {
        let base = table.preset.config();
        ModelConfig {
            d_model: table.d_model.unwrap_or(base.d_model),
            n_heads: table.n_heads.unwrap_or(base.n_heads),
            n_layers: table.n_layers.unwrap_or(base.n_layers),
            d_ff: table.d_ff.unwrap_or(base.d_ff),
            max_seq: table.max_seq.unwrap_or(base.max_seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;

    use super::*;

    fn table(json: &str) -> Result<ModelConfig, serde_json::Error> {
        serde_json::from_str(json)
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
