//! A fused PReLU for tract. tract-onnx expands ONNX `PRelu` into `Iff(0 > x, x * slope, x)`:
//! three passes over the tensor, and for batches larger than one (R-Net, O-Net) the multiply
//! falls back to tract's generic broadcasting loop. MTCNN is all small convolutions with a PReLU
//! after each, so those passes were about 40% of its time. This op does the same in one pass.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::logic::Iff;

/// `y = x` where `x >= 0`, `x * slope[c]` elsewhere, `c` indexing one axis of the input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FusedPRelu {
    /// The slopes as f32 bit patterns (kept as integers so that the op is `Eq`, as tract requires).
    slopes: Vec<u32>,
    /// The axis the slopes run along (ignored with a single slope).
    axis: usize,
}

impl FusedPRelu {
    /// Applies the activation in place to a row-major f32 buffer of `shape`.
    fn apply(&self, x: &mut [f32], shape: &[usize]) {
        let slopes: Vec<f32> = self.slopes.iter().map(|&b| f32::from_bits(b)).collect();
        if slopes.len() == 1 {
            let a = slopes[0];
            x.iter_mut()
                .for_each(|v| *v = if *v < 0.0 { *v * a } else { *v });
            return;
        }
        let inner: usize = shape[self.axis + 1..].iter().product();
        for (i, chunk) in x.chunks_exact_mut(inner.max(1)).enumerate() {
            let a = slopes[i % slopes.len()];
            // Branch-free so that it vectorises.
            for v in chunk {
                *v = if *v < 0.0 { *v * a } else { *v };
            }
        }
    }
}

impl Op for FusedPRelu {
    fn name(&self) -> StaticName {
        "FusedPRelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedPRelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut t = inputs.remove(0).into_tensor();
        let shape = t.shape().to_vec();
        {
            let mut view = t.try_as_plain_ram_mut()?;
            self.apply(view.as_slice_mut::<f32>()?, &shape);
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for FusedPRelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// The slopes of a PReLU expansion if `node` is its `Iff(0 > x, x * slope, x)`: returns the input
/// `x` and the op that replaces the three nodes.
fn match_prelu(model: &TypedModel, node: &TypedNode) -> Option<(OutletId, FusedPRelu)> {
    node.op_as::<Iff>()?;
    let [test, product, x] = node.inputs[..] else {
        return None;
    };
    let x_fact = model.outlet_fact(x).ok()?;
    if x_fact.datum_type != f32::datum_type() {
        return None;
    }
    // The product is x times a constant; the test compares a zero constant with x.
    let mul = model.node(product.node);
    if mul.inputs.len() != 2 || mul.inputs[0] != x || !mul.op.name().contains("Mul") {
        return None;
    }
    let slope = model.outlet_fact(mul.inputs[1]).ok()?.konst.clone()?;
    let gt = model.node(test.node);
    if gt.inputs.len() != 2 || gt.inputs[1] != x || !gt.op.name().contains("GT") {
        return None;
    }
    let zero = model.outlet_fact(gt.inputs[0]).ok()?.konst.clone()?;
    let zero_view = zero.to_plain_array_view::<f32>().ok()?;
    if zero_view.iter().any(|&v| v != 0.0) {
        return None;
    }
    let slopes: Vec<f32> = slope
        .to_plain_array_view::<f32>()
        .ok()?
        .iter()
        .copied()
        .collect();
    let rank = x_fact.rank();
    let axis = if slopes.len() == 1 {
        0
    } else {
        let s = slope.shape();
        if s.len() != rank {
            return None;
        }
        let axis = s.iter().position(|&d| d != 1)?;
        // Exactly one axis of the slope may differ from 1, and it must match x along that axis.
        if s.iter().filter(|&&d| d != 1).count() != 1 || x_fact.shape[axis] != s[axis].to_dim() {
            return None;
        }
        axis
    };
    Some((
        x,
        FusedPRelu {
            slopes: slopes.iter().map(|v| v.to_bits()).collect(),
            axis,
        },
    ))
}

/// Replaces every PReLU expansion in an optimised model by [`FusedPRelu`]; returns how many.
pub fn fuse_prelus(model: &mut TypedModel) -> TractResult<usize> {
    crate::graph::replace_matching(model, match_prelu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_prelu_by_hand() {
        // Shape [2, 3, 2]: slopes along axis 1, one value per inner pair.
        let op = FusedPRelu {
            slopes: [0.5f32, 2.0, -1.0].iter().map(|v| v.to_bits()).collect(),
            axis: 1,
        };
        let mut x = vec![
            1.0, -2.0, -4.0, 3.0, -1.0, -1.0, -6.0, 0.0, 5.0, -8.0, -2.0, 7.0,
        ];
        op.apply(&mut x, &[2, 3, 2]);
        assert_eq!(
            x,
            vec![
                1.0, -1.0, -8.0, 3.0, 1.0, 1.0, -3.0, 0.0, 5.0, -16.0, 2.0, 7.0
            ]
        );
        let scalar = FusedPRelu {
            slopes: vec![0.25f32.to_bits()],
            axis: 0,
        };
        let mut y = vec![-4.0, 4.0];
        scalar.apply(&mut y, &[2]);
        assert_eq!(y, vec![-1.0, 4.0]);
    }
}
