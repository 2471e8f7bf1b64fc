//! The training loop: records -> pipeline -> [`train_step`] -> metrics, with verification and
//! checkpointing at their intervals. Setting a run up (data, model, optimiser, resume or `--init`)
//! and each per-step concern live in their own functions and modules; the loop only sequences
//! them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ffem_data::{AugmentConfig, Pipeline, PipelineConfig, RecordSource};
use ffem_model::embed::Embedder;
use ffem_model::evalset::{PairSet, embed_set, verify_set};
use ffem_model::losses::ClassifierLoss;
use ffem_model::model::{
    EmbeddingModel, ModelConfig, load_model, materialize, save_model, write_atomic,
};

use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::metrics::{MetricsLog, MetricsRow, draw_curves};
use crate::optimizer;
use crate::run_dir::RunDir;
use crate::step::{StepOutcome, TrainModule, train_step};

/// Options that are not part of the model's recipe.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Draw a progress bar.
    pub progress: bool,
    /// Stop (as if interrupted, after writing a checkpoint) after this many steps of this call.
    pub stop_after: Option<u64>,
    /// Initialise the backbone (and a matching head) from a model directory: step 2 from step 1.
    pub init: Option<PathBuf>,
    /// Fault injection for the non-finite guard's tests: the loss of these steps becomes NaN.
    #[doc(hidden)]
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
    /// Mean training throughput of this call.
    pub images_per_sec: f64,
}

/// Identities the classifier needs: `num_identity`, or the manifest's count when it is 0. Fewer
/// classes than the data's labels is an error (the seed silently trained those images against
/// all-zero targets).
fn class_count(cfg: &TrainConfig, source: &RecordSource) -> Result<u64, TrainError> {
    let in_data = source.manifest.as_ref().map(|m| m.identities);
    match (cfg.num_identity, in_data) {
        (0, Some(n)) => Ok(n),
        (0, None) => Err(TrainError::Setup(
            "num_identity = 0 needs a dataset with a manifest (ffem pack); set num_identity".into(),
        )),
        (n, Some(m)) if n < m => Err(TrainError::Setup(format!(
            "num_identity = {n} but {} holds {m} identities: labels >= {n} would have no class. Set num_identity >= {m}",
            cfg.train_data
        ))),
        (n, _) => Ok(n),
    }
}

fn pipeline_config(cfg: &TrainConfig, num_classes: u64) -> PipelineConfig {
    PipelineConfig {
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
    }
}

/// Copies the backbone of the model at `init` into `module`, and the head when it has the same
/// shape; a different backbone is an error.
fn init_from(
    init: &Path,
    module: &mut TrainModule,
    model_cfg: &ModelConfig,
    device: &Device,
) -> Result<(), TrainError> {
    let (init_cfg, init_model) = load_model(init, device)?;
    if init_cfg.backbone != model_cfg.backbone {
        return Err(TrainError::Setup(format!(
            "--init {}: its backbone {:?} differs from this configuration's {:?}",
            init.display(),
            init_cfg.backbone,
            model_cfg.backbone
        )));
    }
    module.model.backbone = init_model.backbone;
    let same_head = init_cfg.head == model_cfg.head
        && init_cfg.embedding_dim == model_cfg.embedding_dim
        && init_cfg.image_size == model_cfg.image_size;
    if same_head {
        module.model.gnap = init_model.gnap;
        module.model.gdc = init_model.gdc;
        module.model.flatten = init_model.flatten;
    }
    tracing::info!(
        "initialised the backbone{} from {}",
        if same_head { " and the head" } else { "" },
        init.display()
    );
    Ok(())
}

/// Verifies the current model on the held-out pair set.
fn verify(
    model: &EmbeddingModel,
    cfg: &TrainConfig,
    set: &PairSet,
    device: &Device,
) -> Result<ffem_eval::VerificationReport, TrainError> {
    let embedder = Embedder::new(model, cfg.model(), device);
    let emb = embed_set(&embedder, &set.faces, cfg.align, true, false)?;
    Ok(verify_set(set, &emb))
}

