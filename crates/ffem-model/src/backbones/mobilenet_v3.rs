//! MobileNetV3 Large and Small, layer for layer as torchvision builds them (so that with the
//! ImageNet top their parameter counts equal torchvision's), with the options the seed needs:
//! ReLU6 where the paper has ReLU, the `minimalistic` variant (3x3 kernels, no squeeze-excite, no
//! hard-swish), a width multiplier, and a configurable stem stride for 112x112 faces.
//!
//! Strides: with the ImageNet strides (total 32) a 112x112 face ends as a 4x4 map, which is what the
//! seed trained (Keras `MobileNetV3Large(input_shape=(112, 112, 3))`). `stem_stride = 1` keeps a 7x7
//! map (total stride 16, like MobileFaceNet) at four times the FLOPs.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::{hard_sigmoid, relu};
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

/// Large or Small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// MobileNetV3-Large.
    Large,
    /// MobileNetV3-Small.
    Small,
}

/// The activation used where the paper has ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// min(max(x, 0), 6), as the seed.
    Relu6,
    /// max(x, 0), as the paper.
    Relu,
}

/// The activation of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// The "RE" positions.
    Relu,
    /// ReLU6 in the "RE" positions.
    Relu6,
    /// Hard-swish.
    HardSwish,
}

impl Act {
    /// Applies the activation.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::norm::activate(x, self.kernel())
    }

    /// The same activation as the fused kernels name it.
    pub fn kernel(&self) -> ffem_kernels::Activation {
        match self {
            Act::Relu => ffem_kernels::Activation::Relu,
            Act::Relu6 => ffem_kernels::Activation::Relu6,
            Act::HardSwish => ffem_kernels::Activation::HardSwish,
        }
    }
}

/// How the backbone's convolutions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvInit {
    /// burn's default, Kaiming-uniform with bound `1/sqrt(fan_in)` (PyTorch's layer default).
    #[default]
    Burn,
    /// torchvision's MobileNetV3: [`torchvision_conv_init`] weights, zero biases. On the CFP
    /// recipe the training loss then follows the PyTorch reference's epoch by epoch; LFW was not
    /// better than with burn's (docs/distill.md, part 4).
    Torchvision,
}

/// How to build a MobileNetV3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileNetV3Config {
    /// Large or Small.
    pub variant: Variant,
    /// Activation in the paper's ReLU positions.
    pub activation: Activation,
    /// 3x3 kernels, no squeeze-excite, no hard-swish.
    pub minimalistic: bool,
    /// Channel width multiplier.
    pub width: f32,
    /// Stride of the first convolution (2 as ImageNet; 1 keeps 7x7 maps at 112x112).
    pub stem_stride: usize,
    /// Initialisation of the convolutions (training only; model files written before it read as
    /// burn's).
    #[serde(default)]
    pub conv_init: ConvInit,
}

impl MobileNetV3Config {
    /// The seed's default: Large, ReLU6, full (not minimalistic), width 1, ImageNet strides.
    pub fn large() -> Self {
        MobileNetV3Config {
            variant: Variant::Large,
            activation: Activation::Relu6,
            minimalistic: false,
            width: 1.0,
            stem_stride: 2,
            conv_init: ConvInit::Burn,
        }
    }
    /// Small with the same defaults.
    pub fn small() -> Self {
        MobileNetV3Config {
            variant: Variant::Small,
            ..Self::large()
        }
    }
}

/// torchvision's `_make_divisible`: round to a multiple of 8, never below 90% of the input.
pub fn make_divisible(v: f32, divisor: usize) -> usize {
    let d = divisor as f32;
    let mut new_v = (divisor).max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f32) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// One inverted-residual block's settings (torchvision's `InvertedResidualConfig`).
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    /// Input channels.
    pub input: usize,
    /// Depthwise kernel.
    pub kernel: usize,
    /// Expanded channels.
    pub expanded: usize,
    /// Output channels.
    pub out: usize,
    /// Squeeze-excite.
    pub se: bool,
    /// Hard-swish (else the ReLU-position activation).
    pub hs: bool,
    /// Depthwise stride.
    pub stride: usize,
}

