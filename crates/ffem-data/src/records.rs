//! A packed dataset on disk: a directory with a manifest and shards, a directory of `.tfrecord`
//! files, or one TFRecord file (for example one written by TensorFlow).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::example::FaceRecord;
use crate::manifest::Manifest;
use crate::tfrecord::RecordReader;

/// The shard files of a dataset and its manifest when it has one.
#[derive(Debug, Clone)]
pub struct RecordSource {
    /// Shard files in reading order.
    pub shards: Vec<PathBuf>,
    /// The manifest, for datasets `ffem pack` wrote.
    pub manifest: Option<Manifest>,
    /// An insightface / im2rec RecordIO pack read directly (instead of shards).
    pub rec_pack: Option<PathBuf>,
    /// That pack, opened once: its index is parsed here and shared by every pass over it.
    opened_pack: Option<std::sync::Arc<crate::recordio::FacePack>>,
}

impl RecordSource {
    /// Opens a dataset directory or a single record file.
    pub fn open(path: &Path) -> Result<RecordSource> {
        let is_rec =
            path.extension().is_some_and(|e| e == "rec") || path.join("train.rec").is_file();
        if is_rec {
            // Fail now, with the file named, if the pack cannot be opened.
            let pack = crate::recordio::FacePack::open(path)?;
            return Ok(RecordSource {
                shards: vec![],
                manifest: None,
                rec_pack: Some(path.to_path_buf()),
                opened_pack: Some(std::sync::Arc::new(pack)),
            });
        }
        if path.is_file() {
            return Ok(RecordSource {
                shards: vec![path.to_path_buf()],
                manifest: None,
                rec_pack: None,
                opened_pack: None,
            });
        }
        if !path.is_dir() {
            return Err(DataError::Invalid(format!(
                "{}: no such record file or dataset directory (create one with `ffem pack`)",
                path.display()
            )));
        }
        if path.join(crate::manifest::MANIFEST_NAME).exists() {
            let manifest = Manifest::load(path)?;
            return Ok(RecordSource {
                shards: manifest.shard_paths(path),
                manifest: Some(manifest),
                rec_pack: None,
                opened_pack: None,
            });
        }
        let mut shards: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| DataError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.is_file()
                    && (name.ends_with(".tfrecord")
                        || name.ends_with(".tfrecords")
                        || name.ends_with(".tfrec")
                        || name.contains(".tfrecord-"))
            })
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: no manifest.json and no .tfrecord files inside; is this the output of `ffem pack`?",
                path.display()
            )));
        }
        Ok(RecordSource {
            shards,
            manifest: None,
            rec_pack: None,
            opened_pack: None,
        })
    }

    /// The same dataset with its shards read in another order (the pipeline's per-epoch shuffle).
    pub fn with_shard_order(&self, shards: Vec<PathBuf>) -> RecordSource {
        RecordSource {
            shards,
            manifest: None,
            ..self.clone()
        }
    }

    /// Iterates over every face record of every shard (or of the RecordIO pack) in order.
    pub fn records(&self, skip_corrupt: bool) -> FaceRecords {
        let reopen = |p: &PathBuf| match &self.opened_pack {
            Some(opened) => opened.reopen(),
            None => crate::recordio::FacePack::open(p),
        };
        let (pack, pending_error) = match self.rec_pack.as_ref().map(reopen) {
            Some(Ok(p)) => (Some((p, 0)), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        FaceRecords {
            shards: self.shards.clone(),
            next_shard: 0,
            current: None,
            skip_corrupt,
            skipped: 0,
            pack,
            pending_error,
        }
    }

    /// Number of records when known without reading them all (manifest or RecordIO index).
    pub fn record_count(&self) -> Option<u64> {
        if let Some(m) = &self.manifest {
            return Some(m.records);
        }
        if let Some(p) = &self.opened_pack {
            return Some(p.images.len() as u64);
        }
        let p = self.rec_pack.as_ref()?;
        crate::recordio::FacePack::open(p)
            .ok()
            .map(|p| p.images.len() as u64)
    }
}

/// Iterator over the face records of a [`RecordSource`].
pub struct FaceRecords {
    shards: Vec<PathBuf>,
    next_shard: usize,
    current: Option<(PathBuf, RecordReader)>,
    skip_corrupt: bool,
    skipped: u64,
    pack: Option<(crate::recordio::FacePack, usize)>,
    /// A pack that could not be opened: reported as the first item, never swallowed.
    pending_error: Option<DataError>,
}

impl FaceRecords {
    /// Records skipped as corrupt or off-schema so far (only with `skip_corrupt`).
    pub fn skipped(&self) -> u64 {
        self.skipped + self.current.as_ref().map_or(0, |(_, r)| r.skipped())
    }
}

impl Iterator for FaceRecords {
    type Item = Result<FaceRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        if let Some((pack, i)) = self.pack.as_mut() {
            while *i < pack.images.len() {
                let r = pack.record(*i);
                *i += 1;
                match r {
                    Err(e) if self.skip_corrupt => {
                        tracing::warn!("skipping: {e}");
                        self.skipped += 1;
                    }
                    other => return Some(other),
                }
            }
            return None;
        }
        loop {
            if self.current.is_none() {
                let path = self.shards.get(self.next_shard)?.clone();
                self.next_shard += 1;
                match RecordReader::open(&path) {
                    Ok(r) => self.current = Some((path, r.skip_corrupt(self.skip_corrupt))),
                    Err(e) => return Some(Err(e)),
                }
            }
            let (path, reader) = self.current.as_mut().expect("set above");
            match reader.next() {
                None => {
                    self.skipped += reader.skipped();
                    self.current = None;
                }
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(raw)) => match FaceRecord::from_example(&raw.data) {
                    Ok(r) => return Some(Ok(r)),
                    Err(what) if self.skip_corrupt => {
                        tracing::warn!("{}: record {}: {what}; skipped", path.display(), raw.index);
                        self.skipped += 1;
                    }
                    Err(what) => {
                        return Some(Err(DataError::Schema {
                            path: path.clone(),
                            index: raw.index,
                            what,
                        }));
                    }
                },
            }
        }
    }
}

