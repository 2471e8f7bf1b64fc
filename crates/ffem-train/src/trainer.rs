//! The training loop: records -> pipeline -> [`train_step`] -> metrics, with verification and
//! checkpointing at their intervals. Setting a run up (`open`: data, model, optimiser, resume or
//! `--init`) and the hooks around each step (`Session::record`, `after_step`, `end_epoch`) are
//! their own functions; `train` only sequences them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::distill::Distiller;
use crate::losses::ClassifierLoss;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ffem_data::{AugmentConfig, Pipeline, PipelineConfig, RecordSource};
use ffem_infer::embed::Embedder;
use ffem_infer::evalset::{PairSet, embed_set, verify_set};
use ffem_model::backbones::mobilenet_v3::{ConvInit, MobileNetV3Config};
use ffem_model::model::{
    EmbeddingModel, ModelConfig, load_model, materialize, save_model, write_atomic,
};

use crate::checkpoint::{self, TrainState};
use crate::config::{LossName, TrainConfig};
use crate::error::TrainError;
use crate::metrics::{MetricsLog, MetricsRow, draw_curves};
use crate::optimizer;
use crate::run_dir::RunDir;
use crate::step::{DistillTerm, Peer, StepOutcome, StepResult, TrainModule, train_step};
use crate::teacher::Teacher;

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
/// all-zero targets). Pure distillation needs none (one unused row).
fn class_count(cfg: &TrainConfig, source: &RecordSource) -> Result<u64, TrainError> {
    if cfg.loss == LossName::Distill {
        // Labels are not used: any labelling (or none, all 0) trains the same.
        return Ok(1);
    }
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

/// Datasets up to this size are shuffled whole (`shuffle_buffer = 0`): the buffer holds the
/// encoded records, so this is about the memory it takes.
const FULL_SHUFFLE_BYTES: u64 = 2 << 30;

/// The shuffle buffer for `shuffle_buffer = 0`: every record when the data fits in
/// [`FULL_SHUFFLE_BYTES`], else a large buffer (and a warning: an identity-ordered pack then
/// reaches the network in runs of neighbouring identities). The PyTorch reference of
/// `bench/reference_run.sh` measured what a 4,096-record buffer over CFP's identity-ordered 7,000
/// records cost on LFW (docs/distill.md, part 4).
fn shuffle_buffer(cfg: &TrainConfig, source: &RecordSource) -> usize {
    if cfg.shuffle_buffer > 0 {
        return cfg.shuffle_buffer;
    }
    let files = source
        .rec_pack
        .as_ref()
        .map_or(&source.shards[..], std::slice::from_ref);
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if bytes <= FULL_SHUFFLE_BYTES {
        // A buffer that never fills holds the whole epoch and shuffles it at the end.
        return usize::MAX;
    }
    tracing::warn!(
        "{} is {} MiB, too large to shuffle whole: records are drawn through a 16,384-record buffer in file order; if the pack is ordered by identity, repack it shuffled or set shuffle_buffer",
        cfg.train_data,
        bytes >> 20
    );
    16_384
}

fn pipeline_config(cfg: &TrainConfig, source: &RecordSource, num_classes: u64) -> PipelineConfig {
    PipelineConfig {
        image_size: cfg.image_size,
        batch_size: cfg.batch_size,
        shuffle_buffer: shuffle_buffer(cfg, source),
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
        num_classes: (cfg.loss != LossName::Distill).then_some(num_classes),
        sampler: cfg.sampler(),
    }
}

/// The seed a run draws its record order, augmentations and fresh layers from: `seed` itself
/// from scratch, another stream with `--init`. Step 2 of a recipe usually keeps step 1's seed;
/// from the same stream its "fresh" classifier was step 1's starting classifier again (same shape,
/// same draws), which the network trained in step 1 is still aligned with (on CFP, ArcFace then
/// started at loss 31.2 instead of 40.8), and its epochs replayed step 1's batches and
/// augmentations one for one. PyTorch's reference continues one stream through both steps
/// (docs/distill.md, part 4).
fn run_stream_seed(seed: u64, from_init: bool) -> u64 {
    if from_init {
        ffem_data::pipeline::mix(seed, INIT_STREAM)
    } else {
        seed
    }
}

/// The label of the `--init` stream in [`run_stream_seed`]: any fixed number far from small seeds
/// would do; this one gives the streams the runs in docs/distill.md (part 4) were made with.
const INIT_STREAM: u64 = 0x9e56_c388_fb4b_4585;

/// Copies the backbone of the model at `init` into `module`, and the head when it has the same
/// shape; a different backbone is an error.
fn init_from(
    init: &Path,
    module: &mut TrainModule,
    model_cfg: &ModelConfig,
    device: &Device,
) -> Result<(), TrainError> {
    let (init_cfg, init_model) = load_model(init, device)?;
    // How the convolutions started is not part of the architecture: a model trained from
    // torchvision's initialisation continues under a configuration that names burn's, and back.
    let architecture = |c: &MobileNetV3Config| MobileNetV3Config {
        conv_init: ConvInit::default(),
        ..c.clone()
    };
    if architecture(&init_cfg.backbone) != architecture(&model_cfg.backbone) {
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

/// A run in progress: what the loop carries from step to step besides the module itself.
struct Session<'a> {
    cfg: &'a TrainConfig,
    /// Where distillation targets come from.
    teacher: Option<Teacher>,
    run: RunDir,
    /// The device verification runs on (the training device without autodiff).
    device: Device,
    model_cfg: ModelConfig,
    optim: ModuleOptimizer,
    state: TrainState,
    metrics: MetricsLog,
    val_set: Option<PairSet>,
    bar: indicatif::ProgressBar,
    consecutive_nonfinite: u32,
    /// The last verification and the step it was made at: the summary and the threshold saved
    /// with the model must describe the final weights, not those of the last `eval_every` multiple.
    verification: Option<(u64, ffem_eval::VerificationReport)>,
    /// Steps of the whole run (0 when the dataset does not say how many records it has).
    total_steps: u64,
}

/// Sets a run up: data, model, optimiser; then the checkpoint (`resume`) or `--init` and fresh
/// run files. Returns the session, the module, the pipeline and the run's total step count.
fn open<'a>(
    cfg: &'a TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<(Session<'a>, TrainModule, Pipeline), TrainError> {
    let run = RunDir::new(run_dir);
    let device = cfg.device.device()?;
    let ad = device.clone().autodiff();
    std::fs::create_dir_all(run.root()).map_err(|e| TrainError::io(run.root(), e))?;

    let source = RecordSource::open(Path::new(&cfg.train_data))?;
    let num_classes = class_count(cfg, &source)?;
    let steps_per_epoch = source.record_count().map(|r| r / cfg.batch_size as u64);
    let total_steps = match (steps_per_epoch, cfg.max_steps) {
        (_, m) if m > 0 => m.min(steps_per_epoch.map_or(m, |s| s * cfg.epochs)),
        (Some(s), _) => s * cfg.epochs,
        (None, _) => 0,
    };

    let teacher = Teacher::open(cfg, &source)?;
    let model_cfg = cfg.model();
    let stream_seed = run_stream_seed(cfg.seed, opts.init.is_some());
    ad.seed(stream_seed);
    let classifier = || {
        ClassifierLoss::new(cfg.loss(), num_classes as usize, cfg.embedding_dim, &ad)
            .with_sample_rate(cfg.sample_rate)
    };
    let mut module = TrainModule {
        model: model_cfg.init(&ad),
        classifier: classifier(),
        // Drawn after the first network from the same seeded RNG: a different start.
        peer: cfg.co_mining.then(|| Peer {
            model: model_cfg.init(&ad),
            classifier: classifier(),
            clean_weight: cfg.co_mining_weight,
        }),
        distill: teacher.as_ref().map(|t| DistillTerm {
            head: Distiller::new(cfg.embedding_dim, t.dim(), cfg.distill_metric, &ad),
            weight: cfg.distill_weight,
            only: cfg.loss == LossName::Distill,
        }),
    };
    materialize(&module);
    let mut optim = optimizer::build(cfg);
    let (state, metrics) = if resume {
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
        let state = TrainState {
            stream_seed: Some(stream_seed),
            ..TrainState::start(cfg.schedule_with_total(total_steps))
        };
        (state, MetricsLog::create(&run)?)
    };
    let pipeline_cfg = PipelineConfig {
        seed: state.stream_seed.unwrap_or(cfg.seed),
        ..pipeline_config(cfg, &source, num_classes)
    };
    let pipeline = Pipeline::new(source, pipeline_cfg)?;
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
    let session = Session {
        cfg,
        teacher,
        run,
        device,
        model_cfg,
        optim,
        state,
        metrics,
        val_set,
        bar,
        consecutive_nonfinite: 0,
        verification: None,
        total_steps,
    };
    Ok((session, module, pipeline))
}

impl Session<'_> {
    /// Co-Mining's share of each batch called noisy at `step`: growing linearly from 0 to
    /// `co_mining_drop` over the first `co_mining_ramp` of the run, while the networks learn the
    /// easy (mostly clean) images first.
    fn drop_rate(&self, step: u64) -> f64 {
        let ramp = (self.cfg.co_mining_ramp * self.total_steps as f64).max(1.0);
        self.cfg.co_mining_drop * (step as f64 / ramp).min(1.0)
    }

    /// Whether the configured epochs or step limit are done.
    fn finished(&self) -> bool {
        self.state.epoch >= self.cfg.epochs
            || (self.cfg.max_steps > 0 && self.state.step >= self.cfg.max_steps)
    }

    /// Books a step's outcome; too many non-finite losses in a row end the run.
    fn record(&mut self, result: &StepResult, lr: f64) -> Result<(), TrainError> {
        let state = &mut self.state;
        match result.outcome {
            StepOutcome::Applied => {
                self.consecutive_nonfinite = 0;
                state.epoch_loss_sum += result.loss;
                state.epoch_batches += 1;
            }
            StepOutcome::GradientOverflow => state.skipped_nonfinite += 1,
            StepOutcome::NonFiniteLoss => {
                self.consecutive_nonfinite += 1;
                state.skipped_nonfinite += 1;
                let (step, run) = (state.step, self.consecutive_nonfinite);
                self.bar.suspend(|| {
                    tracing::warn!(
                        "step {step}: loss is {}; step skipped ({run} in a row)",
                        result.loss
                    )
                });
                if run >= self.cfg.max_nonfinite {
                    return Err(TrainError::Diverged {
                        consecutive: run,
                        step,
                        lr,
                    });
                }
            }
        }
        state.step += 1;
        state.batch += 1;
        Ok(())
    }

    /// Verifies on the held-out set and logs it.
    fn verify(&mut self, model: &EmbeddingModel, when: &str) -> Result<f64, TrainError> {
        let set = self
            .val_set
            .as_ref()
            .expect("verify is called with a val_set");
        let embedder = Embedder::new(model, self.model_cfg.clone(), &self.device);
        let emb = embed_set(&embedder, &set.faces, self.cfg.align, true, false)?;
        let v = verify_set(set, &emb);
        self.bar.suspend(|| {
            tracing::info!(
                "{when}: {} accuracy {:.4} +- {:.4}",
                set.name,
                v.accuracy,
                v.std
            )
        });
        let accuracy = v.accuracy;
        self.verification = Some((self.state.step, v));
        Ok(accuracy)
    }

    /// After each step: verification when due, the metrics row, progress, a checkpoint when due
    /// (or when `stop` asks for one).
    fn after_step(
        &mut self,
        result: &StepResult,
        lr: f64,
        images_per_sec: f64,
        stop: bool,
    ) -> Result<(), TrainError> {
        let step = self.state.step;
        let every = |n: u64| n > 0 && step.is_multiple_of(n);
        let val_accuracy = if self.val_set.is_some() && every(self.cfg.eval_every) {
            Some(self.verify(&result.module.model, &format!("step {step}"))?)
        } else {
            None
        };
        self.metrics.write(&MetricsRow {
            step,
            epoch: self.state.epoch,
            loss: result.loss,
            accuracy: result.accuracy,
            lr,
            images_per_sec,
            skipped_nonfinite: self.state.skipped_nonfinite,
            val_accuracy,
        })?;
        self.bar.set_message(format!(
            "loss {:.3} acc {:.3} lr {lr:.1e} {images_per_sec:.0} img/s",
            result.loss, result.accuracy
        ));
        self.bar.inc(1);
        if every(self.cfg.checkpoint_every) || stop {
            self.metrics.flush()?;
            checkpoint::save(&self.run, &result.module, &self.optim, &self.state)?;
        }
        Ok(())
    }

    /// At each epoch's end: the plateau schedule, the model, verification (when not per step),
    /// curves and a checkpoint.
    fn end_epoch(&mut self, module: &TrainModule) -> Result<(), TrainError> {
        let state = &mut self.state;
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
        self.metrics.flush()?;
        save_model(&self.run.model(), &self.model_cfg, &module.model.valid())?;
        if self.val_set.is_some() && self.cfg.eval_every == 0 {
            let epoch = self.state.epoch;
            self.verify(&module.model, &format!("epoch {epoch}"))?;
        }
        if let Err(e) = draw_curves(&self.run) {
            tracing::warn!("curves not drawn: {e}");
        }
        checkpoint::save(&self.run, module, &self.optim, &self.state)
    }
}

