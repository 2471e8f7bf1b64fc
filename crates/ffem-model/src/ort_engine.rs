//! ONNX Runtime as an optional inference engine (`--features onnxruntime`): the model is exported
//! to ONNX in memory (BatchNorm folded, as `ffem export` writes it) and run by the
//! `libonnxruntime` that `scripts/fetch-onnxruntime.sh` puts in the cache, loaded at run time.
//! Nothing is linked at build time, so the feature builds anywhere; without the library the engine
//! reports where it looked and how to get it.
//!
//! Why: ONNX Runtime's CPU kernels (MLAS, with AVX-512 and layout-aware convolutions) embed several
//! times faster than burn's; training stays on burn.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use thiserror::Error;

use crate::model::{EmbeddingModel, ModelConfig};

/// The ONNX Runtime release `scripts/fetch-onnxruntime.sh` fetches.
pub const ORT_VERSION: &str = "1.31.1";

/// Why the engine could not be set up or run.
#[derive(Debug, Error)]
pub enum OrtEngineError {
    /// No library at the path tried.
    #[error(
        "ONNX Runtime library not found at {0}: run scripts/fetch-onnxruntime.sh, or set ORT_DYLIB_PATH to a libonnxruntime (version >= 1.22)"
    )]
    Missing(PathBuf),
    /// The library did not load or has no usable API.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load {
        /// The library file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// Session creation or a run failed.
    #[error("ONNX Runtime: {0}")]
    Run(#[from] ort::Error),
    /// The graph's output does not have the model's shape.
    #[error("ONNX Runtime: {0}")]
    Shape(String),
}

/// Where the library is looked for: `ORT_DYLIB_PATH`, else the fetch script's cache.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let dir = ffem_data::cache::dir("FFEM_ORT_DIR", &format!("onnxruntime-{ORT_VERSION}"));
    dir.join(format!("libonnxruntime.so.{ORT_VERSION}"))
}

/// The process's one ONNX Runtime environment (the library can be loaded once per process).
fn environment() -> Result<&'static Environment, OrtEngineError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let path = library_path();
    if ENV.get().is_none() && !path.is_file() {
        return Err(OrtEngineError::Missing(path));
    }
    ENV.get_or_init(|| {
        ort::init_from(&path)
            .map_err(|e| e.to_string())?
            .with_name("ffem")
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|message| OrtEngineError::Load {
        path,
        message: message.clone(),
    })
}

/// An exported ffem model in an ONNX Runtime session.
pub struct OrtEmbedder {
    session: Mutex<Session>,
    dim: usize,
    image_size: usize,
}

impl OrtEmbedder {
    /// Exports `model` (weights as they are now) and opens it with `threads` intra-op threads
    /// (0: ONNX Runtime's default, one per core).
    pub fn new(
        model: &EmbeddingModel,
        config: &ModelConfig,
        threads: usize,
    ) -> Result<Self, OrtEngineError> {
        let env = environment()?;
        let bytes = crate::onnx::to_onnx(model, config);
        let mut builder = Session::builder(env)?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(ort::Error::from)?;
        }
        let session = builder.commit_from_memory(&bytes)?;
        Ok(OrtEmbedder {
            session: Mutex::new(session),
            dim: config.embedding_dim,
            image_size: config.image_size,
        })
    }

    /// Embeds `n` prepared images (`n` x 3 x size x size, as [`crate::Embedder::embed_prepared`]
    /// takes them); raw (un-normalised) outputs, `n` x dim.
    pub fn embed_prepared(&self, images: &[f32], n: usize) -> Result<Vec<f32>, OrtEngineError> {
        let s = self.image_size;
        let input = TensorRef::from_array_view(([n, 3, s, s], &images[..n * 3 * s * s]))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(ort::inputs!["data" => input])?;
        let (_, values) = outputs["embedding"].try_extract_tensor::<f32>()?;
        if values.len() != n * self.dim {
            return Err(OrtEngineError::Shape(format!(
                "the graph returned {} values for {n} images of dimension {}",
                values.len(),
                self.dim
            )));
        }
        Ok(values.to_vec())
    }
}