impl MobileNetV3Config {
    /// The blocks and the last convolution's width (before the width multiplier is folded in).
    pub fn blocks(&self) -> (Vec<BlockSpec>, usize, usize) {
        #[rustfmt::skip]
        let table: &[(usize, usize, usize, usize, bool, bool, usize)] = match self.variant {
            Variant::Large => &[
                (16, 3, 16, 16, false, false, 1), (16, 3, 64, 24, false, false, 2), (24, 3, 72, 24, false, false, 1),
                (24, 5, 72, 40, true, false, 2), (40, 5, 120, 40, true, false, 1), (40, 5, 120, 40, true, false, 1),
                (40, 3, 240, 80, false, true, 2), (80, 3, 200, 80, false, true, 1), (80, 3, 184, 80, false, true, 1),
                (80, 3, 184, 80, false, true, 1), (80, 3, 480, 112, true, true, 1), (112, 3, 672, 112, true, true, 1),
                (112, 5, 672, 160, true, true, 2), (160, 5, 960, 160, true, true, 1), (160, 5, 960, 160, true, true, 1),
            ],
            Variant::Small => &[
                (16, 3, 16, 16, true, false, 2), (16, 3, 72, 24, false, false, 2), (24, 3, 88, 24, false, false, 1),
                (24, 5, 96, 40, true, true, 2), (40, 5, 240, 40, true, true, 1), (40, 5, 240, 40, true, true, 1),
                (40, 5, 120, 48, true, true, 1), (48, 5, 144, 48, true, true, 1), (48, 5, 288, 96, true, true, 2),
                (96, 5, 576, 96, true, true, 1), (96, 5, 576, 96, true, true, 1),
            ],
        };
        let w = |c: usize| make_divisible(c as f32 * self.width, 8);
        let blocks = table
            .iter()
            .map(|&(i, k, e, o, se, hs, s)| BlockSpec {
                input: w(i),
                kernel: if self.minimalistic { 3 } else { k },
                expanded: w(e),
                out: w(o),
                se: se && !self.minimalistic,
                hs: hs && !self.minimalistic,
                stride: s,
            })
            .collect::<Vec<_>>();
        let last_in = blocks.last().expect("blocks").out;
        // torchvision: last conv = 6 x last block output; classifier hidden = 1280 (L) / 1024 (S).
        let hidden = match self.variant {
            Variant::Large => make_divisible(1280.0 * self.width, 8),
            Variant::Small => make_divisible(1024.0 * self.width, 8),
        };
        (blocks, 6 * last_in, hidden)
    }

    fn re(&self) -> Act {
        match self.activation {
            Activation::Relu6 => Act::Relu6,
            Activation::Relu => Act::Relu,
        }
    }

    fn hs(&self) -> Act {
        if self.minimalistic {
            self.re()
        } else {
            Act::HardSwish
        }
    }

    /// Output channels of the feature map.
    pub fn out_channels(&self) -> usize {
        self.blocks().1
    }

    /// Total stride of the feature map.
    pub fn total_stride(&self) -> usize {
        self.stem_stride * self.blocks().0.iter().map(|b| b.stride).product::<usize>()
    }

    /// Side of the feature map for a square input.
    pub fn feature_size(&self, input: usize) -> usize {
        let mut s = conv_out(input, 3, self.stem_stride);
        for b in self.blocks().0 {
            s = conv_out(s, b.kernel, b.stride);
        }
        s
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &burn::tensor::Device) -> MobileNetV3 {
        let (blocks, last, _) = self.blocks();
        let stem_out = make_divisible(16.0 * self.width, 8);
        MobileNetV3 {
            stem: ConvBn::new(
                3,
                stem_out,
                3,
                self.stem_stride,
                1,
                Some(self.hs()),
                self.conv_init,
                device,
            ),
            blocks: blocks
                .iter()
                .map(|b| {
                    InvertedResidual::new(
                        b,
                        if b.hs { self.hs() } else { self.re() },
                        self.re(),
                        self.conv_init,
                        device,
                    )
                })
                .collect(),
            last: ConvBn::new(
                blocks.last().expect("blocks").out,
                last,
                1,
                1,
                1,
                Some(self.hs()),
                self.conv_init,
                device,
            ),
        }
    }
}

pub use crate::norm::batch_norm;

/// torchvision's MobileNetV3 initialisation of a convolution with `cout` outputs and a k x k
/// kernel: Kaiming-normal with PyTorch's fan-out, `cout * k * k` whatever the groups (so a
/// depthwise kernel starts far smaller than burn's default, which divides by the groups).
/// Measured against burn's default on the CFP recipe beside the PyTorch reference
/// (`bench/reference_run.sh`, docs/distill.md part 4).
pub fn torchvision_conv_init(cout: usize, k: usize) -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: (2.0 / (cout * k * k) as f64).sqrt(),
    }
}

/// A convolution started as `init` says: burn's default, or [`torchvision_conv_init`] weights
/// with zero bias.
fn init_conv(config: Conv2dConfig, init: ConvInit, device: &burn::tensor::Device) -> Conv2d {
    match init {
        ConvInit::Burn => config.init(device),
        ConvInit::Torchvision => {
            let [_, cout] = config.channels;
            let [k, _] = config.kernel_size;
            let mut conv = config
                .with_initializer(torchvision_conv_init(cout, k))
                .init(device);
            conv.bias = conv.bias.map(|b| b.map(|t| t.zeros_like()));
            conv
        }
    }
}

