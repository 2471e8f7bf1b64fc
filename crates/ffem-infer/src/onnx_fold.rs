//! Weight-only quantised graphs made plain: every `DequantizeLinear` whose inputs are all
//! constants (int8 / uint8 / int32 weights with per-tensor, per-axis or per-block scales, as
//! OpenCV Zoo's `*_int8bq.onnx` files ship them) is replaced by the float constant it computes.
//!
//! Why: per-block scales (`block_size`, opset 21) are recent, and tract, the pure-Rust runtime
//! the default build runs external models with, does not read them; ONNX Runtime folds the same
//! nodes at session start anyway, so the result is the same network in any runtime. The file on
//! disk keeps its int8 weights (four times smaller); the folding happens in memory at load.

use std::collections::{HashMap, HashSet};

use ffem_data::protobuf::{put_len_field, put_varint};

use crate::onnx_import::{
    Field, OnnxImportError, fields, model_and_graph, names_read, string_of, sub,
};

/// A constant tensor read from a TensorProto: dimensions and values widened to f32.
#[derive(Clone)]
pub(crate) struct Constant {
    pub(crate) dims: Vec<usize>,
    pub(crate) values: Vec<f32>,
    /// The TensorProto data type it was stored as (FLOAT = 1, INT8 = 3, ...).
    pub(crate) data_type: u64,
}

// TensorProto.DataType values this reader accepts.
pub(crate) const FLOAT: u64 = 1;
const UINT8: u64 = 2;
const INT8: u64 = 3;
const INT32: u64 = 6;
const INT64: u64 = 7;
const FLOAT16: u64 = 10;

fn malformed(name: &str, what: impl std::fmt::Display) -> OnnxImportError {
    OnnxImportError::Malformed(format!("initializer `{name}`: {what}"))
}

