//! Using a trained model: preprocessing a face like the pipeline does (crop by box or align by
//! landmarks, no augmentation), batched embedding with optional flip test-time augmentation.

use burn::module::Module;
use burn::tensor::Device;
use ffem_data::pipeline::{AugmentConfig, PipelineConfig, preprocess_image};
use image::RgbImage;

use crate::error::InferError;
use ffem_model::model::{EmbeddingModel, ModelConfig, images_tensor, to_vec2};

/// One face to embed: an encoded image with its optional box and landmarks.
#[derive(Debug, Clone)]
pub struct FaceInput {
    /// Encoded image bytes (JPEG, PNG, ...).
    pub bytes: Vec<u8>,
    /// Face box (left, top, right, bottom); `None` uses the centre crop.
    pub face_box: Option<[f32; 4]>,
    /// Five landmarks, used when aligning.
    pub landmarks: Option<[f32; 10]>,
    /// Where it came from, for messages.
    pub name: String,
}

/// Turns a face into the network's 3 x size x size input: aligned by its landmarks when `align`
/// and it has them, else cropped by its box (the centre square without one), scaled like
/// training's inputs (`ffem_data::pipeline::preprocess` without augmentation).
pub fn prepare(face: &FaceInput, size: usize, align: bool) -> Result<Vec<f32>, InferError> {
    let unusable = |reason: String| InferError::Unusable {
        name: face.name.clone(),
        reason,
    };
    let img = ffem_data::imageops::decode_rgb(&face.bytes)
        .map_err(|e| unusable(format!("not a decodable image: {e}")))?;
    prepare_decoded(&img, face.face_box, face.landmarks, size, align).map_err(unusable)
}

/// [`prepare`] of an image already decoded (upright), for callers that decode once for
/// detection or for several faces of one photo.
pub fn prepare_decoded(
    img: &RgbImage,
    face_box: Option<[f32; 4]>,
    landmarks: Option<[f32; 10]>,
    size: usize,
    align: bool,
) -> Result<Vec<f32>, String> {
    let face_box = match face_box {
        Some(b) => b.map(|v| v.round() as i64),
        None => {
            let (w, h) = (img.width() as i64, img.height() as i64);
            let side = w.min(h);
            let (x0, y0) = ((w - side) / 2, (h - side) / 2);
            [x0, y0, x0 + side, y0 + side]
        }
    };
    let cfg = PipelineConfig {
        image_size: size,
        align,
        augment: AugmentConfig::none(),
        ..Default::default()
    };
    let mut out = vec![0f32; 3 * size * size];
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    preprocess_image(img, face_box, landmarks, &cfg, &mut rng, &mut out)?;
    Ok(out)
}

/// Mirrors a 3 x size x size image horizontally.
pub fn mirror(img: &[f32], size: usize) -> Vec<f32> {
    let mut out = img.to_vec();
    for row in out.chunks_exact_mut(size) {
        row.reverse();
    }
    out
}

/// Images per forward pass unless the caller sets `Embedder::batch_size`.
const DEFAULT_BATCH: usize = 64;

/// What runs the forward passes.
enum Network {
    /// An ffem model in burn.
    Burn(Box<EmbeddingModel>, Device),
    /// An ffem model exported to ONNX Runtime, or an external ONNX face model.
    #[cfg(feature = "onnxruntime")]
    Ort(crate::ort_engine::OrtEmbedder),
    /// An external ONNX face model in tract.
    Tract(Box<crate::tract_engine::TractEmbedder>),
}

