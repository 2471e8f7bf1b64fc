//! Face verification scoring, exactly as insightface's `eval/verification.py` (and facenet's
//! `lfw.py` for VAL@FAR), plus the pooled-ROC figures (AUC, EER, TAR@FAR).
//!
//! - Distance: squared L2 between L2-normalised embeddings, in [0, 4].
//! - 10 contiguous folds in file order (scikit-learn `KFold(10, shuffle=False)`: the first
//!   `n % 10` folds are one pair larger).
//! - Accuracy: per fold, the threshold from `0, 0.01, ..., 3.99` with the best accuracy on the other
//!   nine folds (same when `distance < threshold`; ties go to the smallest threshold, as `argmax`),
//!   then the accuracy on the held-out fold; mean and population standard deviation.
//! - VAL@FAR: thresholds `0, 0.001, ..., 3.999`; per fold, the threshold where the training folds'
//!   FAR reaches the target by linear interpolation (scipy `interp1d(far, thresholds, 'slinear')`),
//!   or 0 when the FAR never reaches it; VAL and FAR measured on the held-out fold.
//!
//! Counts are integers throughout, so "best accuracy" has no floating-point ties to break wrongly.

use serde::Serialize;

/// Everything `ffem eval` reports for a pair set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerificationReport {
    /// Number of pairs.
    pub pairs: usize,
    /// Same-identity pairs.
    pub same_pairs: usize,
    /// Number of folds.
    pub folds: usize,
    /// Mean held-out accuracy over the folds.
    pub accuracy: f64,
    /// Population standard deviation of the fold accuracies.
    pub std: f64,
    /// Held-out accuracy of each fold.
    pub fold_accuracies: Vec<f64>,
    /// The best threshold (squared L2 distance) chosen for each fold.
    pub thresholds: Vec<f64>,
    /// Mean of the chosen thresholds.
    pub threshold_mean: f64,
    /// The mean threshold as cosine similarity, `1 - d / 2`.
    pub threshold_cosine: f64,
    /// Mean VAL (true accept rate) at the target FAR.
    pub val: f64,
    /// Standard deviation of VAL over the folds.
    pub val_std: f64,
    /// Mean measured FAR at those thresholds.
    pub far: f64,
    /// The FAR target for `val` (1e-3).
    pub far_target: f64,
    /// Area under the pooled ROC curve.
    pub auc: f64,
    /// Equal error rate of the pooled ROC.
    pub eer: f64,
    /// TAR at FAR 1e-1 .. 1e-4, where there are enough different-identity pairs (>= 1/FAR).
    pub tar_at_far: Vec<(f64, f64)>,
    /// Mean embedding norm before normalisation, when known.
    pub embedding_norm: Option<f64>,
}

/// Fold boundaries of scikit-learn's `KFold(n_splits, shuffle=False)`.
pub fn kfold_ranges(n: usize, folds: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::with_capacity(folds);
    let mut start = 0;
    for f in 0..folds {
        let size = n / folds + usize::from(f < n % folds);
        out.push(start..start + size);
        start += size;
    }
    out
}

/// Squared L2 distance between rows of two matrices after L2-normalising each row.
pub fn pair_distances(a: &[f32], b: &[f32], dim: usize) -> Vec<f32> {
    a.chunks_exact(dim)
        .zip(b.chunks_exact(dim))
        .map(|(x, y)| crate::embedding::normalized_squared_distance(x, y))
        .collect()
}

/// Per-fold counts of pairs with `distance < thresholds[k]`, for every k.
struct FoldCounts {
    same_lt: Vec<Vec<u32>>,
    diff_lt: Vec<Vec<u32>>,
    same: Vec<u32>,
    diff: Vec<u32>,
}

fn fold_counts(
    dist: &[f32],
    issame: &[bool],
    ranges: &[std::ops::Range<usize>],
    thresholds: &[f64],
) -> FoldCounts {
    let t = thresholds.len();
    let mut c = FoldCounts {
        same_lt: vec![vec![0; t + 1]; ranges.len()],
        diff_lt: vec![vec![0; t + 1]; ranges.len()],
        same: vec![0; ranges.len()],
        diff: vec![0; ranges.len()],
    };
    for (f, r) in ranges.iter().enumerate() {
        for i in r.clone() {
            let d = dist[i] as f64;
            // First threshold strictly above d: d < thresholds[k] for every k from there on.
            let k0 = thresholds.partition_point(|&th| th <= d);
            if issame[i] {
                c.same_lt[f][k0] += 1;
                c.same[f] += 1;
            } else {
                c.diff_lt[f][k0] += 1;
                c.diff[f] += 1;
            }
        }
        for k in 1..=t {
            c.same_lt[f][k] += c.same_lt[f][k - 1];
            c.diff_lt[f][k] += c.diff_lt[f][k - 1];
        }
    }
    c
}

/// `np.arange(0, stop, step)` as numpy computes it: `i * step`.
fn arange(stop: f64, step: f64) -> Vec<f64> {
    let n = (stop / step).ceil() as usize;
    (0..n).map(|i| i as f64 * step).collect()
}

