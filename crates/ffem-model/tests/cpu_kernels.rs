//! ffem's CPU kernels inside burn's graph against burn's own operations: forward values and the
//! gradients autodiff delivers to the input and every parameter, for the convolution shapes the
//! networks use (1x1, 3x3, strided, depthwise 3x3 / 5x5 / whole-map, with bias, batch 1, odd
//! sizes) and for batch norm + each activation in training and inference mode.

use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use ffem_kernels::Activation;
use ffem_model::conv::conv2d;
use ffem_model::norm::{activate, batch_norm_act};

fn max_rel_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let a: Vec<f32> = a.into_data().try_into_vec::<f32>().unwrap();
    let b: Vec<f32> = b.into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

const TOL: f32 = 1e-4;

#[test]
fn convolutions_match_burn_forward_and_backward() {
    let device = Device::flex().autodiff();
    device.seed(5);
    // (batch, in, out, size_h, size_w, kernel, stride, groups, bias)
    let cases = [
        (4, 16, 24, 14, 14, 1, 1, 1, false),  // pointwise
        (1, 7, 5, 9, 13, 1, 1, 1, false),     // pointwise, batch 1, odd sizes
        (3, 3, 16, 32, 32, 3, 2, 1, false),   // the stem: dense 3x3 stride 2
        (2, 4, 6, 11, 7, 3, 1, 1, false),     // dense 3x3 stride 1, odd sizes
        (3, 24, 24, 14, 14, 3, 1, 24, false), // depthwise 3x3
        (2, 16, 16, 15, 15, 3, 2, 16, false), // depthwise 3x3 stride 2, odd size
        (2, 8, 8, 14, 14, 5, 2, 8, false),    // depthwise 5x5 stride 2
        (1, 12, 12, 7, 9, 5, 1, 12, false),   // depthwise 5x5, batch 1
        (3, 32, 8, 1, 1, 1, 1, 1, true),      // squeeze-excite reduce, with bias
    ];
    for (batch, cin, cout, h, w, k, s, groups, bias) in cases {
        let p = (k - 1) / 2;
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_groups(groups)
            .with_bias(bias)
            .init(&device);
        let x = Tensor::<4>::random(
            [batch, cin, h, w],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        )
        .require_grad();
        let fast = conv2d(&conv, x.clone());
        let reference = conv.forward(x.clone());
        let what =
            format!("batch {batch}, {cin}->{cout}, {h}x{w}, k{k} s{s} groups {groups} bias {bias}");
        assert_eq!(fast.dims(), reference.dims(), "{what}");
        let e = max_rel_diff(fast.clone().inner(), reference.clone().inner());
        assert!(e < TOL, "{what}: forward differs by {e:e}");

        // The same weighting of the outputs, so both backward passes get the same output gradient.
        let r = Tensor::<4>::random(fast.dims(), Distribution::Uniform(-1.0, 1.0), &device);
        let gf = (fast * r.clone()).sum().backward();
        let gr = (reference * r).sum().backward();
        let e = max_rel_diff(x.grad(&gf).unwrap(), x.grad(&gr).unwrap());
        assert!(e < TOL, "{what}: input gradient differs by {e:e}");
        let wv = conv.weight.val();
        let e = max_rel_diff(wv.grad(&gf).unwrap(), wv.grad(&gr).unwrap());
        assert!(e < TOL, "{what}: weight gradient differs by {e:e}");
        if let Some(b) = &conv.bias {
            let bv = b.val();
            let e = max_rel_diff(bv.grad(&gf).unwrap(), bv.grad(&gr).unwrap());
            assert!(e < TOL, "{what}: bias gradient differs by {e:e}");
        }
    }
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels)
        .with_epsilon(1e-3)
        .with_momentum(0.1)
        .init(device);
    bn.gamma = Param::from_tensor(Tensor::random(
        [channels],
        Distribution::Uniform(0.5, 2.0),
        device,
    ));
    bn.beta = Param::from_tensor(Tensor::random(
        [channels],
        Distribution::Uniform(-1.0, 1.0),
        device,
    ));
    bn
}

