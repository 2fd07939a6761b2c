//! PEFT's adapter directory (`adapter_config.json` + `adapter_model.safetensors`), written
//! for a LoRA trial's adapters so that `peft.PeftModel.from_pretrained(base, dir)` loads them
//! onto the base checkpoint, and read back (an adapter trained elsewhere, or sweep's own).
//!
//! PEFT names each factor `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`
//! (`[r, d_in]`) and `...lora_B.weight` (`[d_out, r]`), PyTorch's orientation: the transposes
//! of sweep's `a` and `b`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

use super::{read_json, HfError};
use crate::lora::{Adapters, LayerAdapters, Lora, LoraSpec, Target};
use crate::model::Arch;

/// The adapter's settings file.
pub const CONFIG: &str = "adapter_config.json";
/// The adapter's weights.
pub const WEIGHTS: &str = "adapter_model.safetensors";

/// PEFT's name of block `layer`'s factor `factor` (`A` or `B`) beside `target`.
fn key(layer: usize, target: Target, factor: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{factor}.weight",
        target.parent(),
        target.module()
    )
}

/// Writes `adapters` as PEFT's adapter directory `out` (whole or not at all), naming the
/// checkpoint `base` they adapt.
pub fn save_adapter(adapters: &Adapters, base: &Path, out: &Path) -> Result<(), HfError> {
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| HfError::io(&partial, e))?;
    let spec = adapters.spec();
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base.display().to_string(),
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": spec.targets.iter().map(|t| t.module()).collect::<Vec<_>>(),
        "use_rslora": spec.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": Value::Null,
        "layers_to_transform": Value::Null,
        "use_dora": false,
    });
    let config_path = partial.join(CONFIG);
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(&config).expect("a JSON value"),
    )
    .map_err(|e| HfError::io(&config_path, e))?;

    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (layer, adapted) in adapters.layers.iter().enumerate() {
        for target in Target::ALL {
            let Some(lora) = adapted.get(target) else {
                continue;
            };
            for (factor, value) in [('A', lora.a.val()), ('B', lora.b.val())] {
                let value = value.transpose();
                let shape = value.dims().to_vec();
                let floats = value
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 after conversion");
                let bytes = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push((key(layer, target, factor), shape, bytes));
            }
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| weights_error(&partial.join(WEIGHTS), e))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = partial.join(WEIGHTS);
    safetensors::serialize_to_file(views, Some(metadata), &weights)
        .map_err(|e| weights_error(&weights, e))?;
    let _ = std::fs::remove_dir_all(out);
    std::fs::rename(&partial, out).map_err(|e| HfError::io(out, e))
}

/// The checkpoint a PEFT adapter directory adapts: `base` when given, else the adapter's
/// `base_model_name_or_path` (relative paths are read from the current directory). `None`
/// when `dir` is no adapter directory.
pub fn adapter_base(dir: &Path, base: Option<&Path>) -> Result<Option<PathBuf>, HfError> {
    let config_path = dir.join(CONFIG);
    if !config_path.is_file() {
        return Ok(None);
    }
    if let Some(base) = base {
        return Ok(Some(base.to_path_buf()));
    }
    let config: Value = read_json(&config_path)?;
    match config["base_model_name_or_path"].as_str() {
        Some(named) if Path::new(named).join("config.json").is_file() => {
            Ok(Some(PathBuf::from(named)))
        }
        named => Err(HfError::Config {
            path: config_path,
            key: "base_model_name_or_path".into(),
            message: format!(
                "{} is not a checkpoint directory here (sweep downloads nothing); pass the \
                 base checkpoint's directory with --base DIR",
                named.map_or("null".to_string(), |n| format!("{n:?}"))
            ),
        }),
    }
}

