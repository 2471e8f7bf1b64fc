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
mod dense;
mod depthwise;
mod depthwise_small;
mod dropout;
mod matmul;
mod norm;
mod simd;

pub use adam::{AdamStep, adam_step};
pub use dropout::{dropout_mask, dropout_mask_to_vec};
pub use norm::{
    Activation, Epilogue, NormShape, batch_norm_act_infer, batch_norm_act_infer_to_vec,
    batch_norm_act_train, batch_norm_act_train_backward, batch_norm_act_train_backward_to_vec,
    batch_norm_act_train_to_vec,
};

use std::mem::MaybeUninit;

use rayon::prelude::*;
use thiserror::Error;

/// The shape of one 2-D convolution: input `[batch, in_channels, in_h, in_w]`, weight
/// `[out_channels, in_channels / groups, kernel[0], kernel[1]]`, zero padding on both sides of
/// each spatial axis, no dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Zero padding added above and below (`[0]`), left and right (`[1]`).
    pub padding: [usize; 2],
    /// Channel groups: 1 (dense) or `in_channels` (depthwise); others are not supported.
    pub groups: usize,
}

/// Which kernel family serves a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// 1x1, stride 1, no padding, ungrouped: one GEMM per image.
    Pointwise,
    /// Any other ungrouped convolution: im2col + GEMM.
    Dense,
    /// One filter per channel (`groups = in_channels = out_channels`).
    Depthwise,
}

/// A geometry these kernels do not serve, or buffers that do not match it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelError {
    /// Grouped convolutions other than depthwise, channel multipliers, empty or negative outputs.
    #[error(
        "unsupported convolution {0:?}: only groups = 1 or depthwise (groups = in = out channels) with a non-empty output"
    )]
    Unsupported(Box<ConvGeometry>),
    /// A slice whose length is not the one the geometry implies.
    #[error("{what} has {got} elements, the geometry {geometry:?} needs {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the geometry implies.
        expected: usize,
        /// The geometry.
        geometry: Box<ConvGeometry>,
    },
}

impl ConvGeometry {
    /// Output height (0 when the kernel does not fit the padded input).
    pub fn out_h(&self) -> usize {
        out_side(self.in_h, self.kernel[0], self.stride[0], self.padding[0])
    }

    /// Output width (0 when the kernel does not fit the padded input).
    pub fn out_w(&self) -> usize {
        out_side(self.in_w, self.kernel[1], self.stride[1], self.padding[1])
    }

    /// Elements of the input tensor.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }

    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.out_channels
            * (self.in_channels / self.groups.max(1))
            * self.kernel[0]
            * self.kernel[1]
    }

    /// The kernel family for this geometry, or `None` when it is not served here (the caller then
    /// uses its generic implementation).
    pub fn kind(&self) -> Option<ConvKind> {
        let positive = self.batch > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.kernel.iter().all(|&k| k > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.out_h() > 0
            && self.out_w() > 0;
        if !positive {
            return None;
        }
        if self.groups == 1 {
            if self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0] {
                Some(ConvKind::Pointwise)
            } else {
                Some(ConvKind::Dense)
            }
        } else if self.groups == self.in_channels && self.out_channels == self.in_channels {
            Some(ConvKind::Depthwise)
        } else {
            None
        }
    }

    fn check(&self, what: &'static str, got: usize, expected: usize) -> Result<(), KernelError> {
        if got == expected {
            Ok(())
        } else {
            Err(KernelError::Length {
                what,
                got,
                expected,
                geometry: Box::new(*self),
            })
        }
    }

    fn kind_or_err(&self) -> Result<ConvKind, KernelError> {
        self.kind()
            .ok_or_else(|| KernelError::Unsupported(Box::new(*self)))
    }
}

fn out_side(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    let padded = input + 2 * padding;
    if padded < kernel || stride == 0 {
        0
    } else {
        (padded - kernel) / stride + 1
    }
}

/// `output = conv(input, weight)`, overwriting `output`.
pub fn conv2d_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    // SAFETY: `forward` writes computed f32 values into every element.
    forward(g, input, weight, None, unsafe { as_uninit(output) })
}

/// `output = epilogue(conv(input, weight))`: the convolution followed by a per-channel affine map
/// and activation (inference-mode batch norm folded in), applied per image while the output is
/// still in cache instead of as a separate pass over the whole tensor.
pub fn conv2d_forward_fused(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    epilogue: &Epilogue,
    output: &mut [f32],
) -> Result<(), KernelError> {
    // SAFETY: `forward` writes computed f32 values into every element.
    forward(g, input, weight, Some(epilogue), unsafe {
        as_uninit(output)
    })
}