#[test]
fn batch_norm_with_activation_matches_burn() {
    let device = Device::flex().autodiff();
    device.seed(6);
    for act in [
        Activation::Identity,
        Activation::Relu,
        Activation::Relu6,
        Activation::HardSwish,
    ] {
        for (batch, c, h, w) in [(4, 6, 9, 9), (1, 3, 7, 5)] {
            let what = format!("{act:?}, batch {batch}, {c} channels, {h}x{w}");
            let fast_bn = batch_norm(c, &device);
            // A second layer with the same parameters and its own running statistics.
            let mut ref_bn = BatchNormConfig::new(c)
                .with_epsilon(1e-3)
                .with_momentum(0.1)
                .init(&device);
            ref_bn.gamma = Param::from_tensor(fresh_copy(fast_bn.gamma.val().inner(), &device));
            ref_bn.beta = Param::from_tensor(fresh_copy(fast_bn.beta.val().inner(), &device));
            // Scale 3 so that ReLU6 and hard-swish see every one of their pieces.
            let x =
                (Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.5, 1.0), &device)
                    * 3.0)
                    .require_grad();

            let fast = batch_norm_act(&fast_bn, x.clone(), act);
            let reference = activate(ref_bn.forward(x.clone()), act);
            let e = max_rel_diff(fast.clone().inner(), reference.clone().inner());
            assert!(e < TOL, "{what}: training forward differs by {e:e}");

            let r =
                Tensor::<4>::random([batch, c, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let gf = (fast * r.clone()).sum().backward();
            let gr = (reference * r).sum().backward();
            let e = max_rel_diff(x.grad(&gf).unwrap(), x.grad(&gr).unwrap());
            assert!(e < 1e-3, "{what}: input gradient differs by {e:e}");
            let (fg, rg) = (fast_bn.gamma.val(), ref_bn.gamma.val());
            let e = max_rel_diff(fg.grad(&gf).unwrap(), rg.grad(&gr).unwrap());
            assert!(e < 1e-3, "{what}: gamma gradient differs by {e:e}");
            let (fb, rb) = (fast_bn.beta.val(), ref_bn.beta.val());
            let e = max_rel_diff(fb.grad(&gf).unwrap(), rb.grad(&gr).unwrap());
            assert!(e < 1e-3, "{what}: beta gradient differs by {e:e}");

            // Running statistics after one update, then inference with them.
            let e = max_rel_diff(fast_bn.running_mean.value(), ref_bn.running_mean.value());
            assert!(e < TOL, "{what}: running mean differs by {e:e}");
            let e = max_rel_diff(fast_bn.running_var.value(), ref_bn.running_var.value());
            assert!(e < TOL, "{what}: running variance differs by {e:e}");
            let xi = x.clone().inner();
            let e = max_rel_diff(
                batch_norm_act(&fast_bn, xi.clone(), act),
                activate(ref_bn.forward(xi), act),
            );
            assert!(e < TOL, "{what}: inference differs by {e:e}");
        }
    }
}

/// A fresh trainable copy on `device`, sharing no storage or graph with `t`.
fn fresh_copy(t: Tensor<1>, device: &Device) -> Tensor<1> {
    Tensor::from_data(t.into_data(), device)
}

/// Inference: one fused pass (batch norm folded into the convolution's output) equals burn's
/// convolution, batch norm with running statistics, and activation.
#[test]
fn fused_inference_layer_matches_burn() {
    use ffem_model::conv::conv_bn_act;
    let device = Device::flex();
    device.seed(7);
    for (batch, cin, cout, size, k, s, groups) in [
        (2, 8, 16, 9, 1, 1, 1),
        (3, 3, 8, 16, 3, 2, 1),
        (2, 12, 12, 10, 5, 2, 12),
        (1, 6, 6, 7, 3, 1, 6),
    ] {
        for act in [
            Activation::Identity,
            Activation::Relu6,
            Activation::HardSwish,
        ] {
            let p = (k - 1) / 2;
            let conv = Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_groups(groups)
                .with_bias(false)
                .init(&device);
            let bn = batch_norm(cout, &device);
            bn.running_mean.update(Tensor::random(
                [cout],
                Distribution::Uniform(-0.5, 0.5),
                &device,
            ));
            bn.running_var.update(Tensor::random(
                [cout],
                Distribution::Uniform(0.5, 2.0),
                &device,
            ));
            let x = Tensor::<4>::random(
                [batch, cin, size, size],
                Distribution::Uniform(-2.0, 2.0),
                &device,
            );
            let fused = conv_bn_act(&conv, &bn, x.clone(), act);
            let reference = activate(bn.forward(conv.forward(x)), act);
            let e = max_rel_diff(fused, reference);
            assert!(
                e < TOL,
                "{cin}->{cout} k{k} s{s} groups {groups} {act:?}: differs by {e:e}"
            );
        }
    }
}

