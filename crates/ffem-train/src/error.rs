//! One error type for a training run. Every variant keeps the error it wraps as its `source`
//! (the message repeats it so that `to_string()` alone is complete; the CLI prints each text once).

use std::path::PathBuf;

use ffem_data::DataError;
use ffem_infer::InferError;
use ffem_model::device::DeviceUnavailable;
use ffem_model::model::ModelError;

use crate::config::ConfigError;

/// Everything that can stop a training run, the demo or the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid (the message names the key and the valid values).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configured device is not compiled in.
    #[error(transparent)]
    Device(#[from] DeviceUnavailable),
    /// Reading records or writing run files failed (the message names the file).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Drawing a chart failed (the message names the file).
    #[error(transparent)]
    Chart(#[from] ffem_eval::EvalError),
    /// Loading or saving a model directory failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The configured held-out verification set (`val_set`) could not be loaded.
    #[error("val_set `{spec}`: {source}")]
    ValSet {
        /// The `val_set` value.
        spec: String,
        /// What went wrong.
        #[source]
        source: InferError,
    },
    /// The distillation teacher's embeddings cannot serve the training data (the message names
    /// the file or the record without a row).
    #[error(transparent)]
    Teacher(#[from] crate::distill::TeacherError),
    /// The teacher run inside the step (`teacher_model`) could not be opened or does not take
    /// the training image size.
    #[error("teacher_model {path}: {reason}")]
    OnlineTeacher {
        /// The model directory.
        path: PathBuf,
        /// What is wrong (the engine's message names the operator or shape at fault).
        reason: String,
    },
    /// Reading or embedding the faces of a pair set failed.
    #[error(transparent)]
    EvalSet(#[from] InferError),
    /// An operating-system error on a run-directory file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// burn could not (de)serialise weights or optimiser state; burn's recorder errors carry no
    /// `Error` impl, so their text is kept.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What burn reported, and what to do.
        reason: String,
    },
    /// The run cannot start as configured (identity count, missing checkpoint, `--init` mismatch).
    #[error("{0}")]
    Setup(String),
    /// Too many consecutive non-finite losses.
    #[error(
        "training diverged: {consecutive} consecutive non-finite losses at step {step}. Lower lr \
         (now {lr:.3e}), add warmup_steps, or train in precision = \"f32\""
    )]
    Diverged {
        /// Non-finite losses in a row.
        consecutive: u32,
        /// The step at which the run stopped.
        step: u64,
        /// The learning rate at that step.
        lr: f64,
    },
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
