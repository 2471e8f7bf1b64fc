//! Squeeze-and-excite's rescaling: each plane of a map multiplied by its own factor, forward and
//! backward, in parallel over planes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::written_vec;
use crate::simd;

/// Planes per parallel task in [`scale_planes_to_vec`] and [`scale_planes_backward`]: enough
/// values per task to pay for it on the 7x7 maps of the last blocks.
const PLANES_PER_TASK: usize = 64;

/// `y[p][i] = x[p][i] * scale[p]`: every `spatial`-long plane of `x` multiplied by its own factor
/// (squeeze-and-excite's rescaling of each image's channels), written once into a new vector.
///
/// # Panics
/// If `x.len() != scale.len() * spatial`.
pub fn scale_planes_to_vec(x: &[f32], scale: &[f32], spatial: usize) -> Vec<f32> {
    assert_eq!(
        x.len(),
        scale.len() * spatial,
        "scale_planes: {} values are not {} planes of {spatial}",
        x.len(),
        scale.len()
    );
    let write = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(spatial * PLANES_PER_TASK)
            .zip(x.par_chunks(spatial * PLANES_PER_TASK))
            .zip(scale.par_chunks(PLANES_PER_TASK))
            .for_each(|((y, x), s)| {
                for ((yp, xp), &k) in y.chunks_mut(spatial).zip(x.chunks(spatial)).zip(s) {
                    yp.iter_mut().zip(xp).for_each(|(o, &v)| {
                        o.write(v * k);
                    });
                }
            });
    };
    if spatial == 0 {
        return Vec::new();
    }
    // SAFETY: the chunks cover `y` exactly (same length as `x`), and every element is written.
    unsafe { written_vec(x.len(), write) }
}

/// The gradients of [`scale_planes_to_vec`] given the output's, `dy`: `dx = dy * scale` per plane
/// and `dscale[p] = sum_i dy[p][i] * x[p][i]`.
///
/// # Panics
/// If the lengths do not agree as in [`scale_planes_to_vec`].
pub fn scale_planes_backward(
    x: &[f32],
    scale: &[f32],
    dy: &[f32],
    spatial: usize,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        dy.len(),
        x.len(),
        "scale_planes_backward: dy and x differ in length"
    );
    let dx = scale_planes_to_vec(dy, scale, spatial);
    if spatial == 0 {
        return (dx, vec![0.0; scale.len()]);
    }
    let mut dscale = vec![0.0f32; scale.len()];
    dscale
        .par_chunks_mut(PLANES_PER_TASK)
        .zip(x.par_chunks(spatial * PLANES_PER_TASK))
        .zip(dy.par_chunks(spatial * PLANES_PER_TASK))
        .for_each(|((ds, x), dy)| {
            for ((d, xp), gp) in ds.iter_mut().zip(x.chunks(spatial)).zip(dy.chunks(spatial)) {
                simd::dot_any(xp, gp, d);
            }
        });
    (dx, dscale)
}
