//! A bounds-checked front to the `gemm` crate for strided row-major views.

use std::mem::MaybeUninit;

/// A read-only `rows` x `cols` matrix inside a slice: element (r, c) is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of the contiguous row-major `rows` x `cols` matrix in `data`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn last_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// Whether one GEMM call may use several threads (when the caller is not already parallel).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    One,
    All,
}

/// `dst += lhs * rhs`; `dst` is contiguous row-major `lhs.rows` x `rhs.cols`.
pub(crate) fn gemm_add(dst: &mut [f32], lhs: View, rhs: View, threads: Threads) {
    // SAFETY: `dst` is initialised, so reading it is sound; its length is checked in `gemm_raw`.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst.len(), true, lhs, rhs, threads) }
}

/// `dst = lhs * rhs`, every element of `dst` written and none read, so `dst` may be
/// uninitialised storage; contiguous row-major `lhs.rows` x `rhs.cols`.
pub(crate) fn gemm_write(dst: &mut [MaybeUninit<f32>], lhs: View, rhs: View, threads: Threads) {
    if lhs.cols == 0 {
        dst.iter_mut().for_each(|d| {
            d.write(0.0);
        });
    }
    // SAFETY: with `accumulate` false the GEMM only writes `dst` (`gemm`'s `read_dst = false`).
    unsafe { gemm_raw(dst.as_mut_ptr().cast(), dst.len(), false, lhs, rhs, threads) }
}

/// # Safety
/// `dst` points to `dst_len` writable f32; with `accumulate` they must also be initialised.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_len: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    threads: Threads,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: inner dimensions differ");
    assert_eq!(dst_len, m * n, "gemm: destination size");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        lhs.last_index() < lhs.data.len() && rhs.last_index() < rhs.data.len(),
        "gemm: view out of bounds"
    );
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: the asserts above keep every element the views address inside their slices, and
    // `dst` is exactly m x n, written with row stride n and column stride 1.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
