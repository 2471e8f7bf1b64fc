//! Loss values against independent f64 formulas, gradients against finite differences of them.
//!
//! One file (over 600 lines) because every loss is checked by the same f64 harness (the
//! reference formulas and the finite-difference gradient check).

use burn::module::Param;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ffem_train::losses::{ClassifierLoss, LossConfig};

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Cosine of `f` to identity `j`: to its best of `k` centres (rows `j k .. j k + k` of `w`),
/// clamped as the losses clamp it.
fn cosine_to(f: &[f64], w: &[f64], j: usize, k: usize, d: usize) -> f64 {
    (0..k)
        .map(|t| {
            let wj = &w[(j * k + t) * d..][..d];
            let dot: f64 = f.iter().zip(wj).map(|(a, b)| a * b).sum();
            (dot / (norm(f) * norm(wj))).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        })
        .fold(f64::MIN, f64::max)
}

/// Reference of the proxy losses, written from the papers: Proxy-NCA per sample, Proxy-Anchor over
/// the batch.
fn proxy_reference(cfg: LossConfig, f: &[f64], w: &[f64], labels: &[usize], d: usize) -> f64 {
    let n = labels.len();
    let c = w.len() / d;
    let cos = |i: usize, j: usize| cosine_to(&f[i * d..][..d], w, j, 1, d);
    match cfg {
        LossConfig::ProxyNca { scale } => {
            let mut total = 0.0;
            for (i, &label) in labels.iter().enumerate() {
                let neg_dist = |j: usize| 2.0 * scale * scale * (cos(i, j) - 1.0);
                let others: Vec<f64> = (0..c).filter(|&j| j != label).map(neg_dist).collect();
                let lse = logsumexp(&others);
                total += lse - neg_dist(label);
            }
            total / n as f64
        }
        LossConfig::ProxyAnchor { alpha, delta } => {
            let (mut pos, mut with_positives, mut neg) = (0.0, 0usize, 0.0);
            for p in 0..c {
                let members: Vec<usize> = (0..n).filter(|&i| labels[i] == p).collect();
                if !members.is_empty() {
                    with_positives += 1;
                    pos += (1.0
                        + members
                            .iter()
                            .map(|&i| (-alpha * (cos(i, p) - delta)).exp())
                            .sum::<f64>())
                    .ln();
                }
                neg += (1.0
                    + (0..n)
                        .filter(|&i| labels[i] != p)
                        .map(|i| (alpha * (cos(i, p) + delta)).exp())
                        .sum::<f64>())
                .ln();
            }
            pos / with_positives as f64 + neg / c as f64
        }
        other => unreachable!("{other:?} is not a proxy loss"),
    }
}

/// Reference of SoftTriple (Qian et al., ICCV 2019), from the paper and the authors' regulariser.
fn softtriple_reference(cfg: LossConfig, f: &[f64], w: &[f64], labels: &[usize], d: usize) -> f64 {
    let LossConfig::SoftTriple {
        centres: k,
        lambda,
        gamma,
        tau,
        delta,
    } = cfg
    else {
        unreachable!()
    };
    let n = labels.len();
    let c = w.len() / d / k;
    let unit = |v: &[f64]| v.iter().map(|x| x / norm(v)).collect::<Vec<f64>>();
    let centre = |j: usize, t: usize| unit(&w[(j * k + t) * d..][..d]);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut ce = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let fi = unit(&f[i * d..][..d]);
        let logits: Vec<f64> = (0..c)
            .map(|j| {
                let cos: Vec<f64> = (0..k).map(|t| dot(&fi, &centre(j, t))).collect();
                let z: f64 = cos.iter().map(|x| (x / gamma).exp()).sum();
                let relaxed: f64 = cos.iter().map(|x| (x / gamma).exp() / z * x).sum();
                lambda * (relaxed - if j == label { delta } else { 0.0 })
            })
            .collect();
        let lse = logsumexp(&logits);
        ce += lse - logits[label];
    }
    let mut reg = 0.0;
    for j in 0..c {
        for t in 0..k {
            for u in t + 1..k {
                reg += (2.0 + 1e-5 - 2.0 * dot(&centre(j, t), &centre(j, u))).sqrt();
            }
        }
    }
    ce / n as f64 + tau * reg / (c * k * (k - 1)) as f64
}

