//! What the trainer's tests share: a tiny packed synthetic dataset and a configuration that
//! trains on it in about a second.

use std::path::{Path, PathBuf};

use ffem_data::{PackOptions, pack};
use ffem_train::TrainConfig;
use ffem_train::config::{BackboneName, LossName, OptimizerName, ScheduleName};

/// burn's CPU backend draws from one process-wide seeded RNG: tests that train must not overlap.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 8 synthetic identities x 6 images of 48 px, packed into `dir/records`.
pub fn dataset(dir: &Path) -> PathBuf {
    let src = dir.join("synthetic");
    ffem_data::synth::generate(&src, 0, 8, 6, 48, 3).unwrap();
    let out = dir.join("records");
    pack(&PackOptions::new(
        src.join("images"),
        src.join("image_list.json"),
        &out,
    ))
    .unwrap();
    out
}

/// MobileNetV3-Small x 0.25, 32 px, 16-d, ArcFace, SGD: 12 steps of 8 images over 2 epochs.
pub fn tiny_config(records: &Path) -> TrainConfig {
    TrainConfig {
        train_data: records.display().to_string(),
        batch_size: 8,
        epochs: 2,
        image_size: 32,
        embedding_dim: 16,
        backbone: BackboneName::MobileNetV3Small,
        width: 0.25,
        head: ffem_model::heads::HeadKind::Gnap,
        loss: LossName::Arcface,
        scale: 16.0,
        optimizer: OptimizerName::Sgd,
        lr: 0.05,
        schedule: ScheduleName::Cosine,
        checkpoint_every: 0,
        shuffle_buffer: 16,
        workers: 2,
        seed: 11,
        ..TrainConfig::default()
    }
}
