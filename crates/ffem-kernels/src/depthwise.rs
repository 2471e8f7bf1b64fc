//! Depthwise convolution (one `Kh x Kw` filter per channel) as row stencils.
//!
//! Every loop runs along an output row, so the work is a sequence of `y[a..b] += w * x[c..d]`
//! (forward, input gradient) or dot products (weight gradient) over contiguous rows at stride 1;
//! the padding is handled by clipping each row's range instead of testing every pixel.

use rayon::prelude::*;

use crate::ConvGeometry;
use crate::dense::valid_range;
use crate::simd::{dispatch, dot, madd};

/// Per-plane sizes: input side, output side, kernel, stride, padding.
#[derive(Clone, Copy)]
struct Plane {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
}

impl Plane {
    fn of(g: &ConvGeometry) -> Self {
        Plane {
            h: g.in_h,
            w: g.in_w,
            ho: g.out_h(),
            wo: g.out_w(),
            kh: g.kernel[0],
            kw: g.kernel[1],
            sh: g.stride[0],
            sw: g.stride[1],
            ph: g.padding[0],
            pw: g.padding[1],
        }
    }

    /// The input row read by output row `oy` through kernel row `ky`, if inside the image.
    #[inline(always)]
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = oy * self.sh + ky;
        (iy >= self.ph && iy - self.ph < self.h).then(|| iy - self.ph)
    }
}

#[inline(always)]
fn forward_plane<const FMA: bool>(p: Plane, x: &[f32], k: &[f32], y: &mut [f32]) {
    y.fill(0.0);
    for oy in 0..p.ho {
        let yrow = &mut y[oy * p.wo..(oy + 1) * p.wo];
        for ky in 0..p.kh {
            let Some(iy) = p.input_row(oy, ky) else { continue };
            let xrow = &x[iy * p.w..(iy + 1) * p.w];
            for kx in 0..p.kw {
                let wv = k[ky * p.kw + kx];
                let r = valid_range(p.wo, p.w, kx, p.sw, p.pw);
                if r.is_empty() {
                    continue;
                }
                let first = r.start * p.sw + kx - p.pw;
                if p.sw == 1 {
                    for (o, i) in yrow[r.clone()].iter_mut().zip(&xrow[first..]) {
                        *o = madd::<FMA>(wv, *i, *o);
                    }
                } else {
                    for (o, i) in yrow[r.clone()].iter_mut().zip(xrow[first..].iter().step_by(p.sw)) {
                        *o = madd::<FMA>(wv, *i, *o);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn backward_input_plane<const FMA: bool>(p: Plane, k: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for oy in 0..p.ho {
        let dyrow = &dy[oy * p.wo..(oy + 1) * p.wo];
        for ky in 0..p.kh {
            let Some(iy) = p.input_row(oy, ky) else { continue };
            let dxrow = &mut dx[iy * p.w..(iy + 1) * p.w];
            for kx in 0..p.kw {
                let wv = k[ky * p.kw + kx];
                let r = valid_range(p.wo, p.w, kx, p.sw, p.pw);
                if r.is_empty() {
                    continue;
                }
                let first = r.start * p.sw + kx - p.pw;
                if p.sw == 1 {
                    for (o, g) in dxrow[first..].iter_mut().zip(&dyrow[r.clone()]) {
                        *o = madd::<FMA>(wv, *g, *o);
                    }
                } else {
                    for (o, g) in dxrow[first..].iter_mut().step_by(p.sw).zip(&dyrow[r.clone()]) {
                        *o = madd::<FMA>(wv, *g, *o);
                    }
                }
            }
        }
    }
}

/// Adds one image's contribution to one channel's filter gradient (`acc`, `Kh*Kw`).
#[inline(always)]
fn backward_weight_plane<const FMA: bool>(p: Plane, x: &[f32], dy: &[f32], acc: &mut [f32], strided: &mut Vec<f32>) {
    for oy in 0..p.ho {
        let dyrow = &dy[oy * p.wo..(oy + 1) * p.wo];
        for ky in 0..p.kh {
            let Some(iy) = p.input_row(oy, ky) else { continue };
            let xrow = &x[iy * p.w..(iy + 1) * p.w];
            for kx in 0..p.kw {
                let r = valid_range(p.wo, p.w, kx, p.sw, p.pw);
                if r.is_empty() {
                    continue;
                }
                let first = r.start * p.sw + kx - p.pw;
                let s = if p.sw == 1 {
                    dot::<FMA>(&dyrow[r.clone()], &xrow[first..])
                } else {
                    // Gather the strided inputs once so the dot product runs on contiguous lanes.
                    strided.clear();
                    strided.extend(xrow[first..].iter().step_by(p.sw).take(r.len()));
                    dot::<FMA>(&dyrow[r.clone()], strided)
                };
                acc[ky * p.kw + kx] += s;
            }
        }
    }
}

dispatch!(fn forward_plane_any(p: Plane, x: &[f32], k: &[f32], y: &mut [f32]) => forward_plane);
dispatch!(fn backward_input_plane_any(p: Plane, k: &[f32], dy: &[f32], dx: &mut [f32]) => backward_input_plane);
dispatch!(fn backward_weight_plane_any(p: Plane, x: &[f32], dy: &[f32], acc: &mut [f32], strided: &mut Vec<f32>) => backward_weight_plane);

pub(crate) fn forward(g: &ConvGeometry, input: &[f32], weight: &[f32], output: &mut [f32]) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    output.par_chunks_mut(osz).enumerate().for_each(|(i, y)| {
        let c = i % channels;
        forward_plane_any(p, &input[i * isz..(i + 1) * isz], &weight[c * ksz..(c + 1) * ksz], y);
    });
}

pub(crate) fn backward_input(g: &ConvGeometry, weight: &[f32], output_grad: &[f32], input_grad: &mut [f32]) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    input_grad.par_chunks_mut(isz).enumerate().for_each(|(i, dx)| {
        let c = i % channels;
        backward_input_plane_any(p, &weight[c * ksz..(c + 1) * ksz], &output_grad[i * osz..(i + 1) * osz], dx);
    });
}

pub(crate) fn backward_weight(g: &ConvGeometry, input: &[f32], output_grad: &[f32], weight_grad: &mut [f32]) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    // One task per channel, looping over the images: no partial sums to merge, and the order of
    // additions is fixed.
    weight_grad.par_chunks_mut(ksz).enumerate().for_each(|(c, acc)| {
        acc.fill(0.0);
        let mut strided = Vec::with_capacity(p.wo);
        for n in 0..g.batch {
            let i = n * channels + c;
            backward_weight_plane_any(p, &input[i * isz..(i + 1) * isz], &output_grad[i * osz..(i + 1) * osz], acc, &mut strided);
        }
    });
}
