//! Grouping unlabelled faces into people, and scoring a grouping against true identities.
//!
//! The graph: each face linked to its `k` most similar faces whose cosine similarity reaches the
//! threshold (exact search, blocked and parallel). Two ways to cut it into people:
//! - Chinese whispers (dlib's face clustering): every face starts as its own label and, in a
//!   seeded random order, repeatedly takes the label with the largest summed similarity among its
//!   neighbours; no number of clusters is given.
//! - Core-point density (DBSCAN on the graph, the rule Immich uses): a face with at least
//!   `min_samples` neighbours is a core; cores linked to each other form a person, and a non-core
//!   face joins the person of its most similar core neighbour.
//!
//! Faces in a group smaller than `min_size` are left unassigned (`None`). Scores: pairwise
//! precision / recall / F1 over pairs of faces, and BCubed precision / recall / F1 averaged over
//! faces; unassigned faces count as groups of one.

use std::collections::HashMap;

use rayon::prelude::*;

/// How faces are cut into people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// dlib's Chinese whispers on the similarity graph.
    ChineseWhispers,
    /// Core-point density on the similarity graph (DBSCAN's rule).
    Density,
}

impl Algorithm {
    /// The names the command line takes.
    pub const NAMES: [&'static str; 2] = ["chinese-whispers", "density"];
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chinese-whispers" => Ok(Algorithm::ChineseWhispers),
            "density" => Ok(Algorithm::Density),
            _ => Err(format!(
                "clustering algorithm `{s}` is not one of {}",
                Algorithm::NAMES.join(", ")
            )),
        }
    }
}

/// The parameters of a grouping.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClusterParams {
    /// Faces are linked when their cosine similarity is at least this.
    pub threshold: f32,
    /// Most links kept per face (its most similar faces).
    pub neighbours: usize,
    /// Density: links a face needs to be a core.
    pub min_samples: usize,
    /// Smallest group reported as a person; smaller ones are left unassigned.
    pub min_size: usize,
    /// Chinese whispers: passes over all faces.
    pub iterations: usize,
    /// Chinese whispers: seed of the visiting order.
    pub seed: u64,
    /// From this many faces on, links come from an HNSW graph (approximate, near-linear)
    /// instead of comparing every pair (exact, quadratic).
    pub approximate_above: usize,
}

impl Default for ClusterParams {
    fn default() -> Self {
        ClusterParams {
            threshold: 0.5,
            neighbours: 30,
            min_samples: 3,
            min_size: 2,
            iterations: 30,
            seed: 0,
            approximate_above: 200_000,
        }
    }
}

/// Each face's links: (other face, cosine similarity), most similar first, at most `k`, only
/// those at or above `threshold`. `embeddings` are `n` rows of `dim`, unit length.
pub fn neighbour_graph(
    embeddings: &[f32],
    dim: usize,
    k: usize,
    threshold: f32,
) -> Vec<Vec<(u32, f32)>> {
    let n = embeddings.len() / dim.max(1);
    // Faces go in blocks against every row: the whole matrix is streamed once per block rather
    // than once per face, and that stream, not the arithmetic, is what limits an exact search.
    let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|start| {
            let m = (n - start).min(BLOCK);
            let mut best: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(k + 1); m];
            let queries = &embeddings[start * dim..(start + m) * dim];
            let mut sims = [0f32; BLOCK];
            for (j, row) in embeddings.chunks_exact(dim).enumerate() {
                block_dots(queries, m, row, &mut sims);
                for (q, list) in best.iter_mut().enumerate() {
                    let s = sims[q];
                    if j == start + q || s < threshold || (list.len() == k && s <= list[k - 1].1) {
                        continue;
                    }
                    let at = list.partition_point(|&(_, v)| v >= s);
                    list.insert(at, (j as u32, s));
                    list.truncate(k);
                }
            }
            best
        })
        .collect()
}

