//! The convolution entry points: check the slices against the geometry, then dispatch to the
//! pointwise / im2col GEMMs (`dense`) or the depthwise stencils (`depthwise`, `depthwise_small`).

use std::mem::MaybeUninit;

use crate::buffers::{as_uninit, try_written_vec, zero_fill};
use crate::geometry::{ConvGeometry, ConvKind, KernelError};
use crate::norm::Epilogue;
use crate::{dense, depthwise, depthwise_small};

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
