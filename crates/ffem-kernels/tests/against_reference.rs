//! Every kernel against a direct f64 implementation of the convolution's definition, on the
//! shapes MobileNetV3 uses and on awkward ones (batch 1, odd sizes, more images than one batch
//! chunk, padding wider than the kernel's reach).

use ffem_kernels::{
    ConvGeometry, ConvKind, KernelError, conv2d_backward_input, conv2d_backward_input_to_vec,
    conv2d_backward_weight, conv2d_forward, conv2d_forward_to_vec,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `y[n,o,oy,ox] = sum_{i in group(o), ky, kx} x[n,i,oy*s+ky-p, ox*s+kx-p] w[o,i',ky,kx]`.
fn reference_forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f64> {
    let (ho, wo) = (g.out_h(), g.out_w());
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    let mut y = vec![0.0f64; g.output_len()];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            let grp = o / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0.0f64;
                    for ii in 0..cin_g {
                        let i = grp * cin_g + ii;
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xv = x[((n * g.in_channels + i) * g.in_h + iy as usize)
                                    * g.in_w
                                    + ix as usize] as f64;
                                let wv = w[((o * cin_g + ii) * g.kernel[0] + ky) * g.kernel[1] + kx]
                                    as f64;
                                s += xv * wv;
                            }
                        }
                    }
                    y[((n * g.out_channels + o) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    y
}

/// The gradients of `sum(y * dy)` with respect to x and w, by scattering each product of the
/// forward sum back to its two factors.
fn reference_backward(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    let mut dx = vec![0.0f64; g.input_len()];
    let mut dw = vec![0.0f64; g.weight_len()];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            let grp = o / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let d = dy[((n * g.out_channels + o) * ho + oy) * wo + ox] as f64;
                    for ii in 0..cin_g {
                        let i = grp * cin_g + ii;
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * g.in_channels + i) * g.in_h + iy as usize) * g.in_w
                                    + ix as usize;
                                let wi = ((o * cin_g + ii) * g.kernel[0] + ky) * g.kernel[1] + kx;
                                dx[xi] += d * w[wi] as f64;
                                dw[wi] += d * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}

fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
        / scale
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    batch: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> ConvGeometry {
    ConvGeometry {
        batch,
        in_channels: cin,
        in_h: h,
        in_w: w,
        out_channels: cout,
        kernel: [k, k],
        stride: [stride, stride],
        padding: [pad, pad],
        groups,
    }
}

/// Relative to the largest value: f32 sums of up to a few thousand terms.
const TOLERANCE: f64 = 2e-5;

