//! Training configuration: a flat TOML file whose keys mirror the seed's (`batch_size`,
//! `embedding_dim`, `num_identity`, `lr`, `lr_decay`, ...). Any key can be overridden on the
//! command line with `--set key=value` (the value in TOML syntax). Unknown keys are errors, so a
//! typo never silently falls back to a default.
//!
//! Over 600 lines because it is the schema of one file: every key with its documentation, its
//! default and its check, and the typed names whose errors list the valid values.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::distill::DistillMetric;
use crate::losses::LossConfig;
use ffem_model::ComputeDevice;
use ffem_model::backbones::mobilenet_v3::{Activation, ConvInit, MobileNetV3Config, Variant};
use ffem_model::heads::HeadKind;
use ffem_model::model::ModelConfig;

use crate::precision::Precision;
use crate::schedule::{Schedule, ScheduleKind};

/// A backbone by the name configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackboneName {
    /// MobileNetV3-Large (the seed's network).
    #[serde(rename = "mobilenet_v3_large")]
    MobileNetV3Large,
    /// MobileNetV3-Small.
    #[serde(rename = "mobilenet_v3_small")]
    MobileNetV3Small,
}

/// The classification loss that trains the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossName {
    /// L2-constrained softmax (`scale`): the seed's step 1.
    L2softmax,
    /// Additive angular margin (`margin` in radians, `scale`): the seed's step 2.
    Arcface,
    /// Additive cosine margin (`margin`, `scale`).
    Cosface,
    /// insightface's combined margin `cos(m1 * theta + m2) - m3` (`margins`, `scale`).
    Combined,
    /// Sub-center ArcFace (`subcenters`, `margin`, `scale`): robust to noisy labels.
    #[serde(rename = "subcenter_arcface")]
    SubcenterArcface,
    /// Proxy-NCA (`proxy_nca_scale`).
    #[serde(rename = "proxy_nca")]
    ProxyNca,
    /// Proxy-Anchor (`proxy_anchor_alpha`, `proxy_anchor_delta`).
    #[serde(rename = "proxy_anchor")]
    ProxyAnchor,
    /// SoftTriple (`softtriple_centres`, `_lambda`, `_gamma`, `_tau`, `_delta`).
    #[serde(rename = "softtriple")]
    SoftTriple,
    /// Center loss (`center_lambda`, `center_alpha`): softmax plus a pull to class centres.
    Center,
    /// Triplet loss with selection-bias correction (`triplet_margin`, `triplet_correction`,
    /// `triplet_mining`); needs `sampler = "pk"`.
    Triplet,
    /// Knowledge distillation alone (`teacher`, `distill_metric`): the student matches a
    /// teacher's embeddings; identity labels are not used.
    Distill,
}

/// Which triplets of a batch the triplet loss trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripletMining {
    /// FaceNet's: every anchor-positive pair with the nearest negative beyond the positive.
    SemiHard,
    /// Each anchor's hardest positive and hardest negative (collapsed from scratch in our study).
    BatchHard,
}

/// How batches are drawn (see [`ffem_data::Sampler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerName {
    /// The shuffle buffer.
    Shuffle,
    /// P x K identity-balanced batches (`pk_images` = K per identity).
    Pk,
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// Adam with L2 weight decay added to the gradient (Keras / PyTorch `Adam`).
    Adam,
    /// Adam with decoupled weight decay (PyTorch `AdamW`).
    Adamw,
    /// SGD with `momentum` (dampening 0), optionally Nesterov, L2 weight decay.
    Sgd,
}

/// The learning-rate schedule's shape (see [`crate::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// `lr` throughout.
    Constant,
    /// `lr * lr_decay^(step / lr_decay_steps)`.
    Exponential,
    /// `lr * lr_decay^(milestones passed)`.
    Step,
    /// Cosine from `lr` to `min_lr` over the run.
    Cosine,
    /// Quadratic decay from `lr` to `min_lr` over the run.
    Polynomial,
    /// Multiply by `lr_decay` when the epoch loss stops improving for 2 epochs.
    Plateau,
}

