//! `ffem import`: an external ONNX face model (insightface, OpenCV's SFace, an `ffem export`) into
//! a model directory that every command, the service and the trainer's teacher accept.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use clap::builder::TypedValueParser;
use ffem_infer::model_dir::{ImportOptions, import_onnx};
use ffem_infer::onnx_import::{ChannelOrder, InputConvention};

use super::{EngineArg, open_model};

/// Arguments of `ffem import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The ONNX face model: N x 3 x H x W images in, N x D embeddings out.
    model: PathBuf,
    /// The model directory to create (must not exist, or be empty).
    #[arg(long, short)]
    output: PathBuf,
    /// Channel order the model takes: rgb (insightface, PyTorch-trained models) or bgr
    /// (OpenCV-trained models such as SFace). Default: what `ffem export` recorded in the file,
    /// else rgb.
    #[arg(
        long,
        value_parser = clap::builder::PossibleValuesParser::new(ChannelOrder::NAMES)
            .map(|name| name.parse::<ChannelOrder>().expect("a listed name parses"))
    )]
    onnx_channels: Option<ChannelOrder>,
    /// Subtracted from the 0..255 pixel values: one value, or three in the model's channel order
    /// (127.5: insightface and ffem; 0 with --onnx-std 1: raw pixels, as SFace takes them).
    /// Default as for --onnx-channels, else 127.5.
    #[arg(long, value_delimiter = ',')]
    onnx_mean: Vec<f32>,
    /// Divides after the subtraction: one value or three (default as --onnx-mean).
    #[arg(long, value_delimiter = ',')]
    onnx_std: Vec<f32>,
    /// The graph's image input (default: the one input that a node reads).
    #[arg(long)]
    onnx_input: Option<String>,
    /// The graph's embedding output (needed when the graph has several).
    #[arg(long)]
    onnx_output: Option<String>,
    /// Input side when the graph leaves it symbolic.
    #[arg(long)]
    image_size: Option<usize>,
    /// The model was trained on faces cropped by their box, not aligned by landmarks to the
    /// ArcFace template (default: what `ffem export` recorded, else aligned).
    #[arg(long)]
    no_align: bool,
    /// Evaluate on this LFW folder right after importing and save the decision threshold, so
    /// `ffem verify` and `ffem serve` decide at once (as `ffem eval DIR --lfw` does).
    #[arg(long, value_name = "DIR")]
    lfw: Option<PathBuf>,
    /// Save this decision threshold (cosine similarity) instead of measuring one: the value
    /// the model's authors publish (OpenCV's SFace: 0.363).
    #[arg(long, conflicts_with = "lfw")]
    threshold: Option<f32>,
    /// Runtime for the --lfw evaluation.
    #[command(flatten)]
    engine: EngineArg,
}

/// Runs `ffem import`.
pub fn import(a: ImportArgs) -> Result<ExitCode> {
    // Any convention option given states the whole convention (the others at their defaults);
    // none given leaves it to what the file records.
    let stated = a.onnx_channels.is_some() || !a.onnx_mean.is_empty() || !a.onnx_std.is_empty();
    let or_default = |v: &[f32]| {
        if v.is_empty() {
            vec![127.5]
        } else {
            v.to_vec()
        }
    };
    let convention = if stated {
        Some(
            InputConvention::from_values(
                a.onnx_channels.unwrap_or_default(),
                &or_default(&a.onnx_mean),
                &or_default(&a.onnx_std),
                "--onnx-mean",
                "--onnx-std",
            )
            .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    if let Some(t) = a.threshold
        && !(-1.0..=1.0).contains(&t)
    {
        bail!("--threshold {t}: a cosine similarity is between -1 and 1");
    }
    if let Some(lfw) = &a.lfw
        && !lfw.join("pairs.txt").is_file()
    {
        bail!(
            "--lfw {}: no pairs.txt there; give the LFW folder (pairs.txt, image_list.json, lfw-deepfunneled/)",
            lfw.display()
        );
    }
    let opts = ImportOptions {
        input: a.onnx_input.clone(),
        output: a.onnx_output.clone(),
        convention,
        image_size: a.image_size,
        align: a.no_align.then_some(false),
    };
    let model = import_onnx(&a.model, &opts, &a.output)?;
    println!(
        "imported {} -> {}: input `{}` [N, 3, {s}, {s}] ({:?}, mean {:?}, std {:?}, {}), output `{}` [N, {}]",
        a.model.display(),
        a.output.display(),
        model.input,
        model.channels,
        model.mean,
        model.std,
        if model.align {
            "aligned faces"
        } else {
            "faces cropped by box"
        },
        model.output,
        model.embedding_dim,
        s = model.image_size
    );
    if let Some(lfw) = &a.lfw {
        let set = ffem_infer::evalset::PairSet::lfw(lfw)?;
        let (cfg, embedder) = open_model(&a.output, &a.engine)?;
        let emb = ffem_infer::evalset::embed_set(&embedder, &set.faces, cfg.align, true, true)?;
        let report = ffem_infer::evalset::verify_set(&set, &emb);
        print!("{}", report.table(&set.name));
        super::eval::save_threshold(&a.output, &set.name, &report, true)?;
    } else if let Some(t) = a.threshold {
        ffem_infer::threshold::SavedThreshold {
            set: "stated at import (--threshold)".into(),
            threshold_cosine: t,
            threshold_squared_l2: 2.0 - 2.0 * t,
            accuracy: None,
            flip: true,
        }
        .save(&a.output)?;
        println!(
            "saved threshold {t:.4} (cosine, as stated) to {}",
            ffem_infer::threshold::path_in(&a.output).display()
        );
    } else {
        println!(
            "no threshold yet: `ffem eval {} --lfw LFW_DIR` saves one, so verify and serve can decide same/different",
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
