//! `ffem inspect`: a summary of a packed dataset or TFRecord file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ffem_data::RecordSource;

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
