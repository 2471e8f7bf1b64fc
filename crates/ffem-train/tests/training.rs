//! The trainer end to end on tiny synthetic data: resuming reproduces the uninterrupted loss
//! curve exactly, the non-finite guard skips and then stops, labels beyond num_identity fail.
//!
//! One file (over 600 lines) because the tests share one tiny data set and a lock that keeps
//! the trainer's runs from racing for the cores.

use ffem_model::heads::HeadKind;
use ffem_train::config::{BackboneName, LossName, OptimizerName};
use ffem_train::metrics::read_metrics;
use ffem_train::precision::Precision;
use ffem_train::{TrainConfig, TrainOptions, train};

mod common;

use common::{SERIAL, assert_loss_falls, dataset, tiny_config, train_rows};

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

/// Every trainable parameter of a module with its path (BatchNorm running statistics left out:
/// they move with every training forward pass even at learning rate 0).
fn trainable(module: &impl burn::module::Module) -> Vec<(String, Vec<f32>)> {
    struct Collect {
        path: Vec<String>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl burn::module::ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            if !self.path.last().is_some_and(|n| n.starts_with("running_")) {
                let values = param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .unwrap();
                self.out.push((self.path.join("."), values));
            }
        }
    }
    let mut c = Collect {
        path: vec![],
        out: vec![],
    };
    module.visit(&mut c);
    c.out
}

#[test]
fn init_copies_the_backbone_and_a_matching_head_and_refuses_another_backbone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = tiny_config(&records);
    let first = dir.path().join("first");
    train(&cfg, &first, false, &TrainOptions::default()).unwrap();
    let device = burn::tensor::Device::flex();
    let (_, source) = ffem_model::load_model(&first.join("model"), &device).unwrap();

    // One step at learning rate 0 keeps whatever --init put in.
    let frozen = |head| TrainConfig {
        lr: 0.0,
        weight_decay: 0.0,
        max_steps: 1,
        head,
        ..cfg.clone()
    };
    let init = TrainOptions {
        init: Some(first.join("model")),
        ..Default::default()
    };
    let same_head = dir.path().join("same_head");
    train(&frozen(HeadKind::Gnap), &same_head, false, &init).unwrap();
    let (_, copied) = ffem_model::load_model(&same_head.join("model"), &device).unwrap();
    assert_eq!(
        trainable(&copied),
        trainable(&source),
        "backbone and GNAP head copied"
    );

    let other_head = dir.path().join("other_head");
    train(&frozen(HeadKind::Flatten), &other_head, false, &init).unwrap();
    let (_, partly) = ffem_model::load_model(&other_head.join("model"), &device).unwrap();
    assert_eq!(
        trainable(&partly.backbone),
        trainable(&source.backbone),
        "the backbone is copied whatever the head"
    );
    assert!(partly.flatten.is_some() && source.flatten.is_none());

    // Without --init the same configuration starts elsewhere: the comparison above can fail.
    let fresh = dir.path().join("fresh");
    train(
        &frozen(HeadKind::Gnap),
        &fresh,
        false,
        &TrainOptions::default(),
    )
    .unwrap();
    let (_, fresh) = ffem_model::load_model(&fresh.join("model"), &device).unwrap();
    assert_ne!(trainable(&fresh.backbone), trainable(&source.backbone));

    let err = train(
        &TrainConfig {
            backbone: BackboneName::MobileNetV3Large,
            ..frozen(HeadKind::Gnap)
        },
        &dir.path().join("large"),
        false,
        &init,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("differs from this configuration's"), "{err}");
}

