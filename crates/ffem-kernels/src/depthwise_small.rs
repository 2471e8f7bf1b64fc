//! Depthwise convolution on small maps (the 7x7 and 4x4 maps of the last blocks) with the
//! channels innermost.
//!
//! There a plane has a few dozen pixels and hundreds of channels, so the per-plane work of the
//! stencil path (a padded copy and one loop per tap over a few values) costs more than the
//! arithmetic. Here each image is transposed to `(pixel, channel)` once, and every (output pixel,
//! tap) pair is one vectorised multiply-add over all channels, with the tap's weights for every
//! channel side by side.

use rayon::prelude::*;

use crate::geometry::ConvGeometry;
use crate::norm::Epilogue;
use crate::simd::{dispatch, madd};

/// Maps of at most this many input pixels take this path forward and for the input gradient
/// (measured with `examples/kernel_bench.rs`: faster at 7x7, slower at 14x14).
pub(crate) const MAX_PIXELS: usize = 100;
/// The weight gradient, a reduction over the batch, gains up to larger maps (faster at 14x14,
/// slower at 28x28).
pub(crate) const MAX_PIXELS_WEIGHT_GRAD: usize = 256;

/// `(channel, pixel)` -> `(pixel, channel)`.
fn to_channels_last(src: &[f32], channels: usize, pixels: usize, dst: &mut Vec<f32>) {
    dst.clear();
    dst.resize(channels * pixels, 0.0);
    for (c, plane) in src.chunks_exact(pixels).enumerate() {
        for (p, &v) in plane.iter().enumerate() {
            dst[p * channels + c] = v;
        }
    }
}

/// `(pixel, channel)` -> `(channel, pixel)`.
fn to_channels_first(src: &[f32], channels: usize, pixels: usize, dst: &mut [f32]) {
    for (c, plane) in dst.chunks_exact_mut(pixels).enumerate() {
        for (p, v) in plane.iter_mut().enumerate() {
            *v = src[p * channels + c];
        }
    }
}

/// Every (output pixel, tap, input pixel) triple whose input lies inside the map.
fn taps(g: &ConvGeometry) -> Vec<(usize, usize, usize)> {
    let (ho, wo) = (g.out_h(), g.out_w());
    let mut out = Vec::new();
    for oy in 0..ho {
        for ox in 0..wo {
            for ky in 0..g.kernel[0] {
                for kx in 0..g.kernel[1] {
                    let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                    let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                        out.push((
                            oy * wo + ox,
                            ky * g.kernel[1] + kx,
                            iy as usize * g.in_w + ix as usize,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The weights as `(tap, channel)`.
fn weights_by_tap(weight: &[f32], channels: usize, kk: usize) -> Vec<f32> {
    let mut wt = vec![0.0f32; kk * channels];
    for c in 0..channels {
        for t in 0..kk {
            wt[t * channels + c] = weight[c * kk + t];
        }
    }
    wt
}

/// `acc[c] += a[c] * b[c]` over the channels.
#[inline(always)]
fn mul_add<const FMA: bool>(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *o = madd::<FMA>(x, y, *o);
    }
}

dispatch!(fn mul_add_any(acc: &mut [f32], a: &[f32], b: &[f32]) => mul_add);

#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// Input pixels, output pixels and taps of one plane.
fn sizes(g: &ConvGeometry) -> (usize, usize, usize) {
    (
        g.in_h * g.in_w,
        g.out_h() * g.out_w(),
        g.kernel[0] * g.kernel[1],
    )
}

/// Per image: `dst[d] += w[t] * src[s]` over all channels at once for every link `(d, t, s)`,
/// `src` having `src_pixels` and `dst` `dst_pixels` per channel. The forward pass links output
/// pixels to the input pixels they read; the input gradient is the same with the ends swapped.
#[allow(clippy::too_many_arguments)]
fn propagate(
    channels: usize,
    src: &[f32],
    src_pixels: usize,
    wt: &[f32],
    links: &[(usize, usize, usize)],
    dst: &mut [f32],
    dst_pixels: usize,
    epilogue: Option<&Epilogue>,
) {
    let c = channels;
    dst.par_chunks_mut(c * dst_pixels)
        .enumerate()
        .for_each_init(Scratch::default, |s, (n, out)| {
            to_channels_last(
                &src[n * c * src_pixels..(n + 1) * c * src_pixels],
                c,
                src_pixels,
                &mut s.a,
            );
            s.b.clear();
            s.b.resize(dst_pixels * c, 0.0);
            for &(d, t, i) in links {
                mul_add_any(
                    &mut s.b[d * c..(d + 1) * c],
                    &wt[t * c..(t + 1) * c],
                    &s.a[i * c..(i + 1) * c],
                );
            }
            to_channels_first(&s.b, c, dst_pixels, out);
            if let Some(e) = epilogue {
                e.apply(out, dst_pixels, 0);
            }
        });
}

pub(crate) fn forward_with(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    output: &mut [f32],
    epilogue: Option<&Epilogue>,
) {
    let (ip, op, kk) = sizes(g);
    let wt = weights_by_tap(weight, g.in_channels, kk);
    propagate(
        g.in_channels,
        input,
        ip,
        &wt,
        &taps(g),
        output,
        op,
        epilogue,
    );
}

pub(crate) fn backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [f32],
) {
    let (ip, op, kk) = sizes(g);
    let wt = weights_by_tap(weight, g.in_channels, kk);
    let links: Vec<_> = taps(g).into_iter().map(|(o, t, i)| (i, t, o)).collect();
    propagate(
        g.in_channels,
        output_grad,
        op,
        &wt,
        &links,
        input_grad,
        ip,
        None,
    );
}

pub(crate) fn backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    output_grad: &[f32],
    weight_grad: &mut [f32],
) {
    let c = g.in_channels;
    let (ip, op, kk) = sizes(g);
    let taps = taps(g);
    let mut by_tap = vec![0.0f32; kk * c];
    crate::dense::sum_over_batch(g.batch, &mut by_tap, |images, acc, _| {
        let mut s = Scratch::default();
        for n in images {
            to_channels_last(&input[n * c * ip..(n + 1) * c * ip], c, ip, &mut s.a);
            to_channels_last(&output_grad[n * c * op..(n + 1) * c * op], c, op, &mut s.b);
            for &(o, t, i) in &taps {
                mul_add_any(
                    &mut acc[t * c..(t + 1) * c],
                    &s.b[o * c..(o + 1) * c],
                    &s.a[i * c..(i + 1) * c],
                );
            }
        }
    });
    for ch in 0..c {
        for t in 0..kk {
            weight_grad[ch * kk + t] = by_tap[t * c + ch];
        }
    }
}
