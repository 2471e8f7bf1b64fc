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

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

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

/// Loss value and logits of one batch.
pub struct LossOutput {
    /// The labels as the logits' columns number them (the batch's labels, or with Partial FC
    /// their positions among the sampled identities).
    pub labels: Tensor<1, Int>,
    /// Mean cross-entropy, shape [1].
    pub loss: Tensor<1>,
    /// Logits without margin (for accuracy), (N, classes).
    pub logits: Tensor<2>,
    /// Each image's own loss (N, 1), whose mean is `loss`, for losses that are a mean over
    /// images (the softmax family, Proxy-NCA, center loss); Co-Mining ranks images by it.
    pub per_sample: Option<Tensor<2>>,
}

/// Each row divided by its L2 norm (floored at 1e-12, so a zero row stays zero).
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
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

    /// Partial FC: the loss over the batch's identities plus a random share of the others,
    /// `ceil(rate x classes)` in all, drawn from the backend's RNG (seeded per step by the
    /// trainer, so runs repeat). Only the sampled rows receive gradient. Public so that tests can
    /// run the sampled path at `rate = 1`, where it must equal the plain loss.
    pub fn forward_sampled(&self, emb: Tensor<2>, labels: Tensor<1, Int>, rate: f64) -> LossOutput {
        let device = emb.device();
        let classes = self.classes();
        let k = self.config.centres_per_class();
        let host_labels: Vec<i64> = labels
            .to_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer labels");
        let scores: Vec<f32> =
            Tensor::<1>::random([classes], Distribution::Uniform(0.0, 1.0), &device)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 scores");
        let mut keep = vec![false; classes];
        for &l in &host_labels {
            keep[l as usize] = true;
        }
        let positives = keep.iter().filter(|k| **k).count();
        let wanted = ((rate * classes as f64).ceil() as usize).clamp(positives, classes);
        let mut others: Vec<usize> = (0..classes).filter(|c| !keep[*c]).collect();
        others.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        for &c in others.iter().take(wanted - positives) {
            keep[c] = true;
        }
        // Sampled identities in class order, each label's position among them, their rows.
        let sampled: Vec<usize> = (0..classes).filter(|c| keep[*c]).collect();
        let mut position = vec![0i64; classes];
        for (p, &c) in sampled.iter().enumerate() {
            position[c] = p as i64;
        }
        let rows: Vec<i64> = sampled
            .iter()
            .flat_map(|&c| (c * k..c * k + k).map(|r| r as i64))
            .collect();
        let n_rows = rows.len();
        let index = |v: Vec<i64>, len: usize| {
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), &device)
        };
        let weight = self.weight.val().select(0, index(rows, n_rows));
        let bias = self.bias.as_ref().map(|b| {
            b.val().select(
                0,
                index(sampled.iter().map(|&c| c as i64).collect(), sampled.len()),
            )
        });
        let n = host_labels.len();
        let remapped = index(
            host_labels.iter().map(|&l| position[l as usize]).collect(),
            n,
        );
        self.loss_with(weight, bias, emb, remapped)
    }

    /// The loss against `weight` (rows: identities x centres) and `bias`, labels numbering the
    /// rows' identities.
    fn loss_with(
        &self,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        emb: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> LossOutput {
        let classes = weight.dims()[0] / self.config.centres_per_class();
        let n = emb.dims()[0];
        let (logits, plain) = match self.config {
            LossConfig::L2Softmax { scale } => {
                let z = affine(l2_normalize(emb) * scale, weight, bias);
                (z.clone(), z)
            }
            LossConfig::SubcenterArcface { margin, scale, .. } => {
                let arcface = Margins {
                    m1: 1.0,
                    m2: margin,
                    m3: 0.0,
                    scale,
                    easy_margin: false,
                };
                margin_logits(self.cosines(emb, weight.clone()), labels.clone(), arcface)
            }
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
                margin_logits(self.cosines(emb, weight.clone()), labels.clone(), margins)
            }
            LossConfig::ProxyNca { scale } => {
                let cos = self.cosines(emb, weight.clone());
                // -d(x, p) = 2 s^2 (cos - 1); the positive is left out of the normaliser.
                let neg_dist = (cos.clone() - 1.0) * (2.0 * scale * scale);
                let one_hot: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
                let positive = neg_dist.clone().gather(1, labels.clone().reshape([n, 1]));
                let others = neg_dist.mask_fill(one_hot.bool(), f32::NEG_INFINITY);
                return mean_of_per_sample(logsumexp_rows(others) - positive, cos, labels);
            }
            LossConfig::SoftTriple {
                centres: k,
                lambda,
                gamma,
                tau,
                delta,
            } => {
                let k = k.max(1);
                let unit_w = l2_normalize(weight);
                let cos = l2_normalize(emb)
                    .matmul(unit_w.clone().transpose())
                    .reshape([n, classes, k]);
                let weights = softmax(cos.clone() / gamma, 2);
                let relaxed = (weights * cos).sum_dim(2).reshape([n, classes]); // (N, C)
                let one_hot: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
                let logits = (relaxed.clone() - one_hot * delta) * lambda;
                let ce = cross_entropy_rows(logits, labels.clone()).mean();
                let loss = if k > 1 && tau > 0.0 {
                    // Mean distance between two centres of one identity, over t < t' pairs, as
                    // the authors' code writes it (sqrt(2 + 1e-5 - 2 cos)).
                    let d = unit_w.dims()[1];
                    let per_class = unit_w.reshape([classes, k, d]);
                    let sim = per_class.clone().matmul(per_class.swap_dims(1, 2)); // (C, K, K)
                    let dist = (sim.neg() * 2.0 + (2.0 + 1e-5)).clamp_min(0.0).sqrt();
                    let upper = Tensor::<2>::ones([k, k], &dist.device())
                        .triu(1)
                        .unsqueeze_dim::<3>(0);
                    let reg = (dist * upper).sum() / (classes * k * (k - 1)) as f64;
                    ce + reg * tau
                } else {
                    ce
                };
                return LossOutput {
                    loss: loss.reshape([1]),
                    logits: relaxed,
                    labels,
                    per_sample: None,
                };
            }
            LossConfig::Center { lambda, .. } => {
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
                return mean_of_per_sample(ce + pull * (lambda / 2.0), z, labels);
            }
            LossConfig::Triplet {
                margin,
                correction,
                semi_hard,
            } => {
                let (loss, logits) =
                    triplet_loss(emb, labels.clone(), classes, margin, correction, semi_hard);
                return LossOutput {
                    loss,
                    logits,
                    labels,
                    per_sample: None,
                };
            }
            LossConfig::ProxyAnchor { alpha, delta } => {
                let cos = self.cosines(emb, weight.clone());
                let positive: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
                let negative = positive.clone().neg() + 1.0;
                let pos_exp = ((cos.clone() - delta) * (-alpha)).exp() * positive.clone();
                let neg_exp = ((cos.clone() + delta) * alpha).exp() * negative;
                let with_positives = positive.sum_dim(0).greater_elem(0.0).float(); // (1, C)
                let pos_term = ((pos_exp.sum_dim(0) + 1.0).log() * with_positives.clone()).sum()
                    / with_positives.sum().clamp_min(1.0);
                let neg_term = (neg_exp.sum_dim(0) + 1.0).log().sum() / classes as f64;
                return LossOutput {
                    loss: (pos_term + neg_term).reshape([1]),
                    logits: cos,
                    labels,
                    per_sample: None,
                };
            }
        };
        mean_of_per_sample(cross_entropy_rows(logits, labels.clone()), plain, labels)
    }
}

