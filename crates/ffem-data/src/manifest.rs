//! The small JSON manifest written beside the shards: counts, label map, shards, skipped entries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image_list::Rejected;

/// File name of the manifest inside a packed dataset directory.
pub const MANIFEST_NAME: &str = "manifest.json";

/// One shard file of a packed dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// File name relative to the dataset directory.
    pub file: String,
    /// Number of records in it.
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Describes a packed dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always "ffem-records".
    pub format: String,
    /// Manifest version.
    pub version: u32,
    /// Total records in all shards.
    pub records: u64,
    /// Number of identities (labels 0..identities-1).
    pub identities: u64,
    /// Original label -> packed label, sorted by original label.
    pub label_map: Vec<(u64, u64)>,
    /// The shards in reading order.
    pub shards: Vec<ShardInfo>,
    /// Entries of the list that were not packed, with reasons.
    pub skipped: Vec<Rejected>,
    /// `Some(margin)` when records hold face crops grown by that margin instead of whole photos.
    pub crop_margin: Option<f32>,
    /// With `pack --align`: how many records hold 112x112 crops aligned by their landmarks (the
    /// rest, without landmarks, are stored as `crop_margin` says).
    #[serde(default)]
    pub aligned: Option<u64>,
    /// Where the list came from.
    pub source_json: Option<String>,
    /// The image root the list's paths are relative to.
    pub source_root: Option<String>,
}

impl Manifest {
    /// A manifest for these shards; record and identity counts are derived.
    pub fn new(
        label_map: std::collections::BTreeMap<u64, u64>,
        shards: Vec<ShardInfo>,
        skipped: Vec<Rejected>,
        source_root: Option<String>,
    ) -> Self {
        Manifest {
            format: "ffem-records".into(),
            version: 1,
            records: shards.iter().map(|s| s.records).sum(),
            identities: label_map.len() as u64,
            label_map: label_map.into_iter().collect(),
            shards,
            skipped,
            crop_margin: None,
            aligned: None,
            source_json: None,
            source_root,
        }
    }

    /// Reads `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| DataError::Json {
            path,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Paths of the shard files inside `dir`.
    pub fn shard_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.shards.iter().map(|s| dir.join(&s.file)).collect()
    }
}
