//! `ffem verify`: are two face images the same person?

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use ffem_data::image_list::ImageList;
use ffem_infer::faces::{EmbedOptions, FaceSource, embed_sources};
use ffem_infer::threshold::SavedThreshold;

use super::{DetectArg, EngineArg, open_model, require_all};

/// Arguments of `ffem verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Model directory.
    model: PathBuf,
    /// First face image.
    a: PathBuf,
    /// Second face image.
    b: PathBuf,
    /// Decision threshold as cosine similarity (default: the one `ffem eval` saved with the model).
    #[arg(long)]
    threshold: Option<f32>,
    /// An image_list.json whose boxes / landmarks apply to the images (matched by path suffix).
    #[arg(long)]
    list: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    detect: DetectArg,
}

/// The entries of the `--list` given (for boxes and landmarks), or none.
pub fn list_entries(list: Option<&Path>) -> Result<Vec<ffem_data::ImageEntry>> {
    Ok(match list {
        Some(p) => ImageList::load(p)?.entries,
        None => vec![],
    })
}

/// Runs `ffem verify`.
pub fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let (threshold, flip) = match a.threshold {
        Some(t) => (t, true),
        None => {
            let saved = SavedThreshold::load(&a.model)?.with_context(|| {
                format!(
                    "{}: no saved threshold; run `ffem eval {} --lfw DIR` first or pass --threshold",
                    ffem_infer::threshold::path_in(&a.model).display(),
                    a.model.display()
                )
            })?;
            (saved.threshold_cosine, saved.flip)
        }
    };
    let entries = list_entries(a.list.as_deref())?;
    let sources = [
        FaceSource::file_in_list(&a.a, &entries),
        FaceSource::file_in_list(&a.b, &entries),
    ];
    let detector = a.detect.load_for(&sources)?;
    let opts = EmbedOptions {
        align: cfg.align,
        flip,
        progress: false,
        skip_bad: true,
        detector: detector.as_ref(),
    };
    let out = embed_sources(&embedder, &sources, opts)?;
    require_all(&out.skipped)?;
    let d = out.dim;
    let sim = ffem_eval::embedding::cosine(&out.embeddings[..d], &out.embeddings[d..]);
    println!(
        "cosine similarity {sim:.4} (threshold {threshold:.4}): {}",
        if sim >= threshold {
            "same person"
        } else {
            "different people"
        }
    );
    Ok(ExitCode::SUCCESS)
}
