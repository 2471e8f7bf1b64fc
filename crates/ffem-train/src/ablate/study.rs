//! A loss study's TOML schema: the training lists, where variants are scored, the base recipe and
//! the variants, each a set of keys over the base. Unknown keys and repeated variant names are
//! errors that name them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, TrainConfig};
use crate::error::TrainError;

/// One image list of the study's training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Folder the list's paths are relative to.
    pub root: String,
    /// The `image_list.json`.
    pub json: String,
}

/// The training data: lists merged into one identity space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyData {
    /// The lists; each one's labels follow the previous ones'.
    pub lists: Vec<ListSpec>,
    /// Store faces aligned by their landmarks when packing.
    #[serde(default)]
    pub align: bool,
}

/// Where the variants are scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyEval {
    /// LFW folder (pairs.txt, images, image_list.json).
    pub lfw: Option<String>,
    /// CFP folder, frontal-profile protocol.
    pub cfp_fp: Option<String>,
    /// CFP folder, frontal-frontal protocol.
    pub cfp_ff: Option<String>,
    /// insightface `.bin` sets.
    pub bins: Vec<String>,
    /// Pair sets drawn from held-out labelled lists.
    pub lists: Vec<EvalList>,
    /// Leave-one-out Recall@1 over the first set's images, identities from their first path
    /// component (LFW's and CFP's layout).
    pub identification: bool,
}

/// A held-out labelled list to draw verification pairs from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalList {
    /// The set's name in the report.
    pub name: String,
    /// Folder the list's paths are relative to.
    pub root: String,
    /// The `image_list.json`.
    pub json: String,
    /// Same-identity pairs to draw (as many different ones); 3,000 like LFW by default.
    #[serde(default = "default_pairs")]
    pub pairs: usize,
}

fn default_pairs() -> usize {
    3000
}

/// A study as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// Where the study writes (data, one folder per variant, the report).
    #[serde(default)]
    pub out_dir: String,
    /// Fraction of labels flipped before training.
    #[serde(default)]
    pub label_noise: f64,
    /// Seed of the flips.
    #[serde(default)]
    pub noise_seed: u64,
    /// Training data.
    pub data: StudyData,
    /// Scoring.
    #[serde(default)]
    pub eval: StudyEval,
    /// TrainConfig keys every variant shares.
    #[serde(default)]
    pub base: toml::Table,
    /// The variants: `name` plus TrainConfig keys over `base`, and optionally `init_from`, an
    /// earlier variant whose trained network this one starts from (the seed's step 2 after
    /// step 1).
    pub variants: Vec<toml::Table>,
}

impl AblationConfig {
    /// Reads a study file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let cfg: AblationConfig = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message())))?;
        if cfg.variants.is_empty() {
            return Err(ConfigError(format!("{}: no [[variants]]", path.display())).into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &cfg.variants {
            let name = variant_name(v)?;
            if !seen.insert(name.to_string()) {
                return Err(ConfigError(format!(
                    "{}: two variants are named `{name}`",
                    path.display()
                ))
                .into());
            }
        }
        Ok(cfg)
    }
}

pub(super) fn variant_name(v: &toml::Table) -> Result<&str, ConfigError> {
    let name = v
        .get("name")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| ConfigError("every [[variants]] needs name = \"...\"".into()))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError(format!(
            "variant name `{name}`: use letters, digits, '-', '_' or '.' (it names a folder)"
        )));
    }
    Ok(name)
}

/// A variant ready to train: its resolved recipe, the keys it sets over the base (for the
/// report) and the earlier variant whose model it starts from.
pub(super) struct Planned {
    pub(super) name: String,
    pub(super) cfg: TrainConfig,
    pub(super) settings: String,
    pub(super) init_from: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_files_name_their_problems() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("a.toml");
            std::fs::write(&p, text).unwrap();
            p
        };
        let base = "[data]\nlists = []\n";
        let err = AblationConfig::load(&write(base)).unwrap_err().to_string();
        assert!(
            err.contains("no [[variants]]") || err.contains("variants"),
            "{err}"
        );
        let twice = format!("{base}[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n");
        let err = AblationConfig::load(&write(&twice))
            .unwrap_err()
            .to_string();
        assert!(err.contains("two variants are named `a`"), "{err}");
        let slash = format!("{base}[[variants]]\nname = \"a/b\"\n");
        let err = AblationConfig::load(&write(&slash))
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a folder"), "{err}");
    }
}
