//! `ffem export`: a model directory (an ffem network or an imported model) as an ONNX file for
//! deployment, in float32, float16 weights, or int8 calibrated on real faces.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_infer::faces::{gather, prepare_face};
use ffem_infer::model_dir::{ModelKind, read_graph, read_kind};
use ffem_infer::onnx_import::{InputConvention, metadata, with_metadata};
use ffem_infer::{onnx_fold, onnx_quant};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::DetectArg;

/// Numeric precision of the exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// float32 weights and arithmetic.
    Fp32,
    /// float16 weights (half the file), cast to float32 at load.
    Fp16,
    /// int8 weights and activations (QDQ), calibrated on `--calibrate` faces.
    Int8,
}

/// Arguments of `ffem export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Model directory (from `ffem train` or `ffem import`).
    model: PathBuf,
    /// Output ONNX file: one N x 3 x S x S input, one N x D output (an ffem network: input
    /// `data`, output `embedding`, BatchNorm folded). The input convention and face preparation
    /// are recorded in the file, so `ffem import` reads them back.
    #[arg(long)]
    onnx: PathBuf,
    /// fp32, fp16 (weights) or int8 (static quantisation; needs --calibrate).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// int8: faces the activation ranges are measured on (an image_list.json, a folder or
    /// images), prepared as the model's inputs are.
    #[arg(long, value_name = "LIST_OR_DIR")]
    calibrate: Option<PathBuf>,
    /// Folder the paths of a --calibrate list are relative to (default: the list's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// How many calibration faces, drawn with --seed.
    #[arg(long, default_value_t = 256)]
    calibrate_count: usize,
    /// Seed of the calibration draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    detect: DetectArg,
}

/// Runs `ffem export`.
pub fn export(a: ExportArgs) -> Result<ExitCode> {
    if a.precision == Precision::Int8 && a.calibrate.is_none() {
        bail!(
            "--precision int8 needs --calibrate LIST_OR_DIR: a few hundred faces like those the model will see (an image_list.json with landmarks, or photos to detect faces in)"
        );
    }
    if a.precision != Precision::Int8 && a.calibrate.is_some() {
        bail!("--calibrate is for --precision int8");
    }
    // The float graph, its input convention, its input side and how faces are prepared.
    let (graph, convention, size, align) = match read_kind(&a.model)? {
        ModelKind::Ffem(_) => {
            let device = ffem_model::ComputeDevice::preferred().device()?;
            let (cfg, model) = ffem_model::load_model(&a.model, &device)?;
            let bytes = ffem_model::onnx::to_onnx(&model, &cfg);
            (bytes, InputConvention::default(), cfg.image_size, cfg.align)
        }
        ModelKind::External(ext) => {
            let g = read_graph(&a.model, &ext)?;
            // Weight-only int8 files become float first: fp16 and int8 start from float weights.
            let folded = onnx_fold::fold_constant_dequantize(&g.bytes)?;
            (folded.bytes, ext.convention(), ext.image_size, ext.align)
        }
    };
    let (bytes, what) = match a.precision {
        Precision::Fp32 => (graph, "float32".to_string()),
        Precision::Fp16 => {
            let (b, n) = onnx_quant::to_fp16_weights(&graph)?;
            (b, format!("float16 weights ({n} tensors)"))
        }
        Precision::Int8 => {
            let (folded, bn) = onnx_quant::fold_batchnorm(&graph)?;
            let tensors = onnx_quant::tensors_to_calibrate(&folded)?;
            let images = calibration_faces(&a, size, align)?;
            let n = images.len() / (3 * size * size);
            let converted = convention.convert(&images, size * size);
            let ranges = onnx_quant::activation_ranges(&folded, &tensors, size, &converted, n)
                .map_err(anyhow::Error::msg)?;
            let (b, ops) = onnx_quant::quantize_int8(&folded, &ranges)?;
            (
                b,
                format!(
                    "int8 ({ops} operators quantised, {bn} BatchNorm folded, {} activations calibrated on {n} faces)",
                    tensors.len()
                ),
            )
        }
    };
    let mut props = convention.to_metadata();
    props.push((metadata::ALIGN, align.to_string()));
    let bytes = with_metadata(&bytes, &props)?;
    ffem_data::atomic::write_file(&a.onnx, &bytes)?;
    println!(
        "exported {} ({:.1} MiB, {what}): input [N, 3, {size}, {size}]; `ffem import {}` reads it back as it was",
        a.onnx.display(),
        bytes.len() as f64 / (1 << 20) as f64,
        a.onnx.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--calibrate-count` faces drawn from `--calibrate` with `--seed`, prepared as the model's
/// inputs (ffem's convention), concatenated.
fn calibration_faces(a: &ExportArgs, size: usize, align: bool) -> Result<Vec<f32>> {
    let list = a.calibrate.as_ref().expect("checked by the caller");
    let mut sources = gather(std::slice::from_ref(list), a.root.as_deref())?;
    if sources.is_empty() {
        bail!("--calibrate {}: no images found", list.display());
    }
    sources.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    sources.truncate(a.calibrate_count.max(1));
    let detector = a.detect.load_for(&sources)?;
    let prepared: Vec<Result<Vec<f32>, String>> = sources
        .par_iter()
        .map(|s| {
            let mut face = s.read().map_err(|e| e.to_string())?;
            prepare_face(&mut face, detector.as_ref(), size, align)
                .map(|(image, _)| image)
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for p in prepared {
        match p {
            Ok(i) => images.extend(i),
            Err(reason) => skipped.push(reason),
        }
    }
    if images.is_empty() {
        bail!(
            "--calibrate {}: none of the {} faces drawn could be prepared (first: {}); with a list, is --root its images' folder?",
            list.display(),
            sources.len(),
            skipped.first().map_or("", String::as_str)
        );
    }
    if !skipped.is_empty() {
        eprintln!(
            "calibration: {} of {} faces skipped, first: {}",
            skipped.len(),
            sources.len(),
            skipped[0]
        );
    }
    Ok(images)
}
