//! Ungrouped convolutions as GEMMs: pointwise directly, anything else through im2col.
//!
//! Per image `n` (weight `W` as `Co x Ci*Kh*Kw`, `col(X)` the `Ci*Kh*Kw x Ho*Wo` patch matrix):
//! `Y[n] = W col(X[n])`, `dX[n] = col2im(W^T dY[n])`, `dW = sum_n dY[n] col(X[n])^T`.
//! For a pointwise convolution `col(X) = X`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::{BATCH_CHUNK, as_uninit, assume_init, sum_partials, zero_fill};
use crate::geometry::ConvGeometry;
use crate::matmul::{Threads, View, gemm_add, gemm_write};
use crate::norm::Epilogue;

/// Runs `f(image, its output, threads)` for every image's `per_image`-long piece of `out`: in
/// parallel over images when there are enough of them to keep every thread busy, else one image at
/// a time with multi-threaded GEMMs.
fn for_each_image<T: Send, F>(out: &mut [T], per_image: usize, f: F)
where
    F: Fn(usize, &mut [T], Threads) + Sync,
{
    if out.len() / per_image >= rayon::current_num_threads() {
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, y)| f(n, y, Threads::One));
    } else {
        out.chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, y)| f(n, y, Threads::All));
    }
}

/// Sums per-image contributions to a weight-sized gradient: images are taken in fixed chunks of
/// [`BATCH_CHUNK`], each chunk accumulates into its own buffer, and the buffers are added in order.
pub(crate) fn sum_over_batch<F>(batch: usize, out: &mut [f32], f: F)
where
    F: Fn(std::ops::Range<usize>, &mut [f32], Threads) + Sync,
{
    let starts: Vec<usize> = (0..batch).step_by(BATCH_CHUNK).collect();
    let threads = if starts.len() >= rayon::current_num_threads() {
        Threads::One
    } else {
        Threads::All
    };
    let parts: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&start| {
            let mut acc = vec![0.0f32; out.len()];
            f(start..(start + BATCH_CHUNK).min(batch), &mut acc, threads);
            acc
        })
        .collect();
    sum_partials(&parts, out);
}

/// Writes every element of `output` (which may be uninitialised).
pub(crate) fn pointwise_forward_with(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    output: &mut [MaybeUninit<f32>],
    epilogue: Option<&Epilogue>,
) {
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let w = View::rows(weight, co, ci);
    for_each_image(output, co * hw, |n, y, threads| {
        let x = View::rows(&input[n * ci * hw..(n + 1) * ci * hw], ci, hw);
        gemm_write(y, w, x, threads);
        if let Some(e) = epilogue {
            // SAFETY: `gemm_write` initialised all of `y`.
            e.apply(unsafe { assume_init(y) }, hw, 0);
        }
    });
}

/// Writes every element of `input_grad` (which may be uninitialised).
pub(crate) fn pointwise_backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [MaybeUninit<f32>],
) {
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let wt = View::transposed(weight, co, ci);
    for_each_image(input_grad, ci * hw, |n, dx, threads| {
        let dy = View::rows(&output_grad[n * co * hw..(n + 1) * co * hw], co, hw);
        gemm_write(dx, wt, dy, threads);
    });
}

pub(crate) fn pointwise_backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    output_grad: &[f32],
    weight_grad: &mut [f32],
) {
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    sum_over_batch(g.batch, weight_grad, |images, acc, threads| {
        for n in images {
            let dy = View::rows(&output_grad[n * co * hw..(n + 1) * co * hw], co, hw);
            let xt = View::transposed(&input[n * ci * hw..(n + 1) * ci * hw], ci, hw);
            gemm_add(acc, dy, xt, threads);
        }
    });
}

/// Rows of the patch matrix (`Ci*Kh*Kw`) and its columns (`Ho*Wo`).
fn col_dims(g: &ConvGeometry) -> (usize, usize) {
    (
        g.in_channels * g.kernel[0] * g.kernel[1],
        g.out_h() * g.out_w(),
    )
}