fn check(g: ConvGeometry, kind: ConvKind, seed: u64) {
    assert_eq!(g.kind(), Some(kind), "{g:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random(g.input_len(), &mut rng);
    let w = random(g.weight_len(), &mut rng);
    let dy = random(g.output_len(), &mut rng);

    // Start from garbage: every kernel must overwrite its output, not add to it.
    let mut y = vec![f32::NAN; g.output_len()];
    conv2d_forward(&g, &x, &w, &mut y).unwrap();
    let e = max_rel_err(&y, &reference_forward(&g, &x, &w));
    assert!(e < TOLERANCE, "forward {g:?}: relative error {e:e}");
    // The allocating entry point runs the same code into fresh, never zeroed storage.
    assert_eq!(conv2d_forward_to_vec(&g, &x, &w, None).unwrap(), y, "{g:?}");

    let (rdx, rdw) = reference_backward(&g, &x, &w, &dy);
    let mut dx = vec![f32::NAN; g.input_len()];
    conv2d_backward_input(&g, &w, &dy, &mut dx).unwrap();
    let e = max_rel_err(&dx, &rdx);
    assert!(e < TOLERANCE, "input gradient {g:?}: relative error {e:e}");
    assert_eq!(
        conv2d_backward_input_to_vec(&g, &w, &dy).unwrap(),
        dx,
        "{g:?}"
    );

    let mut dw = vec![f32::NAN; g.weight_len()];
    conv2d_backward_weight(&g, &x, &dy, &mut dw).unwrap();
    let e = max_rel_err(&dw, &rdw);
    assert!(e < TOLERANCE, "weight gradient {g:?}: relative error {e:e}");
}

#[test]
fn pointwise_matches_the_definition() {
    check(
        geometry(2, 16, 14, 14, 64, 1, 1, 0, 1),
        ConvKind::Pointwise,
        1,
    );
    check(geometry(1, 3, 5, 7, 5, 1, 1, 0, 1), ConvKind::Pointwise, 2); // batch 1, odd sizes
    check(
        geometry(11, 24, 4, 4, 40, 1, 1, 0, 1),
        ConvKind::Pointwise,
        3,
    ); // two batch chunks
    check(geometry(3, 7, 1, 1, 9, 1, 1, 0, 1), ConvKind::Pointwise, 4); // squeeze-excite shape
}

#[test]
fn dense_matches_the_definition() {
    check(geometry(2, 3, 16, 16, 16, 3, 2, 1, 1), ConvKind::Dense, 5); // MobileNetV3's stem
    check(geometry(1, 3, 9, 7, 4, 3, 1, 1, 1), ConvKind::Dense, 6);
    check(geometry(10, 5, 11, 11, 6, 5, 2, 2, 1), ConvKind::Dense, 7);
    check(geometry(2, 4, 6, 6, 3, 1, 2, 0, 1), ConvKind::Dense, 8); // strided 1x1
    check(geometry(1, 2, 4, 5, 3, 3, 1, 3, 1), ConvKind::Dense, 9); // padding past the kernel's reach
}

#[test]
fn depthwise_matches_the_definition() {
    for (i, (k, s)) in [(3, 1), (3, 2), (5, 1), (5, 2)].into_iter().enumerate() {
        let p = (k - 1) / 2;
        check(
            geometry(2, 12, 14, 14, 12, k, s, p, 12),
            ConvKind::Depthwise,
            10 + i as u64,
        );
        check(
            geometry(1, 5, 9, 13, 5, k, s, p, 5),
            ConvKind::Depthwise,
            20 + i as u64,
        );
        check(
            geometry(9, 3, 7, 7, 3, k, s, p, 3),
            ConvKind::Depthwise,
            30 + i as u64,
        );
    }
    // Wide rows exercise the eight-lane dot product and its remainder.
    check(
        geometry(2, 4, 19, 37, 4, 3, 1, 1, 4),
        ConvKind::Depthwise,
        40,
    );
    check(geometry(1, 2, 6, 6, 2, 3, 1, 4, 2), ConvKind::Depthwise, 41);
    // GDC heads: one kernel the size of the map, no padding (7x7 and 4x4 maps).
    check(geometry(3, 8, 7, 7, 8, 7, 1, 0, 8), ConvKind::Depthwise, 42);
    check(geometry(3, 8, 4, 4, 8, 4, 1, 0, 8), ConvKind::Depthwise, 43);
    check(
        geometry(2, 3, 12, 12, 3, 7, 2, 3, 3),
        ConvKind::Depthwise,
        44,
    );
}

/// The reference's gradients are themselves checked by central differences of its forward sum,
/// so that the kernels are not compared with a formula that shares their mistake.
#[test]
fn reference_gradients_match_finite_differences() {
    let g = geometry(2, 3, 5, 6, 3, 3, 2, 1, 3);
    let g_dense = geometry(1, 2, 5, 4, 3, 3, 1, 1, 1);
    for (g, seed) in [(g, 50u64), (g_dense, 51)] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(g.input_len(), &mut rng);
        let w = random(g.weight_len(), &mut rng);
        let dy = random(g.output_len(), &mut rng);
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            reference_forward(&g, x, w)
                .iter()
                .zip(&dy)
                .map(|(a, b)| a * *b as f64)
                .sum()
        };
        let (dx, dw) = reference_backward(&g, &x, &w, &dy);
        let h = 1e-2f32; // the loss is linear in each argument, so any step is exact up to rounding
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h as f64);
            assert!((fd - dx[i]).abs() < 1e-4, "dx[{i}]: {fd} vs {}", dx[i]);
        }
        for i in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[i] += h;
            wm[i] -= h;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h as f64);
            assert!((fd - dw[i]).abs() < 1e-4, "dw[{i}]: {fd} vs {}", dw[i]);
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let g = geometry(19, 16, 9, 9, 24, 1, 1, 0, 1);
    let d = geometry(19, 16, 9, 9, 16, 5, 2, 2, 16);
    for g in [g, d] {
        let mut rng = ChaCha8Rng::seed_from_u64(60);
        let x = random(g.input_len(), &mut rng);
        let dy = random(g.output_len(), &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut dw = vec![0.0; g.weight_len()];
                conv2d_backward_weight(&g, &x, &dy, &mut dw).unwrap();
                dw
            })
        };
        let one = run(1);
        assert_eq!(one, run(3), "{g:?}");
        assert_eq!(one, run(8), "{g:?}");
    }
}

