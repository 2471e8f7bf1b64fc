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
}

impl LossConfig {
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
        ClassifierLoss {
            weight: init.init_with([classes, dim], Some(dim), Some(classes), device),
            bias: matches!(config, LossConfig::L2Softmax { .. })
                .then(|| Initializer::Zeros.init([classes], device)),
            config,
        }
    }

    /// Number of identities.
    pub fn classes(&self) -> usize {
        self.weight.dims()[0]
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
            LossConfig::Margin {
                m1,
                m2,
                m3,
                scale,
                easy_margin,
            } => {
                let eps = 1e-7;
                let cos = l2_normalize(emb)
                    .matmul(l2_normalize(self.weight.val()).transpose())
                    .clamp(-1.0 + eps, 1.0 - eps);
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
                let one_hot: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
                let z = (cos.clone() + one_hot * (phi - target)) * scale;
                (z, cos * scale)
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
