//! Squeeze-and-excite's rescaling, `y = x * s` with one factor per image and channel, as a burn
//! backend extension: on the CPU (`flex`, f32) one parallel pass each way through `ffem-kernels`;
//! elsewhere burn's broadcasting multiplication.
//!
//! Why: burn's CPU backend runs a broadcasting multiplication and its reduction backward on the
//! calling thread alone; in MobileNetV3-Small, whose blocks nearly all squeeze and excite, those
//! passes kept the other core idle for about a tenth of a training step.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Tensor};

use crate::cpu::{f32_elements, flex_tensor, on_cpu_kernels};

/// `x * s` for `x` of shape (N, C, H, W) and `s` of shape (N, C, 1, 1), with its gradients.
#[backend_extension(Flex, Autodiff, Cube: cfg(feature = "vulkan"))]
pub trait ScaleKernels: Backend {
    /// Each (image, channel) plane of `x` times its factor in `s`.
    fn ffem_scale_planes(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        let s = Self::float_expand(s, x.shape());
        Self::float_mul(x, s)
    }

    /// The gradients with respect to `x` and `s` given the output's.
    fn ffem_scale_planes_backward(
        x: FloatTensor<Self>,
        s: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let dx = Self::float_mul(output_grad.clone(), Self::float_expand(s, x.shape()));
        let ds = Self::float_mul(output_grad, x);
        let ds = Self::float_sum_dim(Self::float_sum_dim(ds, 3), 2);
        (dx, ds)
    }
}

#[cfg(feature = "vulkan")]
impl ScaleKernels for burn::backend::Cube {}

/// Values per (image, channel) plane, or `None` when the shapes are not (N, C, H, W) and
/// (N, C, 1, 1) in f32 (then burn's operations run).
fn plane_size(x: &FlexTensor, s: &FlexTensor) -> Option<usize> {
    let (xs, ss) = (x.shape(), s.shape());
    let fits = x.dtype() == DType::F32
        && s.dtype() == DType::F32
        && xs.num_dims() == 4
        && ss.num_dims() == 4
        && ss[0] == xs[0]
        && ss[1] == xs[1]
        && ss[2] == 1
        && ss[3] == 1;
    fits.then(|| xs[2] * xs[3])
}

impl ScaleKernels for Flex {
    fn ffem_scale_planes(x: FlexTensor, s: FlexTensor) -> FlexTensor {
        let Some(spatial) = plane_size(&x, &s) else {
            let s = Flex::float_expand(s, x.shape());
            return Flex::float_mul(x, s);
        };
        let y = ffem_kernels::scale_planes_to_vec(&f32_elements(&x), &f32_elements(&s), spatial);
        flex_tensor(y, x.shape().to_vec())
    }

    fn ffem_scale_planes_backward(
        x: FlexTensor,
        s: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let Some(spatial) = plane_size(&x, &s).filter(|_| output_grad.dtype() == DType::F32) else {
            let dx = Flex::float_mul(output_grad.clone(), Flex::float_expand(s, x.shape()));
            let ds = Flex::float_mul(output_grad, x);
            return (dx, Flex::float_sum_dim(Flex::float_sum_dim(ds, 3), 2));
        };
        let (dx, ds) = ffem_kernels::scale_planes_backward(
            &f32_elements(&x),
            &f32_elements(&s),
            &f32_elements(&output_grad),
            spatial,
        );
        (
            flex_tensor(dx, x.shape().to_vec()),
            flex_tensor(ds, s.shape().to_vec()),
        )
    }
}

impl<B: ScaleKernels, C: CheckpointStrategy> ScaleKernels for Autodiff<B, C> {
    fn ffem_scale_planes(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ScalePlanes;

        impl<B: ScaleKernels> Backward<B, 2> for ScalePlanes {
            type State = (NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_s] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, s_state) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let s = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(s_state);
                let (dx, ds) = B::ffem_scale_planes_backward(x, s, grad);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_s {
                    grads.register::<B>(node.id, ds);
                }
            }
        }

        match ScalePlanes
            .prepare::<C>([x.node(), s.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let s_state = prep.checkpoint(&s);
                prep.finish(
                    (x_state, s_state),
                    B::ffem_scale_planes(x.into_primitive(), s.into_primitive()),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::ffem_scale_planes(x.into_primitive(), s.into_primitive()))
            }
        }
    }
}

/// `x * s` (x: (N, C, H, W), s: (N, C, 1, 1)) through [`ScaleKernels`] on the CPU kernels' device,
/// burn's broadcasting multiplication elsewhere; the same values and gradients either way.
pub fn scale_planes(x: Tensor<4>, s: Tensor<4>) -> Tensor<4> {
    if !on_cpu_kernels(&x) {
        return x * s;
    }
    Tensor::from_dispatch(<Dispatch as ScaleKernels>::ffem_scale_planes(
        x.into_dispatch(),
        s.into_dispatch(),
    ))
}
