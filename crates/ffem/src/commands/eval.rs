//! `ffem eval`: a model (or precomputed embeddings) on verification protocols (LFW, CFP, .bin),
//! or identification over a labelled set; saves the first set's threshold with the model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ffem_data::RecordSource;
use ffem_data::image_list::ImageList;
use ffem_eval::embedding;
use ffem_infer::FaceInput;
use ffem_infer::evalset::{PairSet, embed_set, load_faces, set_distances, verify_set};
use ffem_infer::faces::{EmbedOptions, embed_faces};
use ffem_infer::threshold::SavedThreshold;

use super::{DetectArg, EngineArg, open_model};

/// Arguments of `ffem eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (from `ffem train` or `ffem import`); not needed with --embeddings.
    model: Option<PathBuf>,
    /// LFW folder: pairs.txt, image_list.json, lfw-deepfunneled/.
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// CFP folder, frontal-profile protocol.
    #[arg(long)]
    cfp_fp: Option<PathBuf>,
    /// CFP folder, frontal-frontal protocol.
    #[arg(long)]
    cfp_ff: Option<PathBuf>,
    /// insightface .bin verification set (lfw.bin, cfp_fp.bin, agedb_30.bin).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Precomputed embeddings: float32 [2N, D], pair i = rows 2i and 2i+1.
    #[arg(long, requires = "issame")]
    embeddings: Option<PathBuf>,
    /// With --embeddings: one 0/1 or true/false per line.
    #[arg(long)]
    issame: Option<PathBuf>,
    /// Identification instead: leave-one-out nearest neighbour over a labelled set.
    #[arg(long)]
    identify: bool,
    /// With --identify: an image_list.json (with --root) ...
    #[arg(long)]
    list: Option<PathBuf>,
    /// ... and the folder its paths are relative to (default: the list's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// With --identify: a packed dataset instead of a list.
    #[arg(long)]
    records: Option<PathBuf>,
    /// Embed without the mirrored image (flip test-time augmentation is on by default).
    #[arg(long)]
    no_flip: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Draw the ROC curve (log FAR axis) into this PNG.
    #[arg(long)]
    roc: Option<PathBuf>,
    /// Draw the CMC curve into this PNG (with --identify).
    #[arg(long)]
    cmc: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
    /// With --identify: how list entries without a box are found.
    #[command(flatten)]
    detect: DetectArg,
}

fn read_issame(path: &Path) -> Result<Vec<bool>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| match l.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            other => bail!(
                "{}: line {}: `{other}` is not 0/1 or true/false",
                path.display(),
                i + 1
            ),
        })
        .collect()
}

fn draw_roc(path: &Path, dist: &[f32], issame: &[bool]) -> Result<()> {
    let roc = ffem_eval::verification::pooled_roc(dist, issame);
    ffem_eval::plot::line_chart(
        path,
        "ROC",
        "false accept rate",
        "true accept rate",
        &[ffem_eval::plot::Series {
            name: "ROC",
            points: roc,
        }],
        true,
    )?;
    Ok(())
}

