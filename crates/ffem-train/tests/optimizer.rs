//! The optimisers the configuration builds take the steps PyTorch's take: two steps of each on
//! one parameter vector with a fixed gradient, against the update rules written out by hand.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ffem_train::TrainConfig;
use ffem_train::config::OptimizerName;
use ffem_train::optimizer;

#[derive(Module, Debug)]
struct Weights {
    w: Param<Tensor<1>>,
}

const W0: [f64; 3] = [0.5, -1.0, 2.0];
/// The loss is `sum(w * G)`, so the gradient is G whatever w is.
const G: [f64; 3] = [0.2, -0.4, 1.0];
const LR: f64 = 0.1;
const DECAY: f64 = 0.05;

/// Two optimiser steps through burn; returns w after each.
fn burn_steps(cfg: &TrainConfig) -> [Vec<f64>; 2] {
    let device = Device::flex().autodiff();
    let w0: Vec<f32> = W0.iter().map(|&v| v as f32).collect();
    let g: Vec<f32> = G.iter().map(|&v| v as f32).collect();
    let mut module = Weights {
        w: Param::from_tensor(Tensor::from_data(TensorData::new(w0, [3]), &device)),
    };
    let mut optim = optimizer::build(cfg);
    let mut after: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let coeff = Tensor::<1>::from_data(TensorData::new(g.clone(), [3]), &device);
        let loss = (module.w.val() * coeff).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(LR, module, grads);
        let w: Vec<f32> = module.w.val().into_data().try_into_vec().unwrap();
        after.push(w.iter().map(|&v| v as f64).collect());
    }
    [after[0].clone(), after[1].clone()]
}

fn config(optimizer: OptimizerName, nesterov: bool) -> TrainConfig {
    TrainConfig {
        optimizer,
        momentum: 0.9,
        nesterov,
        weight_decay: DECAY,
        ..TrainConfig::default()
    }
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-5,
            "{what}: burn {got:?}, by hand {want:?}"
        );
    }
}

/// PyTorch `SGD(momentum, dampening=0, nesterov, weight_decay)`: d = g + wd w; b = m b + d (b = d
/// on the first step); w -= lr (d + m b) with Nesterov, lr b without.
fn sgd_by_hand(nesterov: bool) -> [Vec<f64>; 2] {
    let mut w = W0.to_vec();
    let mut b = [0.0; 3];
    let mut out = Vec::new();
    for step in 0..2 {
        for i in 0..3 {
            let d = G[i] + DECAY * w[i];
            b[i] = if step == 0 { d } else { 0.9 * b[i] + d };
            w[i] -= LR * if nesterov { d + 0.9 * b[i] } else { b[i] };
        }
        out.push(w.clone());
    }
    [out[0].clone(), out[1].clone()]
}

/// PyTorch `Adam` (L2 decay into the gradient) or `AdamW` (decoupled: w *= 1 - lr wd first), with
/// betas (0.9, 0.999) and ffem's epsilon 1e-7 added to the root of the corrected second moment.
fn adam_by_hand(decoupled: bool) -> [Vec<f64>; 2] {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-7);
    let mut w = W0.to_vec();
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    let mut out = Vec::new();
    for t in 1..=2 {
        for i in 0..3 {
            let g = if decoupled {
                w[i] *= 1.0 - LR * DECAY;
                G[i]
            } else {
                G[i] + DECAY * w[i]
            };
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            w[i] -= LR * m_hat / (v_hat.sqrt() + eps);
        }
        out.push(w.clone());
    }
    [out[0].clone(), out[1].clone()]
}

#[test]
fn sgd_with_nesterov_momentum_and_weight_decay() {
    for nesterov in [true, false] {
        let got = burn_steps(&config(OptimizerName::Sgd, nesterov));
        let want = sgd_by_hand(nesterov);
        assert_close(
            &got[0],
            &want[0],
            &format!("sgd nesterov={nesterov} step 1"),
        );
        assert_close(
            &got[1],
            &want[1],
            &format!("sgd nesterov={nesterov} step 2"),
        );
    }
}

