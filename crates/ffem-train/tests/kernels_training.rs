//! A short training run with ffem's CPU kernels has the loss curve of the same run on burn's own
//! operations. Its own test binary: the kernel switch is process-wide.

use std::path::Path;

use ffem_data::{PackOptions, pack};
use ffem_model::conv::set_cpu_kernels;
use ffem_train::config::{BackboneName, LossName, OptimizerName};
use ffem_train::metrics::read_metrics;
use ffem_train::{TrainConfig, TrainOptions, train};

#[test]
fn loss_curve_matches_burn_operations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("synthetic");
    ffem_data::synth::generate(&src, 0, 8, 12, 64, 3).unwrap();
    let records = dir.path().join("records");
    pack(&PackOptions::new(
        src.join("images"),
        src.join("image_list.json"),
        &records,
    ))
    .unwrap();
    // The full MobileNetV3-Small (squeeze-excite, hard-swish, 5x5 depthwise) at a small width.
    let cfg = TrainConfig {
        train_data: records.display().to_string(),
        batch_size: 16,
        epochs: 2,
        image_size: 64,
        embedding_dim: 16,
        backbone: BackboneName::MobileNetV3Small,
        width: 0.5,
        // ReLU rather than ReLU6: at an input of exactly 0 (a channel that BatchNorm maps to its
        // initial beta = 0 because all its inputs are equal) ffem's ReLU6 derivative is 0, as in
        // PyTorch, and burn's clamp passes the gradient through; either is a valid subgradient,
        // but the runs would part at the first such channel. ReLU's conventions agree.
        activation: ffem_model::backbones::mobilenet_v3::Activation::Relu,
        head: ffem_model::heads::HeadKind::Gnap,
        loss: LossName::L2softmax,
        optimizer: OptimizerName::Adam,
        lr: 1e-3,
        checkpoint_every: 0,
        shuffle_buffer: 16,
        workers: 2,
        seed: 3,
        ..TrainConfig::default()
    };
    let run = |kernels: bool, out: &Path| {
        set_cpu_kernels(kernels);
        train(&cfg, out, false, &TrainOptions::default()).unwrap();
        read_metrics(&out.join("metrics.csv"))
            .unwrap()
            .iter()
            .map(|m| m.loss)
            .collect::<Vec<f64>>()
    };
    let fast = run(true, &dir.path().join("fast"));
    let reference = run(false, &dir.path().join("burn"));
    set_cpu_kernels(true);
    assert_eq!(fast.len(), 12, "96 images, batch 16, 2 epochs");
    assert_eq!(fast.len(), reference.len());
    // The loss moves: the comparison is not between two flat lines.
    assert!((fast[0] - fast[fast.len() - 1]).abs() > 0.05, "{fast:?}");
    // Float sums in another order differ in the last bits; training amplifies that slowly, so the
    // first steps must agree closely and the whole curve within half a percent.
    for (step, (f, r)) in fast.iter().zip(&reference).enumerate() {
        let tolerance = if step < 6 { 1e-4 } else { 5e-3 };
        assert!(
            (f - r).abs() <= tolerance * r.abs(),
            "step {step}: {f} with ffem's kernels, {r} with burn's\n{fast:?}\n{reference:?}"
        );
    }
}
