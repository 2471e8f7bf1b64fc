//! One function per subcommand; argument structs carry the `--help` text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ffem_data::image_list::ImageList;
use ffem_data::{PackOptions, RecordSource};
use ffem_model::embed::{Embedder, FaceInput, cosine, normalize_rows};
use ffem_model::evalset::{PairSet, embed_set, verify_set};
use ffem_model::train::device_for;
use ffem_model::{TrainConfig, load_model};
use rayon::prelude::*;

// ---------------------------------------------------------------- pack / inspect

/// Arguments of `ffem pack`.
#[derive(Args)]
pub struct PackArgs {
    /// Folder the JSON's image paths are relative to.
    #[arg(long, alias = "root_path", required_unless_present = "from_rec")]
    root: Option<PathBuf>,
    /// The dataset list: {"rel/path.jpg": {"label": 0, "x1": .., "y1": .., "x2": .., "y2": ..}}.
    #[arg(long, alias = "json_file", required_unless_present = "from_rec")]
    json: Option<PathBuf>,
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
    let mut opts = PackOptions::new(
        a.root.clone().unwrap_or_default(),
        a.json.clone().unwrap_or_default(),
        &a.output,
    );
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

/// Prints how many were skipped, where all of them are listed, and the first ten with reasons.
fn print_skipped(skipped: &[ffem_data::Rejected], what: &str, listed_in: &Path) {
    println!(
        "skipped {} {what} (all listed in {}):",
        skipped.len(),
        listed_in.display()
    );
    for s in skipped.iter().take(10) {
        println!("  {}: {}", s.key, s.reason);
    }
    if skipped.len() > 10 {
        println!("  ... and {} more", skipped.len() - 10);
    }
}

/// Arguments of `ffem inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A packed dataset directory, a directory of .tfrecord files, or one TFRecord file.
    path: PathBuf,
    /// Skip damaged records (counted) instead of stopping at the first.
    #[arg(long)]
    skip_corrupt: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `ffem inspect`.
pub fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let src = RecordSource::open(&a.path)?;
    let s = ffem_data::inspect(&src, a.skip_corrupt)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", a.path.display());
    println!("  records              {}", s.records);
    println!(
        "  identities           {} (labels 0..{})",
        s.identities, s.label_range
    );
    println!(
        "  images per identity  min {}, median {}, max {}",
        s.min_per_identity, s.median_per_identity, s.max_per_identity
    );
    println!("  with landmarks       {}", s.with_landmarks);
    println!(
        "  shards               {} ({:.1} MiB)",
        s.shards,
        s.bytes as f64 / (1 << 20) as f64
    );
    if a.skip_corrupt {
        println!("  corrupt, skipped     {}", s.corrupt_skipped);
    }
    println!("  skipped when packed  {}", s.pack_skipped.len());
    for k in s.pack_skipped.iter().take(10) {
        println!("    {}: {}", k.key, k.reason);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- detect

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

// ---------------------------------------------------------------- train / demo

/// Arguments of `ffem train`.
#[derive(Args)]
pub struct TrainArgs {
    /// TOML configuration (see configs/); without one, the defaults plus --set apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a configuration key, e.g. --set lr=0.01 --set batch_size=128 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where checkpoints, metrics.csv, curves and the model go.
    #[arg(long, default_value = "runs/train")]
    run_dir: PathBuf,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "init"])]
    resume: Option<PathBuf>,
    /// Initialise the backbone (and a matching head) from a model directory, e.g. step 1's.
    #[arg(long, value_name = "MODEL_DIR")]
    init: Option<PathBuf>,
    /// Seed (same as --set seed=N).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs `ffem train`.
