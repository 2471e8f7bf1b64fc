//! Batch norm + activation as one operation on the CPU: a burn backend extension whose `flex`
//! implementation is `ffem-kernels`' fused pass, with one autodiff node and a hand-written
//! backward. Other devices and dtypes keep burn's `BatchNorm` followed by the activation, so the
//! GPU path is unchanged.
//!
//! The running statistics are updated exactly as burn's `BatchNorm` does (momentum, biased batch
//! variance), so a model trained either way loads and evaluates the same.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, Scalar, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::{DType, Tensor};
use ffem_kernels::{Activation, NormShape};

use crate::cpu::{f32_elements, flex_tensor, on_cpu_kernels};

/// Batch norm in training mode (batch statistics) or inference mode (given statistics), fused
/// with the activation after it.
#[backend_extension(Flex, Autodiff)]
pub trait NormKernels: Backend {
    /// Returns the activated output, the batch mean and the biased batch variance.
    fn ffem_batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients with respect to x, gamma and beta of [`Self::ffem_batch_norm_act_train`].
    #[allow(clippy::too_many_arguments)]
    fn ffem_batch_norm_act_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Normalises with the given statistics, then applies the activation.
    fn ffem_batch_norm_act_infer(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> FloatTensor<Self> {
        activate_primitive::<Self>(
            Self::batch_norm(x, gamma, beta, mean, variance, epsilon),
            act,
        )
    }
}

/// The activation from backend operations (differentiable where the backend is).
pub(crate) fn activate_primitive<B: Backend>(t: FloatTensor<B>, act: Activation) -> FloatTensor<B> {
    match act {
        Activation::Identity => t,
        Activation::Relu => B::relu(t),
        Activation::Relu6 => B::float_clamp(t, Scalar::Float(0.0), Scalar::Float(6.0)),
        Activation::HardSwish => {
            let gate = B::hard_sigmoid(t.clone(), Scalar::Float(1.0 / 6.0), Scalar::Float(0.5));
            B::float_mul(t, gate)
        }
    }
}

fn norm_shape(x: &FlexTensor) -> NormShape {
    let s = x.shape();
    NormShape {
        batch: s[0],
        channels: s[1],
        spatial: s.num_elements() / (s[0] * s[1]).max(1),
    }
}

impl NormKernels for Flex {
    fn ffem_batch_norm_act_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        act: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let s = norm_shape(&x);
        let (y, mean, var) = ffem_kernels::batch_norm_act_train_to_vec(
            s,
            &f32_elements(&x),
            &f32_elements(&gamma),
            &f32_elements(&beta),
            epsilon,
            act,
        );
        (
            flex_tensor(y, x.shape().to_vec()),
            flex_tensor(mean, vec![s.channels]),
            flex_tensor(var, vec![s.channels]),
        )
    }

    fn ffem_batch_norm_act_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        act: Activation,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let s = norm_shape(&x);
        let (dx, dgamma, dbeta) = ffem_kernels::batch_norm_act_train_backward_to_vec(
            s,
            &f32_elements(&x),
            &f32_elements(&output_grad),
            &f32_elements(&gamma),
            &f32_elements(&beta),
            &f32_elements(&mean),
            &f32_elements(&variance),
            epsilon,
            act,
        );
        (
            flex_tensor(dx, x.shape().to_vec()),
            flex_tensor(dgamma, vec![s.channels]),
            flex_tensor(dbeta, vec![s.channels]),
        )
    }

    fn ffem_batch_norm_act_infer(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        act: Activation,
    ) -> FlexTensor {
        let s = norm_shape(&x);
        let y = ffem_kernels::batch_norm_act_infer_to_vec(
            s,
            &f32_elements(&x),
            &f32_elements(&gamma),
            &f32_elements(&beta),
            &f32_elements(&mean),
            &f32_elements(&variance),
            epsilon,
            act,
        );
        flex_tensor(y, x.shape().to_vec())
    }
}

