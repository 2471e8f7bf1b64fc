//! External ONNX face models (`ffem import`, and the model directories it writes): the graph is
//! read at the protobuf wire level and rewritten so that any runtime accepts it for batched
//! inference, and the input convention (channel order, pixel scaling) maps ffem's prepared crops
//! to what the model was trained on.
//!
//! Why a rewrite: models converted years ago (OpenCV's SFace, MXNet exports) list their
//! initializers as graph inputs, keep graph inputs that no node reads (ONNX Runtime then demands a
//! value for each), and fix the batch size at 1. [`prepare_external`] drops unused inputs, leaves
//! initializer inputs as constants, and makes a fixed batch of 1 symbolic; it touches nothing
//! else (every other field is copied byte for byte), and it says what it changed.

use std::collections::HashSet;

use ffem_data::protobuf::{get_varint, put_len_field};
use thiserror::Error;

/// Why an external ONNX graph cannot be used.
#[derive(Debug, Error)]
pub enum OnnxImportError {
    /// The bytes are not a protobuf ModelProto.
    #[error("not an ONNX model: {0}")]
    Malformed(String),
    /// The graph does not have the one image input ffem can feed.
    #[error("{0}")]
    Inputs(String),
    /// The named or only output is not usable.
    #[error("{0}")]
    Outputs(String),
}

/// One protobuf field as it appears in the message: number, wire type, payload, and the whole
/// encoded field (tag included) so untouched fields are copied exactly.
pub(crate) struct Field<'a> {
    pub(crate) number: u64,
    pub(crate) wire: u8,
    pub(crate) payload: &'a [u8],
    pub(crate) varint: u64,
    pub(crate) raw: &'a [u8],
}

pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, OnnxImportError> {
    get_varint(buf, pos).map_err(OnnxImportError::Malformed)
}

pub(crate) fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, OnnxImportError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        let (payload, varint) = match wire {
            0 => {
                let v = read_varint(buf, &mut pos)?;
                (&buf[pos..pos], v)
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let end = pos + n;
                if end > buf.len() {
                    return Err(OnnxImportError::Malformed(format!(
                        "field {number} runs past the end"
                    )));
                }
                let p = &buf[pos..end];
                pos = end;
                (p, 0)
            }
            2 => {
                let len = read_varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| {
                        OnnxImportError::Malformed(format!(
                            "field {number} declares {len} bytes, more than remain"
                        ))
                    })?;
                let p = &buf[pos..end];
                pos = end;
                (p, 0)
            }
            w => {
                return Err(OnnxImportError::Malformed(format!(
                    "field {number} has wire type {w}, which ONNX does not use"
                )));
            }
        };
        out.push(Field {
            number,
            wire,
            payload,
            varint,
            raw: &buf[start..pos],
        });
    }
    Ok(out)
}

pub(crate) fn string_of(f: &Field) -> String {
    String::from_utf8_lossy(f.payload).into_owned()
}

pub(crate) fn sub<'a>(buf: &'a [u8], number: u64) -> Result<Vec<Field<'a>>, OnnxImportError> {
    Ok(fields(buf)?
        .into_iter()
        .filter(|f| f.number == number && f.wire == 2)
        .collect())
}

/// A ModelProto taken apart: its fields, its graph's bytes and the graph's fields (the error
/// names a model without a graph).
pub(crate) struct ModelParts<'a> {
    pub(crate) top: Vec<Field<'a>>,
    pub(crate) graph: &'a [u8],
    pub(crate) graph_fields: Vec<Field<'a>>,
}

pub(crate) fn model_and_graph(model: &[u8]) -> Result<ModelParts<'_>, OnnxImportError> {
    let top = fields(model)?;
    let graph = top
        .iter()
        .find(|f| f.number == 7 && f.wire == 2)
        .ok_or_else(|| OnnxImportError::Malformed("the model has no graph".into()))?
        .payload;
    let graph_fields = fields(graph)?;
    Ok(ModelParts {
        top,
        graph,
        graph_fields,
    })
}

