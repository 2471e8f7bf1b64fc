//! `ffem search`: the gallery faces most similar to a query face.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_eval::gallery::Gallery;
use ffem_infer::faces::{EmbedOptions, FaceSource, embed_sources, gather};

use super::verify::list_entries;
use super::{DetectArg, EngineArg, open_model, require_all};

/// Arguments of `ffem search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Model directory.
    model: PathBuf,
    /// Gallery: a folder of images, or an .npy written by `ffem embed` (with its .csv beside it).
    #[arg(long)]
    gallery: PathBuf,
    /// Query image.
    #[arg(long)]
    query: PathBuf,
    /// Number of results.
    #[arg(short, default_value_t = 5)]
    k: usize,
    /// An image_list.json with boxes for the query (matched by path suffix).
    #[arg(long)]
    list: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    detect: DetectArg,
}

/// Runs `ffem search`.
pub fn search(a: SearchArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let list = list_entries(a.list.as_deref())?;
    let query_source = [FaceSource::file_in_list(&a.query, &list)];
    let gallery_sources = if a.gallery.extension().is_some_and(|e| e == "npy") {
        vec![]
    } else {
        gather(std::slice::from_ref(&a.gallery), None)?
    };
    let detector = a
        .detect
        .load_for(&[&query_source[..], &gallery_sources[..]].concat())?;
    let opts = EmbedOptions {
        align: cfg.align,
        flip: true,
        progress: false,
        skip_bad: true,
        detector: detector.as_ref(),
    };
    let gallery = if gallery_sources.is_empty() {
        let g = Gallery::load(&a.gallery)?;
        if g.dim != embedder.dim() {
            bail!(
                "{}: embeddings are {}-d but the model makes {}-d ones: embed the gallery with this model",
                a.gallery.display(),
                g.dim,
                embedder.dim()
            );
        }
        g
    } else {
        let out = embed_sources(&embedder, &gallery_sources, opts)?;
        for (_, reason) in &out.skipped {
            eprintln!("skipped {reason}");
        }
        let entries = out.gallery_entries(&gallery_sources);
        Gallery::new(out.embeddings, out.dim, entries)
    };
    let query = embed_sources(&embedder, &query_source, opts)?;
    require_all(&query.skipped)?;
    for (rank, hit) in gallery.search(&query.embeddings, a.k).iter().enumerate() {
        println!(
            "{:>3}  {:.4}  {}",
            rank + 1,
            hit.score,
            gallery.entries[hit.row].name
        );
    }
    Ok(ExitCode::SUCCESS)
}
