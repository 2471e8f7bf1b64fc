//! Triplet loss with selection-bias correction (Yu et al., ECCV 2018) on P x K batches: the
//! selection (semi-hard or batch-hard), the hinge, and the first-moment correction between the
//! selected and all of the batch's triplets (the module notes of `losses` give the formulas).

use burn::tensor::{Int, Tensor};

use super::common::l2_normalize;

/// Triplet loss (semi-hard or batch-hard selection) with the selection-bias correction (see the
/// module's notes): returns the loss [1] and soft nearest-neighbour logits (N, classes).
pub(crate) fn triplet_loss(
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