impl<B: NormKernels, C: CheckpointStrategy> NormKernels for Autodiff<B, C> {
    fn ffem_batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct FusedBatchNorm;

        impl<B: NormKernels> Backward<B, 3> for FusedBatchNorm {
            type State = (
                NodeId,
                NodeId,
                NodeId,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                f64,
                Activation,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, beta_state, mean, variance, epsilon, act) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let gamma =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
                let beta = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(beta_state);
                let (dx, dgamma, dbeta) = B::ffem_batch_norm_act_train_backward(
                    x, gamma, beta, mean, variance, epsilon, act, grad,
                );
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_gamma {
                    grads.register::<B>(node.id, dgamma);
                }
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, dbeta);
                }
            }
        }

        match FusedBatchNorm
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let (y, mean, variance) = B::ffem_batch_norm_act_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    act,
                );
                let y = prep.finish(
                    (
                        x_state,
                        gamma_state,
                        beta_state,
                        mean.clone(),
                        variance.clone(),
                        epsilon,
                        act,
                    ),
                    y,
                );
                (
                    y,
                    <FloatTensor<Self>>::new(mean),
                    <FloatTensor<Self>>::new(variance),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, variance) = B::ffem_batch_norm_act_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    act,
                );
                (
                    prep.finish(y),
                    <FloatTensor<Self>>::new(mean),
                    <FloatTensor<Self>>::new(variance),
                )
            }
        }
    }

    fn ffem_batch_norm_act_train_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _variance: FloatTensor<Self>,
        _epsilon: f64,
        _act: Activation,
        _output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // As burn's own batch_norm_train_backward: only the inner backend computes it.
        panic!("the fused batch norm's backward is not itself differentiable");
    }
}

/// BatchNorm in f32 whatever the input's precision (as autocast does): under mixed precision the
/// statistics and running buffers stay f32, the output returns to the input's dtype.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        bn.forward(x)
    } else {
        bn.forward(x.cast(DType::F32)).cast(dtype)
    }
}

/// The activation on a tensor, through burn's differentiable operations.
pub fn activate<const D: usize>(x: Tensor<D>, act: Activation) -> Tensor<D> {
    Tensor::from_dispatch(activate_primitive::<Dispatch>(x.into_dispatch(), act))
}

/// `act(bn.forward(x))`, fused on the CPU: batch statistics and a running-statistics update when
/// `x` is on an autodiff device and the layer is training, the running statistics otherwise.
pub fn batch_norm_act(bn: &BatchNorm, x: Tensor<4>, act: Activation) -> Tensor<4> {
    if !on_cpu_kernels(&x) {
        return activate(batch_norm(bn, x), act);
    }
    let device = x.device();
    if device.is_autodiff() && bn.training.is_enabled() {
        let (y, mean, variance) = <Dispatch as NormKernels>::ffem_batch_norm_act_train(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            bn.epsilon,
            act,
        );
        let (mean, variance) = (
            Tensor::<1>::from_dispatch(mean),
            Tensor::<1>::from_dispatch(variance),
        );
        let m = bn.momentum;
        let running_mean = bn
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(mean.detach().mul_scalar(m));
        let running_var = bn
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(variance.detach().mul_scalar(m));
        bn.running_mean.update(running_mean.detach());
        bn.running_var.update(running_var.detach());
        Tensor::from_dispatch(y)
    } else if !device.is_autodiff() {
        let mean = bn.running_mean.value().to_device(&device);
        let variance = bn.running_var.value().to_device(&device);
        Tensor::from_dispatch(<Dispatch as NormKernels>::ffem_batch_norm_act_infer(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            mean.into_dispatch(),
            variance.into_dispatch(),
            bn.epsilon,
            act,
        ))
    } else {
        // A frozen layer on a training device: burn's differentiable inference path.
        activate(bn.forward(x), act)
    }
}
