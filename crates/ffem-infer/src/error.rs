//! The one error type of reading faces, preparing them for the network and embedding them, shared
//! by pair sets, folders and the library API.

/// Why a face, a folder of faces or a pair set could not be turned into embeddings: every
/// variant names the file or image it concerns.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// A dataset list or folder could not be read (the message names the file).
    #[error(transparent)]
    Data(#[from] ffem_data::DataError),
    /// A protocol file could not be read (the message names the file).
    #[error(transparent)]
    Eval(#[from] ffem_eval::EvalError),
    /// An image file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The image.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image was read but cannot be embedded (not decodable, box outside the image, ...).
    #[error("{name}: {reason}")]
    Unusable {
        /// The image's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The set cannot be built as asked (the message says what to change).
    #[error("{0}")]
    Invalid(String),
}
