//! The 2-D convolution every ffem layer runs, as a burn backend extension: on the CPU (`flex`, f32)
//! it calls `ffem-kernels` forward and backward; on any other backend or dtype it is burn's own
//! `conv2d`. Autodiff gets one graph node whose backward calls the same kernels, so the model
//! definition stays one and backend-independent.
//!
//! Why: burn's generic convolution backward computes a weight gradient as a convolution with an
//! output-sized kernel, and a depthwise one channel by channel; on flex that made a training step
//! five times slower than TensorFlow's (the per-layer table in `bench/README.md`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};

use crate::cpu::{cpu_kernels, f32_elements, flex_tensor, on_cpu_kernels};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor, TensorData};
use ffem_kernels::{Activation, ConvGeometry};

/// Convolution without bias, with its two gradients, overridable per backend. The default bodies
/// are burn's generic implementations.
#[backend_extension(Flex, Autodiff, Cube: cfg(feature = "vulkan"))]
pub trait ConvKernels: Backend {
    /// `conv2d(x, weight)` without bias.
    fn ffem_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// `act(conv2d(x, weight) * scale[c] + shift[c])`: a convolution with inference-mode batch norm
    /// folded into `scale` and `shift`, and the activation after it.
    fn ffem_conv2d_affine_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FloatTensor<Self> {
        conv_affine_act_generic::<Self>(x, weight, scale, shift, options, act)
    }

    /// The gradient with respect to `x` given the output's.
    fn ffem_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient with respect to `weight` given the output's.
    fn ffem_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

#[cfg(feature = "vulkan")]
impl ConvKernels for burn::backend::Cube {}

/// [`ConvKernels::ffem_conv2d_affine_act`] from the backend's own operations.
fn conv_affine_act_generic<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    options: ConvOptions<2>,
    act: Activation,
) -> FloatTensor<B> {
    let y = B::conv2d(x, weight, None, options);
    let per_channel = |t: FloatTensor<B>| {
        let c = t.shape().num_elements();
        B::float_reshape(t, burn::tensor::Shape::new([1, c, 1, 1]))
    };
    let y = B::float_add(B::float_mul(y, per_channel(scale)), per_channel(shift));
    crate::norm::activate_primitive::<B>(y, act)
}

/// The kernels' geometry for an f32 convolution they serve, else `None` (the caller falls back).
fn flex_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<ConvGeometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || options.dilation != [1, 1] {
        return None;
    }
    let [(top, bottom), (left, right)] = options.padding;
    if top != bottom || left != right {
        return None;
    }
    let (xs, ws) = (x.shape(), weight.shape());
    if xs.num_dims() != 4 || ws.num_dims() != 4 || ws[1] * options.groups != xs[1] {
        return None;
    }
    let g = ConvGeometry {
        batch: xs[0],
        in_channels: xs[1],
        in_h: xs[2],
        in_w: xs[3],
        out_channels: ws[0],
        kernel: [ws[2], ws[3]],
        stride: options.stride,
        padding: [top, left],
        groups: options.groups,
    };
    g.kind().map(|_| g)
}