/// IEEE half to single precision (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Reads an initializer's name, dimensions and values; `None` for a type this folder leaves
/// alone (the node then stays in the graph).
pub(crate) fn read_constant(tensor: &[u8]) -> Result<Option<(String, Constant)>, OnnxImportError> {
    let all = fields(tensor)?;
    let name = all
        .iter()
        .find(|f| f.number == 8 && f.wire == 2)
        .map(string_of)
        .unwrap_or_default();
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut raw: Option<&[u8]> = None;
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    for f in &all {
        match (f.number, f.wire) {
            (1, 0) => dims.push(f.varint as usize),
            (1, 2) => packed_varints(f, &name, &mut dims)?,
            (2, 0) => data_type = f.varint,
            (4, 2) => floats.extend(
                f.payload
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            (4, 5) => floats.push(f32::from_le_bytes(f.payload.try_into().expect("4 bytes"))),
            (5, 0) | (7, 0) => ints.push(f.varint as usize),
            (5, 2) | (7, 2) => packed_varints(f, &name, &mut ints)?,
            (9, 2) => raw = Some(f.payload),
            // Weights in a file beside the model: nothing to fold here.
            (13, 2) | (14, 0) => return Ok(None),
            _ => {}
        }
    }
    let count: usize = dims.iter().product();
    let values: Vec<f32> = match (data_type, raw) {
        (FLOAT, Some(r)) => r
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        (FLOAT, None) => floats,
        (UINT8, Some(r)) => r.iter().map(|&v| v as f32).collect(),
        (INT8, Some(r)) => r.iter().map(|&v| v as i8 as f32).collect(),
        (INT32, Some(r)) => r
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        (INT64, Some(r)) => r
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        (INT64, None) => ints.iter().map(|&v| v as u64 as i64 as f32).collect(),
        (FLOAT16, Some(r)) => r
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        // Without raw_data, ONNX stores these types in int32_data (half floats as their bits).
        (UINT8, None) => ints.iter().map(|&v| v as u8 as f32).collect(),
        (INT8, None) => ints.iter().map(|&v| v as u32 as i32 as i8 as f32).collect(),
        (INT32, None) => ints.iter().map(|&v| v as u32 as i32 as f32).collect(),
        (FLOAT16, None) => ints.iter().map(|&v| f16_to_f32(v as u16)).collect(),
        _ => return Ok(None),
    };
    if values.len() != count {
        return Err(malformed(
            &name,
            format!(
                "dimensions {dims:?} need {count} values and it holds {}",
                values.len()
            ),
        ));
    }
    Ok(Some((
        name,
        Constant {
            dims,
            values,
            data_type,
        },
    )))
}

fn packed_varints(f: &Field, name: &str, into: &mut Vec<usize>) -> Result<(), OnnxImportError> {
    let mut pos = 0;
    while pos < f.payload.len() {
        let v =
            ffem_data::protobuf::get_varint(f.payload, &mut pos).map_err(|e| malformed(name, e))?;
        into.push(v as usize);
    }
    Ok(())
}

/// `DequantizeLinear(x, scale, zero_point)` on constants: `(x - zero_point) * scale`, with the
/// scale per tensor (one value), per axis (one per index of `axis`) or per block (`x`'s shape
/// with `axis` divided by `block_size`, rounded up).
fn dequantize(
    x: &Constant,
    scale: &Constant,
    zero: Option<&Constant>,
    axis: i64,
    block_size: usize,
    node: &str,
) -> Result<Vec<f32>, OnnxImportError> {
    let bad =
        |what: String| OnnxImportError::Malformed(format!("DequantizeLinear `{node}`: {what}"));
    if let Some(z) = zero
        && z.values.len() != scale.values.len()
    {
        return Err(bad(format!(
            "{} zero points for {} scales",
            z.values.len(),
            scale.values.len()
        )));
    }
    let rank = x.dims.len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    if scale.values.len() == 1 {
        let (s, z) = (scale.values[0], zero.map_or(0.0, |z| z.values[0]));
        return Ok(x.values.iter().map(|&v| (v - z) * s).collect());
    }
    if !(0..rank).contains(&axis) {
        return Err(bad(format!("axis {axis} outside a rank-{rank} weight")));
    }
    let axis = axis as usize;
    // Row-major strides of x, and of the scale with the axis shrunk to its blocks.
    let block = block_size.max(1);
    let mut scale_dims = x.dims.clone();
    if block_size == 0 {
        scale_dims = vec![x.dims[axis]];
    } else {
        scale_dims[axis] = x.dims[axis].div_ceil(block);
    }
    if scale_dims.iter().product::<usize>() != scale.values.len()
        || (block_size > 0 && scale.dims != scale_dims)
    {
        return Err(bad(format!(
            "scale of shape {:?} does not fit a weight of shape {:?} (axis {axis}, block size {block_size})",
            scale.dims, x.dims
        )));
    }
    let inner: usize = x.dims[axis + 1..].iter().product();
    let along = x.dims[axis];
    let blocks = scale_dims[if block_size == 0 { 0 } else { axis }];
    let mut out = Vec::with_capacity(x.values.len());
    for (i, &v) in x.values.iter().enumerate() {
        let outer = i / (inner * along);
        let a = (i / inner) % along;
        let r = i % inner;
        let j = if block_size == 0 {
            a
        } else {
            (outer * blocks + a / block) * inner + r
        };
        out.push((v - zero.map_or(0.0, |z| z.values[j])) * scale.values[j]);
    }
    Ok(out)
}

/// A TensorProto of `data_type` holding `raw` (little-endian values) under `name`.
pub(crate) fn tensor_bytes(name: &str, dims: &[usize], data_type: u64, raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        put_varint(&mut t, 1 << 3);
        put_varint(&mut t, d as u64);
    }
    put_varint(&mut t, 2 << 3);
    put_varint(&mut t, data_type);
    put_len_field(&mut t, 8, name.as_bytes());
    put_len_field(&mut t, 9, raw);
    t
}

/// A float32 TensorProto.
pub(crate) fn float_initializer(name: &str, dims: &[usize], values: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor_bytes(name, dims, FLOAT, &raw)
}

/// Records a folded float constant for the nodes after it; returns its initializer.
fn keep_folded(
    constants: &mut HashMap<String, Constant>,
    name: &str,
    dims: Vec<usize>,
    values: Vec<f32>,
) -> Vec<u8> {
    let bytes = float_initializer(name, &dims, &values);
    constants.insert(
        name.to_string(),
        Constant {
            dims,
            values,
            data_type: FLOAT,
        },
    );
    bytes
}

/// ONNX Reshape's output dimensions (`0` copies the input's, `-1` takes the rest), or `None`
/// when the shape does not fit the element count.
fn reshaped(dims: &[usize], shape: &[f32]) -> Option<Vec<usize>> {
    let count: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &v) in shape.iter().enumerate() {
        match v as i64 {
            0 => out.push(*dims.get(i)?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => return None,
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !count.is_multiple_of(known) {
            return None;
        }
        out[i] = count / known;
    }
    (out.iter().product::<usize>() == count).then_some(out)
}

/// What [`fold_constant_dequantize`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    /// The rewritten ModelProto (the input bytes when nothing was folded).
    pub bytes: Vec<u8>,
    /// DequantizeLinear nodes (and Reshape nodes of their outputs) replaced by float constants.
    pub nodes: usize,
    /// Quantised initializers no node reads any more, removed.
    pub dropped_initializers: usize,
}