/// Names every node of `graph` (and of its subgraphs, which may read outer names) reads.
pub(crate) fn names_read(graph: &[u8], into: &mut HashSet<String>) -> Result<(), OnnxImportError> {
    for node in sub(graph, 1)? {
        for f in fields(node.payload)? {
            match (f.number, f.wire) {
                (1, 2) => {
                    into.insert(string_of(&f));
                }
                // AttributeProto: g = 6, graphs = 11.
                (5, 2) => {
                    for a in fields(f.payload)? {
                        if (a.number == 6 || a.number == 11) && a.wire == 2 {
                            names_read(a.payload, into)?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for out in sub(graph, 12)? {
        if let Some(n) = sub(out.payload, 1)?.first() {
            into.insert(string_of(n));
        }
    }
    Ok(())
}

/// A tensor's declared dimensions: `Some(n)` fixed, `None` symbolic or unknown.
pub type Dims = Vec<Option<i64>>;

/// Name and dimensions of a ValueInfoProto.
fn value_info(buf: &[u8]) -> Result<(String, Dims), OnnxImportError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    for f in fields(buf)? {
        if f.number == 1 && f.wire == 2 {
            name = string_of(&f);
        }
        if f.number == 2 && f.wire == 2 {
            for tensor in sub(f.payload, 1)? {
                for shape in sub(tensor.payload, 2)? {
                    for dim in sub(shape.payload, 1)? {
                        let value = fields(dim.payload)?
                            .iter()
                            .find(|d| d.number == 1 && d.wire == 0)
                            .map(|d| d.varint as i64);
                        dims.push(value);
                    }
                }
            }
        }
    }
    Ok((name, dims))
}

/// `buf` with every length-delimited field `number` replaced by `rewrite` of its payload; all
/// other fields copied as they are.
fn rewrite_fields(
    buf: &[u8],
    number: u64,
    mut rewrite: impl FnMut(&[u8]) -> Result<Vec<u8>, OnnxImportError>,
) -> Result<Vec<u8>, OnnxImportError> {
    let mut out = Vec::with_capacity(buf.len());
    for f in fields(buf)? {
        if f.number == number && f.wire == 2 {
            put_len_field(&mut out, number, &rewrite(f.payload)?);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(out)
}

/// A ValueInfoProto with its first dimension replaced by the symbolic `batch`
/// (ValueInfoProto.type = 2, TypeProto.tensor_type = 1, Tensor.shape = 2, Shape.dim = 1).
fn relax_batch(value_info: &[u8]) -> Result<Vec<u8>, OnnxImportError> {
    let symbolic = || {
        let mut dim = Vec::new();
        put_len_field(&mut dim, 2, b"batch");
        dim
    };
    rewrite_fields(value_info, 2, |ty| {
        rewrite_fields(ty, 1, |tensor| {
            rewrite_fields(tensor, 2, |shape| {
                let mut first = true;
                rewrite_fields(shape, 1, |dim| {
                    Ok(if std::mem::take(&mut first) {
                        symbolic()
                    } else {
                        dim.to_vec()
                    })
                })
            })
        })
    })
}

/// An external model made ready for batched inference, and what was changed to get there.
#[derive(Debug, Clone)]
pub struct ExternalGraph {
    /// The rewritten ModelProto.
    pub bytes: Vec<u8>,
    /// The image input's name.
    pub input: String,
    /// Its dimensions as declared (batch before relaxing).
    pub input_dims: Dims,
    /// The embedding output's name.
    pub output: String,
    /// Its dimensions as declared.
    pub output_dims: Dims,
    /// Graph inputs no node read, removed.
    pub dropped_unused_inputs: Vec<String>,
    /// Initializers that were also listed as graph inputs: now plain constants.
    pub constant_inputs: usize,
    /// The batch dimension was fixed at 1 and is now symbolic.
    pub batch_relaxed: bool,
}

impl ExternalGraph {
    /// Input side in pixels (the declared height), when fixed.
    pub fn image_size(&self) -> Option<usize> {
        self.input_dims
            .get(2)
            .copied()
            .flatten()
            .map(|v| v as usize)
    }

    /// Embedding width (the output's last dimension), when declared.
    pub fn embedding_dim(&self) -> Option<usize> {
        self.output_dims
            .last()
            .copied()
            .flatten()
            .map(|v| v as usize)
    }
}

/// Rewrites an ONNX model for batched inference: drops graph inputs that no node reads, removes
/// initializers from the input list (they stay as constants), turns a fixed batch of 1 on the
/// image input and the outputs into a symbolic one, and drops intermediate shape hints
/// (`value_info`, which would pin the old batch). `input` / `output` pick among several; by
/// default the graph must have exactly one input left to feed and exactly one output (a graph
/// with several is refused rather than guessed at).
pub fn prepare_external(
    model: &[u8],
    input: Option<&str>,
    output: Option<&str>,
) -> Result<ExternalGraph, OnnxImportError> {
    let ModelParts {
        graph,
        graph_fields,
        ..
    } = model_and_graph(model)?;
    let mut initializers = HashSet::new();
    for f in graph_fields.iter().filter(|f| f.number == 5 && f.wire == 2) {
        if let Some(n) = fields(f.payload)?
            .iter()
            .find(|t| t.number == 8 && t.wire == 2)
        {
            initializers.insert(string_of(n));
        }
    }
    let mut read = HashSet::new();
    names_read(graph, &mut read)?;

    let mut feedable = Vec::new();
    let mut dropped_unused_inputs = Vec::new();
    let mut constant_inputs = 0;
    for f in graph_fields
        .iter()
        .filter(|f| f.number == 11 && f.wire == 2)
    {
        let (name, dims) = value_info(f.payload)?;
        if initializers.contains(&name) {
            constant_inputs += 1;
        } else if !read.contains(&name) {
            dropped_unused_inputs.push(name);
        } else {
            feedable.push((name, dims, f.payload));
        }
    }
    let (input_name, input_dims, input_info) = match feedable.as_slice() {
        [only] if input.is_none_or(|want| want == only.0) => only,
        [] | [_] => {
            let want = input.map_or(String::new(), |w| format!(" `{w}`"));
            return Err(OnnxImportError::Inputs(format!(
                "the graph has no input{want} that a node reads; inputs to feed: {} (initializers and unused inputs do not count)",
                names(feedable.iter().map(|f| &f.0))
            )));
        }
        many => {
            return Err(OnnxImportError::Inputs(format!(
                "the graph needs {} inputs ({}): ffem feeds one image tensor and nothing else",
                many.len(),
                names(many.iter().map(|f| &f.0))
            )));
        }
    };
    if input_dims.len() != 4 || input_dims[1].is_some_and(|c| c != 3) {
        return Err(OnnxImportError::Inputs(format!(
            "input `{input_name}` has shape {}: ffem feeds N x 3 x H x W (NCHW) images",
            shape_text(input_dims)
        )));
    }
    let batch_relaxed = input_dims[0] == Some(1);

    let mut outputs = Vec::new();
    for f in graph_fields
        .iter()
        .filter(|f| f.number == 12 && f.wire == 2)
    {
        let (name, dims) = value_info(f.payload)?;
        outputs.push((name, dims));
    }
    let (output_name, output_dims) = match output {
        Some(want) => outputs
            .iter()
            .find(|(n, _)| n == want)
            .cloned()
            .ok_or_else(|| {
                OnnxImportError::Outputs(format!(
                    "the graph has no output `{want}`; its outputs: {}",
                    names(outputs.iter().map(|o| &o.0))
                ))
            })?,
        None => match outputs.as_slice() {
            [only] => only.clone(),
            [] => return Err(OnnxImportError::Outputs("the graph has no output".into())),
            many => {
                return Err(OnnxImportError::Outputs(format!(
                    "the graph has {} outputs ({}): name the embedding with --onnx-output",
                    many.len(),
                    names(many.iter().map(|o| &o.0))
                )));
            }
        },
    };
    if output_dims.len() != 2 {
        return Err(OnnxImportError::Outputs(format!(
            "output `{output_name}` has shape {}: an embedding output is N x D",
            shape_text(&output_dims)
        )));
    }

    let mut new_graph = Vec::new();
    for f in &graph_fields {
        match (f.number, f.wire) {
            (11, 2) => {
                let (name, _) = value_info(f.payload)?;
                if name == *input_name {
                    let info = if batch_relaxed {
                        relax_batch(input_info)?
                    } else {
                        input_info.to_vec()
                    };
                    put_len_field(&mut new_graph, 11, &info);
                }
            }
            (12, 2) => {
                let (_, dims) = value_info(f.payload)?;
                if batch_relaxed && dims.first() == Some(&Some(1)) {
                    put_len_field(&mut new_graph, 12, &relax_batch(f.payload)?);
                } else {
                    new_graph.extend_from_slice(f.raw);
                }
            }
            (13, 2) => {}
            _ => new_graph.extend_from_slice(f.raw),
        }
    }
    let bytes = rewrite_fields(model, 7, |_| Ok(new_graph.clone()))?;
    Ok(ExternalGraph {
        bytes,
        input: input_name.clone(),
        input_dims: input_dims.clone(),
        output: output_name,
        output_dims,
        dropped_unused_inputs,
        constant_inputs,
        batch_relaxed,
    })
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub(crate) fn shape_text(dims: &[Option<i64>]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}

/// The channel order an external model takes: a config value (`"rgb"`, `"bgr"`) and a command-line
/// value alike, so a teacher in a training config and `ffem eval --onnx-channels` are spelled the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (insightface and PyTorch-trained models, ffem's own).
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV-trained models such as SFace).
    Bgr,
}

impl ChannelOrder {
    /// The values as written in configs and on the command line.
    pub const NAMES: [&'static str; 2] = ["rgb", "bgr"];
}

impl std::str::FromStr for ChannelOrder {
    type Err = String;

    /// Exact, lower-case names, as serde and the command line take them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rgb" => Ok(ChannelOrder::Rgb),
            "bgr" => Ok(ChannelOrder::Bgr),
            _ => Err(format!(
                "channel order `{s}` is not one of {}",
                ChannelOrder::NAMES.join(", ")
            )),
        }
    }
}

/// How a model expects its pixels: channel order and `(pixel - mean) / std` per channel of the
/// raw 0..255 values, in the model's channel order. Defaults to insightface's convention (RGB,
/// (x - 127.5) / 127.5), which is also what ffem's own networks take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputConvention {
    /// The channel order the model takes (BGR for OpenCV-trained models such as SFace).
    pub channels: ChannelOrder,
    /// Subtracted from the 0..255 value, per channel of the model's order.
    pub mean: [f32; 3],
    /// Divides after the subtraction.
    pub std: [f32; 3],
}

impl Default for InputConvention {
    fn default() -> Self {
        InputConvention {
            channels: ChannelOrder::Rgb,
            mean: [127.5; 3],
            std: [127.5; 3],
        }
    }
}

impl InputConvention {
    /// The convention from option values as users give them: `mean` and `std` one value for all
    /// channels or three in the model's channel order. The error names `mean_key` or `std_key`
    /// (the option or config key) and what is wrong.
    pub fn from_values(
        channels: ChannelOrder,
        mean: &[f32],
        std: &[f32],
        mean_key: &str,
        std_key: &str,
    ) -> Result<Self, String> {
        let three = |v: &[f32], key: &str| match v {
            [x] => Ok([*x; 3]),
            [a, b, c] => Ok([*a, *b, *c]),
            _ => Err(format!(
                "{key} takes one value or three (in the model's channel order), not {}",
                v.len()
            )),
        };
        let (mean, std) = (three(mean, mean_key)?, three(std, std_key)?);
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(format!("{mean_key} {mean:?} must be finite"));
        }
        if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(format!("{std_key} {std:?} must be finite and non-zero"));
        }
        Ok(InputConvention {
            channels,
            mean,
            std,
        })
    }

    /// Raw 0..255 values (no scaling) in `channels` order: OpenCV's SFace takes this with BGR.
    pub fn raw(channels: ChannelOrder) -> Self {
        InputConvention {
            channels,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    /// Converts ffem's prepared images (`n` x 3 x H x W, RGB, `(v/255 - 0.5) / 0.5`, see
    /// `ffem_data::pipeline::to_network_input`) into this convention.
    pub fn convert(&self, prepared: &[f32], plane: usize) -> Vec<f32> {
        let mut out = vec![0f32; prepared.len()];
        for (src_img, dst_img) in prepared
            .chunks_exact(3 * plane)
            .zip(out.chunks_exact_mut(3 * plane))
        {
            for c in 0..3 {
                let from = match self.channels {
                    ChannelOrder::Rgb => c,
                    ChannelOrder::Bgr => 2 - c,
                };
                let (mean, inv_std) = (self.mean[c], 1.0 / self.std[c]);
                let src = &src_img[from * plane..(from + 1) * plane];
                for (d, &x) in dst_img[c * plane..(c + 1) * plane].iter_mut().zip(src) {
                    // x = v / 127.5 - 1, so v = (x + 1) * 127.5.
                    *d = ((x + 1.0) * 127.5 - mean) * inv_std;
                }
            }
        }
        out
    }
}

/// The model's `metadata_props` (ModelProto field 14) as key/value pairs.
pub fn read_metadata(model: &[u8]) -> Result<Vec<(String, String)>, OnnxImportError> {
    let mut out = Vec::new();
    for f in fields(model)? {
        if f.number == 14 && f.wire == 2 {
            let kv = fields(f.payload)?;
            let get = |n: u64| {
                kv.iter()
                    .find(|x| x.number == n && x.wire == 2)
                    .map(string_of)
                    .unwrap_or_default()
            };
            out.push((get(1), get(2)));
        }
    }
    Ok(out)
}

/// The model with `props` set in its `metadata_props` (replacing entries of the same keys).
pub fn with_metadata(model: &[u8], props: &[(&str, String)]) -> Result<Vec<u8>, OnnxImportError> {
    let mut out = Vec::with_capacity(model.len() + 256);
    for f in fields(model)? {
        let replaced = f.number == 14
            && f.wire == 2
            && read_metadata(f.raw)?
                .iter()
                .any(|(k, _)| props.iter().any(|(p, _)| p == k));
        if !replaced {
            out.extend_from_slice(f.raw);
        }
    }
    for (k, v) in props {
        let mut kv = Vec::new();
        put_len_field(&mut kv, 1, k.as_bytes());
        put_len_field(&mut kv, 2, v.as_bytes());
        put_len_field(&mut out, 14, &kv);
    }
    Ok(out)
}

/// Metadata keys `ffem export` writes and `ffem import` reads, so that an exported file is
/// imported with the convention and face preparation it was trained with.
pub mod metadata {
    /// `rgb` or `bgr`.
    pub const CHANNELS: &str = "ffem.channels";
    /// Three comma-separated means on 0..255 pixels.
    pub const MEAN: &str = "ffem.mean";
    /// Three comma-separated divisors.
    pub const STD: &str = "ffem.std";
    /// `true` when faces are aligned by landmarks, `false` when cropped by their box.
    pub const ALIGN: &str = "ffem.align";
}

impl InputConvention {
    /// The convention as metadata entries ([`metadata`]).
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let three = |v: [f32; 3]| format!("{},{},{}", v[0], v[1], v[2]);
        vec![
            (
                metadata::CHANNELS,
                match self.channels {
                    ChannelOrder::Rgb => "rgb".into(),
                    ChannelOrder::Bgr => "bgr".into(),
                },
            ),
            (metadata::MEAN, three(self.mean)),
            (metadata::STD, three(self.std)),
        ]
    }

    /// The convention `ffem export` recorded in the file, if it did.
    pub fn from_metadata(props: &[(String, String)]) -> Option<Self> {
        let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        let parse =
            |v: &str| -> Option<Vec<f32>> { v.split(',').map(|x| x.trim().parse().ok()).collect() };
        let channels: ChannelOrder = get(metadata::CHANNELS)?.parse().ok()?;
        let mean = parse(get(metadata::MEAN)?)?;
        let std = parse(get(metadata::STD)?)?;
        InputConvention::from_values(channels, &mean, &std, "mean", "std").ok()
    }
}
