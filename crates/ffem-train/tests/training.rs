//! The trainer end to end on tiny synthetic data: resuming reproduces the uninterrupted loss
//! curve exactly, the non-finite guard skips and then stops, labels beyond num_identity fail.

use std::path::{Path, PathBuf};

use ffem_data::{PackOptions, pack};
use ffem_train::config::{BackboneName, LossName, OptimizerName, ScheduleName};
use ffem_train::metrics::read_metrics;
use ffem_train::precision::Precision;
use ffem_train::{TrainConfig, TrainOptions, train};

/// burn's CPU backend draws from one process-wide seeded RNG: tests that train must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn dataset(dir: &Path) -> PathBuf {
    let src = dir.join("synthetic");
    ffem_data::synth::generate(&src, 0, 8, 6, 48, 3).unwrap();
    let out = dir.join("records");
    pack(&PackOptions::new(
        src.join("images"),
        src.join("image_list.json"),
        &out,
    ))
    .unwrap();
    out
}

fn tiny_config(records: &Path) -> TrainConfig {
    TrainConfig {
        train_data: records.display().to_string(),
        batch_size: 8,
        epochs: 2,
        image_size: 32,
        embedding_dim: 16,
        backbone: BackboneName::MobileNetV3Small,
        width: 0.25,
        head: ffem_model::heads::HeadKind::Gnap,
        loss: LossName::Arcface,
        scale: 16.0,
        optimizer: OptimizerName::Sgd,
        lr: 0.05,
        schedule: ScheduleName::Cosine,
        checkpoint_every: 0,
        shuffle_buffer: 16,
        workers: 2,
        seed: 11,
        ..TrainConfig::default()
    }
}

#[test]
fn interrupted_and_resumed_run_has_the_same_loss_curve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = tiny_config(&records);
    let full = dir.path().join("full");
    let s = train(&cfg, &full, false, &TrainOptions::default()).unwrap();
    assert_eq!(s.steps, 12, "48 images, batch 8, 2 epochs");

    let split = dir.path().join("split");
    // Stop mid-epoch (after step 4 of 6), as a kill after a checkpoint would.
    let first = train(
        &cfg,
        &split,
        false,
        &TrainOptions {
            stop_after: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.steps, 4);
    let second = train(&cfg, &split, true, &TrainOptions::default()).unwrap();
    assert_eq!(second.steps, 12);

    let a = read_metrics(&full.join("metrics.csv")).unwrap();
    let b = read_metrics(&split.join("metrics.csv")).unwrap();
    assert_eq!(a.len(), 12);
    assert_eq!(b.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.step, y.step);
        assert_eq!(
            x.loss, y.loss,
            "loss at step {} differs: {} uninterrupted vs {} resumed",
            x.step, x.loss, y.loss
        );
        assert_eq!(x.lr, y.lr, "learning rate at step {}", x.step);
    }
    // Training did something: the loss of the last epoch is below the first steps'.
    assert!(a[11].loss < a[0].loss, "{} -> {}", a[0].loss, a[11].loss);
    assert!(full.join("model/model.json").exists() && full.join("curves_loss.png").exists());
}

#[test]
fn non_finite_losses_are_skipped_counted_and_then_stop_the_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let mut cfg = tiny_config(&records);
    cfg.max_nonfinite = 3;
    let run = dir.path().join("run");
    let s = train(
        &cfg,
        &run,
        false,
        &TrainOptions {
            poison_steps: vec![2, 3],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((s.steps, s.skipped_nonfinite), (12, 2));
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    assert!(rows[2].loss.is_nan() && rows[3].loss.is_nan() && rows[4].loss.is_finite());
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        text.lines().nth(4).unwrap().ends_with(",2,"),
        "skips are counted in the log: {}",
        text.lines().nth(4).unwrap()
    );

    let run2 = dir.path().join("run2");
    let err = train(
        &cfg,
        &run2,
        false,
        &TrainOptions {
            poison_steps: vec![5, 6, 7],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("training diverged: 3 consecutive non-finite losses at step 7"),
        "{err}"
    );
}

#[test]
fn too_few_identities_is_an_error_not_a_silent_zero_target() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let mut cfg = tiny_config(&records);
    cfg.num_identity = 5;
    let err = train(&cfg, &dir.path().join("r"), false, &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("num_identity = 5 but") && err.contains("holds 8 identities"),
        "{err}"
    );
}

#[test]
fn mixed_precision_trains_with_f32_masters_on_the_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    for precision in [Precision::F16, Precision::Bf16] {
        let mut cfg = tiny_config(&records);
        cfg.precision = precision;
        cfg.epochs = 4;
        let run = dir.path().join(format!("{precision:?}"));
        let s = train(&cfg, &run, false, &TrainOptions::default()).unwrap();
        let rows = read_metrics(&run.join("metrics.csv")).unwrap();
        assert_eq!(s.steps, 24);
        assert!(
            rows.iter().all(|r| r.loss.is_finite()),
            "{precision:?}: {rows:?}"
        );
        // f16 may skip a few early steps while the loss scale settles (overflow), bf16 never.
        let limit = if precision == Precision::F16 { 6 } else { 0 };
        assert!(
            s.skipped_nonfinite <= limit,
            "{precision:?}: {} steps skipped",
            s.skipped_nonfinite
        );
        let mean = |r: &[ffem_train::metrics::MetricsRow]| {
            r.iter().map(|x| x.loss).sum::<f64>() / r.len() as f64
        };
        assert!(
            mean(&rows[18..]) < mean(&rows[..6]),
            "{precision:?}: loss {} -> {}",
            mean(&rows[..6]),
            mean(&rows[18..])
        );
        // The saved model holds the f32 masters, not the reduced-precision compute copy.
        let device = burn::tensor::Device::flex();
        let (_, model) = ffem_model::load_model(&run.join("model"), &device).unwrap();
        assert_eq!(
            float_dtypes(&model),
            vec![burn::tensor::DType::F32],
            "{precision:?}"
        );
    }
}

/// The distinct dtypes of a module's float parameters.
fn float_dtypes<M: burn::module::Module>(module: &M) -> Vec<burn::tensor::DType> {
    struct Dtypes(Vec<burn::tensor::DType>);
    impl burn::module::ModuleVisitor for Dtypes {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let dtype = param.val().dtype();
            if !self.0.contains(&dtype) {
                self.0.push(dtype);
            }
        }
    }
    let mut v = Dtypes(vec![]);
    module.visit(&mut v);
    v.0
}
