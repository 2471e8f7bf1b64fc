//! One file per subcommand: each parses its arguments (the structs carry the `--help` text),
//! calls the libraries and prints. What several commands share is here.

pub mod ablate;
pub mod bench;
pub mod clean;
pub mod demo;
pub mod detect;
pub mod embed;
pub mod eval;
pub mod export;
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
use clap::builder::TypedValueParser;
use ffem_detect::Mtcnn;
use ffem_infer::Embedder;
use ffem_infer::faces::FaceSource;
use ffem_infer::onnx_import::ChannelOrder;
use ffem_model::{ComputeDevice, ModelConfig, load_model};

/// Which runtime runs the network's forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// burn with ffem's kernels (always available; the GPU in a `vulkan` build).
    Burn,
    /// ONNX Runtime (a build with `--features onnxruntime` and `scripts/fetch-onnxruntime.sh`).
    Onnxruntime,
}

/// `--engine`, shared by every command that runs the network.
#[derive(Args)]
pub struct EngineArg {
    /// Runtime for the network: burn, or onnxruntime (optional build feature).
    #[arg(long, value_enum, default_value = "burn")]
    engine: Engine,
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

/// An external ONNX face model in place of an ffem model directory, and how to feed it.
#[derive(Args)]
pub struct OnnxArgs {
    /// Run this ONNX face model (N x 3 x H x W images to N x D embeddings: insightface, OpenCV's
    /// SFace, ...) instead of an ffem model, on the same aligned crops and protocol. Needs a build
    /// with `--features onnxruntime` and scripts/fetch-onnxruntime.sh.
    #[arg(long, value_name = "MODEL.onnx")]
    pub onnx: Option<PathBuf>,
    /// Channel order the ONNX model takes: rgb (insightface, PyTorch-trained models) or bgr
    /// (OpenCV-trained models such as SFace).
    #[arg(
        long,
        default_value = "rgb",
        requires = "onnx",
        value_parser = clap::builder::PossibleValuesParser::new(ChannelOrder::NAMES)
            .map(|name| name.parse::<ChannelOrder>().expect("a listed name parses"))
    )]
    onnx_channels: ChannelOrder,
    /// Subtracted from the 0..255 pixel values: one value, or three in the model's channel order
    /// (127.5: insightface; 0 with --onnx-std 1: raw pixels, as SFace takes them).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.5",
        requires = "onnx"
    )]
    onnx_mean: Vec<f32>,
    /// Divides after the subtraction: one value or three.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.5",
        requires = "onnx"
    )]
    onnx_std: Vec<f32>,
    /// The graph's image input (default: the one input that a node reads).
    #[arg(long, requires = "onnx")]
    onnx_input: Option<String>,
    /// The graph's embedding output (default: its first output).
    #[arg(long, requires = "onnx")]
    onnx_output: Option<String>,
}

impl OnnxArgs {
    /// The input convention the options describe.
    pub fn convention(&self) -> Result<ffem_infer::onnx_import::InputConvention> {
        ffem_infer::onnx_import::InputConvention::from_values(
            self.onnx_channels,
            &self.onnx_mean,
            &self.onnx_std,
            "--onnx-mean",
            "--onnx-std",
        )
        .map_err(anyhow::Error::msg)
    }

    /// Opens the external model.
    #[cfg_attr(not(feature = "onnxruntime"), allow(unused_variables))]
    pub fn open(&self, path: &Path) -> Result<(ModelConfig, Embedder)> {
        let convention = self.convention()?;
        #[cfg(feature = "onnxruntime")]
        {
            let opts = ffem_infer::ort_engine::ExternalOptions {
                input: self.onnx_input.clone(),
                output: self.onnx_output.clone(),
                convention,
                image_size: None,
                threads: 0,
            };
            let embedder = Embedder::from_onnx_file(path, &opts)?;
            Ok((embedder.config().clone(), embedder))
        }
        #[cfg(not(feature = "onnxruntime"))]
        bail!(
            "--onnx runs the model in ONNX Runtime, and this ffem was built without it; rebuild with `cargo build --release -p ffem --features onnxruntime` and run scripts/fetch-onnxruntime.sh"
        )
    }
}

/// Loads the model directory `path` onto this build's preferred device, for `engine`.
pub fn open_model(path: &Path, engine: &EngineArg) -> Result<(ModelConfig, Embedder)> {
    let device = ComputeDevice::preferred().device()?;
    let (cfg, model) = load_model(path, &device)?;
    #[allow(unused_mut)]
    let mut embedder = Embedder::new(&model, cfg.clone(), &device);
    if engine.engine == Engine::Onnxruntime {
        #[cfg(feature = "onnxruntime")]
        embedder.use_onnxruntime(0)?;
        #[cfg(not(feature = "onnxruntime"))]
        bail!(
            "--engine onnxruntime: this ffem was built without it; rebuild with `cargo build --release -p ffem --features onnxruntime` and run scripts/fetch-onnxruntime.sh"
        );
    }
    Ok((cfg, embedder))
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
