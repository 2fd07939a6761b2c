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

/// One module PEFT adapts in each block: a projection, or one of Phi-3's fused projections
/// (`qkv_proj`, `gate_up_proj`), whose rows are its parts' outputs in order.
struct Module {
    parent: &'static str,
    name: &'static str,
    /// The projections it computes, each with its rows.
    parts: Vec<(Target, usize)>,
}

impl Module {
    /// Its name inside a block, as PEFT's patterns match it (`model.layers.3.self_attn.q_proj`).
    fn path(&self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.{}", self.parent, self.name)
    }

    /// PEFT's name of factor `factor` (`A` or `B`) of this module in block `layer`.
    fn key(&self, layer: usize, factor: char) -> String {
        format!("base_model.model.{}.lora_{factor}.weight", self.path(layer))
    }
}

/// The modules PEFT adapts in a block of `arch`: its seven projections, or Phi-3's four.
fn modules(arch: &Arch) -> Vec<Module> {
    let single = |t: Target| Module {
        parent: t.parent(),
        name: t.module(),
        parts: vec![(t, arch.projection_dims(t).1)],
    };
    if !arch.fused {
        return Target::ALL.into_iter().map(single).collect();
    }
    let rows = |t: Target| (t, arch.projection_dims(t).1);
    vec![
        Module {
            parent: "self_attn",
            name: "qkv_proj",
            parts: vec![rows(Target::Q), rows(Target::K), rows(Target::V)],
        },
        single(Target::O),
        Module {
            parent: "mlp",
            name: "gate_up_proj",
            parts: vec![rows(Target::Gate), rows(Target::Up)],
        },
        single(Target::Down),
    ]
}

