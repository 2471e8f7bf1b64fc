//! `ffem detect`: MTCNN over a folder of identity folders into an image_list.json.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_data::image_list::ImageList;

use super::print_skipped;

/// Arguments of `ffem detect`.
#[derive(Args)]
pub struct DetectArgs {
    /// Folder of identity folders: ROOT/<identity>/<image>.jpg (labels = sorted folder names).
    #[arg(long, alias = "root_path")]
    root: PathBuf,
    /// Where to write the image_list.json (boxes + 5 landmarks); skips go beside it.
    #[arg(long)]
    output: PathBuf,
    /// Every face of an image, keys `path#0` (nearest the centre), `path#1`, ... instead of only the
    /// face nearest the centre.
    #[arg(long)]
    all_faces: bool,
    /// Directory holding pnet.onnx, rnet.onnx, onet.onnx (default: the cache scripts/fetch-mtcnn.sh fills).
    #[arg(long, value_name = "DIR")]
    weights: Option<PathBuf>,
    /// Smallest face side to look for, in pixels.
    #[arg(long, default_value_t = 20.0)]
    min_face: f64,
    /// Compare the result with another image_list.json (mean box IoU, landmark error in pixels).
    #[arg(long, value_name = "JSON")]
    compare: Option<PathBuf>,
    /// Fail, writing nothing, if any image is skipped (unreadable, no face, outside an identity folder).
    #[arg(long)]
    strict: bool,
}

/// Runs `ffem detect`.
pub fn detect(a: DetectArgs) -> Result<ExitCode> {
    if a.min_face < 12.0 {
        bail!(
            "--min-face {} is below MTCNN's 12-pixel window; use 12 or more",
            a.min_face
        );
    }
    let dir = a
        .weights
        .clone()
        .unwrap_or_else(ffem_detect::default_weights_dir);
    let mut detector = ffem_detect::Mtcnn::load(&dir)?;
    detector.params.min_face = a.min_face;
    let opts = ffem_detect::DetectOptions {
        root: a.root.clone(),
        output: a.output.clone(),
        all_faces: a.all_faces,
        strict: a.strict,
        progress: true,
    };
    let r = ffem_detect::detect_folder(&detector, &opts)?;
    println!(
        "{} images -> {} entries ({} identities) in {:.1} s ({:.1} images/s) -> {}",
        r.images,
        r.entries,
        r.identities,
        r.seconds,
        r.images as f64 / r.seconds.max(1e-9),
        a.output.display()
    );
    if r.other_files > 0 {
        println!(
            "{} files that are not .jpg/.jpeg/.png were left alone",
            r.other_files
        );
    }
    if let Some(f) = &r.skipped_file {
        print_skipped(&r.skipped, "images", f);
    }
    if let Some(reference) = &a.compare {
        let mine = ImageList::load(&a.output)?;
        let other = ImageList::load(reference)?;
        println!(
            "vs {}: {}",
            reference.display(),
            ffem_detect::compare_lists(&mine, &other)
        );
    }
    Ok(ExitCode::SUCCESS)
}