#[test]
fn unsupported_geometries_and_wrong_lengths_are_errors() {
    let grouped = geometry(1, 8, 4, 4, 8, 3, 1, 1, 2);
    assert_eq!(grouped.kind(), None);
    assert!(matches!(
        conv2d_forward(&grouped, &[], &[], &mut []),
        Err(KernelError::Unsupported(_))
    ));
    let multiplier = geometry(1, 4, 4, 4, 8, 3, 1, 1, 4);
    assert_eq!(multiplier.kind(), None);
    let too_big_kernel = geometry(1, 1, 2, 2, 1, 5, 1, 0, 1);
    assert_eq!(too_big_kernel.out_h(), 0);
    assert_eq!(too_big_kernel.kind(), None);

    let g = geometry(1, 2, 3, 3, 2, 1, 1, 0, 1);
    let err = conv2d_forward(&g, &[0.0; 17], &[0.0; 4], &mut [0.0; 18]).unwrap_err();
    assert_eq!(
        err,
        KernelError::Length {
            what: "input",
            got: 17,
            expected: 18,
            geometry: Box::new(g)
        }
    );
    assert!(err.to_string().contains("input has 17 elements"), "{err}");
}

/// The fused epilogue equals the convolution followed by the affine map and activation.
#[test]
fn fused_epilogue_matches_convolution_then_affine() {
    use ffem_kernels::{Activation, Epilogue, conv2d_forward_fused};
    for (i, g) in [
        geometry(3, 8, 9, 9, 12, 1, 1, 0, 1),
        geometry(2, 3, 16, 16, 8, 3, 2, 1, 1),
        geometry(3, 6, 7, 7, 6, 3, 1, 1, 6),
        geometry(2, 5, 11, 11, 5, 5, 2, 2, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = ChaCha8Rng::seed_from_u64(70 + i as u64);
        let x = random(g.input_len(), &mut rng);
        let w = random(g.weight_len(), &mut rng);
        let scale = random(g.out_channels, &mut rng);
        let shift = random(g.out_channels, &mut rng);
        let plain = reference_forward(&g, &x, &w);
        let hw = g.out_h() * g.out_w();
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::HardSwish,
        ] {
            let mut y = vec![f32::NAN; g.output_len()];
            conv2d_forward_fused(
                &g,
                &x,
                &w,
                &Epilogue {
                    scale: &scale,
                    shift: &shift,
                    act,
                },
                &mut y,
            )
            .unwrap();
            for (j, (&got, &p)) in y.iter().zip(&plain).enumerate() {
                let c = (j / hw) % g.out_channels;
                let z = p * scale[c] as f64 + shift[c] as f64;
                let want = match act {
                    Activation::Identity => z,
                    Activation::Relu => z.max(0.0),
                    Activation::Relu6 => z.clamp(0.0, 6.0),
                    Activation::HardSwish => z * (z + 3.0).clamp(0.0, 6.0) / 6.0,
                };
                assert!(
                    (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{g:?} {act:?} [{j}]: {got} vs {want}"
                );
            }
        }
    }
}
