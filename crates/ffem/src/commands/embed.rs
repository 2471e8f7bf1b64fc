//! `ffem embed`: images, folders or image lists into an NPY of unit embeddings plus the CSV index
//! `ffem search` reads (`ffem_eval::gallery`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_eval::gallery;
use ffem_infer::faces::{EmbedOptions, embed_sources, gather};
use rayon::prelude::*;

use super::{DetectArg, EngineArg, open_model};

/// Arguments of `ffem embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model directory (from `ffem train` or `ffem import`).
    model: PathBuf,
    /// Images, folders (searched recursively) or image_list.json files.
    inputs: Vec<PathBuf>,
    /// Output .npy (a .csv index is written beside it).
    #[arg(long, short)]
    output: PathBuf,
    /// Folder the paths of an image_list.json are relative to (default: the JSON's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Without flip test-time augmentation.
    #[arg(long)]
    no_flip: bool,
    /// Fail if any image cannot be embedded (default: skip, count, report).
    #[arg(long)]
    strict: bool,
    /// Also save the network inputs (preprocessed crops, [N, 3*S*S] float32) to this .npy, to
    /// check an exported model in another runtime on exactly the same inputs.
    #[arg(long, value_name = "NPY")]
    save_crops: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    detect: DetectArg,
    /// Every face of each photo without a box, one row each (`path#0` the largest, `path#1`, ...)
    /// instead of only the largest.
    #[arg(long, conflicts_with = "no_detect")]
    all_faces: bool,
}

/// Runs `ffem embed`.
pub fn embed(a: EmbedArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    if a.inputs.is_empty() {
        bail!("no inputs: give images, folders or image_list.json files to embed");
    }
    let mut sources = gather(&a.inputs, a.root.as_deref())?;
    if sources.is_empty() {
        bail!(
            "no images found in the inputs (looked for {})",
            ffem_data::walk::IMAGE_EXTENSIONS.join(", ")
        );
    }
    let photos = sources.len();
    let detector = a.detect.load_for(&sources)?;
    let started = std::time::Instant::now();
    let mut no_face = Vec::new();
    if a.all_faces
        && let Some(d) = &detector
    {
        let (faces, skipped) = ffem_infer::faces::expand_all_faces(d, &sources);
        no_face = skipped
            .into_iter()
            .map(|(i, reason)| (sources[i].name.clone(), reason))
            .collect();
        sources = faces;
    }
    let opts = EmbedOptions {
        align: cfg.align,
        flip: !a.no_flip,
        progress: true,
        skip_bad: true,
        detector: detector.as_ref(),
    };
    let out = embed_sources(&embedder, &sources, opts)?;
    let seconds = started.elapsed().as_secs_f64();
    for (_, reason) in &out.skipped {
        eprintln!("skipped {reason}");
    }
    for (_, reason) in &no_face {
        eprintln!("skipped {reason}");
    }
    let skipped = out.skipped.len() + no_face.len();
    if a.strict && skipped > 0 {
        bail!("--strict: {skipped} of {photos} images could not be embedded; nothing written");
    }
    let entries = out.gallery_entries(&sources);
    gallery::write(&a.output, &out.embeddings, out.dim, &entries)?;
    if let Some(path) = &a.save_crops {
        let size = cfg.image_size;
        let crops: Vec<f32> = out
            .kept
            .par_iter()
            .map(|&i| {
                // The same face the embedding used: detection is deterministic.
                let mut face = sources[i].read()?;
                let (image, _) =
                    ffem_infer::faces::prepare_face(&mut face, detector.as_ref(), size, cfg.align)?;
                Ok(image)
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        ffem_eval::npy::write_f32(path, &crops, out.kept.len(), 3 * size * size)?;
    }
    let what = if a.all_faces {
        format!("{} faces of {photos} images", out.kept.len())
    } else {
        format!("{} of {photos} images", out.kept.len())
    };
    println!(
        "embedded {what} ({skipped} skipped) -> {} [{} x {}], index {}; read, decode, crop and embed took {seconds:.2} s ({:.1} images/s)",
        a.output.display(),
        out.kept.len(),
        out.dim,
        gallery::index_path(&a.output).display(),
        photos as f64 / seconds
    );
    Ok(ExitCode::SUCCESS)
}
