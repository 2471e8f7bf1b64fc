//! Times the full verification protocol on 6,000 pairs (the LFW size), single thread:
//! `bench_protocol [REPEATS]`. Prints the mean time per evaluation.
use std::time::Instant;

fn main() {
    let repeats: usize = std::env::args().nth(1).map_or(50, |s| s.parse().unwrap());
    let mut s = 12345u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let issame: Vec<bool> = (0..6000).map(|i| (i / 300) % 2 == 0).collect();
    let dist: Vec<f32> = issame
        .iter()
        .map(|&same| {
            if same {
                0.6 + 0.8 * rnd()
            } else {
                1.2 + 0.8 * rnd()
            }
        })
        .collect();
    let _ = ffem_eval::evaluate(&dist, &issame, 10, None);
    let t = Instant::now();
    let mut acc = 0.0;
    for _ in 0..repeats {
        acc += ffem_eval::evaluate(&dist, &issame, 10, None).accuracy;
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / repeats as f64;
    println!(
        "protocol on 6000 pairs (accuracy, VAL@FAR, AUC, EER, TAR@FAR): {ms:.2} ms per evaluation (mean of {repeats}; accuracy {:.4})",
        acc / repeats as f64
    );
}
