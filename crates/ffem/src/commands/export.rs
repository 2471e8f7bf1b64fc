//! `ffem export`: the embedding network as ONNX.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `ffem export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Model directory.
    model: PathBuf,
    /// Output ONNX file: input `data` [N, 3, S, S] float32, output `embedding` [N, D], opset 14.
    #[arg(long)]
    onnx: PathBuf,
}

/// Runs `ffem export`.
pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let device = ffem_model::ComputeDevice::preferred().device()?;
    let (cfg, model) = ffem_model::load_model(&a.model, &device)?;
    ffem_model::onnx::export_onnx(&a.onnx, &model, &cfg)?;
    let size = std::fs::metadata(&a.onnx).map(|m| m.len()).unwrap_or(0);
    println!(
        "exported {} ({:.1} MiB): input `data` [N, 3, {s}, {s}], output `embedding` [N, {}]",
        a.onnx.display(),
        size as f64 / (1 << 20) as f64,
        cfg.embedding_dim,
        s = cfg.image_size
    );
    Ok(ExitCode::SUCCESS)
}
