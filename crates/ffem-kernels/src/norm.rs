//! Batch normalisation fused with the activation that follows it, forward (training and
//! inference) and backward, on NCHW slices.
//!
//! Composed from generic tensor operations, a training-mode batch norm plus activation reads and
//! writes the activation tensor a dozen times (swap, reshape, mean, subtract, square, mean, scale,
//! shift, clamp, and as many again backward); here the forward is two reads and one write, the
//! backward two reads of `x` and `dy` and one write. The activation's input `z` is never stored:
//! the backward recomputes it from `x` and the batch statistics.
//!
//! Over 600 lines because the forward (training and inference) and backward passes share the
//! per-channel statistics layout and SIMD loops; splitting them would scatter one kernel.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::{as_uninit, written_vec};
use crate::simd::{dispatch, madd};

/// The activation applied after the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None: `y = z`.
    Identity,
    /// `max(z, 0)`.
    Relu,
    /// `min(max(z, 0), 6)`.
    Relu6,
    /// `z * relu6(z + 3) / 6`.
    HardSwish,
}

impl Activation {
    #[inline(always)]
    fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::Relu6 => z.clamp(0.0, 6.0),
            Activation::HardSwish => z * (z + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
        }
    }
}

/// The activation as a const parameter, so that each backward loop is compiled branch-free for
/// one activation (a `match` inside the loop keeps it from vectorising).
const IDENTITY: u8 = 0;
const RELU: u8 = 1;
const RELU6: u8 = 2;
const HARD_SWISH: u8 = 3;

/// The activation's derivative at `z`, written with non-short-circuit comparisons so that it
/// compiles to vector selects; at the kinks, the one-sided value PyTorch uses.
#[inline(always)]
fn derivative<const A: u8>(z: f32) -> f32 {
    match A {
        IDENTITY => 1.0,
        RELU => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        RELU6 => {
            if (z > 0.0) & (z < 6.0) {
                1.0
            } else {
                0.0
            }
        }
        _ => {
            let inner = if z > 3.0 { 1.0 } else { z * (1.0 / 3.0) + 0.5 };
            if z < -3.0 { 0.0 } else { inner }
        }
    }
}

/// Calls `$f::<FMA, A>(args)` with `A` the const code of `$act`.
macro_rules! by_activation {
    ($act:expr, $f:ident::<$fma:ident>($($arg:expr),*)) => {
        match $act {
            Activation::Identity => $f::<$fma, IDENTITY>($($arg),*),
            Activation::Relu => $f::<$fma, RELU>($($arg),*),
            Activation::Relu6 => $f::<$fma, RELU6>($($arg),*),
            Activation::HardSwish => $f::<$fma, HARD_SWISH>($($arg),*),
        }
    };
}

/// The layout of an NCHW activation: `batch` images of `channels` planes of `spatial` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    /// Images.
    pub batch: usize,
    /// Channels (one mean, variance, scale and shift each).
    pub channels: usize,
    /// Values per plane (height x width).
    pub spatial: usize,
}

impl NormShape {
    fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    fn check(&self, x: usize, per_channel: &[usize]) {
        assert_eq!(
            x,
            self.len(),
            "batch norm: tensor size does not match {self:?}"
        );
        for &n in per_channel {
            assert_eq!(
                n, self.channels,
                "batch norm: per-channel vector size does not match {self:?}"
            );
        }
    }
}

/// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`, per channel.
fn affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&inv_std)
        .map(|(&g, &s)| (g as f64 * s) as f32)
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| (b as f64 - m as f64 * s as f64) as f32)
        .collect();
    (scale, shift)
}

/// `y[i] = f(x[i])`, written into possibly uninitialised storage; monomorphised per `f` so that
/// each loop is branch-free and vectorises.
#[inline(always)]
fn store_map(x: &[f32], y: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32) {
    y.iter_mut().zip(x).for_each(|(o, &v)| {
        o.write(f(v));
    });
}

#[inline(always)]
fn scale_shift_act<const FMA: bool>(
    x: &[f32],
    scale: f32,
    shift: f32,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    match act {
        Activation::Identity => store_map(x, y, |v| madd::<FMA>(v, scale, shift)),
        Activation::Relu => store_map(x, y, |v| madd::<FMA>(v, scale, shift).max(0.0)),
        Activation::Relu6 => store_map(x, y, |v| madd::<FMA>(v, scale, shift).clamp(0.0, 6.0)),
        Activation::HardSwish => store_map(x, y, |v| {
            Activation::HardSwish.apply(madd::<FMA>(v, scale, shift))
        }),
    }
}

dispatch!(fn scale_shift_act_any(x: &[f32], scale: f32, shift: f32, act: Activation, y: &mut [MaybeUninit<f32>]) => scale_shift_act);

