//! The vector maths every embedding consumer shares (evaluation, search, the library API): one
//! definition of the norm, normalisation, cosine similarity and squared distance, with the same
//! 1e-12 floor on norms everywhere.

/// Norms below this are treated as this, so an all-zero row normalises to zeros, not NaNs.
const MIN_NORM: f32 = 1e-12;

/// Euclidean length of a vector.
pub fn l2_norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// L2-normalises each `dim`-wide row of `rows` in place; returns the mean norm before (0 when
/// there are no rows), the quantity insightface reports as "XNorm".
pub fn normalize_rows(rows: &mut [f32], dim: usize) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for row in rows.chunks_exact_mut(dim.max(1)) {
        let n = l2_norm(row);
        total += n as f64;
        count += 1;
        let n = n.max(MIN_NORM);
        row.iter_mut().for_each(|v| *v /= n);
    }
    if count > 0 { total / count as f64 } else { 0.0 }
}

/// Cosine similarity of two vectors of any length (1 = same direction, -1 = opposite).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (l2_norm(a).max(MIN_NORM) * l2_norm(b).max(MIN_NORM))
}

/// Squared L2 distance between two vectors after normalising each: `2 - 2 cos` for non-zero
/// vectors, the distance insightface's verification thresholds.
pub fn normalized_squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (l2_norm(a).max(MIN_NORM), l2_norm(b).max(MIN_NORM));
    a.iter()
        .zip(b)
        .map(|(p, q)| (p / na - q / nb).powi(2))
        .sum()
}

/// Splits pair-interleaved rows (pair i = rows 2i and 2i+1, insightface's `.bin` and NPY layout)
/// into the left and right members' matrices. A trailing unpaired row is ignored.
pub fn split_interleaved(rows: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let pairs = rows.len() / dim.max(1) / 2;
    let mut left = Vec::with_capacity(pairs * dim);
    let mut right = Vec::with_capacity(pairs * dim);
    for pair in rows.chunks_exact(2 * dim.max(1)) {
        left.extend_from_slice(&pair[..dim]);
        right.extend_from_slice(&pair[dim..]);
    }
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // (3, 4) has norm 5; (4, -3) is perpendicular to it; (-6, -8) opposite.
        assert_eq!(l2_norm(&[3.0, 4.0]), 5.0);
        assert_eq!(cosine(&[3.0, 4.0], &[4.0, -3.0]), 0.0);
        assert!((cosine(&[3.0, 4.0], &[-6.0, -8.0]) + 1.0).abs() < 1e-6);
        assert!((normalized_squared_distance(&[3.0, 4.0], &[4.0, -3.0]) - 2.0).abs() < 1e-6);
        assert!((normalized_squared_distance(&[3.0, 4.0], &[-6.0, -8.0]) - 4.0).abs() < 1e-6);
        let mut rows = vec![3.0, 4.0, 0.0, 0.0, 0.0, 2.0];
        assert!((normalize_rows(&mut rows, 2) - 7.0 / 3.0).abs() < 1e-9);
        assert_eq!(rows, vec![0.6, 0.8, 0.0, 0.0, 0.0, 1.0]);
        let (l, r) = split_interleaved(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.0], 2);
        assert_eq!((l, r), (vec![1.0, 2.0, 5.0, 6.0], vec![3.0, 4.0, 7.0, 8.0]));
    }
}