#[test]
fn val_set_is_verified_every_eval_every_steps_and_matches_a_separate_evaluation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    // Ten pairs of held-out identities in an insightface .bin: 5 same, 5 different.
    let held_out = dir.path().join("held_out");
    ffem_data::synth::generate(&held_out, 100, 4, 4, 48, 5).unwrap();
    let img = |id: u64, i: u32| {
        std::fs::read(held_out.join(format!("images/id{id:05}/{i:03}.jpg"))).unwrap()
    };
    let mut set = ffem_eval::bin_set::BinSet {
        images: vec![],
        issame: vec![],
    };
    for k in 0..10u64 {
        let (a, b) = if k % 2 == 0 {
            (100 + k / 4, 100 + k / 4)
        } else {
            (100 + k % 4, 100 + (k + 1) % 4)
        };
        set.images.push(img(a, (k % 4) as u32));
        set.images.push(img(b, ((k + 1) % 4) as u32));
        set.issame.push(a == b);
    }
    let bin = dir.path().join("held_out.bin");
    ffem_eval::bin_set::write_bin(&bin, &set).unwrap();

    let mut cfg = tiny_config(&records);
    cfg.val_set = format!("bin:{}", bin.display());
    cfg.eval_every = 4;
    let run = dir.path().join("run");
    let s = train(&cfg, &run, false, &TrainOptions::default()).unwrap();
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    let verified_steps = |rows: &[ffem_train::metrics::MetricsRow]| -> Vec<u64> {
        rows.iter()
            .filter(|r| r.val_accuracy.is_some())
            .map(|r| r.step)
            .collect()
    };
    assert_eq!(verified_steps(&rows), vec![4, 8, 12]);

    let device = burn::tensor::Device::flex();
    let (model_cfg, model) = ffem_model::load_model(&run.join("model"), &device).unwrap();
    let embedder = ffem_infer::Embedder::new(&model, model_cfg, &device);
    let pairs = ffem_infer::evalset::PairSet::bin(&bin).unwrap();
    let emb =
        ffem_infer::evalset::embed_set(&embedder, &pairs.faces, cfg.align, true, false).unwrap();
    let separate = ffem_infer::evalset::verify_set(&pairs, &emb);
    let last = s.verification.expect("a verification");
    assert_eq!(last.accuracy, separate.accuracy);
    // The model carries the threshold its validation chose, for `ffem verify` right away.
    let saved = ffem_infer::threshold::SavedThreshold::load(&run.join("model"))
        .unwrap()
        .expect("a threshold saved with the model");
    assert_eq!(
        (saved.set.as_str(), saved.threshold_cosine),
        ("held_out", separate.threshold_cosine as f32)
    );
    assert!((rows[11].val_accuracy.unwrap() - separate.accuracy).abs() < 1e-5);

    // eval_every = 5 does not divide the run's 12 steps: the summary and the saved threshold
    // still describe the final weights (verified once more after the last step), not step 10's.
    cfg.eval_every = 5;
    let run5 = dir.path().join("run5");
    let s = train(&cfg, &run5, false, &TrainOptions::default()).unwrap();
    let rows = read_metrics(&run5.join("metrics.csv")).unwrap();
    assert_eq!(verified_steps(&rows), vec![5, 10]);
    let (model_cfg, model) = ffem_model::load_model(&run5.join("model"), &device).unwrap();
    let embedder = ffem_infer::Embedder::new(&model, model_cfg, &device);
    let emb =
        ffem_infer::evalset::embed_set(&embedder, &pairs.faces, cfg.align, true, false).unwrap();
    let separate = ffem_infer::evalset::verify_set(&pairs, &emb);
    let last = s.verification.expect("a verification of the final weights");
    // The mean embedding norm moves with every step, where 10 pairs' accuracy and threshold may
    // not: it tells step 12's weights from step 10's.
    assert_eq!(
        (last.accuracy, last.threshold_cosine, last.embedding_norm),
        (
            separate.accuracy,
            separate.threshold_cosine,
            separate.embedding_norm
        )
    );
    let saved = ffem_infer::threshold::SavedThreshold::load(&run5.join("model"))
        .unwrap()
        .expect("a threshold saved with the model");
    assert_eq!(saved.threshold_cosine, separate.threshold_cosine as f32);

    // eval_every = 0: verified at epoch ends only, nothing in the per-step rows.
    cfg.eval_every = 0;
    let run0 = dir.path().join("run0");
    let s = train(&cfg, &run0, false, &TrainOptions::default()).unwrap();
    let rows = read_metrics(&run0.join("metrics.csv")).unwrap();
    assert!(rows.iter().all(|r| r.val_accuracy.is_none()));
    assert_eq!(s.verification.unwrap().pairs, 10);
}

