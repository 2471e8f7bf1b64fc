//! The one place that decides how a model directory is run. A directory holds either an ffem
//! network (`model.json` + `weights.bpk`, from `ffem train`) or an imported external face model
//! (`external.json` + `model.onnx`, from `ffem import`), and optionally `threshold.json`. Every
//! command, the service, the trainer's teacher and `FaceModel` open models through [`open`], so
//! whatever one accepts, all accept.
//!
//! Engines: ffem networks run in burn (or ONNX Runtime on request); external graphs run in ONNX
//! Runtime when the build has it and its library is present, else in tract (pure Rust, always
//! built, several times slower).

use std::path::Path;

use ffem_model::ComputeDevice;
use ffem_model::model::{CONFIG_FILE, ModelConfig, WEIGHTS_FILE, load_model};
use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::error::InferError;
use crate::onnx_import::{
    ChannelOrder, ExternalGraph, InputConvention, metadata, prepare_external, read_metadata,
    shape_text,
};
use crate::tract_engine::TractEmbedder;

/// Marks a directory holding an imported external model, and says how to feed it.
pub const EXTERNAL_FILE: &str = "external.json";
/// The imported graph inside the directory (rewritten for batching, weights as in the source).
pub const GRAPH_FILE: &str = "model.onnx";

/// An imported external model as `external.json` describes it: everything needed to feed the
/// graph ffem's prepared faces, so no command needs options to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalModel {
    /// The graph's file name inside the directory.
    pub graph: String,
    /// The image input's name.
    pub input: String,
    /// The embedding output's name.
    pub output: String,
    /// Channel order the graph takes.
    pub channels: ChannelOrder,
    /// Subtracted from 0..255 pixel values, per channel in the graph's order.
    pub mean: [f32; 3],
    /// Divides after the subtraction.
    pub std: [f32; 3],
    /// Input side in pixels.
    pub image_size: usize,
    /// Embedding width, as the probe run at import returned it.
    pub embedding_dim: usize,
    /// Faces are aligned by their landmarks to the ArcFace template (every public face
    /// recogniser); `false` for models trained on faces cropped by their box.
    #[serde(default = "aligned")]
    pub align: bool,
    /// The file it was imported from, for the record.
    pub source: String,
}

impl ExternalModel {
    /// The pixel convention as the engines take it.
    pub fn convention(&self) -> InputConvention {
        InputConvention {
            channels: self.channels,
            mean: self.mean,
            std: self.std,
        }
    }

    /// The [`ModelConfig`] the commands read sizes and the face preparation from.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            embedding_dim: self.embedding_dim,
            image_size: self.image_size,
            align: self.align,
            ..ModelConfig::default()
        }
    }
}

fn aligned() -> bool {
    true
}

/// What a model directory holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelKind {
    /// An ffem network.
    Ffem(ModelConfig),
    /// An imported external graph.
    External(ExternalModel),
}

/// Which runtime runs a model's forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// burn for ffem networks; for external graphs ONNX Runtime where available, else tract.
    #[default]
    Auto,
    /// burn (ffem networks only).
    Burn,
    /// ONNX Runtime (a build with the `onnxruntime` feature and the library fetched).
    OnnxRuntime,
    /// tract (external graphs only).
    Tract,
}

fn invalid(dir: &Path, reason: impl std::fmt::Display) -> InferError {
    InferError::Invalid(format!("{}: {reason}", dir.display()))
}

/// Reads what `dir` holds, without loading weights. The error says what a model directory
/// must hold and how to make one.
pub fn read_kind(dir: &Path) -> Result<ModelKind, InferError> {
    let external = dir.join(EXTERNAL_FILE);
    if external.is_file() {
        let text = std::fs::read_to_string(&external).map_err(|source| InferError::Io {
            path: external.clone(),
            source,
        })?;
        let model: ExternalModel = serde_json::from_str(&text).map_err(|e| {
            invalid(
                &external,
                format!(
                    "not an external model description: {e}; re-import the model with `ffem import`"
                ),
            )
        })?;
        return Ok(ModelKind::External(model));
    }
    let config = dir.join(CONFIG_FILE);
    if !config.is_file() {
        return Err(invalid(
            dir,
            format!(
                "not a model directory: it holds neither {CONFIG_FILE} + {WEIGHTS_FILE} (from `ffem train`) nor {EXTERNAL_FILE} + {GRAPH_FILE} (from `ffem import MODEL.onnx --output DIR`)"
            ),
        ));
    }
    let text = std::fs::read_to_string(&config).map_err(|source| InferError::Io {
        path: config.clone(),
        source,
    })?;
    let cfg: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| invalid(&config, format!("not a model configuration: {e}")))?;
    Ok(ModelKind::Ffem(cfg))
}

