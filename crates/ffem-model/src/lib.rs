#![warn(missing_docs)]
//! ffem's networks and training, on burn: MobileNetV3 backbones, embedding heads (GNAP, GDC,
//! flatten), margin losses (L2-softmax, ArcFace, CosFace, combined), schedules and the trainer.
//! The same code runs on the CPU (`flex`) and the GPU (`vulkan` feature).

pub mod backbones;
pub mod bench;
pub mod config;
pub mod conv;
pub mod demo;
pub mod embed;
pub mod evalset;
pub mod face;
pub mod heads;
pub mod info;
pub mod losses;
pub mod model;
pub mod norm;
pub mod onnx;
#[cfg(feature = "onnxruntime")]
pub mod ort_engine;
pub mod precision;
pub mod schedule;
pub mod train;

pub use config::TrainConfig;
pub use embed::{Embedder, FaceInput};
pub use model::{EmbeddingModel, ModelConfig, load_model, save_model};
pub use train::{TrainOptions, TrainSummary, train};
