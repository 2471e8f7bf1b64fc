//! `ffem clean`: images of a labelled list that a trained model says are probably mislabelled,
//! and identities that are probably one person (`ffem_eval::clean`); writes a report and the list
//! without the suspects. `--inject-label-noise` flips a known share of labels first and scores the
//! flags against them (precision and recall).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_data::image_list::{ImageList, flip_labels, write_image_list};
use ffem_eval::clean::{CleanOptions, find_label_noise};
use ffem_infer::faces::{EmbedOptions, FaceSource, embed_sources};

use super::{DetectArg, EngineArg, open_model};

/// Arguments of `ffem clean`.
#[derive(Args)]
pub struct CleanArgs {
    /// Model directory.
    model: PathBuf,
    /// The labelled list to check.
    #[arg(long)]
    list: PathBuf,
    /// Folder the list's paths are relative to (default: the list's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where to write the list without the suspects.
    #[arg(long)]
    output: PathBuf,
    /// Where to write the full report (JSON; default: OUTPUT with `.report.json`).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Flag an image whose cosine to its identity's centre is below this.
    #[arg(long, default_value_t = CleanOptions::default().min_own_similarity)]
    min_own_similarity: f32,
    /// Flag an image nearer another identity's centre than its own by more than this.
    #[arg(long, default_value_t = CleanOptions::default().other_margin)]
    other_margin: f32,
    /// Flag two identities whose centres are at least this similar.
    #[arg(long, default_value_t = CleanOptions::default().duplicate_similarity)]
    duplicate_similarity: f32,
    /// Experiment: flip this fraction of labels (to other labels of the list, seeded) before
    /// cleaning, and score the flags against the flipped images.
    #[arg(long, value_name = "FRACTION")]
    inject_label_noise: Option<f64>,
    /// Seed of the injected noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    detect: DetectArg,
}

/// Runs `ffem clean`.
pub fn clean(a: CleanArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let list = ImageList::load(&a.list)?;
    if list.entries.is_empty() {
        bail!("{}: no usable entries", a.list.display());
    }
    let root = a
        .root
        .clone()
        .unwrap_or_else(|| a.list.parent().map(Path::to_path_buf).unwrap_or_default());
    let sources: Vec<FaceSource> = list
        .entries
        .iter()
        .map(|e| FaceSource::list_entry(&root, e))
        .collect();
    let detector = a.detect.load_for(&sources)?;
    let opts = EmbedOptions {
        align: cfg.align,
        flip: true,
        progress: true,
        skip_bad: true,
        detector: detector.as_ref(),
    };
    let out = embed_sources(&embedder, &sources, opts)?;
    for (_, reason) in &out.skipped {
        eprintln!("skipped {reason}");
    }
    let mut labels: Vec<u64> = list.entries.iter().map(|e| e.label).collect();
    let flipped = match a.inject_label_noise {
        Some(f) => flip_labels(&mut labels, f, a.seed),
        None => BTreeSet::new(),
    };
    let kept_labels: Vec<i64> = out.kept.iter().map(|&i| labels[i] as i64).collect();
    let clean_opts = CleanOptions {
        min_own_similarity: a.min_own_similarity,
        other_margin: a.other_margin,
        duplicate_similarity: a.duplicate_similarity,
    };
    let report = find_label_noise(&out.embeddings, &kept_labels, out.dim, clean_opts);
    let suspects: BTreeSet<usize> = report.suspects.iter().map(|s| out.kept[s.row]).collect();
    let cleaned: Vec<ffem_data::ImageEntry> = list
        .entries
        .iter()
        .zip(&labels)
        .enumerate()
        .filter(|(i, _)| !suspects.contains(i))
        .map(|(_, (e, &label))| ffem_data::ImageEntry { label, ..e.clone() })
        .collect();
    write_image_list(&a.output, &cleaned)?;
    let report_path = a
        .report
        .clone()
        .unwrap_or_else(|| a.output.with_extension("report.json"));
    let named: Vec<serde_json::Value> = report
        .suspects
        .iter()
        .map(|s| {
            serde_json::json!({"path": list.entries[out.kept[s.row]].path, "label": s.label,
            "own_similarity": s.own_similarity, "nearest_other": s.nearest_other,
            "other_similarity": s.other_similarity})
        })
        .collect();
    let report_json = serde_json::json!({
        "suspects": named, "duplicate_identities": report.duplicates,
        "injected_label_noise": a.inject_label_noise, "seed": a.seed,
    });
    ffem_data::atomic::write_json(&report_path, &report_json)?;
    println!(
        "{} of {} images flagged as probably mislabelled, {} identity pairs as probably one person; {} entries -> {}, report {}",
        suspects.len(),
        out.kept.len(),
        report.duplicates.len(),
        cleaned.len(),
        a.output.display(),
        report_path.display()
    );
    if !flipped.is_empty() {
        let caught = suspects.intersection(&flipped).count();
        println!(
            "injected noise: {} labels flipped; precision {:.3} ({caught} of {} flags), recall {:.3} ({caught} of {} flipped)",
            flipped.len(),
            caught as f64 / suspects.len().max(1) as f64,
            suspects.len(),
            caught as f64 / flipped.len() as f64,
            flipped.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