/// Parses a configuration word (`"adamw"`, `"cosine"`, ...) the way the TOML file would, so the
/// command line and the file accept the same names and an unknown one lists the valid ones.
pub fn parse_name<T: serde::de::DeserializeOwned>(word: &str) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::String(word.to_string()))
        .map_err(|e: toml::de::Error| ConfigError(format!("`{word}`: {}", e.message())))
}

/// Every training setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Packed training records (`ffem pack` output).
    pub train_data: String,
    /// Identities the classifier has; 0 takes the count from the dataset's manifest.
    pub num_identity: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Passes over the data.
    pub epochs: u64,
    /// Stop after this many steps (0: no limit).
    pub max_steps: u64,
    /// Input side in pixels.
    pub image_size: usize,
    /// Embedding width.
    pub embedding_dim: usize,
    /// `mobilenet_v3_large` or `mobilenet_v3_small`.
    pub backbone: BackboneName,
    /// `gnap`, `gdc` or `flatten`.
    pub head: HeadKind,
    /// `relu6` or `relu` in the paper's ReLU positions.
    pub activation: Activation,
    /// 3x3 kernels, no SE, no hard-swish.
    pub minimalistic: bool,
    /// Width multiplier.
    pub width: f32,
    /// First convolution's stride.
    pub stem_stride: usize,
    /// How the backbone's convolutions start: `burn` (Kaiming-uniform, the default) or
    /// `torchvision` (Kaiming-normal over PyTorch's fan-out, as torchvision's MobileNetV3; both
    /// measured against the PyTorch reference in docs/distill.md, part 4).
    pub conv_init: ConvInit,
    /// Dropout of the flatten head.
    pub dropout: f64,
    /// `l2softmax`, `arcface`, `cosface`, `combined`, `subcenter_arcface`, `proxy_nca`,
    /// `proxy_anchor`, `softtriple`, `center`, `triplet` or `distill`.
    pub loss: LossName,
    /// Teacher embeddings for distillation: a `.npy` with its `ffem embed` index beside it, one
    /// row per training record (keyed by the record's path). Needed by `loss = "distill"`; with
    /// another loss, adds `distill_weight` times the distillation loss to it.
    pub teacher: String,
    /// A teacher run inside every step instead: a model directory (an ffem model, or an
    /// external one from `ffem import`, which records its pixel convention) whose input side is
    /// the training `image_size`. It embeds the augmented batch the student sees, so the target
    /// follows every augmentation, at one teacher pass per image per epoch. Exclusive with
    /// `teacher`.
    pub teacher_model: String,
    /// Weight of the distillation term added to a classification loss (`teacher` set).
    pub distill_weight: f64,
    /// `cosine` (1 - cos) or `l2` (squared distance to the unit teacher embedding).
    pub distill_metric: DistillMetric,
    /// Logit scale s.
    pub scale: f64,
    /// The margin (ArcFace's additive angle, CosFace's cosine margin).
    pub margin: f64,
    /// Combined margin m1, m2, m3 (for `loss = "combined"`).
    pub margins: [f64; 3],
    /// ArcFace easy margin.
    pub easy_margin: bool,
    /// Centres per identity of `subcenter_arcface` (3 in the paper).
    pub subcenters: usize,
    /// Scale of unit embeddings and proxies in `proxy_nca` (distances grow with its square; 3
    /// gives ProxyNCA++'s temperature of 1/9).
    pub proxy_nca_scale: f64,
    /// `proxy_anchor`'s alpha (32 in the paper).
    pub proxy_anchor_alpha: f64,
    /// `proxy_anchor`'s margin delta (0.1 in the paper).
    pub proxy_anchor_delta: f64,
    /// SoftTriple's centres per identity (10 in the paper).
    pub softtriple_centres: usize,
    /// SoftTriple's logit scale lambda (20).
    pub softtriple_lambda: f64,
    /// SoftTriple's temperature over an identity's centres gamma (0.1).
    pub softtriple_gamma: f64,
    /// SoftTriple's centre-merging regulariser weight tau (0.2).
    pub softtriple_tau: f64,
    /// SoftTriple's margin delta (0.01).
    pub softtriple_delta: f64,
    /// Center loss's weight lambda (0.003 in the paper's face experiments).
    pub center_lambda: f64,
    /// Center loss's centre learning rate alpha (0.5).
    pub center_alpha: f64,
    /// Triplet margin on squared distances of unit embeddings (FaceNet's 0.2).
    pub triplet_margin: f64,
    /// Weight of the triplet selection-bias correction (0: the plain triplet loss).
    pub triplet_correction: f64,
    /// `semi_hard` (FaceNet) or `batch_hard` triplet selection.
    pub triplet_mining: TripletMining,
    /// `shuffle` or `pk` (identity-balanced batches, which `triplet` needs).
    pub sampler: SamplerName,
    /// K, the images per identity in a `pk` batch (batch_size / K identities).
    pub pk_images: usize,
    /// Co-Mining (Wang et al., ICCV 2019): train two peer networks that split each batch into
    /// noisy / disagreed / clean images by their per-image losses (softmax-family, Proxy-NCA or
    /// center loss).
    pub co_mining: bool,
    /// Co-Mining: the share of each batch a network calls noisy once ramped up (the expected
    /// noise rate).
    pub co_mining_drop: f64,
    /// Co-Mining: the fraction of the run over which that share grows from 0.
    pub co_mining_ramp: f64,
    /// Co-Mining: weight of the images both networks find clean (1 for those only the peer does).
    pub co_mining_weight: f64,
    /// Partial FC: the fraction of identities in each step's classifier (the batch's own always
    /// are; 0.1 is typical at hundreds of thousands of identities; 1 = all).
    pub sample_rate: f64,
    /// `adam`, `adamw` or `sgd`.
    pub optimizer: OptimizerName,
    /// Base learning rate.
    pub lr: f64,
    /// Schedule: `constant`, `exponential`, `step`, `cosine`, `polynomial` or `plateau`.
    pub schedule: ScheduleName,
    /// Decay factor (exponential, step, plateau).
    pub lr_decay: f64,
    /// Steps per exponential decay.
    pub lr_decay_steps: u64,
    /// Step schedule milestones.
    pub lr_milestones: Vec<u64>,
    /// Final rate of cosine / polynomial / plateau floor.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD Nesterov momentum (with dampening 0).
    pub nesterov: bool,
    /// L2 weight decay (AdamW: decoupled).
    pub weight_decay: f64,
    /// Seed for initialisation, data order, augmentation and dropout.
    pub seed: u64,
    /// Checkpoint every N steps (and at every epoch end).
    pub checkpoint_every: u64,
    /// Verify on `val_set` every N steps (0: at epoch ends only).
    pub eval_every: u64,
    /// Held-out pair set: `lfw:DIR`, `cfp_fp:DIR`, `cfp_ff:DIR`, `bin:FILE`, or empty.
    pub val_set: String,
    /// Records held for shuffling. 0 (the default) holds the whole dataset when its files total at
    /// most 2 GiB, so that each epoch is a uniform permutation (packs are usually ordered by
    /// identity, and a smaller buffer then fills its first batches with the first identities);
    /// larger datasets get 16,384. 1 keeps the file order.
    pub shuffle_buffer: usize,
    /// Decode threads.
    pub workers: usize,
    /// Box jitter augmentation.
    pub box_jitter: bool,
    /// Horizontal flip augmentation.
    pub flip: bool,
    /// Colour jitter augmentation.
    pub color_jitter: bool,
    /// Cutout augmentation.
    pub cutout: bool,
    /// Chance of each augmentation per image.
    pub augment_probability: f32,
    /// Align faces by landmarks when records carry them.
    pub align: bool,
    /// `f32`, `bf16` or `f16` (reduced precision only on the GPU).
    pub precision: Precision,
    /// Stop after this many consecutive non-finite losses.
    pub max_nonfinite: u32,
    /// `cpu` or `vulkan`.
    pub device: ComputeDevice,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            train_data: String::new(),
            num_identity: 0,
            batch_size: 64,
            epochs: 10,
            max_steps: 0,
            image_size: 112,
            embedding_dim: 512,
            backbone: BackboneName::MobileNetV3Large,
            head: HeadKind::Gnap,
            activation: Activation::Relu6,
            minimalistic: false,
            width: 1.0,
            stem_stride: 2,
            conv_init: ConvInit::Burn,
            dropout: 0.2,
            loss: LossName::Arcface,
            teacher: String::new(),
            teacher_model: String::new(),
            distill_weight: 1.0,
            distill_metric: DistillMetric::Cosine,
            scale: 64.0,
            margin: 0.5,
            margins: [1.0, 0.3, 0.2],
            easy_margin: false,
            subcenters: 3,
            proxy_nca_scale: 3.0,
            proxy_anchor_alpha: 32.0,
            proxy_anchor_delta: 0.1,
            softtriple_centres: 10,
            softtriple_lambda: 20.0,
            softtriple_gamma: 0.1,
            softtriple_tau: 0.2,
            softtriple_delta: 0.01,
            center_lambda: 0.003,
            center_alpha: 0.5,
            triplet_margin: 0.2,
            triplet_correction: 1.0,
            triplet_mining: TripletMining::SemiHard,
            sampler: SamplerName::Shuffle,
            pk_images: 4,
            co_mining: false,
            co_mining_drop: 0.2,
            co_mining_ramp: 0.25,
            co_mining_weight: 2.0,
            sample_rate: 1.0,
            optimizer: OptimizerName::Sgd,
            lr: 0.1,
            schedule: ScheduleName::Constant,
            lr_decay: 0.1,
            lr_decay_steps: 10_000,
            lr_milestones: vec![],
            min_lr: 0.0,
            warmup_steps: 0,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            seed: 0,
            checkpoint_every: 1000,
            eval_every: 0,
            val_set: String::new(),
            shuffle_buffer: 0,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            box_jitter: true,
            flip: true,
            color_jitter: true,
            cutout: true,
            augment_probability: 0.5,
            align: false,
            precision: Precision::F32,
            max_nonfinite: 20,
            device: ComputeDevice::Cpu,
        }
    }
}

