//! ONNX Runtime as an optional inference engine (`--features onnxruntime`): the model is exported
//! to ONNX in memory (BatchNorm folded, as `ffem export` writes it) and run by the
//! `libonnxruntime` that `scripts/fetch-onnxruntime.sh` puts in the cache, loaded at run time.
//! Nothing is linked at build time, so the feature builds anywhere; without the library the engine
//! reports where it looked and how to get it.
//!
//! Why: ONNX Runtime's CPU kernels (MLAS, with AVX-512 and layout-aware convolutions) embed several
//! times faster than burn's; training stays on burn.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::TensorRef;
use thiserror::Error;

use crate::onnx_import::{InputConvention, prepare_external};
use ffem_model::model::{EmbeddingModel, ModelConfig};

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
    /// An external model file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An external model's graph is not usable as a face embedder.
    #[error("{path}: {source}")]
    Import {
        /// The file.
        path: PathBuf,
        /// What is wrong with the graph.
        source: crate::onnx_import::OnnxImportError,
    },
    /// ONNX Runtime refused an external model (an operator or opset it lacks, say).
    #[error(
        "{path}: ONNX Runtime {ORT_VERSION} cannot load this model: {message} (int8 DequantizeLinear with per-block scales needs opset 21 support, ONNX Runtime >= 1.20)"
    )]
    Refused {
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
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

/// A session builder on the process's environment with `threads` intra-op threads (0: ONNX
/// Runtime's default, one per core).
fn session_builder(threads: usize) -> Result<SessionBuilder, OrtEngineError> {
    let builder = Session::builder(environment()?)?;
    if threads == 0 {
        return Ok(builder);
    }
    Ok(builder
        .with_intra_threads(threads)
        .map_err(ort::Error::from)?)
}

/// An exported ffem model, or an external face model, in an ONNX Runtime session.
pub struct OrtEmbedder {
    session: Mutex<Session>,
    dim: usize,
    image_size: usize,
    input: String,
    output: String,
    /// External models: how their input differs from ffem's prepared crops.
    convention: Option<InputConvention>,
    /// A graph that only runs batches of exactly this size (fixed in the file and not 1, or 1
    /// where relaxing it failed): shorter batches are padded with blank images.
    exact_batch: Option<usize>,
}

/// What an external model file is and how to feed it.
#[derive(Debug, Clone, Default)]
pub struct ExternalOptions {
    /// The image input's name (default: the one input a node reads).
    pub input: Option<String>,
    /// The embedding output's name (default: the first output).
    pub output: Option<String>,
    /// Channel order and pixel scaling.
    pub convention: InputConvention,
    /// Input side when the graph does not fix it (default 112).
    pub image_size: Option<usize>,
    /// Intra-op threads (0: one per core).
    pub threads: usize,
}

impl OrtEmbedder {
    /// Exports `model` (weights as they are now) and opens it with `threads` intra-op threads
    /// (0: ONNX Runtime's default, one per core).
    pub fn new(
        model: &EmbeddingModel,
        config: &ModelConfig,
        threads: usize,
    ) -> Result<Self, OrtEngineError> {
        let bytes = ffem_model::onnx::to_onnx(model, config);
        let session = session_builder(threads)?.commit_from_memory(&bytes)?;
        Ok(OrtEmbedder {
            session: Mutex::new(session),
            dim: config.embedding_dim,
            image_size: config.image_size,
            input: "data".into(),
            output: "embedding".into(),
            convention: None,
            exact_batch: None,
        })
    }

    /// Opens an external face model (any ONNX file that maps N x 3 x H x W images to N x D),
    /// rewritten by [`crate::onnx_import::prepare_external`]; a probe run finds the embedding
    /// width and whether batches larger than one work (else images go one at a time).
    pub fn from_file(path: &Path, opts: &ExternalOptions) -> Result<Self, OrtEngineError> {
        let raw = std::fs::read(path).map_err(|source| OrtEngineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let graph = prepare_external(&raw, opts.input.as_deref(), opts.output.as_deref()).map_err(
            |source| OrtEngineError::Import {
                path: path.to_path_buf(),
                source,
            },
        )?;
        if !graph.dropped_unused_inputs.is_empty() || graph.constant_inputs > 0 {
            tracing::info!(
                "{}: dropped {} graph inputs no node reads, kept {} initializers listed as inputs as constants",
                path.display(),
                graph.dropped_unused_inputs.len(),
                graph.constant_inputs
            );
        }
        let session = session_builder(opts.threads)?
            .commit_from_memory(&graph.bytes)
            .map_err(|e| OrtEngineError::Refused {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let image_size = graph.image_size().or(opts.image_size).unwrap_or(112);
        let mut engine = OrtEmbedder {
            session: Mutex::new(session),
            dim: 0,
            image_size,
            input: graph.input.clone(),
            output: graph.output.clone(),
            convention: Some(opts.convention),
            exact_batch: None,
        };
        let plane = 3 * image_size * image_size;
        let fixed_batch = graph.input_dims[0].filter(|_| !graph.batch_relaxed);
        let probe = fixed_batch.unwrap_or(2) as usize;
        match engine.run(&vec![0f32; probe * plane], probe) {
            Ok(values) => engine.dim = values.len() / probe,
            Err(first) if graph.batch_relaxed => {
                // A graph that reshapes with a hard-coded batch of 1 inside: run images singly.
                tracing::warn!(
                    "{}: batches of 2 fail once the batch dimension is relaxed ({first}); embedding one image per run",
                    path.display()
                );
                engine.exact_batch = Some(1);
                engine.dim = engine.run(&vec![0f32; plane], 1)?.len();
            }
            Err(e) => return Err(e),
        }
        if let Some(fixed) = fixed_batch {
            engine.exact_batch = Some(fixed as usize);
        }
        if let Some(declared) = graph.embedding_dim()
            && declared != engine.dim
        {
            return Err(OrtEngineError::Shape(format!(
                "{}: output `{}` declares {declared} values per image but returned {}",
                path.display(),
                graph.output,
                engine.dim
            )));
        }
        Ok(engine)
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Input side in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// One run over `n` images already in the graph's convention: the output's values (a whole
    /// number per image).
    fn run(&self, images: &[f32], n: usize) -> Result<Vec<f32>, OrtEngineError> {
        let s = self.image_size;
        let input = TensorRef::from_array_view(([n, 3, s, s], images))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(ort::inputs![self.input.as_str() => input])?;
        let (_, values) = outputs[self.output.as_str()].try_extract_tensor::<f32>()?;
        if n == 0 || values.len() % n != 0 {
            return Err(OrtEngineError::Shape(format!(
                "output `{}` returned {} values for {n} images",
                self.output,
                values.len()
            )));
        }
        Ok(values.to_vec())
    }

    /// Embeds `n` prepared images (`n` x 3 x size x size, as [`crate::Embedder::embed_prepared`]
    /// takes them); raw (un-normalised) outputs, `n` x dim.
    pub fn embed_prepared(&self, images: &[f32], n: usize) -> Result<Vec<f32>, OrtEngineError> {
        let plane = self.image_size * self.image_size;
        let images = &images[..n * 3 * plane];
        let converted;
        let images = match &self.convention {
            Some(c) => {
                converted = c.convert(images, plane);
                &converted[..]
            }
            None => images,
        };
        let per_run = self.exact_batch.unwrap_or(n).max(1);
        let mut out = Vec::with_capacity(n * self.dim);
        for start in (0..n).step_by(per_run) {
            let m = (n - start).min(per_run);
            let batch = &images[start * 3 * plane..(start + m) * 3 * plane];
            let padded;
            let (batch, run_n) = match self.exact_batch {
                Some(b) if b > m => {
                    padded = [batch, &vec![0f32; (b - m) * 3 * plane]].concat();
                    (&padded[..], b)
                }
                _ => (batch, m),
            };
            let values = self.run(batch, run_n)?;
            if values.len() != run_n * self.dim {
                return Err(OrtEngineError::Shape(format!(
                    "the graph returned {} values for {run_n} images of dimension {}",
                    values.len(),
                    self.dim
                )));
            }
            out.extend_from_slice(&values[..m * self.dim]);
        }
        Ok(out)
    }
}
