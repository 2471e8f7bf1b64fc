//! Errors of the evaluation crate, each naming the file and line at fault.

use std::path::PathBuf;

/// What can go wrong while reading protocols or scoring.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed line or structure in an input file.
    #[error("{path}: {location}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in it ("line 12", "byte 300").
        location: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Inputs that do not fit together.
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
    /// A format error at a location.
    pub fn format(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        EvalError::Format {
            path: path.into(),
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Result alias for the evaluation crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
