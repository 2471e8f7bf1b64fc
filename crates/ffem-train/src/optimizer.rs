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
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::config::{OptimizerName, TrainConfig};

/// Builds the optimiser `cfg.optimizer` with `cfg`'s weight decay and momentum.
pub fn build(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer {
        OptimizerName::Adam => AdamConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(decay)
            .init(),
        OptimizerName::Adamw => AdamWConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(cfg.weight_decay as f32)
            .init(),
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