/// [`neighbour_graph`] from an HNSW graph (hnswlib's settings as the service uses them, 16 links,
/// candidate lists of 200): each face's `k` nearest as the graph finds them, near-linear in the
/// number of faces where the exact search is quadratic. Recall below 1: a few true links are
/// missed, which grouping by whispers tolerates (many paths join a person).
pub fn approximate_neighbour_graph(
    embeddings: &[f32],
    dim: usize,
    k: usize,
    threshold: f32,
) -> Vec<Vec<(u32, f32)>> {
    use hnsw_rs::hnsw::Hnsw;
    let n = embeddings.len() / dim.max(1);
    let layers = 16.min(((n as f64).ln().ceil() as usize).max(1));
    let graph = Hnsw::new(16, n, layers, 200, UnitCosineDistance);
    let rows: Vec<(&[f32], usize)> = embeddings.chunks_exact(dim).zip(0..).collect();
    graph.parallel_insert_slice(&rows);
    let ef = 64.max(2 * k);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let query = &embeddings[i * dim..(i + 1) * dim];
            let mut links: Vec<(u32, f32)> = graph
                .search(query, k + 1, ef)
                .into_iter()
                .filter(|h| h.d_id != i)
                .map(|h| (h.d_id as u32, 1.0 - h.distance))
                .filter(|&(_, s)| s >= threshold)
                .collect();
            links.sort_by(|a, b| b.1.total_cmp(&a.1));
            links.truncate(k);
            links
        })
        .collect()
}

/// 1 - the cosine similarity of two unit vectors, never below 0: hnsw_rs's own `DistDot`
/// asserts that, and rounding puts the dot product of a unit vector with itself or a near copy
/// an ulp above 1 (the same face enrolled twice, a duplicate photo), which would panic mid-search.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosineDistance;

impl hnsw_rs::anndists::dist::Distance<f32> for UnitCosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        (1.0 - dot).max(0.0)
    }
}

/// Faces compared with each row at once in [`neighbour_graph`].
const BLOCK: usize = 8;

/// The dot products of the `m` (at most [`BLOCK`]) rows of `queries` with `row`, into `out`.
fn block_dots(queries: &[f32], m: usize, row: &[f32], out: &mut [f32; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    if m == BLOCK && row.len().is_multiple_of(8) && avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked), the queries hold BLOCK rows of
        // row.len() values and row.len() is a multiple of 8, as block_dots_avx2 requires.
        unsafe { block_dots_avx2(queries, row, out) };
        return;
    }
    let dim = row.len();
    for q in 0..m {
        out[q] = queries[q * dim..(q + 1) * dim]
            .iter()
            .zip(row)
            .map(|(a, b)| a * b)
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

/// [`block_dots`] for a full block in AVX2 + FMA: one accumulator register per query, each
/// eight values of `row` loaded once for all of them.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `queries` must hold [`BLOCK`] rows of `row.len()` values,
/// and `row.len()` must be a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_dots_avx2(queries: &[f32], row: &[f32], out: &mut [f32; BLOCK]) {
    use std::arch::x86_64::*;
    let dim = row.len();
    debug_assert!(queries.len() >= BLOCK * dim && dim.is_multiple_of(8));
    let mut acc = [_mm256_setzero_ps(); BLOCK];
    let (qp, rp) = (queries.as_ptr(), row.as_ptr());
    let mut c = 0;
    while c < dim {
        // SAFETY: c + 8 <= dim, and every query row has dim values (the function's contract).
        let r = unsafe { _mm256_loadu_ps(rp.add(c)) };
        for (q, a) in acc.iter_mut().enumerate() {
            let v = unsafe { _mm256_loadu_ps(qp.add(q * dim + c)) };
            *a = _mm256_fmadd_ps(v, r, *a);
        }
        c += 8;
    }
    for (q, a) in acc.iter().enumerate() {
        let folded = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
        let pairs = _mm_hadd_ps(folded, folded);
        out[q] = _mm_cvtss_f32(_mm_hadd_ps(pairs, pairs));
    }
}

/// The graph made symmetric (a link kept when either face listed the other).
fn symmetric(graph: &[Vec<(u32, f32)>]) -> Vec<Vec<(u32, f32)>> {
    let mut out: Vec<Vec<(u32, f32)>> = graph.to_vec();
    for (i, links) in graph.iter().enumerate() {
        for &(j, s) in links {
            if !graph[j as usize].iter().any(|&(x, _)| x as usize == i) {
                out[j as usize].push((i as u32, s));
            }
        }
    }
    out
}

/// Groups faces into people; `None` for faces left unassigned. Labels are 0.. in order of group
/// size (largest first, ties by the smallest face index), so the same input gives the same labels.
pub fn cluster(
    embeddings: &[f32],
    dim: usize,
    algorithm: Algorithm,
    params: &ClusterParams,
) -> Vec<Option<usize>> {
    let n = embeddings.len() / dim.max(1);
    let k = params.neighbours.max(1);
    let links = if n >= params.approximate_above {
        approximate_neighbour_graph(embeddings, dim, k, params.threshold)
    } else {
        neighbour_graph(embeddings, dim, k, params.threshold)
    };
    let graph = symmetric(&links);
    let raw = match algorithm {
        Algorithm::ChineseWhispers => chinese_whispers(&graph, params.iterations, params.seed),
        Algorithm::Density => density(&graph, params.min_samples),
    };
    relabel(&raw, params.min_size)
}

