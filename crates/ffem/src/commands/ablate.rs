//! `ffem ablate`: train and score every variant of a loss study, then write its report
//! (`ffem_train::ablate`). Rerunning the same command resumes an interrupted study.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ffem_train::ablate::{AblateOptions, AblationConfig, ablate as run_study};

/// Arguments of `ffem ablate`.
#[derive(Args)]
pub struct AblateArgs {
    /// The study: data lists, pair sets, a base recipe and [[variants]] (see configs/ablation.toml).
    #[arg(long)]
    config: PathBuf,
    /// Flip this fraction of the training labels first (deterministic); replaces `label_noise`.
    #[arg(long, value_name = "FRACTION")]
    label_noise: Option<f64>,
    /// Output folder (default: the study's out_dir, `-noise<FRACTION>` appended when noisy).
    #[arg(long)]
    out: Option<PathBuf>,
    /// What `{data}` in the study's paths stands for (the folder holding lfw/, cfp/, celeba/).
    #[arg(long, env = "FFEM_DATA")]
    data: Option<PathBuf>,
    /// Train only these variants now (comma-separated); the report lists all finished ones.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Runs `ffem ablate`.
pub fn ablate(a: AblateArgs) -> Result<ExitCode> {
    let cfg = AblationConfig::load(&a.config)?;
    let opts = AblateOptions {
        out: a.out,
        label_noise: a.label_noise,
        data_root: a.data,
        only: a.only,
        progress: true,
    };
    let report = run_study(&a.config, &cfg, &opts)?;
    println!("{}", std::fs::read_to_string(&report)?);
    eprintln!("report: {}", report.display());
    Ok(ExitCode::SUCCESS)
}