/// Opens the model in `dir` for inference on `engine`, with `threads` intra-op threads for
/// the ONNX engines (0: one per core).
pub fn open(dir: &Path, engine: Engine, threads: usize) -> Result<Embedder, InferError> {
    match read_kind(dir)? {
        ModelKind::Ffem(_) => open_ffem(dir, engine, threads),
        ModelKind::External(ext) => open_external(dir, &ext, engine, threads),
    }
}

#[cfg_attr(not(feature = "onnxruntime"), allow(unused_variables))]
fn open_ffem(dir: &Path, engine: Engine, threads: usize) -> Result<Embedder, InferError> {
    if engine == Engine::Tract {
        return Err(invalid(
            dir,
            "an ffem network runs in burn or onnxruntime; tract runs imported ONNX models",
        ));
    }
    let device = ComputeDevice::preferred()
        .device()
        .map_err(|e| InferError::Invalid(e.to_string()))?;
    let (cfg, model) = load_model(dir, &device).map_err(|e| InferError::Invalid(e.to_string()))?;
    #[allow(unused_mut)]
    let mut embedder = Embedder::new(&model, cfg, &device);
    if engine == Engine::OnnxRuntime {
        #[cfg(feature = "onnxruntime")]
        embedder
            .use_onnxruntime(threads)
            .map_err(|e| InferError::Invalid(e.to_string()))?;
        #[cfg(not(feature = "onnxruntime"))]
        return Err(InferError::Invalid(NO_ORT.into()));
    }
    Ok(embedder)
}

/// Why the onnxruntime engine is not there, and how to get it.
#[cfg(not(feature = "onnxruntime"))]
const NO_ORT: &str = "the onnxruntime engine: this ffem was built without it; rebuild with `cargo build --release -p ffem --features onnxruntime` and run scripts/fetch-onnxruntime.sh";

fn open_external(
    dir: &Path,
    ext: &ExternalModel,
    engine: Engine,
    threads: usize,
) -> Result<Embedder, InferError> {
    let path = dir.join(&ext.graph);
    let network = match engine {
        Engine::Burn => {
            return Err(invalid(
                dir,
                "an imported ONNX model runs in onnxruntime or tract, not burn",
            ));
        }
        Engine::Tract => tract(&path, &read_graph(dir, ext)?, ext)?,
        Engine::OnnxRuntime => ort(&path, ext, threads)?,
        Engine::Auto => match ort(&path, ext, threads) {
            Ok(n) => n,
            Err(why) => {
                if cfg!(feature = "onnxruntime") {
                    tracing::warn!("{why}; running {} in tract instead", path.display());
                }
                tract(&path, &read_graph(dir, ext)?, ext)?
            }
        },
    };
    if network.dim() != ext.embedding_dim {
        return Err(invalid(
            &path,
            format!(
                "gives {}-d embeddings and {EXTERNAL_FILE} says {}: the graph was replaced; import it again",
                network.dim(),
                ext.embedding_dim
            ),
        ));
    }
    Ok(network)
}

/// The imported graph of `dir`, read and made ready for batched inference with the recorded
/// input and output (ONNX Runtime reads the file itself; tract and the exports take this).
pub fn read_graph(dir: &Path, ext: &ExternalModel) -> Result<ExternalGraph, InferError> {
    let path = dir.join(&ext.graph);
    let bytes = std::fs::read(&path).map_err(|source| InferError::Io {
        path: path.clone(),
        source,
    })?;
    prepare_external(&bytes, Some(&ext.input), Some(&ext.output)).map_err(|e| invalid(&path, e))
}

fn tract(path: &Path, graph: &ExternalGraph, ext: &ExternalModel) -> Result<Embedder, InferError> {
    let engine = TractEmbedder::new(graph, ext.image_size, ext.convention())
        .map_err(|e| invalid(path, e))?;
    // The width the graph gives, not the recorded one: at import nothing is recorded yet, and
    // `open_external` compares the two.
    let config = ModelConfig {
        embedding_dim: engine.dim(),
        ..ext.model_config()
    };
    Ok(Embedder::from_tract(engine, config))
}

#[cfg_attr(not(feature = "onnxruntime"), allow(unused_variables))]
fn ort(path: &Path, ext: &ExternalModel, threads: usize) -> Result<Embedder, InferError> {
    #[cfg(feature = "onnxruntime")]
    {
        let opts = crate::ort_engine::ExternalOptions {
            input: Some(ext.input.clone()),
            output: Some(ext.output.clone()),
            convention: ext.convention(),
            image_size: Some(ext.image_size),
            threads,
        };
        Embedder::from_onnx_file(path, &opts).map_err(|e| InferError::Invalid(e.to_string()))
    }
    #[cfg(not(feature = "onnxruntime"))]
    Err(InferError::Invalid(NO_ORT.into()))
}

