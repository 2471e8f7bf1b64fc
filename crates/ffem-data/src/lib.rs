#![warn(missing_docs)]
//! ffem's data path, free of any deep-learning framework: the seed's `image_list.json`, TFRecord
//! shards of `tf.train.Example` face records (interchangeable with TensorFlow), the packer, the
//! reader and the training input pipeline.

pub mod align;
pub mod atomic;
pub mod cache;
pub mod error;
pub mod example;
pub mod image_list;
pub mod imageops;
pub mod manifest;
pub mod pack;
pub mod pipeline;
pub mod progress;
pub mod recordio;
pub mod records;
pub mod synth;
pub mod tfrecord;
pub mod walk;

pub use error::{DataError, Result};
pub use example::FaceRecord;
pub use image_list::{FaceBox, ImageEntry, ImageList, Rejected};
pub use pack::{PackOptions, PackReport, pack, pack_from_rec};
pub use pipeline::{AugmentConfig, Batch, Pipeline, PipelineConfig};
pub use records::{RecordSource, inspect};

/// Where the real face data lives (`FFEM_DATA`, else `../shared/data` beside the checkout), for
/// tests and benches. `None` when absent; with `FFEM_REQUIRE_DATA=1` absence is a panic so that CI
/// fails instead of skipping.
pub fn shared_data_dir() -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os("FFEM_DATA")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [env!("CARGO_MANIFEST_DIR"), "../../../shared/data"]
                .iter()
                .collect::<std::path::PathBuf>()
                .canonicalize()
                .ok(),
        );
    for c in candidates {
        if c.join("lfw").is_dir() {
            return Some(c);
        }
    }
    if std::env::var("FFEM_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!(
            "FFEM_REQUIRE_DATA=1 but no face data found: set FFEM_DATA or place it at ../shared/data"
        );
    }
    eprintln!("skipping: no face data (set FFEM_DATA or place it at ../shared/data)");
    None
}