#[test]
fn the_proxy_subcenter_and_softtriple_losses_lower_their_loss_in_a_short_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    for loss in [
        LossName::SubcenterArcface,
        LossName::ProxyNca,
        LossName::ProxyAnchor,
        LossName::SoftTriple,
    ] {
        let cfg = TrainConfig {
            loss,
            optimizer: OptimizerName::Adam,
            lr: 0.01,
            epochs: 4,
            ..tiny_config(&records)
        };
        let run = dir.path().join(format!("{loss:?}"));
        let rows = train_rows(&cfg, &run);
        assert_eq!(rows.len(), 24);
        assert_loss_falls(&rows, 6, &format!("{loss:?}"));
    }
}

#[test]
fn center_and_bias_corrected_triplet_losses_lower_their_loss_in_a_short_run() {
    use ffem_train::config::SamplerName;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let center = TrainConfig {
        loss: LossName::Center,
        center_lambda: 0.1,
        optimizer: OptimizerName::Adam,
        lr: 0.01,
        epochs: 6,
        ..tiny_config(&records)
    };
    // Batch-hard selection: its loss is over a fixed rule (each anchor's hardest pair), so it
    // falls as the network learns; the semi-hard loss is over negatives chosen relative to the
    // positive, which get harder as the embedding improves, so its value need not fall (the
    // study shows what it learns). 4 x 4 batches without augmentation, 12 epochs.
    let triplet = TrainConfig {
        loss: LossName::Triplet,
        triplet_mining: ffem_train::config::TripletMining::BatchHard,
        sampler: SamplerName::Pk,
        pk_images: 4,
        batch_size: 16,
        head: HeadKind::Flatten,
        dropout: 0.0,
        box_jitter: false,
        flip: false,
        color_jitter: false,
        cutout: false,
        optimizer: OptimizerName::Adam,
        lr: 0.01,
        epochs: 12,
        ..tiny_config(&records)
    };
    for cfg in [center, triplet] {
        let run = dir.path().join(format!("{:?}", cfg.loss));
        let rows = train_rows(&cfg, &run);
        assert!(rows.len() >= 30, "{:?}: {} steps", cfg.loss, rows.len());
        assert_loss_falls(&rows, 8, &format!("{:?}", cfg.loss));
    }
    // A triplet run without identity-balanced batches is refused before it starts.
    let cfg = TrainConfig {
        loss: LossName::Triplet,
        ..tiny_config(&records)
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("sampler = \"pk\""), "{err}");
}

#[test]
fn co_mining_trains_two_peers_and_lowers_the_loss() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = TrainConfig {
        co_mining: true,
        co_mining_drop: 0.25,
        optimizer: OptimizerName::Adam,
        lr: 0.01,
        epochs: 4,
        ..tiny_config(&records)
    };
    let run = dir.path().join("co_mining");
    let rows = train_rows(&cfg, &run);
    assert_eq!(rows.len(), 24);
    assert_loss_falls(&rows, 6, "co-mining");
    // The run resumes from its checkpoint with both peers (the record holds the second too).
    let more = TrainConfig {
        epochs: 5,
        ..cfg.clone()
    };
    let summary = train(&more, &run, true, &TrainOptions::default()).unwrap();
    assert_eq!(summary.steps, 30);
    // A loss without a per-image value is refused up front.
    let bad = TrainConfig {
        loss: LossName::ProxyAnchor,
        ..cfg
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("co_mining ranks images"), "{err}");
}

