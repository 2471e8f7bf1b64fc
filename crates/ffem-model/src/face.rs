//! The library API for Rust programs: load a model once, embed faces, compare embeddings.
//!
//! ```no_run
//! let model = ffem_model::face::FaceModel::load(std::path::Path::new("runs/demo/run/model")).unwrap();
//! let a = model.embed_encoded(&std::fs::read("a.jpg").unwrap(), None).unwrap();
//! let b = model.embed_encoded(&std::fs::read("b.jpg").unwrap(), None).unwrap();
//! println!("cosine similarity {:.3}", ffem_model::face::FaceModel::compare(&a, &b));
//! ```

use std::path::Path;

use burn::tensor::Device;

use crate::embed::{Embedder, FaceInput, prepare};
use crate::model::{ModelConfig, load_model};

/// A loaded embedding model on the CPU.
pub struct FaceModel {
    embedder: Embedder,
    config: ModelConfig,
    /// The decision threshold (cosine) saved by `ffem eval`, if any.
    pub threshold: Option<f32>,
}

/// Errors of the library API.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FaceError(pub String);

impl FaceModel {
    /// Loads a model directory written by `ffem train`.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let device = Device::flex();
        let (config, model) = load_model(dir, &device).map_err(|e| FaceError(e.to_string()))?;
        let threshold = std::fs::read_to_string(dir.join("threshold.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["threshold_cosine"].as_f64())
            .map(|t| t as f32);
        Ok(FaceModel {
            embedder: Embedder::new(&model, config.clone(), &device),
            config,
            threshold,
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.embedding_dim
    }

    /// Embeds an encoded image (JPEG, PNG, ...) with an optional face box (left, top, right,
    /// bottom); without a box the centre crop is used. Returns a unit vector (flip TTA applied).
    pub fn embed_encoded(
        &self,
        bytes: &[u8],
        face_box: Option<[f32; 4]>,
    ) -> Result<Vec<f32>, FaceError> {
        let face = FaceInput {
            bytes: bytes.to_vec(),
            face_box,
            landmarks: None,
            name: "image".into(),
        };
        if face_box.is_none() {
            tracing::warn!("no face box given: embedding the centre crop");
        }
        let img = prepare(&face, self.config.image_size, false).map_err(FaceError)?;
        let mut e = self.embedder.embed_prepared_flip(&img, 1);
        crate::embed::normalize_rows(&mut e, self.dim());
        Ok(e)
    }

    /// Embeds a decoded RGB image that is already the face crop (any size; resized bilinearly).
    pub fn embed_rgb(&self, rgb: &image::RgbImage) -> Result<Vec<f32>, FaceError> {
        let size = self.config.image_size;
        let mut hwc = vec![0f32; size * size * 3];
        ffem_data::imageops::crop_resize(
            rgb,
            [0.0, 0.0, rgb.width() as f32, rgb.height() as f32],
            size,
            &mut hwc,
        );
        let plane = size * size;
        let mut chw = vec![0f32; 3 * plane];
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * plane + i] = (px[c] / 255.0 - 0.5) / 0.5;
            }
        }
        let mut e = self.embedder.embed_prepared_flip(&chw, 1);
        crate::embed::normalize_rows(&mut e, self.dim());
        Ok(e)
    }

    /// Cosine similarity of two embeddings (1 = same direction).
    pub fn compare(a: &[f32], b: &[f32]) -> f32 {
        crate::embed::cosine(a, b)
    }
}
