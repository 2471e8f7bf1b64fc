//! Recall@10 of the gallery's HNSW search against its exact search, and the time per query of
//! each: `ann_recall [FACES=100000] [DIM=128] [IDENTITIES=FACES/10] [--uniform]`. Faces are
//! clustered like face embeddings (each identity a random centre, each face the centre plus
//! noise: same-identity cosine about 0.7, different about 0); `--uniform` draws every face
//! independently instead (no structure: the worst case for a graph index). See
//! bench/ann_recall.sh.
use std::time::Instant;

use ffem_serve::gallery::{FaceRecord, Gallery};

/// A seeded generator of values in -0.5..0.5.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }
    fn unit(&mut self, dim: usize) -> Vec<f32> {
        normalise((0..dim).map(|_| self.next()).collect())
    }
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn main() {
    let uniform = std::env::args().any(|a| a == "--uniform");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let dim = args.get(1).copied().unwrap_or(128);
    let ids = args.get(2).copied().unwrap_or(n / 10).max(1);
    let mut rng = Lcg(7);
    let centres: Vec<Vec<f32>> = (0..ids).map(|_| rng.unit(dim)).collect();
    // Noise of norm ~0.65 around a unit centre: cosine to the centre ~0.84, between two faces of
    // one identity ~0.7.
    let spread = 0.65 / ((dim as f32) / 12.0).sqrt();
    let mut face_of = |identity: usize| -> Vec<f32> {
        if uniform {
            return rng.unit(dim);
        }
        let v = centres[identity]
            .iter()
            .map(|c| c + spread * 2.0 * rng.next())
            .collect();
        normalise(v)
    };
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open_with_ann(&dir.path().join("g.redb"), dim, 0).unwrap();
    let names: Vec<String> = (0..ids).map(|i| format!("id{i}")).collect();
    for name in &names {
        g.create_identity(name).unwrap();
    }
    let faces: Vec<FaceRecord> = (0..n)
        .map(|i| FaceRecord {
            identity: names[i % ids].clone(),
            image_sha256: [0; 32],
            face_box: [0.0; 4],
            embedding: face_of(i % ids),
        })
        .collect();
    let t = Instant::now();
    g.add_faces(faces).unwrap();
    let build = t.elapsed().as_secs_f64();
    // New faces of enrolled identities, as a search would bring.
    let queries: Vec<Vec<f32>> = (0..200).map(|i| face_of((i * 7919) % ids)).collect();
    let t = Instant::now();
    let exact: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            g.search_exact(q, 10)
                .into_iter()
                .map(|m| m.identity)
                .collect()
        })
        .collect();
    let exact_ms = t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64;
    let t = Instant::now();
    let approx: Vec<Vec<String>> = queries
        .iter()
        .map(|q| g.search(q, 10).into_iter().map(|m| m.identity).collect())
        .collect();
    let approx_ms = t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64;
    let hits: usize = exact
        .iter()
        .zip(&approx)
        .map(|(e, a)| a.iter().filter(|x| e.contains(x)).count())
        .sum();
    println!(
        "{n} {} faces x {dim}-d, {ids} identities: stored + HNSW built in {build:.1} s; recall@10 {:.3}; \
         exact {exact_ms:.2} ms/query, HNSW {approx_ms:.2} ms/query ({:.1}x)",
        if uniform { "uniform" } else { "clustered" },
        hits as f64 / (10 * queries.len()) as f64,
        exact_ms / approx_ms
    );
}
