//! External face models in tract, the pure-Rust ONNX runtime ffem's detector already uses: the
//! engine of a default build (nothing to install), so an imported model works in every command.
//! ONNX Runtime (`--features onnxruntime`) runs the same graphs several times faster and is
//! preferred when the build has it (`crate::model_dir::Engine::Auto`).
//!
//! tract optimises a graph for one concrete input shape; plans are made per batch size on first
//! use and kept (runs are at most `Embedder::batch_size`, so at most that many plans).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use crate::onnx_fold::fold_constant_dequantize;
use crate::onnx_import::{ExternalGraph, InputConvention};

type Plan = Arc<TypedSimplePlan>;

/// An external model (already rewritten by `prepare_external`) with its plans per batch size.
pub struct TractEmbedder {
    /// The graph as read, the embedding output its only output; specialised per batch size.
    model: InferenceModel,
    plans: Mutex<HashMap<usize, Plan>>,
    image_size: usize,
    dim: usize,
    output: String,
    convention: InputConvention,
    /// A graph that only runs batches of exactly this size: shorter batches are padded.
    exact_batch: Option<usize>,
}

impl TractEmbedder {
    /// Loads the rewritten graph (constant weight dequantisation folded, the embedding output
    /// kept as the only output) and probes it with two blank images to learn the embedding
    /// width and whether batches larger than one work (else images run one at a time).
    pub fn new(
        graph: &ExternalGraph,
        image_size: usize,
        convention: InputConvention,
    ) -> Result<Self, String> {
        let folded = fold_constant_dequantize(&graph.bytes).map_err(|e| e.to_string())?;
        if folded.nodes > 0 {
            tracing::debug!(
                "folded {} constant DequantizeLinear nodes into float weights",
                folded.nodes
            );
        }
        let model = tract_onnx::onnx()
            .model_for_read(&mut &folded.bytes[..])
            .and_then(|m| m.with_outputs_by_name([graph.output.as_str()]))
            .map_err(|e| format!("tract cannot read the graph: {e:#}"))?;
        let mut engine = TractEmbedder {
            model,
            plans: Mutex::new(HashMap::new()),
            image_size,
            dim: 0,
            output: graph.output.clone(),
            convention,
            exact_batch: None,
        };
        let plane = 3 * image_size * image_size;
        let fixed = graph.input_dims[0]
            .filter(|_| !graph.batch_relaxed)
            .map(|b| b as usize);
        let probe = fixed.unwrap_or(2);
        match engine.run(&vec![0f32; probe * plane], probe) {
            Ok(values) => engine.dim = values.len() / probe,
            Err(first) if graph.batch_relaxed => {
                tracing::warn!(
                    "batches of 2 fail once the batch dimension is relaxed ({first}); embedding one image per run"
                );
                engine.exact_batch = Some(1);
                engine.dim = engine.run(&vec![0f32; plane], 1)?.len();
            }
            Err(e) => return Err(e),
        }
        if fixed.is_some() {
            engine.exact_batch = fixed;
        }
        if engine.dim == 0 {
            return Err(format!("output `{}` is empty", graph.output));
        }
        Ok(engine)
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Input side in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The optimised plan for batches of `n`, made on first use (PReLU fused as the detector's).
    fn plan(&self, n: usize) -> Result<Plan, String> {
        if let Some(p) = self.plans.lock().unwrap_or_else(|e| e.into_inner()).get(&n) {
            return Ok(p.clone());
        }
        let s = self.image_size;
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([n, 3, s, s]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|mut m| {
                ffem_detect::prelu::fuse_prelus(&mut m)?;
                m.into_runnable()
            })
            .map_err(|e| format!("tract cannot run the graph on {n} x 3 x {s} x {s}: {e:#}"))?;
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, plan.clone());
        Ok(plan)
    }

    /// One run over `n` images already in the graph's convention: the output's values.
    fn run(&self, images: &[f32], n: usize) -> Result<Vec<f32>, String> {
        let s = self.image_size;
        let plan = self.plan(n)?;
        let input = tract_ndarray::Array4::from_shape_vec((n, 3, s, s), images.to_vec())
            .map_err(|e| e.to_string())?;
        let out = plan
            .run(tvec!(Tensor::from(input).into()))
            .map_err(|e| format!("{e:#}"))?;
        let values = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("{e:#}"))?;
        let values: Vec<f32> = values.iter().copied().collect();
        if n == 0 || !values.len().is_multiple_of(n) {
            return Err(format!(
                "output `{}` returned {} values for {n} images",
                self.output,
                values.len()
            ));
        }
        Ok(values)
    }

    /// Embeds `n` prepared images (ffem's convention, N x 3 x S x S); raw outputs, `n` x dim.
    /// A batch is split into one run per core, run side by side: tract runs one graph on one
    /// thread.
    pub fn embed_prepared(&self, images: &[f32], n: usize) -> Result<Vec<f32>, String> {
        use rayon::prelude::*;
        let plane = self.image_size * self.image_size;
        let converted = self.convention.convert(&images[..n * 3 * plane], plane);
        let per_run = self
            .exact_batch
            .unwrap_or_else(|| n.div_ceil(rayon::current_num_threads()))
            .max(1);
        let chunks: Vec<Vec<f32>> = converted
            .par_chunks(per_run * 3 * plane)
            .map(|chunk| {
                let m = chunk.len() / (3 * plane);
                let run_n = self.exact_batch.map_or(m, |b| b.max(m));
                let mut batch = chunk.to_vec();
                batch.resize(run_n * 3 * plane, 0.0);
                let values = self.run(&batch, run_n)?;
                if values.len() != run_n * self.dim {
                    return Err(format!(
                        "output `{}` returned {} values for {run_n} images of dimension {}",
                        self.output,
                        values.len(),
                        self.dim
                    ));
                }
                Ok(values[..m * self.dim].to_vec())
            })
            .collect::<Result<_, String>>()?;
        Ok(chunks.concat())
    }
}