#[test]
fn partial_fc_at_a_tenth_of_the_identities_trains() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    // 400 classifier rows for the data's 8 identities: at 0.1 each step's softmax holds 40 rows,
    // the batch's identities plus a random share of the 392 others.
    let base = TrainConfig {
        num_identity: 400,
        loss: LossName::L2softmax,
        optimizer: OptimizerName::Adam,
        lr: 0.01,
        epochs: 4,
        ..tiny_config(&records)
    };
    let sampled_cfg = TrainConfig {
        sample_rate: 0.1,
        ..base.clone()
    };
    let (full, sampled) = (dir.path().join("full"), dir.path().join("sampled"));
    let full_rows = train_rows(&base, &full);
    let rows = train_rows(&sampled_cfg, &sampled);
    assert_eq!(rows.len(), 24);
    assert_loss_falls(&rows, 6, "sample_rate 0.1");
    // Same network, data and seed: the first step's loss differs only by the softmax's rows.
    // Before any training the 400 logits are alike, so the log-sum-exp over 40 of them is about
    // ln(400 / 40) = ln 10 smaller; a run that silently used all rows would show no gap.
    let gap = full_rows[0].loss - rows[0].loss;
    assert!(
        (gap - 10f64.ln()).abs() < 0.5,
        "first loss: full {} - sampled {} = {gap}, expected about ln 10",
        full_rows[0].loss,
        rows[0].loss
    );
}

/// A teacher file for the records of `records`: one row per record path, the identity's row of
/// the 8 x 8 Hadamard matrix (orthogonal codes) plus a small per-image offset (what a strong
/// teacher gives: images of an identity close together, identities apart). `skip` leaves the records of that label out; returns the first
/// record left out.
fn write_teacher(records: &std::path::Path, npy: &std::path::Path, skip: Option<i64>) -> String {
    let src = ffem_data::RecordSource::open(records).unwrap();
    let (mut rows, mut entries, mut left_out) = (Vec::new(), Vec::new(), String::new());
    for (i, rec) in src.records(false).enumerate() {
        let rec = rec.unwrap();
        let path = rec.path.unwrap();
        if Some(rec.label) == skip {
            if left_out.is_empty() {
                left_out = path;
            }
            continue;
        }
        let hadamard = |d: i64| {
            if (rec.label & d).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        };
        rows.extend((0..8).map(|d| hadamard(d) + 0.05 * ((i + d as usize) % 3) as f32));
        entries.push(ffem_eval::gallery::GalleryEntry {
            name: path,
            label: rec.label.to_string(),
        });
    }
    ffem_eval::gallery::write(npy, &rows, 8, &entries).unwrap();
    left_out
}

#[test]
fn distillation_pulls_the_student_onto_the_teacher_and_drops_the_projection() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let teacher = dir.path().join("teacher.npy");
    write_teacher(&records, &teacher, None);
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher: teacher.display().to_string(),
        // Labels are not used: a classifier of 2 for the data's 8 identities is no error here.
        num_identity: 2,
        optimizer: OptimizerName::Adam,
        lr: 0.005,
        epochs: 12,
        ..tiny_config(&records)
    };
    let run = dir.path().join("distill");
    let rows = train_rows(&cfg, &run);
    assert_eq!(rows.len(), 72);
    // Over two epochs at each end: single steps of 8 images are noisy.
    assert_loss_falls(&rows, 12, "distill");
    // In a pure distillation run the accuracy column is the mean cosine to the teacher: 1 - loss.
    for r in &rows {
        assert!((r.accuracy - (1.0 - r.loss)).abs() < 1e-4, "{r:?}");
    }
    // The 16-d student keeps its width: the 16 -> 8 projection is not part of the model.
    let (model_cfg, _) =
        ffem_model::load_model(&run.join("model"), &burn::tensor::Device::flex()).unwrap();
    assert_eq!(model_cfg.embedding_dim, 16);

    // Added to ArcFace with a weight, the combined loss trains too.
    let combined = TrainConfig {
        loss: LossName::Arcface,
        num_identity: 0,
        distill_weight: 2.0,
        ..cfg.clone()
    };
    let rows = train_rows(&combined, &dir.path().join("combined"));
    assert_loss_falls(&rows, 6, "arcface + distill");
}