/// Reads PEFT's adapter directory `dir` as adapters for a model of `arch` on `device`.
pub fn load_adapter(dir: &Path, arch: &Arch, device: &Device) -> Result<Adapters, HfError> {
    let config_path = dir.join(CONFIG);
    if !config_path.is_file() {
        return Err(HfError::Missing {
            path: config_path,
            what: "a PEFT adapter's settings",
        });
    }
    let config: Value = read_json(&config_path)?;
    let spec = adapter_spec(&config_path, &config)?;
    let weights_path = dir.join(WEIGHTS);
    let bytes = std::fs::read(&weights_path).map_err(|e| HfError::io(&weights_path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| weights_error(&weights_path, e))?;
    let factor = |layer: usize, target: Target, which: char, shape: [usize; 2]| {
        let name = key(layer, target, which);
        let missing = |message: String| HfError::Tensor {
            path: weights_path.clone(),
            tensor: name.clone(),
            message,
        };
        let view = file
            .tensor(&name)
            .map_err(|_| missing("missing from the adapter".into()))?;
        if view.shape() != shape {
            return Err(missing(format!(
                "has shape {:?}, but this model's {} with r = {} needs {shape:?}",
                view.shape(),
                target.module(),
                spec.rank
            )));
        }
        let data = match view.dtype() {
            Dtype::F32 => TensorData::from_bytes_vec(view.data().to_vec(), shape, DType::F32),
            Dtype::BF16 => TensorData::from_bytes_vec(view.data().to_vec(), shape, DType::BF16),
            Dtype::F16 => TensorData::from_bytes_vec(view.data().to_vec(), shape, DType::F16),
            other => {
                return Err(missing(format!(
                    "is {other:?}; sweep reads f32, bf16 and f16"
                )))
            }
        };
        // PyTorch's [out, in] to burn's [in, out].
        Ok(Tensor::<2>::from_data(data.convert::<f32>(), device).transpose())
    };
    let mut layers = Vec::with_capacity(arch.n_layers);
    for layer in 0..arch.n_layers {
        let mut adapted = LayerAdapters::empty();
        for target in &spec.targets {
            let (d_in, d_out) = arch.projection_dims(*target);
            let a = factor(layer, *target, 'A', [spec.rank, d_in])?;
            let b = factor(layer, *target, 'B', [d_out, spec.rank])?;
            *adapted.slot(*target) = Some(Lora::from_factors(a, b, &spec));
        }
        layers.push(adapted);
    }
    Ok(Adapters::from_layers(&spec, layers))
}

/// The settings of `adapter_config.json`, refusing what sweep's adapters do not do.
fn adapter_spec(path: &Path, config: &Value) -> Result<LoraSpec, HfError> {
    let refuse = |key: &str, message: &str| HfError::Config {
        path: path.to_path_buf(),
        key: key.into(),
        message: message.into(),
    };
    if config["peft_type"] != "LORA" {
        return Err(refuse("peft_type", "sweep reads LoRA adapters only"));
    }
    let rank = config["r"]
        .as_u64()
        .filter(|r| *r > 0)
        .ok_or_else(|| refuse("r", "must be a whole number from 1"))? as usize;
    let alpha = config["lora_alpha"]
        .as_f64()
        .ok_or_else(|| refuse("lora_alpha", "must be a number"))?;
    let targets = config["target_modules"]
        .as_array()
        .ok_or_else(|| {
            refuse(
                "target_modules",
                "must be a list of module names (sweep does not match PEFT's regular expressions)",
            )
        })?
        .iter()
        .map(|m| {
            m.as_str().and_then(Target::from_word).ok_or_else(|| {
                refuse(
                    "target_modules",
                    &format!("{m} is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    for key in ["rank_pattern", "alpha_pattern"] {
        if config[key].as_object().is_some_and(|o| !o.is_empty()) {
            return Err(refuse(
                key,
                "per-module ranks and alphas are not something sweep's adapters do",
            ));
        }
    }
    for (key, plain) in [
        ("use_dora", Value::Bool(false)),
        ("lora_bias", Value::Bool(false)),
        ("fan_in_fan_out", Value::Bool(false)),
        ("layers_to_transform", Value::Null),
        ("bias", Value::String("none".into())),
    ] {
        let value = &config[key];
        if !value.is_null() && *value != plain {
            return Err(refuse(
                key,
                &format!("{value} is not something sweep's adapters do (they take {plain})"),
            ));
        }
    }
    Ok(LoraSpec {
        rank,
        alpha,
        dropout: config["lora_dropout"].as_f64().unwrap_or(0.0),
        targets,
        rslora: config["use_rslora"].as_bool().unwrap_or(false),
    })
}

fn weights_error(path: &Path, e: safetensors::SafeTensorError) -> HfError {
    HfError::Weights {
        path: PathBuf::from(path),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::model::ModelConfig;

    /// Written and read back: the same factors, the same settings.
    #[test]
    fn an_adapter_directory_round_trips() {
        let device = crate::cpu_device();
        device.seed(5);
        let arch = ModelConfig::default().arch();
        let spec = LoraSpec {
            rank: 4,
            alpha: 16.0,
            targets: crate::lora::parse_targets("q,v,down").unwrap(),
            ..LoraSpec::default()
        };
        let mut adapters =
            Adapters::init(&spec, arch.n_layers, |t| arch.projection_dims(t), &device);
        for layer in &mut adapters.layers {
            let lora = layer.slot(Target::Down).as_mut().unwrap();
            let shape = lora.b.val().dims();
            lora.b = burn::module::Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 1.0),
                &device,
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        save_adapter(&adapters, Path::new("models/base"), &out).unwrap();
        let config: Value = read_json(&out.join(CONFIG)).unwrap();
        assert_eq!(
            config["target_modules"],
            json!(["q_proj", "v_proj", "down_proj"])
        );
        assert_eq!(config["r"], 4);
        let back = load_adapter(&out, &arch, &device).unwrap();
        assert_eq!(back.spec(), &spec);
        for (a, b) in adapters.layers.iter().zip(&back.layers) {
            for target in Target::ALL {
                match (a.get(target), b.get(target)) {
                    (None, None) => {}
                    (Some(x), Some(y)) => {
                        let diff = (x.delta() - y.delta()).abs().max().into_scalar::<f32>();
                        assert_eq!(diff, 0.0, "{target:?}");
                    }
                    _ => panic!("{target:?} differs"),
                }
            }
        }
        // An adapter of another rank is refused with the tensor's name.
        let smaller = Arch {
            d_model: arch.d_model / 2,
            ..arch
        };
        let e = load_adapter(&out, &smaller, &device)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lora_A.weight") && e.contains("has shape"),
            "{e}"
        );
    }
}
