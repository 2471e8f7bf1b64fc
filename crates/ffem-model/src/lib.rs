//! ffem's networks and training, on burn: MobileNetV3 backbones, embedding heads (GNAP, GDC,
//! flatten), margin losses (L2-softmax, ArcFace, CosFace, combined), schedules and the trainer.
//! The same code runs on the CPU (`flex`) and the GPU (`vulkan` feature).

pub mod backbones;
pub mod heads;
pub mod losses;
pub mod model;
pub mod schedule;

pub use model::{EmbeddingModel, ModelConfig};