/// Summary statistics of a dataset, as `ffem inspect` prints them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Records read.
    pub records: u64,
    /// Distinct labels.
    pub identities: u64,
    /// Fewest images of one identity.
    pub min_per_identity: u64,
    /// Median images per identity.
    pub median_per_identity: u64,
    /// Most images of one identity.
    pub max_per_identity: u64,
    /// Records that carry landmarks.
    pub with_landmarks: u64,
    /// Size of all shards on disk.
    pub bytes: u64,
    /// Number of shard files.
    pub shards: usize,
    /// Records skipped as corrupt while reading (with `skip_corrupt`).
    pub corrupt_skipped: u64,
    /// Entries the packer skipped (from the manifest), with reasons.
    pub pack_skipped: Vec<crate::image_list::Rejected>,
    /// Largest label + 1.
    pub label_range: u64,
}

/// Reads a whole dataset and summarises it.
pub fn inspect(source: &RecordSource, skip_corrupt: bool) -> Result<Inspection> {
    let mut per_label: BTreeMap<i64, u64> = BTreeMap::new();
    let mut with_landmarks = 0;
    let mut records = 0;
    let mut iter = source.records(skip_corrupt);
    for r in iter.by_ref() {
        let r = r?;
        *per_label.entry(r.label).or_default() += 1;
        with_landmarks += u64::from(r.landmarks.is_some());
        records += 1;
    }
    let mut counts: Vec<u64> = per_label.values().copied().collect();
    counts.sort_unstable();
    let bytes = source
        .shards
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(Inspection {
        records,
        identities: per_label.len() as u64,
        min_per_identity: counts.first().copied().unwrap_or(0),
        median_per_identity: counts.get(counts.len() / 2).copied().unwrap_or(0),
        max_per_identity: counts.last().copied().unwrap_or(0),
        with_landmarks,
        bytes,
        shards: source.shards.len(),
        corrupt_skipped: iter.skipped(),
        pack_skipped: source
            .manifest
            .as_ref()
            .map(|m| m.skipped.clone())
            .unwrap_or_default(),
        label_range: per_label.keys().last().map_or(0, |&l| l as u64 + 1),
    })
}
