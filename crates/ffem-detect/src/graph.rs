//! Swapping nodes of an optimised tract graph for ffem's own ops.

use tract_onnx::prelude::*;

/// Replaces each node for which `matcher` returns `(input, op)` by `op` reading `input` (nodes the
/// old one read from and nobody else needs are left dead and never run); returns how many.
pub(crate) fn replace_matching<O: TypedOp>(
    model: &mut TypedModel,
    matcher: impl Fn(&TypedModel, &TypedNode) -> Option<(OutletId, O)>,
) -> TractResult<usize> {
    let mut done = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        if let Some((input, op)) = matcher(model, node) {
            let patch = TypedModelPatch::replace_single_op(model, node, &[input], op)?;
            patch.apply(model)?;
            done += 1;
        }
    }
    Ok(done)
}
