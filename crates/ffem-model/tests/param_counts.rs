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
