//! The fused Adam step against the textbook update (Kingma & Ba, with PyTorch's L2 decay and
//! AdamW's decoupled decay) written out in f64, over several steps, on a parameter short enough
//! for the single-thread path and one long enough for the parallel split (odd lengths); and the
//! edge cases: lengths from empty to just past the parallel chunk, mismatched lengths.

use ffem_kernels::{AdamStep, adam_step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The textbook step, in f64: bias-corrected moments, epsilon outside the root.
fn reference_step(s: &AdamStep, w: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    let (b1, b2) = (s.beta_1 as f64, s.beta_2 as f64);
    for i in 0..w.len() {
        let gi = g[i] + s.l2_decay as f64 * w[i];
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        let m_hat = m[i] / (1.0 - b1.powi(s.time));
        let v_hat = v[i] / (1.0 - b2.powi(s.time));
        w[i] = w[i] * (1.0 - s.lr * s.decoupled_decay as f64)
            - s.lr * m_hat / (v_hat.sqrt() + s.epsilon as f64);
    }
}

#[test]
fn three_steps_match_the_textbook_update() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for len in [7usize, 100_003] {
        for (l2, decoupled) in [(0.0f32, 0.0f32), (5e-4, 0.0), (0.0, 0.05)] {
            let mut w: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
            let mut w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            let (mut m64, mut v64) = (vec![0.0f64; len], vec![0.0f64; len]);
            for time in 1..=3 {
                // Gradients of mixed magnitude, including exact zeros (v = 0 at the first step:
                // the epsilon keeps the division finite).
                let g: Vec<f32> = (0..len)
                    .map(|i| {
                        if i % 5 == 0 {
                            0.0
                        } else {
                            rng.random_range(-1.0f32..1.0) * 10f32.powi(i as i32 % 4 - 2)
                        }
                    })
                    .collect();
                let step = AdamStep {
                    lr: 1e-3,
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-7,
                    l2_decay: l2,
                    decoupled_decay: decoupled,
                    time,
                };
                adam_step(&step, &mut w, &g, &mut m, &mut v);
                let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                reference_step(&step, &mut w64, &g64, &mut m64, &mut v64);
                let worst = w
                    .iter()
                    .zip(&w64)
                    .map(|(&a, &b)| (a as f64 - b).abs())
                    .fold(0.0, f64::max);
                // The update is at most lr = 1e-3 per step; f32 rounding of |w| <= 1 is ~6e-8.
                assert!(
                    worst < 5e-7,
                    "len {len}, l2 {l2}, decoupled {decoupled}, step {time}: parameter off by {worst:e}"
                );
                let worst_v = v
                    .iter()
                    .zip(&v64)
                    .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1e-12))
                    .fold(0.0, f64::max);
                assert!(worst_v < 1e-5, "second moment off by a factor {worst_v:e}");
            }
        }
    }
}

/// The first step with PyTorch's default betas, ffem's epsilon and no decay.
fn plain_step(lr: f64) -> AdamStep {
    AdamStep {
        lr,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
        l2_decay: 0.0,
        decoupled_decay: 0.0,
        time: 1,
    }
}

#[test]
fn first_step_moves_every_weight_by_about_the_learning_rate() {
    // With zero moments, m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps) = lr sign(g).
    let g = [0.3f32, -2.0, 1e-3];
    let mut w = [1.0f32, 1.0, 1.0];
    let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
    let step = plain_step(0.01);
    adam_step(&step, &mut w, &g, &mut m, &mut v);
    for (got, want) in w.iter().zip([0.99f32, 1.01, 0.99]) {
        assert!((got - want).abs() < 1e-5, "{w:?}");
    }
}

/// Every element is updated exactly once whatever the length: empty, one element, and around
/// the parallel split's chunk of 2^15 elements (one short, exact, one over, two chunks and a
/// tail), each against the textbook step. A split that skips or repeats a tail is caught here.
#[test]
fn lengths_around_the_parallel_chunk_update_every_element_once() {
    const CHUNK: usize = 1 << 15;
    let step = AdamStep {
        time: 2,
        l2_decay: 1e-3,
        ..plain_step(0.01)
    };
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3] {
        let w0: Vec<f32> = (0..len).map(|i| (i % 97) as f32 / 50.0 - 1.0).collect();
        let g: Vec<f32> = (0..len)
            .map(|i| ((i * 31) % 89) as f32 / 40.0 - 1.0)
            .collect();
        let m0: Vec<f32> = (0..len).map(|i| ((i * 7) % 13) as f32 / 100.0).collect();
        let v0: Vec<f32> = (0..len)
            .map(|i| ((i * 5) % 11 + 1) as f32 / 1000.0)
            .collect();
        let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
        adam_step(&step, &mut w, &g, &mut m, &mut v);
        let widen = |x: &[f32]| x.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (mut w64, mut m64, mut v64) = (widen(&w0), widen(&m0), widen(&v0));
        reference_step(&step, &mut w64, &widen(&g), &mut m64, &mut v64);
        assert_eq!(w.len(), len);
        for i in 0..len {
            assert!(
                // f32 rounding of values up to ~1.
                (w[i] as f64 - w64[i]).abs() < 2e-6 && (m[i] as f64 - m64[i]).abs() < 1e-6,
                "length {len}, element {i}: w {} vs {}, m {} vs {}",
                w[i],
                w64[i],
                m[i],
                m64[i]
            );
        }
    }
}

#[test]
#[should_panic(expected = "gradient 2")]
fn mismatched_lengths_are_refused() {
    let step = plain_step(0.1);
    adam_step(
        &step,
        &mut [0.0; 3],
        &[0.0; 2],
        &mut [0.0; 3],
        &mut [0.0; 3],
    );
}
