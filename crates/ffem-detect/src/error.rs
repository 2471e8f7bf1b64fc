//! Errors of the detector: each names the file and says what to do.

use std::path::PathBuf;

/// What can go wrong while loading the weights or detecting faces.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The MTCNN ONNX files are missing, unreadable or not the networks expected.
    #[error("MTCNN weights {path}: {reason}")]
    Weights {
        /// The offending file (or directory).
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An image could not be read or decoded.
    #[error("{path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The ONNX runtime failed on a network.
    #[error("running {net}: {reason}")]
    Run {
        /// "P-Net", "R-Net" or "O-Net".
        net: &'static str,
        /// The runtime's message.
        reason: String,
    },
    /// Reading or writing files failed.
    #[error(transparent)]
    Data(#[from] ffem_data::DataError),
    /// Strict mode met images it had to skip.
    #[error("{count} image(s) skipped and --strict is set (nothing written); first: {first}")]
    Strict {
        /// How many were skipped.
        count: usize,
        /// The first skip and its reason.
        first: String,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, DetectError>;
