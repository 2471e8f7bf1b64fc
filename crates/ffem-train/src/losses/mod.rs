//! Classification losses for face embeddings, each a classifier over identity weights:
//!
//! - L2-constrained softmax: `s * normalize(f) . W + b` (default s = 30).
//! - Margin softmax, insightface's combined form: on the target class `cos(m1 * theta + m2) - m3`
//!   replaces `cos(theta)`, all logits scaled by s. ArcFace = (1, m, 0) with defaults m = 0.5,
//!   s = 64 (the seed's step 2 uses s = 60); CosFace = (1, 0, 0.35); any other triple is the
//!   combined margin. ArcFace clamps cosines and, when `theta + m > pi`, falls back to
//!   `cos(theta) - sin(pi - m) * m` (the `th` / `mm` rule), or with `easy_margin` keeps `cos`
//!   wherever `cos <= 0`.
//!
//! - Sub-center ArcFace (Deng et al., ECCV 2020): K centres per identity, the cosine to an
//!   identity is the largest over its centres, then ArcFace's margin; noisy images settle on a
//!   non-dominant centre instead of pulling the identity's main one.
//! - Proxy-NCA (Movshovitz-Attias et al., ICCV 2017): one proxy per identity,
//!   `-log(exp(-d(x, p_y)) / sum over z != y of exp(-d(x, p_z)))`, with `d` the squared distance of
//!   `scale`-scaled unit vectors (`2 s^2 (1 - cos)`).
//! - Proxy-Anchor (Kim et al., CVPR 2020): each proxy anchors the batch,
//!   `1/|P+| sum over p with positives of log(1 + sum over positives of exp(-alpha (cos - delta)))
//!   + 1/|P| sum over all p of log(1 + sum over negatives of exp(alpha (cos + delta)))`.
//! - SoftTriple (Qian et al., ICCV 2019): K centres per identity; the similarity to an identity is
//!   the softmax(cos / gamma)-weighted mean of its centres' cosines; cross-entropy of
//!   `lambda (S - delta [y])`, plus `tau` times the mean distance between an identity's centres.
//!
//! - Center loss (Wen et al., ECCV 2016): softmax over `f . W + b` plus
//!   `lambda / 2 * mean ||f - c_y||^2`; the centres are not trained by the gradient but moved after
//!   each step by the paper's rule `c_j -= alpha * sum over i with y_i = j of (c_j - f_i) / (1 + n_j)`
//!   ([`ClassifierLoss::update_centres`]).
//! - Triplet loss with selection-bias correction (Yu et al., ECCV 2018), on P x K batches: the
//!   selected triplets of the batch (FaceNet's semi-hard choice: every anchor-positive pair with
//!   the nearest negative beyond the positive, else the farthest negative; or batch-hard: each
//!   anchor's hardest positive and negative, which collapsed from scratch in our study), squared distances of
//!   unit vectors, the hinge `[margin + d(a, p) - d(a, n)]+`, plus `correction` times the squared
//!   distance between the mean triplet feature `(a - p)^2 - (a - n)^2` (per dimension; it sums to
//!   `d(a, p) - d(a, n)`) of the selected triplets and that of all the batch's triplets: the
//!   selected (hard) triplets are a biased sample, and matching their first moment to the
//!   unbiased one is the correction. Its logits (for the accuracy column only) are a soft nearest
//!   neighbour in the batch: `log sum over other images j of class c of exp(32 (cos_ij - 1))`.
//!
//! The seed passed margin and scale in swapped order (margin 60 rad, scale 30): here they are
//! named fields.
//!
//! One file per family: `margin` (the margin softmax family), `proxy` (Proxy-NCA, Proxy-Anchor,
//! SoftTriple), `triplet`, `partial_fc` (identity sampling); L2-softmax and center loss are the
//! plain classifier with a term, here.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

mod common;
mod margin;
mod partial_fc;
mod proxy;
mod triplet;

pub use common::LossOutput;
pub(crate) use common::l2_normalize;
use common::{affine, cross_entropy_rows, mean_of_per_sample};
use margin::Margins;

