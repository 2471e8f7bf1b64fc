#![warn(missing_docs)]
//! ffem's networks and their use, on burn: MobileNetV3 backbones, embedding heads (GNAP, GDC,
//! flatten), margin losses (L2-softmax, ArcFace, CosFace, combined), the model directory, ONNX
//! export and the inference API (`Embedder`, `FaceModel`). Training lives in `ffem-train`.
//! The same code runs on the CPU (`flex`) and the GPU (`vulkan` feature).

pub mod backbones;
pub mod conv;
pub mod device;
pub mod distill;
pub mod embed;
pub mod evalset;
pub mod face;
pub mod faces;
pub mod heads;
pub mod info;
pub mod losses;
pub mod model;
pub mod norm;
pub mod onnx;
pub mod onnx_import;
#[cfg(feature = "onnxruntime")]
pub mod ort_engine;
pub mod scale;
pub mod threshold;

pub use device::ComputeDevice;
pub use embed::{Embedder, FaceInput};
pub use model::{EmbeddingModel, ModelConfig, load_model, save_model};