/// A model ready for inference.
pub struct Embedder {
    network: Network,
    config: ModelConfig,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Embedder {
    /// Wraps a model for inference (no autodiff, BatchNorm in inference mode).
    pub fn new(model: &EmbeddingModel, config: ModelConfig, device: &Device) -> Self {
        Embedder {
            network: Network::Burn(Box::new(model.valid().to_device(device)), device.clone()),
            config,
            batch_size: DEFAULT_BATCH,
        }
    }

    /// Runs the forward passes in ONNX Runtime from now on (the model exported in memory), with
    /// `threads` intra-op threads (0: one per core). An embedder already on ONNX Runtime stays.
    #[cfg(feature = "onnxruntime")]
    pub fn use_onnxruntime(
        &mut self,
        threads: usize,
    ) -> Result<(), crate::ort_engine::OrtEngineError> {
        if let Network::Burn(model, _) = &self.network {
            self.network = Network::Ort(crate::ort_engine::OrtEmbedder::new(
                model,
                &self.config,
                threads,
            )?);
        }
        Ok(())
    }

    /// An external face model (an ONNX file from elsewhere: insightface, OpenCV's SFace, ...) in
    /// ONNX Runtime, fed the same prepared crops as ffem's models: faces are aligned by their
    /// landmarks to the ArcFace template, then converted to the model's input convention.
    #[cfg(feature = "onnxruntime")]
    pub fn from_onnx_file(
        path: &std::path::Path,
        opts: &crate::ort_engine::ExternalOptions,
    ) -> Result<Self, crate::ort_engine::OrtEngineError> {
        let engine = crate::ort_engine::OrtEmbedder::from_file(path, opts)?;
        let config = ModelConfig {
            embedding_dim: engine.dim(),
            image_size: engine.image_size(),
            align: true,
            ..ModelConfig::default()
        };
        Ok(Embedder {
            network: Network::Ort(engine),
            config,
            batch_size: DEFAULT_BATCH,
        })
    }

    /// An external face model in tract (see [`crate::model_dir::open`], which builds it from an
    /// imported model directory); `config` gives its sizes.
    pub fn from_tract(engine: crate::tract_engine::TractEmbedder, config: ModelConfig) -> Self {
        Embedder {
            network: Network::Tract(Box::new(engine)),
            config,
            batch_size: DEFAULT_BATCH,
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.embedding_dim
    }

    /// Embeds prepared images (`n` x 3 x size x size, contiguous); raw (un-normalised) outputs.
    pub fn embed_prepared(&self, images: &[f32], n: usize) -> Vec<f32> {
        let size = self.config.image_size;
        let plane = 3 * size * size;
        let mut out = Vec::with_capacity(n * self.dim());
        for start in (0..n).step_by(self.batch_size.max(1)) {
            let m = (n - start).min(self.batch_size.max(1));
            let batch = &images[start * plane..(start + m) * plane];
            match &self.network {
                Network::Burn(model, device) => {
                    out.extend(to_vec2(
                        model.forward(images_tensor(batch, m, size, device)),
                    ));
                }
                #[cfg(feature = "onnxruntime")]
                Network::Ort(ort) => {
                    out.extend(ort.embed_prepared(batch, m).unwrap_or_else(|e| {
                        panic!("ONNX Runtime failed on a batch the session accepted: {e}")
                    }));
                }
                Network::Tract(tract) => {
                    out.extend(tract.embed_prepared(batch, m).unwrap_or_else(|e| {
                        panic!("tract failed on a batch its probe run accepted: {e}")
                    }));
                }
            }
        }
        out
    }

    /// Embeds `n` prepared images; with `flip`, each row is the sum of the image's and its mirror's
    /// embeddings (flip test-time augmentation, as insightface evaluates). Rows are not normalised.
    /// Also returns the summed L2 norm of the plain images' embeddings (before flip summing), the
    /// "XNorm" verification reports.
    pub fn embed_batch(&self, images: &[f32], n: usize, flip: bool) -> (Vec<f32>, f64) {
        let size = self.config.image_size;
        let plain = self.embed_prepared(images, n);
        let norm_sum = plain
            .chunks_exact(self.dim())
            .map(|r| ffem_eval::embedding::l2_norm(r) as f64)
            .sum();
        if !flip {
            return (plain, norm_sum);
        }
        let mirrored: Vec<f32> = images
            .chunks_exact(3 * size * size)
            .flat_map(|img| mirror(img, size))
            .collect();
        let mirrored = self.embed_prepared(&mirrored, n);
        let summed = plain.iter().zip(&mirrored).map(|(a, b)| a + b).collect();
        (summed, norm_sum)
    }
}