/// Writes `adapters` (of a model of `arch`) as PEFT's adapter directory `out` (whole or not
/// at all), naming the checkpoint `base` they adapt.
///
/// On Phi-3, whose checkpoints fuse q, k and v into `qkv_proj` (and gate and up into
/// `gate_up_proj`), PEFT adapts the fused module as one: sweep's adapters on its parts become
/// one adapter of rank k·r there (A: the parts' A stacked; B: their B on the diagonal, zero
/// rows for a part without one), with α scaled to keep each part's α / r, in
/// `rank_pattern` and `alpha_pattern`. It computes exactly what the separate adapters do.
pub fn save_adapter(
    adapters: &Adapters,
    arch: &Arch,
    base: &Path,
    out: &Path,
) -> Result<(), HfError> {
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| HfError::io(&partial, e))?;
    let spec = adapters.spec();
    let modules = modules(arch);
    let adapted = |m: &Module| -> usize {
        m.parts
            .iter()
            .filter(|(t, _)| spec.targets.contains(t))
            .count()
    };
    let (mut ranks, mut alphas) = (serde_json::Map::new(), serde_json::Map::new());
    for m in &modules {
        let k = adapted(m);
        if k > 1 {
            let alpha = if spec.rslora {
                spec.alpha * (k as f64).sqrt()
            } else {
                spec.alpha * k as f64
            };
            ranks.insert(m.name.into(), json!(k * spec.rank));
            alphas.insert(m.name.into(), json!(alpha));
        }
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base.display().to_string(),
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": modules.iter().filter(|m| adapted(m) > 0).map(|m| m.name).collect::<Vec<_>>(),
        "rank_pattern": ranks,
        "alpha_pattern": alphas,
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
    for (layer, block) in adapters.layers.iter().enumerate() {
        for m in &modules {
            let members: Vec<(Target, &Lora)> = m
                .parts
                .iter()
                .filter_map(|(t, _)| Some((*t, block.get(*t)?)))
                .collect();
            let Some((_, first)) = members.first() else {
                continue;
            };
            let device = first.a.val().device();
            // PyTorch's [out, in]: the transposes of burn's factors.
            let a = Tensor::cat(
                members.iter().map(|(_, l)| l.a.val().transpose()).collect(),
                0,
            );
            let b = Tensor::cat(
                m.parts
                    .iter()
                    .map(|(part, rows)| {
                        // Each member's columns: its own B on its part's rows, zeros elsewhere.
                        let columns = members
                            .iter()
                            .map(|(t, l)| match t == part {
                                true => l.b.val().transpose(),
                                false => Tensor::zeros([*rows, l.a.val().dims()[1]], &device),
                            })
                            .collect();
                        Tensor::cat(columns, 1)
                    })
                    .collect(),
                0,
            );
            for (factor, value) in [('A', a), ('B', b)] {
                let shape = value.dims().to_vec();
                let floats = value
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 after conversion");
                let bytes = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push((m.key(layer, factor), shape, bytes));
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

/// Reads PEFT's adapter directory `dir` as adapters for a model of `arch` on `device`. An
/// adapter on one of Phi-3's fused modules becomes one adapter per part, each with the whole
/// A and its own rows of B: the same delta, part by part.
pub fn load_adapter(dir: &Path, arch: &Arch, device: &Device) -> Result<Adapters, HfError> {
    let config_path = dir.join(CONFIG);
    if !config_path.is_file() {
        return Err(HfError::Missing {
            path: config_path,
            what: "a PEFT adapter's settings",
        });
    }
    let config: Value = read_json(&config_path)?;
    let settings = Settings::read(&config_path, &config, arch)?;
    let weights_path = dir.join(WEIGHTS);
    let bytes = std::fs::read(&weights_path).map_err(|e| HfError::io(&weights_path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| weights_error(&weights_path, e))?;
    let factor = |name: String, what: &str, shape: [usize; 2]| {
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
                "has shape {:?}, but this model's {what} needs {shape:?}",
                view.shape(),
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
        for m in &settings.modules {
            let path = m.path(layer);
            let (rank, alpha) = settings.rank_and_alpha(&path);
            let what = format!("{} with r = {rank}", m.name);
            let d_in = arch.projection_dims(m.parts[0].0).0;
            let rows = m.parts.iter().map(|(_, n)| n).sum();
            let a = factor(m.key(layer, 'A'), &what, [rank, d_in])?;
            let b = factor(m.key(layer, 'B'), &what, [rows, rank])?;
            let spec = LoraSpec {
                rank,
                alpha,
                ..settings.spec.clone()
            };
            let mut start = 0;
            for (target, n) in &m.parts {
                let part = b.clone().slice([0..rank, start..start + n]);
                *adapted.slot(*target) = Some(Lora::from_factors(a.clone(), part, &spec));
                start += n;
            }
        }
        layers.push(adapted);
    }
    Ok(Adapters::from_layers(&settings.spec, layers))
}

/// What `adapter_config.json` says, checked against the model it is read for.
struct Settings {
    /// The adapter's settings; its targets are every part of every module adapted.
    spec: LoraSpec,
    /// The modules adapted, in a block's order.
    modules: Vec<Module>,
    /// `rank_pattern` and `alpha_pattern`: per-module ranks and alphas, by PEFT's rule (a key
    /// names every module whose path ends with it, as a regular expression; the first key
    /// in the file that matches wins, as in PEFT's dictionary).
    ranks: Vec<(regex::Regex, usize)>,
    alphas: Vec<(regex::Regex, f64)>,
}

impl Settings {
    /// Reads the settings in `config` (the file at `path`), refusing what sweep's adapters do
    /// not do and modules a model of `arch` does not have.
    fn read(path: &Path, config: &Value, arch: &Arch) -> Result<Settings, HfError> {
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
            .ok_or_else(|| refuse("r", "must be a whole number from 1"))?
            as usize;
        let alpha = config["lora_alpha"]
            .as_f64()
            .ok_or_else(|| refuse("lora_alpha", "must be a number"))?;
        let mut known = modules(arch);
        let names = known.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
        let named: Vec<&str> = config["target_modules"]
            .as_array()
            .ok_or_else(|| {
                refuse(
                    "target_modules",
                    "must be a list of module names (sweep does not match PEFT's regular \
                     expressions)",
                )
            })?
            .iter()
            .map(|m| {
                m.as_str()
                    .filter(|m| known.iter().any(|k| k.name == *m))
                    .ok_or_else(|| {
                        refuse(
                            "target_modules",
                            &format!("{m} is not one of this model's modules ({names})"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        known.retain(|m| named.contains(&m.name));
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
        let pattern = |key: &str| -> Result<Vec<(regex::Regex, f64)>, HfError> {
            let Some(entries) = config[key].as_object() else {
                return Ok(Vec::new());
            };
            entries
                .iter()
                .map(|(name, value)| {
                    let bad = |what: &str| refuse(key, &format!("{name:?}: {what}"));
                    let re = regex::Regex::new(&format!(r"^(.*\.)?({name})$"))
                        .map_err(|_| bad("not a regular expression"))?;
                    let value = value.as_f64().ok_or_else(|| bad("must be a number"))?;
                    Ok((re, value))
                })
                .collect()
        };
        let ranks = pattern("rank_pattern")?
            .into_iter()
            .map(|(re, r)| match r >= 1.0 && r.fract() == 0.0 {
                true => Ok((re, r as usize)),
                false => Err(refuse("rank_pattern", "ranks are whole numbers from 1")),
            })
            .collect::<Result<_, _>>()?;
        let spec = LoraSpec {
            rank,
            alpha,
            dropout: config["lora_dropout"].as_f64().unwrap_or(0.0),
            targets: known
                .iter()
                .flat_map(|m| m.parts.iter().map(|p| p.0))
                .collect(),
            rslora: config["use_rslora"].as_bool().unwrap_or(false),
        };
        Ok(Settings {
            spec,
            modules: known,
            ranks,
            alphas: pattern("alpha_pattern")?,
        })
    }

    /// The rank and α of the module at `path` (`model.layers.3.self_attn.q_proj`).
    fn rank_and_alpha(&self, path: &str) -> (usize, f64) {
        let rank = self.ranks.iter().find(|(re, _)| re.is_match(path));
        let alpha = self.alphas.iter().find(|(re, _)| re.is_match(path));
        (
            rank.map_or(self.spec.rank, |(_, r)| *r),
            alpha.map_or(self.spec.alpha, |(_, a)| *a),
        )
    }
}

fn weights_error(path: &Path, e: safetensors::SafeTensorError) -> HfError {
    HfError::Weights {
        path: PathBuf::from(path),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {

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
        let adapters = crate::testing::random_adapters(&arch, &spec, &device);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        save_adapter(&adapters, &arch, Path::new("models/base"), &out).unwrap();
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

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// On Phi-3's fused modules: q and v adapters become one `qkv_proj` adapter of rank 2r
    /// (α doubled, so each part keeps α / r), gate alone one `gate_up_proj` adapter of rank
    /// r; read back, every projection gets the delta it had, and k and up none.
    #[test]
    fn fused_modules_take_one_adapter_that_computes_the_parts_deltas() {
        let device = crate::cpu_device();
        device.seed(6);
        let arch = Arch {
            fused: true,
            ..ModelConfig::default().arch()
        };
        for rslora in [false, true] {
            let spec = LoraSpec {
                rank: 4,
                alpha: 8.0,
                targets: crate::lora::parse_targets("q,v,gate,down").unwrap(),
                rslora,
                ..LoraSpec::default()
            };
            let adapters = crate::testing::random_adapters(&arch, &spec, &device);
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("adapter");
            save_adapter(&adapters, &arch, Path::new("models/phi3"), &out).unwrap();
            let config: Value = read_json(&out.join(CONFIG)).unwrap();
            assert_eq!(
                config["target_modules"],
                json!(["qkv_proj", "gate_up_proj", "down_proj"])
            );
            let alpha = if rslora { 8.0 * 2f64.sqrt() } else { 16.0 };
            assert_eq!(config["rank_pattern"], json!({"qkv_proj": 8}));
            assert_eq!(config["alpha_pattern"], json!({"qkv_proj": alpha}));
            let back = load_adapter(&out, &arch, &device).unwrap();
            for (a, b) in adapters.layers.iter().zip(&back.layers) {
                for target in Target::ALL {
                    let (d_in, d_out) = arch.projection_dims(target);
                    let delta = |l: Option<&Lora>| match l {
                        Some(l) => l.delta(),
                        None => Tensor::zeros([d_in, d_out], &device),
                    };
                    let diff = max_diff(delta(a.get(target)), delta(b.get(target)));
                    assert!(diff < 1e-5, "{target:?} (rslora {rslora}): {diff}");
                    assert_eq!(
                        b.get(target).is_some(),
                        target != Target::O,
                        "{target:?}: every part of an adapted module is read"
                    );
                }
            }
        }
    }

    /// `rank_pattern` and `alpha_pattern` as PEFT reads them: a key names the modules whose
    /// path ends with it.
    #[test]
    fn per_module_ranks_and_alphas_follow_pefts_patterns() {
        let device = crate::cpu_device();
        device.seed(7);
        let arch = ModelConfig::default().arch();
        let spec = LoraSpec {
            rank: 2,
            alpha: 4.0,
            targets: crate::lora::parse_targets("q,v").unwrap(),
            ..LoraSpec::default()
        };
        let adapters = crate::testing::random_adapters(&arch, &spec, &device);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        save_adapter(&adapters, &arch, Path::new("models/base"), &out).unwrap();
        // As PEFT would write it with r = 3 for block 0's v_proj, and α = 3 for every q_proj.
        let mut config: Value = read_json(&out.join(CONFIG)).unwrap();
        config["rank_pattern"] = json!({"layers.0.self_attn.v_proj": 3});
        config["alpha_pattern"] = json!({"q_proj": 3.0});
        std::fs::write(out.join(CONFIG), config.to_string()).unwrap();
        let e = load_adapter(&out, &arch, &device).unwrap_err().to_string();
        assert!(
            e.contains("layers.0.self_attn.v_proj.lora_A.weight")
                && e.contains("v_proj with r = 3"),
            "{e}"
        );
        assert!(
            !e.contains("layers.1."),
            "block 1 keeps r = 2, and block 0 fails first: {e}"
        );
        // Rank 2 everywhere again: each q_proj is scaled by 3 / 2 where it was 4 / 2.
        config["rank_pattern"] = json!({"layers.0.self_attn.v_proj": 2});
        std::fs::write(out.join(CONFIG), config.to_string()).unwrap();
        let back = load_adapter(&out, &arch, &device).unwrap();
        for (a, b) in adapters.layers.iter().zip(&back.layers) {
            let delta = |l: &LayerAdapters, t| l.get(t).unwrap().delta();
            let q = max_diff(delta(a, Target::Q).mul_scalar(0.75), delta(b, Target::Q));
            let v = max_diff(delta(a, Target::V), delta(b, Target::V));
            assert!(q < 1e-6 && v < 1e-6, "q {q}, v {v}");
            assert!(max_diff(delta(a, Target::Q), delta(b, Target::Q)) > 1e-3);
        }
    }
}
