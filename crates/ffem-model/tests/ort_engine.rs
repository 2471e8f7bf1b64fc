//! The ONNX Runtime engine (`--features onnxruntime`) gives the embeddings burn gives, for the
//! network ffem trains by default and for the seed's step-1 network. Needs the library from
//! scripts/fetch-onnxruntime.sh (or ORT_DYLIB_PATH); without it the test fails and says so.
#![cfg(feature = "onnxruntime")]

use burn::tensor::Device;
use ffem_model::backbones::mobilenet_v3::MobileNetV3Config;
use ffem_model::heads::HeadKind;
use ffem_model::{Embedder, ModelConfig};

fn check(model_cfg: ModelConfig) {
    let cfg = model_cfg.clone();
    let device = Device::flex();
    device.seed(9);
    let model = model_cfg.init(&device);
    let burn = Embedder::new(&model, model_cfg.clone(), &device);
    let mut ort = Embedder::new(&model, model_cfg.clone(), &device);
    ort.use_onnxruntime(2).unwrap_or_else(|e| panic!("{e}"));
    let s = cfg.image_size;
    // 5 images: not a multiple of anything the engine might prefer.
    let n = 5;
    let images: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let a = burn.embed_prepared(&images, n);
    let b = ort.embed_prepared(&images, n);
    assert_eq!(a.len(), n * cfg.embedding_dim);
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{cfg:?}: burn and ONNX Runtime differ by {diff} (largest value {scale})"
    );
}

#[test]
fn onnxruntime_matches_burn() {
    check(ModelConfig {
        backbone: MobileNetV3Config::small(),
        head: HeadKind::Gnap,
        ..ModelConfig::default()
    });
    check(ModelConfig {
        backbone: MobileNetV3Config {
            minimalistic: true,
            ..MobileNetV3Config::large()
        },
        head: HeadKind::Flatten,
        ..ModelConfig::default()
    });
}

#[test]
fn missing_library_names_the_fetch_script() {
    let err = ffem_model::ort_engine::OrtEngineError::Missing("/nowhere/libonnxruntime.so".into());
    let msg = err.to_string();
    assert!(
        msg.contains("/nowhere/libonnxruntime.so") && msg.contains("scripts/fetch-onnxruntime.sh"),
        "{msg}"
    );
}
