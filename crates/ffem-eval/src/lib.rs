#![warn(missing_docs)]
//! ffem's evaluation, free of any deep-learning framework: it works on embeddings and labels.
//! Verification follows insightface's 10-fold protocol to the digit; identification is
//! leave-one-out nearest neighbour; readers cover LFW `pairs.txt`, CFP protocol folders,
//! insightface `.bin` sets and NPY embeddings. It also owns the embedding maths (`embedding`) and
//! the gallery index `ffem embed` writes and `ffem search` reads (`gallery`).

pub mod bin_set;
pub mod clean;
pub mod cluster;
pub mod csv_table;
pub mod embedding;
pub mod error;
pub mod gallery;
pub mod identification;
pub mod npy;
pub mod pairs;
pub mod plot;
pub mod verification;

pub use error::{EvalError, Result};
pub use identification::{IdentificationReport, identify};
pub use verification::{VerificationReport, evaluate, pair_distances};
