//! Knowledge distillation into ffem's small networks: the student's embedding (through a learned
//! projection when its width differs from the teacher's) is pulled onto the teacher's embedding of
//! the same image. The teacher's embeddings are computed once, before training (`ffem embed
//! --onnx TEACHER.onnx LIST -o teacher.npy`, flip-summed, keyed by record path), so a strong but
//! slow teacher costs one pass over the data instead of one per epoch; [`TeacherTable`] reads them
//! and checks that every record has one. (The trainer can also run an ONNX teacher inside each
//! step on the augmented batch, `teacher_onnx`: targets that follow the augmentation, at one
//! teacher pass per image per epoch; docs/distill.md measures the two.)
//!
//! The projection trains with the student and is not part of the model: `save_model` and
//! `ffem export` write the student network alone, so a 512-d student of a 128-d teacher still
//! serves 512-d embeddings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::losses::l2_normalize;

/// How far the student is from the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DistillMetric {
    /// `1 - cos(P s, t)`: the direction only, what cosine verification compares.
    #[default]
    Cosine,
    /// `||P s - t / ||t|| ||^2`: direction and unit length.
    L2,
}

/// The distillation head: an optional projection and the metric.
#[derive(Module, Debug)]
pub struct Distiller {
    /// Student width to teacher width, without bias; `None` when they are equal.
    pub projection: Option<Linear>,
    /// The metric.
    #[module(skip)]
    pub metric: DistillMetric,
}

/// The distillation loss of a batch.
pub struct DistillOutput {
    /// Mean over the batch, shape [1].
    pub loss: Tensor<1>,
    /// Mean cosine between the (projected) student and the teacher, shape [1]: the progress
    /// figure of a pure distillation run, where there is no classification accuracy.
    pub mean_cosine: Tensor<1>,
}

impl Distiller {
    /// A head from `student_dim`-d embeddings onto `teacher_dim`-d ones.
    pub fn new(
        student_dim: usize,
        teacher_dim: usize,
        metric: DistillMetric,
        device: &Device,
    ) -> Self {
        Distiller {
            projection: (student_dim != teacher_dim).then(|| {
                LinearConfig::new(student_dim, teacher_dim)
                    .with_bias(false)
                    .init(device)
            }),
            metric,
        }
    }

    /// The loss of `student` (N, student width) against `teacher` (N, teacher width; any scale:
    /// it is normalised here).
    pub fn forward(&self, student: Tensor<2>, teacher: Tensor<2>) -> DistillOutput {
        let projected = match &self.projection {
            Some(p) => p.forward(student),
            None => student,
        };
        let teacher = l2_normalize(teacher);
        let cos = (l2_normalize(projected.clone()) * teacher.clone()).sum_dim(1);
        let loss = match self.metric {
            DistillMetric::Cosine => cos.clone().neg().add_scalar(1.0).mean(),
            DistillMetric::L2 => (projected - teacher).square().sum_dim(1).mean(),
        };
        DistillOutput {
            loss,
            mean_cosine: cos.mean(),
        }
    }
}

/// Why a teacher file cannot be used.
#[derive(Debug, Error)]
pub enum TeacherError {
    /// The embeddings or their index did not read.
    #[error("teacher embeddings {path}: {message}")]
    Read {
        /// The .npy file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A record has no row.
    #[error(
        "record `{record}` has no teacher embedding in {index}: the teacher file was made from other images; embed the list the records were packed from (`ffem embed --onnx TEACHER.onnx LIST -o {npy}`)"
    )]
    Missing {
        /// The record's path.
        record: String,
        /// The index file searched.
        index: PathBuf,
        /// The .npy file.
        npy: PathBuf,
    },
}

/// Teacher embeddings keyed by record path: `teacher.npy` and the index `ffem embed` writes beside
/// it (`row,path,label`).
pub struct TeacherTable {
    rows: HashMap<String, usize>,
    embeddings: Vec<f32>,
    dim: usize,
    npy: PathBuf,
}

impl TeacherTable {
    /// Reads `npy` and its index; a key listed twice is an error (it would make the target
    /// ambiguous).
    pub fn load(npy: &Path) -> Result<Self, TeacherError> {
        let err = |message: String| TeacherError::Read {
            path: npy.to_path_buf(),
            message,
        };
        let (embeddings, rows, dim) =
            ffem_eval::npy::read_f32(npy).map_err(|e| err(e.to_string()))?;
        let index = ffem_eval::gallery::index_path(npy);
        let entries = ffem_eval::gallery::read_index(&index).map_err(|e| err(e.to_string()))?;
        if entries.len() != rows {
            return Err(err(format!(
                "{rows} rows but the index {} lists {}",
                index.display(),
                entries.len()
            )));
        }
        let mut map = HashMap::with_capacity(rows);
        for (row, e) in entries.into_iter().enumerate() {
            if let Some(first) = map.insert(e.name.clone(), row) {
                return Err(err(format!(
                    "`{}` is listed twice in {} (rows {first} and {row})",
                    e.name,
                    index.display()
                )));
            }
        }
        Ok(TeacherTable {
            rows: map,
            embeddings,
            dim,
            npy: npy.to_path_buf(),
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Checks that `record` has a row; the error names it and the index searched.
    pub fn check(&self, record: &str) -> Result<(), TeacherError> {
        self.row(record).map(|_| ())
    }

    fn row(&self, record: &str) -> Result<usize, TeacherError> {
        self.rows
            .get(record)
            .copied()
            .ok_or_else(|| TeacherError::Missing {
                record: record.to_string(),
                index: ffem_eval::gallery::index_path(&self.npy),
                npy: self.npy.clone(),
            })
    }

    /// The teachers of a batch's records, (N, dim), on `device`.
    pub fn batch(&self, records: &[String], device: &Device) -> Result<Tensor<2>, TeacherError> {
        let mut out = Vec::with_capacity(records.len() * self.dim);
        for r in records {
            let row = self.row(r)?;
            out.extend_from_slice(&self.embeddings[row * self.dim..][..self.dim]);
        }
        Ok(Tensor::<2>::from_data(
            TensorData::new(out, [records.len(), self.dim]),
            device,
        ))
    }
}
