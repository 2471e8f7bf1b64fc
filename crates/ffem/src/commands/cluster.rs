//! `ffem cluster`: unlabelled faces grouped into people. Photos (every face of each, detected),
//! folders or lists are embedded with a model directory, or embeddings come from `ffem embed`;
//! the groups are written as the seed's `image_list.json` (one label per person, for `ffem
//! pack`), with a report and a contact sheet to review them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::builder::TypedValueParser;
use ffem_data::image_list::{FaceBox, ImageEntry, write_image_list};
use ffem_eval::cluster::{Algorithm, ClusterParams, bcubed_scores, cluster, pairwise_scores};
use ffem_infer::faces::{EmbedOptions, FaceSource, embed_sources, expand_all_faces, gather};
use rayon::prelude::*;

use super::{DetectArg, EngineArg, open_model};

/// Arguments of `ffem cluster`.
#[derive(Args)]
pub struct ClusterArgs {
    /// Model directory (from `ffem train` or `ffem import`); left out with --embeddings.
    model: Option<PathBuf>,
    /// Photos, folders (searched recursively) or image_list.json files.
    inputs: Vec<PathBuf>,
    /// Cluster these embeddings (`ffem embed` output, its .csv index beside it) instead.
    #[arg(long, value_name = "NPY", conflicts_with = "model")]
    embeddings: Option<PathBuf>,
    /// The people found, as an image_list.json (one label per person; unassigned faces left
    /// out). A report (OUTPUT with .report.json) and a contact sheet (.sheet.png) go beside it.
    #[arg(long, short)]
    output: PathBuf,
    /// Grouping: chinese-whispers (dlib's) or density (DBSCAN's core-point rule, Immich's).
    #[arg(
        long,
        default_value = "chinese-whispers",
        value_parser = clap::builder::PossibleValuesParser::new(Algorithm::NAMES)
            .map(|name| name.parse::<Algorithm>().expect("a listed name parses"))
    )]
    algorithm: Algorithm,
    /// Faces are linked when their cosine similarity is at least this. Default: a quarter of
    /// the way from the model's saved verification threshold to 1 (a pair decision may err
    /// once in a while; a grouping chains its errors, so it links more strictly: for SFace,
    /// 0.363 -> 0.52, where LFW's BCubed F1 peaks). Required with --embeddings.
    #[arg(long)]
    threshold: Option<f32>,
    /// Most links per face (its most similar faces).
    #[arg(long, default_value_t = 30)]
    neighbours: usize,
    /// Density: links a face needs to be a core.
    #[arg(long, default_value_t = 3)]
    min_samples: usize,
    /// Smallest group reported as a person.
    #[arg(long, default_value_t = 2)]
    min_size: usize,
    /// Seed of Chinese whispers' visiting order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// From this many faces on, links come from an HNSW graph instead of comparing every pair
    /// (on 2 cores the exact search is faster below about 200,000 512-d faces).
    #[arg(long, default_value_t = 200_000)]
    approximate_above: usize,
    /// Folder the paths of an image_list.json are relative to (default: the JSON's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Score the grouping against the labels the inputs carry (a labelled list or folders of
    /// identities): pairwise and BCubed precision, recall and F1.
    #[arg(long)]
    score: bool,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    detect: DetectArg,
}

/// The report written beside the people list.
#[derive(serde::Serialize)]
struct Report {
    faces: usize,
    people: usize,
    unassigned: usize,
    largest: Vec<usize>,
    algorithm: String,
    params: ClusterParams,
    seconds_clustering: f64,
    skipped_photos: Vec<String>,
    pairwise: Option<ffem_eval::cluster::Scores>,
    bcubed: Option<ffem_eval::cluster::Scores>,
}

