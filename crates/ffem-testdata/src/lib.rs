#![warn(missing_docs)]
//! Where ffem's tests, examples and benches find what is not in the repository: the real face data
//! (`FFEM_DATA`, else `../shared/data` beside the checkout), the MTCNN weights and OpenCV's SFace
//! model (the caches that `scripts/fetch-mtcnn.sh` and `scripts/fetch-sface.sh` fill). Only dev-dependencies use this crate: the tools take their
//! paths from the user.
//!
//! Tests that need either are `#[ignore]`d with the reason, so a plain `cargo test` lists them as
//! ignored; asked for (`--include-ignored`, as `scripts/test.sh` does), they fail here when what
//! they need is missing rather than pass without running.

pub mod fuzz;

use std::path::PathBuf;

/// The face data (a folder holding `lfw/`), or `None` when neither `FFEM_DATA` nor
/// `../shared/data` beside the checkout has it.
pub fn shared_data() -> Option<PathBuf> {
    let beside_checkout = [env!("CARGO_MANIFEST_DIR"), "../../../shared/data"]
        .iter()
        .collect::<PathBuf>()
        .canonicalize()
        .ok();
    std::env::var_os("FFEM_DATA")
        .map(PathBuf::from)
        .into_iter()
        .chain(beside_checkout)
        .find(|c| c.join("lfw").is_dir())
}

/// The face data, for a test that cannot run without it: a panic that says where to put it.
pub fn require_shared_data() -> PathBuf {
    shared_data().unwrap_or_else(|| {
        panic!("this test needs the face data: set FFEM_DATA or place it at ../shared/data (without it, run the tests without --include-ignored)")
    })
}

/// The MTCNN weights directory, for a test that cannot run without it: a panic that names the
/// fetch script when any of the three networks is missing.
pub fn require_mtcnn_weights() -> PathBuf {
    let dir = ffem_detect::default_weights_dir();
    if !ffem_detect::mtcnn::NET_FILES
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        panic!(
            "this test needs the MTCNN weights in {}: run scripts/fetch-mtcnn.sh",
            dir.display()
        );
    }
    dir
}

/// OpenCV's SFace face recogniser (int8, block-quantised), for a test that cannot run without
/// it: the file `scripts/fetch-sface.sh` puts in `$FFEM_SFACE_DIR` or the cache, else a panic
/// that names the script.
pub fn require_sface() -> PathBuf {
    let dir = ffem_data::cache::dir("FFEM_SFACE_DIR", "sface-2021dec-int8bq");
    let file = dir.join("face_recognition_sface_2021dec_int8bq.onnx");
    if !file.is_file() {
        panic!(
            "this test needs OpenCV's SFace model at {}: run scripts/fetch-sface.sh",
            file.display()
        );
    }
    file
}