#[inline(always)]
fn scale_shift_act_in_place<const FMA: bool>(
    y: &mut [f32],
    scale: f32,
    shift: f32,
    act: Activation,
) {
    match act {
        Activation::Identity => y
            .iter_mut()
            .for_each(|v| *v = madd::<FMA>(*v, scale, shift)),
        Activation::Relu => y
            .iter_mut()
            .for_each(|v| *v = madd::<FMA>(*v, scale, shift).max(0.0)),
        Activation::Relu6 => y
            .iter_mut()
            .for_each(|v| *v = madd::<FMA>(*v, scale, shift).clamp(0.0, 6.0)),
        Activation::HardSwish => y
            .iter_mut()
            .for_each(|v| *v = Activation::HardSwish.apply(madd::<FMA>(*v, scale, shift))),
    }
}

dispatch!(fn scale_shift_act_in_place_any(y: &mut [f32], scale: f32, shift: f32, act: Activation) => scale_shift_act_in_place);

/// A per-channel affine map and activation applied to a convolution's output while it is still
/// in cache: batch norm with stored statistics folded into `scale` and `shift`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Per output channel multiplier.
    pub scale: &'a [f32],
    /// Per output channel offset.
    pub shift: &'a [f32],
    /// Applied after the affine map.
    pub act: Activation,
}

impl Epilogue<'_> {
    /// The epilogue equal to inference-mode batch norm with these parameters and statistics.
    pub fn batch_norm(
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f64,
    ) -> (Vec<f32>, Vec<f32>) {
        affine(gamma, beta, mean, var, eps)
    }

    /// Applies the epilogue in place to `planes` consecutive planes of `spatial` values, the first
    /// of which belongs to channel `first_channel` (channels wrap every `scale.len()` planes).
    pub(crate) fn apply(&self, data: &mut [f32], spatial: usize, first_channel: usize) {
        let channels = self.scale.len();
        for (i, plane) in data.chunks_exact_mut(spatial).enumerate() {
            let c = (first_channel + i) % channels;
            scale_shift_act_in_place_any(plane, self.scale[c], self.shift[c], self.act);
        }
    }
}

/// `y = act(x * scale[c] + shift[c])` over every plane, in parallel; writes every element of `y`.
fn apply_affine(
    s: NormShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    y.par_chunks_mut(s.spatial)
        .zip(x.par_chunks(s.spatial))
        .enumerate()
        .for_each(|(i, (yp, xp))| {
            let c = i % s.channels;
            scale_shift_act_any(xp, scale[c], shift[c], act, yp);
        });
}

/// Values summed in f32 lanes before the lanes are added into f64: small enough that f32
/// rounding stays far below the statistics' own noise, large enough that the f64 step is rare.
const FLUSH: usize = 4096;

/// Sum and sum of squared deviations from `centre` of one channel (its plane in every image), in
/// eight f32 lanes flushed into f64 every [`FLUSH`] values. One call per channel rather than per
/// plane: the 4x4 and 7x7 maps of the last blocks have too few values per plane to pay for a call.
#[inline(always)]
fn channel_moments<const FMA: bool>(
    x: &[f32],
    s: NormShape,
    c: usize,
    centre: f32,
    out: &mut (f64, f64),
) {
    let (mut total, mut total_sq) = (0.0f64, 0.0f64);
    let mut sum = [0.0f32; 8];
    let mut sq = [0.0f32; 8];
    let mut pending = 0usize;
    for n in 0..s.batch {
        let plane = &x[(n * s.channels + c) * s.spatial..][..s.spatial];
        let chunks = plane.chunks_exact(8);
        for &v in chunks.remainder() {
            let d = v - centre;
            sum[0] += d;
            sq[0] = madd::<FMA>(d, d, sq[0]);
        }
        for ch in chunks {
            for i in 0..8 {
                let d = ch[i] - centre;
                sum[i] += d;
                sq[i] = madd::<FMA>(d, d, sq[i]);
            }
        }
        pending += s.spatial;
        if pending >= FLUSH || n + 1 == s.batch {
            total += sum.iter().map(|&v| v as f64).sum::<f64>();
            total_sq += sq.iter().map(|&v| v as f64).sum::<f64>();
            sum = [0.0; 8];
            sq = [0.0; 8];
            pending = 0;
        }
    }
    *out = (total, total_sq);
}

dispatch!(fn channel_moments_any(x: &[f32], s: NormShape, c: usize, centre: f32, out: &mut (f64, f64)) => channel_moments);

/// Training-mode forward: normalises with the batch's own mean and (biased) variance, which are
/// written to `mean` and `var`, then applies `act`. Overwrites `y`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_train(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Activation,
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) {
    s.check(y.len(), &[]);
    // SAFETY: `train_into` writes a normalised f32 into every element of `y`.
    train_into(
        s,
        x,
        gamma,
        beta,
        eps,
        act,
        unsafe { as_uninit(y) },
        mean,
        var,
    );
}

