//! Dropout masks from a counter-based generator: element `i`'s coin depends only on the seed and
//! `i`, so a mask is the same whatever the number of threads that fill it, and it fills in
//! parallel.
//!
//! Why: burn's dropout draws one Bernoulli value at a time from a ChaCha stream on the calling
//! thread; on the step-1 head's million inputs per batch that was a sixtieth of a CPU training
//! step with the other cores idle.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::{as_uninit, written_vec};

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// SplitMix64's finaliser: a bijection on u64 whose outputs for consecutive inputs pass
/// BigCrush (Steele, Lea & Flood, 2014).
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `mask` with inverted-dropout factors: each element is `1 / keep` with probability
/// `keep` and 0 otherwise, so that `x * mask` keeps the expectation of `x`.
///
/// # Panics
/// If `keep` is not in (0, 1].
pub fn dropout_mask(seed: u64, keep: f64, mask: &mut [f32]) {
    // SAFETY: `fill` writes a keep factor or 0.0 into every element.
    fill(seed, keep, unsafe { as_uninit(mask) });
}

/// [`dropout_mask`] into a new `len`-element vector, written once.
pub fn dropout_mask_to_vec(seed: u64, keep: f64, len: usize) -> Vec<f32> {
    // SAFETY: `fill` writes every element (or panics).
    unsafe { written_vec(len, |mask| fill(seed, keep, mask)) }
}

/// Writes every element of `mask`.
fn fill(seed: u64, keep: f64, mask: &mut [MaybeUninit<f32>]) {
    assert!(
        keep > 0.0 && keep <= 1.0,
        "dropout: keep probability {keep} outside (0, 1]"
    );
    // A coin is the top 24 bits of the mixed counter as a fraction of 2^24 (f32's exact range).
    let threshold = (keep * (1u64 << 24) as f64).round() as u64;
    let scale = (1.0 / keep) as f32;
    let key = mix(seed);
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            let start = (chunk * CHUNK) as u64;
            for (i, v) in values.iter_mut().enumerate() {
                let counter = (start + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let coin = mix(key.wrapping_add(counter)) >> 40;
                v.write(if coin < threshold { scale } else { 0.0 });
            }
        });
}
