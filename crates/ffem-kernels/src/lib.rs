#![warn(missing_docs)]
//! Fast f32 CPU kernels for the convolutions of ffem's networks, forward and backward, on plain
//! NCHW slices. No deep-learning framework: `ffem-model` wires them into burn's autodiff graph.
//!
//! Why they exist: burn's CPU backend computes a convolution's weight gradient as another
//! convolution whose kernel is the whole output map, and a depthwise weight gradient one channel at
//! a time, which left training at a fifth of TensorFlow's speed. Here
//! - a pointwise (1x1, stride 1) convolution is a GEMM per image in every direction
//!   ([`gemm`](https://docs.rs/gemm) reaches BLAS-class speed),
//! - any other ungrouped convolution (the 3x3 stem) goes through im2col and the same GEMMs,
//! - a depthwise convolution (groups = channels) is a stencil over each padded plane, vectorised
//!   for the CPU found at run time (AVX2 + FMA where present); on the small maps of the last
//!   blocks it runs with the channels innermost instead,
//! - batch normalisation and the activation after it are one pass forward and two backward,
//! - an Adam / AdamW step is one pass over the parameter, its gradient and its moments,
//! - a dropout mask is filled in parallel from a counter-based generator.
//!
//! Results are deterministic for a given input whatever the thread count: work is split by image,
//! channel or fixed-size batch chunk, never by thread, and partial sums are added in a fixed order.

mod adam;
pub mod alloc;
mod buffers;
mod conv;
mod dense;
mod depthwise;
mod depthwise_small;
mod dropout;
mod geometry;
mod matmul;
mod norm;
mod scale;
mod simd;

pub use adam::{AdamStep, adam_step};
pub use conv::{
    conv2d_backward_input, conv2d_backward_input_to_vec, conv2d_backward_weight, conv2d_forward,
    conv2d_forward_fused, conv2d_forward_to_vec,
};
pub use dropout::{dropout_mask, dropout_mask_to_vec};
pub use geometry::{ConvGeometry, ConvKind, KernelError};
pub use norm::{
    Activation, Epilogue, NormShape, batch_norm_act_infer, batch_norm_act_infer_to_vec,
    batch_norm_act_train, batch_norm_act_train_backward, batch_norm_act_train_backward_to_vec,
    batch_norm_act_train_to_vec,
};
pub use scale::{scale_planes_backward, scale_planes_to_vec};