/// [`batch_norm_act_train`] into new vectors `(y, mean, var)`: `y` is written once, without the
/// zero fill an output buffer would need first.
pub fn batch_norm_act_train_to_vec(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut mean, mut var) = (vec![0.0; s.channels], vec![0.0; s.channels]);
    // SAFETY: `train_into` writes every element of `y` (it panics on a size mismatch).
    let y = unsafe {
        written_vec(s.len(), |y| {
            train_into(s, x, gamma, beta, eps, act, y, &mut mean, &mut var);
        })
    };
    (y, mean, var)
}

#[allow(clippy::too_many_arguments)]
fn train_into(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
    mean: &mut [f32],
    var: &mut [f32],
) {
    s.check(x.len(), &[gamma.len(), beta.len(), mean.len(), var.len()]);
    s.check(y.len(), &[]);
    let count = (s.batch * s.spatial) as f64;
    // Moments about the first value of the channel (shifted data): exact sums without the
    // cancellation of sum(x^2) - n mean^2 when the mean is large against the spread.
    mean.par_iter_mut()
        .zip(var.par_iter_mut())
        .enumerate()
        .for_each(|(c, (m, v))| {
            let centre = x[c * s.spatial];
            let mut moments = (0.0, 0.0);
            channel_moments_any(x, s, c, centre, &mut moments);
            let (sum, sq) = moments;
            let shifted_mean = sum / count;
            *m = (centre as f64 + shifted_mean) as f32;
            *v = (sq / count - shifted_mean * shifted_mean).max(0.0) as f32;
        });
    let (scale, shift) = affine(gamma, beta, mean, var, eps);
    apply_affine(s, x, &scale, &shift, act, y);
}

/// Inference-mode forward with stored statistics: `y = act(gamma (x - mean) / sqrt(var + eps) +
/// beta)`. Overwrites `y`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_infer(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
    y: &mut [f32],
) {
    s.check(y.len(), &[]);
    // SAFETY: `infer_into` writes a normalised f32 into every element of `y`.
    infer_into(s, x, gamma, beta, mean, var, eps, act, unsafe {
        as_uninit(y)
    });
}

