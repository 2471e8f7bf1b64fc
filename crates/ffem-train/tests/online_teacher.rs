//! A distillation teacher run inside the step (`teacher_model`, an imported ONNX model): the
//! targets are the model's outputs on the very batch the student sees, in the input convention
//! recorded at import, and a run trains on them. Runs in tract in a default build and in ONNX
//! Runtime in a build with `--features onnxruntime` (scripts/test.sh runs both).

use burn::tensor::Device;
use ffem_data::{Batch, RecordSource};
use ffem_infer::model_dir::{ImportOptions, import_onnx};
use ffem_infer::onnx_import::{ChannelOrder, InputConvention};
use ffem_train::config::{LossName, OptimizerName};
use ffem_train::teacher::Teacher;
use ffem_train::{TrainConfig, TrainOptions, train};

mod common;
#[path = "../../ffem-infer/tests/common/mod.rs"]
mod onnx_model;

use common::{SERIAL, assert_loss_falls, dataset, tiny_config, train_rows};

/// The tiny ONNX face model of ffem-infer's tests at `side` px, imported with `convention`
/// into a model directory in `dir`.
fn teacher_dir(dir: &std::path::Path, side: usize, convention: InputConvention) -> String {
    let file = dir.join(format!("teacher_{side}.onnx"));
    std::fs::write(&file, onnx_model::tiny_face_model_sized(1, side as u64)).unwrap();
    let out = dir.join(format!("teacher_{side}"));
    let opts = ImportOptions {
        convention: Some(convention),
        ..ImportOptions::default()
    };
    import_onnx(&file, &opts, &out).unwrap_or_else(|e| panic!("{e}"));
    out.display().to_string()
}

#[test]
fn the_online_teacher_embeds_the_batch_in_its_own_convention() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let side = 32;
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher_model: teacher_dir(dir.path(), side, InputConvention::raw(ChannelOrder::Bgr)),
        image_size: side,
        ..tiny_config(&records)
    };
    let source = RecordSource::open(&records).unwrap();
    let teacher = Teacher::open(&cfg, &source).unwrap().expect("a teacher");
    assert_eq!(teacher.dim(), 4);
    // Two images whose RGB pixel (channel c, pixel p) of image k is 30 + 50k + 60c + (p % 7):
    // prepared as v / 127.5 - 1, as the pipeline hands them over.
    let plane = side * side;
    let pixel = |k: usize, c: usize, p: usize| (30 + 50 * k + 60 * c + p % 7) as f64;
    let mut images = Vec::new();
    for k in 0..2 {
        for c in 0..3 {
            images.extend((0..plane).map(|p| (pixel(k, c, p) / 127.5 - 1.0) as f32));
        }
    }
    let batch = Batch {
        images,
        labels: vec![0, 1],
        paths: vec!["a.jpg".into(), "b.jpg".into()],
        index: 0,
        image_size: side,
    };
    let got = teacher
        .targets(&batch, &Device::flex())
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(got.len(), 8);
    for k in 0..2 {
        // Raw 0..255 pixels in BGR order: the model's channel 0 is the image's blue (RGB 2).
        let means: [f64; 3] = std::array::from_fn(|c| {
            (0..plane).map(|p| pixel(k, 2 - c, p)).sum::<f64>() / plane as f64
        });
        onnx_model::assert_expected_embedding(&got[k * 4..][..4], means, &format!("image {k}"));
    }
}

#[test]
fn a_pure_distillation_run_learns_from_the_online_teacher() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher_model: teacher_dir(dir.path(), 32, InputConvention::default()),
        num_identity: 2,
        optimizer: OptimizerName::Adam,
        lr: 0.005,
        epochs: 12,
        ..tiny_config(&records)
    };
    let run = dir.path().join("online");
    let rows = train_rows(&cfg, &run);
    assert_eq!(rows.len(), 72);
    // Over two epochs at each end: single steps of 8 images are noisy.
    assert_loss_falls(&rows, 12, "distill from the online teacher");
    // The 16-d student keeps its width; the 16 -> 4 projection onto the teacher is dropped.
    let (model_cfg, _) = ffem_model::load_model(&run.join("model"), &Device::flex()).unwrap();
    assert_eq!(model_cfg.embedding_dim, 16);
    // The run directory's config names the teacher, so --resume reopens it.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("teacher_model"), "{saved}");
}

#[test]
fn a_teacher_of_another_image_size_is_refused_naming_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = TrainConfig {
        loss: LossName::Distill,
        teacher_model: teacher_dir(dir.path(), 2, InputConvention::default()),
        ..tiny_config(&records)
    };
    let err = train(
        &cfg,
        &dir.path().join("run"),
        false,
        &TrainOptions::default(),
    )
    .expect_err("a 2x2 teacher cannot embed 32x32 crops")
    .to_string();
    assert!(
        err.contains("teacher_2") && err.contains("2x2") && err.contains("32x32"),
        "{err}"
    );
}
