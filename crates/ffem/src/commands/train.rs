//! `ffem train`: a run from a TOML config (or the demo without arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ffem_train::TrainConfig;

use super::demo::{DemoArgs, demo};

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
        return demo(DemoArgs::default());
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
    let opts = ffem_train::TrainOptions {
        progress: true,
        init: a.init.clone(),
        ..Default::default()
    };
    let s = ffem_train::train(&cfg, &run_dir, resume, &opts)?;
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
