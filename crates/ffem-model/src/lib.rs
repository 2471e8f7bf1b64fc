#![warn(missing_docs)]
//! ffem's networks, on burn: MobileNetV3 backbones, embedding heads (GNAP, GDC, flatten), the
//! model directory (`model.json` + weights) and ONNX export. Losses and training live in
//! `ffem-train`; running a model on faces (batching, alignment, external ONNX models, the library
//! API) lives in `ffem-infer`. The same code runs on the CPU (`flex`, with `ffem-kernels` through
//! `conv`, `norm` and `scale`) and the GPU (`vulkan` feature).

pub mod backbones;
pub mod conv;
pub mod cpu;
pub mod device;
pub mod heads;
pub mod info;
pub mod model;
pub mod norm;
pub mod onnx;
pub mod scale;

pub use device::ComputeDevice;
pub use model::{EmbeddingModel, ModelConfig, load_model, save_model};