/// Runs `ffem cluster`.
pub fn cluster_faces(a: ClusterArgs) -> Result<ExitCode> {
    let (embeddings, dim, faces, threshold, skipped) = match &a.embeddings {
        Some(npy) => {
            let (data, rows, dim) = ffem_eval::npy::read_f32(npy)?;
            let index = ffem_eval::gallery::read_index(&ffem_eval::gallery::index_path(npy))?;
            if index.len() != rows {
                bail!(
                    "{}: {rows} rows but its index has {} entries: write both with one `ffem embed`",
                    npy.display(),
                    index.len()
                );
            }
            let threshold = a.threshold.context(
                "--embeddings needs --threshold (cosine similarity; a model's saved threshold is in its threshold.json)",
            )?;
            let faces: Vec<FaceSource> = index
                .iter()
                .map(|e| FaceSource {
                    label: e.label.clone(),
                    ..FaceSource::file(Path::new(&e.name))
                })
                .collect();
            (data, dim, faces, threshold, Vec::new())
        }
        None => embed_inputs(&a)?,
    };
    if faces.is_empty() {
        bail!("no faces to cluster");
    }
    let mut data = embeddings;
    ffem_eval::embedding::normalize_rows(&mut data, dim);
    let params = ClusterParams {
        threshold,
        neighbours: a.neighbours,
        min_samples: a.min_samples,
        min_size: a.min_size,
        seed: a.seed,
        approximate_above: a.approximate_above,
        ..ClusterParams::default()
    };
    let started = std::time::Instant::now();
    let groups = cluster(&data, dim, a.algorithm, &params);
    let seconds = started.elapsed().as_secs_f64();
    let people = groups.iter().flatten().max().map_or(0, |m| m + 1);
    let mut sizes = vec![0usize; people];
    for g in groups.iter().flatten() {
        sizes[*g] += 1;
    }
    let unassigned = groups.iter().filter(|g| g.is_none()).count();
    let (pairwise, bcubed) = if a.score {
        let truth = label_ids(&faces)?;
        (
            Some(pairwise_scores(&groups, &truth)),
            Some(bcubed_scores(&groups, &truth)),
        )
    } else {
        (None, None)
    };
    // The people list: entries in face order, labels 0.. by size.
    let entries: Vec<ImageEntry> = faces
        .iter()
        .zip(&groups)
        .filter_map(|(f, g)| {
            g.map(|label| ImageEntry {
                path: f.name.clone(),
                label: label as u64,
                face_box: f.face_box.map(|b| FaceBox {
                    x1: b[0],
                    y1: b[1],
                    x2: b[2],
                    y2: b[3],
                }),
                landmarks: f.landmarks,
            })
        })
        .collect();
    write_image_list(&a.output, &entries)?;
    let report = Report {
        faces: faces.len(),
        people,
        unassigned,
        largest: sizes.iter().take(20).copied().collect(),
        algorithm: format!("{:?}", a.algorithm),
        params,
        seconds_clustering: seconds,
        skipped_photos: skipped,
        pairwise,
        bcubed,
    };
    let report_path = a.output.with_extension("report.json");
    ffem_data::atomic::write_json(&report_path, &report)?;
    let sheet = a.output.with_extension("sheet.png");
    if a.embeddings.is_none() {
        contact_sheet(&sheet, &faces, &groups, people.min(20), 10)?;
    }
    println!(
        "{} faces -> {people} people (largest {:?}), {unassigned} unassigned; clustering took {seconds:.2} s -> {} (report {}{})",
        faces.len(),
        &report.largest[..report.largest.len().min(5)],
        a.output.display(),
        report_path.display(),
        if a.embeddings.is_none() {
            format!(", sheet {}", sheet.display())
        } else {
            String::new()
        }
    );
    if let (Some(p), Some(b)) = (pairwise, bcubed) {
        println!(
            "against the inputs' labels: pairwise P {:.4} R {:.4} F1 {:.4}; BCubed P {:.4} R {:.4} F1 {:.4}",
            p.precision, p.recall, p.f1, b.precision, b.recall, b.f1
        );
    }
    Ok(ExitCode::SUCCESS)
}

type Embedded = (Vec<f32>, usize, Vec<FaceSource>, f32, Vec<String>);

