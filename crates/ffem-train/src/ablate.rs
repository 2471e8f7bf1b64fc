//! `ffem ablate`: a loss study as one command. Every variant (a loss and its hyper-parameters,
//! over a shared base recipe) trains on the same data with the same budget and seed, is scored on
//! the same pair sets, and lands in one `report.md` with the ROC curves and the training curves
//! overlaid. The study resumes: a variant with a `result.json` is done, one with a checkpoint
//! continues, the others start.
//!
//! ```toml
//! out_dir = "runs/ablation"
//! [data]                       # lists merged (labels offset per list) and packed once
//! align = true
//! lists = [{ root = "{data}/cfp/Data/Images", json = "{data}/cfp/image_list.json" }]
//! [eval]
//! lfw = "{data}/lfw"           # also cfp_fp, cfp_ff, bins = ["x.bin"]
//! [base]                       # any TrainConfig key, for every variant
//! epochs = 4
//! [[variants]]
//! name = "arcface"
//! loss = "arcface"
//! ```
//!
//! `{data}` in a path is the shared data folder (`--data`, else `FFEM_DATA`, else
//! `../shared/data`). With label noise (`label_noise`, or `--label-noise`) that fraction of the
//! merged labels is flipped to other identities (deterministic for `noise_seed`), and the flipped
//! images are listed in `data/noise.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use ffem_data::PackOptions;
use ffem_data::image_list::{ImageList, flip_labels, merge_lists, write_image_list};
use ffem_eval::plot::{Series, line_chart};
use ffem_model::embed::Embedder;
use ffem_model::evalset::{PairSet, embed_set, set_distances, verify_set};
use ffem_model::model::load_model;

use crate::config::{ConfigError, TrainConfig};
use crate::error::TrainError;
use crate::metrics::read_metrics;
use crate::trainer::{TrainOptions, train};

/// One image list of the study's training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Folder the list's paths are relative to.
    pub root: String,
    /// The `image_list.json`.
    pub json: String,
}

/// The training data: lists merged into one identity space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyData {
    /// The lists; each one's labels follow the previous ones'.
    pub lists: Vec<ListSpec>,
    /// Store faces aligned by their landmarks when packing.
    #[serde(default)]
    pub align: bool,
}

/// Where the variants are scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyEval {
    /// LFW folder (pairs.txt, images, image_list.json).
    pub lfw: Option<String>,
    /// CFP folder, frontal-profile protocol.
    pub cfp_fp: Option<String>,
    /// CFP folder, frontal-frontal protocol.
    pub cfp_ff: Option<String>,
    /// insightface `.bin` sets.
    pub bins: Vec<String>,
    /// Pair sets drawn from held-out labelled lists.
    pub lists: Vec<EvalList>,
    /// Leave-one-out Recall@1 over the first set's images, identities from their first path
    /// component (LFW's and CFP's layout).
    pub identification: bool,
}

/// A held-out labelled list to draw verification pairs from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalList {
    /// The set's name in the report.
    pub name: String,
    /// Folder the list's paths are relative to.
    pub root: String,
    /// The `image_list.json`.
    pub json: String,
    /// Same-identity pairs to draw (as many different ones); 3,000 like LFW by default.
    #[serde(default = "default_pairs")]
    pub pairs: usize,
}

fn default_pairs() -> usize {
    3000
}

/// A study as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// Where the study writes (data, one folder per variant, the report).
    #[serde(default)]
    pub out_dir: String,
    /// Fraction of labels flipped before training.
    #[serde(default)]
    pub label_noise: f64,
    /// Seed of the flips.
    #[serde(default)]
    pub noise_seed: u64,
    /// Training data.
    pub data: StudyData,
    /// Scoring.
    #[serde(default)]
    pub eval: StudyEval,
    /// TrainConfig keys every variant shares.
    #[serde(default)]
    pub base: toml::Table,
    /// The variants: `name` plus TrainConfig keys over `base`, and optionally `init_from`, an
    /// earlier variant whose trained network this one starts from (the seed's step 2 after
    /// step 1).
    pub variants: Vec<toml::Table>,
}

