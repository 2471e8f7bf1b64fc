//! ONNX export of the embedding network (no classifier): BatchNorm folded into the convolution
//! before it, input `data` float32 [N, 3, S, S] with dynamic N, output `embedding` [N, D]
//! (un-normalised, as insightface exports). Opset 14 (for HardSwish). The protobuf is written by
//! hand from onnx.proto: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
//! ValueInfoProto.

use std::path::Path;

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use crate::backbones::mobilenet_v3::{Act, ConvBn};
use crate::model::{EmbeddingModel, ModelConfig, ModelError, write_atomic};

// The protobuf primitives are the ones the tf.train.Example codec uses.
use ffem_data::protobuf::{put_len_field as field_bytes, put_varint as varint};

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn field_f32(out: &mut Vec<u8>, field: u64, v: f32) {
    varint(out, (field << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// An attribute value.
enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

fn attribute(name: &str, a: &Attr) -> Vec<u8> {
    let mut out = Vec::new();
    field_bytes(&mut out, 1, name.as_bytes());
    match a {
        Attr::Float(f) => {
            field_f32(&mut out, 2, *f);
            field_varint(&mut out, 20, 1);
        }
        Attr::Int(i) => {
            field_varint(&mut out, 3, *i as u64);
            field_varint(&mut out, 20, 2);
        }
        Attr::Ints(v) => {
            for i in v {
                field_varint(&mut out, 8, *i as u64);
            }
            field_varint(&mut out, 20, 7);
        }
    }
    out
}

/// Accumulates nodes and initializers.
struct Graph {
    nodes: Vec<Vec<u8>>,
    inits: Vec<Vec<u8>>,
    counter: usize,
}

impl Graph {
    fn name(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}_{}", self.counter)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out_name = self.name(&op.to_lowercase());
        let mut n = Vec::new();
        for i in inputs {
            field_bytes(&mut n, 1, i.as_bytes());
        }
        field_bytes(&mut n, 2, out_name.as_bytes());
        field_bytes(&mut n, 3, out_name.as_bytes());
        field_bytes(&mut n, 4, op.as_bytes());
        for (k, v) in attrs {
            field_bytes(&mut n, 5, &attribute(k, v));
        }
        self.nodes.push(n);
        out_name
    }

    fn tensor_f32(&mut self, base: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "{base}: shape and data disagree"
        );
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(base, dims, 1, &raw)
    }

    fn tensor_i64(&mut self, base: &str, data: &[i64]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(base, &[data.len()], 7, &raw)
    }

    /// Adds a TensorProto initializer: dims (1), ONNX data type (2: 1 = float, 7 = int64), name
    /// (8), little-endian raw data (9).
    fn initializer(&mut self, base: &str, dims: &[usize], data_type: u64, raw: &[u8]) -> String {
        let name = self.name(base);
        let mut t = Vec::new();
        for d in dims {
            field_varint(&mut t, 1, *d as u64);
        }
        field_varint(&mut t, 2, data_type);
        field_bytes(&mut t, 8, name.as_bytes());
        field_bytes(&mut t, 9, raw);
        self.inits.push(t);
        name
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> (Vec<f32>, Vec<usize>) {
    let t = p.val();
    let dims = t.dims().to_vec();
    (values(t), dims)
}

/// Per-channel scale and shift of an inference-mode BatchNorm.
fn bn_affine(bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let gamma = param(&bn.gamma).0;
    let beta = param(&bn.beta).0;
    let mean = values(bn.running_mean.value());
    let var = values(bn.running_var.value());
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + bn.epsilon as f32).sqrt())
        .collect();
    let shift: Vec<f32> = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

fn conv_node(g: &mut Graph, x: &str, conv: &Conv2d, fold: Option<&BatchNorm>) -> String {
    let (mut w, dims) = param(&conv.weight);
    let cout = dims[0];
    let per_out = w.len() / cout;
    let mut b = conv
        .bias
        .as_ref()
        .map(|b| param(b).0)
        .unwrap_or_else(|| vec![0.0; cout]);
    if let Some(bn) = fold {
        let (scale, shift) = bn_affine(bn);
        for o in 0..cout {
            w[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|v| *v *= scale[o]);
            b[o] = b[o] * scale[o] + shift[o];
        }
    }
    let wn = g.tensor_f32("w", &dims, &w);
    let bn_ = g.tensor_f32("b", &[cout], &b);
    let p = match &conv.padding {
        burn::nn::PaddingConfig2d::Explicit(t, l, bo, r) => {
            vec![*t as i64, *l as i64, *bo as i64, *r as i64]
        }
        _ => vec![0, 0, 0, 0],
    };
    g.node(
        "Conv",
        &[x, &wn, &bn_],
        &[
            (
                "kernel_shape",
                Attr::Ints(vec![dims[2] as i64, dims[3] as i64]),
            ),
            (
                "strides",
                Attr::Ints(conv.stride.iter().map(|&s| s as i64).collect()),
            ),
            ("pads", Attr::Ints(p)),
            ("group", Attr::Int(conv.groups as i64)),
            (
                "dilations",
                Attr::Ints(conv.dilation.iter().map(|&d| d as i64).collect()),
            ),
        ],
    )
}

fn act_node(g: &mut Graph, x: &str, act: Act) -> String {
    match act {
        Act::Relu => g.node("Relu", &[x], &[]),
        Act::Relu6 => {
            let lo = g.tensor_f32("zero", &[], &[0.0]);
            let hi = g.tensor_f32("six", &[], &[6.0]);
            g.node("Clip", &[x, &lo, &hi], &[])
        }
        Act::HardSwish => g.node("HardSwish", &[x], &[]),
    }
}

fn conv_bn(g: &mut Graph, x: &str, m: &ConvBn) -> String {
    let y = conv_node(g, x, &m.conv, Some(&m.bn));
    match m.act {
        Some(a) => act_node(g, &y, a),
        None => y,
    }
}

/// Applies an inference BatchNorm as `x * scale + shift` with constants broadcast over `shape`.
fn bn_mul_add(g: &mut Graph, x: &str, bn: &BatchNorm, shape: &[usize]) -> String {
    let (scale, shift) = bn_affine(bn);
    let s = g.tensor_f32("bn_scale", shape, &scale);
    let t = g.tensor_f32("bn_shift", shape, &shift);
    let y = g.node("Mul", &[x, &s], &[]);
    g.node("Add", &[&y, &t], &[])
}

fn linear(g: &mut Graph, x: &str, l: &burn::nn::Linear) -> String {
    // burn stores Linear weights as [in, out]: x @ W.
    let (w, dims) = param(&l.weight);
    let wn = g.tensor_f32("fc_w", &dims, &w);
    let y = g.node("MatMul", &[x, &wn], &[]);
    match &l.bias {
        Some(b) => {
            let (bv, bd) = param(b);
            let bn = g.tensor_f32("fc_b", &bd, &bv);
            g.node("Add", &[&y, &bn], &[])
        }
        None => y,
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => field_varint(&mut dim, 1, *v as u64),
            None => field_bytes(&mut dim, 2, b"N"),
        }
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor_type = Vec::new();
    field_varint(&mut tensor_type, 1, 1);
    field_bytes(&mut tensor_type, 2, &shape);
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor_type);
    let mut vi = Vec::new();
    field_bytes(&mut vi, 1, name.as_bytes());
    field_bytes(&mut vi, 2, &ty);
    vi
}

/// Serialises the model as ONNX bytes.
pub fn to_onnx(model: &EmbeddingModel, cfg: &ModelConfig) -> Vec<u8> {
    let model = burn::module::Module::valid(model);
    let mut g = Graph {
        nodes: vec![],
        inits: vec![],
        counter: 0,
    };
    let mut x = conv_bn(&mut g, "data", &model.backbone.stem);
    for b in &model.backbone.blocks {
        let input = x.clone();
        let mut y = match &b.expand {
            Some(e) => conv_bn(&mut g, &x, e),
            None => x.clone(),
        };
        y = conv_bn(&mut g, &y, &b.depthwise);
        if let Some(se) = &b.se {
            let s = g.node("GlobalAveragePool", &[&y], &[]);
            let s = conv_node(&mut g, &s, &se.fc1, None);
            let s = g.node("Relu", &[&s], &[]);
            let s = conv_node(&mut g, &s, &se.fc2, None);
            let s = g.node(
                "HardSigmoid",
                &[&s],
                &[
                    ("alpha", Attr::Float(1.0 / 6.0)),
                    ("beta", Attr::Float(0.5)),
                ],
            );
            y = g.node("Mul", &[&y, &s], &[]);
        }
        y = conv_bn(&mut g, &y, &b.project);
        x = if b.residual {
            g.node("Add", &[&y, &input], &[])
        } else {
            y
        };
    }
    x = conv_bn(&mut g, &x, &model.backbone.last);
    let c = cfg.backbone.out_channels();
    let d = cfg.embedding_dim;
    let emb = if let Some(h) = &model.gnap {
        let x = bn_mul_add(&mut g, &x, &h.bn_in, &[1, c, 1, 1]);
        let sq = g.node("Mul", &[&x, &x], &[]);
        let axes1 = g.tensor_i64("axes", &[1]);
        let ss = g.node("ReduceSum", &[&sq, &axes1], &[("keepdims", Attr::Int(1))]);
        let norm = g.node("Sqrt", &[&ss], &[]);
        let mean = g.node(
            "ReduceMean",
            &[&norm],
            &[("axes", Attr::Ints(vec![2, 3])), ("keepdims", Attr::Int(1))],
        );
        let eps = g.tensor_f32("eps", &[], &[1e-6]);
        let denom = g.node("Add", &[&norm, &eps], &[]);
        let w = g.node("Div", &[&mean, &denom], &[]);
        let xw = g.node("Mul", &[&x, &w], &[]);
        let pooled = g.node("GlobalAveragePool", &[&xw], &[]);
        let flat = g.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))]);
        let e = match &h.fc {
            Some(fc) => linear(&mut g, &flat, fc),
            None => flat,
        };
        bn_mul_add(&mut g, &e, &h.bn_out, &[1, d])
    } else if let Some(h) = &model.gdc {
        let x = conv_bn(&mut g, &x, &h.reduce);
        let x = conv_node(&mut g, &x, &h.gdconv, Some(&h.bn_dw));
        let flat = g.node("Flatten", &[&x], &[("axis", Attr::Int(1))]);
        let e = linear(&mut g, &flat, &h.fc);
        bn_mul_add(&mut g, &e, &h.bn_out, &[1, d])
    } else {
        let h = model.flatten.as_ref().expect("a head");
        let t = g.node(
            "Transpose",
            &[&x],
            &[("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
        let flat = g.node("Flatten", &[&t], &[("axis", Attr::Int(1))]);
        let e = linear(&mut g, &flat, &h.fc);
        bn_mul_add(&mut g, &e, &h.bn_out, &[1, d])
    };
    // The graph's output must carry the name `embedding`.
    let mut n = Vec::new();
    field_bytes(&mut n, 1, emb.as_bytes());
    field_bytes(&mut n, 2, b"embedding");
    field_bytes(&mut n, 3, b"embedding");
    field_bytes(&mut n, 4, b"Identity");
    g.nodes.push(n);

    let s = cfg.image_size;
    let mut graph = Vec::new();
    for n in &g.nodes {
        field_bytes(&mut graph, 1, n);
    }
    field_bytes(&mut graph, 2, b"ffem_embedding");
    for t in &g.inits {
        field_bytes(&mut graph, 5, t);
    }
    field_bytes(
        &mut graph,
        11,
        &value_info("data", &[None, Some(3), Some(s), Some(s)]),
    );
    field_bytes(&mut graph, 12, &value_info("embedding", &[None, Some(d)]));
    let mut model_bytes = Vec::new();
    field_varint(&mut model_bytes, 1, 8); // ir_version
    field_bytes(&mut model_bytes, 2, b"ffem");
    field_bytes(&mut model_bytes, 3, env!("CARGO_PKG_VERSION").as_bytes());
    field_bytes(&mut model_bytes, 7, &graph);
    let mut opset = Vec::new();
    field_bytes(&mut opset, 1, b"");
    field_varint(&mut opset, 2, 14);
    field_bytes(&mut model_bytes, 8, &opset);
    model_bytes
}

/// Writes the model as ONNX to `path` (atomically).
pub fn export_onnx(
    path: &Path,
    model: &EmbeddingModel,
    cfg: &ModelConfig,
) -> Result<(), ModelError> {
    write_atomic(path, &to_onnx(model, cfg))
}