/// Reference: mean cross-entropy of the margin / L2-softmax logits, in f64, written from the papers.
fn reference(cfg: LossConfig, f: &[f64], w: &[f64], b: &[f64], labels: &[usize], d: usize) -> f64 {
    if matches!(
        cfg,
        LossConfig::ProxyNca { .. } | LossConfig::ProxyAnchor { .. }
    ) {
        return proxy_reference(cfg, f, w, labels, d);
    }
    if matches!(cfg, LossConfig::SoftTriple { .. }) {
        return softtriple_reference(cfg, f, w, labels, d);
    }
    let n = labels.len();
    let k = cfg.centres_per_class();
    let c = w.len() / d / k;
    // Sub-center ArcFace is ArcFace on the best centre's cosine.
    let cfg = match cfg {
        LossConfig::SubcenterArcface { margin, scale, .. } => LossConfig::arcface(margin, scale),
        other => other,
    };
    let mut total = 0.0;
    for i in 0..n {
        let fi = &f[i * d..][..d];
        let nf = norm(fi);
        let mut logits = vec![0.0; c];
        for j in 0..c {
            logits[j] = match cfg {
                LossConfig::L2Softmax { scale } => {
                    let dot: f64 = fi.iter().zip(&w[j * d..][..d]).map(|(a, b)| a * b).sum();
                    scale * dot / nf + b[j]
                }
                LossConfig::Margin {
                    m1,
                    m2,
                    m3,
                    scale,
                    easy_margin,
                } => {
                    let cos = cosine_to(fi, w, j, k, d);
                    if j != labels[i] {
                        scale * cos
                    } else {
                        let theta = cos.acos();
                        let phi = if m1 == 1.0 && m3 == 0.0 {
                            if easy_margin {
                                if cos > 0.0 { (theta + m2).cos() } else { cos }
                            } else if theta + m2 < std::f64::consts::PI {
                                (theta + m2).cos()
                            } else {
                                cos - (std::f64::consts::PI - m2).sin() * m2
                            }
                        } else {
                            (m1 * theta + m2).cos() - m3
                        };
                        scale * phi
                    }
                }
                other => unreachable!("{other:?} has its own reference"),
            };
        }
        let lse = logsumexp(&logits);
        total += lse - logits[labels[i]];
    }
    total / n as f64
}