/// Writes every element of `output`, which may be uninitialised storage.
fn forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    epilogue: Option<&Epilogue>,
    output: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let kind = g.kind_or_err()?;
    g.check("input", input.len(), g.input_len())?;
    g.check("weight", weight.len(), g.weight_len())?;
    g.check("output", output.len(), g.output_len())?;
    if let Some(e) = epilogue {
        g.check("epilogue scale", e.scale.len(), g.out_channels)?;
        g.check("epilogue shift", e.shift.len(), g.out_channels)?;
    }
    match kind {
        ConvKind::Pointwise => dense::pointwise_forward_with(g, input, weight, output, epilogue),
        ConvKind::Dense => dense::im2col_forward_with(g, input, weight, output, epilogue),
        ConvKind::Depthwise if small_map(g) => {
            depthwise_small::forward_with(g, input, weight, zero_fill(output), epilogue)
        }
        ConvKind::Depthwise => {
            depthwise::forward_with(g, input, weight, zero_fill(output), epilogue)
        }
    }
    Ok(())
}

/// The gradient of the loss with respect to the input, given the gradient with respect to the
/// output; overwrites `input_grad`.
pub fn conv2d_backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [f32],
) -> Result<(), KernelError> {
    // SAFETY: `backward_input` writes computed f32 values into every element.
    backward_input(g, weight, output_grad, unsafe { as_uninit(input_grad) })
}

/// Writes every element of `input_grad`, which may be uninitialised storage.
fn backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let kind = g.kind_or_err()?;
    g.check("weight", weight.len(), g.weight_len())?;
    g.check("output gradient", output_grad.len(), g.output_len())?;
    g.check("input gradient", input_grad.len(), g.input_len())?;
    match kind {
        ConvKind::Pointwise => dense::pointwise_backward_input(g, weight, output_grad, input_grad),
        ConvKind::Dense => dense::im2col_backward_input(g, weight, output_grad, input_grad),
        ConvKind::Depthwise if small_map(g) => {
            depthwise_small::backward_input(g, weight, output_grad, zero_fill(input_grad))
        }
        ConvKind::Depthwise => {
            depthwise::backward_input(g, weight, output_grad, zero_fill(input_grad))
        }
    }
    Ok(())
}

/// [`conv2d_forward_fused`] (or [`conv2d_forward`] without an epilogue) into a new vector: the
/// GEMM paths write the output once instead of after a zero fill.
pub fn conv2d_forward_to_vec(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    epilogue: Option<&Epilogue>,
) -> Result<Vec<f32>, KernelError> {
    // SAFETY: `forward` writes every element of its output when it returns `Ok`.
    unsafe {
        try_written_vec(g.output_len(), |out| {
            forward(g, input, weight, epilogue, out)
        })
    }
}

/// [`conv2d_backward_input`] into a new vector, written once on the GEMM paths.
pub fn conv2d_backward_input_to_vec(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    // SAFETY: `backward_input` writes every element of its output when it returns `Ok`.
    unsafe {
        try_written_vec(g.input_len(), |out| {
            backward_input(g, weight, output_grad, out)
        })
    }
}

/// The gradient of the loss with respect to the weight, summed over the batch; overwrites
/// `weight_grad`.
pub fn conv2d_backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    output_grad: &[f32],
    weight_grad: &mut [f32],
) -> Result<(), KernelError> {
    let kind = g.kind_or_err()?;
    g.check("input", input.len(), g.input_len())?;
    g.check("output gradient", output_grad.len(), g.output_len())?;
    g.check("weight gradient", weight_grad.len(), g.weight_len())?;
    match kind {
        ConvKind::Pointwise => dense::pointwise_backward_weight(g, input, output_grad, weight_grad),
        ConvKind::Dense => dense::im2col_backward_weight(g, input, output_grad, weight_grad),
        ConvKind::Depthwise if g.in_h * g.in_w <= depthwise_small::MAX_PIXELS_WEIGHT_GRAD => {
            depthwise_small::backward_weight(g, input, output_grad, weight_grad)
        }
        ConvKind::Depthwise => depthwise::backward_weight(g, input, output_grad, weight_grad),
    }
    Ok(())
}

/// Depthwise maps small enough for the channels-innermost path.
fn small_map(g: &ConvGeometry) -> bool {
    g.in_h * g.in_w <= depthwise_small::MAX_PIXELS
}

/// Images per partial sum when a gradient is summed over the batch: fixed, so that the order of
/// additions (and so the result, to the bit) does not depend on the number of threads.
pub(crate) const BATCH_CHUNK: usize = 8;

