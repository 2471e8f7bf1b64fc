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
pub mod sampler;
pub mod synth;
pub mod tfrecord;
pub mod walk;

pub use error::{DataError, Result};
pub use example::FaceRecord;
pub use image_list::{FaceBox, ImageEntry, ImageList, Rejected};
pub use pack::{PackOptions, PackReport, pack, pack_from_rec};
pub use pipeline::{AugmentConfig, Batch, Pipeline, PipelineConfig};
pub use records::{RecordSource, inspect};
pub use sampler::Sampler;

/// Where the real face data lives (`FFEM_DATA`, else `../shared/data` beside the checkout), for
/// tests and benches; `None` when absent.
pub fn find_shared_data() -> Option<std::path::PathBuf> {
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
    candidates.into_iter().find(|c| c.join("lfw").is_dir())
}

/// The real face data, for tests that need it. Such tests are `#[ignore]`d with a reason, so a
/// plain `cargo test` lists them as ignored; asked for (`--include-ignored`, as CI does), they
/// fail here when the data is missing rather than pass without running.
pub fn require_shared_data() -> std::path::PathBuf {
    find_shared_data().unwrap_or_else(|| {
        panic!("this test needs the face data: set FFEM_DATA or place it at ../shared/data (without it, run the tests without --include-ignored)")
    })
}