/// [`batch_norm_act_infer`] into a new vector, written once.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_infer_to_vec(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
) -> Vec<f32> {
    // SAFETY: `infer_into` writes every element of `y` (it panics on a size mismatch).
    unsafe {
        written_vec(s.len(), |y| {
            infer_into(s, x, gamma, beta, mean, var, eps, act, y);
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn infer_into(
    s: NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    s.check(x.len(), &[gamma.len(), beta.len(), mean.len(), var.len()]);
    s.check(y.len(), &[]);
    let (scale, shift) = affine(gamma, beta, mean, var, eps);
    apply_affine(s, x, &scale, &shift, act, y);
}

/// Per channel (every image's plane): `sum(dz)` and `sum(dz * xhat)` where `dz = dy * act'(z)`,
/// `z = x * scale + shift`, `xhat = (x - mean) * inv_std`; f32 lanes flushed into f64 as in
/// [`channel_moments`].
#[inline(always)]
fn channel_grad_sums_act<const FMA: bool, const A: u8>(
    x: &[f32],
    dy: &[f32],
    s: NormShape,
    c: usize,
    p: [f32; 4],
    out: &mut (f64, f64),
) {
    let [scale, shift, mean, inv_std] = p;
    let (mut total_d, mut total_dx) = (0.0f64, 0.0f64);
    let mut sd = [0.0f32; 8];
    let mut sdx = [0.0f32; 8];
    let mut pending = 0usize;
    for n in 0..s.batch {
        let off = (n * s.channels + c) * s.spatial;
        let (xp, gp) = (&x[off..][..s.spatial], &dy[off..][..s.spatial]);
        let (xc, gc) = (xp.chunks_exact(8), gp.chunks_exact(8));
        for (&xv, &g) in xc.remainder().iter().zip(gc.remainder()) {
            let dz = g * derivative::<A>(madd::<FMA>(xv, scale, shift));
            sd[0] += dz;
            sdx[0] = madd::<FMA>(dz, (xv - mean) * inv_std, sdx[0]);
        }
        for (xs, gs) in xc.zip(gc) {
            for i in 0..8 {
                let dz = gs[i] * derivative::<A>(madd::<FMA>(xs[i], scale, shift));
                sd[i] += dz;
                sdx[i] = madd::<FMA>(dz, (xs[i] - mean) * inv_std, sdx[i]);
            }
        }
        pending += s.spatial;
        if pending >= FLUSH || n + 1 == s.batch {
            total_d += sd.iter().map(|&v| v as f64).sum::<f64>();
            total_dx += sdx.iter().map(|&v| v as f64).sum::<f64>();
            sd = [0.0; 8];
            sdx = [0.0; 8];
            pending = 0;
        }
    }
    *out = (total_d, total_dx);
}

#[inline(always)]
fn channel_grad_sums<const FMA: bool>(
    x: &[f32],
    dy: &[f32],
    s: NormShape,
    c: usize,
    p: [f32; 4],
    act: Activation,
    out: &mut (f64, f64),
) {
    by_activation!(act, channel_grad_sums_act::<FMA>(x, dy, s, c, p, out))
}

dispatch!(fn channel_grad_sums_any(x: &[f32], dy: &[f32], s: NormShape, c: usize, p: [f32; 4], act: Activation, out: &mut (f64, f64)) => channel_grad_sums);

/// `dx = k * (dz - a - xhat * b)` with `k = gamma * inv_std`, `a = mean(dz)`, `b = mean(dz xhat)`.
#[inline(always)]
fn plane_input_grad_act<const FMA: bool, const A: u8>(
    x: &[f32],
    dy: &[f32],
    p: [f32; 7],
    dx: &mut [MaybeUninit<f32>],
) {
    let [scale, shift, mean, inv_std, k, a, b] = p;
    for ((o, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
        let dz = g * derivative::<A>(madd::<FMA>(xv, scale, shift));
        let xhat = (xv - mean) * inv_std;
        o.write(k * (dz - a - xhat * b));
    }
}

#[inline(always)]
fn plane_input_grad<const FMA: bool>(
    x: &[f32],
    dy: &[f32],
    p: [f32; 7],
    act: Activation,
    dx: &mut [MaybeUninit<f32>],
) {
    by_activation!(act, plane_input_grad_act::<FMA>(x, dy, p, dx))
}

dispatch!(fn plane_input_grad_any(x: &[f32], dy: &[f32], p: [f32; 7], act: Activation, dx: &mut [MaybeUninit<f32>]) => plane_input_grad);

/// Training-mode backward: from the output gradient `dy`, the gradients with respect to `x`,
/// `gamma` and `beta`, given the statistics [`batch_norm_act_train`] returned. Overwrites the
/// three outputs.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_train_backward(
    s: NormShape,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    s.check(dx.len(), &[]);
    backward_into(
        s,
        x,
        dy,
        gamma,
        beta,
        mean,
        var,
        eps,
        act,
        // SAFETY: the backward pass writes a gradient f32 into every element of `dx`.
        unsafe { as_uninit(dx) },
        dgamma,
        dbeta,
    );
}

/// [`batch_norm_act_train_backward`] into new vectors `(dx, dgamma, dbeta)`: `dx` is written once.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_train_backward_to_vec(
    s: NormShape,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut dgamma, mut dbeta) = (vec![0.0; s.channels], vec![0.0; s.channels]);
    // SAFETY: `backward_into` writes every element of `dx` (it panics on a size mismatch).
    let dx = unsafe {
        written_vec(s.len(), |dx| {
            backward_into(
                s,
                x,
                dy,
                gamma,
                beta,
                mean,
                var,
                eps,
                act,
                dx,
                &mut dgamma,
                &mut dbeta,
            );
        })
    };
    (dx, dgamma, dbeta)
}

#[allow(clippy::too_many_arguments)]
fn backward_into(
    s: NormShape,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
    dx: &mut [MaybeUninit<f32>],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    s.check(
        x.len(),
        &[
            gamma.len(),
            beta.len(),
            mean.len(),
            var.len(),
            dgamma.len(),
            dbeta.len(),
        ],
    );
    s.check(dy.len(), &[]);
    s.check(dx.len(), &[]);
    let (scale, shift) = affine(gamma, beta, mean, var, eps);
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    dbeta
        .par_iter_mut()
        .zip(dgamma.par_iter_mut())
        .enumerate()
        .for_each(|(c, (db, dg))| {
            let mut sums = (0.0, 0.0);
            channel_grad_sums_any(
                x,
                dy,
                s,
                c,
                [scale[c], shift[c], mean[c], inv_std[c]],
                act,
                &mut sums,
            );
            *db = sums.0 as f32;
            *dg = sums.1 as f32;
        });
    let count = (s.batch * s.spatial) as f32;
    dx.par_chunks_mut(s.spatial)
        .enumerate()
        .for_each(|(i, out)| {
            let c = i % s.channels;
            let off = i * s.spatial;
            let p = [
                scale[c],
                shift[c],
                mean[c],
                inv_std[c],
                gamma[c] * inv_std[c],
                dbeta[c] / count,
                dgamma[c] / count,
            ];
            plane_input_grad_any(&x[off..][..s.spatial], &dy[off..][..s.spatial], p, act, out);
        });
}