/// Sums `parts` (each `len` long, in order) into `out`.
pub(crate) fn sum_partials(parts: &[Vec<f32>], out: &mut [f32]) {
    out.copy_from_slice(&parts[0]);
    for p in &parts[1..] {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// Elements below which [`zero_fill`] fills on the calling thread: a parallel split costs more than
/// it saves on small buffers.
const PARALLEL_ZERO_MIN: usize = 1 << 16;

/// Initialised storage viewed as storage to overwrite, so that one kernel body serves both an
/// existing output slice and a fresh uninitialised vector ([`written_vec`]).
///
/// # Safety
/// Every write through the returned view must store an initialised value (never
/// `MaybeUninit::uninit()`): once the view's borrow ends, `s` is read as `f32` again.
pub(crate) unsafe fn as_uninit(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the caller guarantees that only initialised values are written.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// # Safety
/// Every element of `s` must have been initialised.
pub(crate) unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout, and the caller guarantees initialisation.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Zeroes `s` and returns it initialised, for kernels that accumulate into their output.
pub(crate) fn zero_fill(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    let zero = |chunk: &mut [MaybeUninit<f32>]| {
        chunk.iter_mut().for_each(|x| {
            x.write(0.0);
        })
    };
    if s.len() < PARALLEL_ZERO_MIN {
        zero(s);
    } else {
        s.par_chunks_mut(PARALLEL_ZERO_MIN).for_each(zero);
    }
    // SAFETY: every element was just written.
    unsafe { assume_init(s) }
}

/// A `len`-element vector filled by `write`; on failure nothing is returned.
///
/// # Safety
/// When `write` returns `Ok`, it must have initialised every element of the slice it was given.
pub(crate) unsafe fn try_written_vec<E>(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]) -> Result<(), E>,
) -> Result<Vec<f32>, E> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    write(&mut v.spare_capacity_mut()[..len])?;
    // SAFETY: `write` succeeded, so it initialised all `len` elements (`len <= capacity`).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// A `len`-element vector filled by `write`.
///
/// # Safety
/// `write` must initialise every element of the slice it is given (or panic).
pub(crate) unsafe fn written_vec(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    // SAFETY: passed on to the caller.
    unsafe {
        try_written_vec(len, |v| {
            write(v);
            Ok::<(), std::convert::Infallible>(())
        })
    }
    .unwrap_or_else(|never| match never {})
}

/// Planes per parallel task in [`scale_planes_to_vec`] and [`scale_planes_backward`]: enough
/// values per task to pay for it on the 7x7 maps of the last blocks.
const PLANES_PER_TASK: usize = 64;

/// `y[p][i] = x[p][i] * scale[p]`: every `spatial`-long plane of `x` multiplied by its own factor
/// (squeeze-and-excite's rescaling of each image's channels), written once into a new vector.
///
/// # Panics
/// If `x.len() != scale.len() * spatial`.
pub fn scale_planes_to_vec(x: &[f32], scale: &[f32], spatial: usize) -> Vec<f32> {
    assert_eq!(
        x.len(),
        scale.len() * spatial,
        "scale_planes: {} values are not {} planes of {spatial}",
        x.len(),
        scale.len()
    );
    let write = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(spatial * PLANES_PER_TASK)
            .zip(x.par_chunks(spatial * PLANES_PER_TASK))
            .zip(scale.par_chunks(PLANES_PER_TASK))
            .for_each(|((y, x), s)| {
                for ((yp, xp), &k) in y.chunks_mut(spatial).zip(x.chunks(spatial)).zip(s) {
                    yp.iter_mut().zip(xp).for_each(|(o, &v)| {
                        o.write(v * k);
                    });
                }
            });
    };
    if spatial == 0 {
        return Vec::new();
    }
    // SAFETY: the chunks cover `y` exactly (same length as `x`), and every element is written.
    unsafe { written_vec(x.len(), write) }
}

/// The gradients of [`scale_planes_to_vec`] given the output's, `dy`: `dx = dy * scale` per plane
/// and `dscale[p] = sum_i dy[p][i] * x[p][i]`.
///
/// # Panics
/// If the lengths do not agree as in [`scale_planes_to_vec`].
pub fn scale_planes_backward(
    x: &[f32],
    scale: &[f32],
    dy: &[f32],
    spatial: usize,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        dy.len(),
        x.len(),
        "scale_planes_backward: dy and x differ in length"
    );
    let dx = scale_planes_to_vec(dy, scale, spatial);
    if spatial == 0 {
        return (dx, vec![0.0; scale.len()]);
    }
    let mut dscale = vec![0.0f32; scale.len()];
    dscale
        .par_chunks_mut(PLANES_PER_TASK)
        .zip(x.par_chunks(spatial * PLANES_PER_TASK))
        .zip(dy.par_chunks(spatial * PLANES_PER_TASK))
        .for_each(|((ds, x), dy)| {
            for ((d, xp), gp) in ds.iter_mut().zip(x.chunks(spatial)).zip(dy.chunks(spatial)) {
                simd::dot_any(xp, gp, d);
            }
        });
    (dx, dscale)
}
