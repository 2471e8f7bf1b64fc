//! The margin softmax family on identity cosines: insightface's combined margin
//! `cos(m1 theta + m2) - m3` (ArcFace, CosFace and any other triple; Sub-center ArcFace takes the
//! same margin on its best-centre cosine).

use burn::tensor::{Int, Tensor};

use super::common::{LossOutput, cross_entropy_rows, mean_of_per_sample};

/// The combined-margin parameters, as [`LossConfig::Margin`] names them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Margins {
    pub(crate) m1: f64,
    pub(crate) m2: f64,
    pub(crate) m3: f64,
    pub(crate) scale: f64,
    pub(crate) easy_margin: bool,
}

impl Margins {
    /// ArcFace's additive angular margin `m` at scale `s` (the `th` / `mm` rule, no easy margin).
    pub(crate) fn arcface(margin: f64, scale: f64) -> Self {
        Margins {
            m1: 1.0,
            m2: margin,
            m3: 0.0,
            scale,
            easy_margin: false,
        }
    }
}

/// Mean cross-entropy of the margin logits, with the plain scaled cosines as the accuracy logits.
pub(crate) fn margin_loss(cos: Tensor<2>, labels: Tensor<1, Int>, margins: Margins) -> LossOutput {
    let (logits, plain) = margin_logits(cos, labels.clone(), margins);
    mean_of_per_sample(cross_entropy_rows(logits, labels.clone()), plain, labels)
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