/// `ln(sum(exp(v)))`, shifted by the maximum so that large logits do not overflow.
fn logsumexp(v: &[f64]) -> f64 {
    let max = v.iter().cloned().fold(f64::MIN, f64::max);
    max + v.iter().map(|z| (z - max).exp()).sum::<f64>().ln()
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Runs the burn loss on the autodiff device: value, d loss / d f, d loss / d W.
fn burn_loss(
    cfg: LossConfig,
    f: &[f64],
    w: &[f64],
    labels: &[usize],
    d: usize,
) -> (f64, Vec<f64>, Vec<f64>) {
    let device = Device::flex().autodiff();
    let rows = w.len() / d;
    let mut head = ClassifierLoss::new(cfg, rows / cfg.centres_per_class(), d, &device);
    head.weight = Param::from_tensor(tensor2(w, [rows, d], &device));
    let (val, _, grads, ft) = run_head(&head, f, labels, d, &device);
    let gf = to_vec(ft.grad(&grads).unwrap());
    let gw = to_vec(head.weight.val().grad(&grads).unwrap());
    (val, gf, gw)
}

fn check(cfg: LossConfig, seed: u64) {
    let (n, d, c) = (4, 6, 5);
    let f = pseudo_random(n * d, seed);
    let w = pseudo_random(c * cfg.centres_per_class() * d, seed + 1);
    let labels = [0, 3, 4, 3];
    let zeros = vec![0.0; c];
    let (val, gf, gw) = burn_loss(cfg, &f, &w, &labels, d);
    let expected = reference(cfg, &f, &w, &zeros, &labels, d);
    assert!(
        (val - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "{cfg:?}: burn {val} vs reference {expected}"
    );
    let h = 1e-6;
    for (params, grad, is_f) in [(&f, &gf, true), (&w, &gw, false)] {
        for k in 0..params.len() {
            let mut p = params.clone();
            p[k] += h;
            let up = if is_f {
                reference(cfg, &p, &w, &zeros, &labels, d)
            } else {
                reference(cfg, &f, &p, &zeros, &labels, d)
            };
            p[k] -= 2.0 * h;
            let down = if is_f {
                reference(cfg, &p, &w, &zeros, &labels, d)
            } else {
                reference(cfg, &f, &p, &zeros, &labels, d)
            };
            let fd = (up - down) / (2.0 * h);
            assert!(
                (grad[k] - fd).abs() < 2e-3 * fd.abs().max(1.0),
                "{cfg:?} {} [{k}]: autodiff {} vs finite difference {fd}",
                if is_f { "dL/df" } else { "dL/dW" },
                grad[k]
            );
        }
    }
}

#[test]
fn l2_softmax_value_and_gradient() {
    check(LossConfig::L2Softmax { scale: 30.0 }, 1);
}

#[test]
fn arcface_value_and_gradient() {
    check(LossConfig::arcface(0.5, 64.0), 2);
    check(
        LossConfig::Margin {
            m1: 1.0,
            m2: 0.5,
            m3: 0.0,
            scale: 16.0,
            easy_margin: true,
        },
        3,
    );
}

#[test]
fn cosface_and_combined_value_and_gradient() {
    check(LossConfig::cosface(0.35, 64.0), 4);
    check(
        LossConfig::Margin {
            m1: 1.0,
            m2: 0.3,
            m3: 0.2,
            scale: 32.0,
            easy_margin: false,
        },
        5,
    );
    check(
        LossConfig::Margin {
            m1: 1.1,
            m2: 0.1,
            m3: 0.1,
            scale: 8.0,
            easy_margin: false,
        },
        6,
    );
}

#[test]
fn arcface_hand_computed_cases() {
    use std::f64::consts::PI;
    // Embedding at 60 degrees, target class at 0 degrees, other class at 90 degrees, m = 0.5, s = 64:
    // logits 64 cos(pi/3 + 0.5) and 64 cos(pi/6).
    let f = [0.5, 3f64.sqrt() / 2.0];
    let w = [1.0, 0.0, 0.0, 1.0];
    let (val, _, _) = burn_loss(LossConfig::arcface(0.5, 64.0), &f, &w, &[0], 2);
    let (t, o) = (64.0 * (PI / 3.0 + 0.5).cos(), 64.0 * (PI / 6.0).cos());
    let expected = (t.exp() + o.exp()).ln() - t;
    assert!((val - expected).abs() < 1e-3, "{val} vs {expected}");
    // Embedding at 170 degrees from its class: theta + m > pi, so the target logit is
    // s * (cos(170deg) - sin(pi - 0.5) * 0.5) (not cos(170deg + 0.5), which would rise again).
    let a = 170f64.to_radians();
    let f = [a.cos(), a.sin()];
    let (val, _, _) = burn_loss(LossConfig::arcface(0.5, 1.0), &f, &w, &[0], 2);
    let t = a.cos() - (PI - 0.5).sin() * 0.5;
    let o = (a - PI / 2.0).cos();
    let expected = (t.exp() + o.exp()).ln() - t;
    assert!((val - expected).abs() < 1e-5, "{val} vs {expected}");
}

#[test]
fn subcenter_arcface_value_and_gradient() {
    check(
        LossConfig::SubcenterArcface {
            subcenters: 3,
            margin: 0.5,
            scale: 16.0,
        },
        41,
    );
}

#[test]
fn proxy_nca_value_and_gradient() {
    check(LossConfig::ProxyNca { scale: 3.0 }, 43);
}

#[test]
fn proxy_anchor_value_and_gradient() {
    check(
        LossConfig::ProxyAnchor {
            alpha: 32.0,
            delta: 0.1,
        },
        47,
    );
    // Smaller alpha: the two terms' balance differs, the gradients must still agree.
    check(
        LossConfig::ProxyAnchor {
            alpha: 4.0,
            delta: 0.1,
        },
        53,
    );
}

#[test]
fn proxy_anchor_by_hand() {
    // Two samples, two proxies, in 2-d: f0 = p0 = (1, 0), f1 = p1 = (0, 1); labels 0 and 1. Each
    // proxy's positive has cos 1 and its negative cos 0:
    // pos = log(1 + e^{-a(1 - d)}), neg = log(1 + e^{a d}), loss = pos + neg.
    let (a, dl) = (4.0f64, 0.1f64);
    let expected = (1.0 + (-a * (1.0 - dl)).exp()).ln() + (1.0 + (a * dl).exp()).ln();
    let cfg = LossConfig::ProxyAnchor {
        alpha: a,
        delta: dl,
    };
    let f = [1.0, 0.0, 0.0, 1.0];
    let (val, _, _) = burn_loss(cfg, &f, &f, &[0, 1], 2);
    assert!((val - expected).abs() < 1e-5, "{val} vs {expected}");
    // (Both clamp cosines to 1 - 1e-7, which moves the value by about alpha x 1e-7.)
    assert!((reference(cfg, &f, &f, &[0.0; 2], &[0, 1], 2) - expected).abs() < 1e-6);
}

/// Partial FC's sampled path at rate 1 is the plain loss (value and gradients); at 0.2 only the
/// batch's identities and the sampled others get gradient, and the batch's always do.
#[test]
fn partial_fc_at_rate_one_is_the_plain_loss_and_samples_rows() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let (n, d, c) = (6, 8, 40);
    let f = pseudo_random(n * d, 61);
    let labels = [0usize, 7, 7, 13, 22, 39];
    let emb = || {
        Tensor::<2>::from_data(
            TensorData::new(f.iter().map(|&v| v as f32).collect(), [n, d]),
            &device,
        )
    };
    let lt = || {
        Tensor::<1, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| l as i64).collect(), [n]),
            &device,
        )
    };
    for cfg in [
        LossConfig::arcface(0.5, 16.0),
        LossConfig::L2Softmax { scale: 8.0 },
    ] {
        let head = ClassifierLoss::new(cfg, c, d, &device);
        let plain = head.forward(emb(), lt());
        let sampled = head.forward_sampled(emb(), lt(), 1.0);
        let value = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()[0]
        };
        let (gp, gs) = (
            plain.loss.clone().backward(),
            sampled.loss.clone().backward(),
        );
        let (vp, vs) = (value(plain.loss), value(sampled.loss));
        assert!(
            (vp - vs).abs() < 1e-6 * vp.abs().max(1.0),
            "{cfg:?}: {vp} vs {vs}"
        );
        let grad = |g: &burn::tensor::Gradients| {
            head.weight
                .val()
                .grad(g)
                .unwrap()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let diff = grad(&gp)
            .iter()
            .zip(grad(&gs))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "{cfg:?}: weight gradients differ by {diff}");

        // At 0.2: 8 of 40 rows take part, the batch's 5 identities among them.
        let part = head.forward_sampled(emb(), lt(), 0.2);
        assert_eq!(part.logits.dims(), [n, 8]);
        let g = part.loss.backward();
        let rows = grad(&g);
        let touched: Vec<usize> = (0..c)
            .filter(|r| rows[r * d..(r + 1) * d].iter().any(|v| *v != 0.0))
            .collect();
        assert_eq!(touched.len(), 8, "{cfg:?}: {touched:?}");
        for l in labels {
            assert!(
                touched.contains(&l),
                "{cfg:?}: positive {l} not sampled: {touched:?}"
            );
        }
        // The logits' labels point at the batch's identities among the sampled ones.
        let remapped: Vec<i64> = part
            .labels
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .unwrap();
        for (r, l) in remapped.iter().zip(labels) {
            assert_eq!(touched[*r as usize], l);
        }
    }
}

