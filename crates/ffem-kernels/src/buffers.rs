//! Output buffers written once: views of initialised storage as storage to overwrite, fresh
//! vectors filled without a zero fill first, parallel zeroing, and the fixed-order batch sums that
//! keep gradients identical whatever the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Images per partial sum when a gradient is summed over the batch: fixed, so that the order of
/// additions (and so the result, to the bit) does not depend on the number of threads.
pub(crate) const BATCH_CHUNK: usize = 8;

/// Sums `parts` (each `len` long, in order) into `out`.
pub(crate) fn sum_partials(parts: &[Vec<f32>], out: &mut [f32]) {
    out.copy_from_slice(&parts[0]);
    for p in &parts[1..] {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// Elements below which [`zero_fill`] fills on the calling thread: a parallel split costs more than
/// it saves on small buffers.
const PARALLEL_ZERO_MIN: usize = 1 << 16;

/// Initialised storage viewed as storage to overwrite, so that one kernel body serves both an
/// existing output slice and a fresh uninitialised vector ([`written_vec`]).
///
/// # Safety
/// Every write through the returned view must store an initialised value (never
/// `MaybeUninit::uninit()`): once the view's borrow ends, `s` is read as `f32` again.
pub(crate) unsafe fn as_uninit(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the caller guarantees that only initialised values are written.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// # Safety
/// Every element of `s` must have been initialised.
pub(crate) unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout, and the caller guarantees initialisation.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Zeroes `s` and returns it initialised, for kernels that accumulate into their output.
pub(crate) fn zero_fill(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    let zero = |chunk: &mut [MaybeUninit<f32>]| {
        chunk.iter_mut().for_each(|x| {
            x.write(0.0);
        })
    };
    if s.len() < PARALLEL_ZERO_MIN {
        zero(s);
    } else {
        s.par_chunks_mut(PARALLEL_ZERO_MIN).for_each(zero);
    }
    // SAFETY: every element was just written.
    unsafe { assume_init(s) }
}

/// A `len`-element vector filled by `write`; on failure nothing is returned.
///
/// # Safety
/// When `write` returns `Ok`, it must have initialised every element of the slice it was given.
pub(crate) unsafe fn try_written_vec<E>(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]) -> Result<(), E>,
) -> Result<Vec<f32>, E> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    write(&mut v.spare_capacity_mut()[..len])?;
    // SAFETY: `write` succeeded, so it initialised all `len` elements (`len <= capacity`).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// A `len`-element vector filled by `write`.
///
/// # Safety
/// `write` must initialise every element of the slice it is given (or panic).
pub(crate) unsafe fn written_vec(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    // SAFETY: passed on to the caller.
    unsafe {
        try_written_vec(len, |v| {
            write(v);
            Ok::<(), std::convert::Infallible>(())
        })
    }
    .unwrap_or_else(|never| match never {})
}
