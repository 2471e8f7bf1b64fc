//! `ffem info`: layers, parameters and FLOPs of a model, config or backbone; what an imported
//! model takes and gives.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_infer::model_dir::ModelKind;
use ffem_train::TrainConfig;

/// Arguments of `ffem info`.
#[derive(Args)]
pub struct InfoArgs {
    /// A model directory or a training config (.toml).
    path: Option<PathBuf>,
    /// A backbone by name instead: mobilenet_v3_large or mobilenet_v3_small.
    #[arg(long)]
    backbone: Option<String>,
    /// With --backbone: the ImageNet network (224x224, 1000 classes) as torchvision builds it.
    #[arg(long)]
    imagenet: bool,
}

/// Runs `ffem info`.
pub fn info(a: InfoArgs) -> Result<ExitCode> {
    use ffem_model::info::{describe, describe_imagenet, format_table};
    let model_cfg = match (&a.path, &a.backbone) {
        (Some(p), _) if p.is_dir() => match ffem_infer::model_dir::read_kind(p)? {
            ModelKind::Ffem(cfg) => cfg,
            ModelKind::External(ext) => {
                let size = std::fs::metadata(p.join(&ext.graph)).map_or(0, |m| m.len());
                println!(
                    "imported ONNX model ({:.1} MiB, from {}): input `{}` [N, 3, {s}, {s}], {:?}, mean {:?}, std {:?}; output `{}` [N, {}]",
                    size as f64 / (1 << 20) as f64,
                    ext.source,
                    ext.input,
                    ext.channels,
                    ext.mean,
                    ext.std,
                    ext.output,
                    ext.embedding_dim,
                    s = ext.image_size
                );
                return Ok(ExitCode::SUCCESS);
            }
        },
        (Some(p), _) => TrainConfig::load(Some(p), &[])?.model(),
        (None, Some(b)) => TrainConfig::load(None, &[format!("backbone=\"{b}\"")])?.model(),
        (None, None) => bail!("give a model directory, a config file, or --backbone NAME"),
    };
    if a.imagenet {
        let (rows, params, macs) = describe_imagenet(&model_cfg.backbone);
        print!(
            "{}",
            format_table(
                &format!(
                    "{:?} ImageNet (224x224, 1000 classes)",
                    model_cfg.backbone.variant
                ),
                &rows,
                params,
                macs
            )
        );
    } else {
        let (rows, params, macs) = describe(&model_cfg);
        let title = format!(
            "{:?} + {:?} head, {}-d embedding, {}x{} input",
            model_cfg.backbone.variant,
            model_cfg.head,
            model_cfg.embedding_dim,
            model_cfg.image_size,
            model_cfg.image_size
        );
        print!("{}", format_table(&title, &rows, params, macs));
    }
    Ok(ExitCode::SUCCESS)
}