/// `x W^T (+ b)`: the plain linear classifier of L2-softmax and center loss.
fn affine(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    let z = x.matmul(weight.transpose());
    match bias {
        Some(b) => z + b.unsqueeze_dim(0),
        None => z,
    }
}

/// Each row's cross-entropy against its label, (N, C) -> (N, 1).
fn cross_entropy_rows(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<2> {
    let n = labels.dims()[0];
    log_softmax(logits, 1)
        .gather(1, labels.reshape([n, 1]))
        .neg()
}

/// The output of a loss that is the mean of per-image losses (N, 1), which Co-Mining ranks.
fn mean_of_per_sample(
    per_sample: Tensor<2>,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
) -> LossOutput {
    LossOutput {
        loss: per_sample.clone().mean().reshape([1]),
        logits,
        labels,
        per_sample: Some(per_sample),
    }
}

/// Triplet loss (semi-hard or batch-hard selection) with the selection-bias correction (see the
/// module's notes): returns the loss [1] and soft nearest-neighbour logits (N, classes).
fn triplet_loss(
    emb: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    margin: f64,
    correction: f64,
    semi_hard: bool,
) -> (Tensor<1>, Tensor<2>) {
    let x = l2_normalize(emb);
    let [n, _] = x.dims();
    let device = x.device();
    let sq = x.clone().square(); // (N, D)
    let norms = sq.clone().sum_dim(1); // (N, 1)
    let gram = x.clone().matmul(x.clone().transpose());
    let dist = (norms.clone() + norms.transpose() - gram.clone() * 2.0).clamp_min(0.0);
    let rows = labels.clone().reshape([n, 1]).repeat_dim(1, n);
    let same = rows.clone().equal(rows.transpose()).float();
    let eye = Tensor::<2>::eye(n, &device);
    let positive = same.clone() - eye.clone();
    let negative = same.neg() + 1.0;
    let count_pos = positive.clone().sum_dim(1); // (N, 1)
    let count_neg = negative.clone().sum_dim(1);
    let has_negative = count_neg.clone().greater_elem(0.0).float(); // (N, 1)
    // The selected triplets as rows of anchors, positives, negatives and a 0/1 weight; the
    // selection itself carries no gradient, the distances to the chosen images do.
    let (xa, xp, xn, weight) = if semi_hard {
        // Every (anchor, positive) pair, with the nearest negative farther than the positive
        // (FaceNet's semi-hard choice), or the farthest negative when none is.
        let d = x.dims()[1];
        let d_ap = dist.clone().reshape([n, n, 1]).repeat_dim(2, n);
        let d_an = dist.clone().reshape([n, 1, n]).repeat_dim(1, n);
        let negative3 = negative.clone().reshape([n, 1, n]).repeat_dim(1, n);
        let outside = d_an.clone().greater(d_ap).float() * negative3;
        let has_outside = outside.clone().sum_dim(2).greater_elem(0.0); // (N, N, 1)
        let nearest_outside = d_an
            .mask_fill(outside.lower_equal_elem(0.5), f32::INFINITY)
            .argmin(2);
        let farthest = dist
            .clone()
            .mask_fill(negative.clone().lower_equal_elem(0.5), -1.0)
            .argmax(1)
            .reshape([n, 1, 1])
            .repeat_dim(1, n);
        let chosen = farthest
            .mask_where(has_outside, nearest_outside)
            .reshape([n * n]);
        let xa = x
            .clone()
            .reshape([n, 1, d])
            .repeat_dim(1, n)
            .reshape([n * n, d]);
        let xp = x
            .clone()
            .reshape([1, n, d])
            .repeat_dim(0, n)
            .reshape([n * n, d]);
        let weight = (positive.clone() * has_negative).reshape([n * n, 1]);
        (xa, xp, x.clone().select(0, chosen), weight)
    } else {
        // Each anchor's hardest positive and hardest negative.
        let hardest_positive = dist
            .clone()
            .mask_fill(positive.clone().lower_equal_elem(0.5), -1.0)
            .argmax(1)
            .reshape([n]);
        let hardest_negative = dist
            .mask_fill(negative.clone().lower_equal_elem(0.5), f32::INFINITY)
            .argmin(1)
            .reshape([n]);
        let weight = count_pos.clone().greater_elem(0.0).float() * has_negative;
        let xp = x.clone().select(0, hardest_positive);
        let xn = x.clone().select(0, hardest_negative);
        (x.clone(), xp, xn, weight)
    };
    let n_valid = weight.clone().sum().clamp_min(1.0).reshape([1, 1]);
    let feature = (xa.clone() - xp).square() - (xa - xn).square(); // (M, D)
    let hinge = (feature.clone().sum_dim(1) + margin).clamp_min(0.0) * weight.clone();
    let mut loss = hinge.sum().reshape([1, 1]) / n_valid.clone();
    if correction > 0.0 {
        let selected_mean = (feature * weight).sum_dim(0) / n_valid; // (1, D)
        // Sum over every (positive p, negative q) of anchor i of (x_i - x_p)^2 - (x_i - x_q)^2,
        // from sums over positives and negatives: |Q_i| S+_i - |P_i| S-_i.
        let spread = |mask: Tensor<2>, count: Tensor<2>| {
            sq.clone() * count - x.clone() * mask.clone().matmul(x.clone()) * 2.0
                + mask.matmul(sq.clone())
        };
        let pos_sum = spread(positive.clone(), count_pos.clone());
        let neg_sum = spread(negative.clone(), count_neg.clone());
        let total = (pos_sum * count_neg.clone() - neg_sum * count_pos.clone()).sum_dim(0);
        let triplets = (count_pos * count_neg).sum().clamp_min(1.0).reshape([1, 1]);
        let all_mean = total / triplets;
        let gap = (selected_mean - all_mean).square().sum().reshape([1, 1]);
        loss = loss + gap * correction;
    }
    let one_hot: Tensor<2> = labels.one_hot::<2>(classes).float();
    let near = ((gram - 1.0) * 32.0).exp() * (eye.neg() + 1.0);
    let logits = (near.matmul(one_hot) + 1e-30).log();
    (loss.reshape([1]), logits)
}

/// `log(sum(exp(row)))` of each row, (N, C) -> (N, 1), stable for rows holding -inf.
fn logsumexp_rows(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1);
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// The combined-margin parameters, as [`LossConfig::Margin`] names them.
#[derive(Debug, Clone, Copy)]
struct Margins {
    m1: f64,
    m2: f64,
    m3: f64,
    scale: f64,
    easy_margin: bool,
}

/// insightface's combined margin `cos(m1 theta + m2) - m3` on the target cosine (ArcFace's
/// `th` / `mm` rule or `easy_margin` when `m1 = 1, m3 = 0`), all logits scaled: returns (logits
/// with margin, plain scaled cosines).
fn margin_logits(
    cos: Tensor<2>,
    labels: Tensor<1, Int>,
    margin: Margins,
) -> (Tensor<2>, Tensor<2>) {
    let Margins {
        m1,
        m2,
        m3,
        scale,
        easy_margin,
    } = margin;
    let [n, classes] = cos.dims();
    let target = cos.clone().gather(1, labels.clone().reshape([n, 1])); // (N, 1)
    let phi = if m1 == 1.0 && m3 == 0.0 {
        let sin = (target.clone().square().neg() + 1.0).clamp_min(0.0).sqrt();
        let phi = target.clone() * m2.cos() - sin * m2.sin();
        if easy_margin {
            phi.mask_where(target.clone().lower_equal_elem(0.0), target.clone())
        } else {
            let th = (std::f64::consts::PI - m2).cos();
            let mm = (std::f64::consts::PI - m2).sin() * m2;
            phi.mask_where(target.clone().lower_equal_elem(th), target.clone() - mm)
        }
    } else {
        let theta = target.clone().acos();
        (theta * m1 + m2).cos() - m3
    };
    let one_hot: Tensor<2> = labels.one_hot::<2>(classes).float();
    let z = (cos.clone() + one_hot * (phi - target)) * scale;
    (z, cos * scale)
}