/// Runs `ffem eval`.
pub fn eval(a: EvalArgs) -> Result<ExitCode> {
    if a.identify {
        return identify(&a);
    }
    if let Some(e) = &a.embeddings {
        let (data, rows, dim) = ffem_eval::npy::read_f32(e)?;
        let issame = read_issame(a.issame.as_ref().expect("clap requires it"))?;
        if rows != 2 * issame.len() {
            bail!(
                "{}: {rows} rows but {} has {} labels: need exactly two rows per pair",
                e.display(),
                a.issame.as_ref().expect("set").display(),
                issame.len()
            );
        }
        let mean_norm = data
            .chunks_exact(dim)
            .map(|r| embedding::l2_norm(r) as f64)
            .sum::<f64>()
            / rows as f64;
        let (left, right) = embedding::split_interleaved(&data, dim);
        let dist = ffem_eval::pair_distances(&left, &right, dim);
        let report = ffem_eval::evaluate(&dist, &issame, 10, Some(mean_norm));
        if let Some(p) = &a.roc {
            draw_roc(p, &dist, &issame)?;
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table(&e.display().to_string()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut sets = Vec::new();
    if let Some(p) = &a.lfw {
        sets.push(PairSet::lfw(p)?);
    }
    if let Some(p) = &a.cfp_fp {
        sets.push(PairSet::cfp(p, ffem_eval::pairs::CfpProtocol::FP)?);
    }
    if let Some(p) = &a.cfp_ff {
        sets.push(PairSet::cfp(p, ffem_eval::pairs::CfpProtocol::FF)?);
    }
    if let Some(p) = &a.bin {
        sets.push(PairSet::bin(p)?);
    }
    if sets.is_empty() {
        bail!("nothing to evaluate on: pass --lfw DIR, --cfp-fp DIR, --cfp-ff DIR or --bin FILE");
    }
    let (cfg, embedder) = open_any(&a)?;
    let mut reports = Vec::new();
    for set in &sets {
        let emb = embed_set(&embedder, &set.faces, cfg.align, !a.no_flip, true)?;
        let report = verify_set(set, &emb);
        if let Some(p) = &a.roc {
            let dist = set_distances(set, &emb);
            let issame: Vec<bool> = set.pairs.iter().map(|p| p.2).collect();
            let path = if sets.len() > 1 {
                p.with_file_name(format!(
                    "{}_{}",
                    set.name,
                    p.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ))
            } else {
                p.clone()
            };
            draw_roc(&path, &dist, &issame)?;
        }
        reports.push((set.name.clone(), report));
    }
    // The threshold of the first set is what `ffem verify` uses from now on.
    let (name, first) = &reports[0];
    let model_dir = a.model.as_ref().expect("open_any required it");
    save_threshold(model_dir, name, first, !a.no_flip)?;
    if a.json {
        let map: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|(n, r)| (n.clone(), serde_json::to_value(r).expect("serialises")))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&if map.len() == 1 {
                map.into_iter().next().expect("one").1
            } else {
                serde_json::Value::Object(map)
            })?
        );
    } else {
        for (n, r) in &reports {
            print!("{}", r.table(n));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The model directory (an ffem model or an imported one).
fn open_any(a: &EvalArgs) -> Result<(ffem_model::ModelConfig, ffem_infer::Embedder)> {
    match &a.model {
        Some(dir) => open_model(dir, &a.engine),
        None => bail!("give a MODEL directory, or --embeddings E.npy --issame F"),
    }
}

/// Saves `report`'s threshold as the one `ffem verify` and `ffem serve` decide with, and says
/// where (on stderr, so that `--json` output stays one document).
pub fn save_threshold(
    model_dir: &Path,
    set: &str,
    report: &ffem_eval::VerificationReport,
    flip: bool,
) -> Result<()> {
    SavedThreshold {
        set: set.to_string(),
        threshold_cosine: report.threshold_cosine as f32,
        threshold_squared_l2: report.threshold_mean as f32,
        accuracy: Some(report.accuracy),
        flip,
    }
    .save(model_dir)?;
    eprintln!(
        "saved threshold {:.4} (cosine) to {}",
        report.threshold_cosine,
        ffem_infer::threshold::path_in(model_dir).display()
    );
    Ok(())
}

fn identify(a: &EvalArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_any(a)?;
    let (faces, labels): (Vec<FaceInput>, Vec<i64>) = if let Some(list_path) = &a.list {
        let root = a.root.clone().unwrap_or_else(|| {
            list_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        });
        let list = ImageList::load(list_path)?;
        let paths: Vec<String> = list.entries.iter().map(|e| e.path.clone()).collect();
        (
            load_faces(&root, Some(&list), &paths)?,
            list.entries.iter().map(|e| e.label as i64).collect(),
        )
    } else if let Some(r) = &a.records {
        let src = RecordSource::open(r)?;
        let mut faces = Vec::new();
        let mut labels = Vec::new();
        for rec in src.records(false) {
            let rec = rec?;
            labels.push(rec.label);
            faces.push(FaceInput {
                bytes: rec.jpeg,
                face_box: Some(rec.face_box.map(|v| v as f32)),
                landmarks: rec.landmarks,
                name: rec.path.unwrap_or_default(),
            });
        }
        (faces, labels)
    } else {
        bail!("--identify needs --list image_list.json (with --root) or --records DIR");
    };
    let detector = a
        .detect
        .load_if(faces.iter().any(|f| f.face_box.is_none()))?;
    let opts = EmbedOptions {
        align: cfg.align,
        flip: !a.no_flip,
        progress: true,
        skip_bad: false,
        detector: detector.as_ref(),
    };
    let emb = embed_faces(&embedder, &faces, |f| Ok(f.clone()), opts)?;
    let report = ffem_eval::identify(&emb.embeddings, &labels, emb.dim, 50);
    if let Some(p) = &a.cmc {
        let pts: Vec<(f64, f64)> = report
            .cmc
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect();
        ffem_eval::plot::line_chart(
            p,
            "CMC",
            "rank",
            "identification rate",
            &[ffem_eval::plot::Series {
                name: "CMC",
                points: pts,
            }],
            false,
        )?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "identification: {} queries against {} images",
            report.queries, report.gallery
        );
        println!(
            "  Recall@1   {:.4}\n  Recall@5   {:.4}\n  Recall@10  {:.4}",
            report.recall_at_1, report.recall_at_5, report.recall_at_10
        );
    }
    Ok(ExitCode::SUCCESS)
}
