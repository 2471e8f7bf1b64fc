//! Deployment precisions for an ONNX face model (`ffem export --precision`), as rewrites of the
//! float graph at the protobuf level:
//!
//! - fp16: every float weight stored as float16 behind a `Cast` to float. The file halves and
//!   every runtime loads it (the casts fold at load); arithmetic stays float32, because ONNX
//!   Runtime's x86 CPU kernels have no float16 convolution.
//! - int8: static quantisation in the QDQ form ONNX Runtime fuses into integer kernels.
//!   BatchNormalization after a convolution is folded into it first; each `Conv`, `Gemm` and
//!   `MatMul` with constant weights gets int8 weights (symmetric, per output channel for `Conv`
//!   and `Gemm`, per tensor for `MatMul`), an int32 bias at the input scale times the weight
//!   scale, and uint8 quantise/dequantise pairs on its input and output activations, whose
//!   ranges come from calibration (running the float graph on real aligned faces:
//!   [`activation_ranges`]).

use std::collections::{HashMap, HashSet};

use ffem_data::protobuf::{put_len_field, put_varint};
use tract_onnx::prelude::*;

use crate::onnx_fold::{Constant, FLOAT, float_initializer, read_constant, tensor_bytes};
use crate::onnx_import::{OnnxImportError, fields, names_read, string_of};

fn malformed(what: impl Into<String>) -> OnnxImportError {
    OnnxImportError::Malformed(what.into())
}

/// A node as the rewrites see it: its type, inputs, outputs, and its bytes.
struct Node {
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    raw: Vec<u8>,
}

impl Node {
    fn parse(raw: &[u8]) -> Result<Node, OnnxImportError> {
        let mut node = Node {
            op: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            raw: raw.to_vec(),
        };
        for f in fields(raw)? {
            match (f.number, f.wire) {
                (1, 2) => node.inputs.push(string_of(&f)),
                (2, 2) => node.outputs.push(string_of(&f)),
                (4, 2) => node.op = string_of(&f),
                _ => {}
            }
        }
        Ok(node)
    }

    /// A new node with integer attributes.
    fn new(op: &str, inputs: &[&str], output: &str, ints: &[(&str, i64)]) -> Node {
        let mut raw = Vec::new();
        for i in inputs {
            put_len_field(&mut raw, 1, i.as_bytes());
        }
        put_len_field(&mut raw, 2, output.as_bytes());
        put_len_field(&mut raw, 3, format!("ffem_{op}_{output}").as_bytes());
        put_len_field(&mut raw, 4, op.as_bytes());
        for (name, v) in ints {
            let mut a = Vec::new();
            put_len_field(&mut a, 1, name.as_bytes());
            put_varint(&mut a, 3 << 3);
            put_varint(&mut a, *v as u64);
            put_varint(&mut a, 20 << 3);
            put_varint(&mut a, 2); // AttributeType INT
            put_len_field(&mut raw, 5, &a);
        }
        Node {
            op: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            raw,
        }
    }

