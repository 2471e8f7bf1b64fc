//! A tiny ONNX face "model" written byte by byte, with the quirks of old converted models (an
//! input no node reads, an initializer listed as an input, a batch fixed at 1, a shape hint that
//! pins it) and an int8 weight with per-block scales (DequantizeLinear, opset 21), whose output
//! is known by hand: embedding = 2 * mean_pixels(image) x dequantized(W).
#![allow(dead_code)]

// The protobuf wire primitives ffem's ONNX reader and writer use.
use ffem_data::protobuf::{put_len_field, put_varint};

fn field_int(out: &mut Vec<u8>, number: u64, v: u64) {
    put_varint(out, number << 3);
    put_varint(out, v);
}

/// ValueInfoProto of a float tensor; `None` dims are symbolic.
fn value_info(name: &str, dims: &[Option<u64>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => field_int(&mut dim, 1, *v),
            None => put_len_field(&mut dim, 2, b"n"),
        }
        put_len_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    field_int(&mut tensor, 1, 1);
    put_len_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    put_len_field(&mut ty, 1, &tensor);
    let mut out = Vec::new();
    put_len_field(&mut out, 1, name.as_bytes());
    put_len_field(&mut out, 2, &ty);
    out
}

fn initializer(name: &str, dims: &[u64], data_type: u64, raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    for d in dims {
        field_int(&mut t, 1, *d);
    }
    field_int(&mut t, 2, data_type);
    put_len_field(&mut t, 8, name.as_bytes());
    put_len_field(&mut t, 9, raw);
    t
}

fn node(op: &str, inputs: &[&str], output: &str, int_attrs: &[(&str, u64)]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        put_len_field(&mut n, 1, i.as_bytes());
    }
    put_len_field(&mut n, 2, output.as_bytes());
    put_len_field(&mut n, 3, format!("{op}_{output}").as_bytes());
    put_len_field(&mut n, 4, op.as_bytes());
    for (name, v) in int_attrs {
        let mut a = Vec::new();
        put_len_field(&mut a, 1, name.as_bytes());
        field_int(&mut a, 3, *v);
        field_int(&mut a, 20, 2); // AttributeType INT
        put_len_field(&mut n, 5, &a);
    }
    n
}

/// int8 weight, 3 x 4, row-major.
pub const W_Q: [[i8; 4]; 3] = [[1, -2, 3, 4], [5, 6, -7, 8], [-9, 10, 11, 12]];
/// Per-block scales along axis 1, block size 2: 3 x 2.
pub const W_SCALE: [[f32; 2]; 3] = [[0.5, 0.25], [0.125, 1.0], [0.0625, 0.75]];
/// The initializer that is also listed as a graph input.
pub const GAIN: f32 = 2.0;
/// Image side.
pub const SIDE: u64 = 2;

/// The model's bytes: input `image` [1, 3, 2, 2], output `embedding` [1, 4].
pub fn tiny_face_model() -> Vec<u8> {
    tiny_face_model_with_batch(1)
}

/// The same with the batch fixed at `batch` on the input, the output and the shape hint.
pub fn tiny_face_model_with_batch(batch: u64) -> Vec<u8> {
    tiny_face_model_sized(batch, SIDE)
}

/// The same with the batch fixed at `batch` and images of `side` x `side` (the output does not
/// depend on the side: the graph averages the pixels first).
pub fn tiny_face_model_sized(batch: u64, side: u64) -> Vec<u8> {
    let s = Some(side);
    build(batch, &[Some(1), Some(3), s, s], false)
}

/// Not a face model as ffem feeds one: the image input declared with `image_dims` (a rank-3
/// input, say), and with `extra_output` a second graph output (`pooled`) beside `embedding`.
pub fn tiny_face_model_odd(image_dims: &[Option<u64>], extra_output: bool) -> Vec<u8> {
    build(1, image_dims, extra_output)
}

