//! Closed-set identification by leave-one-out nearest neighbour with cosine similarity:
//! every image of an identity with at least two images queries all other images.

use serde::Serialize;

/// Recall@k and the CMC curve.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdentificationReport {
    /// Images that served as queries.
    pub queries: usize,
    /// Size of the gallery each query searched (all images but itself).
    pub gallery: usize,
    /// Recall at rank 1.
    pub recall_at_1: f64,
    /// Recall at rank 5.
    pub recall_at_5: f64,
    /// Recall at rank 10.
    pub recall_at_10: f64,
    /// CMC: fraction of queries whose first correct match is within rank r+1, for r < len.
    pub cmc: Vec<f64>,
}

/// Runs the protocol on `n x dim` embeddings (normalised here) with their labels.
pub fn identify(
    embeddings: &[f32],
    labels: &[i64],
    dim: usize,
    max_rank: usize,
) -> IdentificationReport {
    let n = labels.len();
    assert_eq!(embeddings.len(), n * dim, "one embedding per label");
    let mut e = embeddings.to_vec();
    crate::embedding::normalize_rows(&mut e, dim);
    let mut count: std::collections::HashMap<i64, usize> = Default::default();
    for &l in labels {
        *count.entry(l).or_default() += 1;
    }
    let mut hist = vec![0usize; max_rank];
    let mut queries = 0;
    let mut sims = vec![0f32; n];
    for q in 0..n {
        if count[&labels[q]] < 2 {
            continue;
        }
        queries += 1;
        let qv = &e[q * dim..][..dim];
        for (j, s) in sims.iter_mut().enumerate() {
            *s = dot(qv, &e[j * dim..][..dim]);
        }
        let best_same = (0..n)
            .filter(|&j| j != q && labels[j] == labels[q])
            .map(|j| sims[j])
            .fold(f32::MIN, f32::max);
        // Rank = 1 + impostors strictly more similar than the best genuine match.
        let rank = 1
            + (0..n)
                .filter(|&j| j != q && labels[j] != labels[q] && sims[j] > best_same)
                .count();
        if rank <= max_rank {
            hist[rank - 1] += 1;
        }
    }
    let mut cmc = Vec::with_capacity(max_rank);
    let mut acc = 0;
    for h in hist {
        acc += h;
        cmc.push(if queries > 0 {
            acc as f64 / queries as f64
        } else {
            0.0
        });
    }
    let at = |k: usize| {
        cmc.get(k - 1)
            .copied()
            .unwrap_or(*cmc.last().unwrap_or(&0.0))
    };
    IdentificationReport {
        queries,
        gallery: n.saturating_sub(1),
        recall_at_1: at(1),
        recall_at_5: at(5),
        recall_at_10: at(10),
        cmc,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for k in 0..8 {
            acc[k] += a[i * 8 + k] * b[i * 8 + k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_hand() {
        // 2-D unit vectors at angles; labels chosen so each query's rank is known.
        let ang = [0.0f32, 10.0, 20.0, 100.0, 105.0, 200.0];
        let e: Vec<f32> = ang
            .iter()
            .flat_map(|a| [a.to_radians().cos(), a.to_radians().sin()])
            .collect();
        let labels = [1, 2, 1, 3, 3, 9];
        let r = identify(&e, &labels, 2, 5);
        // Queries: 0 (best genuine 2 at 20deg, impostor 1 at 10deg closer) -> rank 2;
        // 2 (genuine 0 at 20deg, impostor 1 at 10deg) -> rank 2; 3 and 4 -> rank 1; 5 has one image.
        assert_eq!(r.queries, 4);
        assert_eq!(r.cmc, vec![0.5, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!((r.recall_at_1, r.recall_at_5), (0.5, 1.0));
    }
}
