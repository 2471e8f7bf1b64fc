//! One error type for every data-path failure, each naming the file, key or byte offset at fault.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing face data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file that could not be read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The dataset list is not valid JSON, or not of the expected shape.
    #[error(
        "{path}: line {line}, column {column}: {message}. The file must be one JSON object mapping \
         each image path to {{\"label\": int, \"x1\": .., \"y1\": .., \"x2\": .., \"y2\": ..}}"
    )]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A record file is damaged or is not a TFRecord file at all.
    #[error(
        "{path}: byte offset {offset}: {what}. Re-create the file (ffem pack), or pass --skip-corrupt \
         to skip damaged records"
    )]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// Byte offset of the damaged record's start.
        offset: u64,
        /// What is wrong there.
        what: String,
    },
    /// A record decoded but does not carry the face schema (jpeg, label, box).
    #[error("{path}: record {index}: {what}")]
    Schema {
        /// The record file.
        path: PathBuf,
        /// 0-based index of the record within the file.
        index: u64,
        /// What is missing or malformed.
        what: String,
    },
    /// Anything else the user must fix, with the fix in the message.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the data crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
