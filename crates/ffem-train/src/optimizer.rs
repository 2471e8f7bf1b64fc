//! The optimiser named in the configuration, with the semantics PyTorch and Keras users expect:
//!
//! - `adam`: L2 weight decay added to the gradient before the moments (PyTorch `Adam`),
//!   epsilon 1e-7 (Keras' default, the seed's framework);
//! - `adamw`: decoupled decay `w -= lr * wd * w` beside the Adam update (PyTorch `AdamW`);
//! - `sgd`: `momentum` with dampening 0 (burn defaults to 0.1, PyTorch and Keras use 0), optionally
//!   Nesterov, L2 weight decay added to the gradient.
//!
//! `tests/optimizer.rs` checks one step of each against hand-computed values.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{Device, Tensor, TensorData};
use ffem_model::cpu::on_cpu_kernels;

use crate::config::{OptimizerName, TrainConfig};

/// Builds the optimiser `cfg.optimizer` with `cfg`'s weight decay and momentum.
pub fn build(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer {
        OptimizerName::Adam => FusedAdam {
            fallback: AdamConfig::new()
                .with_epsilon(EPSILON)
                .with_weight_decay(decay)
                .build(),
            constants: AdamConstants {
                l2_decay: cfg.weight_decay as f32,
                ..AdamConstants::default()
            },
        }
        .into(),
        OptimizerName::Adamw => FusedAdamW {
            fallback: AdamWConfig::new()
                .with_epsilon(EPSILON)
                .with_weight_decay(cfg.weight_decay as f32)
                .build(),
            constants: AdamConstants {
                decoupled_decay: cfg.weight_decay as f32,
                ..AdamConstants::default()
            },
        }
        .into(),
        OptimizerName::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((cfg.momentum > 0.0).then_some(MomentumConfig {
                momentum: cfg.momentum,
                dampening: 0.0,
                nesterov: cfg.nesterov,
            }))
            .init(),
    }
}

/// Adam with its update fused into one pass (`ffem_kernels::adam_step`) for f32 parameters on
/// the CPU, and burn's own `Adam` for anything else (another device or dtype, AMSGrad). The state
/// is burn's `AdamState`, so checkpoints written by either load in the other.
#[derive(Clone)]
pub struct FusedAdam {
    fallback: Adam,
    constants: AdamConstants,
}

/// AdamW likewise: [`FusedAdam`] with the decay decoupled, burn's `AdamWState` as its state.
#[derive(Clone)]
pub struct FusedAdamW {
    fallback: AdamW,
    constants: AdamConstants,
}

/// Keras' default, the seed's framework (PyTorch's is 1e-8).
const EPSILON: f32 = 1e-7;

/// The hyper-parameters of both, as the kernel takes them.
#[derive(Clone, Copy)]
struct AdamConstants {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    l2_decay: f32,
    decoupled_decay: f32,
}

impl Default for AdamConstants {
    /// burn's and PyTorch's betas, ffem's epsilon, no decay.
    fn default() -> Self {
        AdamConstants {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: EPSILON,
            l2_decay: 0.0,
            decoupled_decay: 0.0,
        }
    }
}

impl AdamConstants {
    /// Whether the fused CPU step applies: f32 on the CPU kernels' device, no AMSGrad maximum.
    fn applies<const D: usize>(
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdaptiveMomentumState<D>>,
    ) -> bool {
        on_cpu_kernels(tensor)
            && on_cpu_kernels(grad)
            && state.is_none_or(|s| s.max_moment_2.is_none())
    }

    /// One fused step. Everything is taken by value so that the buffers of the parameter and the
    /// moments, held by nothing else, are updated in place instead of copied.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let shape = tensor.shape();
        let device = tensor.device();
        let host = |t: Tensor<D>| {
            t.into_data()
                .try_into_vec::<f32>()
                .expect("an f32 tensor on the CPU")
        };
        let mut w = host(tensor);
        let g = host(grad);
        let (mut m, mut v, time) = match state {
            Some(s) => (host(s.moment_1), host(s.moment_2), s.time + 1),
            None => (vec![0.0; w.len()], vec![0.0; w.len()], 1),
        };
        ffem_kernels::adam_step(
            &ffem_kernels::AdamStep {
                lr,
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
                l2_decay: self.l2_decay,
                decoupled_decay: self.decoupled_decay,
                time: time as i32,
            },
            &mut w,
            &g,
            &mut m,
            &mut v,
        );
        let tensor = |values: Vec<f32>| {
            Tensor::<D>::from_data(TensorData::new(values, shape.clone()), &device)
        };
        (
            tensor(w),
            AdaptiveMomentumState {
                time,
                moment_1: tensor(m),
                moment_2: tensor(v),
                max_moment_2: None,
            },
        )
    }
}

/// The `Optimizer` impl of a fused variant: the one-pass step where it applies, else the
/// fallback; `$state` wraps the moments as burn's own optimiser does.
macro_rules! fused_optimizer {
    ($fused:ty, $fallback:ty, $state:ident) => {
        impl Optimizer for $fused {
            type State<const D: usize> = $state<D>;

            fn step<const D: usize>(
                &self,
                lr: LearningRate,
                tensor: Tensor<D>,
                grad: Tensor<D>,
                state: Option<Self::State<D>>,
            ) -> (Tensor<D>, Option<Self::State<D>>) {
                if !AdamConstants::applies(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
                    return self.fallback.step(lr, tensor, grad, state);
                }
                let (tensor, momentum) =
                    self.constants
                        .step(lr, tensor, grad, state.map(|s| s.momentum));
                (tensor, Some($state { momentum }))
            }

            fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
                <$fallback as Optimizer>::to_device(state, device)
            }
        }
    };
}

fused_optimizer!(FusedAdam, Adam, AdamState);
fused_optimizer!(FusedAdamW, AdamW, AdamWState);