/// A layer whose parameters are on an autodiff device trains (batch statistics, gradients for
/// gamma and beta, a running-statistics update) even when its input batch is not: a tensor moved
/// with `to_device` onto the autodiff device keeps a plain device. The first layer of a network
/// sees exactly such a batch.
#[test]
fn layer_on_autodiff_device_trains_on_a_plain_input_batch() {
    use ffem_model::conv::conv_bn_act;
    let ad = Device::flex().autodiff();
    ad.seed(8);
    let conv = Conv2dConfig::new([3, 8], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&ad);
    let bn = batch_norm(8, &ad);
    let ref_bn = BatchNormConfig::new(8)
        .with_epsilon(1e-3)
        .with_momentum(0.1)
        .init(&ad);
    let mut ref_bn = ref_bn;
    ref_bn.gamma = Param::from_tensor(fresh_copy(bn.gamma.val().inner(), &ad));
    ref_bn.beta = Param::from_tensor(fresh_copy(bn.beta.val().inner(), &ad));
    let x = Tensor::<4>::random(
        [4, 3, 16, 16],
        Distribution::Normal(0.5, 1.0),
        &Device::flex(),
    )
    .to_device(&ad);
    assert!(
        !x.device().is_autodiff(),
        "burn now moves the batch onto the autodiff device; this test no longer covers the case"
    );
    let fast = conv_bn_act(&conv, &bn, x.clone(), Activation::Relu6);
    let reference = activate(ref_bn.forward(conv.forward(x)), Activation::Relu6);
    let e = max_rel_diff(fast.clone().inner(), reference.clone().inner());
    assert!(
        e < TOL,
        "training forward (batch statistics) differs by {e:e}"
    );
    let gf = fast.sum().backward();
    let gr = reference.sum().backward();
    let e = max_rel_diff(
        bn.gamma.val().grad(&gf).expect("gamma has a gradient"),
        ref_bn.gamma.val().grad(&gr).unwrap(),
    );
    assert!(e < 1e-3, "gamma gradient differs by {e:e}");
    let e = max_rel_diff(bn.running_mean.value(), ref_bn.running_mean.value());
    assert!(e < TOL, "running mean differs by {e:e}");
}

/// The CPU dropout is inverted dropout: in training every output is 0 or its input / keep, about
/// `keep` of them survive, the gradient is the same mask; outside training (no autodiff device)
/// it is the identity.
#[test]
fn dropout_on_the_cpu_is_inverted_dropout_with_the_mask_as_gradient() {
    use burn::nn::DropoutConfig;
    use ffem_model::heads::dropout;
    let layer = DropoutConfig::new(0.3).init();
    let ad = Device::flex().autodiff();
    let run = || {
        let x =
            Tensor::<2>::random([64, 4000], Distribution::Uniform(1.0, 2.0), &ad).require_grad();
        let y = dropout(&layer, x.clone());
        let grads = y.clone().sum().backward();
        let x_values: Vec<f32> = x.clone().inner().into_data().try_into_vec().unwrap();
        let y_values: Vec<f32> = y.inner().into_data().try_into_vec().unwrap();
        let g_values: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
        (x_values, y_values, g_values)
    };
    ad.seed(5);
    let (x, y, g) = run();
    let keep = 0.7f32;
    let mut kept = 0usize;
    for ((&xi, &yi), &gi) in x.iter().zip(&y).zip(&g) {
        if yi == 0.0 {
            assert_eq!(gi, 0.0, "a dropped input has no gradient");
        } else {
            kept += 1;
            assert!((yi - xi / keep).abs() < 1e-5, "kept: {yi} vs {xi} / {keep}");
            assert!((gi - 1.0 / keep).abs() < 1e-5, "gradient {gi}");
        }
    }
    let fraction = kept as f64 / y.len() as f64;
    assert!((fraction - 0.7).abs() < 0.01, "kept {fraction}");
    // (That the same seed gives the same mask is `ffem-kernels`' test: burn's generator is one per
    // process, and the tests running beside this one draw from it too.)
    let plain = Tensor::<2>::random([4, 10], Distribution::Uniform(1.0, 2.0), &Device::flex());
    let same = dropout(&layer, plain.clone());
    assert_eq!(
        same.into_data().try_into_vec::<f32>().unwrap(),
        plain.into_data().try_into_vec::<f32>().unwrap()
    );
}

/// Squeeze-and-excite's rescaling on the CPU kernels against burn's broadcasting multiplication:
/// values, and the gradients for the map and for the factors (the factors' is a sum over each
/// plane), on the shapes the blocks use, a 1x1 map and batch 1.
#[test]
fn plane_scaling_matches_burn_forward_and_backward() {
    use ffem_model::scale::scale_planes;
    let device = Device::flex().autodiff();
    device.seed(10);
    for [n, c, h, w] in [[4, 16, 14, 14], [3, 96, 7, 7], [1, 5, 9, 13], [2, 8, 1, 1]] {
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(-1.0, 1.0), &device)
            .require_grad();
        let s = Tensor::<4>::random([n, c, 1, 1], Distribution::Uniform(0.0, 1.0), &device)
            .require_grad();
        let fast = scale_planes(x.clone(), s.clone());
        let reference = x.clone() * s.clone();
        let what = format!("{n}x{c}x{h}x{w}");
        let e = max_rel_diff(fast.clone().inner(), reference.clone().inner());
        assert!(e < 1e-6, "{what}: forward differs by {e:e}");
        let r = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(-1.0, 1.0), &device);
        let gf = (fast * r.clone()).sum().backward();
        let gr = (reference * r).sum().backward();
        let e = max_rel_diff(x.grad(&gf).unwrap(), x.grad(&gr).unwrap());
        assert!(e < 1e-6, "{what}: map gradient differs by {e:e}");
        let e = max_rel_diff(s.grad(&gf).unwrap(), s.grad(&gr).unwrap());
        assert!(e < 1e-4, "{what}: factor gradient differs by {e:e}");
    }
}
