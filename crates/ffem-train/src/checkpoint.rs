//! Checkpoints: the model and classifier weights, the optimiser state and where the run stands
//! ([`TrainState`]), written into a fresh directory that replaces `RUN_DIR/checkpoint` as a
//! whole. A crash at any point leaves a complete checkpoint, old or new (see
//! `ffem_data::atomic::replace_dir`), so `--resume` always finds one; on the CPU a resumed run
//! repeats the uninterrupted one bit for bit.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use ffem_data::atomic;
use ffem_model::model::{load_weights, write_atomic};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::precision::LossScale;
use crate::run_dir::RunDir;
use crate::schedule::Schedule;
use crate::step::TrainModule;

const WEIGHTS: &str = "train.bpk";
const OPTIMIZER: &str = "optim.bpk";
/// Written last: a directory without it was never finished.
const STATE: &str = "state.json";

/// Where a run stands, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimiser steps taken (including skipped ones).
    pub step: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Next batch index within the epoch.
    pub batch: u64,
    /// The schedule and its plateau state.
    pub schedule: Schedule,
    /// Steps skipped for non-finite loss so far.
    pub skipped_nonfinite: u64,
    /// Dynamic loss scale (f16 only).
    #[serde(default)]
    pub loss_scale: LossScale,
    /// Sum of losses of the current epoch (for the plateau schedule).
    pub epoch_loss_sum: f64,
    /// Batches in the current epoch's sum.
    pub epoch_batches: u64,
    /// The seed of the run's record order, augmentations and fresh layers (see
    /// `trainer::run_stream_seed`); checkpoints written before it was kept read as the
    /// configuration's seed, which is what those runs used.
    #[serde(default)]
    pub stream_seed: Option<u64>,
}

impl TrainState {
    /// The state of a run that has not taken a step.
    pub fn start(schedule: Schedule) -> Self {
        TrainState {
            step: 0,
            epoch: 0,
            batch: 0,
            schedule,
            skipped_nonfinite: 0,
            loss_scale: LossScale::default(),
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            stream_seed: None,
        }
    }
}

fn recorder_error(path: &Path, what: &str, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{what}: {e:?}"),
    }
}

/// Writes a checkpoint of `module`, `optim` and `state` into `run`, replacing the previous one.
pub fn save(
    run: &RunDir,
    module: &TrainModule,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<(), TrainError> {
    let target = run.checkpoint();
    // A replacement interrupted between its renames parked the only checkpoint beside the target:
    // put it back before the stale-staging sweep below would delete it.
    atomic::recover_dir(&target)?;
    // Staging left by an interrupted run (another pid) is garbage: this process owns the run.
    atomic::remove_stale_staging(&target)?;
    let staging = atomic::temp_path(&target);
    std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    let weights = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| recorder_error(&staging.join(WEIGHTS), "cannot serialise weights", e))?;
    write_atomic(&staging.join(WEIGHTS), &weights)?;
    let optim_bytes = optim.into_bytes().map_err(|e| {
        recorder_error(
            &staging.join(OPTIMIZER),
            "cannot serialise the optimiser",
            e,
        )
    })?;
    write_atomic(&staging.join(OPTIMIZER), &optim_bytes)?;
    atomic::write_json(&staging.join(STATE), state)?;
    atomic::replace_dir(&staging, &target)?;
    Ok(())
}

/// Loads the checkpoint of `run` into `module` and `optim` (built as for a fresh run) and returns
/// them with the saved state.
pub fn load(
    run: &RunDir,
    module: TrainModule,
    optim: ModuleOptimizer,
) -> Result<(TrainModule, ModuleOptimizer, TrainState), TrainError> {
    let dir = run.checkpoint();
    atomic::recover_dir(&dir)?;
    let state_path = dir.join(STATE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| {
        TrainError::Setup(format!(
            "{}: {e}: nothing to resume (no finished checkpoint in {}); start the run without --resume",
            state_path.display(),
            run.root().display()
        ))
    })?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: state_path.clone(),
        reason: format!("not a checkpoint state: {e}"),
    })?;
    let module = load_weights(&dir.join(WEIGHTS), module)?;
    let optim_path = dir.join(OPTIMIZER);
    let bytes = std::fs::read(&optim_path).map_err(|e| TrainError::io(&optim_path, e))?;
    let optim = optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| {
            recorder_error(
                &optim_path,
                "optimiser state does not fit this configuration's optimiser",
                e,
            )
        })?;
    Ok((module, optim, state))
}
