//! Grouping at scale: `n` synthetic unit embeddings of `dim` values, `per` faces per person
//! (a random direction per person, each face that direction plus noise), grouped with the
//! defaults of `ffem cluster` and the approximate (HNSW) neighbour graph, then scored against the
//! people they were drawn from. Prints the time, the scores and the peak resident memory.
//!
//!     cargo run --release -p ffem-eval --example cluster_synthetic -- 1000000 512 10

use ffem_eval::cluster::{Algorithm, ClusterParams, bcubed_scores, cluster, pairwise_scores};

/// A seeded generator of normal values (splitmix64 + Box-Muller): no dependency.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (n, dim, per) = (arg(1, 100_000), arg(2, 512), arg(3, 10));
    let mut rng = Normal(42);
    let people = n.div_ceil(per);
    let mut data = Vec::with_capacity(n * dim);
    let mut truth = Vec::with_capacity(n);
    let mut centre = vec![0f32; dim];
    for p in 0..people {
        centre.iter_mut().for_each(|c| *c = rng.sample());
        for _ in 0..per.min(n - p * per) {
            // Noise of a quarter of the centre's length: faces of one person at cosine ~0.8.
            let mut face: Vec<f32> = centre.iter().map(|c| c + 0.5 * rng.sample()).collect();
            let norm = face.iter().map(|x| x * x).sum::<f32>().sqrt();
            face.iter_mut().for_each(|x| *x /= norm);
            data.extend(face);
            truth.push(p);
        }
    }
    let params = ClusterParams {
        threshold: 0.5217,
        approximate_above: 0,
        ..ClusterParams::default()
    };
    let started = std::time::Instant::now();
    let labels = cluster(&data, dim, Algorithm::ChineseWhispers, &params);
    let seconds = started.elapsed().as_secs_f64();
    let found = labels.iter().flatten().max().map_or(0, |m| m + 1);
    let b = bcubed_scores(&labels, &truth);
    let p = pairwise_scores(&labels, &truth);
    println!(
        "{n} faces of {people} people, {dim}-d: {found} groups in {seconds:.1} s ({:.0} faces/s); BCubed F1 {:.4}, pairwise F1 {:.4}; peak memory {:.0} MiB (the embeddings alone {:.0} MiB)",
        n as f64 / seconds,
        b.f1,
        p.f1,
        peak_rss_mib(),
        (n * dim * 4) as f64 / (1 << 20) as f64
    );
}