/// dlib's Chinese whispers: labels as indices, every face in some group.
fn chinese_whispers(graph: &[Vec<(u32, f32)>], iterations: usize, seed: u64) -> Vec<Option<usize>> {
    let n = graph.len();
    let mut labels: Vec<usize> = (0..n).collect();
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // splitmix64: a seeded order without a dependency.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut weights: HashMap<usize, f32> = HashMap::new();
    for _ in 0..iterations {
        for i in (1..n).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let mut changed = false;
        for &i in &order {
            if graph[i].is_empty() {
                continue;
            }
            weights.clear();
            for &(j, s) in &graph[i] {
                *weights.entry(labels[j as usize]).or_default() += s;
            }
            // The heaviest label; ties to the smallest label, so the result is deterministic.
            let (&best, _) = weights
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                .expect("a face with links has a label among them");
            if best != labels[i] {
                labels[i] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    labels.into_iter().map(Some).collect()
}

/// DBSCAN's rule on the graph: cores (>= `min_samples` links) connected through cores form a
/// group; other faces join their most similar core neighbour's group, or none.
fn density(graph: &[Vec<(u32, f32)>], min_samples: usize) -> Vec<Option<usize>> {
    let n = graph.len();
    let core: Vec<bool> = graph.iter().map(|l| l.len() >= min_samples).collect();
    let mut labels: Vec<Option<usize>> = vec![None; n];
    let mut stack = Vec::new();
    for start in 0..n {
        if !core[start] || labels[start].is_some() {
            continue;
        }
        labels[start] = Some(start);
        stack.push(start);
        while let Some(i) = stack.pop() {
            for &(j, _) in &graph[i] {
                let j = j as usize;
                if core[j] && labels[j].is_none() {
                    labels[j] = Some(start);
                    stack.push(j);
                }
            }
        }
    }
    for i in 0..n {
        if core[i] {
            continue;
        }
        labels[i] = graph[i]
            .iter()
            .filter(|&&(j, _)| core[j as usize])
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .and_then(|&(j, _)| labels[j as usize]);
    }
    labels
}

/// Renumbers groups by size (largest first, ties by first face), dropping those below
/// `min_size`.
fn relabel(raw: &[Option<usize>], min_size: usize) -> Vec<Option<usize>> {
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, l) in raw.iter().enumerate() {
        if let Some(l) = l {
            members.entry(*l).or_default().push(i);
        }
    }
    let mut groups: Vec<Vec<usize>> = members
        .into_values()
        .filter(|m| m.len() >= min_size.max(1))
        .collect();
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    let mut out = vec![None; raw.len()];
    for (label, m) in groups.iter().enumerate() {
        for &i in m {
            out[i] = Some(label);
        }
    }
    out
}

/// Precision, recall and F1 of a grouping.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    /// Of what the grouping put together, the share that belongs together.
    pub precision: f64,
    /// Of what belongs together, the share the grouping put together.
    pub recall: f64,
    /// Their harmonic mean.
    pub f1: f64,
}

fn f1(precision: f64, recall: f64) -> Scores {
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Scores {
        precision,
        recall,
        f1,
    }
}

/// Predicted labels with unassigned faces as groups of their own.
fn closed(predicted: &[Option<usize>]) -> Vec<usize> {
    let offset = predicted.iter().flatten().max().map_or(0, |m| m + 1);
    predicted
        .iter()
        .enumerate()
        .map(|(i, l)| l.unwrap_or(offset + i))
        .collect()
}

/// Pairs among groups of these sizes.
fn pairs<'a>(sizes: impl Iterator<Item = &'a u64>) -> u64 {
    sizes.map(|&c| c * (c - 1) / 2).sum()
}

