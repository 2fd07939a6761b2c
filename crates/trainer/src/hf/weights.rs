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
pub(super) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
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
    let files = weight_files(dir)?;
    check_sizes(dir, &files, arch)?;
    let mut model = arch.init(device);
    let expected: Vec<String> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut applied = HashSet::new();
    for file in files {
        let store = match arch.fused {
            false => SafetensorsStore::from_file(&file),
            true => {
                let bytes = std::fs::read(&file).map_err(|e| HfError::io(&file, e))?;
                SafetensorsStore::from_bytes(Some(super::fused::split(&bytes, arch, &file)?))
            }
        };
        let mut store = store
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

/// The parameters a checkpoint of `arch` holds, split into the layers' share and the
/// embeddings' (with the head); `None` when the count does not even fit in 128 bits.
fn parameter_count(arch: &Arch) -> Option<(u128, u128)> {
    let n = |x: usize| x as u128;
    let (d, ff) = (n(arch.d_model), n(arch.d_ff));
    let q = n(arch.n_heads).checked_mul(n(arch.head_dim))?;
    let kv = n(arch.n_kv_heads).checked_mul(n(arch.head_dim))?;
    let attention = d.checked_mul(q.checked_add(kv.checked_mul(2)?)?)?;
    let output = q.checked_mul(d)?;
    let mlp = ff.checked_mul(d)?.checked_mul(3)?;
    let has = |bias: bool, count: u128| if bias { count } else { 0 };
    let biases =
        has(arch.qkv_bias, q + 2 * kv) + has(arch.o_bias, d) + has(arch.mlp_bias, 2 * ff + d);
    let per_layer = attention
        .checked_add(output)?
        .checked_add(mlp)?
        .checked_add(biases)?
        .checked_add(2 * d)?;
    let layers = per_layer.checked_mul(n(arch.n_layers))?;
    let heads = if arch.tied { 1 } else { 2 };
    let embeddings = n(arch.vocab).checked_mul(d)?.checked_mul(heads)?;
    Some((layers, embeddings.checked_add(d)?))
}

/// Refuses sizes in `config.json` that imply more parameters than the weight `files` of `dir`
/// can hold at two bytes each (the smallest float type read), from the files' lengths alone:
/// before a tensor list is built or a weight allocated, so a typo such as `num_hidden_layers =
/// 1000000000000` is refused at once instead of eating the machine's memory.
fn check_sizes(dir: &Path, files: &[PathBuf], arch: &Arch) -> Result<(), HfError> {
    let mut bytes: u128 = 0;
    let mut names = Vec::new();
    for file in files {
        let len = file.metadata().map_err(|e| HfError::io(file, e))?.len();
        bytes += u128::from(len);
        names.extend(file.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    let fits = |(layers, embeddings): (u128, u128)| {
        layers
            .checked_add(embeddings)
            .and_then(|total| total.checked_mul(2))
            .is_some_and(|need| need <= bytes)
    };
    let count = parameter_count(arch);
    if count.is_some_and(fits) {
        return Ok(());
    }
    // Blame the share that does not fit: the layers (their count), or the embeddings.
    let key = match count {
        Some((layers, embeddings)) if embeddings > layers => "vocab_size",
        _ => "num_hidden_layers",
    };
    let shown = count.map_or_else(
        || "more than 2^128".to_string(),
        |(l, e)| (l + e).to_string(),
    );
    Err(HfError::Config {
        path: dir.join("config.json"),
        key: key.into(),
        message: format!(
            "the sizes (vocab_size {}, hidden_size {}, intermediate_size {}, num_hidden_layers {}, \
             {} heads of {}) make {shown} parameters, more than the {bytes} bytes of {} can \
             hold; is this the config.json of these weights?",
            arch.vocab,
            arch.d_model,
            arch.d_ff,
            arch.n_layers,
            arch.n_heads,
            arch.head_dim,
            names.join(", ")
        ),
    })
}

/// The tensors a checkpoint of `arch` holds, by their names in the file, with PyTorch's
/// shapes (`[out, in]` for linear weights).
pub fn expected_tensors(arch: &Arch) -> Vec<(String, Vec<usize>)> {
    let (d, ff) = (arch.d_model, arch.d_ff);
    let (q, kv) = (
        arch.n_heads * arch.head_dim,
        arch.n_kv_heads * arch.head_dim,
    );
    let mut all = vec![("model.embed_tokens.weight".to_string(), vec![arch.vocab, d])];
    for i in 0..arch.n_layers {
        let mut linear = |name: &str, out: usize, inp: usize, bias: bool| {
            all.push((format!("model.layers.{i}.{name}.weight"), vec![out, inp]));
            if bias {
                all.push((format!("model.layers.{i}.{name}.bias"), vec![out]));
            }
        };
        if arch.fused {
            linear("self_attn.qkv_proj", q + 2 * kv, d, arch.qkv_bias);
        } else {
            linear("self_attn.q_proj", q, d, arch.qkv_bias);
            linear("self_attn.k_proj", kv, d, arch.qkv_bias);
            linear("self_attn.v_proj", kv, d, arch.qkv_bias);
        }
        linear("self_attn.o_proj", d, q, arch.o_bias);
        if arch.fused {
            linear("mlp.gate_up_proj", 2 * ff, d, arch.mlp_bias);
        } else {
            linear("mlp.gate_proj", ff, d, arch.mlp_bias);
            linear("mlp.up_proj", ff, d, arch.mlp_bias);
        }
        linear("mlp.down_proj", d, ff, arch.mlp_bias);
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            all.push((format!("model.layers.{i}.{norm}.weight"), vec![d]));
        }
    }
    all.push(("model.norm.weight".into(), vec![d]));
    if !arch.tied {
        all.push(("lm_head.weight".into(), vec![arch.vocab, d]));
    }
    all
}

/// Largest safetensors header read (the format itself caps it at 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor entry of a safetensors header.
#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Checks the weights of `dir` against `arch` from the files' headers alone, without reading
/// (or allocating) a single weight: each file is complete safetensors, of float tensors, and
/// together they hold exactly the tensors `arch` needs with the shapes config.json implies.
/// What `sweep run` checks before it stores a grid; loading checks the same again.
pub fn check_weights(dir: &Path, arch: &Arch) -> Result<(), HfError> {
    use std::io::Read;
    let files = weight_files(dir)?;
    check_sizes(dir, &files, arch)?;
    let mut expected: std::collections::HashMap<String, Vec<usize>> =
        expected_tensors(arch).into_iter().collect();
    for file in files {
        let bad = |message: String| HfError::Weights {
            path: file.clone(),
            message,
        };
        let mut f = std::fs::File::open(&file).map_err(|e| HfError::io(&file, e))?;
        let size = f.metadata().map_err(|e| HfError::io(&file, e))?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|_| bad("shorter than a safetensors header; is the file complete?".into()))?;
        let n = u64::from_le_bytes(len);
        if n > MAX_HEADER || 8 + n > size {
            return Err(bad(format!(
                "not safetensors (a header of {n} bytes in a file of {size}); is the file complete?"
            )));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header)
            .map_err(|e| HfError::io(&file, e))?;
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("the safetensors header is not valid JSON ({e})")))?;
        let mut end = 0;
        for (name, entry) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry: HeaderEntry = serde_json::from_value(entry)
                .map_err(|e| bad(format!("tensor `{name}`: malformed header entry ({e})")))?;
            end = end.max(entry.data_offsets[1]);
            let tensor_err = |message: String| HfError::Tensor {
                path: file.clone(),
                tensor: name.clone(),
                message,
            };
            if !["F32", "F16", "BF16", "F64"].contains(&entry.dtype.as_str()) {
                return Err(tensor_err(format!(
                    "element type {} is not a float type",
                    entry.dtype
                )));
            }
            match expected.remove(&name) {
                Some(shape) if shape == entry.shape => {}
                Some(shape) => {
                    return Err(tensor_err(format!(
                        "shape {:?}, but config.json implies {shape:?}",
                        entry.shape
                    )))
                }
                None if ignorable(&name, arch) => {}
                None => {
                    return Err(tensor_err(
                        "not part of the architecture config.json describes (a different                          model, or a setting missing from config.json)"
                            .into(),
                    ))
                }
            }
        }
        if 8 + n + end > size {
            return Err(bad(format!(
                "truncated: its header describes {} bytes of data, the file holds {}",
                end,
                size - 8 - n
            )));
        }
    }
    let mut missing: Vec<String> = expected.into_keys().collect();
    missing.sort();
    match missing.first() {
        Some(name) => Err(HfError::Tensor {
            path: dir.to_path_buf(),
            tensor: name.clone(),
            message: "missing from the weights, though config.json's architecture needs it".into(),
        }),
        None => Ok(()),
    }
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
    let failed = |e: &dyn std::fmt::Display| HfError::Weights {
        path: path.clone(),
        message: e.to_string(),
    };
    let store = match model.arch().fused {
        false => SafetensorsStore::from_file(&path),
        true => SafetensorsStore::from_bytes(None),
    };
    let mut store = store
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^(embed_tokens|layers|norm)", "model.$1");
    model.save_into(&mut store).map_err(|e| failed(&e))?;
    if model.arch().fused {
        let bytes = store.get_bytes().map_err(|e| failed(&e))?;
        let fused = super::fused::fuse(&bytes, model.arch(), &path)?;
        std::fs::write(&path, fused).map_err(|e| HfError::io(&path, e))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Rope, RopeScaling, RopeStyle};

    /// The header check's list of tensors is the model's own: the same names, and shapes
    /// that add up to its parameter count (biases, grouped-query heads and both heads kinds).
    #[test]
    fn expected_tensors_are_the_models_parameters() {
        for (tied, bias) in [(false, true), (true, false)] {
            let arch = Arch {
                vocab: 50,
                d_model: 16,
                n_layers: 2,
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: 4,
                d_ff: 24,
                rms_eps: 1e-5,
                rope: Rope {
                    theta: 10_000.0,
                    style: RopeStyle::Halves,
                    scaling: RopeScaling::None,
                },
                qkv_bias: bias,
                o_bias: bias,
                mlp_bias: bias,
                tied,
                fused: false,
                max_seq: 32,
            };
            let model = arch.init(&Device::flex());
            let mut names: Vec<String> = model
                .collect(None, None, false)
                .into_iter()
                .map(|t| hf_name(&t.name))
                .collect();
            names.sort();
            let expected = expected_tensors(&arch);
            let mut listed: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
            listed.sort();
            assert_eq!(names, listed);
            let count: usize = expected
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(count, arch.num_params());
        }
    }
}