#[test]
fn adam_adds_decay_to_the_gradient_and_adamw_decouples_it() {
    let got = burn_steps(&config(OptimizerName::Adam, false));
    let want = adam_by_hand(false);
    assert_close(&got[0], &want[0], "adam step 1");
    assert_close(&got[1], &want[1], "adam step 2");
    let got = burn_steps(&config(OptimizerName::Adamw, false));
    let want = adam_by_hand(true);
    assert_close(&got[0], &want[0], "adamw step 1");
    assert_close(&got[1], &want[1], "adamw step 2");
    // The two differ measurably here, so the test tells them apart.
    assert!((adam_by_hand(true)[1][2] - adam_by_hand(false)[1][2]).abs() > 1e-4);
}

#[derive(Module, Debug)]
struct Layer {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

/// Five steps of a 400x100 matrix and a bias (the fused CPU update, split across threads) against
/// burn's own `Adam` / `AdamW` built with the same hyper-parameters (composed tensor operations),
/// with gradients that change every step.
#[test]
fn fused_adam_follows_burns_adam_over_several_steps() {
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, AdamWConfig};
    use burn::tensor::Distribution;
    let device = Device::flex().autodiff();
    device.seed(9);
    let init = Layer {
        weight: Param::from_tensor(Tensor::random(
            [400, 100],
            Distribution::Normal(0.0, 1.0),
            &device,
        )),
        bias: Param::from_tensor(Tensor::random(
            [100],
            Distribution::Normal(0.0, 1.0),
            &device,
        )),
    };
    let coefficients: Vec<(Tensor<2>, Tensor<1>)> = (0..5)
        .map(|_| {
            (
                Tensor::random([400, 100], Distribution::Normal(0.0, 1.0), &device),
                Tensor::random([100], Distribution::Normal(0.0, 1.0), &device),
            )
        })
        .collect();
    for name in [OptimizerName::Adam, OptimizerName::Adamw] {
        let cfg = config(name, false);
        let mut reference = match name {
            OptimizerName::Adam => AdamConfig::new()
                .with_epsilon(1e-7)
                .with_weight_decay(Some(WeightDecayConfig::new(DECAY as f32)))
                .init(),
            _ => AdamWConfig::new()
                .with_epsilon(1e-7)
                .with_weight_decay(DECAY as f32)
                .init(),
        };
        let mut fused = optimizer::build(&cfg);
        let (mut a, mut b) = (init.clone(), init.clone());
        for (cw, cb) in &coefficients {
            // A loss whose gradient depends on the weights, so the trajectories can diverge.
            let loss = |m: &Layer| {
                (m.weight.val() * cw.clone()).sum()
                    + (m.weight.val().powf_scalar(2.0) * 0.1).sum()
                    + (m.bias.val() * cb.clone()).sum()
            };
            let ga = GradientsParams::from_grads(loss(&a).backward(), &a);
            a = fused.step(LR, a, ga);
            let gb = GradientsParams::from_grads(loss(&b).backward(), &b);
            b = reference.step(LR, b, gb);
        }
        let values = |m: &Layer| -> Vec<f32> {
            let mut v: Vec<f32> = m.weight.val().into_data().try_into_vec().unwrap();
            v.extend(m.bias.val().into_data().try_into_vec::<f32>().unwrap());
            v
        };
        let (va, vb, v0) = (values(&a), values(&b), values(&init));
        let worst = va
            .iter()
            .zip(&vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{name:?}: fused and burn differ by {worst:e}");
        // Five steps of lr 0.1 moved the parameters far more than that.
        let moved = va
            .iter()
            .zip(&v0)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(moved > 0.3, "{name:?}: parameters moved only {moved}");
    }
}
