//! The ONNX Runtime engine (`--features onnxruntime`) gives the embeddings burn gives, for the
//! network ffem trains by default and for the seed's step-1 network. Needs the library from
//! scripts/fetch-onnxruntime.sh (or ORT_DYLIB_PATH); without it the test fails and says so.
#![cfg(feature = "onnxruntime")]

use burn::tensor::Device;
use ffem_infer::Embedder;
use ffem_model::ModelConfig;
use ffem_model::backbones::mobilenet_v3::MobileNetV3Config;
use ffem_model::heads::HeadKind;

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

/// A missing library is reported by the engine's own loading path, naming the path it looked at
/// and the fetch script. The library is loaded once per process, and the other tests here load
/// the real one, so the check runs in a child process of this test binary with `ORT_DYLIB_PATH`
/// pointing nowhere.
#[test]
fn missing_library_names_the_fetch_script() {
    const CHILD: &str = "FFEM_TEST_ORT_MISSING_CHILD";
    let nowhere = "/nowhere/libonnxruntime.so";
    if std::env::var_os(CHILD).is_some() {
        let cfg = ModelConfig::small(0.25, 16, 32);
        let device = Device::flex();
        let model = cfg.init(&device);
        let mut embedder = Embedder::new(&model, cfg, &device);
        let err = embedder.use_onnxruntime(1).unwrap_err();
        println!("engine error: {err}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "missing_library_names_the_fetch_script",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("ORT_DYLIB_PATH", nowhere)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = stdout
        .lines()
        .find_map(|l| l.strip_prefix("engine error: "))
        .unwrap_or_else(|| panic!("the child reported no error:\n{stdout}"));
    assert!(
        msg.contains(nowhere) && msg.contains("scripts/fetch-onnxruntime.sh"),
        "{msg}"
    );
}

mod common;

/// An external model with old converters' quirks (unused input, initializer input, batch fixed
/// at 1, int8 weights with per-block scales) embeds three images in one batch (with a batch fixed
/// at 2: in two runs, the second padded), and the input convention reaches the graph: the output
/// equals the hand formula on the images' pixels.
#[test]
fn external_onnx_model_runs_with_its_input_convention() {
    use ffem_infer::onnx_import::{ChannelOrder, InputConvention};
    use ffem_infer::ort_engine::ExternalOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.onnx");
    std::fs::write(&path, common::tiny_face_model()).unwrap();
    // A batch fixed at 2 stays fixed: three images run as two padded batches.
    let fixed_two = dir.path().join("tiny_batch2.onnx");
    std::fs::write(&fixed_two, common::tiny_face_model_with_batch(2)).unwrap();
    let side = common::SIDE as usize;
    let plane = side * side;
    let n = 3;
    // Image k, RGB channel ch, pixel p: v = 10k + 40ch + 17p, prepared as v / 127.5 - 1.
    let pixel = |k: usize, ch: usize, p: usize| (10 * k + 40 * ch + 17 * p) as f64;
    let mut prepared = Vec::new();
    for k in 0..n {
        for ch in 0..3 {
            for p in 0..plane {
                prepared.push((pixel(k, ch, p) / 127.5 - 1.0) as f32);
            }
        }
    }
    let mean =
        |k: usize, ch: usize| (0..plane).map(|p| pixel(k, ch, p)).sum::<f64>() / plane as f64;
    for (file, convention, model_channel) in [
        (
            &path,
            InputConvention::raw(ChannelOrder::Bgr),
            [2usize, 1, 0],
        ),
        (&path, InputConvention::default(), [0, 1, 2]),
        (&fixed_two, InputConvention::default(), [0, 1, 2]),
    ] {
        let opts = ExternalOptions {
            convention,
            threads: 1,
            ..ExternalOptions::default()
        };
        let embedder = Embedder::from_onnx_file(file, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(embedder.dim(), 4);
        assert_eq!(embedder.config().image_size, side);
        assert!(embedder.config().align);
        let got = embedder.embed_prepared(&prepared, n);
        assert_eq!(got.len(), n * 4);
        for k in 0..n {
            let means: [f64; 3] = std::array::from_fn(|c| {
                (mean(k, model_channel[c]) - convention.mean[c] as f64) / convention.std[c] as f64
            });
            common::assert_expected_embedding(
                &got[k * 4..][..4],
                means,
                &format!("{convention:?} image {k}"),
            );
        }
    }
}