/// Output side of a "same"-padded convolution.
pub fn conv_out(size: usize, kernel: usize, stride: usize) -> usize {
    (size + 2 * ((kernel - 1) / 2) - kernel) / stride + 1
}

/// Convolution (no bias) + BatchNorm + optional activation.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: Conv2d,
    /// Its batch norm.
    pub bn: BatchNorm,
    /// Activation after the norm, if any.
    #[module(skip)]
    pub act: Option<Act>,
}

impl ConvBn {
    /// A `k` x `k` convolution with "same" padding.
    // The arguments are the layer's shape as torchvision's `Conv2dNormActivation` takes it; a
    // struct for them would only rename the same eight values at every call.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        act: Option<Act>,
        init: ConvInit,
        device: &burn::tensor::Device,
    ) -> Self {
        ConvBn {
            conv: init_conv(
                Conv2dConfig::new([cin, cout], [k, k])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(
                        (k - 1) / 2,
                        (k - 1) / 2,
                        (k - 1) / 2,
                        (k - 1) / 2,
                    ))
                    .with_groups(groups)
                    .with_bias(false),
                init,
                device,
            ),
            // Momentum 0.1 (PyTorch's default) rather than torchvision's 0.01: face runs are short, and
            // running statistics that lag far behind the weights wreck evaluation.
            bn: BatchNormConfig::new(cout)
                .with_epsilon(1e-3)
                .with_momentum(0.1)
                .init(device),
            act,
        }
    }

    /// Forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let act = self
            .act
            .map_or(ffem_kernels::Activation::Identity, |a| a.kernel());
        crate::conv::conv_bn_act(&self.conv, &self.bn, x, act)
    }
}

/// Squeeze-and-excite: global pool, 1x1 reduce (ReLU), 1x1 expand (hard-sigmoid), rescale.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    /// Reduction convolution (with bias).
    pub fc1: Conv2d,
    /// Expansion convolution (with bias).
    pub fc2: Conv2d,
}

impl SqueezeExcite {
    fn new(channels: usize, init: ConvInit, device: &burn::tensor::Device) -> Self {
        let squeeze = make_divisible((channels / 4) as f32, 8);
        SqueezeExcite {
            fc1: init_conv(Conv2dConfig::new([channels, squeeze], [1, 1]), init, device),
            fc2: init_conv(Conv2dConfig::new([squeeze, channels], [1, 1]), init, device),
        }
    }

    /// Forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = adaptive_avg_pool2d(x.clone(), [1, 1]);
        let s = relu(crate::conv::conv2d(&self.fc1, s));
        // torchvision's Hardsigmoid: relu6(x + 3) / 6.
        let s = hard_sigmoid(crate::conv::conv2d(&self.fc2, s), 1.0 / 6.0, 0.5);
        crate::scale::scale_planes(x, s)
    }
}

/// MobileNetV3's inverted residual block.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion (absent when expanded == input).
    pub expand: Option<ConvBn>,
    /// Depthwise convolution.
    pub depthwise: ConvBn,
    /// Optional squeeze-excite.
    pub se: Option<SqueezeExcite>,
    /// 1x1 linear projection.
    pub project: ConvBn,
    /// Whether the input is added to the output.
    pub residual: bool,
}

impl InvertedResidual {
    fn new(
        b: &BlockSpec,
        act: Act,
        _re: Act,
        init: ConvInit,
        device: &burn::tensor::Device,
    ) -> Self {
        InvertedResidual {
            expand: (b.expanded != b.input)
                .then(|| ConvBn::new(b.input, b.expanded, 1, 1, 1, Some(act), init, device)),
            depthwise: ConvBn::new(
                b.expanded,
                b.expanded,
                b.kernel,
                b.stride,
                b.expanded,
                Some(act),
                init,
                device,
            ),
            se: b.se.then(|| SqueezeExcite::new(b.expanded, init, device)),
            project: ConvBn::new(b.expanded, b.out, 1, 1, 1, None, init, device),
            residual: b.stride == 1 && b.input == b.out,
        }
    }

    /// Forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        y = self.depthwise.forward(y);
        if let Some(se) = &self.se {
            y = se.forward(y);
        }
        y = self.project.forward(y);
        if self.residual { y + x } else { y }
    }
}

/// The MobileNetV3 feature extractor (no pooling, no classifier).
#[derive(Module, Debug)]
pub struct MobileNetV3 {
    /// 3x3 stem convolution.
    pub stem: ConvBn,
    /// The inverted residual blocks.
    pub blocks: Vec<InvertedResidual>,
    /// Final 1x1 convolution to 6x the last block's width.
    pub last: ConvBn,
}

impl MobileNetV3 {
    /// Images (N, 3, H, W) to the feature map (N, C, H/s, W/s).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.stem.forward(x);
        for b in &self.blocks {
            y = b.forward(y);
        }
        self.last.forward(y)
    }
}
