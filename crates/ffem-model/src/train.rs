//! The trainer: records -> pipeline -> model + classifier loss -> optimiser, with schedules, a
//! non-finite guard, atomic checkpoints that resume bit-for-bit on the CPU, metrics.csv, PNG
//! curves and periodic verification on a held-out pair set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ffem_data::{AugmentConfig, Pipeline, PipelineConfig, RecordSource};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::embed::Embedder;
use crate::evalset::{PairSet, embed_set, verify_set};
use crate::losses::ClassifierLoss;
use crate::model::{EmbeddingModel, load_model, save_model, write_atomic};
use crate::precision::{LossScale, Precision, forward_embeddings, materialize, unscale_and_check};
use crate::schedule::Schedule;

/// Model and classifier, optimised together.
#[derive(Module, Debug)]
pub struct TrainModule {
    /// The embedding network.
    pub model: EmbeddingModel,
    /// The identity classifier carrying the loss.
    pub classifier: ClassifierLoss,
}

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
}

/// Options that are not part of the model's recipe.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Draw a progress bar.
    pub progress: bool,
    /// Stop (as if interrupted) after this many steps of this invocation.
    pub stop_after: Option<u64>,
    /// Initialise from a model directory (step 2 from step 1).
    pub init: Option<PathBuf>,
    /// Fault injection for tests of the non-finite guard: the loss of these steps becomes NaN.
    pub poison_steps: Vec<u64>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Steps done in total.
    pub steps: u64,
    /// The last batch's loss.
    pub last_loss: f64,
    /// Steps skipped for non-finite loss.
    pub skipped_nonfinite: u64,
    /// Where the final model is.
    pub model_dir: PathBuf,
    /// Last verification, if a pair set was configured.
    pub verification: Option<ffem_eval::VerificationReport>,
    /// Mean training throughput.
    pub images_per_sec: f64,
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrainError(pub String);

fn err(e: impl std::fmt::Display) -> TrainError {
    TrainError(e.to_string())
}

/// The files of a run directory.
pub struct RunDir {
    /// The directory.
    pub root: PathBuf,
}

impl RunDir {
    /// Resolved configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The latest checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// The final / latest embedding model.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    /// Per-step metrics.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
}

/// Picks the compute device named in the configuration.
pub fn device_for(name: &str) -> Result<Device, TrainError> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" | "gpu" => Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(0))),
        other => Err(TrainError(format!(
            "device `{other}` is not available in this build: use cpu{}",
            if cfg!(feature = "vulkan") {
                " or vulkan"
            } else {
                " (build with --features vulkan for the GPU)"
            }
        ))),
    }
}

fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let wd = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer.as_str() {
        "adam" => AdamConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(wd)
            .init(),
        "adamw" => AdamWConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(cfg.weight_decay as f32)
            .init(),
        _ => SgdConfig::new()
            .with_weight_decay(wd)
            // burn's momentum defaults to dampening 0.1; standard (PyTorch, Keras) Nesterov SGD has 0.
            .with_momentum((cfg.momentum > 0.0).then(|| MomentumConfig {
                momentum: cfg.momentum,
                dampening: 0.0,
                nesterov: cfg.nesterov,
            }))
            .init(),
    }
}

const METRICS_HEADER: &str =
    "step,epoch,loss,accuracy,lr,images_per_sec,skipped_nonfinite,val_accuracy";