/// Which loss and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LossConfig {
    /// L2-constrained softmax.
    L2Softmax {
        /// Feature scale.
        scale: f64,
    },
    /// Combined margin (ArcFace, CosFace, or any (m1, m2, m3)).
    Margin {
        /// Multiplicative angular margin.
        m1: f64,
        /// Additive angular margin (ArcFace's m).
        m2: f64,
        /// Additive cosine margin (CosFace's m).
        m3: f64,
        /// Logit scale.
        scale: f64,
        /// Keep the plain cosine wherever it is <= 0.
        easy_margin: bool,
    },
    /// Sub-center ArcFace: ArcFace on the best of `subcenters` centres per identity.
    SubcenterArcface {
        /// Centres per identity (3 in the paper).
        subcenters: usize,
        /// Additive angular margin.
        margin: f64,
        /// Logit scale.
        scale: f64,
    },
    /// Proxy-NCA: NCA against one proxy per identity, the positive left out of the denominator.
    ProxyNca {
        /// Scale of the unit embeddings and proxies (distances grow with its square).
        scale: f64,
    },
    /// SoftTriple: several centres per identity, softly combined.
    SoftTriple {
        /// Centres per identity (10 in the paper).
        centres: usize,
        /// Logit scale lambda (20).
        lambda: f64,
        /// Softmax temperature over an identity's centres gamma (0.1).
        gamma: f64,
        /// Weight of the centre-merging regulariser tau (0.2).
        tau: f64,
        /// Margin delta on the target similarity (0.01).
        delta: f64,
    },
    /// Center loss: softmax plus `lambda / 2` times the squared distance to the label's centre.
    Center {
        /// Weight of the centre term (0.003 in the paper's face experiments).
        lambda: f64,
        /// Centre learning rate (0.5 in the paper).
        alpha: f64,
    },
    /// Triplet loss with the selection-bias correction; needs P x K batches.
    Triplet {
        /// Margin on squared distances of unit vectors (FaceNet's 0.2).
        margin: f64,
        /// Weight of the mean triplet-feature alignment (0 = the plain triplet loss).
        correction: f64,
        /// FaceNet's semi-hard selection (every anchor-positive pair with the nearest negative
        /// beyond the positive); false selects each anchor's hardest positive and negative.
        semi_hard: bool,
    },
    /// Proxy-Anchor: proxies as anchors over the batch.
    ProxyAnchor {
        /// Sharpness (32 in the paper).
        alpha: f64,
        /// Margin (0.1 in the paper).
        delta: f64,
    },
}

impl LossConfig {
    /// Weight rows per identity: the sub-centres of Sub-center ArcFace, else 1.
    pub fn centres_per_class(&self) -> usize {
        match self {
            LossConfig::SubcenterArcface { subcenters, .. } => (*subcenters).max(1),
            LossConfig::SoftTriple { centres, .. } => (*centres).max(1),
            _ => 1,
        }
    }

    /// ArcFace with margin `m` and scale `s`.
    pub fn arcface(m: f64, s: f64) -> Self {
        LossConfig::Margin {
            m1: 1.0,
            m2: m,
            m3: 0.0,
            scale: s,
            easy_margin: false,
        }
    }
    /// CosFace with margin `m` and scale `s`.
    pub fn cosface(m: f64, s: f64) -> Self {
        LossConfig::Margin {
            m1: 1.0,
            m2: 0.0,
            m3: m,
            scale: s,
            easy_margin: false,
        }
    }
}

/// The identity classifier that carries the loss.
#[derive(Module, Debug)]
pub struct ClassifierLoss {
    /// Identity weights (classes x dim).
    pub weight: Param<Tensor<2>>,
    /// Bias (L2-softmax and center loss).
    pub bias: Option<Param<Tensor<1>>>,
    /// Class centres of center loss (classes x dim), moved by [`ClassifierLoss::update_centres`]
    /// rather than by the optimiser.
    pub centres: Option<Param<Tensor<2>>>,
    /// The loss.
    #[module(skip)]
    pub config: LossConfig,
    /// Partial FC (An et al., CVPR 2022): the fraction of identities whose rows take part in each
    /// step (the batch's own identities always do); 1 uses them all.
    #[module(skip)]
    pub sample_rate: f64,
}

impl ClassifierLoss {
    /// A classifier over `classes` identities for `dim`-d embeddings.
    pub fn new(config: LossConfig, classes: usize, dim: usize, device: &Device) -> Self {
        let init = Initializer::XavierUniform { gain: 1.0 };
        let rows = classes * config.centres_per_class();
        ClassifierLoss {
            weight: init.init_with([rows, dim], Some(dim), Some(rows), device),
            bias: matches!(
                config,
                LossConfig::L2Softmax { .. } | LossConfig::Center { .. }
            )
            .then(|| Initializer::Zeros.init([classes], device)),
            centres: matches!(config, LossConfig::Center { .. }).then(|| {
                Initializer::Zeros
                    .init([classes, dim], device)
                    .set_require_grad(false)
            }),
            config,
            sample_rate: 1.0,
        }
    }

    /// With Partial FC at `rate` (0 < rate <= 1; 1 turns it off).
    pub fn with_sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Number of identities.
    pub fn classes(&self) -> usize {
        self.weight.dims()[0] / self.config.centres_per_class()
    }

    /// Cosines of the embeddings to every identity (N, classes): to its best centre when it has
    /// several.
    fn cosines(&self, emb: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
        let eps = 1e-7;
        let cos = l2_normalize(emb)
            .matmul(l2_normalize(weight).transpose())
            .clamp(-1.0 + eps, 1.0 - eps);
        let k = self.config.centres_per_class();
        if k == 1 {
            return cos;
        }
        let [n, rows] = cos.dims();
        cos.reshape([n, rows / k, k])
            .max_dim(2)
            .reshape([n, rows / k])
    }

