//! Parameter counts against torchvision's published numbers.

use burn::tensor::{Device, Tensor};
use ffem_model::backbones::MobileNetV3Config;
use ffem_model::model::{ImageNetTop, trainable_params};

#[test]
fn imagenet_configurations_match_torchvision_parameter_counts() {
    let device = Device::flex();
    // torchvision.models.mobilenet_v3_large() / mobilenet_v3_small(): sum(p.numel() for p in parameters()).
    for (cfg, expected) in [
        (MobileNetV3Config::large(), 5_483_032usize),
        (MobileNetV3Config::small(), 2_542_856),
    ] {
        let backbone = cfg.init(&device);
        let top = ImageNetTop::new(&cfg, &device);
        assert_eq!(
            trainable_params(&backbone) + trainable_params(&top),
            expected,
            "{:?}",
            cfg.variant
        );
    }
}

#[test]
fn feature_map_shapes_at_112_and_224() {
    let device = Device::flex();
    let cfg = MobileNetV3Config::small();
    let net = cfg.init(&device);
    let f = net.forward(Tensor::zeros([1, 3, 112, 112], &device));
    assert_eq!(f.dims(), [1, 576, 4, 4]);
    assert_eq!(cfg.feature_size(112), 4);
    assert_eq!(cfg.feature_size(224), 7);
    let mut s1 = MobileNetV3Config::small();
    s1.stem_stride = 1;
    assert_eq!(s1.feature_size(112), 7);
    assert_eq!(s1.total_stride(), 16);
}

/// Sample standard deviation and largest magnitude of a weight tensor's values.
fn spread(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let max = values.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    (var.sqrt(), max)
}

#[test]
fn torchvision_init_uses_pytorch_fan_out_and_zero_biases() {
    use ffem_model::backbones::mobilenet_v3::ConvInit;
    let device = Device::flex();
    let mut cfg = MobileNetV3Config::small();
    // Block 4 (index 3) of Small: 96 expanded channels, 5x5 depthwise, squeeze-excite 96 -> 24.
    cfg.conv_init = ConvInit::Torchvision;
    let tv = cfg.init(&device);
    let dw = tv.blocks[3].depthwise.conv.weight.val().into_data();
    let dw = dw.as_slice::<f32>().unwrap();
    assert_eq!(dw.len(), 96 * 25);
    // Kaiming-normal, fan-out = 96 x 5 x 5 (PyTorch ignores the groups): std sqrt(2 / 2400).
    let (std, _) = spread(dw);
    let want = (2.0f64 / 2400.0).sqrt();
    assert!((std / want - 1.0).abs() < 0.1, "std {std} vs {want}");
    let se = tv.blocks[3].se.as_ref().unwrap();
    let bias = se.fc1.bias.as_ref().unwrap().val().into_data();
    assert!(bias.as_slice::<f32>().unwrap().iter().all(|&b| b == 0.0));

    // burn's default: uniform within 1/sqrt(fan_in) = 1/5 for a 5x5 depthwise kernel, std 1/(5 sqrt 3).
    cfg.conv_init = ConvInit::Burn;
    let burn_net = cfg.init(&device);
    let dw = burn_net.blocks[3].depthwise.conv.weight.val().into_data();
    let (std, max) = spread(dw.as_slice::<f32>().unwrap());
    assert!(max <= 0.2 + 1e-6, "{max}");
    let want = 0.2 / 3f64.sqrt();
    assert!((std / want - 1.0).abs() < 0.1, "std {std} vs {want}");
}
