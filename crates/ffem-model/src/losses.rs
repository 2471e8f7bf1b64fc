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
//!
//! The seed passed margin and scale in swapped order (margin 60 rad, scale 30): here they are
//! named fields.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};
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
    /// Bias (L2-softmax only).
    pub bias: Option<Param<Tensor<1>>>,
    /// The loss.
    #[module(skip)]
    pub config: LossConfig,
}

/// Loss value and logits of one batch.
pub struct LossOutput {
    /// Mean cross-entropy, shape [1].
    pub loss: Tensor<1>,
    /// Logits without margin (for accuracy), (N, classes).
    pub logits: Tensor<2>,
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
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
            bias: matches!(config, LossConfig::L2Softmax { .. })
                .then(|| Initializer::Zeros.init([classes], device)),
            config,
        }
    }

    /// Number of identities.
    pub fn classes(&self) -> usize {
        self.weight.dims()[0] / self.config.centres_per_class()
    }

    /// Cosines of the embeddings to every identity (N, classes): to its best centre when it has
    /// several.
    fn cosines(&self, emb: Tensor<2>) -> Tensor<2> {
        let eps = 1e-7;
        let cos = l2_normalize(emb)
            .matmul(l2_normalize(self.weight.val()).transpose())
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

    /// Logits of the loss for embeddings `emb` (N, D) and labels (N).
    pub fn forward(&self, emb: Tensor<2>, labels: Tensor<1, Int>) -> LossOutput {
        let classes = self.classes();
        let n = emb.dims()[0];
        let (logits, plain) = match self.config {
            LossConfig::L2Softmax { scale } => {
                let mut z = (l2_normalize(emb) * scale).matmul(self.weight.val().transpose());
                if let Some(b) = &self.bias {
                    z = z + b.val().unsqueeze_dim(0);
                }
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
                margin_logits(self.cosines(emb), labels.clone(), arcface)
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
                margin_logits(self.cosines(emb), labels.clone(), margins)
            }
            LossConfig::ProxyNca { scale } => {
                let cos = self.cosines(emb);
                // -d(x, p) = 2 s^2 (cos - 1); the positive is left out of the normaliser.
                let neg_dist = (cos.clone() - 1.0) * (2.0 * scale * scale);
                let one_hot: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
                let positive = neg_dist.clone().gather(1, labels.reshape([n, 1]));
                let others = neg_dist.mask_fill(one_hot.bool(), f32::NEG_INFINITY);
                return LossOutput {
                    loss: (logsumexp_rows(others) - positive).mean().reshape([1]),
                    logits: cos,
                };
            }
            LossConfig::ProxyAnchor { alpha, delta } => {
                let cos = self.cosines(emb);
                let positive: Tensor<2> = labels.one_hot::<2>(classes).float();
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
                };
            }
        };
        let logp = log_softmax(logits, 1);
        let picked = logp.gather(1, labels.reshape([n, 1]));
        LossOutput {
            loss: picked.mean().neg(),
            logits: plain,
        }
    }
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