fn build(batch: u64, image_dims: &[Option<u64>], extra_output: bool) -> Vec<u8> {
    let mut g = Vec::new();
    g.extend(bytes_of(
        1,
        &node("GlobalAveragePool", &["image"], "pooled", &[]),
    ));
    g.extend(bytes_of(
        1,
        &node("Flatten", &["pooled"], "flat", &[("axis", 1)]),
    ));
    g.extend(bytes_of(
        1,
        &node(
            "DequantizeLinear",
            &["w_q", "w_scale"],
            "w",
            &[("axis", 1), ("block_size", 2)],
        ),
    ));
    g.extend(bytes_of(1, &node("MatMul", &["flat", "w"], "mm", &[])));
    g.extend(bytes_of(1, &node("Mul", &["mm", "gain"], "embedding", &[])));
    put_len_field(&mut g, 2, b"tiny");
    let q: Vec<u8> = W_Q.iter().flatten().map(|v| *v as u8).collect();
    g.extend(bytes_of(5, &initializer("w_q", &[3, 4], 3, &q)));
    let s: Vec<u8> = W_SCALE
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    g.extend(bytes_of(5, &initializer("w_scale", &[3, 2], 1, &s)));
    g.extend(bytes_of(
        5,
        &initializer("gain", &[1], 1, &GAIN.to_le_bytes()),
    ));
    g.extend(bytes_of(11, &value_info("image", image_dims)));
    g.extend(bytes_of(11, &value_info("unused_weights", &[Some(4)])));
    g.extend(bytes_of(11, &value_info("gain", &[Some(1)])));
    g.extend(bytes_of(
        12,
        &value_info("embedding", &[Some(batch), Some(4)]),
    ));
    if extra_output {
        g.extend(bytes_of(
            12,
            &value_info("pooled", &[Some(batch), Some(3), Some(1), Some(1)]),
        ));
    }
    g.extend(bytes_of(13, &value_info("flat", &[Some(batch), Some(3)])));
    let mut m = Vec::new();
    field_int(&mut m, 1, 10); // ir_version
    put_len_field(&mut m, 2, b"ffem-test");
    put_len_field(&mut m, 7, &g);
    let mut opset = Vec::new();
    put_len_field(&mut opset, 1, b"");
    field_int(&mut opset, 2, 21);
    put_len_field(&mut m, 8, &opset);
    m
}

fn bytes_of(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len_field(&mut out, number, payload);
    out
}

/// The expected embedding, in f64, for per-channel mean pixel values already in the model's
/// order and scaling: 2 * sum_c mean[c] * q[c][j] * scale[c][j / 2].
pub fn expected_embedding(channel_means: [f64; 3]) -> [f64; 4] {
    let mut out = [0.0; 4];
    for (j, o) in out.iter_mut().enumerate() {
        for c in 0..3 {
            *o += channel_means[c] * W_Q[c][j] as f64 * W_SCALE[c][j / 2] as f64;
        }
        *o *= GAIN as f64;
    }
    out
}

/// Asserts that `got` (one image's 4 outputs) is [`expected_embedding`] of `channel_means`, to
/// 1e-4 relative (absolute below 1); `what` names the image in the message.
pub fn assert_expected_embedding(got: &[f32], channel_means: [f64; 3], what: &str) {
    let want = expected_embedding(channel_means);
    assert_eq!(got.len(), 4, "{what}");
    for j in 0..4 {
        let g = got[j] as f64;
        assert!(
            (g - want[j]).abs() <= 1e-4 * want[j].abs().max(1.0),
            "{what} value {j}: {g} vs {want:?}"
        );
    }
}

fn float_init(name: &str, dims: &[u64], values: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    initializer(name, dims, 1, &raw)
}