/// Pairwise scores: over all pairs of faces, those grouped together (precision) and those of
/// one identity (recall), counted from the contingency table.
pub fn pairwise_scores(predicted: &[Option<usize>], truth: &[usize]) -> Scores {
    let pred = closed(predicted);
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    let mut by_pred: HashMap<usize, u64> = HashMap::new();
    let mut by_true: HashMap<usize, u64> = HashMap::new();
    for (&p, &t) in pred.iter().zip(truth) {
        *cells.entry((p, t)).or_default() += 1;
        *by_pred.entry(p).or_default() += 1;
        *by_true.entry(t).or_default() += 1;
    }
    let together = pairs(cells.values()) as f64;
    let (predicted_pairs, true_pairs) = (
        pairs(by_pred.values()) as f64,
        pairs(by_true.values()) as f64,
    );
    f1(
        if predicted_pairs > 0.0 {
            together / predicted_pairs
        } else {
            1.0
        },
        if true_pairs > 0.0 {
            together / true_pairs
        } else {
            1.0
        },
    )
}

/// BCubed scores: for each face, the share of its group that shares its identity (precision)
/// and the share of its identity inside its group (recall), averaged over faces.
pub fn bcubed_scores(predicted: &[Option<usize>], truth: &[usize]) -> Scores {
    let pred = closed(predicted);
    let mut cells: HashMap<(usize, usize), f64> = HashMap::new();
    let mut by_pred: HashMap<usize, f64> = HashMap::new();
    let mut by_true: HashMap<usize, f64> = HashMap::new();
    for (&p, &t) in pred.iter().zip(truth) {
        *cells.entry((p, t)).or_default() += 1.0;
        *by_pred.entry(p).or_default() += 1.0;
        *by_true.entry(t).or_default() += 1.0;
    }
    let n = pred.len().max(1) as f64;
    let (mut p_sum, mut r_sum) = (0.0, 0.0);
    for (&p, &t) in pred.iter().zip(truth) {
        let c = cells[&(p, t)];
        p_sum += c / by_pred[&p];
        r_sum += c / by_true[&t];
    }
    f1(p_sum / n, r_sum / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors around `centres` directions in 4-d, `per` each, spread by `spread`.
    fn groups(centres: &[[f32; 4]], per: usize, spread: f32) -> (Vec<f32>, Vec<usize>) {
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for (g, c) in centres.iter().enumerate() {
            for i in 0..per {
                let mut v: Vec<f32> = c
                    .iter()
                    .enumerate()
                    .map(|(d, x)| x + spread * (((i * 7 + d * 3) % 5) as f32 - 2.0) / 2.0)
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                data.extend(v);
                labels.push(g);
            }
        }
        (data, labels)
    }

    #[test]
    fn separated_groups_are_recovered_exactly_by_both_algorithms() {
        let centres = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let (data, truth) = groups(&centres, 6, 0.1);
        for (algorithm, approximate_above) in [
            (Algorithm::ChineseWhispers, usize::MAX),
            (Algorithm::Density, usize::MAX),
            // Links from the HNSW graph instead of every pair.
            (Algorithm::ChineseWhispers, 0),
            (Algorithm::Density, 0),
        ] {
            let params = ClusterParams {
                threshold: 0.8,
                approximate_above,
                ..ClusterParams::default()
            };
            let labels = cluster(&data, 4, algorithm, &params);
            // Each true group maps to one label and no label spans two groups.
            for g in 0..3 {
                let first = labels[g * 6];
                assert!(first.is_some(), "{algorithm:?}: {labels:?}");
                assert!(labels[g * 6..(g + 1) * 6].iter().all(|l| *l == first));
            }
            assert_eq!(
                labels
                    .iter()
                    .flatten()
                    .collect::<std::collections::HashSet<_>>()
                    .len(),
                3
            );
            assert_eq!(pairwise_scores(&labels, &truth).f1, 1.0);
            assert_eq!(bcubed_scores(&labels, &truth).f1, 1.0);
        }
    }

    #[test]
    fn a_face_far_from_everyone_is_left_unassigned() {
        let centres = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]];
        let (mut data, _) = groups(&centres, 5, 0.05);
        data.extend([0.0, 0.0, 0.0, 1.0]);
        for algorithm in [Algorithm::ChineseWhispers, Algorithm::Density] {
            let labels = cluster(&data, 4, algorithm, &ClusterParams::default());
            assert_eq!(labels[10], None, "{algorithm:?}");
            assert!(labels[..10].iter().all(Option::is_some), "{algorithm:?}");
        }
    }

    #[test]
    fn the_same_seed_and_input_give_the_same_labels() {
        let centres = [
            [1.0, 0.2, 0.0, 0.0],
            [0.8, 1.0, 0.0, 0.0],
            [0.0, 0.3, 1.0, 0.5],
        ];
        let (data, _) = groups(&centres, 20, 0.6);
        let params = ClusterParams {
            threshold: 0.3,
            seed: 7,
            ..ClusterParams::default()
        };
        let a = cluster(&data, 4, Algorithm::ChineseWhispers, &params);
        let b = cluster(&data, 4, Algorithm::ChineseWhispers, &params);
        assert_eq!(a, b);
    }

    #[test]
    fn scores_match_hand_counts() {
        // Truth: {0,1,2} {3,4}. Predicted: {0,1} {2,3} {4 unassigned}.
        let truth = [0, 0, 0, 1, 1];
        let pred = [Some(0), Some(0), Some(1), Some(1), None];
        // Pairs predicted together: (0,1), (2,3) -> 2; of them same identity: (0,1) -> 1.
        // True pairs: 3 + 1 = 4. Precision 1/2, recall 1/4.
        let p = pairwise_scores(&pred, &truth);
        assert!((p.precision - 0.5).abs() < 1e-12 && (p.recall - 0.25).abs() < 1e-12);
        assert!((p.f1 - 1.0 / 3.0).abs() < 1e-12);
        // BCubed precision per face: 1, 1, 1/2, 1/2, 1 -> 4/5. Recall: 2/3, 2/3, 1/3, 1/2, 1/2
        // -> (2/3 + 2/3 + 1/3 + 1/2 + 1/2) / 5 = 8/15.
        let b = bcubed_scores(&pred, &truth);
        assert!((b.precision - 0.8).abs() < 1e-12, "{b:?}");
        assert!((b.recall - 8.0 / 15.0).abs() < 1e-12, "{b:?}");
        assert!((b.f1 - 2.0 * 0.8 * (8.0 / 15.0) / (0.8 + 8.0 / 15.0)).abs() < 1e-12);
    }

    #[test]
    fn the_blocked_search_finds_what_comparing_every_pair_in_f64_finds() {
        // 37 faces (four full blocks and a partial one) of 16 values: the vector path and the
        // plain one both run where the CPU has AVX2.
        let (n, dim) = (37, 16);
        let mut data: Vec<f32> = (0..n * dim)
            .map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0).powi(3))
            .collect();
        for row in data.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let (k, threshold) = (5, 0.1);
        let graph = neighbour_graph(&data, dim, k, threshold);
        for i in 0..n {
            let mut want: Vec<(usize, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let s = (0..dim)
                        .map(|d| data[i * dim + d] as f64 * data[j * dim + d] as f64)
                        .sum::<f64>();
                    (j, s)
                })
                .filter(|&(_, s)| s >= threshold as f64)
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            want.truncate(k);
            let got: Vec<usize> = graph[i].iter().map(|l| l.0 as usize).collect();
            assert_eq!(
                got,
                want.iter().map(|w| w.0).collect::<Vec<_>>(),
                "face {i}"
            );
            for (g, w) in graph[i].iter().zip(&want) {
                assert!(
                    (g.1 as f64 - w.1).abs() < 1e-5,
                    "face {i}: {} vs {}",
                    g.1,
                    w.1
                );
            }
        }
    }

    #[test]
    fn the_hnsw_distance_of_a_unit_vector_to_itself_is_zero_not_negative() {
        use hnsw_rs::anndists::dist::Distance;
        // A normalised vector whose f32 dot product with itself rounds above 1.
        let v = (3..200)
            .map(|dim| {
                let mut v: Vec<f32> = (1..=dim).map(|i| (i as f32).sin()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .find(|v| v.iter().map(|x| x * x).sum::<f32>() > 1.0)
            .expect("some length rounds above 1");
        assert_eq!(UnitCosineDistance.eval(&v, &v), 0.0);
        let e0: Vec<f32> = (0..v.len()).map(|i| f32::from(i == 0)).collect();
        assert!((UnitCosineDistance.eval(&v, &e0) - (1.0 - v[0])).abs() < 1e-6);
    }

    #[test]
    fn the_neighbour_graph_keeps_the_k_most_similar_above_the_threshold() {
        let data = [1.0, 0.0, 0.8, 0.6, 0.6, 0.8, 0.0, 1.0];
        let g = neighbour_graph(&data, 2, 2, 0.5);
        // Face 0's similarities: 0.8 (1), 0.6 (2), 0.0 (3).
        assert_eq!(g[0].iter().map(|l| l.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((g[0][0].1 - 0.8).abs() < 1e-6 && (g[0][1].1 - 0.6).abs() < 1e-6);
        // Face 3: 0.8 (2), 0.6 (1); face 0 is below the threshold.
        assert_eq!(g[3].iter().map(|l| l.0).collect::<Vec<_>>(), vec![2, 1]);
    }
}