    /// The node with its inputs and outputs replaced (every other field kept).
    fn with_io(&self, inputs: &[String], outputs: &[String]) -> Result<Node, OnnxImportError> {
        let mut raw = Vec::new();
        for i in inputs {
            put_len_field(&mut raw, 1, i.as_bytes());
        }
        for o in outputs {
            put_len_field(&mut raw, 2, o.as_bytes());
        }
        for f in fields(&self.raw)? {
            if !matches!((f.number, f.wire), (1, 2) | (2, 2)) {
                raw.extend_from_slice(f.raw);
            }
        }
        Ok(Node {
            op: self.op.clone(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            raw,
        })
    }

    /// An attribute's integer (`i`) or float (`f`) value.
    fn attr(&self, name: &str) -> Result<Option<f64>, OnnxImportError> {
        for f in fields(&self.raw)? {
            if f.number != 5 || f.wire != 2 {
                continue;
            }
            let a = fields(f.payload)?;
            if a.iter()
                .any(|x| x.number == 1 && x.wire == 2 && string_of(x) == name)
            {
                if let Some(i) = a.iter().find(|x| x.number == 3 && x.wire == 0) {
                    return Ok(Some(i.varint as i64 as f64));
                }
                if let Some(v) = a.iter().find(|x| x.number == 2 && x.wire == 5) {
                    let b: [u8; 4] = v.payload.try_into().expect("4 bytes");
                    return Ok(Some(f32::from_le_bytes(b) as f64));
                }
            }
        }
        Ok(None)
    }
}

/// A graph taken apart for editing: nodes in order, float constants by name, and the model and
/// graph fields the rewrites leave alone.
struct Editable {
    /// The ModelProto's fields other than the graph, raw.
    model_rest: Vec<u8>,
    /// The GraphProto's fields other than nodes and initializers, raw.
    graph_rest: Vec<u8>,
    nodes: Vec<Node>,
    /// Initializers kept as they are (name, TensorProto bytes), in file order.
    initializers: Vec<(String, Vec<u8>)>,
    /// Float initializers by name (a subset of `initializers`), for the rewrites to read.
    floats: HashMap<String, Constant>,
    /// The model's default-domain opset.
    opset: u64,
}

impl Editable {
    fn parse(model: &[u8]) -> Result<Editable, OnnxImportError> {
        let top = fields(model)?;
        let mut model_rest = Vec::new();
        let mut graph = None;
        let mut opset = 0;
        for f in &top {
            match (f.number, f.wire) {
                (7, 2) => graph = Some(f.payload),
                (8, 2) => {
                    let op = fields(f.payload)?;
                    let domain = op.iter().find(|x| x.number == 1 && x.wire == 2);
                    if domain.is_none_or(|d| d.payload.is_empty() || d.payload == b"ai.onnx") {
                        opset = op
                            .iter()
                            .find(|x| x.number == 2 && x.wire == 0)
                            .map_or(0, |x| x.varint);
                    }
                    model_rest.extend_from_slice(f.raw);
                }
                _ => model_rest.extend_from_slice(f.raw),
            }
        }
        let graph = graph.ok_or_else(|| malformed("the model has no graph"))?;
        let mut e = Editable {
            model_rest,
            graph_rest: Vec::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            floats: HashMap::new(),
            opset,
        };
        for f in fields(graph)? {
            match (f.number, f.wire) {
                (1, 2) => e.nodes.push(Node::parse(f.payload)?),
                (5, 2) => {
                    let name = fields(f.payload)?
                        .iter()
                        .find(|t| t.number == 8 && t.wire == 2)
                        .map(string_of)
                        .unwrap_or_default();
                    if let Some((_, c)) = read_constant(f.payload)?
                        && c.data_type == FLOAT
                    {
                        e.floats.insert(name.clone(), c);
                    }
                    e.initializers.push((name, f.payload.to_vec()));
                }
                _ => e.graph_rest.extend_from_slice(f.raw),
            }
        }
        Ok(e)
    }

    fn add_initializer(&mut self, name: &str, bytes: Vec<u8>) {
        self.initializers.push((name.to_string(), bytes));
    }

    /// The names the graph's outputs carry.
    fn graph_outputs(&self) -> Result<HashSet<String>, OnnxImportError> {
        self.value_names(12)
    }

    /// The names of the graph's inputs (field 11) or outputs (field 12).
    fn value_names(&self, field: u64) -> Result<HashSet<String>, OnnxImportError> {
        let mut out = HashSet::new();
        for f in fields(&self.graph_rest)? {
            if f.number == field
                && f.wire == 2
                && let Some(n) = fields(f.payload)?
                    .iter()
                    .find(|x| x.number == 1 && x.wire == 2)
            {
                out.insert(string_of(n));
            }
        }
        Ok(out)
    }