#[test]
fn a_teacher_file_without_a_record_is_refused_naming_the_record() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let teacher = dir.path().join("teacher.npy");
    let missing = write_teacher(&records, &teacher, Some(5));
    assert!(!missing.is_empty());
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher: teacher.display().to_string(),
        ..tiny_config(&records)
    };
    let err = train(
        &cfg,
        &dir.path().join("run"),
        false,
        &TrainOptions::default(),
    )
    .expect_err("a record has no teacher embedding")
    .to_string();
    assert!(
        err.contains(&format!("`{missing}`")) && err.contains("teacher.csv"),
        "{err}"
    );
    // And a distillation run without a teacher says what to set.
    let err = TrainConfig {
        teacher: String::new(),
        ..cfg
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("teacher"), "{err}");
}

#[test]
fn teacher_settings_that_cannot_work_are_refused_naming_the_key() {
    let records = std::path::Path::new("records");
    let online = TrainConfig {
        loss: LossName::Distill,
        teacher_model: "models/sface".into(),
        ..tiny_config(records)
    };
    online
        .validate()
        .expect("an online teacher alone is a valid distillation run");
    let check = |cfg: TrainConfig, keys: &[&str]| {
        let err = cfg.validate().expect_err("invalid").to_string();
        assert!(keys.iter().all(|k| err.contains(k)), "{keys:?}: {err}");
    };
    check(
        TrainConfig {
            teacher: "teacher.npy".into(),
            ..online.clone()
        },
        &["teacher.npy", "models/sface", "pick"],
    );
    check(
        TrainConfig {
            co_mining: true,
            loss: LossName::Arcface,
            ..online.clone()
        },
        &["co_mining"],
    );
}

/// The keys that described an ONNX teacher before model directories could hold one are refused
/// with the way to the new one (import, then `teacher_model`), not with serde's "unknown field".
#[test]
fn the_replaced_teacher_onnx_keys_say_how_to_import_the_teacher() {
    for key in ["teacher_onnx=\"sface.onnx\"", "teacher_channels=\"bgr\""] {
        let err = TrainConfig::load(None, &["loss=\"distill\"".into(), key.into()])
            .expect_err("replaced key")
            .to_string();
        assert!(
            err.contains(key.split('=').next().unwrap())
                && err.contains("ffem import")
                && err.contains("teacher_model"),
            "{err}"
        );
    }
}

/// A teacher directory that holds no model stops the run before any step, naming the
/// directory and what a model directory holds.
#[test]
fn a_missing_teacher_model_is_named_before_training() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher_model: dir.path().join("no_such_model").display().to_string(),
        ..tiny_config(&records)
    };
    let run = dir.path().join("run");
    let err = train(&cfg, &run, false, &TrainOptions::default())
        .expect_err("no model there")
        .to_string();
    assert!(
        err.contains("no_such_model") && err.contains("ffem import"),
        "{err}"
    );
    assert!(!run.join("metrics.csv").exists(), "no step may run");
}