/// How to read an external ONNX file at import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image input's name (default: the one input a node reads).
    pub input: Option<String>,
    /// The embedding output's name (required when the graph has several outputs).
    pub output: Option<String>,
    /// Channel order and pixel scaling the model was trained with (default: what `ffem export`
    /// recorded in the file, else insightface's RGB, (x - 127.5) / 127.5).
    pub convention: Option<InputConvention>,
    /// Input side when the graph leaves it symbolic.
    pub image_size: Option<usize>,
    /// Faces aligned by landmarks (`true`) or cropped by their box (default: what `ffem
    /// export` recorded, else aligned, as every public face recogniser takes them).
    pub align: Option<bool>,
}

/// Imports the ONNX face model `file` into the new directory `out`: the graph is checked (one
/// N x 3 x S x S image input, one N x D output), rewritten for batching, probed with a run of
/// two blank images (the embedding width comes from that run), and written with its
/// `external.json`, all at once (staged beside `out`, then renamed). `out` must not exist or be
/// empty: an import never overwrites a model.
pub fn import_onnx(
    file: &Path,
    opts: &ImportOptions,
    out: &Path,
) -> Result<ExternalModel, InferError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(invalid(
            out,
            "exists and is not empty: import into a new directory (an import never overwrites a model)",
        ));
    }
    let bytes = std::fs::read(file).map_err(|source| InferError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let graph = prepare_external(&bytes, opts.input.as_deref(), opts.output.as_deref())
        .map_err(|e| invalid(file, e))?;
    let (height, width) = (graph.input_dims[2], graph.input_dims[3]);
    if let (Some(h), Some(w)) = (height, width)
        && h != w
    {
        return Err(invalid(
            file,
            format!(
                "input `{}` takes {h} x {w} images; ffem feeds square aligned faces",
                graph.input
            ),
        ));
    }
    let image_size = match (graph.image_size(), opts.image_size) {
        (Some(s), Some(want)) if s != want => {
            return Err(invalid(
                file,
                format!("the graph fixes its input at {s} x {s}, not the {want} asked for"),
            ));
        }
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => {
            return Err(invalid(
                file,
                format!(
                    "input `{}` does not fix its size ({}); say it with --image-size (112 for ArcFace-aligned faces)",
                    graph.input,
                    shape_text(&graph.input_dims)
                ),
            ));
        }
    };
    let recorded = read_metadata(&bytes).map_err(|e| invalid(file, e))?;
    let convention = opts
        .convention
        .or_else(|| InputConvention::from_metadata(&recorded))
        .unwrap_or_default();
    let align = opts
        .align
        .or_else(|| {
            recorded
                .iter()
                .find(|(k, _)| k == metadata::ALIGN)
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(true);
    let mut model = ExternalModel {
        graph: GRAPH_FILE.into(),
        input: graph.input.clone(),
        output: graph.output.clone(),
        channels: convention.channels,
        mean: convention.mean,
        std: convention.std,
        image_size,
        embedding_dim: 0,
        align,
        source: file.display().to_string(),
    };
    // The probe: the runtime this build prefers, falling back to tract.
    let probe = match ort(file, &model, 0) {
        Ok(e) => e,
        Err(_) => tract(file, &graph, &model)?,
    };
    model.embedding_dim = probe.dim();
    if let Some(declared) = graph.embedding_dim()
        && declared != model.embedding_dim
    {
        return Err(invalid(
            file,
            format!(
                "output `{}` declares {declared} values per image and a run returned {}",
                graph.output, model.embedding_dim
            ),
        ));
    }
    write_dir(out, &graph.bytes, &model)?;
    Ok(model)
}

fn write_dir(out: &Path, graph: &[u8], model: &ExternalModel) -> Result<(), InferError> {
    let staged = ffem_data::atomic::temp_path(out);
    if staged.exists() {
        std::fs::remove_dir_all(&staged).map_err(|source| InferError::Io {
            path: staged.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&staged).map_err(|source| InferError::Io {
        path: staged.clone(),
        source,
    })?;
    ffem_data::atomic::write_file(&staged.join(&model.graph), graph)?;
    ffem_data::atomic::write_json(&staged.join(EXTERNAL_FILE), model)?;
    // A missing `out` is renamed into place; an empty one (checked by the caller) swapped out.
    ffem_data::atomic::replace_dir(&staged, out)?;
    Ok(())
}