/// Scores a pair list: `dist[i]` is the squared L2 distance of pair i.
pub fn evaluate(
    dist: &[f32],
    issame: &[bool],
    folds: usize,
    embedding_norm: Option<f64>,
) -> VerificationReport {
    assert_eq!(dist.len(), issame.len(), "one distance per pair");
    assert!(
        folds >= 2 && dist.len() >= folds,
        "need at least as many pairs as folds"
    );
    let ranges = kfold_ranges(dist.len(), folds);

    // Accuracy with the 0.01 grid.
    let thresholds = arange(4.0, 0.01);
    let c = fold_counts(dist, issame, &ranges, &thresholds);
    let sum = |v: &Vec<Vec<u32>>, k: usize| -> u32 { v.iter().map(|f| f[k]).sum() };
    let (same_total, diff_total): (u32, u32) = (c.same.iter().sum(), c.diff.iter().sum());
    let mut fold_acc = Vec::with_capacity(folds);
    let mut best_thresholds = Vec::with_capacity(folds);
    for (f, range) in ranges.iter().enumerate() {
        // Correct train predictions at threshold k: same pairs below it + diff pairs not below it.
        let correct_train = |k: usize| {
            let tp = sum(&c.same_lt, k) - c.same_lt[f][k];
            let diff_train = diff_total - c.diff[f];
            let tn = diff_train - (sum(&c.diff_lt, k) - c.diff_lt[f][k]);
            tp + tn
        };
        let mut best = 0;
        for k in 1..thresholds.len() {
            if correct_train(k) > correct_train(best) {
                best = k;
            }
        }
        let correct_test = c.same_lt[f][best] + (c.diff[f] - c.diff_lt[f][best]);
        fold_acc.push(correct_test as f64 / range.len() as f64);
        best_thresholds.push(thresholds[best]);
    }
    let (accuracy, std) = mean_std(&fold_acc);
    let threshold_mean = best_thresholds.iter().sum::<f64>() / folds as f64;

    // VAL@FAR=1e-3 with the 0.001 grid.
    let far_target = 1e-3;
    let val_thresholds = arange(4.0, 0.001);
    let vc = fold_counts(dist, issame, &ranges, &val_thresholds);
    let (mut vals, mut fars) = (Vec::new(), Vec::new());
    for (f, range) in ranges.iter().enumerate() {
        let diff_train = (diff_total - vc.diff[f]) as f64;
        let far_train: Vec<f64> = (0..val_thresholds.len())
            .map(|k| {
                let fa = vc.diff_lt.iter().map(|v| v[k]).sum::<u32>() - vc.diff_lt[f][k];
                if diff_train > 0.0 {
                    fa as f64 / diff_train
                } else {
                    0.0
                }
            })
            .collect();
        let threshold = if far_train.iter().cloned().fold(f64::MIN, f64::max) >= far_target {
            interp_slinear(&far_train, &val_thresholds, far_target)
        } else {
            0.0
        };
        let (mut ta, mut fa) = (0u32, 0u32);
        for i in range.clone() {
            if (dist[i] as f64) < threshold {
                if issame[i] { ta += 1 } else { fa += 1 }
            }
        }
        vals.push(if vc.same[f] > 0 {
            ta as f64 / vc.same[f] as f64
        } else {
            0.0
        });
        fars.push(if vc.diff[f] > 0 {
            fa as f64 / vc.diff[f] as f64
        } else {
            0.0
        });
    }
    let (val, val_std) = mean_std(&vals);
    let (far, _) = mean_std(&fars);

    let roc = pooled_roc(dist, issame);
    let mut tar_at_far = Vec::new();
    for far in [1e-1, 1e-2, 1e-3, 1e-4] {
        if diff_total as f64 * far >= 1.0 - 1e-9 {
            let tar = roc
                .iter()
                .filter(|p| p.0 <= far + 1e-12)
                .map(|p| p.1)
                .fold(0.0, f64::max);
            tar_at_far.push((far, tar));
        }
    }
    VerificationReport {
        pairs: dist.len(),
        same_pairs: same_total as usize,
        folds,
        accuracy,
        std,
        fold_accuracies: fold_acc,
        thresholds: best_thresholds,
        threshold_mean,
        threshold_cosine: 1.0 - threshold_mean / 2.0,
        val,
        val_std,
        far,
        far_target,
        auc: auc(dist, issame),
        eer: eer(&roc),
        tar_at_far,
        embedding_norm,
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// scipy `interp1d(x, y, kind='slinear')(target)` for non-decreasing `x` with repeats: a stable
/// sort keeps the order, and the linear B-spline takes the last point with `x <= target` and the
/// one after it.
fn interp_slinear(x: &[f64], y: &[f64], target: f64) -> f64 {
    let lo = match x.iter().rposition(|&v| v <= target) {
        Some(i) => i,
        None => return y[0],
    };
    if lo + 1 >= x.len() {
        return y[lo];
    }
    let (x0, x1, y0, y1) = (x[lo], x[lo + 1], y[lo], y[lo + 1]);
    y0 + (target - x0) * (y1 - y0) / (x1 - x0)
}

/// The ROC over all pairs pooled: (FPR, TPR) after each distinct distance, predicting "same" for
/// `distance <= t`; starts at (0, 0) and ends at (1, 1).
pub fn pooled_roc(dist: &[f32], issame: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..dist.len()).collect();
    order.sort_by(|&a, &b| dist[a].total_cmp(&dist[b]));
    let n_same = issame.iter().filter(|&&s| s).count().max(1) as f64;
    let n_diff = issame.iter().filter(|&&s| !s).count().max(1) as f64;
    let mut roc = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (pos, &i) in order.iter().enumerate() {
        if issame[i] {
            tp += 1
        } else {
            fp += 1
        }
        let last_of_tie = order.get(pos + 1).is_none_or(|&j| dist[j] != dist[i]);
        if last_of_tie {
            roc.push((fp as f64 / n_diff, tp as f64 / n_same));
        }
    }
    roc
}

/// Area under the ROC: the probability that a same pair is closer than a different pair, ties
/// counting one half (the Mann-Whitney statistic, equal to the trapezoid area of [`pooled_roc`]).
pub fn auc(dist: &[f32], issame: &[bool]) -> f64 {
    let roc = pooled_roc(dist, issame);
    roc.windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

/// Equal error rate: where FPR equals the false-reject rate 1 - TPR, interpolated linearly
/// between ROC points.
pub fn eer(roc: &[(f64, f64)]) -> f64 {
    for w in roc.windows(2) {
        let g0 = w[0].0 - (1.0 - w[0].1);
        let g1 = w[1].0 - (1.0 - w[1].1);
        if g0 <= 0.0 && g1 >= 0.0 {
            let t = if g1 - g0 > 0.0 { -g0 / (g1 - g0) } else { 0.0 };
            return w[0].0 + t * (w[1].0 - w[0].0);
        }
    }
    1.0
}

impl VerificationReport {
    /// A readable table.
    pub fn table(&self, title: &str) -> String {
        let mut s = format!(
            "{title}: {} pairs ({} same), {}-fold\n",
            self.pairs, self.same_pairs, self.folds
        );
        s += &format!(
            "  accuracy          {:.4} +- {:.4}\n",
            self.accuracy, self.std
        );
        s += &format!(
            "  best threshold    {:.4} (squared L2), {:.4} (cosine)\n",
            self.threshold_mean, self.threshold_cosine
        );
        s += &format!(
            "  VAL@FAR={:<8}  {:.4} +- {:.4} (FAR {:.5})\n",
            self.far_target, self.val, self.val_std, self.far
        );
        s += &format!("  AUC               {:.4}\n", self.auc);
        s += &format!("  EER               {:.4}\n", self.eer);
        for (far, tar) in &self.tar_at_far {
            s += &format!("  TAR@FAR={far:<9} {tar:.4}\n");
        }
        if let Some(n) = self.embedding_norm {
            s += &format!("  mean norm         {n:.3}\n");
        }
        s += "  folds             ";
        s += &self
            .fold_accuracies
            .iter()
            .map(|a| format!("{a:.3}"))
            .collect::<Vec<_>>()
            .join(" ");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfold_matches_scikit_learn() {
        let sizes: Vec<usize> = kfold_ranges(23, 10).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(kfold_ranges(6000, 10)[9], 5400..6000);
    }

    #[test]
    fn interpolation_takes_the_last_tied_point() {
        let x = [0.0, 0.0, 0.5, 0.5, 1.0];
        let y = [0.0, 1.0, 2.0, 3.0, 4.0];
        // Last x <= 0.25 is index 1 (x=0, y=1); next is (0.5, 2): 1 + 0.25 * (1 / 0.5) = 1.5.
        assert!((interp_slinear(&x, &y, 0.25) - 1.5).abs() < 1e-12);
        // At x = 0.5 the last tied point is index 3 (y = 3), followed by (1, 4): exactly 3.
        assert_eq!(interp_slinear(&x, &y, 0.5), 3.0);
        assert_eq!(interp_slinear(&x, &y, 1.0), 4.0);
    }

    #[test]
    fn auc_and_eer_by_hand() {
        // same: 0.1, 0.4; diff: 0.3, 0.5. Pairs (s, d) closer: (0.1<0.3), (0.1<0.5), (0.4<0.5) -> 3/4.
        let d = [0.1, 0.3, 0.4, 0.5];
        let s = [true, false, true, false];
        assert!((auc(&d, &s) - 0.75).abs() < 1e-12);
        // ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1); FPR = 1 - TPR at (0.5, 0.5) -> EER 0.5.
        assert_eq!(
            pooled_roc(&d, &s),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert!((eer(&pooled_roc(&d, &s)) - 0.5).abs() < 1e-12);
        // Ties count one half.
        assert!((auc(&[0.2, 0.2], &[true, false]) - 0.5).abs() < 1e-12);
    }
}