/// Replaces each `DequantizeLinear` node of the main graph whose inputs are all initializers by
/// a float initializer of the node's output name (and a `Reshape` of such a constant by the
/// reshaped constant), and drops the initializers nothing reads afterwards. Nodes on computed
/// inputs (activation quantisation) stay as they are.
pub fn fold_constant_dequantize(model: &[u8]) -> Result<Folded, OnnxImportError> {
    let parts = model_and_graph(model)?;
    let (top, graph_fields) = (parts.top, parts.graph_fields);
    let mut constants: HashMap<String, Constant> = HashMap::new();
    for init in graph_fields.iter().filter(|f| f.number == 5 && f.wire == 2) {
        if let Some((name, c)) = read_constant(init.payload)? {
            constants.insert(name, c);
        }
    }
    let mut new_constants = Vec::new();
    let mut folded_nodes = HashSet::new();
    for (index, node) in graph_fields
        .iter()
        .filter(|f| f.number == 1 && f.wire == 2)
        .enumerate()
    {
        let parts = fields(node.payload)?;
        let text = |n: u64| -> Vec<String> {
            parts
                .iter()
                .filter(|f| f.number == n && f.wire == 2)
                .map(string_of)
                .collect()
        };
        let domain = text(7);
        let op = text(4).into_iter().next().unwrap_or_default();
        if domain.first().is_some_and(|d| !d.is_empty()) {
            continue;
        }
        let (inputs, outputs) = (text(1), text(2));
        if op == "Reshape" {
            // Weights reshaped after dequantisation (per-block scales want 2-D weights).
            let (Some(data), Some(shape), Some(output)) = (
                inputs.first().and_then(|i| constants.get(i)),
                inputs.get(1).and_then(|i| constants.get(i)),
                outputs.first(),
            ) else {
                continue;
            };
            if data.data_type != FLOAT || shape.data_type != INT64 {
                continue;
            }
            let Some(dims) = reshaped(&data.dims, &shape.values) else {
                continue;
            };
            let values = data.values.clone();
            new_constants.push(keep_folded(&mut constants, output, dims, values));
            folded_nodes.insert(index);
            continue;
        }
        if op != "DequantizeLinear" {
            continue;
        }
        let name = text(3).into_iter().next().unwrap_or_default();
        let found: Vec<Option<&Constant>> = inputs
            .iter()
            .map(|i| if i.is_empty() { None } else { constants.get(i) })
            .collect();
        let (Some(Some(x)), Some(Some(scale))) = (found.first(), found.get(1)) else {
            continue;
        };
        let zero = match (inputs.get(2), found.get(2)) {
            (Some(n), Some(None)) if !n.is_empty() => continue,
            (_, Some(z)) => *z,
            _ => None,
        };
        let (mut axis, mut block_size) = (1i64, 0usize);
        for attr in sub(node.payload, 5)? {
            let a = fields(attr.payload)?;
            let attr_name = a
                .iter()
                .find(|f| f.number == 1 && f.wire == 2)
                .map(string_of);
            let value = a
                .iter()
                .find(|f| f.number == 3 && f.wire == 0)
                .map(|f| f.varint);
            match (attr_name.as_deref(), value) {
                (Some("axis"), Some(v)) => axis = v as i64,
                (Some("block_size"), Some(v)) => block_size = v as usize,
                _ => {}
            }
        }
        let Some(output) = outputs.first() else {
            continue;
        };
        let values = dequantize(x, scale, zero, axis, block_size, &name)?;
        let dims = x.dims.clone();
        new_constants.push(keep_folded(&mut constants, output, dims, values));
        folded_nodes.insert(index);
    }
    if folded_nodes.is_empty() {
        return Ok(Folded {
            bytes: model.to_vec(),
            ..Folded::default()
        });
    }
    // The graph without the folded nodes, to learn which initializers are still read.
    let mut kept = Vec::new();
    let mut node_index = 0;
    for f in &graph_fields {
        if f.number == 1 && f.wire == 2 {
            node_index += 1;
            if folded_nodes.contains(&(node_index - 1)) {
                continue;
            }
        }
        if f.number == 5 && f.wire == 2 {
            continue;
        }
        kept.extend_from_slice(f.raw);
    }
    let mut read = HashSet::new();
    names_read(&kept, &mut read)?;
    let mut new_graph = kept;
    let mut dropped_initializers = 0;
    for f in graph_fields.iter().filter(|f| f.number == 5 && f.wire == 2) {
        let name = fields(f.payload)?
            .iter()
            .find(|t| t.number == 8 && t.wire == 2)
            .map(string_of)
            .unwrap_or_default();
        if read.contains(&name) {
            new_graph.extend_from_slice(f.raw);
        } else {
            dropped_initializers += 1;
        }
    }
    for c in &new_constants {
        put_len_field(&mut new_graph, 5, c);
    }
    let mut bytes = Vec::with_capacity(model.len() * 2);
    for f in &top {
        if f.number == 7 && f.wire == 2 {
            put_len_field(&mut bytes, 7, &new_graph);
        } else {
            bytes.extend_from_slice(f.raw);
        }
    }
    Ok(Folded {
        bytes,
        nodes: folded_nodes.len(),
        dropped_initializers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(dims: &[usize], values: &[f32]) -> Constant {
        Constant {
            dims: dims.to_vec(),
            values: values.to_vec(),
            data_type: FLOAT,
        }
    }

    #[test]
    fn reshape_shapes_follow_onnx_rules() {
        assert_eq!(reshaped(&[2, 6], &[0.0, -1.0]), Some(vec![2, 6]));
        assert_eq!(reshaped(&[2, 6], &[3.0, -1.0]), Some(vec![3, 4]));
        assert_eq!(
            reshaped(&[1024, 9], &[1024.0, 1.0, 3.0, 3.0]),
            Some(vec![1024, 1, 3, 3])
        );
        assert_eq!(
            reshaped(&[2, 6], &[5.0, -1.0]),
            None,
            "12 is not a multiple of 5"
        );
        assert_eq!(reshaped(&[2, 6], &[-1.0, -1.0]), None, "one -1 at most");
        assert_eq!(
            reshaped(&[2, 6], &[4.0, 4.0]),
            None,
            "16 values asked of 12"
        );
    }

    #[test]
    fn half_floats_widen_exactly() {
        // Bit patterns from IEEE 754 binary16 tables.
        for (bits, want) in [
            (0x3c00, 1.0f32),
            (0xc000, -2.0),
            (0x3800, 0.5),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
        ] {
            assert_eq!(f16_to_f32(bits), want, "{bits:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn dequantize_per_tensor_per_axis_and_per_block_by_hand() {
        let x = constant(&[2, 4], &[1.0, -2.0, 3.0, 4.0, 5.0, 6.0, -7.0, 8.0]);
        // One scale and zero point: (x - 1) * 0.5.
        let one = dequantize(
            &x,
            &constant(&[], &[0.5]),
            Some(&constant(&[], &[1.0])),
            1,
            0,
            "t",
        )
        .unwrap();
        assert_eq!(one, vec![0.0, -1.5, 1.0, 1.5, 2.0, 2.5, -4.0, 3.5]);
        // Per axis 0 (one scale per row): row 0 * 2, row 1 * 0.25 after subtracting 2.
        let rows = dequantize(
            &x,
            &constant(&[2], &[2.0, 0.25]),
            Some(&constant(&[2], &[0.0, 2.0])),
            0,
            0,
            "r",
        )
        .unwrap();
        assert_eq!(rows, vec![2.0, -4.0, 6.0, 8.0, 0.75, 1.0, -2.25, 1.5]);
        // Per axis 1 (negative axis): one scale per column.
        let cols =
            dequantize(&x, &constant(&[4], &[1.0, 2.0, 3.0, 4.0]), None, -1, 0, "c").unwrap();
        assert_eq!(cols, vec![1.0, -4.0, 9.0, 16.0, 5.0, 12.0, -21.0, 32.0]);
        // Blocks of 3 along axis 1: columns 0-2 share a scale, column 3 starts a second block.
        let blocks = dequantize(
            &x,
            &constant(&[2, 2], &[1.0, 10.0, 0.5, 100.0]),
            None,
            1,
            3,
            "b",
        )
        .unwrap();
        assert_eq!(blocks, vec![1.0, -2.0, 3.0, 40.0, 2.5, 3.0, -3.5, 800.0]);
        // A block scale of the wrong shape is an error naming the node, not a wrong weight.
        let err = dequantize(&x, &constant(&[2, 3], &[1.0; 6]), None, 1, 3, "bad").unwrap_err();
        assert!(err.to_string().contains("`bad`"), "{err}");
    }
}
