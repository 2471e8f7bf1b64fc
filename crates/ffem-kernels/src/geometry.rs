//! The shape of a 2-D convolution, which kind of kernel serves it, and the checks every entry
//! point makes before touching a slice.

use thiserror::Error;

/// The shape of one 2-D convolution: input `[batch, in_channels, in_h, in_w]`, weight
/// `[out_channels, in_channels / groups, kernel[0], kernel[1]]`, zero padding on both sides of
/// each spatial axis, no dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Zero padding added above and below (`[0]`), left and right (`[1]`).
    pub padding: [usize; 2],
    /// Channel groups: 1 (dense) or `in_channels` (depthwise); others are not supported.
    pub groups: usize,
}

/// Which kernel family serves a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// 1x1, stride 1, no padding, ungrouped: one GEMM per image.
    Pointwise,
    /// Any other ungrouped convolution: im2col + GEMM.
    Dense,
    /// One filter per channel (`groups = in_channels = out_channels`).
    Depthwise,
}

/// A geometry these kernels do not serve, or buffers that do not match it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelError {
    /// Grouped convolutions other than depthwise, channel multipliers, empty or negative outputs.
    #[error(
        "unsupported convolution {0:?}: only groups = 1 or depthwise (groups = in = out channels) with a non-empty output"
    )]
    Unsupported(Box<ConvGeometry>),
    /// A slice whose length is not the one the geometry implies.
    #[error("{what} has {got} elements, the geometry {geometry:?} needs {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the geometry implies.
        expected: usize,
        /// The geometry.
        geometry: Box<ConvGeometry>,
    },
}

impl ConvGeometry {
    /// Output height (0 when the kernel does not fit the padded input).
    pub fn out_h(&self) -> usize {
        out_side(self.in_h, self.kernel[0], self.stride[0], self.padding[0])
    }

    /// Output width (0 when the kernel does not fit the padded input).
    pub fn out_w(&self) -> usize {
        out_side(self.in_w, self.kernel[1], self.stride[1], self.padding[1])
    }

    /// Elements of the input tensor.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }

    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.out_channels
            * (self.in_channels / self.groups.max(1))
            * self.kernel[0]
            * self.kernel[1]
    }

    /// The kernel family for this geometry, or `None` when it is not served here (the caller then
    /// uses its generic implementation).
    pub fn kind(&self) -> Option<ConvKind> {
        let positive = self.batch > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.kernel.iter().all(|&k| k > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.out_h() > 0
            && self.out_w() > 0;
        if !positive {
            return None;
        }
        if self.groups == 1 {
            if self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0] {
                Some(ConvKind::Pointwise)
            } else {
                Some(ConvKind::Dense)
            }
        } else if self.groups == self.in_channels && self.out_channels == self.in_channels {
            Some(ConvKind::Depthwise)
        } else {
            None
        }
    }

    pub(crate) fn check(
        &self,
        what: &'static str,
        got: usize,
        expected: usize,
    ) -> Result<(), KernelError> {
        if got == expected {
            Ok(())
        } else {
            Err(KernelError::Length {
                what,
                got,
                expected,
                geometry: Box::new(*self),
            })
        }
    }

    pub(crate) fn kind_or_err(&self) -> Result<ConvKind, KernelError> {
        self.kind()
            .ok_or_else(|| KernelError::Unsupported(Box::new(*self)))
    }
}

fn out_side(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    let padded = input + 2 * padding;
    if padded < kernel || stride == 0 {
        0
    } else {
        (padded - kernel) / stride + 1
    }
}