#[test]
fn softtriple_value_and_gradient() {
    check(
        LossConfig::SoftTriple {
            centres: 3,
            lambda: 20.0,
            gamma: 0.1,
            tau: 0.2,
            delta: 0.01,
        },
        59,
    );
}

/// Reference of center loss (Wen et al.): mean softmax cross-entropy of `f . W + b` plus
/// `lambda / 2` times the mean squared distance to the label's centre.
fn center_reference(
    lambda: f64,
    f: &[f64],
    w: &[f64],
    b: &[f64],
    centres: &[f64],
    labels: &[usize],
    d: usize,
) -> f64 {
    let n = labels.len();
    let c = w.len() / d;
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let fi = &f[i * d..][..d];
        let logits: Vec<f64> = (0..c)
            .map(|j| {
                fi.iter()
                    .zip(&w[j * d..][..d])
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    + b[j]
            })
            .collect();
        let lse = logsumexp(&logits);
        let pull: f64 = fi
            .iter()
            .zip(&centres[y * d..][..d])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        total += lse - logits[y] + lambda / 2.0 * pull;
    }
    total / n as f64
}

fn tensor2(v: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(v.iter().map(|&x| x as f32).collect(), shape),
        device,
    )
}

/// Runs `head` on the autodiff device for embeddings `f` (N x d) and `labels`: the loss value,
/// the logits, the gradients and the embeddings' tensor (whose gradient they hold).
fn run_head(
    head: &ClassifierLoss,
    f: &[f64],
    labels: &[usize],
    d: usize,
    device: &Device,
) -> (f64, Tensor<2>, burn::tensor::Gradients, Tensor<2>) {
    let n = labels.len();
    let ft = tensor2(f, [n, d], device).require_grad();
    let lt = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect(), [n]),
        device,
    );
    let out = head.forward(ft.clone(), lt);
    let grads = out.loss.backward();
    let val = out
        .loss
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap()[0];
    (val, out.logits, grads, ft)
}