/// The classifier of the first step of a run in `run`, as its checkpoint holds it: with a
/// learning rate of 1e-12 that is the classifier the run drew.
fn drawn_classifier(
    cfg: &TrainConfig,
    run: &std::path::Path,
    init: Option<std::path::PathBuf>,
) -> Vec<f32> {
    use ffem_train::checkpoint;
    use ffem_train::losses::ClassifierLoss;
    use ffem_train::run_dir::RunDir;
    use ffem_train::step::TrainModule;

    let mut cfg = cfg.clone();
    cfg.lr = 1e-12;
    let options = TrainOptions {
        stop_after: Some(1),
        init,
        ..Default::default()
    };
    train(&cfg, run, false, &options).unwrap();
    let device = cfg.device.device().unwrap().autodiff();
    let module = TrainModule {
        model: cfg.model().init(&device),
        classifier: ClassifierLoss::new(cfg.loss(), 8, cfg.embedding_dim, &device),
        peer: None,
        distill: None,
    };
    let optim = ffem_train::optimizer::build(&cfg);
    let (module, _, _) = checkpoint::load(&RunDir::new(run), module, optim).unwrap();
    module
        .classifier
        .weight
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn a_run_from_init_does_not_redraw_the_first_runs_classifier() {
    use ffem_eval::embedding::cosine;

    // Step 2 keeps step 1's seed in the usual recipe. Drawn from the same stream, its "fresh"
    // classifier was step 1's starting one, which the network trained in step 1 is still aligned
    // with (on CFP: ArcFace starting at loss 31.2 instead of 40.8).
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = tiny_config(&records);
    let step1 = dir.path().join("step1");
    train(&cfg, &step1, false, &TrainOptions::default()).unwrap();

    let scratch = drawn_classifier(&cfg, &dir.path().join("scratch"), None);
    let again = drawn_classifier(&cfg, &dir.path().join("again"), None);
    let from_init = drawn_classifier(&cfg, &dir.path().join("step2"), Some(step1.join("model")));
    // From scratch the seed decides the draw (this is what step 1 started from)...
    let same = cosine(&scratch, &again);
    assert!(same > 0.999_999, "{same}");
    // ...and a run from step 1's model draws another: 8 x 16 independent weights have a cosine
    // of about N(0, 1/sqrt(128)) = N(0, 0.09).
    let c = cosine(&scratch, &from_init);
    assert!(
        c.abs() < 0.4,
        "the classifier from --init is step 1's starting one again (cosine {c})"
    );
}

#[test]
fn a_model_started_from_torchvisions_initialisation_initialises_a_run_that_names_burns() {
    // conv_init says how the weights started, not what the network is: --init must not refuse it.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let mut first = tiny_config(&records);
    first.conv_init = ffem_model::backbones::mobilenet_v3::ConvInit::Torchvision;
    first.max_steps = 2;
    let step1 = dir.path().join("step1");
    train(&first, &step1, false, &TrainOptions::default()).unwrap();
    let second = TrainConfig {
        max_steps: 2,
        ..tiny_config(&records)
    };
    let options = TrainOptions {
        init: Some(step1.join("model")),
        ..Default::default()
    };
    let s = train(&second, &dir.path().join("step2"), false, &options).unwrap();
    assert_eq!(s.steps, 2);
}

#[test]
fn a_run_from_init_resumed_without_init_repeats_the_uninterrupted_run() {
    // A run from --init draws its order and augmentations from a stream of its own; the
    // checkpoint keeps that stream, so resuming (which does not take --init again) continues it.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = TrainConfig {
        max_steps: 2,
        ..tiny_config(&records)
    };
    let step1 = dir.path().join("step1");
    train(&cfg, &step1, false, &TrainOptions::default()).unwrap();
    let cfg = tiny_config(&records);
    let from_init = |stop_after| TrainOptions {
        init: Some(step1.join("model")),
        stop_after,
        ..Default::default()
    };
    let full = dir.path().join("full");
    train(&cfg, &full, false, &from_init(None)).unwrap();
    let split = dir.path().join("split");
    train(&cfg, &split, false, &from_init(Some(5))).unwrap();
    train(&cfg, &split, true, &TrainOptions::default()).unwrap();
    let a = read_metrics(&full.join("metrics.csv")).unwrap();
    let b = read_metrics(&split.join("metrics.csv")).unwrap();
    assert_eq!((a.len(), b.len()), (12, 12));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.loss, y.loss, "loss at step {}", x.step);
    }
}
