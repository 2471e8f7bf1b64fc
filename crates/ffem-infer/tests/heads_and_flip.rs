//! GNAP against its definition computed by hand in f64, and flip test-time augmentation: the
//! mirror of a face gets the same embedding, and the embedding is the sum of the two passes.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use ffem_infer::embed::{Embedder, mirror};
use ffem_model::ModelConfig;
use ffem_model::heads::GnapHead;

/// GNAP as the seed defines it, on an (N, C, H, W) map whose BatchNorms are fresh (inference:
/// x / sqrt(1 + eps)): weight each position by mean_norm / (norm + 1e-6), average, normalise.
fn gnap_by_hand(x: &[f64], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let bn = |v: f64| v / (1.0f64 + 2e-5).sqrt();
    let mut out = Vec::new();
    for i in 0..n {
        let at = |ch: usize, p: usize| bn(x[(i * c + ch) * hw + p]);
        let norms: Vec<f64> = (0..hw)
            .map(|p| (0..c).map(|ch| at(ch, p).powi(2)).sum::<f64>().sqrt())
            .collect();
        let mean_norm = norms.iter().sum::<f64>() / hw as f64;
        for ch in 0..c {
            let pooled = (0..hw)
                .map(|p| at(ch, p) * mean_norm / (norms[p] + 1e-6))
                .sum::<f64>()
                / hw as f64;
            out.push(bn(pooled));
        }
    }
    out
}

#[test]
fn gnap_matches_its_definition() {
    let device = Device::flex();
    let (n, c, h, w) = (2, 3, 2, 3);
    let x: Vec<f64> = (0..n * c * h * w)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) / 7.0)
        .collect();
    // channels == dim: no linear layer, so the head is exactly BN -> GNAP -> BN.
    let head = GnapHead::new(c, c, &device).valid();
    assert!(head.fc.is_none());
    let input = Tensor::<4>::from_data(
        TensorData::new(
            x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [n, c, h, w],
        ),
        &device,
    );
    let got: Vec<f32> = head.forward(input).into_data().try_into_vec().unwrap();
    let want = gnap_by_hand(&x, n, c, h * w);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (*g as f64 - w).abs() < 1e-5,
            "burn {got:?}\nby hand {want:?}"
        );
    }
}

#[test]
fn mirror_reverses_each_row_of_each_plane() {
    // 2 channels of 2 x 2.
    let img = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    assert_eq!(
        mirror(&img, 2),
        vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0]
    );
    assert_eq!(mirror(&mirror(&img, 2), 2), img.to_vec());
}

#[test]
fn flip_tta_sums_both_passes_and_is_mirror_invariant() {
    let device = Device::flex();
    device.seed(4);
    let cfg = ModelConfig::small(0.25, 16, 32);
    let embedder = Embedder::new(&cfg.init(&device), cfg.clone(), &device);
    let s = cfg.image_size;
    // A left-right asymmetric image: a bright left half.
    let img: Vec<f32> = (0..3 * s * s)
        .map(|i| {
            if i % s < s / 2 {
                0.8
            } else {
                -0.3 + (i % 7) as f32 * 0.05
            }
        })
        .collect();
    let mirrored = mirror(&img, s);
    let plain = embedder.embed_prepared(&img, 1);
    let plain_mirrored = embedder.embed_prepared(&mirrored, 1);
    let (flip, _) = embedder.embed_batch(&img, 1, true);
    let (flip_of_mirror, _) = embedder.embed_batch(&mirrored, 1, true);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let scale = plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let sum: Vec<f32> = plain
        .iter()
        .zip(&plain_mirrored)
        .map(|(a, b)| a + b)
        .collect();
    assert!(max_diff(&flip, &sum) < 1e-5 * scale, "{flip:?} vs {sum:?}");
    assert!(max_diff(&flip, &flip_of_mirror) < 1e-4 * scale);
    // Not trivially so: the two passes differ.
    assert!(
        max_diff(&plain, &plain_mirrored) > 1e-3 * scale,
        "{plain:?} {plain_mirrored:?}"
    );
}
