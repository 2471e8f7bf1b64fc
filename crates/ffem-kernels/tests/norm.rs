//! Fused batch norm + activation against an f64 implementation of its definition, and its
//! gradients against central finite differences of that definition.

use ffem_kernels::{
    Activation, NormShape, batch_norm_act_infer, batch_norm_act_infer_to_vec, batch_norm_act_train,
    batch_norm_act_train_backward, batch_norm_act_train_backward_to_vec,
    batch_norm_act_train_to_vec,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPS: f64 = 1e-3;
const ACTS: [Activation; 4] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Relu6,
    Activation::HardSwish,
];

fn act64(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::Relu6 => z.clamp(0.0, 6.0),
        Activation::HardSwish => z * (z + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// y, mean, biased variance.
fn reference(
    s: NormShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    a: Activation,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (s.batch * s.spatial) as f64;
    let idx = |n: usize, c: usize, p: usize| (n * s.channels + c) * s.spatial + p;
    let mut mean = vec![0.0; s.channels];
    let mut var = vec![0.0; s.channels];
    for c in 0..s.channels {
        for n in 0..s.batch {
            for p in 0..s.spatial {
                mean[c] += x[idx(n, c, p)] / m;
            }
        }
        for n in 0..s.batch {
            for p in 0..s.spatial {
                var[c] += (x[idx(n, c, p)] - mean[c]).powi(2) / m;
            }
        }
    }
    let mut y = vec![0.0; x.len()];
    for n in 0..s.batch {
        for c in 0..s.channels {
            for p in 0..s.spatial {
                let i = idx(n, c, p);
                y[i] = act64(
                    a,
                    gamma[c] * (x[i] - mean[c]) / (var[c] + EPS).sqrt() + beta[c],
                );
            }
        }
    }
    (y, mean, var)
}

fn random(len: usize, lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// Shapes: several images and channels, an odd plane size (eight-lane remainder), batch 1, and
/// more values per channel than one f32 accumulation run (4096).
const SHAPES: [NormShape; 4] = [
    NormShape {
        batch: 9,
        channels: 2,
        spatial: 1001,
    },
    NormShape {
        batch: 3,
        channels: 4,
        spatial: 21,
    },
    NormShape {
        batch: 1,
        channels: 2,
        spatial: 49,
    },
    NormShape {
        batch: 5,
        channels: 3,
        spatial: 16,
    },
];

#[test]
fn forward_matches_the_definition() {
    for (k, s) in SHAPES.into_iter().enumerate() {
        for a in ACTS {
            let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
            // An offset of 50 checks that the statistics do not lose precision to a large mean.
            let x = random(s.batch * s.channels * s.spatial, 47.0, 53.0, &mut rng);
            let gamma = random(s.channels, 0.5, 2.0, &mut rng);
            let beta = random(s.channels, -1.0, 1.0, &mut rng);
            let (ry, rm, rv) = reference(s, &f64s(&x), &f64s(&gamma), &f64s(&beta), a);
            let mut y = vec![f32::NAN; x.len()];
            let (mut mean, mut var) = (vec![0.0; s.channels], vec![0.0; s.channels]);
            batch_norm_act_train(s, &x, &gamma, &beta, EPS, a, &mut y, &mut mean, &mut var);
            assert!(
                max_abs_diff(&mean, &rm) < 1e-4,
                "{s:?} {a:?} mean {mean:?} vs {rm:?}"
            );
            assert!(
                max_abs_diff(&var, &rv) < 1e-4,
                "{s:?} {a:?} var {var:?} vs {rv:?}"
            );
            assert!(
                max_abs_diff(&y, &ry) < 1e-4,
                "{s:?} {a:?} output differs by {}",
                max_abs_diff(&y, &ry)
            );

            // The allocating entry point runs the same code into fresh, never zeroed storage.
            assert_eq!(
                batch_norm_act_train_to_vec(s, &x, &gamma, &beta, EPS, a),
                (y.clone(), mean.clone(), var.clone())
            );

            // Inference with the batch's own statistics is the same function.
            let mut yi = vec![f32::NAN; x.len()];
            batch_norm_act_infer(s, &x, &gamma, &beta, &mean, &var, EPS, a, &mut yi);
            assert_eq!(
                batch_norm_act_infer_to_vec(s, &x, &gamma, &beta, &mean, &var, EPS, a),
                yi
            );
            assert!(
                max_abs_diff(&yi, &ry) < 1e-4,
                "{s:?} {a:?} inference differs"
            );
        }
    }
}

#[test]
fn inference_uses_the_given_statistics() {
    // One channel, hand-computed: gamma 2, beta 1, mean 3, var 4 - eps, so y = (x - 3) + 1.
    let s = NormShape {
        batch: 1,
        channels: 1,
        spatial: 4,
    };
    let x = [3.0f32, 5.0, -1.0, 10.0];
    let mut y = [0.0f32; 4];
    batch_norm_act_infer(
        s,
        &x,
        &[2.0],
        &[1.0],
        &[3.0],
        &[(4.0 - EPS) as f32],
        EPS,
        Activation::Relu6,
        &mut y,
    );
    let want = [1.0f32, 3.0, 0.0, 6.0]; // 1, 3, relu6(-3) = 0, relu6(8) = 6
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{y:?} vs {want:?}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    // The large shape only in the forward test: finite differences cost O(n^2).
    for (k, s) in SHAPES.into_iter().enumerate().skip(1) {
        for a in ACTS {
            let mut rng = ChaCha8Rng::seed_from_u64(100 + k as u64);
            let len = s.batch * s.channels * s.spatial;
            let x = random(len, -2.0, 2.0, &mut rng);
            let dy = random(len, -1.0, 1.0, &mut rng);
            let gamma = random(s.channels, 0.5, 3.0, &mut rng);
            let beta = random(s.channels, -1.0, 1.0, &mut rng);
            let (x64, g64, b64, dy64) = (f64s(&x), f64s(&gamma), f64s(&beta), f64s(&dy));
            let loss = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
                reference(s, x, g, b, a)
                    .0
                    .iter()
                    .zip(&dy64)
                    .map(|(y, d)| y * d)
                    .sum()
            };

            let mut y = vec![0.0; len];
            let (mut mean, mut var) = (vec![0.0; s.channels], vec![0.0; s.channels]);
            batch_norm_act_train(s, &x, &gamma, &beta, EPS, a, &mut y, &mut mean, &mut var);
            let (mut dx, mut dg, mut db) = (
                vec![f32::NAN; len],
                vec![f32::NAN; s.channels],
                vec![f32::NAN; s.channels],
            );
            batch_norm_act_train_backward(
                s, &x, &dy, &gamma, &beta, &mean, &var, EPS, a, &mut dx, &mut dg, &mut db,
            );
            assert_eq!(
                batch_norm_act_train_backward_to_vec(
                    s, &x, &dy, &gamma, &beta, &mean, &var, EPS, a
                ),
                (dx.clone(), dg.clone(), db.clone())
            );

            let h = 1e-6;
            let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
            for i in 0..len {
                let want = fd(&|d| {
                    let mut xp = x64.clone();
                    xp[i] += d;
                    loss(&xp, &g64, &b64)
                });
                assert!(
                    (dx[i] as f64 - want).abs() < 2e-3 * (1.0 + want.abs()),
                    "{s:?} {a:?} dx[{i}] {} vs {want}",
                    dx[i]
                );
            }
            for c in 0..s.channels {
                let want_g = fd(&|d| {
                    let mut gp = g64.clone();
                    gp[c] += d;
                    loss(&x64, &gp, &b64)
                });
                let want_b = fd(&|d| {
                    let mut bp = b64.clone();
                    bp[c] += d;
                    loss(&x64, &g64, &bp)
                });
                assert!(
                    (dg[c] as f64 - want_g).abs() < 2e-3 * (1.0 + want_g.abs()),
                    "{s:?} {a:?} dgamma[{c}] {} vs {want_g}",
                    dg[c]
                );
                assert!(
                    (db[c] as f64 - want_b).abs() < 2e-3 * (1.0 + want_b.abs()),
                    "{s:?} {a:?} dbeta[{c}] {} vs {want_b}",
                    db[c]
                );
            }
        }
    }
}

/// Squeeze-and-excite's per-plane scaling and its gradients on a case small enough to write out:
/// two planes of three values.
#[test]
fn plane_scaling_by_hand() {
    use ffem_kernels::{scale_planes_backward, scale_planes_to_vec};
    let x = [1.0f32, 2.0, 3.0, -1.0, 0.5, 4.0];
    let s = [2.0f32, -0.5];
    assert_eq!(
        scale_planes_to_vec(&x, &s, 3),
        vec![2.0, 4.0, 6.0, 0.5, -0.25, -2.0]
    );
    let dy = [1.0f32, 0.0, -1.0, 2.0, 2.0, 1.0];
    let (dx, ds) = scale_planes_backward(&x, &s, &dy, 3);
    assert_eq!(dx, vec![2.0, 0.0, -2.0, -1.0, -1.0, -0.5]);
    // ds = sum dy * x per plane: 1 - 3 = -2; -2 + 1 + 4 = 3.
    assert_eq!(ds, vec![-2.0, 3.0]);
}
