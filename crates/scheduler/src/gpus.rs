//! Which GPUs trials may use, and leasing them so no GPU is ever given to two trials at once.

use std::collections::VecDeque;
use std::process::Command;

/// How the user asked for GPUs (`--gpus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRequest {
    /// Use `CUDA_VISIBLE_DEVICES` if set, else every GPU `nvidia-smi -L` lists.
    Auto,
    /// Run every trial on CPU.
    None,
    /// Exactly these device ids.
    List(Vec<String>),
}

impl GpuRequest {
    /// Parses `auto`, `none` or a comma-separated id list such as `0,1,3`.
    pub fn parse(text: &str) -> Result<GpuRequest, String> {
        match text.trim() {
            "auto" => Ok(GpuRequest::Auto),
            "none" | "" => Ok(GpuRequest::None),
            list => {
                let ids: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                if ids.iter().any(|id| id.is_empty()) {
                    return Err(format!(
                        "GPU list {text:?} has an empty id; write auto, none, or ids like 0,1,3"
                    ));
                }
                if let Some(id) = ids.iter().find(|id| id.starts_with('-')) {
                    return Err(format!(
                        "GPU id {id:?} is not a device (CUDA_VISIBLE_DEVICES=-1 hides every GPU); pass --gpus none to run on CPU, or ids like 0,1,3"
                    ));
                }
                if let Some(id) = ids
                    .iter()
                    .find(|id| !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                {
                    return Err(format!(
                        "GPU id {id:?} in {text:?} is neither an index nor a GPU UUID; write auto, none, or ids like 0,1,3"
                    ));
                }
                let mut unique = ids.clone();
                unique.sort();
                unique.dedup();
                if unique.len() != ids.len() {
                    return Err(format!("GPU list {text:?} names a GPU twice"));
                }
                Ok(GpuRequest::List(ids))
            }
        }
    }

    /// The device ids trials may lease. `Auto` on a machine without GPUs gives none, with the
    /// reason.
    pub fn resolve(&self) -> (Vec<String>, Option<String>) {
        match self {
            GpuRequest::None => (Vec::new(), None),
            GpuRequest::List(ids) => (ids.clone(), None),
            GpuRequest::Auto => {
                if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
                    let ids: Vec<String> = visible
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    let why = ids
                        .is_empty()
                        .then(|| "CUDA_VISIBLE_DEVICES is empty".to_string());
                    return (ids, why);
                }
                match Command::new("nvidia-smi").arg("-L").output() {
                    Ok(out) if out.status.success() => {
                        let ids = parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout));
                        let why = ids
                            .is_empty()
                            .then(|| "nvidia-smi -L lists no GPU".to_string());
                        (ids, why)
                    }
                    Ok(out) => (
                        Vec::new(),
                        Some(format!(
                            "nvidia-smi -L failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        )),
                    ),
                    Err(e) => (Vec::new(), Some(format!("nvidia-smi not runnable: {e}"))),
                }
            }
        }
    }
}

/// Device indices from `nvidia-smi -L` lines such as `GPU 0: NVIDIA H100 (UUID: …)`.
pub fn parse_nvidia_smi(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("GPU ")?
                .split(':')
                .next()
                .map(|s| s.trim().to_string())
        })
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// Free GPUs. Leases are taken and given back whole.
#[derive(Debug, Default)]
pub struct GpuPool {
    free: VecDeque<String>,
}

impl GpuPool {
    /// A pool of the given device ids.
    pub fn new(ids: Vec<String>) -> GpuPool {
        GpuPool { free: ids.into() }
    }

    /// Takes `n` GPUs, or none if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<String>> {
        (self.free.len() >= n).then(|| self.free.drain(..n).collect())
    }

    /// Gives GPUs back.
    pub fn give_back(&mut self, ids: Vec<String>) {
        self.free.extend(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(GpuRequest::parse("auto").unwrap(), GpuRequest::Auto);
        assert_eq!(GpuRequest::parse("none").unwrap(), GpuRequest::None);
        assert_eq!(
            GpuRequest::parse("0, 2").unwrap(),
            GpuRequest::List(vec!["0".into(), "2".into()])
        );
        assert!(GpuRequest::parse("0,0").is_err());
        assert!(GpuRequest::parse("0,;rm").is_err());
        assert!(GpuRequest::parse("x,,y").unwrap_err().contains("empty id"));
        assert!(GpuRequest::parse("-1").unwrap_err().contains("--gpus none"));
        assert_eq!(
            GpuRequest::parse("GPU-8f2c1e9a").unwrap(),
            GpuRequest::List(vec!["GPU-8f2c1e9a".into()])
        );
    }

    #[test]
    fn parses_nvidia_smi_listing() {
        let text = "GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n";
        assert_eq!(parse_nvidia_smi(text), ["0", "1"]);
    }

    #[test]
    fn pool_never_double_books() {
        let mut pool = GpuPool::new(vec!["0".into(), "1".into(), "2".into()]);
        let a = pool.take(2).unwrap();
        assert!(pool.take(2).is_none());
        let b = pool.take(1).unwrap();
        assert!(a.iter().all(|g| !b.contains(g)));
        pool.give_back(a);
        assert_eq!(pool.take(2).unwrap().len(), 2);
    }
}
