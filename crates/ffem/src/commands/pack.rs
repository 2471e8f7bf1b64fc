//! `ffem pack`: an image_list.json (or an insightface .rec pack) into TFRecord shards.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ffem_data::PackOptions;
use ffem_data::image_list::{ImageList, merge_lists, write_image_list};

use super::print_skipped;

/// Arguments of `ffem pack`.
#[derive(Args)]
pub struct PackArgs {
    /// Folder the JSON's image paths are relative to (one per --json, in the same order).
    #[arg(long, alias = "root_path", required_unless_present = "from_rec")]
    root: Vec<PathBuf>,
    /// The dataset list: {"rel/path.jpg": {"label": 0, "x1": .., "y1": .., "x2": .., "y2": ..}}.
    /// Repeat it (each with its --root) to pack several lists as one dataset: each list's labels
    /// are offset past the previous lists' (CFP's 0 and CelebA's 0 stay two identities), and the
    /// merged list is written beside the output as OUTPUT.image_list.json (the list to embed a
    /// distillation teacher from).
    #[arg(long, alias = "json_file", required_unless_present = "from_rec")]
    json: Vec<PathBuf>,
    /// Convert an insightface / MXNet RecordIO pack instead (DIR with train.rec + train.idx).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["root", "json", "crop", "align"])]
    from_rec: Option<PathBuf>,
    /// Output directory (shards + manifest.json).
    #[arg(long)]
    output: PathBuf,
    /// Start a new shard after this many bytes (suffixes K, M, G).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    shard_size: u64,
    /// Store the face box grown by this margin per side (e.g. 0.3) as a new JPEG instead of the photo.
    #[arg(long, value_name = "MARGIN")]
    crop: Option<f32>,
    /// Store faces with landmarks as 112x112 crops aligned to the ArcFace template (5-point
    /// similarity); faces without landmarks are stored as without this flag (or as --crop says).
    #[arg(long)]
    align: bool,
    /// JPEG quality of re-encoded crops.
    #[arg(long, default_value_t = 95)]
    quality: u8,
    /// Fail, writing nothing, if any entry is bad (default: skip, count and report).
    #[arg(long)]
    strict: bool,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<f64>()
        .map(|v| (v * mult as f64) as u64)
        .map_err(|_| format!("`{s}` is not a size like 512M or 1G"))
}

/// Runs `ffem pack`.
pub fn pack(a: PackArgs) -> Result<ExitCode> {
    if a.root.len() != a.json.len() {
        bail!(
            "{} --json but {} --root: give each list its root, in the same order",
            a.json.len(),
            a.root.len()
        );
    }
    let (root, json) = if a.json.len() > 1 {
        let mut lists = Vec::new();
        let mut rejected = 0;
        for (root, json) in a.root.iter().zip(&a.json) {
            let list = ImageList::load(json)?;
            for r in &list.rejected {
                eprintln!("{}: skipping {}: {}", json.display(), r.key, r.reason);
            }
            if a.strict && !list.rejected.is_empty() {
                bail!(
                    "--strict: {} entries of {} are invalid (listed above); nothing written",
                    list.rejected.len(),
                    json.display()
                );
            }
            rejected += list.rejected.len();
            // Canonical, so the merged keys do not depend on the directory ffem ran from.
            let root = std::fs::canonicalize(root)
                .with_context(|| format!("--root {}: not a readable folder", root.display()))?;
            lists.push((root, list.entries));
        }
        let merged = merge_lists(lists);
        let name = a
            .output
            .file_name()
            .context("--output needs a folder name")?
            .to_string_lossy()
            .into_owned();
        let merged_path = a.output.with_file_name(format!("{name}.image_list.json"));
        write_image_list(&merged_path, &merged)?;
        println!(
            "merged {} lists: {} entries ({rejected} invalid skipped) of {} labels -> {}",
            a.json.len(),
            merged.len(),
            merged.iter().map(|e| e.label + 1).max().unwrap_or(0),
            merged_path.display()
        );
        (PathBuf::from("/"), merged_path)
    } else {
        (
            a.root.first().cloned().unwrap_or_default(),
            a.json.first().cloned().unwrap_or_default(),
        )
    };
    let mut opts = PackOptions::new(root, json, &a.output);
    opts.shard_bytes = a.shard_size.max(1);
    opts.crop_margin = a.crop;
    opts.align = a.align;
    opts.jpeg_quality = a.quality;
    opts.strict = a.strict;
    opts.overwrite = a.overwrite;
    opts.progress = true;
    let r = match &a.from_rec {
        Some(rec) => ffem_data::pack_from_rec(rec, &opts)?,
        None => ffem_data::pack(&opts)?,
    };
    let m = &r.manifest;
    let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
    println!(
        "packed {} of {} entries ({} identities) into {} shard(s), {:.1} MiB, in {:.1} s ({:.0} images/s) -> {}",
        m.records,
        r.entries_in_list,
        m.identities,
        m.shards.len(),
        bytes as f64 / (1 << 20) as f64,
        r.seconds,
        m.records as f64 / r.seconds.max(1e-9),
        a.output.display()
    );
    if let Some(n) = m.aligned {
        println!(
            "{n} of {} records aligned to the 112x112 ArcFace template; {} had no landmarks",
            m.records,
            m.records - n
        );
    }
    if !m.skipped.is_empty() {
        print_skipped(
            &m.skipped,
            "entries",
            &a.output.join(ffem_data::manifest::MANIFEST_NAME),
        );
    }
    Ok(ExitCode::SUCCESS)
}
