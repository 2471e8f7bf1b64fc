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
