//! The library API for Rust programs: load a model once, embed faces, compare embeddings. It
//! prepares faces exactly as `ffem embed` does (same crop or alignment, same scaling, flip
//! test-time augmentation), so both give the same embedding for the same image.
//!
//! ```no_run
//! use ffem_infer::face::FaceModel;
//! let model = FaceModel::load(std::path::Path::new("runs/demo/run/model"))
//!     .unwrap()
//!     .with_detector(&ffem_detect::default_weights_dir())
//!     .unwrap();
//! let a = model.embed_encoded(&std::fs::read("a.jpg").unwrap(), None, None).unwrap();
//! let b = model.embed_encoded(&std::fs::read("b.jpg").unwrap(), None, None).unwrap();
//! println!("cosine similarity {:.3}", FaceModel::compare(&a, &b));
//! ```

use std::path::Path;

use crate::embed::{Embedder, FaceInput};
use crate::error::InferError;
use crate::faces::prepare_face;
use crate::threshold::SavedThreshold;
use ffem_model::model::ModelError;

/// A loaded embedding model (on the GPU in a `vulkan` build, else the CPU), with the face
/// detector when [`FaceModel::with_detector`] added it.
pub struct FaceModel {
    embedder: Embedder,
    detector: Option<ffem_detect::Mtcnn>,
    /// The decision threshold (cosine) saved by `ffem eval`, if any.
    pub threshold: Option<f32>,
}

/// Errors of the library API.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The model directory (or its threshold file) could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The image cannot be embedded (not decodable, no face, box outside it, ...).
    #[error(transparent)]
    Face(#[from] InferError),
    /// The detector's weights could not be loaded (the message names the fetch script).
    #[error(transparent)]
    Detector(#[from] ffem_detect::DetectError),
}

impl FaceModel {
    /// Loads a model directory written by `ffem train` or `ffem import` (the engine chosen as
    /// the commands choose it), with its saved threshold if any.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let embedder = crate::model_dir::open(dir, crate::model_dir::Engine::Auto, 0)?;
        let threshold = SavedThreshold::load(dir)?.map(|t| t.threshold_cosine);
        Ok(FaceModel {
            embedder,
            detector: None,
            threshold,
        })
    }

    /// Adds the MTCNN detector (weights from `weights_dir`, e.g. `ffem_detect::default_weights_dir()`
    /// where `scripts/fetch-mtcnn.sh` puts them): faces given without a box are then found and
    /// aligned by their landmarks, as `ffem embed` does.
    pub fn with_detector(mut self, weights_dir: &Path) -> Result<Self, FaceError> {
        self.detector = Some(ffem_detect::Mtcnn::load(weights_dir)?);
        Ok(self)
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.embedder.dim()
    }

    /// Embeds an encoded image (JPEG, PNG, WebP, ...) with an optional face box (left, top, right,
    /// bottom) and five landmarks (eyes, nose, mouth corners as x, y pairs). Without a box the
    /// detector finds the face (the largest one; an error if there is none), or, without a
    /// detector, the centre square is used. A model trained on aligned faces aligns by the
    /// landmarks. Returns a unit vector (flip TTA applied).
    pub fn embed_encoded(
        &self,
        bytes: &[u8],
        face_box: Option<[f32; 4]>,
        landmarks: Option<[f32; 10]>,
    ) -> Result<Vec<f32>, FaceError> {
        let mut face = FaceInput {
            bytes: bytes.to_vec(),
            face_box,
            landmarks,
            name: "image".into(),
        };
        if face_box.is_none() && self.detector.is_none() {
            tracing::warn!("no face box and no detector: embedding the centre crop");
        }
        let (image, found) = prepare_face(
            &mut face,
            self.detector.as_ref(),
            self.embedder.config().image_size,
            self.embedder.config().align,
        )?;
        if found > 1 {
            tracing::warn!("{found} faces in the image; the largest was used");
        }
        if self.embedder.config().align && face.landmarks.is_none() {
            tracing::warn!(
                "this model was trained on aligned faces; without landmarks the box is cropped instead"
            );
        }
        Ok(self.embed_prepared(&image))
    }

    /// Embeds a decoded RGB image that is already the face crop (any size; resized bilinearly).
    pub fn embed_rgb(&self, rgb: &image::RgbImage) -> Vec<f32> {
        let size = self.embedder.config().image_size;
        let mut hwc = vec![0f32; size * size * 3];
        ffem_data::imageops::crop_resize(
            rgb,
            [0.0, 0.0, rgb.width() as f32, rgb.height() as f32],
            size,
            &mut hwc,
        );
        let mut chw = vec![0f32; 3 * size * size];
        ffem_data::pipeline::to_network_input(&hwc, &mut chw);
        self.embed_prepared(&chw)
    }

    fn embed_prepared(&self, image: &[f32]) -> Vec<f32> {
        let (mut e, _) = self.embedder.embed_batch(image, 1, true);
        ffem_eval::embedding::normalize_rows(&mut e, self.dim());
        e
    }

    /// Cosine similarity of two embeddings (1 = same direction).
    pub fn compare(a: &[f32], b: &[f32]) -> f32 {
        ffem_eval::embedding::cosine(a, b)
    }
}
