//! Depthwise convolution (one `Kh x Kw` filter per channel) as flat one-dimensional stencils.
//!
//! Each input plane is copied once into a zero-padded buffer split by the stride's phases: for
//! stride `s`, sub-plane `(a, b)` holds padded rows `a, a + s, ...` and columns `b, b + s, ...`.
//! Padded pixel `(oy * s + ky, ox * s + kx)` is then element `(oy + ky / s, ox + kx / s)` of
//! sub-plane `(ky % s, kx % s)`. Laying the output out with the sub-planes' row length `Wq`,
//! every tap becomes `out[o] += w * sub[o + offset]` over one contiguous run of `Ho * Wq` values:
//! no per-row loop, no bounds tests, no strided access. The `Wq - Wo` extra columns per row are
//! computed and dropped (and zero where they feed a gradient). The runs are a few kilobytes, so the
//! taps' passes stay in the L1 cache. Maps too small for the per-plane work to pay off go to
//! `depthwise_small` instead.

use rayon::prelude::*;

use crate::geometry::ConvGeometry;
use crate::norm::Epilogue;
use crate::simd::{dispatch, dot, madd};

/// Per-plane sizes and the phase-split buffer's layout.
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

    /// Row length of every sub-plane (and of the flat output layout).
    fn wq(&self) -> usize {
        self.wo + (self.kw - 1) / self.sw
    }

    /// Rows of every sub-plane: those the taps reach, plus one so that the dropped columns of the
    /// last output row never read past the end.
    fn hq(&self) -> usize {
        self.ho + (self.kh - 1) / self.sh + 1
    }

    fn sub_len(&self) -> usize {
        self.hq() * self.wq()
    }

    fn buffer_len(&self) -> usize {
        self.sh * self.sw * self.sub_len()
    }

    /// Output values in the flat layout (`Ho` rows of `Wq`).
    fn flat_len(&self) -> usize {
        self.ho * self.wq()
    }

    /// Where tap `(ky, kx)` starts reading in the buffer.
    #[inline(always)]
    fn tap_start(&self, ky: usize, kx: usize) -> usize {
        ((ky % self.sh) * self.sw + kx % self.sw) * self.sub_len()
            + (ky / self.sh) * self.wq()
            + kx / self.sw
    }

    /// For sub-plane phase `b` along one axis (stride `s`, padding `p`, input length `n`, sub
    /// length `len`): the first input index stored, its position in the sub-plane, and how many.
    #[inline(always)]
    fn phase_run(b: usize, s: usize, p: usize, n: usize, len: usize) -> (usize, usize, usize) {
        let first = (b + s - p % s) % s;
        let pos = (first + p) / s;
        let available = if first < n {
            (n - first).div_ceil(s)
        } else {
            0
        };
        (first, pos, available.min(len.saturating_sub(pos)))
    }

    /// Copies an input plane into the padded, phase-split buffer, zeroing only the cells no input
    /// pixel lands in (the buffer is mostly interior).
    fn fill(&self, x: &[f32], buf: &mut [f32]) {
        let (wq, hq, sub) = (self.wq(), self.hq(), self.sub_len());
        for a in 0..self.sh {
            let (row0, rpos, rows) = Self::phase_run(a, self.sh, self.ph, self.h, hq);
            for b in 0..self.sw {
                let (col0, cpos, cols) = Self::phase_run(b, self.sw, self.pw, self.w, wq);
                let plane = &mut buf[(a * self.sw + b) * sub..][..sub];
                plane[..rpos * wq].fill(0.0);
                plane[(rpos + rows) * wq..].fill(0.0);
                for r in 0..rows {
                    let src = &x[(row0 + r * self.sh) * self.w..][..self.w];
                    let line = &mut plane[(rpos + r) * wq..][..wq];
                    line[..cpos].fill(0.0);
                    line[cpos + cols..].fill(0.0);
                    let dst = &mut line[cpos..cpos + cols];
                    if self.sw == 1 {
                        dst.copy_from_slice(&src[col0..col0 + cols]);
                    } else {
                        for (d, v) in dst.iter_mut().zip(src[col0..].iter().step_by(self.sw)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }

    /// The inverse of [`Self::fill`] for gradients: each input pixel's value from the buffer
    /// (pixels that no tap reaches get zero).
    fn unfill(&self, buf: &[f32], dx: &mut [f32]) {
        dx.fill(0.0);
        let (wq, sub) = (self.wq(), self.sub_len());
        for a in 0..self.sh {
            let (row0, rpos, rows) = Self::phase_run(a, self.sh, self.ph, self.h, self.hq());
            for b in 0..self.sw {
                let (col0, cpos, cols) = Self::phase_run(b, self.sw, self.pw, self.w, wq);
                let base = (a * self.sw + b) * sub;
                for r in 0..rows {
                    let dst = &mut dx[(row0 + r * self.sh) * self.w..][..self.w];
                    let src = &buf[base + (rpos + r) * wq + cpos..][..cols];
                    if self.sw == 1 {
                        dst[col0..col0 + cols].copy_from_slice(src);
                    } else {
                        for (d, v) in dst[col0..].iter_mut().step_by(self.sw).zip(src) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }

    /// The stride-1 input gradient as a forward convolution of the output gradient with the
    /// kernel turned by 180 degrees, when the padding allows it.
    fn transposed(&self) -> Option<Plane> {
        (self.sh == 1 && self.sw == 1 && self.ph < self.kh && self.pw < self.kw).then(|| Plane {
            h: self.ho,
            w: self.wo,
            ho: self.h,
            wo: self.w,
            kh: self.kh,
            kw: self.kw,
            sh: 1,
            sw: 1,
            ph: self.kh - 1 - self.ph,
            pw: self.kw - 1 - self.pw,
        })
    }
}

/// Scratch space reused by one worker across planes.
#[derive(Default)]
struct Scratch {
    buf: Vec<f32>,
    flat: Vec<f32>,
    kernel: Vec<f32>,
}

/// Computes the output of one plane in the flat layout into `scratch.flat`.
#[inline(always)]
fn forward_flat<const FMA: bool>(p: &Plane, x: &[f32], k: &[f32], s: &mut Scratch) {
    s.buf.resize(p.buffer_len(), 0.0);
    p.fill(x, &mut s.buf);
    let n = p.flat_len();
    s.flat.clear();
    // The first tap writes, the others add: no separate zeroing pass.
    s.flat
        .extend(s.buf[p.tap_start(0, 0)..][..n].iter().map(|&v| k[0] * v));
    for ky in 0..p.kh {
        for kx in 0..p.kw {
            if ky == 0 && kx == 0 {
                continue;
            }
            let wv = k[ky * p.kw + kx];
            let src = &s.buf[p.tap_start(ky, kx)..][..n];
            for (o, &v) in s.flat.iter_mut().zip(src) {
                *o = madd::<FMA>(wv, v, *o);
            }
        }
    }
}

/// Copies the `Wo` kept columns of each flat row into a dense plane.
fn compact(p: &Plane, flat: &[f32], out: &mut [f32]) {
    let wq = p.wq();
    for (dst, src) in out.chunks_exact_mut(p.wo).zip(flat.chunks_exact(wq)) {
        dst.copy_from_slice(&src[..p.wo]);
    }
}

/// Lays a dense output-gradient plane out in the flat layout, zero in the dropped columns.
fn expand(p: &Plane, dy: &[f32], flat: &mut Vec<f32>) {
    let wq = p.wq();
    flat.clear();
    flat.resize(p.flat_len(), 0.0);
    for (dst, src) in flat.chunks_exact_mut(wq).zip(dy.chunks_exact(p.wo)) {
        dst[..p.wo].copy_from_slice(src);
    }
}

#[inline(always)]
fn forward_plane<const FMA: bool>(p: Plane, x: &[f32], k: &[f32], y: &mut [f32], s: &mut Scratch) {
    forward_flat::<FMA>(&p, x, k, s);
    compact(&p, &s.flat, y);
}

#[inline(always)]
fn backward_input_plane<const FMA: bool>(
    p: Plane,
    k: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    s: &mut Scratch,
) {
    if let Some(t) = p.transposed() {
        let mut kernel = std::mem::take(&mut s.kernel);
        kernel.clear();
        kernel.extend(k.iter().rev());
        forward_flat::<FMA>(&t, dy, &kernel, s);
        s.kernel = kernel;
        return compact(&t, &s.flat, dx);
    }
    // Scatter: every tap adds w * dy to the buffer cells it read, then the buffer folds back.
    expand(&p, dy, &mut s.flat);
    s.buf.clear();
    s.buf.resize(p.buffer_len(), 0.0);
    let n = p.flat_len();
    for ky in 0..p.kh {
        for kx in 0..p.kw {
            let wv = k[ky * p.kw + kx];
            let dst = &mut s.buf[p.tap_start(ky, kx)..][..n];
            for (o, &g) in dst.iter_mut().zip(&s.flat) {
                *o = madd::<FMA>(wv, g, *o);
            }
        }
    }
    p.unfill(&s.buf, dx);
}

/// `acc[t] += dy . buf[start(t)..]` for `K` taps in one pass over `dy`, eight lanes per tap.
#[inline(always)]
fn dots<const FMA: bool, const K: usize>(
    dy: &[f32],
    buf: &[f32],
    starts: &[usize],
    acc: &mut [f32],
) {
    let n = dy.len();
    let mut taps: [&[f32]; K] = [&[]; K];
    for t in 0..K {
        taps[t] = &buf[starts[t]..][..n];
    }
    let mut lanes = [[0.0f32; 8]; K];
    let full = n / 8 * 8;
    for (b, d) in dy[..full].chunks_exact(8).enumerate() {
        let d: &[f32; 8] = d.try_into().expect("8 values");
        for t in 0..K {
            let v: &[f32; 8] = taps[t][b * 8..b * 8 + 8].try_into().expect("8 values");
            for i in 0..8 {
                lanes[t][i] = madd::<FMA>(d[i], v[i], lanes[t][i]);
            }
        }
    }
    for t in 0..K {
        let l = &lanes[t];
        let mut s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for o in full..n {
            s = madd::<FMA>(dy[o], taps[t][o], s);
        }
        acc[t] += s;
    }
}

/// Adds one image's contribution to one channel's filter gradient (`acc`, `Kh*Kw`).
#[inline(always)]
fn backward_weight_plane<const FMA: bool>(
    p: Plane,
    x: &[f32],
    dy: &[f32],
    acc: &mut [f32],
    s: &mut Scratch,
) {
    s.buf.resize(p.buffer_len(), 0.0);
    p.fill(x, &mut s.buf);
    expand(&p, dy, &mut s.flat);
    let mut starts = [0usize; 7];
    for ky in 0..p.kh {
        let row = &mut acc[ky * p.kw..(ky + 1) * p.kw];
        for (kx, st) in starts.iter_mut().enumerate().take(p.kw) {
            *st = p.tap_start(ky, kx);
        }
        // One pass over dy per kernel row for the usual widths.
        match p.kw {
            3 => dots::<FMA, 3>(&s.flat, &s.buf, &starts, row),
            5 => dots::<FMA, 5>(&s.flat, &s.buf, &starts, row),
            7 => dots::<FMA, 7>(&s.flat, &s.buf, &starts, row),
            _ => {
                for (kx, a) in row.iter_mut().enumerate() {
                    *a += dot::<FMA>(&s.flat, &s.buf[p.tap_start(ky, kx)..]);
                }
            }
        }
    }
}

dispatch!(fn forward_plane_any(p: Plane, x: &[f32], k: &[f32], y: &mut [f32], s: &mut Scratch) => forward_plane);
dispatch!(fn backward_input_plane_any(p: Plane, k: &[f32], dy: &[f32], dx: &mut [f32], s: &mut Scratch) => backward_input_plane);
dispatch!(fn backward_weight_plane_any(p: Plane, x: &[f32], dy: &[f32], acc: &mut [f32], s: &mut Scratch) => backward_weight_plane);

pub(crate) fn forward_with(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    output: &mut [f32],
    epilogue: Option<&Epilogue>,
) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    output
        .par_chunks_mut(osz)
        .enumerate()
        .for_each_init(Scratch::default, |s, (i, y)| {
            let c = i % channels;
            forward_plane_any(
                p,
                &input[i * isz..(i + 1) * isz],
                &weight[c * ksz..(c + 1) * ksz],
                y,
                s,
            );
            if let Some(e) = epilogue {
                e.apply(y, osz, c);
            }
        });
}

pub(crate) fn backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [f32],
) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    input_grad
        .par_chunks_mut(isz)
        .enumerate()
        .for_each_init(Scratch::default, |s, (i, dx)| {
            let c = i % channels;
            backward_input_plane_any(
                p,
                &weight[c * ksz..(c + 1) * ksz],
                &output_grad[i * osz..(i + 1) * osz],
                dx,
                s,
            );
        });
}

pub(crate) fn backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    output_grad: &[f32],
    weight_grad: &mut [f32],
) {
    let p = Plane::of(g);
    let (isz, osz, ksz, channels) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw, g.in_channels);
    // One task per channel, looping over the images: no partial sums to merge, and the order of
    // additions is fixed.
    weight_grad
        .par_chunks_mut(ksz)
        .enumerate()
        .for_each_init(Scratch::default, |s, (c, acc)| {
            acc.fill(0.0);
            for n in 0..g.batch {
                let i = n * channels + c;
                backward_weight_plane_any(
                    p,
                    &input[i * isz..(i + 1) * isz],
                    &output_grad[i * osz..(i + 1) * osz],
                    acc,
                    s,
                );
            }
        });
}
