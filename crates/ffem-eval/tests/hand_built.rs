//! Every number the verification report prints, for embeddings whose answers are worked out by
//! hand (see the comments): 20 pairs, 2 per fold.

use ffem_eval::{evaluate, pair_distances};

/// Pair i's two embeddings: (norm, 0) and norm * (cos t, sin t), so that the squared L2 distance
/// after normalisation is 2 - 2 cos t = d.
fn pairs_with_distances(d: &[f64], norm: f32) -> (Vec<f32>, Vec<f32>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for &di in d {
        let c = 1.0 - di / 2.0;
        let s = (1.0 - c * c).sqrt();
        a.extend([norm, 0.0]);
        b.extend([norm * c as f32, norm * s as f32]);
    }
    (a, b)
}

#[test]
fn every_printed_number_by_hand() {
    // Folds 0-8: a same pair at distance 0.505 and a different pair at 1.2345.
    // Fold 9: a hard same pair at 1.7 and a different pair at 1.2345.
    let mut d = Vec::new();
    let mut same = Vec::new();
    for f in 0..10 {
        d.push(if f == 9 { 1.7 } else { 0.505 });
        same.push(true);
        d.push(1.2345);
        same.push(false);
    }
    let (a, b) = pairs_with_distances(&d, 3.0);
    let dist = pair_distances(&a, &b, 2);
    for (x, y) in dist.iter().zip(&d) {
        assert!((*x as f64 - y).abs() < 1e-5);
    }
    let r = evaluate(&dist, &same, 10, Some(3.0));

    // Accuracy. Holding out fold f <= 8, the training folds hold eight same pairs at 0.505, one at
    // 1.7 and nine different pairs at 1.2345: thresholds in (0.505, 1.2345] get 17 of 18 right, and
    // the smallest such grid value is 0.51. The held-out fold is then right twice: 1.0.
    // Holding out fold 9, the best threshold is again 0.51, and its same pair (1.7) is missed: 0.5.
    assert_eq!(r.thresholds, vec![0.51; 10]);
    let mut expected = vec![1.0; 9];
    expected.push(0.5);
    assert_eq!(r.fold_accuracies, expected);
    assert!((r.accuracy - 0.95).abs() < 1e-12);
    // Population std: sqrt((9 * 0.05^2 + 0.45^2) / 10) = sqrt(0.0225) = 0.15.
    assert!((r.std - 0.15).abs() < 1e-12);
    assert!((r.threshold_mean - 0.51).abs() < 1e-12);
    assert!((r.threshold_cosine - 0.745).abs() < 1e-12);

    // VAL@FAR=1e-3. On training folds the FAR is 0 up to the grid threshold 1.234 and 1 from 1.235:
    // interpolation gives 1.234 + (0.001 - 0) * 0.001 / (1 - 0) = 1.234001. On held-out folds 0-8
    // the same pair is accepted and the different one not: VAL 1, FAR 0; on fold 9 neither: VAL 0.
    assert!((r.val - 0.9).abs() < 1e-12, "{}", r.val);
    assert!((r.val_std - 0.3).abs() < 1e-12);
    assert_eq!(r.far, 0.0);

    // Pooled ROC: same distances nine 0.505 and one 1.7, different ten 1.2345.
    // AUC: 90 of the 100 (same, different) pairs are ordered correctly -> 0.9.
    assert!((r.auc - 0.9).abs() < 1e-12);
    // ROC points (0, 0), (0, 0.9), (1, 0.9), (1, 1): FPR = 1 - TPR between the 2nd and 3rd, at FPR 0.1.
    assert!((r.eer - 0.1).abs() < 1e-12);
    // Ten different pairs allow FAR 0.1 only: the best TPR with FPR <= 0.1 is 0.9.
    assert_eq!(r.tar_at_far, vec![(0.1, 0.9)]);
    assert_eq!(
        (r.pairs, r.same_pairs, r.folds, r.embedding_norm),
        (20, 10, 10, Some(3.0))
    );

    let table = r.table("hand");
    for needle in [
        "hand: 20 pairs (10 same), 10-fold",
        "accuracy          0.9500 +- 0.1500",
        "best threshold    0.5100 (squared L2), 0.7450 (cosine)",
        "VAL@FAR=0.001     0.9000 +- 0.3000 (FAR 0.00000)",
        "AUC               0.9000",
        "EER               0.1000",
        "TAR@FAR=0.1       0.9000",
        "mean norm         3.000",
        "folds             1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 0.500",
    ] {
        assert!(table.contains(needle), "missing `{needle}` in\n{table}");
    }
}