    /// The model again, without initializers no node reads any more.
    fn write(&self) -> Result<Vec<u8>, OnnxImportError> {
        let mut graph = Vec::new();
        for n in &self.nodes {
            put_len_field(&mut graph, 1, &n.raw);
        }
        graph.extend_from_slice(&self.graph_rest);
        let mut read = HashSet::new();
        names_read(&graph, &mut read)?;
        for (name, bytes) in &self.initializers {
            if read.contains(name) {
                put_len_field(&mut graph, 5, bytes);
            }
        }
        let mut model = self.model_rest.clone();
        put_len_field(&mut model, 7, &graph);
        Ok(model)
    }
}

/// f32 to IEEE half, rounding to nearest even (overflow to infinity, underflow to zero).
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal: the implicit bit joins the mantissa, shifted into place with rounding.
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut v = m >> shift;
        if rest > half || (rest == half && v & 1 == 1) {
            v += 1;
        }
        return sign | v as u16;
    }
    let mut v = ((e as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && v & 1 == 1) {
        // A carry into the exponent is the correct rounding up (to infinity at the top).
        v += 1;
    }
    sign | v as u16
}

/// fp16 storage: every float initializer becomes float16 named `NAME.fp16`, read through a
/// `Cast` to float named as the original, so the graph computes as before. Returns the model
/// and how many weights were converted.
pub fn to_fp16_weights(model: &[u8]) -> Result<(Vec<u8>, usize), OnnxImportError> {
    let mut e = Editable::parse(model)?;
    let mut casts = Vec::new();
    let names: Vec<String> = e.floats.keys().cloned().collect();
    for name in &names {
        let c = &e.floats[name];
        let raw: Vec<u8> = c
            .values
            .iter()
            .flat_map(|v| f32_to_f16(*v).to_le_bytes())
            .collect();
        let half = format!("{name}.fp16");
        let bytes = tensor_bytes(&half, &c.dims, 10, &raw);
        e.initializers.retain(|(n, _)| n != name);
        e.add_initializer(&half, bytes);
        casts.push(Node::new("Cast", &[&half], name, &[("to", 1)]));
    }
    let n = casts.len();
    casts.append(&mut e.nodes);
    e.nodes = casts;
    Ok((e.write()?, n))
}

