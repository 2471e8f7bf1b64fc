//! `ffem serve`: the HTTP face service of `ffem_serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ffem_serve::ServeConfig;

/// Arguments of `ffem serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Model directory.
    model: PathBuf,
    /// Gallery database (redb; created if missing).
    #[arg(long, default_value = "gallery.redb")]
    gallery: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Require this key on every route but /health (header `x-api-key` or `Authorization:
    /// Bearer`); also read from FFEM_API_KEY.
    #[arg(long, env = "FFEM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Treat each uploaded image as one face crop instead of detecting faces.
    #[arg(long)]
    no_detect: bool,
    /// Directory holding the MTCNN weights (default: where scripts/fetch-mtcnn.sh puts them).
    #[arg(long, value_name = "DIR")]
    detector_weights: Option<PathBuf>,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 20)]
    max_body_mib: usize,
    /// Largest image side accepted, in pixels.
    #[arg(long, default_value_t = 8192)]
    max_image_side: u32,
    /// Most faces embedded per image by /v1/embed (the largest are kept).
    #[arg(long, default_value_t = 32)]
    max_faces: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Most faces per forward pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long a forward pass waits for more faces, in milliseconds.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
    /// Gallery size from which search uses an HNSW graph instead of comparing every face.
    #[arg(long, default_value_t = 1_000_000)]
    ann_above: usize,
}

/// Runs `ffem serve` until Ctrl-C.
pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    let mut cfg = ServeConfig::new(a.model.clone(), a.gallery.clone());
    cfg.addr = a.addr;
    cfg.api_key = a.api_key.filter(|k| !k.is_empty());
    cfg.detector_weights = if a.no_detect {
        None
    } else {
        Some(
            a.detector_weights
                .unwrap_or_else(ffem_detect::default_weights_dir),
        )
    };
    cfg.max_body_bytes = a.max_body_mib << 20;
    cfg.max_image_side = a.max_image_side;
    cfg.max_faces = a.max_faces.max(1);
    cfg.request_timeout = Duration::from_secs_f64(a.timeout.max(0.001));
    cfg.max_batch = a.max_batch.max(1);
    cfg.batch_wait = Duration::from_millis(a.batch_wait_ms);
    cfg.ann_above = a.ann_above;
    let state = ffem_serve::load(cfg)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(ffem_serve::serve(state))?;
    Ok(ExitCode::SUCCESS)
}