impl AblationConfig {
    /// Reads a study file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let cfg: AblationConfig = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message())))?;
        if cfg.variants.is_empty() {
            return Err(ConfigError(format!("{}: no [[variants]]", path.display())).into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &cfg.variants {
            let name = variant_name(v)?;
            if !seen.insert(name.to_string()) {
                return Err(ConfigError(format!(
                    "{}: two variants are named `{name}`",
                    path.display()
                ))
                .into());
            }
        }
        Ok(cfg)
    }
}

fn variant_name(v: &toml::Table) -> Result<&str, ConfigError> {
    let name = v
        .get("name")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| ConfigError("every [[variants]] needs name = \"...\"".into()))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError(format!(
            "variant name `{name}`: use letters, digits, '-', '_' or '.' (it names a folder)"
        )));
    }
    Ok(name)
}

/// How to run a study.
#[derive(Debug, Clone, Default)]
pub struct AblateOptions {
    /// Output folder (default: the config's `out_dir`, with `-noise<fraction>` when noisy).
    pub out: Option<PathBuf>,
    /// Replaces the config's `label_noise`.
    pub label_noise: Option<f64>,
    /// What `{data}` stands for.
    pub data_root: PathBuf,
    /// Only these variants (all when empty).
    pub only: Vec<String>,
    /// Progress bars.
    pub progress: bool,
}

/// One pair set's scores for a variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetScore {
    /// The set's name.
    pub set: String,
    /// 10-fold accuracy.
    pub accuracy: f64,
    /// Its standard deviation over folds.
    pub std: f64,
    /// Pooled TAR at FAR = 1e-3 (None when the set has too few different pairs).
    pub tar_at_far_1e3: Option<f64>,
    /// Area under the pooled ROC.
    pub auc: f64,
    /// Equal error rate.
    pub eer: f64,
    /// The pooled ROC, thinned to at most ~300 points (FAR, TAR).
    pub roc: Vec<(f64, f64)>,
}

/// What a finished variant measured (`variants/NAME/result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    /// The variant's name.
    pub name: String,
    /// Its loss, as configured.
    pub loss: String,
    /// Keys it sets over the base, as TOML text.
    pub settings: String,
    /// Scores per pair set, in the configured order.
    pub sets: Vec<SetScore>,
    /// Leave-one-out Recall@1 over the first set's images.
    pub recall_at_1: Option<f64>,
    /// Training wall time in seconds (of the call that finished it).
    pub train_seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Steps trained.
    pub steps: u64,
    /// Last batch loss.
    pub last_loss: f64,
}

/// A variant ready to train: its resolved recipe, the keys it sets over the base (for the
/// report) and the earlier variant whose model it starts from.
struct Planned {
    name: String,
    cfg: TrainConfig,
    settings: String,
    init_from: Option<String>,
}

/// Expands `{data}` in a configured path.
fn expand(path: &str, data_root: &Path) -> PathBuf {
    PathBuf::from(path.replace("{data}", &data_root.display().to_string()))
}

/// What the study's data folder was built from; a resumed study must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DataStamp {
    lists: Vec<ListSpec>,
    align: bool,
    label_noise: f64,
    noise_seed: u64,
}