/// A configuration problem, in words that say what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Sets `key=value` pairs (values in TOML syntax; bare words are strings) in a TOML table.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<(), ConfigError> {
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("override `{o}` must look like key=value")))?;
        let value = match format!("v = {v}").parse::<toml::Table>() {
            Ok(mut t) => t.remove("v").expect("parsed"),
            Err(_) => toml::Value::String(v.to_string()),
        };
        table.insert(k.trim().to_string(), value);
    }
    Ok(())
}

impl TrainConfig {
    /// Reads a TOML file and applies `key=value` overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        apply_overrides(&mut table, overrides)?;
        Self::from_table(table, path)
    }

    /// Builds and validates a configuration from a TOML table (`path` names its file in errors).
    pub fn from_table(table: toml::Table, path: Option<&Path>) -> Result<Self, ConfigError> {
        let replaced = [
            "teacher_onnx",
            "teacher_channels",
            "teacher_mean",
            "teacher_std",
        ];
        if let Some(old) = replaced.iter().find(|k| table.contains_key(**k)) {
            return Err(ConfigError(format!(
                "{}{old} was replaced by teacher_model = \"DIR\": import the ONNX teacher once with `ffem import TEACHER.onnx --output DIR --onnx-channels ... --onnx-mean ... --onnx-std ...` (the directory records how to feed it) and name the directory",
                path.map(|p| format!("{}: ", p.display()))
                    .unwrap_or_default()
            )));
        }
        let cfg: TrainConfig = table.try_into().map_err(|e: toml::de::Error| {
            ConfigError(format!(
                "{}{}",
                path.map(|p| format!("{}: ", p.display()))
                    .unwrap_or_default(),
                e.message()
            ))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return bad(format!(
                "sample_rate {} must be in (0, 1]: the fraction of identities per step",
                self.sample_rate
            ));
        }
        if self.loss == LossName::Triplet && self.sampler != SamplerName::Pk {
            return bad(
                "loss = \"triplet\" needs identity-balanced batches: set sampler = \"pk\" (and pk_images, 4 by default)"
                    .into(),
            );
        }
        if self.sampler == SamplerName::Pk
            && (self.pk_images < 2 || !self.batch_size.is_multiple_of(self.pk_images))
        {
            return bad(format!(
                "sampler = \"pk\" needs pk_images >= 2 dividing batch_size: {} and {}",
                self.pk_images, self.batch_size
            ));
        }
        if self.sample_rate < 1.0 && matches!(self.loss, LossName::Center | LossName::Triplet) {
            return bad(format!(
                "sample_rate (Partial FC) samples classifier rows; {:?} loss has none to sample: set sample_rate = 1",
                self.loss
            ));
        }
        if self.co_mining
            && matches!(
                self.loss,
                LossName::Triplet | LossName::ProxyAnchor | LossName::SoftTriple
            )
        {
            return bad(format!(
                "co_mining ranks images by their own loss; {:?} loss has none per image: use l2softmax, arcface, cosface, combined, subcenter_arcface, proxy_nca or center",
                self.loss
            ));
        }
        if self.co_mining && !(0.0..1.0).contains(&self.co_mining_drop) {
            return bad(format!(
                "co_mining_drop {} must be in [0, 1): the share of each batch called noisy",
                self.co_mining_drop
            ));
        }
        if self.subcenters == 0 {
            return bad("subcenters must be at least 1".into());
        }
        if self.loss == LossName::Distill && !self.has_teacher() {
            return bad(
                "loss = \"distill\" needs teacher = \"TEACHER.npy\" (embed the training list with the teacher first: ffem embed TEACHER_DIR LIST -o TEACHER.npy) or teacher_model = \"TEACHER_DIR\" (the teacher runs inside every step)"
                    .into(),
            );
        }
        if !self.teacher.is_empty() && !self.teacher_model.is_empty() {
            return bad(format!(
                "teacher = \"{}\" and teacher_model = \"{}\" are both set: pick precomputed embeddings or a teacher run inside the step",
                self.teacher, self.teacher_model
            ));
        }
        if self.has_teacher() && self.co_mining {
            return bad("teacher (distillation) and co_mining cannot be combined: pick one".into());
        }
        let weight_ok = self.distill_weight.is_finite() && self.distill_weight > 0.0;
        if self.has_teacher() && !weight_ok {
            return bad(format!(
                "distill_weight {} must be positive: the weight of the teacher term",
                self.distill_weight
            ));
        }
        if matches!(self.loss, LossName::Arcface | LossName::SubcenterArcface)
            && self.margin > std::f64::consts::PI
        {
            return bad(format!(
                "margin {} rad is more than pi: ArcFace's margin is an angle (0.5 is usual); did you swap margin and scale?",
                self.margin
            ));
        }
        Ok(())
    }

    /// Whether the run distils from a teacher, precomputed (`teacher`) or inside the step
    /// (`teacher_model`).
    pub fn has_teacher(&self) -> bool {
        !self.teacher.is_empty() || !self.teacher_model.is_empty()
    }

    /// The network configuration.
    pub fn model(&self) -> ModelConfig {
        ModelConfig {
            backbone: MobileNetV3Config {
                variant: match self.backbone {
                    BackboneName::MobileNetV3Large => Variant::Large,
                    BackboneName::MobileNetV3Small => Variant::Small,
                },
                activation: self.activation,
                minimalistic: self.minimalistic,
                width: self.width,
                stem_stride: self.stem_stride,
                conv_init: self.conv_init,
            },
            head: self.head,
            embedding_dim: self.embedding_dim,
            image_size: self.image_size,
            dropout: self.dropout,
            align: self.align,
        }
    }

    /// The loss configuration. Pure distillation carries an L2-softmax classifier that takes no
    /// part in the loss (the training module always has one).
    pub fn loss(&self) -> LossConfig {
        match self.loss {
            LossName::L2softmax | LossName::Distill => LossConfig::L2Softmax { scale: self.scale },
            LossName::Cosface => LossConfig::cosface(self.margin, self.scale),
            LossName::Combined => LossConfig::Margin {
                m1: self.margins[0],
                m2: self.margins[1],
                m3: self.margins[2],
                scale: self.scale,
                easy_margin: false,
            },
            LossName::SubcenterArcface => LossConfig::SubcenterArcface {
                subcenters: self.subcenters,
                margin: self.margin,
                scale: self.scale,
            },
            LossName::ProxyNca => LossConfig::ProxyNca {
                scale: self.proxy_nca_scale,
            },
            LossName::SoftTriple => LossConfig::SoftTriple {
                centres: self.softtriple_centres,
                lambda: self.softtriple_lambda,
                gamma: self.softtriple_gamma,
                tau: self.softtriple_tau,
                delta: self.softtriple_delta,
            },
            LossName::Center => LossConfig::Center {
                lambda: self.center_lambda,
                alpha: self.center_alpha,
            },
            LossName::Triplet => LossConfig::Triplet {
                margin: self.triplet_margin,
                correction: self.triplet_correction,
                semi_hard: self.triplet_mining == TripletMining::SemiHard,
            },
            LossName::ProxyAnchor => LossConfig::ProxyAnchor {
                alpha: self.proxy_anchor_alpha,
                delta: self.proxy_anchor_delta,
            },
            LossName::Arcface => LossConfig::Margin {
                m1: 1.0,
                m2: self.margin,
                m3: 0.0,
                scale: self.scale,
                easy_margin: self.easy_margin,
            },
        }
    }

    /// The pipeline's sampler.
    pub fn sampler(&self) -> ffem_data::Sampler {
        match self.sampler {
            SamplerName::Shuffle => ffem_data::Sampler::Shuffle,
            SamplerName::Pk => ffem_data::Sampler::Pk {
                per_identity: self.pk_images,
            },
        }
    }

    /// The schedule, given the run's total step count (for cosine / polynomial).
    pub fn schedule_with_total(&self, total: u64) -> Schedule {
        let kind = match self.schedule {
            ScheduleName::Constant => ScheduleKind::Constant,
            ScheduleName::Exponential => ScheduleKind::Exponential {
                rate: self.lr_decay,
                steps: self.lr_decay_steps,
                staircase: false,
            },
            ScheduleName::Step => ScheduleKind::Step {
                gamma: self.lr_decay,
                milestones: self.lr_milestones.clone(),
            },
            ScheduleName::Cosine => ScheduleKind::Cosine {
                total,
                min_lr: self.min_lr,
            },
            ScheduleName::Polynomial => ScheduleKind::Polynomial {
                total,
                power: 2.0,
                end_lr: self.min_lr,
            },
            ScheduleName::Plateau => ScheduleKind::Plateau {
                factor: self.lr_decay,
                patience: 2,
                min_lr: self.min_lr,
            },
        };
        Schedule::new(self.lr, self.warmup_steps, kind)
    }

    /// The resolved configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_typos_and_swapped_margin() {
        let cfg = TrainConfig::load(
            None,
            &[
                "lr=0.01".into(),
                "loss=arcface".into(),
                "batch_size = 8".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (cfg.lr, cfg.batch_size, cfg.loss),
            (0.01, 8, LossName::Arcface)
        );
        let err = TrainConfig::load(None, &["learning_rate=0.1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `learning_rate`"), "{err}");
        let err = TrainConfig::load(None, &["margin=60".into(), "scale=30".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you swap margin and scale"), "{err}");
        let err = TrainConfig::load(None, &["optimizer=rmsprop".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown variant `rmsprop`, expected one of `adam`, `adamw`, `sgd`"),
            "{err}"
        );
        let err = parse_name::<ScheduleName>("linear")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`constant`") && err.contains("`plateau`"),
            "{err}"
        );
        assert_eq!(
            parse_name::<ComputeDevice>("gpu").unwrap(),
            ComputeDevice::Vulkan
        );
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
        for name in [
            "step1_l2softmax.toml",
            "step2_arcface.toml",
            "cfp_step1.toml",
            "cfp_step2.toml",
        ] {
            let cfg = TrainConfig::load(Some(&Path::new(dir).join(name)), &[])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(cfg.lr > 0.0, "{name}");
        }
        let s2 = TrainConfig::load(Some(&Path::new(dir).join("step2_arcface.toml")), &[]).unwrap();
        assert_eq!(
            (s2.margin, s2.scale, s2.optimizer, s2.nesterov),
            (0.5, 60.0, OptimizerName::Sgd, true)
        );
    }
}
