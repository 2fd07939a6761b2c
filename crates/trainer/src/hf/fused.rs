//! Phi-3's fused projections: its checkpoints store a block's q, k and v weights as one
//! `qkv_proj` (`[q + 2 kv, d]`, in that order) and gate and up as one `gate_up_proj`
//! (`[2 ff, d]`, gate first). PyTorch's `[out, in]` layout makes each part a run of whole
//! rows, so splitting and fusing move bytes and never touch a number.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::HfError;
use crate::model::Arch;

/// (fused name, its parts' names, each part's rows) of one block.
fn groups(arch: &Arch) -> [(&'static str, [&'static str; 3], [usize; 3]); 2] {
    let (q, kv) = (
        arch.n_heads * arch.head_dim,
        arch.n_kv_heads * arch.head_dim,
    );
    [
        (
            "self_attn.qkv_proj",
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            [q, kv, kv],
        ),
        (
            "mlp.gate_up_proj",
            ["mlp.gate_proj", "mlp.up_proj", ""],
            [arch.d_ff, arch.d_ff, 0],
        ),
    ]
}

fn error(path: &Path, message: impl ToString) -> HfError {
    HfError::Weights {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Bytes per element of a float dtype.
fn width(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// A safetensors file (`bytes`, read from `path`) with every fused tensor split into its
/// parts, as the unfused model names them.
pub fn split(bytes: &[u8], arch: &Arch, path: &Path) -> Result<Vec<u8>, HfError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| error(path, e))?;
    let mut out: Vec<(String, Dtype, Vec<usize>, &[u8])> = Vec::new();
    for (name, view) in file.tensors() {
        let fused = groups(arch).into_iter().find_map(|(fused, parts, rows)| {
            name.strip_suffix(&format!("{fused}.weight"))
                .map(|prefix| (prefix.to_string(), parts, rows))
        });
        let Some((prefix, parts, rows)) = fused else {
            out.push((
                name.clone(),
                view.dtype(),
                view.shape().to_vec(),
                view.data(),
            ));
            continue;
        };
        let shape = view.shape();
        let total: usize = rows.iter().sum();
        if shape.len() != 2 || shape[0] != total {
            return Err(HfError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                message: format!("has shape {shape:?}, but config.json's sizes need {total} rows"),
            });
        }
        let row = shape[1] * width(view.dtype());
        let mut start = 0;
        for (part, n) in parts.iter().zip(rows).filter(|(p, _)| !p.is_empty()) {
            let data = &view.data()[start * row..(start + n) * row];
            out.push((
                format!("{prefix}{part}.weight"),
                view.dtype(),
                vec![n, shape[1]],
                data,
            ));
            start += n;
        }
    }
    serialize(out, file_metadata(bytes), path)
}

/// The safetensors `bytes` of an unfused model with each block's parts fused back, as a
/// Phi-3 checkpoint names them.
pub fn fuse(bytes: &[u8], arch: &Arch, path: &Path) -> Result<Vec<u8>, HfError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| error(path, e))?;
    let tensors: std::collections::HashMap<String, TensorView<'_>> =
        file.tensors().into_iter().collect();
    let mut fused_parts = std::collections::HashSet::new();
    let mut joined: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for layer in 0..arch.n_layers {
        for (fused, parts, _) in groups(arch) {
            let prefix = format!("model.layers.{layer}.");
            let mut data = Vec::new();
            let (mut rows, mut cols, mut dtype) = (0, 0, Dtype::F32);
            for part in parts.iter().filter(|p| !p.is_empty()) {
                let name = format!("{prefix}{part}.weight");
                let view = tensors.get(&name).ok_or_else(|| HfError::Tensor {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    message: "missing from the model being saved".into(),
                })?;
                data.extend_from_slice(view.data());
                rows += view.shape()[0];
                cols = view.shape()[1];
                dtype = view.dtype();
                fused_parts.insert(name);
            }
            joined.push((
                format!("{prefix}{fused}.weight"),
                dtype,
                vec![rows, cols],
                data,
            ));
        }
    }
    let mut out: Vec<(String, Dtype, Vec<usize>, &[u8])> = tensors
        .iter()
        .filter(|(name, _)| !fused_parts.contains(*name))
        .map(|(name, view)| {
            (
                name.clone(),
                view.dtype(),
                view.shape().to_vec(),
                view.data(),
            )
        })
        .collect();
    out.extend(
        joined
            .iter()
            .map(|(n, d, s, b)| (n.clone(), *d, s.clone(), b.as_slice())),
    );
    serialize(out, file_metadata(bytes), path)
}

/// The file's `__metadata__` (transformers writes `{"format": "pt"}`).
fn file_metadata(bytes: &[u8]) -> Option<std::collections::HashMap<String, String>> {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
}

fn serialize(
    tensors: Vec<(String, Dtype, Vec<usize>, &[u8])>,
    metadata: Option<std::collections::HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>, HfError> {
    let views = tensors
        .into_iter()
        .map(|(name, dtype, shape, data)| TensorView::new(dtype, shape, data).map(|v| (name, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, e))?;
    safetensors::serialize(views, metadata).map_err(|e| error(path, e))
}