fn to_vec(t: Tensor<2>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap()
}

#[test]
fn center_loss_value_gradient_and_centre_update() {
    let (n, d, c, lambda) = (4, 5, 3, 0.3);
    let f = pseudo_random(n * d, 11);
    let w = pseudo_random(c * d, 12);
    let centres = pseudo_random(c * d, 13);
    let labels = [0usize, 2, 2, 1];
    let zeros = vec![0.0; c];
    let device = Device::flex().autodiff();
    let cfg = LossConfig::Center { lambda, alpha: 0.5 };
    let mut head = ClassifierLoss::new(cfg, c, d, &device);
    head.weight = Param::from_tensor(tensor2(&w, [c, d], &device));
    head.centres =
        Some(Param::from_tensor(tensor2(&centres, [c, d], &device)).set_require_grad(false));
    let (val, _, grads, ft) = run_head(&head, &f, &labels, d, &device);
    let expected = center_reference(lambda, &f, &w, &zeros, &centres, &labels, d);
    assert!(
        (val - expected).abs() < 1e-5,
        "burn {val} vs reference {expected}"
    );
    let gf = to_vec(ft.grad(&grads).unwrap());
    let gw = to_vec(head.weight.val().grad(&grads).unwrap());
    assert!(
        head.centres.as_ref().unwrap().val().grad(&grads).is_none(),
        "centres move by the update rule, not by the gradient"
    );
    let h = 1e-6;
    for (is_f, grad) in [(true, &gf), (false, &gw)] {
        let params = if is_f { &f } else { &w };
        for k in 0..params.len() {
            let mut p = params.clone();
            let eval = |p: &Vec<f64>| {
                if is_f {
                    center_reference(lambda, p, &w, &zeros, &centres, &labels, d)
                } else {
                    center_reference(lambda, &f, p, &zeros, &centres, &labels, d)
                }
            };
            p[k] += h;
            let up = eval(&p);
            p[k] -= 2.0 * h;
            let fd = (up - eval(&p)) / (2.0 * h);
            assert!(
                (grad[k] - fd).abs() < 1e-3 * fd.abs().max(1.0),
                "[{k}] {} vs {fd}",
                grad[k]
            );
        }
    }

    // The update rule by hand: alpha 0.5, labels [0, 0, 2].
    let device = Device::flex();
    let mut head = ClassifierLoss::new(cfg, 3, 2, &device);
    head.centres = Some(Param::from_tensor(tensor2(
        &[0., 0., 1., 1., 2., 2.],
        [3, 2],
        &device,
    )));
    let emb = tensor2(&[1., 2., 3., 4., 5., 6.], [3, 2], &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 0, 2], [3]), &device);
    let moved = to_vec(head.update_centres(emb, labels).centres.unwrap().val());
    // c0: sum (c - f) = (-4, -6), / (1 + 2), times 0.5, subtracted: (2/3, 1). c1 has no image.
    // c2: (2 - 5, 2 - 6) / 2 * 0.5 subtracted: (2.75, 3).
    let expected = [2.0 / 3.0, 1.0, 1.0, 1.0, 2.75, 3.0];
    for (a, b) in moved.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{moved:?} vs {expected:?}");
    }
}

