//! `metrics.csv`, one row per step (written and read with the `csv` crate), and the PNG curves
//! drawn from it.
//!
//! Columns: `step,epoch,loss,accuracy,lr,images_per_sec,skipped_nonfinite,val_accuracy`
//! (`val_accuracy` empty except on steps that verified). On resume the rows after the
//! checkpoint's step are dropped, so the file always describes exactly one run.

use std::fs::File;
use std::path::Path;

use ffem_eval::csv_table::{CsvProblem, read_records};
use ffem_eval::plot::{Series, line_chart};
use ffem_model::model::write_atomic;

use crate::error::TrainError;
use crate::run_dir::RunDir;

const HEADER: [&str; 8] = [
    "step",
    "epoch",
    "loss",
    "accuracy",
    "lr",
    "images_per_sec",
    "skipped_nonfinite",
    "val_accuracy",
];

/// One step's row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Steps done after this one (1-based).
    pub step: u64,
    /// The epoch the step belonged to.
    pub epoch: u64,
    /// The batch's loss (NaN when non-finite).
    pub loss: f64,
    /// Fraction of the batch whose largest logit was its label.
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Throughput of this step.
    pub images_per_sec: f64,
    /// Non-finite steps skipped so far.
    pub skipped_nonfinite: u64,
    /// Verification accuracy, on steps that verified.
    pub val_accuracy: Option<f64>,
}

/// The open metrics file of a run.
pub struct MetricsLog {
    file: csv::Writer<File>,
    path: std::path::PathBuf,
}

/// The CSV text of `rows` under the header.
fn csv_text(rows: &[MetricsRow]) -> Vec<u8> {
    ffem_eval::csv_table::to_bytes(&HEADER, rows.iter().map(MetricsRow::fields))
}

impl MetricsRow {
    /// The row's fields as written: fixed precision per column, `val_accuracy` empty when absent.
    fn fields(&self) -> [String; 8] {
        [
            self.step.to_string(),
            self.epoch.to_string(),
            format!("{:.6}", self.loss),
            format!("{:.5}", self.accuracy),
            format!("{:.6e}", self.lr),
            format!("{:.2}", self.images_per_sec),
            self.skipped_nonfinite.to_string(),
            self.val_accuracy
                .map(|v| format!("{v:.5}"))
                .unwrap_or_default(),
        ]
    }
}

impl MetricsLog {
    /// Starts a fresh `metrics.csv` (header only).
    pub fn create(run: &RunDir) -> Result<Self, TrainError> {
        let path = run.metrics();
        write_atomic(&path, &csv_text(&[]))?;
        Self::append(&path)
    }

    /// Reopens the `metrics.csv` of a resumed run, dropping rows after `step`.
    pub fn resume(run: &RunDir, step: u64) -> Result<Self, TrainError> {
        let path = run.metrics();
        let mut kept = read_metrics(&path)?;
        kept.retain(|r| r.step <= step);
        write_atomic(&path, &csv_text(&kept))?;
        Self::append(&path)
    }

    fn append(path: &Path) -> Result<Self, TrainError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            file: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(file),
            path: path.to_path_buf(),
        })
    }

    /// Appends a row (buffered: [`MetricsLog::flush`] before a checkpoint).
    pub fn write(&mut self, r: &MetricsRow) -> Result<(), TrainError> {
        self.file
            .write_record(r.fields())
            .map_err(|e| TrainError::io(&self.path, e.into()))
    }

    /// Writes buffered rows through, so a checkpoint never runs ahead of its metrics.
    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads the rows of a `metrics.csv`; a row that is not one names its line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, TrainError> {
    let bad = |line: u64, what: String| {
        TrainError::Setup(format!(
            "{}: line {line}: not a metrics row ({}): {what}",
            path.display(),
            HEADER.join(",")
        ))
    };
    let records = read_records(path, &HEADER).map_err(|problem| match problem {
        CsvProblem::Io(e) => TrainError::io(path, e),
        CsvProblem::Header { found } => bad(1, format!("header `{found}`")),
        CsvProblem::Line { line, message } => bad(line, message),
    })?;
    let mut rows = Vec::new();
    for (line, f) in records {
        let shown = || format!("`{}`", f.join(","));
        if f.len() != HEADER.len() {
            return Err(bad(line, shown()));
        }
        let num = |k: usize| f[k].parse::<f64>().map_err(|_| bad(line, shown()));
        let int = |k: usize| f[k].parse::<u64>().map_err(|_| bad(line, shown()));
        rows.push(MetricsRow {
            step: int(0)?,
            epoch: int(1)?,
            loss: num(2)?,
            accuracy: num(3)?,
            lr: num(4)?,
            images_per_sec: num(5)?,
            skipped_nonfinite: int(6)?,
            val_accuracy: if f[7].is_empty() { None } else { Some(num(7)?) },
        });
    }
    Ok(rows)
}

/// Mean of the last `window` values at each point.
fn trailing_mean(points: Vec<(f64, f64)>, window: usize) -> Vec<(f64, f64)> {
    (0..points.len())
        .map(|i| {
            let w = &points[i.saturating_sub(window - 1)..=i];
            (
                points[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

/// Draws `curves_loss.png` and `curves_accuracy.png` from the run's metrics (20-step means).
pub fn draw_curves(run: &RunDir) -> Result<(), TrainError> {
    let rows = read_metrics(&run.metrics())?;
    if rows.len() < 2 {
        return Ok(());
    }
    let loss: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| (r.step as f64, r.loss))
        .collect();
    let loss_png = run.root().join("curves_loss.png");
    line_chart(
        &loss_png,
        "training loss",
        "step",
        "loss",
        &[Series {
            name: "loss (20-step mean)",
            points: trailing_mean(loss, 20),
        }],
        false,
    )?;
    let accuracy: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.accuracy)).collect();
    let mut series = vec![Series {
        name: "train accuracy (20-step mean)",
        points: trailing_mean(accuracy, 20),
    }];
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_accuracy.map(|v| (r.step as f64, v)))
        .collect();
    if !val.is_empty() {
        series.push(Series {
            name: "verification accuracy",
            points: val,
        });
    }
    let accuracy_png = run.root().join("curves_accuracy.png");
    line_chart(
        &accuracy_png,
        "accuracy",
        "step",
        "accuracy",
        &series,
        false,
    )?;
    Ok(())
}