/// Folds each BatchNormalization that is the only reader of a `Conv` with constant weights
/// into that convolution (weights scaled per output channel, bias shifted). Returns the model
/// and how many were folded.
pub fn fold_batchnorm(model: &[u8]) -> Result<(Vec<u8>, usize), OnnxImportError> {
    let mut e = Editable::parse(model)?;
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &e.nodes {
        for i in &n.inputs {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    let outputs = e.graph_outputs()?;
    let producer: HashMap<String, usize> = e
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut folded = 0;
    let mut removed = HashSet::new();
    for b in 0..e.nodes.len() {
        let bn = &e.nodes[b];
        if bn.op != "BatchNormalization" || bn.inputs.len() < 5 || bn.outputs.len() != 1 {
            continue;
        }
        let Some(&c) = producer.get(&bn.inputs[0]) else {
            continue;
        };
        let conv = &e.nodes[c];
        let x = &bn.inputs[0];
        if conv.op != "Conv" || readers.get(x) != Some(&1) || outputs.contains(x) {
            continue;
        }
        let param = |i: usize| bn.inputs.get(i).and_then(|n| e.floats.get(n));
        let (Some(gamma), Some(beta), Some(mean), Some(var)) =
            (param(1), param(2), param(3), param(4))
        else {
            continue;
        };
        let Some(w) = conv.inputs.get(1).and_then(|n| e.floats.get(n)) else {
            continue;
        };
        let out_ch = w.dims.first().copied().unwrap_or(0);
        if [gamma, beta, mean, var]
            .iter()
            .any(|p| p.values.len() != out_ch)
            || out_ch == 0
        {
            continue;
        }
        let bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
            Some(n) => match e.floats.get(n) {
                Some(b) if b.values.len() == out_ch => b.values.clone(),
                _ => continue,
            },
            None => vec![0.0; out_ch],
        };
        let eps = bn.attr("epsilon")?.unwrap_or(1e-5) as f32;
        let per = w.values.len() / out_ch;
        let mut new_w = w.values.clone();
        let mut new_b = vec![0f32; out_ch];
        for o in 0..out_ch {
            let k = gamma.values[o] / (var.values[o] + eps).sqrt();
            new_w[o * per..(o + 1) * per]
                .iter_mut()
                .for_each(|v| *v *= k);
            new_b[o] = (bias[o] - mean.values[o]) * k + beta.values[o];
        }
        let (wn, bn_name) = (
            format!("{}.bn_folded", conv.inputs[1]),
            format!("{}.bias_bn_folded", bn.outputs[0]),
        );
        let w_dims = w.dims.clone();
        let inputs = vec![conv.inputs[0].clone(), wn.clone(), bn_name.clone()];
        let out = vec![bn.outputs[0].clone()];
        let new_conv = conv.with_io(&inputs, &out)?;
        e.add_initializer(&wn, float_initializer(&wn, &w_dims, &new_w));
        e.add_initializer(&bn_name, float_initializer(&bn_name, &[out_ch], &new_b));
        e.floats.insert(
            wn,
            Constant {
                dims: w_dims,
                values: new_w,
                data_type: FLOAT,
            },
        );
        e.floats.insert(
            bn_name,
            Constant {
                dims: vec![out_ch],
                values: new_b,
                data_type: FLOAT,
            },
        );
        e.nodes[c] = new_conv;
        removed.insert(b);
        folded += 1;
    }
    let nodes = std::mem::take(&mut e.nodes);
    e.nodes = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .map(|(_, n)| n)
        .collect();
    Ok((e.write()?, folded))
}

/// The operators whose constant weights int8 quantisation covers.
const QUANTIZED_OPS: [&str; 3] = ["Conv", "Gemm", "MatMul"];

/// The activations [`quantize_int8`] needs ranges for: the inputs and outputs of each `Conv`,
/// `Gemm` and `MatMul` with constant weights, except the graph's outputs (kept float); where a
/// `Relu` or a `Clip` from 0 is an output's only reader, that activation's output instead (the
/// activation is absorbed into the quantisation, see [`absorbed_activations`]).
pub fn tensors_to_calibrate(model: &[u8]) -> Result<Vec<String>, OnnxImportError> {
    let e = Editable::parse(model)?;
    let outputs = e.graph_outputs()?;
    let absorbed = absorbed_activations(&e, &outputs)?;
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for n in &e.nodes {
        if !is_quantized(&e, n) {
            continue;
        }
        let out = absorbed
            .get(&n.outputs[0])
            .map_or(&n.outputs[0], |(_, act_out, _)| act_out);
        for t in [&n.inputs[0], out] {
            if !e.floats.contains_key(t) && !outputs.contains(t) && seen.insert(t.clone()) {
                names.push(t.clone());
            }
        }
    }
    Ok(names)
}

fn is_quantized(e: &Editable, n: &Node) -> bool {
    QUANTIZED_OPS.contains(&n.op.as_str())
        && n.inputs.len() >= 2
        && e.floats.contains_key(&n.inputs[1])
}

/// Activations that uint8 quantisation with a zero point of 0 computes by itself: a `Relu`, or a
/// `Clip` from 0 (ReLU6), that is the only reader of a quantised operator's output. Keyed by
/// that output: the activation node's index, its output, and its upper bound (Clip's max).
/// ONNX Runtime's quantiser makes the same substitution; it lets the integer convolution's
/// output feed the next one without a float pass in between.
fn absorbed_activations(
    e: &Editable,
    graph_outputs: &HashSet<String>,
) -> Result<HashMap<String, (usize, String, f32)>, OnnxImportError> {
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in e.nodes.iter().enumerate() {
        for input in &n.inputs {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut out = HashMap::new();
    for n in e.nodes.iter().filter(|n| is_quantized(e, n)) {
        let y = &n.outputs[0];
        if graph_outputs.contains(y) {
            continue;
        }
        let Some([only]) = readers.get(y.as_str()).map(Vec::as_slice) else {
            continue;
        };
        let act = &e.nodes[*only];
        let bound = match act.op.as_str() {
            "Relu" => f32::INFINITY,
            "Clip" => {
                let value = |i: usize| {
                    act.inputs
                        .get(i)
                        .filter(|n| !n.is_empty())
                        .map(|n| e.floats.get(n).and_then(|c| c.values.first().copied()))
                };
                // Opset 11+: min and max are inputs; older Clip keeps them as attributes.
                let min = match value(1) {
                    Some(v) => v,
                    None => act.attr("min")?.map(|v| v as f32),
                };
                let max = match value(2) {
                    Some(v) => v,
                    None => act.attr("max")?.map(|v| v as f32),
                };
                match (min, max) {
                    (Some(0.0), Some(hi)) => hi,
                    _ => continue,
                }
            }
            _ => continue,
        };
        if graph_outputs.contains(&act.outputs[0]) {
            continue;
        }
        out.insert(y.clone(), (*only, act.outputs[0].clone(), bound));
    }
    Ok(out)
}

/// uint8 scale and zero point covering `[lo, hi]` and zero.
fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Static int8 quantisation in QDQ form (see the module's text), with `ranges` (min, max) for
/// every tensor of [`tensors_to_calibrate`] (a missing one is an error naming it). Run it on a
/// graph whose BatchNormalization is folded ([`fold_batchnorm`]). Returns the model and how many
/// operators were quantised.
pub fn quantize_int8(
    model: &[u8],
    ranges: &HashMap<String, (f32, f32)>,
) -> Result<(Vec<u8>, usize), OnnxImportError> {
    let mut e = Editable::parse(model)?;
    if e.opset < 13 {
        return Err(malformed(format!(
            "opset {}: per-channel DequantizeLinear needs opset 13 or later; re-export the model with a newer opset",
            e.opset
        )));
    }
    let wanted = tensors_to_calibrate(model)?;
    let absorbed = absorbed_activations(&e, &e.graph_outputs()?)?;
    let bounds: HashMap<&str, f32> = absorbed
        .values()
        .map(|(_, out, bound)| (out.as_str(), *bound))
        .collect();
    let mut params: HashMap<String, (f32, u8)> = HashMap::new();
    for t in &wanted {
        let (lo, hi) = ranges
            .get(t)
            .ok_or_else(|| malformed(format!("no calibration range for `{t}`")))?;
        let params_of = match bounds.get(t.as_str()) {
            // An absorbed activation: the zero point is 0, so negatives clamp to 0 (its ReLU).
            Some(bound) => activation_params(0.0, hi.min(*bound)),
            None => activation_params(*lo, *hi),
        };
        params.insert(t.clone(), params_of);
    }
    let skipped: HashSet<usize> = absorbed.values().map(|(i, _, _)| *i).collect();
    let graph_inputs = e.value_names(11)?;
    // The quantise/dequantise pair of tensor `t`, read as `t.dq` from then on.
    let qdq = |e: &mut Editable, t: &str| -> Vec<Node> {
        let (scale, zero) = params[t];
        let (s, z) = (format!("{t}.scale"), format!("{t}.zero"));
        e.add_initializer(&s, tensor_bytes(&s, &[], FLOAT, &scale.to_le_bytes()));
        e.add_initializer(&z, tensor_bytes(&z, &[], 2, &[zero]));
        let q = format!("{t}.q");
        vec![
            Node::new("QuantizeLinear", &[t, &s, &z], &q, &[]),
            Node::new("DequantizeLinear", &[&q, &s, &z], &format!("{t}.dq"), &[]),
        ]
    };
    let mut out: Vec<Node> = Vec::new();
    for t in &wanted {
        if graph_inputs.contains(t) {
            out.extend(qdq(&mut e, t));
        }
    }
    let nodes = std::mem::take(&mut e.nodes);
    let mut quantized = 0;
    for (index, node) in nodes.into_iter().enumerate() {
        if skipped.contains(&index) {
            continue;
        }
        let is_target = is_quantized(&e, &node);
        let mut inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|i| {
                if params.contains_key(i) {
                    format!("{i}.dq")
                } else {
                    i.clone()
                }
            })
            .collect();
        if is_target {
            let w_name = node.inputs[1].clone();
            let w = e.floats[&w_name].clone();
            // Per output channel: Conv's axis 0, Gemm's output axis; MatMul per tensor.
            let axis = match node.op.as_str() {
                "Conv" => Some(0),
                "Gemm" if node.attr("transB")?.unwrap_or(0.0) != 0.0 => Some(0),
                "Gemm" => Some(1),
                _ => None,
            };
            let (channels, inner, stride_outer) = match axis {
                Some(0) => (w.dims[0], w.values.len() / w.dims[0].max(1), 1),
                Some(_) if w.dims.len() == 2 => (w.dims[1], 1, w.dims[1]),
                _ => (1, w.values.len(), 1),
            };
            let channel_of = |i: usize| match axis {
                Some(0) => i / inner,
                Some(_) => i % stride_outer,
                None => 0,
            };
            let mut max_abs = vec![0f32; channels];
            for (i, v) in w.values.iter().enumerate() {
                let c = channel_of(i);
                max_abs[c] = max_abs[c].max(v.abs());
            }
            let w_scale: Vec<f32> = max_abs
                .iter()
                .map(|m| if *m > 0.0 { m / 127.0 } else { 1.0 })
                .collect();
            let q: Vec<u8> = w
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (v / w_scale[channel_of(i)]).round().clamp(-127.0, 127.0) as i8 as u8)
                .collect();
            let dims = w.dims.clone();
            let (wq, ws, wz) = (
                format!("{w_name}.int8"),
                format!("{w_name}.int8_scale"),
                format!("{w_name}.int8_zero"),
            );
            let scale_dims: Vec<usize> = if axis.is_some() {
                vec![channels]
            } else {
                vec![]
            };
            let scale_raw: Vec<u8> = w_scale.iter().flat_map(|v| v.to_le_bytes()).collect();
            e.add_initializer(&wq, tensor_bytes(&wq, &dims, 3, &q));
            e.add_initializer(&ws, tensor_bytes(&ws, &scale_dims, FLOAT, &scale_raw));
            e.add_initializer(&wz, tensor_bytes(&wz, &scale_dims, 3, &vec![0u8; channels]));
            let attrs: Vec<(&str, i64)> = axis.map(|a| vec![("axis", a)]).unwrap_or_default();
            let w_dq = format!("{w_name}.dq");
            out.push(Node::new(
                "DequantizeLinear",
                &[&wq, &ws, &wz],
                &w_dq,
                &attrs,
            ));
            inputs[1] = w_dq;
            // The bias at the input scale times each channel's weight scale, as int32.
            let x_scale = params.get(&node.inputs[0]).map(|p| p.0);
            if let (Some(b_name), Some(x_scale)) =
                (node.inputs.get(2).filter(|b| !b.is_empty()), x_scale)
                && let Some(b) = e.floats.get(b_name).cloned()
                && b.values.len() == channels
                && axis.is_some()
            {
                let b_scale: Vec<f32> = w_scale.iter().map(|s| s * x_scale).collect();
                let bq: Vec<u8> = b
                    .values
                    .iter()
                    .zip(&b_scale)
                    .flat_map(|(v, s)| ((v / s).round() as i32).to_le_bytes())
                    .collect();
                let (bqn, bsn, bzn) = (
                    format!("{b_name}.int32"),
                    format!("{b_name}.int32_scale"),
                    format!("{b_name}.int32_zero"),
                );
                let bs_raw: Vec<u8> = b_scale.iter().flat_map(|v| v.to_le_bytes()).collect();
                e.add_initializer(&bqn, tensor_bytes(&bqn, &[channels], 6, &bq));
                e.add_initializer(&bsn, tensor_bytes(&bsn, &[channels], FLOAT, &bs_raw));
                e.add_initializer(
                    &bzn,
                    tensor_bytes(&bzn, &[channels], 6, &vec![0u8; 4 * channels]),
                );
                let b_dq = format!("{b_name}.dq");
                out.push(Node::new(
                    "DequantizeLinear",
                    &[&bqn, &bsn, &bzn],
                    &b_dq,
                    &[("axis", 0)],
                ));
                inputs[2] = b_dq;
            }
            quantized += 1;
        }
        let outputs: Vec<String> = node
            .outputs
            .iter()
            .map(|o| {
                absorbed
                    .get(o)
                    .map_or(o.clone(), |(_, act_out, _)| act_out.clone())
            })
            .collect();
        let rewritten = node.with_io(&inputs, &outputs)?;
        let produced: Vec<String> = outputs
            .iter()
            .filter(|o| params.contains_key(*o))
            .cloned()
            .collect();
        out.push(rewritten);
        for t in produced {
            out.extend(qdq(&mut e, &t));
        }
    }
    e.nodes = out;
    Ok((e.write()?, quantized))
}

/// Each tensor's (min, max) over `n` images (`n` x 3 x S x S, already in the graph's input
/// convention), the float graph run by tract with those tensors as its outputs, 16 images at
/// a time.
pub fn activation_ranges(
    model: &[u8],
    tensors: &[String],
    image_size: usize,
    images: &[f32],
    n: usize,
) -> Result<HashMap<String, (f32, f32)>, String> {
    let s = image_size;
    let plane = 3 * s * s;
    let batch = 16.min(n.max(1));
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .and_then(|m| m.with_outputs_by_name(tensors))
        .and_then(|m| m.with_input_fact(0, f32::fact([batch, 3, s, s]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract cannot run the graph for calibration: {e:#}"))?;
    let mut ranges: HashMap<String, (f32, f32)> = tensors
        .iter()
        .map(|t| (t.clone(), (f32::INFINITY, f32::NEG_INFINITY)))
        .collect();
    for start in (0..n).step_by(batch) {
        let m = (n - start).min(batch);
        let mut data = images[start * plane..(start + m) * plane].to_vec();
        // A short last batch repeats its first image: the ranges stay those of real faces.
        while data.len() < batch * plane {
            data.extend_from_within(0..plane);
        }
        let input = tract_ndarray::Array4::from_shape_vec((batch, 3, s, s), data)
            .map_err(|e| e.to_string())?;
        let outs = plan
            .run(tvec!(Tensor::from(input).into()))
            .map_err(|e| format!("{e:#}"))?;
        for (t, v) in tensors.iter().zip(outs.iter()) {
            let view = v
                .to_plain_array_view::<f32>()
                .map_err(|e| format!("`{t}`: {e:#}"))?;
            let r = ranges.get_mut(t).expect("every tensor has a range");
            for x in view.iter() {
                r.0 = r.0.min(*x);
                r.1 = r.1.max(*x);
            }
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::f32_to_f16;

    #[test]
    fn singles_round_to_the_nearest_half() {
        // Bit patterns from IEEE 754 binary16 tables; 0.1 rounds to 0x2e66 (0.0999755859375).
        for (x, bits) in [
            (1.0f32, 0x3c00u16),
            (-2.0, 0xc000),
            (0.1, 0x2e66),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00),
            (2f32.powi(-24), 0x0001),
            (1e-9, 0x0000),
            (f32::NEG_INFINITY, 0xfc00),
        ] {
            assert_eq!(f32_to_f16(x), bits, "{x}");
        }
        // Halfway between 1 and the next half (1 + 2^-10) rounds to the even one, 1.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(f32::NAN) & 0x7c00, 0x7c00);
    }
}