/// Reference of the bias-corrected triplet loss (semi-hard or batch-hard selection), by explicit
/// loops over every triplet.
fn triplet_reference(
    margin: f64,
    correction: f64,
    semi_hard: bool,
    f: &[f64],
    labels: &[usize],
    d: usize,
) -> f64 {
    let n = labels.len();
    let unit: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let v = &f[i * d..][..d];
            let l = norm(v);
            v.iter().map(|x| x / l).collect()
        })
        .collect();
    let dist = |i: usize, j: usize| -> f64 {
        unit[i]
            .iter()
            .zip(&unit[j])
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    };
    let feature = |a: usize, p: usize, q: usize| -> Vec<f64> {
        (0..d)
            .map(|k| (unit[a][k] - unit[p][k]).powi(2) - (unit[a][k] - unit[q][k]).powi(2))
            .collect()
    };
    let (mut hinge, mut valid) = (0.0, 0usize);
    let (mut selected, mut all, mut triplets) = (vec![0.0; d], vec![0.0; d], 0usize);
    for a in 0..n {
        let pos: Vec<usize> = (0..n)
            .filter(|&j| j != a && labels[j] == labels[a])
            .collect();
        let neg: Vec<usize> = (0..n).filter(|&j| labels[j] != labels[a]).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        let farthest = |set: &[usize]| {
            *set.iter()
                .max_by(|&&x, &&y| dist(a, x).total_cmp(&dist(a, y)))
                .unwrap()
        };
        let nearest = |set: &[usize]| {
            *set.iter()
                .min_by(|&&x, &&y| dist(a, x).total_cmp(&dist(a, y)))
                .unwrap()
        };
        let chosen: Vec<(usize, usize)> = if semi_hard {
            pos.iter()
                .map(|&p| {
                    let beyond: Vec<usize> = neg
                        .iter()
                        .copied()
                        .filter(|&q| dist(a, q) > dist(a, p))
                        .collect();
                    let q = if beyond.is_empty() {
                        farthest(&neg)
                    } else {
                        nearest(&beyond)
                    };
                    (p, q)
                })
                .collect()
        } else {
            vec![(farthest(&pos), nearest(&neg))]
        };
        for (p, q) in chosen {
            hinge += (margin + dist(a, p) - dist(a, q)).max(0.0);
            valid += 1;
            for (s, v) in selected.iter_mut().zip(feature(a, p, q)) {
                *s += v;
            }
        }
        for &p in &pos {
            for &q in &neg {
                for (s, v) in all.iter_mut().zip(feature(a, p, q)) {
                    *s += v;
                }
                triplets += 1;
            }
        }
    }
    let gap: f64 = selected
        .iter()
        .zip(&all)
        .map(|(s, a)| (s / valid as f64 - a / triplets as f64).powi(2))
        .sum();
    hinge / valid as f64 + correction * gap
}