/// Trains per `cfg` into `run_dir`; with `resume`, continues from the run's checkpoint.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary, TrainError> {
    let run = RunDir {
        root: run_dir.to_path_buf(),
    };
    let device = device_for(&cfg.device)?;
    let precision = Precision::parse(&cfg.precision).ok_or_else(|| {
        TrainError(format!(
            "precision `{}`: use f32, f16 or bf16",
            cfg.precision
        ))
    })?;
    let ad = device.clone().autodiff();
    std::fs::create_dir_all(&run.root)
        .map_err(|e| TrainError(format!("{}: {e}", run.root.display())))?;

    let source = RecordSource::open(Path::new(&cfg.train_data))
        .map_err(|e| TrainError(format!("train_data: {e}")))?;
    let identities = source.manifest.as_ref().map(|m| m.identities);
    let num_classes = match (cfg.num_identity, identities) {
        (0, Some(n)) => n,
        (0, None) => {
            return Err(TrainError(
                "num_identity = 0 needs a dataset with a manifest (ffem pack); set num_identity"
                    .into(),
            ));
        }
        (n, Some(m)) if n < m => {
            return Err(TrainError(format!(
                "num_identity = {n} but {} holds {m} identities: labels >= {n} would have no class. Set num_identity >= {m}",
                cfg.train_data
            )));
        }
        (n, _) => n,
    };
    let records = source.record_count();
    let pipeline_cfg = PipelineConfig {
        image_size: cfg.image_size,
        batch_size: cfg.batch_size,
        shuffle_buffer: cfg.shuffle_buffer,
        seed: cfg.seed,
        drop_last: true,
        workers: cfg.workers.max(1),
        prefetch: 4,
        augment: AugmentConfig {
            box_jitter: cfg.box_jitter,
            flip: cfg.flip,
            color: cfg.color_jitter,
            cutout: cfg.cutout,
            probability: cfg.augment_probability,
        },
        align: cfg.align,
        skip_corrupt: false,
        num_classes: Some(num_classes),
    };
    let pipeline = Pipeline::new(source, pipeline_cfg).map_err(err)?;
    let steps_per_epoch = records.map(|r| r / cfg.batch_size as u64);
    let total_steps = match (steps_per_epoch, cfg.max_steps) {
        (_, m) if m > 0 => m.min(steps_per_epoch.map_or(m, |s| s * cfg.epochs)),
        (Some(s), _) => s * cfg.epochs,
        (None, _) => 0,
    };

    let model_cfg = cfg.model();
    ad.seed(cfg.seed);
    let mut module = TrainModule {
        model: model_cfg.init(&ad),
        classifier: ClassifierLoss::new(cfg.loss(), num_classes as usize, cfg.embedding_dim, &ad),
    };
    materialize(&module);
    let mut optim = optimizer(cfg);
    let mut state = TrainState {
        step: 0,
        epoch: 0,
        batch: 0,
        schedule: cfg.schedule_with_total(total_steps).map_err(err)?,
        skipped_nonfinite: 0,
        loss_scale: LossScale::default(),
        epoch_loss_sum: 0.0,
        epoch_batches: 0,
    };

    if resume {
        let ck = run.checkpoint();
        let text = std::fs::read_to_string(ck.join("state.json")).map_err(|e| {
            TrainError(format!(
                "{}: {e}: nothing to resume (no checkpoint in this run directory)",
                ck.join("state.json").display()
            ))
        })?;
        state = serde_json::from_str(&text)
            .map_err(|e| TrainError(format!("{}: {e}", ck.join("state.json").display())))?;
        module = crate::model::load_weights(&ck.join("train.bpk"), module).map_err(err)?;
        let bytes = std::fs::read(ck.join("optim.bpk"))
            .map_err(|e| TrainError(format!("{}: {e}", ck.join("optim.bpk").display())))?;
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| TrainError(format!("optimiser state: {e:?}")))?;
        truncate_metrics(&run.metrics(), state.step)?;
        tracing::info!(
            "resuming at step {} (epoch {}, batch {})",
            state.step,
            state.epoch,
            state.batch
        );
    } else {
        if let Some(init) = &opts.init {
            let (init_cfg, init_model) = load_model(init, &ad).map_err(err)?;
            if init_cfg.backbone != model_cfg.backbone {
                return Err(TrainError(format!(
                    "--init {}: its backbone {:?} differs from this configuration's {:?}",
                    init.display(),
                    init_cfg.backbone,
                    model_cfg.backbone
                )));
            }
            module.model.backbone = init_model.backbone;
            if init_cfg.head == model_cfg.head
                && init_cfg.embedding_dim == model_cfg.embedding_dim
                && init_cfg.image_size == model_cfg.image_size
            {
                module.model.gnap = init_model.gnap;
                module.model.gdc = init_model.gdc;
                module.model.flatten = init_model.flatten;
            }
            tracing::info!("initialised from {}", init.display());
        }
        write_atomic(&run.config(), cfg.to_toml().as_bytes()).map_err(err)?;
        let mut f = std::fs::File::create(run.metrics())
            .map_err(|e| TrainError(format!("{}: {e}", run.metrics().display())))?;
        writeln!(f, "{METRICS_HEADER}").map_err(err)?;
    }

    let val_set = if cfg.val_set.is_empty() {
        None
    } else {
        Some(PairSet::from_spec(&cfg.val_set).map_err(err)?)
    };
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(run.metrics())
        .map_err(|e| TrainError(format!("{}: {e}", run.metrics().display())))?;

    let bar = ffem_data::progress::bar(total_steps, "train", "steps", opts.progress);
    bar.set_position(state.step);
    let mut consecutive_bad = 0u32;
    let mut last_loss = f64::NAN;
    let mut verification = None;
    let mut steps_here = 0u64;
    let started = Instant::now();
    let mut images_here = 0u64;
    let size = cfg.image_size;
    'epochs: while state.epoch < cfg.epochs && (cfg.max_steps == 0 || state.step < cfg.max_steps) {
        let batches = pipeline.epoch(state.epoch, state.batch);
        for batch in batches {
            let batch = batch.map_err(err)?;
            let n = batch.len();
            let t0 = Instant::now();
            // Dropout draws from the backend RNG: seeding per step makes resumed runs identical.
            ad.seed(ffem_data::pipeline::mix(cfg.seed, state.step));
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &ad);
            let y = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), &ad);
            let out = module
                .classifier
                .forward(forward_embeddings(&module.model, x, precision), y.clone());
            let loss_tensor = if opts.poison_steps.contains(&state.step) {
                out.loss.clone() * f32::NAN
            } else {
                out.loss.clone()
            };
            let loss: f64 = loss_tensor.clone().into_scalar::<f32>() as f64;
            let correct: i64 = out
                .logits
                .clone()
                .argmax(1)
                .reshape([n])
                .equal(y)
                .int()
                .sum()
                .into_scalar::<i64>();
            let accuracy = correct as f64 / n as f64;
            let lr = state.schedule.lr_at(state.step);
            let mut applied = false;
            if loss.is_finite() {
                let scale = if precision == Precision::F16 {
                    state.loss_scale.scale
                } else {
                    1.0
                };
                let grads =
                    GradientsParams::from_grads((loss_tensor.clone() * scale).backward(), &module);
                let (grads, finite) = if precision == Precision::F32 {
                    (grads, true)
                } else {
                    unscale_and_check(&module, grads, scale)
                };
                if finite {
                    module = optim.step(lr, module, grads);
                    state.loss_scale.clean();
                    applied = true;
                } else {
                    // An f16 overflow in the gradients: a normal event of loss scaling, not divergence.
                    state.loss_scale.overflow();
                    tracing::debug!(
                        "step {}: gradient overflow, loss scale now {}",
                        state.step,
                        state.loss_scale.scale
                    );
                }
            }
            if applied {
                consecutive_bad = 0;
                state.epoch_loss_sum += loss;
                state.epoch_batches += 1;
            } else if loss.is_finite() {
                state.skipped_nonfinite += 1;
            } else {
                consecutive_bad += 1;
                state.skipped_nonfinite += 1;
                tracing::warn!(
                    "step {}: loss is {loss}; step skipped ({consecutive_bad} in a row)",
                    state.step
                );
                if consecutive_bad >= cfg.max_nonfinite {
                    return Err(TrainError(format!(
                        "training diverged: {consecutive_bad} consecutive non-finite losses at step {}. Lower lr (now {lr:.3e}), add warmup_steps, or train in precision = \"f32\"",
                        state.step
                    )));
                }
            }
            last_loss = loss;
            state.step += 1;
            state.batch += 1;
            steps_here += 1;
            images_here += n as u64;
            let ips = n as f64 / t0.elapsed().as_secs_f64();
            let mut val_acc = String::new();
            let eval_now =
                val_set.is_some() && cfg.eval_every > 0 && state.step % cfg.eval_every == 0;
            if eval_now {
                let v = run_verification(
                    &module.model,
                    cfg,
                    val_set.as_ref().expect("checked"),
                    &device,
                )?;
                val_acc = format!("{:.5}", v.accuracy);
                let msg = format!(
                    "step {}: {} accuracy {:.4} +- {:.4}",
                    state.step,
                    val_set.as_ref().expect("checked").name,
                    v.accuracy,
                    v.std
                );
                bar.suspend(|| tracing::info!("{msg}"));
                verification = Some(v);
            }
            writeln!(
                metrics,
                "{},{},{loss:.6},{accuracy:.5},{lr:.6e},{ips:.2},{},{val_acc}",
                state.step, state.epoch, state.skipped_nonfinite
            )
            .map_err(err)?;
            bar.set_message(format!(
                "loss {loss:.3} acc {accuracy:.3} lr {lr:.1e} {ips:.0} img/s"
            ));
            bar.inc(1);
            if cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0 {
                metrics.flush().map_err(err)?;
                save_checkpoint(&run, &module, &optim, &state)?;
            }
            if opts.stop_after.is_some_and(|s| steps_here >= s) {
                metrics.flush().map_err(err)?;
                save_checkpoint(&run, &module, &optim, &state)?;
                break 'epochs;
            }
            if cfg.max_steps > 0 && state.step >= cfg.max_steps {
                break;
            }
        }
        if opts.stop_after.is_some_and(|s| steps_here >= s) {
            break;
        }
        // Epoch end: plateau schedule, model, curves, verification, checkpoint.
        let mean_loss = if state.epoch_batches > 0 {
            state.epoch_loss_sum / state.epoch_batches as f64
        } else {
            f64::NAN
        };
        state.schedule.epoch_end(mean_loss);
        state.epoch += 1;
        state.batch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_batches = 0;
        metrics.flush().map_err(err)?;
        save_model(&run.model(), &model_cfg, &module.model.valid()).map_err(err)?;
        if let Some(set) = &val_set
            && cfg.eval_every == 0
        {
            let v = run_verification(&module.model, cfg, set, &device)?;
            let msg = format!(
                "epoch {}: {} accuracy {:.4} +- {:.4}",
                state.epoch, set.name, v.accuracy, v.std
            );
            bar.suspend(|| tracing::info!("{msg}"));
            verification = Some(v);
        }
        if let Err(e) = draw_curves(&run) {
            tracing::warn!("curves not drawn: {e}");
        }
        save_checkpoint(&run, &module, &optim, &state)?;
    }
    bar.finish_and_clear();
    save_model(&run.model(), &model_cfg, &module.model.valid()).map_err(err)?;
    let _ = draw_curves(&run);
    Ok(TrainSummary {
        steps: state.step,
        last_loss,
        skipped_nonfinite: state.skipped_nonfinite,
        model_dir: run.model(),
        verification,
        images_per_sec: images_here as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

fn run_verification(
    model: &EmbeddingModel,
    cfg: &TrainConfig,
    set: &PairSet,
    device: &Device,
) -> Result<ffem_eval::VerificationReport, TrainError> {
    let embedder = Embedder::new(model, cfg.model(), device);
    let emb = embed_set(&embedder, &set.faces, cfg.align, true, false).map_err(err)?;
    Ok(verify_set(set, &emb))
}

fn save_checkpoint(
    run: &RunDir,
    module: &TrainModule,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<(), TrainError> {
    // Everything goes into a fresh directory that replaces the old one in one rename, so a crash
    // leaves either the previous checkpoint or the new one, never a mixture.
    let staging = ffem_data::atomic::temp_path(&run.checkpoint());
    // Staging left by an interrupted run (another pid) is garbage: this process owns the run.
    ffem_data::atomic::remove_stale_staging(&run.checkpoint()).map_err(err)?;
    std::fs::create_dir_all(&staging)
        .map_err(|e| TrainError(format!("{}: {e}", staging.display())))?;
    let weights = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError(format!("checkpoint weights: {e:?}")))?;
    write_atomic(&staging.join("train.bpk"), &weights).map_err(err)?;
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| TrainError(format!("checkpoint optimiser: {e:?}")))?;
    write_atomic(&staging.join("optim.bpk"), &optim_bytes).map_err(err)?;
    write_atomic(
        &staging.join("state.json"),
        serde_json::to_string_pretty(state)
            .expect("state serialises")
            .as_bytes(),
    )
    .map_err(err)?;
    ffem_data::atomic::replace_dir(&staging, &run.checkpoint()).map_err(err)
}

fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError(format!("{}: {e}", path.display())))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("step")
                || l.split(',')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= step)
        })
        .collect();
    write_atomic(path, (kept.join("\n") + "\n").as_bytes()).map_err(err)
}

