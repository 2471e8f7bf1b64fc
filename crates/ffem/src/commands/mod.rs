//! One file per subcommand: each parses its arguments (the structs carry the `--help` text),
//! calls the libraries and prints. What several commands share is here.

pub mod ablate;
pub mod bench;
pub mod clean;
pub mod cluster;
pub mod demo;
pub mod detect;
pub mod embed;
pub mod eval;
pub mod export;
pub mod import;
pub mod info;
pub mod inspect;
pub mod pack;
pub mod search;
pub mod serve;
pub mod train;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use ffem_detect::Mtcnn;
use ffem_infer::Embedder;
use ffem_infer::faces::FaceSource;
use ffem_model::ModelConfig;

/// Which runtime runs the network's forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// burn for ffem models; ONNX Runtime (where built and fetched), else tract, for imported ones.
    Auto,
    /// burn with ffem's kernels (ffem models; the GPU in a `vulkan` build).
    Burn,
    /// ONNX Runtime (a build with `--features onnxruntime` and `scripts/fetch-onnxruntime.sh`).
    Onnxruntime,
    /// tract, pure Rust (imported models; always built, slower than ONNX Runtime).
    Tract,
}

/// `--engine`, shared by every command that runs the network.
#[derive(Args)]
pub struct EngineArg {
    /// Runtime for the network: auto, burn, onnxruntime (optional build feature) or tract.
    #[arg(long, value_enum, default_value = "auto")]
    engine: Engine,
}

impl EngineArg {
    /// The library's name for the choice.
    pub fn engine(&self) -> ffem_infer::model_dir::Engine {
        use ffem_infer::model_dir::Engine as E;
        match self.engine {
            Engine::Auto => E::Auto,
            Engine::Burn => E::Burn,
            Engine::Onnxruntime => E::OnnxRuntime,
            Engine::Tract => E::Tract,
        }
    }
}

/// How faces that come without a box are found, shared by the commands that embed photos.
#[derive(Args)]
pub struct DetectArg {
    /// Embed the centre square of photos given without a box instead of detecting the face.
    #[arg(long)]
    no_detect: bool,
    /// Directory holding pnet.onnx, rnet.onnx, onet.onnx (default: where scripts/fetch-mtcnn.sh
    /// puts them).
    #[arg(long, value_name = "DIR")]
    detector_weights: Option<PathBuf>,
}

impl DetectArg {
    /// The detector, loaded only when detection is on and some of `sources` has no box (a list
    /// with boxes needs no weights).
    pub fn load_for(&self, sources: &[FaceSource]) -> Result<Option<Mtcnn>> {
        self.load_if(sources.iter().any(|s| s.face_box.is_none()))
    }

    /// The detector when detection is on and `needed`.
    pub fn load_if(&self, needed: bool) -> Result<Option<Mtcnn>> {
        if self.no_detect || !needed {
            return Ok(None);
        }
        let dir = self
            .detector_weights
            .clone()
            .unwrap_or_else(ffem_detect::default_weights_dir);
        Ok(Some(Mtcnn::load(&dir)?))
    }
}

/// Opens the model directory `path` (an ffem model or an imported one) on `engine`: the one
/// way every command runs a model.
pub fn open_model(path: &Path, engine: &EngineArg) -> Result<(ModelConfig, Embedder)> {
    let embedder = ffem_infer::model_dir::open(path, engine.engine(), 0)?;
    Ok((embedder.config().clone(), embedder))
}

/// Prints how many were skipped, where all of them are listed, and the first ten with reasons.
pub fn print_skipped(skipped: &[ffem_data::Rejected], what: &str, listed_in: &Path) {
    println!(
        "skipped {} {what} (all listed in {}):",
        skipped.len(),
        listed_in.display()
    );
    for s in skipped.iter().take(10) {
        println!("  {}: {}", s.key, s.reason);
    }
    if skipped.len() > 10 {
        println!("  ... and {} more", skipped.len() - 10);
    }
}

/// Fails with the first skipped face's reason when any was skipped (commands that embed exactly
/// the faces they were given).
pub fn require_all(skipped: &[(usize, String)]) -> Result<()> {
    if let Some((_, reason)) = skipped.first() {
        bail!("{reason}");
    }
    Ok(())
}
