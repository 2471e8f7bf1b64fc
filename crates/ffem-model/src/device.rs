//! Which compute device runs the network: one choice shared by training (`device = ...` in the
//! config) and by every command that loads a model, so a GPU build runs inference on the GPU too.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A compute device by name, as written in configs (`cpu`, `vulkan`) and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    /// burn's pure-Rust CPU backend (`flex`) with ffem's kernels; always available.
    #[default]
    #[serde(alias = "flex")]
    Cpu,
    /// The first discrete GPU through burn's `vulkan` backend (a build with `--features vulkan`).
    #[serde(alias = "gpu")]
    Vulkan,
}

/// The device named is not compiled into this build.
#[derive(Debug, thiserror::Error)]
#[error(
    "device `{0}` is not available in this build: use cpu, or rebuild with `--features vulkan` for the GPU"
)]
pub struct DeviceUnavailable(pub &'static str);

impl ComputeDevice {
    /// The device this build prefers for inference: the GPU when compiled in, else the CPU.
    pub fn preferred() -> Self {
        if cfg!(feature = "vulkan") {
            ComputeDevice::Vulkan
        } else {
            ComputeDevice::Cpu
        }
    }

    /// The burn device, or an error naming the feature to build with.
    pub fn device(self) -> Result<Device, DeviceUnavailable> {
        match self {
            ComputeDevice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "vulkan")]
            ComputeDevice::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(0))),
            #[cfg(not(feature = "vulkan"))]
            ComputeDevice::Vulkan => Err(DeviceUnavailable("vulkan")),
        }
    }
}