#[test]
fn bias_corrected_triplet_value_gradient_and_nearest_neighbour_logits() {
    // Three identities of two images and one image alone (no positive: not an anchor).
    let (d, labels) = (5, [0usize, 0, 1, 1, 2, 2, 3]);
    let n = labels.len();
    let f = pseudo_random(n * d, 21);
    for (margin, correction, semi_hard) in [
        (0.5, 0.0, false),
        (0.5, 10.0, false),
        (4.0, 2.0, false),
        (0.5, 0.0, true),
        (0.3, 10.0, true),
        (4.0, 2.0, true),
    ] {
        let cfg = LossConfig::Triplet {
            margin,
            correction,
            semi_hard,
        };
        let device = Device::flex().autodiff();
        let head = ClassifierLoss::new(cfg, 4, d, &device);
        let (val, logits, grads, ft) = run_head(&head, &f, &labels, d, &device);
        let expected = triplet_reference(margin, correction, semi_hard, &f, &labels, d);
        assert!(
            (val - expected).abs() < 1e-5 * expected.abs().max(1.0),
            "{cfg:?}: burn {val} vs reference {expected}"
        );
        let gf = to_vec(ft.grad(&grads).unwrap());
        let h = 1e-6;
        for k in 0..f.len() {
            let mut p = f.clone();
            p[k] += h;
            let up = triplet_reference(margin, correction, semi_hard, &p, &labels, d);
            p[k] -= 2.0 * h;
            let fd =
                (up - triplet_reference(margin, correction, semi_hard, &p, &labels, d)) / (2.0 * h);
            assert!(
                (gf[k] - fd).abs() < 2e-3 * fd.abs().max(1.0),
                "{cfg:?} [{k}]: autodiff {} vs finite difference {fd}",
                gf[k]
            );
        }
        // The accuracy logits pick the class of each image's nearest other image.
        let logits = to_vec(logits);
        for i in 0..n {
            let fi = &f[i * d..][..d];
            let cos = |j: usize| {
                let fj = &f[j * d..][..d];
                fi.iter().zip(fj).map(|(a, b)| a * b).sum::<f64>() / (norm(fi) * norm(fj))
            };
            let nearest = (0..n)
                .filter(|&j| j != i)
                .max_by(|&a, &b| cos(a).total_cmp(&cos(b)))
                .unwrap();
            let row = &logits[i * 4..][..4];
            let best = (0..4).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(best, labels[nearest], "image {i}: {row:?}");
        }
    }
}

/// Distillation, written out in f64: the projection `p = s W` (W is student x teacher, burn's
/// `Linear` layout; the identity when absent), the teacher normalised, then `1 - cos(p, t)` or
/// `||p - t||^2`, averaged over the batch.
fn distill_reference(
    metric: ffem_train::distill::DistillMetric,
    s: &[f64],
    w: Option<&[f64]>,
    t: &[f64],
    n: usize,
) -> f64 {
    let (ds, dt) = (s.len() / n, t.len() / n);
    let mut total = 0.0;
    for i in 0..n {
        let si = &s[i * ds..][..ds];
        let p: Vec<f64> = match w {
            Some(w) => (0..dt)
                .map(|j| (0..ds).map(|k| si[k] * w[k * dt + j]).sum())
                .collect(),
            None => si.to_vec(),
        };
        let ti = &t[i * dt..][..dt];
        let unit_t: Vec<f64> = ti.iter().map(|x| x / norm(ti)).collect();
        total += match metric {
            ffem_train::distill::DistillMetric::Cosine => {
                1.0 - p.iter().zip(&unit_t).map(|(a, b)| a * b).sum::<f64>() / norm(&p)
            }
            ffem_train::distill::DistillMetric::L2 => {
                p.iter().zip(&unit_t).map(|(a, b)| (a - b).powi(2)).sum()
            }
        };
    }
    total / n as f64
}

