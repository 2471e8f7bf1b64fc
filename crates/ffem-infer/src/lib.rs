#![warn(missing_docs)]
//! Running a face model on faces, shared by the `ffem` commands, the service and the library API:
//! preparing a face as training did (crop or 5-point alignment, scaling), batched embedding with
//! flip test-time augmentation (`embed`), gathering and embedding files, folders and lists with
//! detection and skip-and-report (`faces`), verification pair sets (`evalset`), the saved decision
//! threshold (`threshold`), model directories of either kind and the one way to open them
//! (`model_dir`), external ONNX face models (`onnx_import`, `onnx_fold`) run by tract
//! (`tract_engine`) or the optional ONNX Runtime engine (`ort_engine`), and `FaceModel`, the API
//! for Rust programs (`face`).

pub mod embed;
pub mod error;
pub mod evalset;
pub mod face;
pub mod faces;
pub mod model_dir;
pub mod onnx_fold;
pub mod onnx_import;
pub mod onnx_quant;
#[cfg(feature = "onnxruntime")]
pub mod ort_engine;
pub mod threshold;
pub mod tract_engine;

pub use embed::{Embedder, FaceInput};
pub use error::InferError;
