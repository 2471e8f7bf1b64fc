//! What the trainer's tests share: a tiny packed synthetic dataset and a configuration that
//! trains on it in about a second, and the checks of a run's loss curve.
#![allow(dead_code)] // each test file uses a part

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

/// Trains `cfg` into a fresh `run` folder and returns its metrics rows.
pub fn train_rows(cfg: &TrainConfig, run: &Path) -> Vec<ffem_train::metrics::MetricsRow> {
    ffem_train::train(cfg, run, false, &ffem_train::TrainOptions::default()).unwrap();
    ffem_train::metrics::read_metrics(&run.join("metrics.csv")).unwrap()
}

/// Every loss finite, and the mean of the last `window` steps below 90% of the first `window`'s.
pub fn assert_loss_falls(rows: &[ffem_train::metrics::MetricsRow], window: usize, what: &str) {
    let mean = |r: &[ffem_train::metrics::MetricsRow]| {
        r.iter().map(|x| x.loss).sum::<f64>() / r.len() as f64
    };
    let (first, last) = (mean(&rows[..window]), mean(&rows[rows.len() - window..]));
    assert!(
        rows.iter().all(|r| r.loss.is_finite()) && last < 0.9 * first,
        "{what}: loss {first} -> {last}"
    );
}