    /// Whether the loss classifies against per-identity rows (which Partial FC can sample); center
    /// and triplet loss do not.
    pub fn samples_identities(&self) -> bool {
        !matches!(
            self.config,
            LossConfig::Center { .. } | LossConfig::Triplet { .. }
        )
    }

    /// Center loss: moves each centre of the batch's identities towards its images by the paper's
    /// rule, `c_j -= alpha * sum over i with y_i = j of (c_j - f_i) / (1 + n_j)` (`emb` is taken
    /// without gradient). Other losses are returned unchanged.
    pub fn update_centres(mut self, emb: Tensor<2>, labels: Tensor<1, Int>) -> Self {
        let (LossConfig::Center { alpha, .. }, Some(centres)) = (self.config, self.centres.take())
        else {
            return self;
        };
        let classes = centres.dims()[0];
        let emb = emb.detach();
        self.centres = Some(centres.map(|c| {
            let c = c.detach();
            let one_hot: Tensor<2> = labels.one_hot::<2>(classes).float(); // (N, C)
            let counts = one_hot.clone().sum_dim(0).transpose(); // (C, 1)
            let sums = one_hot.transpose().matmul(emb); // (C, D)
            let delta = (c.clone() * counts.clone() - sums) / (counts + 1.0);
            (c - delta * alpha).detach()
        }));
        self
    }

    /// Logits of the loss for embeddings `emb` (N, D) and labels (N).
    pub fn forward(&self, emb: Tensor<2>, labels: Tensor<1, Int>) -> LossOutput {
        if self.sample_rate < 1.0 && self.samples_identities() {
            return self.forward_sampled(emb, labels, self.sample_rate);
        }
        let bias = self.bias.as_ref().map(|b| b.val());
        self.loss_with(self.weight.val(), bias, emb, labels)
    }

    /// The loss against `weight` (rows: identities x centres) and `bias`, labels numbering the
    /// rows' identities: one function per family, in this module's files.
    pub(crate) fn loss_with(
        &self,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        emb: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> LossOutput {
        let classes = weight.dims()[0] / self.config.centres_per_class();
        match self.config {
            LossConfig::L2Softmax { scale } => {
                let z = affine(l2_normalize(emb) * scale, weight, bias);
                mean_of_per_sample(cross_entropy_rows(z.clone(), labels.clone()), z, labels)
            }
            LossConfig::SubcenterArcface { margin, scale, .. } => margin::margin_loss(
                self.cosines(emb, weight),
                labels,
                Margins::arcface(margin, scale),
            ),
            LossConfig::Margin {
                m1,
                m2,
                m3,
                scale,
                easy_margin,
            } => {
                let margins = Margins {
                    m1,
                    m2,
                    m3,
                    scale,
                    easy_margin,
                };
                margin::margin_loss(self.cosines(emb, weight), labels, margins)
            }
            LossConfig::ProxyNca { scale } => {
                proxy::proxy_nca(self.cosines(emb, weight), labels, classes, scale)
            }
            LossConfig::SoftTriple {
                centres,
                lambda,
                gamma,
                tau,
                delta,
            } => proxy::soft_triple(
                emb,
                weight,
                labels,
                classes,
                proxy::SoftTripleParams {
                    centres: centres.max(1),
                    lambda,
                    gamma,
                    tau,
                    delta,
                },
            ),
            LossConfig::Center { lambda, .. } => {
                self.center_loss(emb, weight, bias, labels, lambda)
            }
            LossConfig::Triplet {
                margin,
                correction,
                semi_hard,
            } => {
                let (loss, logits) = triplet::triplet_loss(
                    emb,
                    labels.clone(),
                    classes,
                    margin,
                    correction,
                    semi_hard,
                );
                LossOutput {
                    loss,
                    logits,
                    labels,
                    per_sample: None,
                }
            }
            LossConfig::ProxyAnchor { alpha, delta } => {
                proxy::proxy_anchor(self.cosines(emb, weight), labels, classes, alpha, delta)
            }
        }
    }

    /// Center loss: softmax over `f . W + b` plus `lambda / 2 * ||f - c_y||^2` per image, the
    /// centres taken as constants (they move by [`ClassifierLoss::update_centres`]).
    fn center_loss(
        &self,
        emb: Tensor<2>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        labels: Tensor<1, Int>,
        lambda: f64,
    ) -> LossOutput {
        let z = affine(emb.clone(), weight, bias);
        let ce = cross_entropy_rows(z.clone(), labels.clone());
        let centres = self
            .centres
            .as_ref()
            .expect("center loss has centres")
            .val()
            .detach()
            .select(0, labels.clone());
        let pull = (emb - centres).square().sum_dim(1);
        mean_of_per_sample(ce + pull * (lambda / 2.0), z, labels)
    }
}
