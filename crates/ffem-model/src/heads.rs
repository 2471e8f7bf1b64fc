//! Embedding heads: feature map (N, C, H, W) -> embedding (N, D).
//!
//! - GNAP (Chen et al. 2018, as the seed describes): BN, per-position feature norm, re-weight each
//!   position by mean norm / its norm, global average pool, (linear C->D when C != D), BN.
//!   The mean norm is taken per image (insightface's MXNet code takes it over the whole batch,
//!   which makes an image's embedding depend on its batch-mates).
//! - GDC (MobileFaceNet): 1x1 conv to 512 + BN + activation, global depthwise conv over the whole
//!   map + BN, linear to D, BN.
//! - Flatten (the seed's step-1 head): dropout, flatten, dense D, BN.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backbones::mobilenet_v3::{Act, ConvBn, ConvInit, batch_norm};

/// Which head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Global norm-aware pooling.
    Gnap,
    /// Global depthwise convolution.
    Gdc,
    /// Dropout, flatten, dense, BN (the seed's step 1).
    Flatten,
}

/// GNAP head.
#[derive(Module, Debug)]
pub struct GnapHead {
    /// BN on the feature map.
    pub bn_in: BatchNorm,
    /// Linear C -> D when the widths differ.
    pub fc: Option<Linear>,
    /// BN on the embedding.
    pub bn_out: BatchNorm,
}

impl GnapHead {
    /// Builds the head for `channels` -> `dim`.
    pub fn new(channels: usize, dim: usize, device: &burn::tensor::Device) -> Self {
        GnapHead {
            bn_in: BatchNormConfig::new(channels)
                .with_epsilon(2e-5)
                .init(device),
            fc: (channels != dim).then(|| {
                LinearConfig::new(channels, dim)
                    .with_bias(false)
                    .init(device)
            }),
            bn_out: BatchNormConfig::new(dim).with_epsilon(2e-5).init(device),
        }
    }

    /// Forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = batch_norm(&self.bn_in, x);
        let [n, c, _, _] = x.dims();
        let norm = x.clone().square().sum_dim(1).sqrt(); // (N, 1, H, W)
        let mean_norm = norm.clone().mean_dim(2).mean_dim(3); // (N, 1, 1, 1)
        let weight = mean_norm / (norm + 1e-6);
        let pooled = (x * weight).mean_dim(2).mean_dim(3).reshape([n, c]);
        let e = match &self.fc {
            Some(fc) => fc.forward(pooled),
            None => pooled,
        };
        batch_norm(&self.bn_out, e)
    }
}

/// GDC head.
#[derive(Module, Debug)]
pub struct GdcHead {
    /// 1x1 conv to 512 with BN and activation.
    pub reduce: ConvBn,
    /// Depthwise conv over the whole map.
    pub gdconv: Conv2d,
    /// BN after it.
    pub bn_dw: BatchNorm,
    /// Linear to D.
    pub fc: Linear,
    /// BN on the embedding.
    pub bn_out: BatchNorm,
}

impl GdcHead {
    /// Builds the head for `channels` at `size` x `size` -> `dim`.
    pub fn new(
        channels: usize,
        size: usize,
        dim: usize,
        act: Act,
        device: &burn::tensor::Device,
    ) -> Self {
        GdcHead {
            reduce: ConvBn::new(channels, 512, 1, 1, 1, Some(act), ConvInit::Burn, device),
            gdconv: Conv2dConfig::new([512, 512], [size, size])
                .with_groups(512)
                .with_bias(false)
                .init(device),
            bn_dw: BatchNormConfig::new(512).init(device),
            fc: LinearConfig::new(512, dim).with_bias(false).init(device),
            bn_out: BatchNormConfig::new(dim).init(device),
        }
    }

    /// Forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = batch_norm(
            &self.bn_dw,
            crate::conv::conv2d(&self.gdconv, self.reduce.forward(x)),
        );
        let n = x.dims()[0];
        batch_norm(&self.bn_out, self.fc.forward(x.reshape([n, 512])))
    }
}

/// The seed's step-1 head.
#[derive(Module, Debug)]
pub struct FlattenHead {
    /// Dropout before the dense layer.
    pub dropout: Dropout,
    /// Dense C*H*W -> D.
    pub fc: Linear,
    /// BN on the embedding.
    pub bn_out: BatchNorm,
}

impl FlattenHead {
    /// Builds the head for a `channels` x `size` x `size` map -> `dim`.
    pub fn new(
        channels: usize,
        size: usize,
        dim: usize,
        dropout: f64,
        device: &burn::tensor::Device,
    ) -> Self {
        FlattenHead {
            dropout: DropoutConfig::new(dropout).init(),
            fc: LinearConfig::new(channels * size * size, dim).init(device),
            bn_out: BatchNormConfig::new(dim).init(device),
        }
    }

    /// Forward pass. Flattens in NHWC order, as Keras' `Flatten` does on channels-last maps.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = x.dims();
        let x = dropout(&self.dropout, x)
            .permute([0, 2, 3, 1])
            .reshape([n, h * w * c]);
        batch_norm(&self.bn_out, self.fc.forward(x))
    }
}

/// `layer.forward(x)`, with the mask drawn by `ffem_kernels::dropout_mask_to_vec` on the CPU: the same
/// inverted dropout (keep `1 - prob`, survivors scaled by `1 / (1 - prob)`), filled in parallel
/// and applied in one multiplication. The mask's seed is drawn from burn's generator, so a run
/// seeded with `--seed` repeats. Elsewhere, and outside training, burn's own layer.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let training = layer.training.is_enabled() && x.device().is_autodiff() && layer.prob > 0.0;
    if !training || !crate::cpu::on_cpu_kernels(&x) {
        return layer.forward(x);
    }
    let device = x.device();
    let seed: Vec<i64> =
        Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, i32::MAX as f64), &device)
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("two integers");
    // Two draws of 31 bits: burn's integers may be i32.
    let seed = ((seed[0] as u64) << 31) ^ (seed[1] as u64);
    let shape = x.shape();
    let mask = ffem_kernels::dropout_mask_to_vec(seed, 1.0 - layer.prob, shape.num_elements());
    x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device)
}
