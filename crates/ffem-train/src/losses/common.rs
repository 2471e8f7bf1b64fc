//! What every loss is built from: its output, row normalisation, the plain linear classifier,
//! per-row cross-entropy and log-sum-exp.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

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

/// `x W^T (+ b)`: the plain linear classifier of L2-softmax and center loss.
pub(crate) fn affine(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    let z = x.matmul(weight.transpose());
    match bias {
        Some(b) => z + b.unsqueeze_dim(0),
        None => z,
    }
}

/// Each row's cross-entropy against its label, (N, C) -> (N, 1).
pub(crate) fn cross_entropy_rows(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<2> {
    let n = labels.dims()[0];
    log_softmax(logits, 1)
        .gather(1, labels.reshape([n, 1]))
        .neg()
}

/// The output of a loss that is the mean of per-image losses (N, 1), which Co-Mining ranks.
pub(crate) fn mean_of_per_sample(
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

/// `log(sum(exp(row)))` of each row, (N, C) -> (N, 1), stable for rows holding -inf.
pub(crate) fn logsumexp_rows(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1);
    (x - max.clone()).exp().sum_dim(1).log() + max
}