impl ConvKernels for Flex {
    fn ffem_conv2d_affine_act(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FlexTensor {
        let Some(g) = flex_geometry(&x, &weight, &options)
            .filter(|_| scale.dtype() == DType::F32 && shift.dtype() == DType::F32)
        else {
            return conv_affine_act_generic::<Flex>(x, weight, scale, shift, options, act);
        };
        let (scale, shift) = (f32_elements(&scale), f32_elements(&shift));
        let epilogue = ffem_kernels::Epilogue {
            scale: &scale,
            shift: &shift,
            act,
        };
        let out = ffem_kernels::conv2d_forward_to_vec(
            &g,
            &f32_elements(&x),
            &f32_elements(&weight),
            Some(&epilogue),
        )
        .expect("geometry checked");
        flex_tensor(out, [g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    fn ffem_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, None, options);
        };
        let out = ffem_kernels::conv2d_forward_to_vec(
            &g,
            &f32_elements(&x),
            &f32_elements(&weight),
            None,
        )
        .expect("geometry checked");
        flex_tensor(out, [g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    fn ffem_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) =
            flex_geometry(&x, &weight, &options).filter(|_| output_grad.dtype() == DType::F32)
        else {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        };
        let dx = ffem_kernels::conv2d_backward_input_to_vec(
            &g,
            &f32_elements(&weight),
            &f32_elements(&output_grad),
        )
        .expect("geometry checked");
        flex_tensor(dx, [g.batch, g.in_channels, g.in_h, g.in_w])
    }

    fn ffem_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) =
            flex_geometry(&x, &weight, &options).filter(|_| output_grad.dtype() == DType::F32)
        else {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let mut dw = vec![0.0f32; g.weight_len()];
        ffem_kernels::conv2d_backward_weight(
            &g,
            &f32_elements(&x),
            &f32_elements(&output_grad),
            &mut dw,
        )
        .expect("geometry checked");
        let ws = weight.shape();
        flex_tensor(dw, [ws[0], ws[1], ws[2], ws[3]])
    }
}

impl<B: ConvKernels, C: CheckpointStrategy> ConvKernels for Autodiff<B, C> {
    fn ffem_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FfemConv2d;

        impl<B: ConvKernels> Backward<B, 2> for FfemConv2d {
            type State = (NodeId, NodeId, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state, options) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let weight =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
                if let Some(node) = node_x {
                    let dx = B::ffem_conv2d_x_backward(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    grads.register::<B>(
                        node.id,
                        B::ffem_conv2d_weight_backward(x, weight, grad, options),
                    );
                }
            }
        }

        match FfemConv2d
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state, options.clone()),
                    B::ffem_conv2d(x.into_primitive(), weight.into_primitive(), options),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::ffem_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
}

/// The layer's convolution options, or `None` for "same" padding, which depends on the input
/// size (burn's own module computes it).
fn explicit_options(conv: &Conv2d) -> Option<ConvOptions<2>> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => return None,
    };
    Some(ConvOptions::new_with_padding(
        conv.stride,
        padding,
        conv.dilation,
        conv.groups,
    ))
}

/// `conv.forward(x)` through [`ConvKernels`]: same weights, padding, stride and groups, same result.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(options) = explicit_options(conv).filter(|_| cpu_kernels()) else {
        return conv.forward(x);
    };
    let y = <Dispatch as ConvKernels>::ffem_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        options,
    );
    let y = Tensor::<4>::from_dispatch(y);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
        None => y,
    }
}

/// Convolution, batch norm and activation as one layer (`ConvBn`): on the CPU without autodiff
/// (inference) one fused pass with the batch norm folded in; otherwise [`conv2d`] then
/// [`crate::norm::batch_norm_act`].
pub fn conv_bn_act(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>, act: Activation) -> Tensor<4> {
    // Training is decided by the weight as well as the input: an image batch moved with
    // `to_device` onto an autodiff device keeps a plain device, yet the layer must still learn.
    let training = x.device().is_autodiff() || conv.weight.val().device().is_autodiff();
    let fused = on_cpu_kernels(&x) && conv.bias.is_none() && !training;
    let Some(options) = explicit_options(conv).filter(|_| fused) else {
        return crate::norm::batch_norm_act(bn, conv2d(conv, x), act);
    };
    let host = |t: Tensor<1>| {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("batch norm parameters are f32")
    };
    let (scale, shift) = ffem_kernels::Epilogue::batch_norm(
        &host(bn.gamma.val()),
        &host(bn.beta.val()),
        &host(bn.running_mean.value()),
        &host(bn.running_var.value()),
        bn.epsilon,
    );
    let device = x.device();
    let channels = scale.len();
    let scale = Tensor::<1>::from_data(TensorData::new(scale, [channels]), &device);
    let shift = Tensor::<1>::from_data(TensorData::new(shift, [channels]), &device);
    Tensor::from_dispatch(<Dispatch as ConvKernels>::ffem_conv2d_affine_act(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        options,
        act,
    ))
}
