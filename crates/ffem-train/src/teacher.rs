//! Where a distillation run's targets come from: embeddings precomputed on the un-augmented crops
//! (`teacher = "TEACHER.npy"`, one teacher pass in all) or a teacher model run inside every step
//! on the augmented batch the student sees (`teacher_model = "DIR"`, any model directory, an
//! imported ONNX model included: one teacher pass per image per epoch, and targets that follow
//! every flip, colour change and cutout). docs/distill.md measures the two against each other.

use std::path::Path;

use crate::distill::TeacherTable;
use burn::tensor::{Device, Tensor};
use ffem_data::{Batch, RecordSource};
use ffem_infer::Embedder;

use crate::config::TrainConfig;
use crate::error::TrainError;

/// A run's teacher.
pub enum Teacher {
    /// Embeddings by record path.
    Table(TeacherTable),
    /// A model directory opened as every command opens one, fed the augmented batch.
    Online(Box<Embedder>),
}

impl Teacher {
    /// The teacher `cfg` names, if any, checked against the training data before the first step:
    /// a table must hold a row for every record (the error names the first without one), a
    /// teacher model must take the training image size.
    pub fn open(cfg: &TrainConfig, source: &RecordSource) -> Result<Option<Self>, TrainError> {
        if !cfg.teacher_model.is_empty() {
            return open_model(cfg).map(Some);
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
            Teacher::Online(engine) => engine.dim(),
        }
    }

    /// The targets of `batch` (N, teacher width), un-normalised, on `device`.
    pub fn targets(&self, batch: &Batch, device: &Device) -> Result<Tensor<2>, TrainError> {
        match self {
            Teacher::Table(t) => Ok(t.batch(&batch.paths, device)?),
            Teacher::Online(engine) => {
                let n = batch.len();
                let values = engine.embed_prepared(&batch.images, n);
                Ok(Tensor::<2>::from_data(
                    burn::tensor::TensorData::new(values, [n, engine.dim()]),
                    device,
                ))
            }
        }
    }
}

fn open_model(cfg: &TrainConfig) -> Result<Teacher, TrainError> {
    let path = Path::new(&cfg.teacher_model);
    let failed = |reason: String| TrainError::OnlineTeacher {
        path: path.to_path_buf(),
        reason,
    };
    // One thread per core: the teacher and the student's step take turns, never run together.
    let engine = ffem_infer::model_dir::open(path, ffem_infer::model_dir::Engine::Auto, 0)
        .map_err(|e| failed(e.to_string()))?;
    let side = engine.config().image_size;
    if side != cfg.image_size {
        return Err(failed(format!(
            "takes {side}x{side} images and the student trains on {t}x{t}: set image_size = {side}, or use a teacher of the student's size",
            t = cfg.image_size
        )));
    }
    tracing::info!(
        "teacher {} runs inside every step ({}-d, {side}x{side} input)",
        path.display(),
        engine.dim(),
    );
    Ok(Teacher::Online(Box::new(engine)))
}
