//! The study's report: `report.md` (one table per pair set, the variants not yet run, the
//! settings), `roc.png` (every variant's ROC on the first set) and `curves.png` (training loss).

use std::path::{Path, PathBuf};

use ffem_eval::plot::{Series, line_chart};

use super::score::VariantResult;
use super::study::{AblationConfig, Planned};
use crate::error::TrainError;
use crate::metrics::read_metrics;

/// Writes `report.md`, `roc.png` and `curves.png` from the finished variants.
pub(super) fn write_report(
    cfg_path: &Path,
    cfg: &AblationConfig,
    noise: f64,
    out: &Path,
    planned: &[Planned],
    results: &[VariantResult],
) -> Result<PathBuf, TrainError> {
    let mut md = String::new();
    let manifest = ffem_data::manifest::Manifest::load(&out.join("data").join("records")).ok();
    md.push_str(&format!(
        "# Loss ablation: {}\n\nMade by `ffem ablate --config {}{}`.\n\n",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        cfg_path.display(),
        if noise > 0.0 {
            format!(" --label-noise {noise}")
        } else {
            String::new()
        }
    ));
    let lists: Vec<String> = cfg
        .data
        .lists
        .iter()
        .map(|l| format!("`{}`", l.json))
        .collect();
    md.push_str(&format!(
        "Training data: {}{}; label noise {:.0}% (seed {}). Every variant: the same base recipe, \
         seed and budget; scored with flip TTA, 10-fold protocol.\n\n",
        lists.join(" + "),
        manifest
            .map(|m| format!(" ({} images, {} identities)", m.records, m.identities))
            .unwrap_or_default(),
        noise * 100.0,
        cfg.noise_seed
    ));
    if let Some(Planned { cfg: first, .. }) = planned.first() {
        md.push_str(&format!(
            "Base: {:?} x{} at {} px, {}-d, batch {}, {} epochs{}, {:?} lr {}.\n\n",
            first.backbone,
            first.width,
            first.image_size,
            first.embedding_dim,
            first.batch_size,
            first.epochs,
            if first.max_steps > 0 {
                format!(" (at most {} steps)", first.max_steps)
            } else {
                String::new()
            },
            first.optimizer,
            first.lr
        ));
    }
    let set_names: Vec<String> = results
        .first()
        .map(|r| r.sets.iter().map(|s| s.set.clone()).collect())
        .unwrap_or_default();
    for set in &set_names {
        md.push_str(&format!(
            "## {set}\n\n| variant | loss | accuracy | TAR@FAR=1e-3 | AUC | EER | Recall@1 | train s | img/s | settings |\n|---|---|---|---|---|---|---|---|---|---|\n"
        ));
        for r in results {
            let Some(s) = r.sets.iter().find(|s| &s.set == set) else {
                continue;
            };
            md.push_str(&format!(
                "| {} | {} | {:.2}% ± {:.2} | {} | {:.4} | {:.2}% | {} | {:.0} | {:.0} | {} |\n",
                r.name,
                r.loss,
                s.accuracy * 100.0,
                s.std * 100.0,
                s.tar_at_far_1e3
                    .map(|t| format!("{:.2}%", t * 100.0))
                    .unwrap_or_else(|| "-".into()),
                s.auc,
                s.eer * 100.0,
                match (r.recall_at_1, Some(set) == set_names.first()) {
                    (Some(x), true) => format!("{:.2}%", x * 100.0),
                    _ => "-".into(),
                },
                r.train_seconds,
                r.images_per_sec,
                r.settings.trim().replace('\n', ", ").replace('|', "\\|")
            ));
        }
        md.push('\n');
    }
    let missing: Vec<&str> = planned
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| !results.iter().any(|r| r.name == *n))
        .collect();
    if !missing.is_empty() {
        md.push_str(&format!("Not yet run: {}.\n\n", missing.join(", ")));
    }
    if let Some(set) = set_names.first() {
        let series: Vec<Series> = results
            .iter()
            .filter_map(|r| {
                let s = r.sets.iter().find(|s| &s.set == set)?;
                Some(Series {
                    name: &r.name,
                    points: s.roc.iter().copied().filter(|p| p.0 > 0.0).collect(),
                })
            })
            .collect();
        line_chart(
            &out.join("roc.png"),
            &format!("ROC on {set}"),
            "false accept rate",
            "true accept rate",
            &series,
            true,
        )?;
        md.push_str(&format!("![ROC on {set}](roc.png)\n\n"));
    }
    let mut curves = Vec::new();
    for r in results {
        let path = out.join("variants").join(&r.name).join("metrics.csv");
        let Ok(rows) = read_metrics(&path) else {
            continue;
        };
        // Losses differ in scale: each curve is its loss over its start (the mean of the first
        // window), smoothed over a window of up to 20 steps.
        let window = (rows.len() / 10).clamp(1, 20);
        let first: f64 = rows.iter().take(window).map(|r| r.loss).sum::<f64>() / window as f64;
        let points = rows
            .windows(window)
            .step_by(window.div_ceil(4))
            .map(|w| {
                let mean = w.iter().map(|r| r.loss).sum::<f64>() / w.len() as f64;
                (w[w.len() - 1].step as f64, mean / first)
            })
            .collect();
        curves.push(Series {
            name: &r.name,
            points,
        });
    }
    if curves.iter().any(|c| !c.points.is_empty()) {
        line_chart(
            &out.join("curves.png"),
            "training loss relative to its start (moving mean)",
            "step",
            "loss / initial loss",
            &curves,
            false,
        )?;
        md.push_str("![training curves](curves.png)\n");
    }
    let report = out.join("report.md");
    ffem_data::atomic::write_file(&report, md.as_bytes())?;
    Ok(report)
}
