//! `MODEL_DIR/threshold.json`: the decision threshold `ffem eval` found on a verification set,
//! which `ffem verify` and [`crate::face::FaceModel`] use when no threshold is given. One typed
//! format, read and written only here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ffem_model::model::ModelError;

/// The file name inside a model directory.
pub const THRESHOLD_FILE: &str = "threshold.json";

/// A threshold and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedThreshold {
    /// The verification set it was chosen on ("lfw", "cfp_fp", ...).
    pub set: String,
    /// Same person when cosine similarity >= this.
    pub threshold_cosine: f32,
    /// The same threshold as squared L2 distance of unit vectors (`2 - 2 cos`), insightface's form.
    pub threshold_squared_l2: f32,
    /// The 10-fold accuracy on that set; `None` for a threshold stated by the user
    /// (`ffem import --threshold`, from the model's documentation) rather than measured.
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// Whether embeddings used flip test-time augmentation (use the same when verifying).
    pub flip: bool,
}

/// The threshold file of model directory `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(THRESHOLD_FILE)
}

impl SavedThreshold {
    /// Writes it into model directory `dir` (atomically).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        Ok(ffem_data::atomic::write_json(&path_in(dir), self)?)
    }

    /// Reads the threshold of model directory `dir`; `Ok(None)` when `ffem eval` never saved one.
    pub fn load(dir: &Path) -> Result<Option<Self>, ModelError> {
        let path = path_in(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ModelError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ModelError::File {
                path: path.display().to_string(),
                message: format!(
                    "not a threshold file ({e}); delete it and run `ffem eval {} --lfw DIR` again",
                    dir.display()
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_absence_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedThreshold::load(dir.path()).unwrap(), None);
        let t = SavedThreshold {
            set: "lfw".into(),
            threshold_cosine: 0.25,
            threshold_squared_l2: 1.5,
            accuracy: Some(0.98),
            flip: true,
        };
        t.save(dir.path()).unwrap();
        assert_eq!(SavedThreshold::load(dir.path()).unwrap(), Some(t));
        std::fs::write(path_in(dir.path()), "{\"set\": \"lfw\"}").unwrap();
        let err = SavedThreshold::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("threshold.json") && err.contains("missing field"),
            "{err}"
        );
    }
}