fn float_attr_node(op: &str, inputs: &[&str], output: &str, name: &str, value: f32) -> Vec<u8> {
    let mut n = node(op, inputs, output, &[]);
    let mut a = Vec::new();
    put_len_field(&mut a, 1, name.as_bytes());
    put_varint(&mut a, (2 << 3) | 5);
    a.extend_from_slice(&value.to_le_bytes());
    field_int(&mut a, 20, 1); // AttributeType FLOAT
    put_len_field(&mut n, 5, &a);
    n
}

/// A two-convolution graph, opset 13: `x` [N, 3, 3, 3] -> Conv (1x1, 3 to 2 channels, bias) -> BatchNormalization
/// -> Clip(0, 6) -> Conv (1x1, no bias) -> `out` [N, 2, 3, 3]. Its float output is computed by
/// [`conv_bn_expected`].
pub fn conv_bn_model() -> Vec<u8> {
    let mut g = Vec::new();
    g.extend(bytes_of(1, &node("Conv", &["x", "w1", "b1"], "y", &[])));
    g.extend(bytes_of(
        1,
        &float_attr_node(
            "BatchNormalization",
            &["y", "gamma", "beta", "mean", "var"],
            "z",
            "epsilon",
            1e-3,
        ),
    ));
    g.extend(bytes_of(1, &node("Clip", &["z", "lo", "hi"], "r", &[])));
    g.extend(bytes_of(1, &node("Conv", &["r", "w2"], "out", &[])));
    put_len_field(&mut g, 2, b"conv_bn");
    for (name, dims, values) in conv_bn_weights() {
        g.extend(bytes_of(5, &float_init(name, &dims, &values)));
    }
    g.extend(bytes_of(
        11,
        &value_info("x", &[None, Some(3), Some(3), Some(3)]),
    ));
    g.extend(bytes_of(
        12,
        &value_info("out", &[None, Some(2), Some(3), Some(3)]),
    ));
    let mut m = Vec::new();
    field_int(&mut m, 1, 8);
    put_len_field(&mut m, 7, &g);
    let mut opset = Vec::new();
    put_len_field(&mut opset, 1, b"");
    field_int(&mut opset, 2, 13);
    put_len_field(&mut m, 8, &opset);
    m
}

/// The weights of [`conv_bn_model`]: (name, dims, values).
pub fn conv_bn_weights() -> Vec<(&'static str, Vec<u64>, Vec<f32>)> {
    vec![
        (
            "w1",
            vec![2, 3, 1, 1],
            vec![0.5, -1.0, 0.75, 2.0, 0.25, -0.5],
        ),
        ("b1", vec![2], vec![0.1, -0.2]),
        ("gamma", vec![2], vec![1.5, 0.8]),
        ("beta", vec![2], vec![0.3, -0.1]),
        ("mean", vec![2], vec![0.2, -0.4]),
        ("var", vec![2], vec![0.5, 2.0]),
        ("lo", vec![], vec![0.0]),
        ("hi", vec![], vec![6.0]),
        ("w2", vec![2, 2, 1, 1], vec![1.0, 0.5, -0.75, 2.0]),
    ]
}

/// [`conv_bn_model`]'s output for one pixel's three input channels, computed in f64 from the
/// definitions (1x1 convolutions act per pixel).
pub fn conv_bn_expected(x: [f64; 3]) -> [f64; 2] {
    let w: std::collections::HashMap<&str, Vec<f64>> = conv_bn_weights()
        .into_iter()
        .map(|(n, _, v)| (n, v.iter().map(|&x| x as f64).collect()))
        .collect();
    let mut r = [0.0; 2];
    for o in 0..2 {
        let y = (0..3).map(|c| w["w1"][3 * o + c] * x[c]).sum::<f64>() + w["b1"][o];
        let z = (y - w["mean"][o]) / (w["var"][o] + 1e-3f32 as f64).sqrt() * w["gamma"][o]
            + w["beta"][o];
        r[o] = z.clamp(0.0, 6.0);
    }
    [
        w["w2"][0] * r[0] + w["w2"][1] * r[1],
        w["w2"][2] * r[0] + w["w2"][3] * r[1],
    ]
}
