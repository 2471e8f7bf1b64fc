//! Where a distillation run's targets come from: embeddings precomputed on the un-augmented crops
//! (`teacher = "TEACHER.npy"`, one teacher pass in all) or an ONNX teacher run inside every step
//! on the augmented batch the student sees (`teacher_onnx = "TEACHER.onnx"`, one teacher pass per
//! image per epoch, and targets that follow every flip, colour change and cutout). docs/distill.md
//! measures the two against each other.

use std::path::Path;

use crate::distill::TeacherTable;
use burn::tensor::{Device, Tensor};
use ffem_data::{Batch, RecordSource};

use crate::config::TrainConfig;
use crate::error::TrainError;

/// A run's teacher.
pub enum Teacher {
    /// Embeddings by record path.
    Table(TeacherTable),
    /// An external model in ONNX Runtime, fed the augmented batch.
    #[cfg(feature = "onnxruntime")]
    Online {
        /// The session.
        engine: ffem_infer::ort_engine::OrtEmbedder,
        /// The file, for messages.
        path: std::path::PathBuf,
    },
}

impl Teacher {
    /// The teacher `cfg` names, if any, checked against the training data before the first step:
    /// a table must hold a row for every record (the error names the first without one), an
    /// ONNX teacher must take the training image size.
    pub fn open(cfg: &TrainConfig, source: &RecordSource) -> Result<Option<Self>, TrainError> {
        if !cfg.teacher_onnx.is_empty() {
            return open_onnx(cfg).map(Some);
        }
        if cfg.teacher.is_empty() {
            return Ok(None);
        }
        let table = TeacherTable::load(Path::new(&cfg.teacher))?;
        for (i, rec) in source.records(false).enumerate() {
            let rec = rec?;
            let path = rec.path.ok_or_else(|| {
                TrainError::Setup(format!(
                    "record {i} of {} has no path, so no teacher embedding can be matched to it: pack the data with ffem pack (it keeps each image's path)",
                    cfg.train_data
                ))
            })?;
            table.check(&path)?;
        }
        Ok(Some(Teacher::Table(table)))
    }

    /// The teacher's embedding width.
    pub fn dim(&self) -> usize {
        match self {
            Teacher::Table(t) => t.dim(),
            #[cfg(feature = "onnxruntime")]
            Teacher::Online { engine, .. } => engine.dim(),
        }
    }

    /// The targets of `batch` (N, teacher width), un-normalised, on `device`.
    pub fn targets(&self, batch: &Batch, device: &Device) -> Result<Tensor<2>, TrainError> {
        match self {
            Teacher::Table(t) => Ok(t.batch(&batch.paths, device)?),
            #[cfg(feature = "onnxruntime")]
            Teacher::Online { engine, path } => {
                let n = batch.len();
                let values = engine.embed_prepared(&batch.images, n).map_err(|e| {
                    TrainError::OnlineTeacher {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                Ok(Tensor::<2>::from_data(
                    burn::tensor::TensorData::new(values, [n, engine.dim()]),
                    device,
                ))
            }
        }
    }
}

#[cfg(feature = "onnxruntime")]
fn open_onnx(cfg: &TrainConfig) -> Result<Teacher, TrainError> {
    let path = Path::new(&cfg.teacher_onnx);
    let opts = ffem_infer::ort_engine::ExternalOptions {
        convention: cfg.teacher_convention()?,
        image_size: Some(cfg.image_size),
        // One per core: the teacher and the student's step take turns, never run together.
        threads: 0,
        ..Default::default()
    };
    let engine = ffem_infer::ort_engine::OrtEmbedder::from_file(path, &opts).map_err(|e| {
        TrainError::OnlineTeacher {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    if engine.image_size() != cfg.image_size {
        return Err(TrainError::OnlineTeacher {
            path: path.to_path_buf(),
            reason: format!(
                "takes {s}x{s} images and the student trains on {t}x{t}: set image_size = {s}, or use a teacher of the student's size",
                s = engine.image_size(),
                t = cfg.image_size
            ),
        });
    }
    tracing::info!(
        "teacher {} runs inside every step ({}-d, {}x{} input)",
        path.display(),
        engine.dim(),
        engine.image_size(),
        engine.image_size()
    );
    Ok(Teacher::Online {
        engine,
        path: path.to_path_buf(),
    })
}

#[cfg(not(feature = "onnxruntime"))]
fn open_onnx(cfg: &TrainConfig) -> Result<Teacher, TrainError> {
    Err(TrainError::Setup(format!(
        "teacher_onnx = \"{}\" runs the teacher in ONNX Runtime, and this ffem was built without it: rebuild with `cargo build --release -p ffem --features onnxruntime` and run scripts/fetch-onnxruntime.sh, or embed the training list once (ffem embed --onnx) and set teacher = \"TEACHER.npy\"",
        cfg.teacher_onnx
    )))
}