pub fn train(a: TrainArgs) -> Result<ExitCode> {
    if a.config.is_none() && a.overrides.is_empty() && a.resume.is_none() && a.init.is_none() {
        return demo(DemoArgs::default_with_dir(PathBuf::from("runs/demo")));
    }
    let mut overrides = a.overrides.clone();
    if let Some(s) = a.seed {
        overrides.push(format!("seed={s}"));
    }
    let (cfg, run_dir, resume) = match &a.resume {
        Some(dir) => (
            TrainConfig::load(Some(&dir.join("config.toml")), &overrides)?,
            dir.clone(),
            true,
        ),
        None => (
            TrainConfig::load(a.config.as_deref(), &overrides)?,
            a.run_dir.clone(),
            false,
        ),
    };
    if cfg.train_data.is_empty() {
        bail!(
            "train_data is not set: pass --config with train_data = \"DIR\" or --set train_data=DIR (a directory made by `ffem pack`)"
        );
    }
    if !resume && run_dir.join("checkpoint").exists() {
        bail!(
            "{} already holds a run: pass --resume {} to continue it, or choose another --run-dir",
            run_dir.display(),
            run_dir.display()
        );
    }
    let opts = ffem_model::TrainOptions {
        progress: true,
        init: a.init.clone(),
        ..Default::default()
    };
    let s = ffem_model::train(&cfg, &run_dir, resume, &opts)?;
    println!(
        "trained {} steps ({:.1} images/s), last loss {:.4}, {} non-finite steps skipped",
        s.steps, s.images_per_sec, s.last_loss, s.skipped_nonfinite
    );
    if let Some(v) = &s.verification {
        print!("{}", v.table(&cfg.val_set));
    }
    println!("model: {}", s.model_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `ffem demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Working directory.
    #[arg(long, default_value = "runs/demo")]
    dir: PathBuf,
    /// Identities to train on.
    #[arg(long, default_value_t = 300)]
    train_identities: u64,
    /// Held-out identities to verify on.
    #[arg(long, default_value_t = 100)]
    test_identities: u64,
    /// Images per identity.
    #[arg(long, default_value_t = 10)]
    per_identity: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override a training key (repeatable), e.g. --set epochs=4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl DemoArgs {
    /// The defaults, for `ffem` and `ffem train` without arguments.
    pub fn default_with_dir(dir: PathBuf) -> Self {
        DemoArgs {
            dir,
            train_identities: 300,
            test_identities: 100,
            per_identity: 10,
            seed: 0,
            overrides: vec![],
        }
    }
}

/// Runs `ffem demo`.
pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    eprintln!(
        "ffem demo: {} synthetic training identities x {} images, {} held out; training on the CPU (a few minutes)",
        a.train_identities, a.per_identity, a.test_identities
    );
    let r = ffem_model::demo::run_demo(&ffem_model::demo::DemoOptions {
        dir: a.dir.clone(),
        train_identities: a.train_identities,
        test_identities: a.test_identities,
        per_identity: a.per_identity,
        seed: a.seed,
        overrides: a.overrides,
        progress: true,
    })?;
    print!(
        "{}",
        r.verification
            .table("verification on held-out synthetic identities")
    );
    println!(
        "training {:.0} images/s; demo took {:.0} s; model in {}",
        r.images_per_sec,
        r.seconds,
        r.model_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- eval

/// Arguments of `ffem eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (from `ffem train`); not needed with --embeddings.
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

/// Which runtime runs the network's forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// burn on the CPU with ffem's kernels (always available).
    Burn,
    /// ONNX Runtime (a build with `--features onnxruntime` and `scripts/fetch-onnxruntime.sh`).
    Onnxruntime,
}

/// `--engine`, shared by every command that runs the network.
#[derive(Args)]
pub struct EngineArg {
    /// Runtime for the network: burn, or onnxruntime (optional build feature).
    #[arg(long, value_enum, default_value = "burn")]
    engine: Engine,
}

fn open_model(path: &Path, engine: &EngineArg) -> Result<(ffem_model::ModelConfig, Embedder)> {
    let device = device_for("cpu")?;
    let (cfg, model) = load_model(path, &device)?;
    #[allow(unused_mut)]
    let mut embedder = Embedder::new(&model, cfg.clone(), &device);
    if engine.engine == Engine::Onnxruntime {
        #[cfg(feature = "onnxruntime")]
        embedder.use_onnxruntime(0)?;
        #[cfg(not(feature = "onnxruntime"))]
        bail!(
            "--engine onnxruntime: this ffem was built without it; rebuild with `cargo build --release -p ffem --features onnxruntime` and run scripts/fetch-onnxruntime.sh"
        );
    }
    Ok((cfg, embedder))
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
        let norms: f64 = data
            .chunks_exact(dim)
            .map(|r| r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt())
            .sum::<f64>()
            / rows as f64;
        let (left, right): (Vec<f32>, Vec<f32>) = {
            let mut l = Vec::with_capacity(rows / 2 * dim);
            let mut r = Vec::with_capacity(rows / 2 * dim);
            for (i, row) in data.chunks_exact(dim).enumerate() {
                if i % 2 == 0 {
                    l.extend_from_slice(row)
                } else {
                    r.extend_from_slice(row)
                }
            }
            (l, r)
        };
        let dist = ffem_eval::pair_distances(&left, &right, dim);
        let report = ffem_eval::evaluate(&dist, &issame, 10, Some(norms));
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
    let model_dir = a
        .model
        .as_ref()
        .context("give a MODEL directory, or --embeddings E.npy --issame F")?;
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
    let (cfg, embedder) = open_model(model_dir, &a.engine)?;
    let mut reports = Vec::new();
    for set in &sets {
        let emb = embed_set(&embedder, &set.faces, cfg.align, !a.no_flip, true)?;
        let report = verify_set(set, &emb);
        if let Some(p) = &a.roc {
            let dist = ffem_model::evalset::set_distances(set, &emb);
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
    let saved = serde_json::json!({ "set": name, "threshold_cosine": first.threshold_cosine, "threshold_squared_l2": first.threshold_mean, "accuracy": first.accuracy, "flip": !a.no_flip });
    ffem_model::model::write_atomic(
        &model_dir.join("threshold.json"),
        serde_json::to_string_pretty(&saved)?.as_bytes(),
    )?;
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
        eprintln!(
            "saved threshold {:.4} (cosine) to {}",
            first.threshold_cosine,
            model_dir.join("threshold.json").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn identify(a: &EvalArgs) -> Result<ExitCode> {
    let model_dir = a
        .model
        .as_ref()
        .context("--identify needs a MODEL directory")?;
    let (cfg, embedder) = open_model(model_dir, &a.engine)?;
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
            ffem_model::evalset::load_faces(&root, Some(&list), &paths)?,
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
    let emb = embed_set(&embedder, &faces, cfg.align, !a.no_flip, true)?;
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

// ---------------------------------------------------------------- embed / verify / search

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "tif"];

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for rel in ffem_data::walk::files_under(dir)? {
        if rel.extension().is_some_and(|e| {
            IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
        }) {
            out.push(dir.join(rel));
        }
    }
    Ok(())
}

/// An input for embedding: its bytes-to-be, box, landmarks and label text.
struct Item {
    path: PathBuf,
    name: String,
    label: String,
    face_box: Option<[f32; 4]>,
    landmarks: Option<[f32; 10]>,
}

fn gather_items(inputs: &[PathBuf], root: Option<&Path>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files = Vec::new();
            collect_images(input, &mut files)?;
            for f in files {
                let label = f
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                items.push(Item {
                    name: f.display().to_string(),
                    path: f,
                    label,
                    face_box: None,
                    landmarks: None,
                });
            }
        } else if input.extension().is_some_and(|e| e == "json") {
            let list = ImageList::load(input)?;
            for r in &list.rejected {
                tracing::warn!("{}: skipping {}: {}", input.display(), r.key, r.reason);
            }
            let base = root
                .map(Path::to_path_buf)
                .unwrap_or_else(|| input.parent().map(Path::to_path_buf).unwrap_or_default());
            for e in list.entries {
                items.push(Item {
                    path: base.join(e.file()),
                    name: e.path.clone(),
                    label: e.label.to_string(),
                    face_box: e.face_box.map(|b| [b.x1, b.y1, b.x2, b.y2]),
                    landmarks: e.landmarks,
                });
            }
        } else {
            items.push(Item {
                name: input.display().to_string(),
                path: input.clone(),
                label: String::new(),
                face_box: None,
                landmarks: None,
            });
        }
    }
    Ok(items)
}

/// Embeds items; returns normalised embeddings of the ones that worked and the skipped ones.
fn embed_items(
    embedder: &Embedder,
    align: bool,
    flip: bool,
    items: &[Item],
) -> Result<(Vec<f32>, Vec<usize>, Vec<(String, String)>)> {
    let loaded: Vec<Result<FaceInput, String>> = items
        .par_iter()
        .map(|it| {
            let bytes = std::fs::read(&it.path).map_err(|e| format!("{e}"))?;
            Ok(FaceInput {
                bytes,
                face_box: it.face_box,
                landmarks: it.landmarks,
                name: it.name.clone(),
            })
        })
        .collect();
    let mut faces = Vec::new();
    let mut item_of_face = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in loaded.into_iter().enumerate() {
        match r {
            Ok(f) => {
                faces.push(f);
                item_of_face.push(i);
            }
            Err(e) => skipped.push((items[i].name.clone(), e)),
        }
    }
    // Decoding and cropping happen once, inside the embedding loop, which skips what fails.
    let (emb, kept_faces, bad) =
        ffem_model::evalset::embed_set_skipping(embedder, &faces, align, flip, true)?;
    skipped.extend(
        bad.into_iter()
            .map(|(f, e)| (items[item_of_face[f]].name.clone(), e)),
    );
    let kept = kept_faces.into_iter().map(|f| item_of_face[f]).collect();
    Ok((emb.embeddings, kept, skipped))
}

/// Arguments of `ffem embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model directory.
    model: PathBuf,
    /// Images, folders (searched recursively) or image_list.json files.
    #[arg(required = true)]
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
}

/// Runs `ffem embed`.
pub fn embed(a: EmbedArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let items = gather_items(&a.inputs, a.root.as_deref())?;
    if items.is_empty() {
        bail!("no images found in the inputs");
    }
    let started = std::time::Instant::now();
    let (emb, kept, skipped) = embed_items(&embedder, cfg.align, !a.no_flip, &items)?;
    let seconds = started.elapsed().as_secs_f64();
    for (n, e) in &skipped {
        eprintln!("skipped {n}: {e}");
    }
    if a.strict && !skipped.is_empty() {
        bail!(
            "--strict: {} of {} images could not be embedded; nothing written",
            skipped.len(),
            items.len()
        );
    }
    ffem_eval::npy::write_f32(&a.output, &emb, kept.len(), embedder.dim())?;
    if let Some(path) = &a.save_crops {
        let size = embedder.config().image_size;
        let crops: Vec<f32> = kept
            .par_iter()
            .map(|&i| {
                let it = &items[i];
                let face = FaceInput {
                    bytes: std::fs::read(&it.path).unwrap_or_default(),
                    face_box: it.face_box,
                    landmarks: it.landmarks,
                    name: it.name.clone(),
                };
                ffem_model::embed::prepare(&face, size, cfg.align).map_err(anyhow::Error::msg)
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        ffem_eval::npy::write_f32(path, &crops, kept.len(), 3 * size * size)?;
    }
    let mut csv = String::from("row,path,label\n");
    for (row, &i) in kept.iter().enumerate() {
        csv += &format!(
            "{row},{},{}\n",
            csv_field(&items[i].name),
            csv_field(&items[i].label)
        );
    }
    let csv_path = a.output.with_extension("csv");
    ffem_model::model::write_atomic(&csv_path, csv.as_bytes())?;
    println!(
        "embedded {} of {} images ({} skipped) -> {} [{} x {}], index {}; read, decode, crop and embed took {seconds:.2} s ({:.1} images/s)",
        kept.len(),
        items.len(),
        skipped.len(),
        a.output.display(),
        kept.len(),
        embedder.dim(),
        csv_path.display(),
        items.len() as f64 / seconds
    );
    Ok(ExitCode::SUCCESS)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

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
}

fn boxes_from_list(list: Option<&Path>) -> Result<Vec<ffem_data::ImageEntry>> {
    Ok(match list {
        Some(p) => ImageList::load(p)?.entries,
        None => vec![],
    })
}

fn item_for(path: &Path, entries: &[ffem_data::ImageEntry]) -> Item {
    let s = path.to_string_lossy().replace('\\', "/");
    let e = entries.iter().find(|e| s.ends_with(&e.path));
    Item {
        path: path.to_path_buf(),
        name: path.display().to_string(),
        label: String::new(),
        face_box: e.and_then(|e| e.face_box).map(|b| [b.x1, b.y1, b.x2, b.y2]),
        landmarks: e.and_then(|e| e.landmarks),
    }
}

/// Runs `ffem verify`.
pub fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let threshold = match a.threshold {
        Some(t) => t,
        None => {
            let p = a.model.join("threshold.json");
            let text = std::fs::read_to_string(&p).with_context(|| format!("{}: no saved threshold; run `ffem eval {} --lfw DIR` first or pass --threshold", p.display(), a.model.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            v["threshold_cosine"]
                .as_f64()
                .context("threshold.json lacks threshold_cosine")? as f32
        }
    };
    let entries = boxes_from_list(a.list.as_deref())?;
    let items = vec![item_for(&a.a, &entries), item_for(&a.b, &entries)];
    let (emb, kept, skipped) = embed_items(&embedder, cfg.align, true, &items)?;
    if let Some((n, e)) = skipped.first() {
        bail!("{n}: {e}");
    }
    debug_assert_eq!(kept.len(), 2);
    let d = embedder.dim();
    let sim = cosine(&emb[..d], &emb[d..2 * d]);
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
}

/// Runs `ffem search`.
pub fn search(a: SearchArgs) -> Result<ExitCode> {
    let (cfg, embedder) = open_model(&a.model, &a.engine)?;
    let d = embedder.dim();
    let (gallery, names): (Vec<f32>, Vec<String>) =
        if a.gallery.extension().is_some_and(|e| e == "npy") {
            let (mut data, rows, dim) = ffem_eval::npy::read_f32(&a.gallery)?;
            if dim != d {
                bail!(
                    "{}: embeddings are {dim}-d but the model makes {d}-d ones",
                    a.gallery.display()
                );
            }
            normalize_rows(&mut data, dim);
            let csv = a.gallery.with_extension("csv");
            let names: HashMap<usize, String> = std::fs::read_to_string(&csv)
                .map(|t| {
                    t.lines()
                        .skip(1)
                        .filter_map(|l| {
                            l.split_once(',').and_then(|(r, rest)| {
                                Some((
                                    r.parse().ok()?,
                                    rest.rsplit_once(',').map_or(rest, |x| x.0).to_string(),
                                ))
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                data,
                (0..rows)
                    .map(|i| names.get(&i).cloned().unwrap_or_else(|| format!("row {i}")))
                    .collect(),
            )
        } else {
            let items = gather_items(std::slice::from_ref(&a.gallery), None)?;
            let (emb, kept, skipped) = embed_items(&embedder, cfg.align, true, &items)?;
            for (n, e) in &skipped {
                eprintln!("skipped {n}: {e}");
            }
            (emb, kept.iter().map(|&i| items[i].name.clone()).collect())
        };
    let entries = boxes_from_list(a.list.as_deref())?;
    let (q, _, skipped) = embed_items(&embedder, cfg.align, true, &[item_for(&a.query, &entries)])?;
    if let Some((n, e)) = skipped.first() {
        bail!("{n}: {e}");
    }
    let mut scored: Vec<(f32, usize)> = gallery
        .chunks_exact(d)
        .enumerate()
        .map(|(i, g)| (cosine(&q, g), i))
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    for (rank, (s, i)) in scored.iter().take(a.k).enumerate() {
        println!("{:>3}  {s:.4}  {}", rank + 1, names[*i]);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- info

/// Arguments of `ffem info`.
#[derive(Args)]
pub struct InfoArgs {
    /// A model directory or a training config (.toml).
    path: Option<PathBuf>,
    /// A backbone by name instead: mobilenet_v3_large or mobilenet_v3_small.
    #[arg(long)]
    backbone: Option<String>,
    /// With --backbone: the ImageNet network (224x224, 1000 classes) as torchvision builds it.
    #[arg(long)]
    imagenet: bool,
}

/// Runs `ffem info`.
pub fn info(a: InfoArgs) -> Result<ExitCode> {
    use ffem_model::info::{describe, describe_imagenet, format_table};
    let model_cfg = match (&a.path, &a.backbone) {
        (Some(p), _) if p.is_dir() => {
            let text = std::fs::read_to_string(p.join("model.json"))
                .with_context(|| format!("{}: not a model directory", p.display()))?;
            serde_json::from_str::<ffem_model::ModelConfig>(&text)?
        }
        (Some(p), _) => TrainConfig::load(Some(p), &[])?.model(),
        (None, Some(b)) => TrainConfig::load(None, &[format!("backbone=\"{b}\"")])?.model(),
        (None, None) => bail!("give a model directory, a config file, or --backbone NAME"),
    };
    if a.imagenet {
        let (rows, params, macs) = describe_imagenet(&model_cfg.backbone);
        print!(
            "{}",
            format_table(
                &format!(
                    "{:?} ImageNet (224x224, 1000 classes)",
                    model_cfg.backbone.variant
                ),
                &rows,
                params,
                macs
            )
        );
    } else {
        let (rows, params, macs) = describe(&model_cfg);
        let title = format!(
            "{:?} + {:?} head, {}-d embedding, {}x{} input",
            model_cfg.backbone.variant,
            model_cfg.head,
            model_cfg.embedding_dim,
            model_cfg.image_size,
            model_cfg.image_size
        );
        print!("{}", format_table(&title, &rows, params, macs));
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- export

/// Arguments of `ffem export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Model directory.
    model: PathBuf,
    /// Output ONNX file: input `data` [N, 3, S, S] float32, output `embedding` [N, D], opset 14.
    #[arg(long)]
    onnx: PathBuf,
}

/// Runs `ffem export`.
pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let device = device_for("cpu")?;
    let (cfg, model) = load_model(&a.model, &device)?;
    ffem_model::onnx::export_onnx(&a.onnx, &model, &cfg)?;
    let size = std::fs::metadata(&a.onnx).map(|m| m.len()).unwrap_or(0);
    println!(
        "exported {} ({:.1} MiB): input `data` [N, 3, {s}, {s}], output `embedding` [N, {}]",
        a.onnx.display(),
        size as f64 / (1 << 20) as f64,
        cfg.embedding_dim,
        s = cfg.image_size
    );
    Ok(ExitCode::SUCCESS)
}