/// Embeds every face of the inputs (photos without a box: each face the detector finds).
fn embed_inputs(a: &ClusterArgs) -> Result<Embedded> {
    let Some(model) = &a.model else {
        bail!("give a MODEL directory and the photos, or --embeddings E.npy");
    };
    if a.inputs.is_empty() {
        bail!("no inputs: give photos, folders or image_list.json files to cluster");
    }
    let (cfg, embedder) = open_model(model, &a.engine)?;
    let threshold = match a.threshold {
        Some(t) => t,
        None => ffem_infer::threshold::SavedThreshold::load(model)?
            .map(|t| t.threshold_cosine + 0.25 * (1.0 - t.threshold_cosine))
            .with_context(|| {
                format!(
                    "{}: no saved threshold; pass --threshold or run `ffem eval {} --lfw DIR` first",
                    model.display(),
                    model.display()
                )
            })?,
    };
    let sources = gather(&a.inputs, a.root.as_deref())?;
    if sources.is_empty() {
        bail!(
            "no images found in the inputs (looked for {})",
            ffem_data::walk::IMAGE_EXTENSIONS.join(", ")
        );
    }
    let detector = a.detect.load_for(&sources)?;
    let (faces, mut skipped) = match &detector {
        Some(d) => {
            let (faces, skipped) = expand_all_faces(d, &sources);
            let named: Vec<String> = skipped
                .into_iter()
                .map(|(i, reason)| format!("{}: {reason}", sources[i].name))
                .collect();
            (faces, named)
        }
        None => (sources, Vec::new()),
    };
    if faces.is_empty() {
        bail!(
            "no faces found in the {} photos (first: {})",
            skipped.len(),
            skipped.first().map_or("", String::as_str)
        );
    }
    let opts = EmbedOptions {
        align: cfg.align,
        flip: true,
        progress: true,
        skip_bad: true,
        detector: None,
    };
    let out = embed_sources(&embedder, &faces, opts)?;
    skipped.extend(out.skipped.iter().map(|(_, r)| r.clone()));
    let kept: Vec<FaceSource> = out.kept.iter().map(|&i| faces[i].clone()).collect();
    for s in skipped.iter().take(10) {
        eprintln!("skipped {s}");
    }
    Ok((out.embeddings, out.dim, kept, threshold, skipped))
}

/// The faces' labels as dense ids; every face needs one.
fn label_ids(faces: &[FaceSource]) -> Result<Vec<usize>> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    faces
        .iter()
        .map(|f| &f.label)
        .enumerate()
        .map(|(i, l)| {
            if l.is_empty() {
                bail!(
                    "--score: face {i} has no label (score labelled lists or folders of identities)"
                );
            }
            let next = ids.len();
            Ok(*ids.entry(l.as_str()).or_insert(next))
        })
        .collect()
}

/// A PNG with one row per person (the `rows` largest), up to `per_row` of their faces, 64 px each.
fn contact_sheet(
    path: &Path,
    faces: &[FaceSource],
    groups: &[Option<usize>],
    rows: usize,
    per_row: usize,
) -> Result<()> {
    const CELL: u32 = 64;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); rows];
    for (i, g) in groups.iter().enumerate() {
        if let Some(g) = g
            && *g < rows
            && members[*g].len() < per_row
        {
            members[*g].push(i);
        }
    }
    let cells: Vec<(usize, usize, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(r, m)| m.iter().enumerate().map(move |(c, &i)| (r, c, i)))
        .collect();
    let thumbs: Vec<Option<(usize, usize, image::RgbImage)>> = cells
        .par_iter()
        .map(|&(r, c, i)| {
            let f = &faces[i];
            let bytes = std::fs::read(&f.path).ok()?;
            let img = ffem_data::imageops::decode_rgb(&bytes).ok()?;
            let b = f
                .face_box
                .unwrap_or([0.0, 0.0, img.width() as f32, img.height() as f32]);
            let mut hwc = vec![0f32; (CELL * CELL * 3) as usize];
            ffem_data::imageops::crop_resize(&img, b, CELL as usize, &mut hwc);
            let thumb = image::RgbImage::from_fn(CELL, CELL, |x, y| {
                let o = ((y * CELL + x) * 3) as usize;
                image::Rgb([hwc[o] as u8, hwc[o + 1] as u8, hwc[o + 2] as u8])
            });
            Some((r, c, thumb))
        })
        .collect();
    let widest = members.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut sheet = image::RgbImage::from_pixel(
        CELL * widest as u32,
        CELL * rows.max(1) as u32,
        image::Rgb([255, 255, 255]),
    );
    for (r, c, thumb) in thumbs.into_iter().flatten() {
        image::imageops::replace(
            &mut sheet,
            &thumb,
            (c as u32 * CELL) as i64,
            (r as u32 * CELL) as i64,
        );
    }
    let mut png = std::io::Cursor::new(Vec::new());
    sheet
        .write_to(&mut png, image::ImageFormat::Png)
        .context("encoding the contact sheet")?;
    ffem_data::atomic::write_file(path, &png.into_inner())?;
    Ok(())
}