/// Merges the lists (labels offset per list), flips `label_noise` of the labels, packs into
/// `out/data/records`; reuses a finished pack of the same data. Returns the records folder.
fn prepare_data(
    cfg: &AblationConfig,
    noise: f64,
    out: &Path,
    data_root: &Path,
    progress: bool,
) -> Result<PathBuf, TrainError> {
    let dir = out.join("data");
    let records = dir.join("records");
    let stamp = DataStamp {
        lists: cfg.data.lists.clone(),
        align: cfg.data.align,
        label_noise: noise,
        noise_seed: cfg.noise_seed,
    };
    let stamp_path = dir.join("source.json");
    if records.join("manifest.json").is_file() {
        let text =
            std::fs::read_to_string(&stamp_path).map_err(|e| TrainError::io(&stamp_path, e))?;
        let old: DataStamp = serde_json::from_str(&text)
            .map_err(|e| TrainError::Setup(format!("{}: {e}", stamp_path.display())))?;
        if old != stamp {
            return Err(TrainError::Setup(format!(
                "{} holds a study of other data or noise ({}); choose another --out",
                out.display(),
                stamp_path.display()
            )));
        }
        return Ok(records);
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let mut lists = Vec::new();
    for spec in &cfg.data.lists {
        let json = expand(&spec.json, data_root);
        let root = expand(&spec.root, data_root);
        let root = std::fs::canonicalize(&root).map_err(|e| TrainError::io(&root, e))?;
        let list = ImageList::load(&json)?;
        if !list.rejected.is_empty() {
            tracing::warn!(
                "{}: {} entries rejected (first: {} — {})",
                json.display(),
                list.rejected.len(),
                list.rejected[0].key,
                list.rejected[0].reason
            );
        }
        lists.push((root, list.entries));
    }
    let mut entries = merge_lists(lists);
    let mut labels: Vec<u64> = entries.iter().map(|e| e.label).collect();
    let clean_list = dir.join("image_list.clean.json");
    write_image_list(&clean_list, &entries)?;
    let flipped = flip_labels(&mut labels, noise, cfg.noise_seed);
    let flipped_paths: Vec<String> = flipped.iter().map(|&i| entries[i].path.clone()).collect();
    for (e, l) in entries.iter_mut().zip(&labels) {
        e.label = *l;
    }
    let noise_json = serde_json::json!({
        "fraction": noise, "seed": cfg.noise_seed, "flipped": flipped_paths,
    });
    ffem_data::atomic::write_json(&dir.join("noise.json"), &noise_json)?;
    let list_path = dir.join("image_list.json");
    write_image_list(&list_path, &entries)?;
    let mut opts = PackOptions::new(PathBuf::from("/"), list_path, &records);
    opts.align = cfg.data.align;
    opts.progress = progress;
    opts.overwrite = true;
    let report = ffem_data::pack(&opts)?;
    tracing::info!(
        "study data: {} images of {} identities ({} flipped, {} skipped) in {}",
        report.manifest.records,
        report.manifest.identities,
        flipped.len(),
        report.manifest.skipped.len(),
        records.display()
    );
    ffem_data::atomic::write_json(&stamp_path, &stamp)?;
    Ok(records)
}

/// A pair set and, for sets drawn from a list, its images' labels (other sets take identities
/// from their images' first path component).
type ScoredSet = (PairSet, Option<Vec<i64>>);

/// Loads the configured pair sets.
fn load_sets(eval: &StudyEval, data_root: &Path) -> Result<Vec<ScoredSet>, TrainError> {
    let mut specs = Vec::new();
    for (kind, dir) in [
        ("lfw", &eval.lfw),
        ("cfp_fp", &eval.cfp_fp),
        ("cfp_ff", &eval.cfp_ff),
    ] {
        if let Some(d) = dir {
            specs.push(format!("{kind}:{}", expand(d, data_root).display()));
        }
    }
    for b in &eval.bins {
        specs.push(format!("bin:{}", expand(b, data_root).display()));
    }
    let mut sets = specs
        .into_iter()
        .map(|spec| {
            PairSet::from_spec(&spec)
                .map(|set| (set, None))
                .map_err(|source| TrainError::ValSet { spec, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for l in &eval.lists {
        let json = expand(&l.json, data_root);
        let list = ImageList::load(&json)?;
        let set = PairSet::from_list(&l.name, &expand(&l.root, data_root), &list, l.pairs, 0)?;
        let labels = list.entries.iter().map(|e| e.label as i64).collect();
        sets.push((set, Some(labels)));
    }
    Ok(sets)
}

/// Keeps about `max` points of a ROC, evenly spaced in log FAR, plus its ends.
fn thin_roc(roc: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if roc.len() <= max {
        return roc.to_vec();
    }
    let mut out = vec![roc[0]];
    let mut next = -6.0f64;
    let step = 6.0 / max as f64;
    for &(far, tar) in roc {
        if far > 0.0 && far.log10() >= next {
            out.push((far, tar));
            next = far.log10() + step;
        }
    }
    out.push(*roc.last().expect("non-empty"));
    out
}

/// Scores a trained model on the sets (and Recall@1 over the first).
fn score(
    device: &burn::tensor::Device,
    model_dir: &Path,
    sets: &[ScoredSet],
    identification: bool,
    progress: bool,
) -> Result<(Vec<SetScore>, Option<f64>), TrainError> {
    let (model_cfg, model) = load_model(model_dir, device)?;
    let align = model_cfg.align;
    let embedder = Embedder::new(&model, model_cfg, device);
    let mut scores = Vec::new();
    let mut recall = None;
    for (i, (set, list_labels)) in sets.iter().enumerate() {
        let emb = embed_set(&embedder, &set.faces, align, true, progress)?;
        let v = verify_set(set, &emb);
        let issame: Vec<bool> = set.pairs.iter().map(|p| p.2).collect();
        let roc = ffem_eval::verification::pooled_roc(&set_distances(set, &emb), &issame);
        scores.push(SetScore {
            set: set.name.clone(),
            accuracy: v.accuracy,
            std: v.std,
            tar_at_far_1e3: v
                .tar_at_far
                .iter()
                .find(|(far, _)| (*far - 1e-3).abs() < 1e-12)
                .map(|p| p.1),
            auc: v.auc,
            eer: v.eer,
            roc: thin_roc(&roc, 300),
        });
        if i == 0 && identification {
            let mut ids: BTreeMap<&str, i64> = BTreeMap::new();
            let labels: Vec<i64> = match list_labels {
                Some(l) => l.clone(),
                None => set
                    .faces
                    .iter()
                    .map(|f| {
                        let person = f.name.split('/').next().unwrap_or(&f.name);
                        let next = ids.len() as i64;
                        *ids.entry(person).or_insert(next)
                    })
                    .collect(),
            };
            recall = Some(ffem_eval::identify(&emb.embeddings, &labels, emb.dim, 1).recall_at_1);
        }
    }
    Ok((scores, recall))
}

/// Runs (or resumes) the study; returns the path of the report.
pub fn ablate(
    cfg_path: &Path,
    cfg: &AblationConfig,
    opts: &AblateOptions,
) -> Result<PathBuf, TrainError> {
    let noise = opts.label_noise.unwrap_or(cfg.label_noise);
    if !(0.0..1.0).contains(&noise) {
        return Err(ConfigError(format!("label noise {noise} must be in [0, 1)")).into());
    }
    let out = match &opts.out {
        Some(o) => o.clone(),
        None if cfg.out_dir.is_empty() => {
            return Err(ConfigError("set out_dir in the study file or pass --out".into()).into());
        }
        None if noise > 0.0 => PathBuf::from(format!("{}-noise{noise}", cfg.out_dir)),
        None => PathBuf::from(&cfg.out_dir),
    };
    for name in &opts.only {
        if !cfg
            .variants
            .iter()
            .any(|v| variant_name(v).ok() == Some(name.as_str()))
        {
            return Err(ConfigError(format!("--only {name}: no variant has that name")).into());
        }
    }
    // Every variant's configuration is checked before anything trains.
    let records = out.join("data").join("records");
    let mut planned = Vec::new();
    for v in &cfg.variants {
        let name = variant_name(v)?.to_string();
        let mut table = cfg.base.clone();
        let mut own = v.clone();
        own.remove("name");
        let mut keys = own.clone();
        let init_from = match keys.remove("init_from") {
            None => None,
            Some(toml::Value::String(from)) => {
                if !planned.iter().any(|p: &Planned| p.name == from) {
                    return Err(ConfigError(format!(
                        "variant `{name}`: init_from = \"{from}\" must name a variant listed before it"
                    ))
                    .into());
                }
                Some(from)
            }
            Some(other) => {
                return Err(ConfigError(format!(
                    "variant `{name}`: init_from must be a variant's name, not {other}"
                ))
                .into());
            }
        };
        for (k, val) in keys {
            table.insert(k, val);
        }
        table.insert(
            "train_data".into(),
            toml::Value::String(records.display().to_string()),
        );
        table.insert("val_set".into(), toml::Value::String(String::new()));
        let train_cfg = TrainConfig::from_table(table, Some(cfg_path))
            .map_err(|e| ConfigError(format!("variant `{name}`: {e}")))?;
        let settings = toml::to_string(&own).unwrap_or_default();
        planned.push(Planned {
            name,
            cfg: train_cfg,
            settings,
            init_from,
        });
    }
    let records = prepare_data(cfg, noise, &out, &opts.data_root, opts.progress)?;
    let sets = load_sets(&cfg.eval, &opts.data_root)?;
    let mut results = Vec::new();
    for plan in &planned {
        let (name, train_cfg, settings) = (&plan.name, &plan.cfg, &plan.settings);
        let dir = out.join("variants").join(name);
        let result_path = dir.join("result.json");
        let ran_with = dir.join("config.toml");
        if ran_with.is_file() {
            // A variant edited after it ran would otherwise report the old recipe's numbers.
            let before = TrainConfig::load(Some(&ran_with), &[])?;
            let same_recipe = TrainConfig {
                workers: train_cfg.workers,
                ..before
            } == *train_cfg;
            if !same_recipe {
                return Err(TrainError::Setup(format!(
                    "variant `{name}` changed since it ran ({}); delete {} to run it again",
                    ran_with.display(),
                    dir.display()
                )));
            }
        }
        if let Ok(text) = std::fs::read_to_string(&result_path) {
            let done: VariantResult = serde_json::from_str(&text)
                .map_err(|e| TrainError::Setup(format!("{}: {e}", result_path.display())))?;
            tracing::info!("{name}: done before, kept");
            results.push(done);
            continue;
        }
        if !opts.only.is_empty() && !opts.only.contains(name) {
            continue;
        }
        debug_assert_eq!(Path::new(&train_cfg.train_data), records.as_path());
        let resume = dir.join("checkpoint").exists();
        let init = match &plan.init_from {
            Some(from) => {
                let model = out.join("variants").join(from).join("model");
                if !results.iter().any(|r: &VariantResult| &r.name == from) {
                    return Err(TrainError::Setup(format!(
                        "variant `{name}` starts from `{from}`, which has not finished: run it first"
                    )));
                }
                Some(model)
            }
            None => None,
        };
        tracing::info!(
            "{name}: {} ({})",
            if resume { "resuming" } else { "training" },
            settings.trim().replace('\n', ", ")
        );
        let started = Instant::now();
        let summary = train(
            train_cfg,
            &dir,
            resume,
            &TrainOptions {
                progress: opts.progress,
                init: init.clone(),
                ..TrainOptions::default()
            },
        )?;
        let train_seconds = started.elapsed().as_secs_f64();
        let (scores, recall_at_1) = score(
            &train_cfg.device.device()?,
            &summary.model_dir,
            &sets,
            cfg.eval.identification,
            opts.progress,
        )?;
        let result = VariantResult {
            name: name.clone(),
            loss: serde_json::to_value(train_cfg.loss)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            settings: settings.clone(),
            sets: scores,
            recall_at_1,
            train_seconds,
            images_per_sec: summary.images_per_sec,
            steps: summary.steps,
            last_loss: summary.last_loss,
        };
        if let Some(first) = result.sets.first() {
            tracing::info!(
                "{name}: {} {:.4} +- {:.4} in {train_seconds:.0} s",
                first.set,
                first.accuracy,
                first.std
            );
        }
        ffem_data::atomic::write_json(&result_path, &result)?;
        results.push(result);
    }
    write_report(cfg_path, cfg, noise, &out, &planned, &results)
}

/// Writes `report.md`, `roc.png` and `curves.png` from the finished variants.
fn write_report(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_roc_keeps_the_ends_and_thins_in_log_far() {
        let roc: Vec<(f64, f64)> = (0..=10_000)
            .map(|i| (i as f64 / 10_000.0, (i as f64 / 10_000.0).sqrt()))
            .collect();
        let thin = thin_roc(&roc, 300);
        assert!(thin.len() < 400 && thin.len() > 100, "{}", thin.len());
        assert_eq!((thin[0], *thin.last().unwrap()), (roc[0], roc[10_000]));
        assert!(thin.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn study_files_name_their_problems() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("a.toml");
            std::fs::write(&p, text).unwrap();
            p
        };
        let base = "[data]\nlists = []\n";
        let err = AblationConfig::load(&write(base)).unwrap_err().to_string();
        assert!(
            err.contains("no [[variants]]") || err.contains("variants"),
            "{err}"
        );
        let twice = format!("{base}[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n");
        let err = AblationConfig::load(&write(&twice))
            .unwrap_err()
            .to_string();
        assert!(err.contains("two variants are named `a`"), "{err}");
        let slash = format!("{base}[[variants]]\nname = \"a/b\"\n");
        let err = AblationConfig::load(&write(&slash))
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a folder"), "{err}");
    }
}
