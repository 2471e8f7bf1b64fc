//! The exported ONNX graph, run by tract, gives burn's embeddings on real face crops.

use burn::tensor::Device;
use ffem_eval::embedding::normalize_rows;
use ffem_infer::embed::{Embedder, FaceInput, prepare};
use ffem_model::heads::HeadKind;
use ffem_model::model::ModelConfig;
use tract_onnx::prelude::*;

fn faces(n: usize, size: usize) -> Vec<f32> {
    let data = ffem_testdata::shared_data();
    let mut out = Vec::new();
    match data {
        Some(d) => {
            let list = ffem_data::ImageList::load(&d.join("lfw/image_list.json")).unwrap();
            for e in list.entries.iter().take(n) {
                let bytes = std::fs::read(d.join("lfw/lfw-deepfunneled").join(&e.path)).unwrap();
                let b = e.face_box.unwrap();
                let f = FaceInput {
                    bytes,
                    face_box: Some([b.x1, b.y1, b.x2, b.y2]),
                    landmarks: e.landmarks,
                    name: e.path.clone(),
                };
                out.extend(prepare(&f, size, true).unwrap());
            }
        }
        None => {
            // Without the face data, synthetic faces still exercise every operator.
            for i in 0..n {
                let (img, b, lm) = ffem_data::synth::Identity::new(i as u64).render(96, i as u64);
                let bytes = ffem_data::imageops::encode_jpeg(&img, 95).unwrap();
                let f = FaceInput {
                    bytes,
                    face_box: Some([b.x1, b.y1, b.x2, b.y2]),
                    landmarks: Some(lm),
                    name: format!("synth{i}"),
                };
                out.extend(prepare(&f, size, true).unwrap());
            }
        }
    }
    out
}

fn check(cfg: ModelConfig) {
    let device = Device::flex();
    device.seed(3);
    let model = cfg.init(&device);
    ffem_model::model::materialize(&model);
    let n = 4;
    let s = cfg.image_size;
    let imgs = faces(n, s);
    // Reference: burn in inference mode. A fresh model's BatchNorm statistics are trivial, so
    // run a few training-mode batches first to give them real values.
    let ad = device.clone().autodiff();
    let trained = burn::module::Module::fork(model, &ad);
    for _ in 0..3 {
        let _ = trained.forward(ffem_model::model::images_tensor(&imgs, n, s, &ad));
    }
    let model = burn::module::Module::valid(&trained);
    let mut reference = Embedder::new(&model, cfg.clone(), &device).embed_prepared(&imgs, n);
    normalize_rows(&mut reference, cfg.embedding_dim);

    let bytes = ffem_model::onnx::to_onnx(&model, &cfg);
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .with_input_fact(0, f32::fact([n, 3, s, s]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((n, 3, s, s), imgs)
        .unwrap()
        .into();
    let out = plan.run(tvec!(input.into())).unwrap();
    let mut got: Vec<f32> = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(got.len(), n * cfg.embedding_dim);
    normalize_rows(&mut got, cfg.embedding_dim);
    let max = reference
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "{:?} head, {:?}: max |burn - tract| after normalisation = {max:.2e}",
        cfg.head, cfg.backbone.variant
    );
    assert!(
        max <= 1e-4,
        "{:?} head: max |burn - tract| after normalisation = {max}",
        cfg.head
    );
}

#[test]
fn onnx_export_matches_burn_for_every_head() {
    for head in [HeadKind::Gnap, HeadKind::Gdc, HeadKind::Flatten] {
        let mut cfg = ModelConfig {
            head,
            embedding_dim: 64,
            ..ModelConfig::default()
        };
        cfg.backbone = ffem_model::backbones::MobileNetV3Config::small();
        cfg.backbone.width = 0.5;
        check(cfg);
    }
    // The Large network with ReLU and the minimalistic variant.
    let mut cfg = ModelConfig {
        embedding_dim: 32,
        ..ModelConfig::default()
    };
    cfg.backbone.activation = ffem_model::backbones::Activation::Relu;
    check(cfg.clone());
    cfg.backbone.minimalistic = true;
    check(cfg);
}
