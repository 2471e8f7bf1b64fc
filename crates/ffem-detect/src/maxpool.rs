//! A plain NCHW max-pool for tract. tract's optimised max-pool has a fast path for 2x2 windows
//! only; R-Net's and O-Net's 3x3 stride-2 pools went through its generic visitor, about a fifth of
//! MTCNN's time. This op loops over each channel plane directly.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{OptMaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Max over `kernel` x `kernel` windows at `stride`, `pad` rows/columns of nothing before the
/// first window (padding never wins the max), on an NCHW f32 tensor of a known shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaneMaxPool {
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    /// Input and output shapes, NCHW.
    input: [usize; 4],
    output: [usize; 4],
}

impl PlaneMaxPool {
    /// Pools `x` (shape `self.input`) into a new buffer of shape `self.output`, separably: the
    /// max down each window's rows, then along the reduced row.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let [n, c, h, w] = self.input;
        let [_, _, oh, ow] = self.output;
        // Window extents along each axis, clipped to the image (padding never wins the max).
        let windows = |out: usize, size: usize, axis: usize| -> Vec<(usize, usize)> {
            (0..out)
                .map(|o| {
                    let start = (o * self.stride[axis]) as isize - self.pad[axis] as isize;
                    let end = (start + self.kernel[axis] as isize).min(size as isize);
                    (start.max(0) as usize, end.max(0) as usize)
                })
                .collect()
        };
        let (rows, cols) = (windows(oh, h, 0), windows(ow, w, 1));
        let mut out = vec![0f32; n * c * oh * ow];
        let mut column_max = vec![0f32; w];
        for (plane, dst) in out.chunks_exact_mut(oh * ow).enumerate() {
            let src = &x[plane * h * w..(plane + 1) * h * w];
            for (d, &(y0, y1)) in dst.chunks_exact_mut(ow).zip(&rows) {
                // Down the window's rows first: contiguous, so it vectorises across the width...
                column_max.fill(f32::NEG_INFINITY);
                for row in src[y0 * w..y1 * w].chunks_exact(w) {
                    for (m, &v) in column_max.iter_mut().zip(row) {
                        *m = if v > *m { v } else { *m };
                    }
                }
                // ...then along the one reduced row.
                for (o, &(x0, x1)) in d.iter_mut().zip(&cols) {
                    *o = column_max[x0..x1]
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                }
            }
        }
        out
    }

    /// The pool for a spec and a concrete NCHW input shape, when this op covers it: 2-D, no
    /// dilation, `VALID` or `SAME_UPPER` padding, no index output.
    fn for_node(op: &OptMaxPool, input: &[usize]) -> Option<PlaneMaxPool> {
        let spec = &op.pool_spec;
        if op.with_index_outputs.is_some()
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || input.len() != 4
        {
            return None;
        }
        if spec
            .dilations
            .as_ref()
            .is_some_and(|d| d.iter().any(|&v| v != 1))
        {
            return None;
        }
        let kernel = [spec.kernel_shape[0], spec.kernel_shape[1]];
        let stride = match &spec.strides {
            Some(s) if s.len() == 2 => [s[0], s[1]],
            None => [1, 1],
            _ => return None,
        };
        let mut pad = [0; 2];
        let mut out = [0; 2];
        for i in 0..2 {
            let size = input[2 + i];
            match spec.padding {
                PaddingSpec::Valid => {
                    if size < kernel[i] {
                        return None;
                    }
                    out[i] = (size - kernel[i]) / stride[i] + 1;
                }
                // ONNX SAME_UPPER: output ceil(size / stride), the odd padding pixel at the end.
                PaddingSpec::SameUpper => {
                    out[i] = size.div_ceil(stride[i]);
                    let total = ((out[i] - 1) * stride[i] + kernel[i]).saturating_sub(size);
                    pad[i] = total / 2;
                }
                _ => return None,
            }
        }
        Some(PlaneMaxPool {
            kernel,
            stride,
            pad,
            input: [input[0], input[1], input[2], input[3]],
            output: [input[0], input[1], out[0], out[1]],
        })
    }
}

impl Op for PlaneMaxPool {
    fn name(&self) -> StaticName {
        "PlaneMaxPool".into()
    }

    op_as_typed_op!();
}

impl EvalOp for PlaneMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let view = inputs[0].try_as_plain_ram()?;
        let out = self.apply(view.as_slice::<f32>()?);
        Ok(tvec!(Tensor::from_shape(&self.output, &out)?.into_tvalue()))
    }
}

impl TypedOp for PlaneMaxPool {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(self.output)))
    }

    as_op!();
}

/// Replaces tract's max-pools (other than 2x2 stride 2) on concrete f32 NCHW inputs by [`PlaneMaxPool`] where the geometry
/// is covered and the output shape agrees with tract's; returns how many.
pub fn replace_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    crate::graph::replace_matching(model, |model, node| {
        let op = node.op_as::<OptMaxPool>()?;
        let input = node.inputs[0];
        let fact = model.outlet_fact(input).ok()?;
        if fact.datum_type != f32::datum_type() || node.outputs.len() != 1 {
            return None;
        }
        let shape = fact
            .shape
            .iter()
            .map(|d| d.to_usize().ok())
            .collect::<Option<Vec<usize>>>()?;
        let pool = PlaneMaxPool::for_node(op, &shape)?;
        if pool.kernel == [2, 2] && pool.stride == [2, 2] {
            // tract has a fast path of its own for these.
            return None;
        }
        let expected: Vec<TDim> = pool.output.iter().map(|&d| d.to_dim()).collect();
        (node.outputs[0].fact.shape.to_tvec().to_vec() == expected).then_some((input, pool))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upper_and_valid_by_hand() {
        // One 5x5 plane holding 0..25 row-major. 3x3 stride 2:
        // VALID: windows at 0 and 2 -> 2x2 output, max = bottom-right of each window.
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let valid = PlaneMaxPool {
            kernel: [3, 3],
            stride: [2, 2],
            pad: [0, 0],
            input: [1, 1, 5, 5],
            output: [1, 1, 2, 2],
        };
        assert_eq!(valid.apply(&x), vec![12.0, 14.0, 22.0, 24.0]);
        // SAME_UPPER: out = ceil(5/2) = 3, total pad (3-1)*2+3-5 = 2 -> 1 before, 1 after;
        // windows start at -1, 1, 3 and are clipped to the image.
        let same = PlaneMaxPool {
            kernel: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
            input: [1, 1, 5, 5],
            output: [1, 1, 3, 3],
        };
        assert_eq!(
            same.apply(&x),
            vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]
        );
        // Negative values: padding must not win.
        let neg: Vec<f32> = x.iter().map(|v| -v - 1.0).collect();
        assert_eq!(same.apply(&neg)[0], -1.0);
    }
}
