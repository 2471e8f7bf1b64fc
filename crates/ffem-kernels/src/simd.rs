//! Run-time choice of the instruction set for the hand-written loops: the same generic body is
//! compiled twice, once for the baseline target and once with AVX2 + FMA, and the latter runs on
//! CPUs that have them (the `gemm` crate makes the same choice for its own kernels).

/// Multiply-add: fused where the caller was compiled for FMA, so that no slow software `fmaf` is
/// ever called on CPUs without it.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Whether this CPU runs the AVX2 + FMA versions (detected once, then cached by std).
#[inline]
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `sum_i a[i] * b[i]` with eight independent partial sums, which the compiler turns into vector
/// lanes (a single running sum would force sequential float additions).
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] = madd::<FMA>(x[i], y[i], lanes[i]);
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ar.iter().zip(br) {
        tail = madd::<FMA>(*x, *y, tail);
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// Defines `$name(args)` that calls `$generic::<true>` compiled with AVX2 + FMA when the CPU has
/// them, and `$generic::<false>` otherwise.
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) {
                    $generic::<true>($($arg),*)
                }
                if $crate::simd::avx2_fma() {
                    // SAFETY: the CPU was just found to support AVX2 and FMA.
                    return unsafe { fast($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}
pub(crate) use dispatch;

#[inline(always)]
fn dot_into<const FMA: bool>(a: &[f32], b: &[f32], out: &mut f32) {
    *out = dot::<FMA>(a, b);
}

dispatch!(
    /// [`dot`] for the CPU found at run time, into `out`.
    pub(crate) fn dot_any(a: &[f32], b: &[f32], out: &mut f32) => dot_into
);