/// Saves the threshold a verification chose with the model (flip TTA, as verification embeds).
pub fn save_threshold(
    model_dir: &Path,
    set: &str,
    v: &ffem_eval::VerificationReport,
) -> Result<(), TrainError> {
    ffem_infer::threshold::SavedThreshold {
        set: set.to_string(),
        threshold_cosine: v.threshold_cosine as f32,
        threshold_squared_l2: v.threshold_mean as f32,
        accuracy: Some(v.accuracy),
        flip: true,
    }
    .save(model_dir)?;
    Ok(())
}

/// Trains per `cfg` into `run_dir`; with `resume`, continues from the run's checkpoint.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary, TrainError> {
    let (mut session, mut module, pipeline) = open(cfg, run_dir, resume, opts)?;
    let ad = session.device.clone().autodiff();
    let (mut steps_here, mut images_here, mut last_loss) = (0u64, 0u64, f64::NAN);
    let started = Instant::now();
    let size = cfg.image_size;
    'epochs: while !session.finished() {
        for batch in pipeline.epoch(session.state.epoch, session.state.batch) {
            let batch = batch?;
            let n = batch.len();
            // The rate counts the teacher's time too: run inside the step, it is most of it.
            let t0 = Instant::now();
            let teacher = match &session.teacher {
                Some(t) => Some(t.targets(&batch, &ad)?),
                None => None,
            };
            let step = session.state.step;
            // Dropout draws from the backend RNG: seeding per step makes resumed runs identical.
            ad.seed(ffem_data::pipeline::mix(cfg.seed, step));
            let lr = session.state.schedule.lr_at(step);
            let drop_rate = session.drop_rate(step);
            let result = train_step(
                module,
                &mut session.optim,
                Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &ad),
                Tensor::<1, Int>::from_data(TensorData::new(batch.labels, [n]), &ad),
                teacher,
                lr,
                cfg.precision,
                &mut session.state.loss_scale,
                opts.poison_steps.contains(&step),
                drop_rate,
            );
            session.record(&result, lr)?;
            last_loss = result.loss;
            steps_here += 1;
            images_here += n as u64;
            let stop = opts.stop_after.is_some_and(|s| steps_here >= s);
            let images_per_sec = n as f64 / t0.elapsed().as_secs_f64();
            session.after_step(&result, lr, images_per_sec, stop)?;
            module = result.module;
            if stop {
                break 'epochs;
            }
            if session.finished() {
                break;
            }
        }
        session.end_epoch(&module)?;
    }
    let verified_at = session.verification.as_ref().map(|(step, _)| *step);
    if session.val_set.is_some() && verified_at != Some(session.state.step) {
        // The last step was not an `eval_every` multiple (or the run stopped early).
        let step = session.state.step;
        session.verify(&module.model, &format!("step {step} (final)"))?;
    }
    session.bar.finish_and_clear();
    save_model(
        &session.run.model(),
        &session.model_cfg,
        &module.model.valid(),
    )?;
    if let (Some((_, v)), Some(set)) = (&session.verification, &session.val_set) {
        // `ffem verify` works right after training; `ffem eval` replaces it.
        save_threshold(&session.run.model(), &set.name, v)?;
    }
    if let Err(e) = draw_curves(&session.run) {
        tracing::warn!("curves not drawn: {e}");
    }
    Ok(TrainSummary {
        steps: session.state.step,
        last_loss,
        skipped_nonfinite: session.state.skipped_nonfinite,
        model_dir: session.run.model(),
        verification: session.verification.map(|(_, v)| v),
        images_per_sec: images_here as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shuffle_buffer_holds_a_small_dataset_whole_and_a_large_one_in_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small.tfrecord");
        std::fs::write(&small, vec![0u8; 4096]).expect("write");
        let mut cfg = TrainConfig::default();
        let source = RecordSource::open(&small).expect("open");
        assert_eq!(shuffle_buffer(&cfg, &source), usize::MAX);
        // Sparse: its length says 3 GiB without taking the disk space.
        let large = dir.path().join("large.tfrecord");
        std::fs::File::create(&large)
            .and_then(|f| f.set_len(3 << 30))
            .expect("sparse file");
        let source = RecordSource::open(&large).expect("open");
        assert_eq!(shuffle_buffer(&cfg, &source), 16_384);
        cfg.shuffle_buffer = 7;
        assert_eq!(shuffle_buffer(&cfg, &source), 7);
    }
}