/// Trains per `cfg` into `run_dir`; with `resume`, continues from the run's checkpoint.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary, TrainError> {
    let run = RunDir::new(run_dir);
    let device = cfg.device.device()?;
    let ad = device.clone().autodiff();
    std::fs::create_dir_all(run.root()).map_err(|e| TrainError::io(run.root(), e))?;

    let source = RecordSource::open(Path::new(&cfg.train_data))?;
    let num_classes = class_count(cfg, &source)?;
    let steps_per_epoch = source.record_count().map(|r| r / cfg.batch_size as u64);
    let pipeline = Pipeline::new(source, pipeline_config(cfg, num_classes))?;
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
    let mut optim: ModuleOptimizer = optimizer::build(cfg);
    let (mut state, mut metrics) = if resume {
        let (m, o, state) = checkpoint::load(&run, module, optim)?;
        (module, optim) = (m, o);
        tracing::info!(
            "resuming at step {} (epoch {}, batch {})",
            state.step,
            state.epoch,
            state.batch
        );
        let metrics = MetricsLog::resume(&run, state.step)?;
        (state, metrics)
    } else {
        if let Some(init) = &opts.init {
            init_from(init, &mut module, &model_cfg, &ad)?;
        }
        write_atomic(&run.config(), cfg.to_toml().as_bytes())?;
        let state = TrainState::start(cfg.schedule_with_total(total_steps));
        (state, MetricsLog::create(&run)?)
    };
    let val_set = match cfg.val_set.as_str() {
        "" => None,
        spec => Some(
            PairSet::from_spec(spec).map_err(|source| TrainError::ValSet {
                spec: spec.to_string(),
                source,
            })?,
        ),
    };

    let bar = ffem_data::progress::bar(total_steps, "train", "steps", opts.progress);
    bar.set_position(state.step);
    let mut consecutive_nonfinite = 0u32;
    let mut last_loss = f64::NAN;
    let mut verification = None;
    let mut steps_here = 0u64;
    let mut images_here = 0u64;
    let started = Instant::now();
    let size = cfg.image_size;
    let stop_here = |steps_here: u64| opts.stop_after.is_some_and(|s| steps_here >= s);
    'epochs: while state.epoch < cfg.epochs && (cfg.max_steps == 0 || state.step < cfg.max_steps) {
        for batch in pipeline.epoch(state.epoch, state.batch) {
            let batch = batch?;
            let n = batch.len();
            let t0 = Instant::now();
            // Dropout draws from the backend RNG: seeding per step makes resumed runs identical.
            ad.seed(ffem_data::pipeline::mix(cfg.seed, state.step));
            let lr = state.schedule.lr_at(state.step);
            let result = train_step(
                module,
                &mut optim,
                Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &ad),
                Tensor::<1, Int>::from_data(TensorData::new(batch.labels, [n]), &ad),
                lr,
                cfg.precision,
                &mut state.loss_scale,
                opts.poison_steps.contains(&state.step),
            );
            module = result.module;
            match result.outcome {
                StepOutcome::Applied => {
                    consecutive_nonfinite = 0;
                    state.epoch_loss_sum += result.loss;
                    state.epoch_batches += 1;
                }
                StepOutcome::GradientOverflow => state.skipped_nonfinite += 1,
                StepOutcome::NonFiniteLoss => {
                    consecutive_nonfinite += 1;
                    state.skipped_nonfinite += 1;
                    bar.suspend(|| {
                        tracing::warn!(
                            "step {}: loss is {}; step skipped ({consecutive_nonfinite} in a row)",
                            state.step,
                            result.loss
                        )
                    });
                    if consecutive_nonfinite >= cfg.max_nonfinite {
                        return Err(TrainError::Diverged {
                            consecutive: consecutive_nonfinite,
                            step: state.step,
                            lr,
                        });
                    }
                }
            }
            last_loss = result.loss;
            state.step += 1;
            state.batch += 1;
            steps_here += 1;
            images_here += n as u64;
            let images_per_sec = n as f64 / t0.elapsed().as_secs_f64();

            let mut val_accuracy = None;
            if let Some(set) = &val_set
                && cfg.eval_every > 0
                && state.step.is_multiple_of(cfg.eval_every)
            {
                let v = verify(&module.model, cfg, set, &device)?;
                bar.suspend(|| {
                    tracing::info!(
                        "step {}: {} accuracy {:.4} +- {:.4}",
                        state.step,
                        set.name,
                        v.accuracy,
                        v.std
                    )
                });
                val_accuracy = Some(v.accuracy);
                verification = Some(v);
            }
            metrics.write(&MetricsRow {
                step: state.step,
                epoch: state.epoch,
                loss: result.loss,
                accuracy: result.accuracy,
                lr,
                images_per_sec,
                skipped_nonfinite: state.skipped_nonfinite,
                val_accuracy,
            })?;
            bar.set_message(format!(
                "loss {:.3} acc {:.3} lr {lr:.1e} {images_per_sec:.0} img/s",
                result.loss, result.accuracy
            ));
            bar.inc(1);
            let checkpoint_due =
                cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
            if checkpoint_due || stop_here(steps_here) {
                metrics.flush()?;
                checkpoint::save(&run, &module, &optim, &state)?;
            }
            if stop_here(steps_here) {
                break 'epochs;
            }
            if cfg.max_steps > 0 && state.step >= cfg.max_steps {
                break;
            }
        }
        // Epoch end: plateau schedule, model, verification, curves, checkpoint.
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
        metrics.flush()?;
        save_model(&run.model(), &model_cfg, &module.model.valid())?;
        if let Some(set) = &val_set
            && cfg.eval_every == 0
        {
            let v = verify(&module.model, cfg, set, &device)?;
            bar.suspend(|| {
                tracing::info!(
                    "epoch {}: {} accuracy {:.4} +- {:.4}",
                    state.epoch,
                    set.name,
                    v.accuracy,
                    v.std
                )
            });
            verification = Some(v);
        }
        if let Err(e) = draw_curves(&run) {
            tracing::warn!("curves not drawn: {e}");
        }
        checkpoint::save(&run, &module, &optim, &state)?;
    }
    bar.finish_and_clear();
    save_model(&run.model(), &model_cfg, &module.model.valid())?;
    if let Err(e) = draw_curves(&run) {
        tracing::warn!("curves not drawn: {e}");
    }
    Ok(TrainSummary {
        steps: state.step,
        last_loss,
        skipped_nonfinite: state.skipped_nonfinite,
        model_dir: run.model(),
        verification,
        images_per_sec: images_here as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}