/// The output columns `ow` whose input column `ow * stride + k - pad` lies inside `0..width`.
pub(crate) fn valid_range(
    out: usize,
    width: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> std::ops::Range<usize> {
    // ow * stride + k >= pad  and  ow * stride + k - pad <= width - 1
    let lo = if pad > k {
        (pad - k).div_ceil(stride)
    } else {
        0
    };
    let hi = if width + pad > k {
        ((width + pad - k - 1) / stride + 1).min(out)
    } else {
        0
    };
    lo.min(hi)..hi
}

/// Fills `col` (`Ci*Kh*Kw` x `Ho*Wo`) with the zero-padded patches of one image.
fn im2col(g: &ConvGeometry, image: &[f32], col: &mut [f32]) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let (h, w) = (g.in_h, g.in_w);
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    for c in 0..g.in_channels {
        let plane = &image[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((c * kh + ky) * kw + kx) * ho * wo..][..ho * wo];
                let cols = valid_range(wo, w, kx, sw, pw);
                for oy in 0..ho {
                    let out = &mut row[oy * wo..(oy + 1) * wo];
                    let iy = (oy * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    out[..cols.start].fill(0.0);
                    out[cols.end..].fill(0.0);
                    for ox in cols.clone() {
                        out[ox] = src[ox * sw + kx - pw];
                    }
                }
            }
        }
    }
}

/// Adds the patch-matrix gradient `col` back onto the image gradient (the adjoint of [`im2col`]).
fn col2im_add(g: &ConvGeometry, col: &[f32], image_grad: &mut [f32]) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let (h, w) = (g.in_h, g.in_w);
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    for c in 0..g.in_channels {
        let plane = &mut image_grad[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &col[((c * kh + ky) * kw + kx) * ho * wo..][..ho * wo];
                let cols = valid_range(wo, w, kx, sw, pw);
                for oy in 0..ho {
                    let iy = (oy * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                    let src = &row[oy * wo..(oy + 1) * wo];
                    for ox in cols.clone() {
                        dst[ox * sw + kx - pw] += src[ox];
                    }
                }
            }
        }
    }
}

/// Writes every element of `output` (which may be uninitialised).
pub(crate) fn im2col_forward_with(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    output: &mut [MaybeUninit<f32>],
    epilogue: Option<&Epilogue>,
) {
    let (rows, cols) = col_dims(g);
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let w = View::rows(weight, co, rows);
    for_each_image(output, co * cols, |n, y, threads| {
        let mut col = vec![0.0f32; rows * cols];
        im2col(g, &input[n * ci * hw..(n + 1) * ci * hw], &mut col);
        gemm_write(y, w, View::rows(&col, rows, cols), threads);
        if let Some(e) = epilogue {
            // SAFETY: `gemm_write` initialised all of `y`.
            e.apply(unsafe { assume_init(y) }, cols, 0);
        }
    });
}

/// Writes every element of `input_grad` (which may be uninitialised).
pub(crate) fn im2col_backward_input(
    g: &ConvGeometry,
    weight: &[f32],
    output_grad: &[f32],
    input_grad: &mut [MaybeUninit<f32>],
) {
    let (rows, cols) = col_dims(g);
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let wt = View::transposed(weight, co, rows);
    for_each_image(input_grad, ci * hw, |n, image_grad, threads| {
        let mut dcol = vec![0.0f32; rows * cols];
        gemm_write(
            // SAFETY: `gemm_write` stores a computed f32 into every element of `dcol`.
            unsafe { as_uninit(&mut dcol) },
            wt,
            View::rows(&output_grad[n * co * cols..(n + 1) * co * cols], co, cols),
            threads,
        );
        col2im_add(g, &dcol, zero_fill(image_grad));
    });
}

pub(crate) fn im2col_backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    output_grad: &[f32],
    weight_grad: &mut [f32],
) {
    let (rows, cols) = col_dims(g);
    let (ci, co, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    sum_over_batch(g.batch, weight_grad, |images, acc, threads| {
        let mut col = vec![0.0f32; rows * cols];
        for n in images {
            im2col(g, &input[n * ci * hw..(n + 1) * ci * hw], &mut col);
            let dy = View::rows(&output_grad[n * co * cols..(n + 1) * co * cols], co, cols);
            gemm_add(acc, dy, View::transposed(&col, rows, cols), threads);
        }
    });
}
