//! Finding label noise with a trained model, the practical core of "The Devil of Face Recognition
//! is in the Noise" (Wang et al., ECCV 2018): an image far from its identity's centre and nearer
//! another identity's centre is likely mislabelled; two identities whose centres nearly coincide
//! are likely one person under two labels. Works on embeddings and labels only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::embedding::normalize_rows;

/// How suspicious something must be to be flagged.
#[derive(Debug, Clone, Copy)]
pub struct CleanOptions {
    /// Flag an image whose cosine to its own identity's centre is below this...
    pub min_own_similarity: f32,
    /// ...or that is nearer another identity's centre than its own by more than this (a margin,
    /// so that the faces of two duplicated identities are reported as the duplicate pair, not
    /// one by one).
    pub other_margin: f32,
    /// Flag two identities whose centres are at least this similar.
    pub duplicate_similarity: f32,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            min_own_similarity: 0.3,
            other_margin: 0.05,
            duplicate_similarity: 0.9,
        }
    }
}

/// One image flagged as probably mislabelled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suspect {
    /// Row of the image.
    pub row: usize,
    /// Its label.
    pub label: i64,
    /// Cosine to its identity's centre (computed without the image itself).
    pub own_similarity: f32,
    /// The identity whose centre it is nearest to, other than its own.
    pub nearest_other: i64,
    /// Cosine to that centre.
    pub other_similarity: f32,
}

/// Two identities that are probably one person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicatePair {
    /// One label.
    pub a: i64,
    /// The other.
    pub b: i64,
    /// Cosine of their centres.
    pub similarity: f32,
}

/// What [`find_label_noise`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CleanReport {
    /// Probably mislabelled images, most suspicious (largest other - own) first.
    pub suspects: Vec<Suspect>,
    /// Probably duplicated identities, most similar first.
    pub duplicates: Vec<DuplicatePair>,
}

/// Flags probable label noise in `rows x dim` embeddings with their labels. An image's own centre
/// leaves the image out (a lone image of an identity has no centre and is never flagged).
pub fn find_label_noise(
    embeddings: &[f32],
    labels: &[i64],
    dim: usize,
    opts: CleanOptions,
) -> CleanReport {
    assert_eq!(
        embeddings.len(),
        labels.len() * dim,
        "one embedding per label"
    );
    let mut e = embeddings.to_vec();
    normalize_rows(&mut e, dim);
    let mut sums: BTreeMap<i64, (Vec<f64>, usize)> = BTreeMap::new();
    for (row, &l) in e.chunks_exact(dim).zip(labels) {
        let s = sums.entry(l).or_insert_with(|| (vec![0.0; dim], 0));
        s.0.iter_mut().zip(row).for_each(|(a, &b)| *a += b as f64);
        s.1 += 1;
    }
    let unit = |v: &[f64]| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.iter().map(|x| (x / n) as f32).collect::<Vec<f32>>()
    };
    let ids: Vec<i64> = sums.keys().copied().collect();
    let centres: Vec<Vec<f32>> = ids.iter().map(|l| unit(&sums[l].0)).collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut suspects = Vec::new();
    for (i, (row, &l)) in e.chunks_exact(dim).zip(labels).enumerate() {
        let (sum, count) = &sums[&l];
        if *count < 2 {
            continue;
        }
        let without: Vec<f64> = sum.iter().zip(row).map(|(s, r)| s - *r as f64).collect();
        let own = dot(row, &unit(&without));
        let (nearest, other) = ids
            .iter()
            .zip(&centres)
            .filter(|(id, _)| **id != l)
            .map(|(id, c)| (*id, dot(row, c)))
            .fold((l, f32::MIN), |best, x| if x.1 > best.1 { x } else { best });
        if own < opts.min_own_similarity || other > own + opts.other_margin {
            suspects.push(Suspect {
                row: i,
                label: l,
                own_similarity: own,
                nearest_other: nearest,
                other_similarity: other,
            });
        }
    }
    suspects.sort_by(|a, b| {
        (b.other_similarity - b.own_similarity).total_cmp(&(a.other_similarity - a.own_similarity))
    });
    let mut duplicates = Vec::new();
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            let s = dot(&centres[i], &centres[j]);
            if s >= opts.duplicate_similarity {
                duplicates.push(DuplicatePair {
                    a: ids[i],
                    b: ids[j],
                    similarity: s,
                });
            }
        }
    }
    duplicates.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    CleanReport {
        suspects,
        duplicates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_the_swapped_image_and_the_duplicated_identity() {
        // Identity 0 near (1, 0, 0), identity 1 near (0, 1, 0), identity 2 a duplicate of 1;
        // row 3 is an identity-1 face labelled 0.
        let rows: Vec<[f32; 3]> = vec![
            [1.0, 0.1, 0.0],
            [1.0, -0.1, 0.0],
            [1.0, 0.0, 0.1],
            [0.05, 1.0, 0.0],
            [0.1, 1.0, 0.0],
            [-0.1, 1.0, 0.05],
            [0.0, 1.0, -0.05],
            [0.02, 1.0, 0.0],
        ];
        let labels = [0, 0, 0, 0, 1, 1, 2, 2];
        let flat: Vec<f32> = rows.concat();
        let r = find_label_noise(&flat, &labels, 3, CleanOptions::default());
        assert_eq!(r.suspects.len(), 1, "{r:?}");
        let s = &r.suspects[0];
        // Nearest another centre: 1 or its duplicate 2.
        assert_eq!((s.row, s.label), (3, 0));
        assert!(matches!(s.nearest_other, 1 | 2));
        // Its own centre without it is the mean of rows 0..3: along (1, 0, 0).
        assert!(s.own_similarity < 0.1 && s.other_similarity > 0.99);
        assert_eq!(
            r.duplicates.iter().map(|d| (d.a, d.b)).collect::<Vec<_>>(),
            vec![(1, 2)]
        );
    }
}