#[test]
fn distillation_loss_and_gradients_match_the_formula_and_finite_differences() {
    use ffem_train::distill::{DistillMetric, Distiller};
    let n = 3;
    for metric in [DistillMetric::Cosine, DistillMetric::L2] {
        // A 5-d student onto a 4-d teacher (projection), and a 4-d student (none).
        for ds in [5usize, 4] {
            let dt = 4;
            let device = Device::flex().autodiff();
            let s = pseudo_random(n * ds, 21 + ds as u64);
            let t: Vec<f64> = pseudo_random(n * dt, 40).iter().map(|v| 3.0 * v).collect();
            let mut head = Distiller::new(ds, dt, metric, &device);
            assert_eq!(head.projection.is_some(), ds != dt);
            let w = (ds != dt).then(|| pseudo_random(ds * dt, 50));
            if let (Some(p), Some(w)) = (head.projection.as_mut(), &w) {
                p.weight = Param::from_tensor(tensor2(w, [ds, dt], &device));
            }
            let st = tensor2(&s, [n, ds], &device).require_grad();
            let out = head.forward(st.clone(), tensor2(&t, [n, dt], &device));
            let value = out.loss.clone().into_scalar::<f32>() as f64;
            let expected = distill_reference(metric, &s, w.as_deref(), &t, n);
            assert!(
                (value - expected).abs() < 1e-5 * expected.abs().max(1.0),
                "{metric:?} {ds}->{dt}: burn {value} vs formula {expected}"
            );
            let grads = out.loss.backward();
            let gs = to_vec(st.grad(&grads).unwrap());
            let gw = head
                .projection
                .as_ref()
                .map(|p| to_vec(p.weight.val().grad(&grads).unwrap()));
            let h = 1e-6;
            let fd = |params: &[f64], k: usize, of_w: bool| {
                let mut p = params.to_vec();
                let eval = |p: &[f64]| {
                    if of_w {
                        distill_reference(metric, &s, Some(p), &t, n)
                    } else {
                        distill_reference(metric, p, w.as_deref(), &t, n)
                    }
                };
                p[k] += h;
                let up = eval(&p);
                p[k] -= 2.0 * h;
                (up - eval(&p)) / (2.0 * h)
            };
            for (k, g) in gs.iter().enumerate() {
                let want = fd(&s, k, false);
                assert!(
                    (g - want).abs() < 1e-3 * want.abs().max(1.0),
                    "{metric:?} {ds}->{dt} d/ds[{k}]: autodiff {g} vs finite difference {want}"
                );
            }
            if let (Some(gw), Some(w)) = (gw, &w) {
                for (k, g) in gw.iter().enumerate() {
                    let want = fd(w, k, true);
                    assert!(
                        (g - want).abs() < 1e-3 * want.abs().max(1.0),
                        "{metric:?} d/dW[{k}]: autodiff {g} vs finite difference {want}"
                    );
                }
            }
            // The progress figure is the mean cosine.
            let cos = out.mean_cosine.into_scalar::<f32>() as f64;
            let want_cos = 1.0 - distill_reference(DistillMetric::Cosine, &s, w.as_deref(), &t, n);
            assert!((cos - want_cos).abs() < 1e-5, "{cos} vs {want_cos}");
        }
    }
}
