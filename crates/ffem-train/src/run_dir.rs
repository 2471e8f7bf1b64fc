//! The layout of a run directory: what `ffem train` writes and `--resume` reads back.
//!
//! ```text
//! RUN_DIR/config.toml        the resolved configuration (what --resume trains with)
//! RUN_DIR/metrics.csv        one row per step (see metrics.rs)
//! RUN_DIR/curves_*.png       loss and accuracy curves, redrawn every epoch
//! RUN_DIR/checkpoint/        train.bpk, optim.bpk, state.json, replaced as a whole (checkpoint.rs)
//! RUN_DIR/model/             the embedding network alone (ffem_model::model), for every other command
//! ```

use std::path::{Path, PathBuf};

/// The files of one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (nothing is created until the trainer writes).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Resolved configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The latest checkpoint directory.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// The final (or, during training, the latest epoch's) embedding model.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    /// Per-step metrics.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
}
