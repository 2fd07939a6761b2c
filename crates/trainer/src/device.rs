//! Which burn backend and device a trial runs on. burn 0.22 picks the backend from the
//! `Device` at run time, so the training code is the same for every choice.
//!
//! - `flex` (the default): burn's pure-Rust CPU backend, always built in.
//! - `tch`: libtorch (only in a binary built with `--features tch`), on `cuda:0` of the GPUs
//!   the scheduler leased through `CUDA_VISIBLE_DEVICES`, and on the CPU when none are
//!   leased or libtorch sees no GPU. The choice is reported, never silent.

use burn::tensor::Device;
use serde::Deserialize;

/// The `[trainer] backend` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust CPU backend.
    #[default]
    Flex,
    /// libtorch (CPU or CUDA).
    Tch,
}

/// A backend that cannot be used in this build or on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The binary was built without libtorch.
    #[error(
        "[trainer] backend = \"tch\" needs a sweep built with libtorch: \
         `scripts/libtorch-env` then `cargo build --release --features tch` (README: GPUs)"
    )]
    NotBuilt,
}

/// The device a trial runs on, and how to name it in logs and results.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The burn device.
    pub device: Device,
    /// e.g. `flex cpu`, `tch cuda:0 (GPU 3)`, `tch cpu (no GPU leased)`.
    pub name: String,
    /// Whether it computes on a GPU.
    pub gpu: bool,
}

impl Backend {
    /// Checks that this build can run the backend at all.
    pub fn check_built(self) -> Result<(), DeviceError> {
        match self {
            Backend::Flex => Ok(()),
            Backend::Tch if cfg!(feature = "tch") => Ok(()),
            Backend::Tch => Err(DeviceError::NotBuilt),
        }
    }

    /// The device for a trial that was leased `cuda_visible` (the value of
    /// `CUDA_VISIBLE_DEVICES`; empty when no GPU is leased).
    pub fn select(self, cuda_visible: &str) -> Result<Selected, DeviceError> {
        match self {
            Backend::Flex => Ok(Selected {
                device: Device::flex(),
                name: "flex cpu".into(),
                gpu: false,
            }),
            Backend::Tch => select_tch(cuda_visible.trim()),
        }
    }
}

/// The CPU device of every backend this build has: flex, and libtorch's in a `tch` build.
/// What parity checks against other tools run on, so the libtorch build checks both.
pub fn cpu_devices() -> Vec<Device> {
    [Backend::Flex, Backend::Tch]
        .into_iter()
        .filter_map(|b| b.select("").ok())
        .map(|s| s.device)
        .collect()
}

#[cfg(feature = "tch")]
#[expect(
    deprecated,
    reason = "burn-tch is deprecated upstream; it is the libtorch path burn 0.22 has"
)]
fn select_tch(cuda_visible: &str) -> Result<Selected, DeviceError> {
    if cuda_visible.is_empty() {
        return Ok(Selected {
            device: Device::libtorch(),
            name: "tch cpu (no GPU leased)".into(),
            gpu: false,
        });
    }
    if !tch::Cuda::is_available() {
        return Ok(Selected {
            device: Device::libtorch(),
            name: format!("tch cpu (GPU {cuda_visible} leased, but libtorch sees no CUDA device)"),
            gpu: false,
        });
    }
    // CUDA_VISIBLE_DEVICES renumbers the leased GPUs from 0.
    Ok(Selected {
        device: Device::libtorch_cuda(0),
        name: format!("tch cuda:0 (GPU {cuda_visible})"),
        gpu: true,
    })
}

#[cfg(not(feature = "tch"))]
fn select_tch(_cuda_visible: &str) -> Result<Selected, DeviceError> {
    Err(DeviceError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_the_default_and_runs_anywhere() {
        assert_eq!(Backend::default(), Backend::Flex);
        let s = Backend::Flex.select("0,1").unwrap();
        assert!(!s.gpu);
        assert_eq!(s.name, "flex cpu");
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn tch_without_the_feature_says_how_to_get_it() {
        let e = Backend::Tch.check_built().unwrap_err().to_string();
        assert!(e.contains("--features tch"), "{e}");
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch_without_a_lease_runs_on_the_cpu_and_says_so() {
        let s = Backend::Tch.select("").unwrap();
        assert!(!s.gpu);
        assert!(s.name.contains("no GPU leased"), "{}", s.name);
    }
}
