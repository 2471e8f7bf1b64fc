//! Proxy-based losses: Proxy-NCA (one proxy per identity, squared distance of scaled unit
//! vectors), Proxy-Anchor (each proxy anchors the batch) and SoftTriple (K centres per identity,
//! with the centres' spread as a regulariser). The module notes of `losses` give the formulas.

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor};

use super::common::{
    LossOutput, cross_entropy_rows, l2_normalize, logsumexp_rows, mean_of_per_sample,
};

/// Proxy-NCA on the cosines to every proxy (N, classes).
pub(crate) fn proxy_nca(
    cos: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    scale: f64,
) -> LossOutput {
    let n = cos.dims()[0];
    // -d(x, p) = 2 s^2 (cos - 1); the positive is left out of the normaliser.
    let neg_dist = (cos.clone() - 1.0) * (2.0 * scale * scale);
    let one_hot: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
    let positive = neg_dist.clone().gather(1, labels.clone().reshape([n, 1]));
    let others = neg_dist.mask_fill(one_hot.bool(), f32::NEG_INFINITY);
    mean_of_per_sample(logsumexp_rows(others) - positive, cos, labels)
}

/// Proxy-Anchor on the cosines to every proxy (N, classes).
pub(crate) fn proxy_anchor(
    cos: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    alpha: f64,
    delta: f64,
) -> LossOutput {
    let positive: Tensor<2> = labels.clone().one_hot::<2>(classes).float();
    let negative = positive.clone().neg() + 1.0;
    let pos_exp = ((cos.clone() - delta) * (-alpha)).exp() * positive.clone();
    let neg_exp = ((cos.clone() + delta) * alpha).exp() * negative;
    let with_positives = positive.sum_dim(0).greater_elem(0.0).float(); // (1, C)
    let pos_term = ((pos_exp.sum_dim(0) + 1.0).log() * with_positives.clone()).sum()
        / with_positives.sum().clamp_min(1.0);
    let neg_term = (neg_exp.sum_dim(0) + 1.0).log().sum() / classes as f64;
    LossOutput {
        loss: (pos_term + neg_term).reshape([1]),
        logits: cos,
        labels,
        per_sample: None,
    }
}

/// SoftTriple's hyper-parameters, as [`super::LossConfig::SoftTriple`] names them (`centres` at
/// least 1).
pub(crate) struct SoftTripleParams {
    pub(crate) centres: usize,
    pub(crate) lambda: f64,
    pub(crate) gamma: f64,
    pub(crate) tau: f64,
    pub(crate) delta: f64,
}

/// SoftTriple against `weight` (classes x centres rows).
pub(crate) fn soft_triple(
    emb: Tensor<2>,
    weight: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    params: SoftTripleParams,
) -> LossOutput {
    let SoftTripleParams {
        centres: k,
        lambda,
        gamma,
        tau,
        delta,
    } = params;
    let n = emb.dims()[0];
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
        // Mean distance between two centres of one identity, over t < t' pairs, as the authors'
        // code writes it (sqrt(2 + 1e-5 - 2 cos)).
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
    LossOutput {
        loss: loss.reshape([1]),
        logits: relaxed,
        labels,
        per_sample: None,
    }
}
