//! One Adam (or AdamW) step over a parameter, its gradient and its two moments, in place and in
//! one pass.
//!
//! Why: composed from tensor operations, an Adam step is about sixteen element-wise passes (decay,
//! two moment updates, bias corrections, root, epsilon, division, learning rate, subtraction),
//! each reading and writing the whole parameter on one thread. The seed's step-1 model has 10
//! million parameters, most in its dense head, and those passes were a fifteenth of a CPU
//! training step. Here: one read of the gradient, one read and write of the parameter and of each
//! moment, split over the threads.

use rayon::prelude::*;

/// Elements per parallel chunk (and the size below which the step stays on the calling thread).
const CHUNK: usize = 1 << 15;

/// The constants of one step. The update, per element, with `g` the gradient:
///
/// ```text
/// g  = g + l2_decay * w                   (Adam's L2 decay, PyTorch `Adam(weight_decay)`)
/// m  = beta_1 * m + (1 - beta_1) * g
/// v  = beta_2 * v + (1 - beta_2) * g^2
/// w  = w * (1 - lr * decoupled_decay)     (AdamW's decay, on the weight before this step)
///      - lr * (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
/// ```
///
/// Moments that start at zero give the first step's `m = (1 - beta_1) g`, as PyTorch and burn do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the bias-corrected second moment.
    pub epsilon: f32,
    /// L2 penalty added to the gradient (Adam); 0 for none.
    pub l2_decay: f32,
    /// Decoupled weight decay (AdamW); 0 for none.
    pub decoupled_decay: f32,
    /// The step's number, from 1 (the bias corrections' exponent).
    pub time: i32,
}

/// Applies one step to `w`, `m` and `v` in place, given the gradient `g`.
///
/// # Panics
/// If the four slices differ in length or `time` is below 1.
pub fn adam_step(step: &AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(
        g.len() == w.len() && m.len() == w.len() && v.len() == w.len(),
        "adam_step: parameter {}, gradient {}, moments {} and {} elements",
        w.len(),
        g.len(),
        m.len(),
        v.len()
    );
    assert!(step.time >= 1, "adam_step: step number {} < 1", step.time);
    let c = Constants::new(step);
    if w.len() <= CHUNK {
        update(&c, w, g, m, v);
        return;
    }
    w.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((w, g), m), v)| update(&c, w, g, m, v));
}

/// The per-step scalars, folded once so that the loop is multiplies and one root and division.
struct Constants {
    beta_1: f32,
    beta_2: f32,
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    l2_decay: f32,
    /// `1 - lr * decoupled_decay`.
    keep: f32,
    /// `lr / (1 - beta_1^t)`.
    step_size: f32,
    /// `1 / sqrt(1 - beta_2^t)`.
    inv_root_correction_2: f32,
    epsilon: f32,
}

impl Constants {
    fn new(s: &AdamStep) -> Self {
        let correction_1 = 1.0 - (s.beta_1 as f64).powi(s.time);
        let correction_2 = 1.0 - (s.beta_2 as f64).powi(s.time);
        Constants {
            beta_1: s.beta_1,
            beta_2: s.beta_2,
            one_minus_beta_1: 1.0 - s.beta_1,
            one_minus_beta_2: 1.0 - s.beta_2,
            l2_decay: s.l2_decay,
            keep: (1.0 - s.lr * s.decoupled_decay as f64) as f32,
            step_size: (s.lr / correction_1) as f32,
            inv_root_correction_2: (1.0 / correction_2.sqrt()) as f32,
            epsilon: s.epsilon,
        }
    }
}

/// The loop over one chunk; plain slices of equal length, which the compiler vectorises.
fn update(c: &Constants, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g + c.l2_decay * *w;
        *m = c.beta_1 * *m + c.one_minus_beta_1 * g;
        *v = c.beta_2 * *v + c.one_minus_beta_2 * g * g;
        let denominator = v.sqrt() * c.inv_root_correction_2 + c.epsilon;
        *w = *w * c.keep - c.step_size * *m / denominator;
    }
}
