//! Safetensors weights in and out, through burn-store: PyTorch's `[out, in]` linear weights
//! transposed, norm `weight` read as burn's `gamma`, `model.` prefixes dropped, half-precision
//! files cast to f32. Single files and sharded ones (`model.safetensors.index.json`) alike.
//! A tensor the model lacks, one the files lack, or one of the wrong shape is an error.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::{DType, Device};

use super::{read_json, HfError};
use crate::model::{Arch, Lm};

/// The single-file weights name transformers writes.
const SINGLE: &str = "model.safetensors";
/// The index of sharded weights.
const INDEX: &str = "model.safetensors.index.json";

/// The weight files of `dir`: the one file, or every shard its index names.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX);
    if !index.is_file() {
        return Err(HfError::Missing {
            path: single,
            what: "the weights, or model.safetensors.index.json for sharded ones",
        });
    }
    let json: serde_json::Value = read_json(&index)?;
    let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(HfError::Config {
            path: index,
            key: "weight_map".into(),
            message: "missing or not an object of tensor name to shard file".into(),
        });
    };
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let Some(file) = file.as_str().filter(|f| !f.contains('/')) else {
            return Err(HfError::Config {
                path: index,
                key: format!("weight_map.{tensor}"),
                message: "not the file name of a shard in this directory".into(),
            });
        };
        shards.insert(file.to_string());
    }
    let shards: Vec<PathBuf> = shards.into_iter().map(|f| dir.join(f)).collect();
    if let Some(absent) = shards.iter().find(|s| !s.is_file()) {
        return Err(HfError::Missing {
            path: absent.clone(),
            what: "a shard that model.safetensors.index.json names",
        });
    }
    Ok(shards)
}

/// The checkpoint's name for a parameter path of [`Lm`] (or for a file's tensor name once
/// loading dropped its `model.` prefix).
fn hf_name(path: &str) -> String {
    let path = path
        .strip_suffix(".gamma")
        .map_or(path.to_string(), |p| format!("{p}.weight"));
    if path.starts_with("lm_head") {
        path
    } else {
        format!("model.{path}")
    }
}

/// Tensors a checkpoint may hold that [`Lm`] has no use for: RoPE frequency buffers some
/// older checkpoints saved, and the copy of the embedding some tied checkpoints keep as
/// `lm_head.weight` (transformers ignores it too).
fn ignorable(name: &str, arch: &Arch) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (arch.tied && name == "lm_head.weight")
}

/// Builds `arch` on `device` with the weights of the checkpoint in `dir`.
pub fn load_weights(dir: &Path, arch: &Arch, device: &Device) -> Result<Lm, HfError> {
    let mut model = arch.init(device);
    let expected: Vec<String> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut applied = HashSet::new();
    for file in weight_files(dir)? {
        let mut store = SafetensorsStore::from_file(&file)
            .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
            .with_key_remapping(r"^model\.", "")
            .allow_partial(true);
        let result = model.load_from(&mut store).map_err(|e| HfError::Weights {
            path: file.clone(),
            message: format!("not readable as safetensors ({e}); is the file complete?"),
        })?;
        if let Some(error) = result.errors.first() {
            return Err(tensor_error(&file, error));
        }
        if let Some(name) = result
            .unused
            .iter()
            .map(|n| hf_name(n))
            .find(|n| !ignorable(n, arch))
        {
            return Err(HfError::Tensor {
                path: file,
                tensor: name,
                message: "not part of the architecture config.json describes (a different \
                          model, or a setting missing from config.json)"
                    .into(),
            });
        }
        applied.extend(result.applied);
    }
    if let Some(missing) = expected.iter().find(|p| !applied.contains(*p)) {
        return Err(HfError::Tensor {
            path: dir.to_path_buf(),
            tensor: hf_name(missing),
            message: "missing from the weights, though config.json's architecture needs it".into(),
        });
    }
    Ok(model)
}

/// An apply error from burn-store, in the checkpoint's names and PyTorch's orientation.
fn tensor_error(file: &Path, error: &burn::store::ApplyError) -> HfError {
    use burn::store::ApplyError;
    let (path, message) = match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => {
            // burn holds linear weights as [in, out]; the file and config.json speak [out, in].
            let flip = |s: &burn::tensor::Shape| {
                let mut dims: Vec<usize> = s.to_vec();
                if dims.len() == 2 && path.ends_with(".weight") && !path.contains("embed") {
                    dims.reverse();
                }
                dims
            };
            (
                path,
                format!(
                    "shape {:?}, but config.json implies {:?}",
                    flip(found),
                    flip(expected)
                ),
            )
        }
        ApplyError::DTypeMismatch { path, found, .. } => {
            (path, format!("element type {found:?} is not a float type"))
        }
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            (path, message.clone())
        }
    };
    HfError::Tensor {
        path: file.to_path_buf(),
        tensor: hf_name(path),
        message,
    }
}

/// Writes `model`'s weights to `dir/model.safetensors` under transformers' names and
/// orientation, so transformers (and whatever reads its directories) loads them.
pub fn save_weights(model: &Lm, dir: &Path) -> Result<PathBuf, HfError> {
    let path = dir.join(SINGLE);
    let mut store = SafetensorsStore::from_file(&path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^(embed_tokens|layers|norm)", "model.$1");
    model.save_into(&mut store).map_err(|e| HfError::Weights {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(path)
}
