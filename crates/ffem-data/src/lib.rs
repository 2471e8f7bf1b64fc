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
pub mod protobuf;
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