/// Reads metrics.csv rows: (step, loss, accuracy, lr, val_accuracy).
pub fn read_metrics(path: &Path) -> Result<Vec<(u64, f64, f64, f64, Option<f64>)>, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError(format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
                f.get(7).and_then(|v| v.parse().ok()),
            ))
        })
        .collect())
}

/// Draws `curves_loss.png` and `curves_accuracy.png` from metrics.csv (smoothed over 20 steps).
pub fn draw_curves(run: &RunDir) -> Result<(), TrainError> {
    let rows = read_metrics(&run.metrics())?;
    if rows.len() < 2 {
        return Ok(());
    }
    let smooth = |vals: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        let k = 20usize;
        (0..vals.len())
            .map(|i| {
                let lo = i.saturating_sub(k - 1);
                let w = &vals[lo..=i];
                (
                    vals[i].0,
                    w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
                )
            })
            .collect()
    };
    use ffem_eval::plot::{Series, line_chart};
    let loss: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.1.is_finite())
        .map(|r| (r.0 as f64, r.1))
        .collect();
    line_chart(
        &run.root.join("curves_loss.png"),
        "training loss",
        "step",
        "loss",
        &[Series {
            name: "loss (20-step mean)",
            points: smooth(loss),
        }],
        false,
    )
    .map_err(err)?;
    let acc: Vec<(f64, f64)> = rows.iter().map(|r| (r.0 as f64, r.2)).collect();
    let mut series = vec![Series {
        name: "train accuracy (20-step mean)",
        points: smooth(acc),
    }];
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.4.map(|v| (r.0 as f64, v)))
        .collect();
    if !val.is_empty() {
        series.push(Series {
            name: "verification accuracy",
            points: val,
        });
    }
    line_chart(
        &run.root.join("curves_accuracy.png"),
        "accuracy",
        "step",
        "accuracy",
        &series,
        false,
    )
    .map_err(err)
}
