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
//! `{data}` in a path is the data folder the caller gives (`ffem ablate --data`, or `FFEM_DATA`);
//! a study that uses it without one is an error. With label noise (`label_noise`, or
//! `--label-noise`) that fraction of the
//! merged labels is flipped to other identities (deterministic for `noise_seed`), and the flipped
//! images are listed in `data/noise.json`.
//!
//! One file per job: `study` (the TOML schema), `data` (merging, label noise, packing), `score`
//! (pair sets, the protocol, `result.json`), `report` (`report.md` and its charts); this file runs
//! the variants in order and resumes a study.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod data;
mod report;
mod score;
mod study;

pub use score::{SetScore, VariantResult};
pub use study::{AblationConfig, EvalList, ListSpec, StudyData, StudyEval};
use study::{Planned, variant_name};

use crate::config::{ConfigError, TrainConfig};
use crate::error::TrainError;
use crate::trainer::{TrainOptions, train};

/// How to run a study.
#[derive(Debug, Clone, Default)]
pub struct AblateOptions {
    /// Output folder (default: the config's `out_dir`, with `-noise<fraction>` when noisy).
    pub out: Option<PathBuf>,
    /// Replaces the config's `label_noise`.
    pub label_noise: Option<f64>,
    /// What `{data}` in the study's paths stands for; a study that uses `{data}` without it is an
    /// error that says how to give it.
    pub data_root: Option<PathBuf>,
    /// Only these variants (all when empty).
    pub only: Vec<String>,
    /// Progress bars.
    pub progress: bool,
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
    let records = data::prepare_data(cfg, noise, &out, opts.data_root.as_deref(), opts.progress)?;
    let sets = score::load_sets(&cfg.eval, opts.data_root.as_deref())?;
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
        let (scores, recall_at_1) = score::score(
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
    report::write_report(cfg_path, cfg, noise, &out, &planned, &results)
}
