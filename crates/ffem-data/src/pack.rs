//! `ffem pack`: validate every entry of an `image_list.json`, then write TFRecord shards and a
//! manifest into a staging directory that is renamed into place when complete.
//!
//! Two passes: the first decodes every image in parallel (the only way to catch truncated or
//! undecodable files) and settles the label map over the entries that survive; the second re-reads
//! the bytes and writes records in list order. Bad entries are skipped and reported, never fatal,
//! unless `strict` is set, in which case nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::atomic;
use crate::error::{DataError, Result};
use crate::example::FaceRecord;
use crate::image_list::{FaceBox, ImageEntry, ImageList, Rejected};
use crate::imageops::{decode_rgb, encode_jpeg};
use crate::manifest::{MANIFEST_NAME, Manifest, ShardInfo};
use crate::progress;
use crate::tfrecord::RecordWriter;

/// What `pack` does.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Root the list's relative paths start from.
    pub root: PathBuf,
    /// The `image_list.json`.
    pub json: PathBuf,
    /// Output directory (created; replaced only with `overwrite`).
    pub output: PathBuf,
    /// Start a new shard once the current one reaches this many bytes.
    pub shard_bytes: u64,
    /// Store the face box grown by this margin (fraction of the box size per side) as a new JPEG.
    pub crop_margin: Option<f32>,
    /// Store entries that have landmarks as 112x112 crops aligned to the ArcFace template (the
    /// form insightface's training packs hold); entries without landmarks are stored as the other
    /// options say (whole photo, or the `crop_margin` crop).
    pub align: bool,
    /// JPEG quality for re-encoded crops.
    pub jpeg_quality: u8,
    /// Fail (writing nothing) if any entry is bad.
    pub strict: bool,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Draw progress bars.
    pub progress: bool,
}

impl PackOptions {
    /// Options with the defaults: ~1 GiB shards, whole photos, quality 95.
    pub fn new(
        root: impl Into<PathBuf>,
        json: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
    ) -> Self {
        PackOptions {
            root: root.into(),
            json: json.into(),
            output: output.into(),
            shard_bytes: 1 << 30,
            crop_margin: None,
            align: false,
            jpeg_quality: 95,
            strict: false,
            overwrite: false,
            progress: false,
        }
    }
}

/// What `pack` did.
#[derive(Debug, Clone)]
pub struct PackReport {
    /// The manifest as written.
    pub manifest: Manifest,
    /// Seconds spent, both passes.
    pub seconds: f64,
    /// Entries the list held (valid or not).
    pub entries_in_list: usize,
}

struct Checked {
    entry: ImageEntry,
    face_box: FaceBox,
}

fn check_entry(root: &Path, entry: &ImageEntry) -> std::result::Result<FaceBox, String> {
    let path = root.join(entry.file());
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("image file not found: {}", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    let img = decode_rgb(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let (w, h) = img.dimensions();
    match entry.face_box {
        None => Ok(FaceBox {
            x1: 0.0,
            y1: 0.0,
            x2: w as f32,
            y2: h as f32,
        }),
        // Stored as given (TensorFlow reads back the list's box): only a box that misses the
        // image entirely is rejected.
        Some(b) => b
            .clip(w, h)
            .filter(|c| c.width() >= 1.0 && c.height() >= 1.0)
            .map(|_| b)
            .ok_or_else(|| {
                format!(
                    "box (x1={}, y1={}, x2={}, y2={}) lies outside the {w}x{h} image",
                    b.x1, b.y1, b.x2, b.y2
                )
            }),
    }
}

fn make_record(
    root: &Path,
    checked: &Checked,
    label: i64,
    opts: &PackOptions,
) -> std::result::Result<FaceRecord, String> {
    let path = root.join(checked.entry.file());
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let b = checked.face_box;
    let (jpeg, face_box, landmarks) = match (
        opts.align.then_some(checked.entry.landmarks).flatten(),
        opts.crop_margin,
    ) {
        (Some(lm), _) => {
            let img = decode_rgb(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let (crop, lm) = aligned_crop(&img, &lm)?;
            let side = ALIGNED_SIZE as f32;
            (
                encode_jpeg(&crop, opts.jpeg_quality)?,
                [0.0, 0.0, side, side],
                Some(lm),
            )
        }
        (None, None) => (bytes, [b.x1, b.y1, b.x2, b.y2], checked.entry.landmarks),
        (None, Some(margin)) => {
            let img = decode_rgb(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let (mw, mh) = (b.width() * margin, b.height() * margin);
            let grown = FaceBox {
                x1: b.x1 - mw,
                y1: b.y1 - mh,
                x2: b.x2 + mw,
                y2: b.y2 + mh,
            };
            let c = grown
                .clip(img.width(), img.height())
                .expect("contains the clipped box");
            let (cx, cy) = (c.x1.floor() as u32, c.y1.floor() as u32);
            let (cw, ch) = (
                (c.x2.ceil() as u32 - cx).max(1),
                (c.y2.ceil() as u32 - cy).max(1),
            );
            let crop = image::imageops::crop_imm(&img, cx, cy, cw, ch).to_image();
            let jpeg = encode_jpeg(&crop, opts.jpeg_quality)?;
            let (dx, dy) = (cx as f32, cy as f32);
            let lm = checked.entry.landmarks.map(|mut l| {
                for p in l.chunks_exact_mut(2) {
                    p[0] -= dx;
                    p[1] -= dy;
                }
                l
            });
            (jpeg, [b.x1 - dx, b.y1 - dy, b.x2 - dx, b.y2 - dy], lm)
        }
    };
    Ok(FaceRecord {
        jpeg,
        label,
        face_box: face_box.map(|v| v.round() as i64),
        landmarks,
        path: Some(checked.entry.path.clone()),
    })
}

/// Side of the aligned crops `--align` stores (the ArcFace template's frame).
pub const ALIGNED_SIZE: usize = 112;

/// Warps the face onto the 112x112 ArcFace template by the least-squares similarity of its five
/// landmarks; returns the crop and the landmarks in crop coordinates.
pub fn aligned_crop(
    img: &image::RgbImage,
    landmarks: &[f32; 10],
) -> std::result::Result<(image::RgbImage, [f32; 10]), String> {
    let mut buf = vec![0f32; ALIGNED_SIZE * ALIGNED_SIZE * 3];
    let sim = crate::align::warp_aligned(img, landmarks, ALIGNED_SIZE, &mut buf)
        .ok_or_else(|| "landmarks are degenerate (all five at one point): fix or drop them, or pack without --align".to_string())?;
    let pixels: Vec<u8> = buf
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let crop = image::RgbImage::from_raw(ALIGNED_SIZE as u32, ALIGNED_SIZE as u32, pixels)
        .expect("sized above");
    let mut out = [0f32; 10];
    for (o, p) in out.chunks_exact_mut(2).zip(landmarks.chunks_exact(2)) {
        o.copy_from_slice(&sim.apply([p[0], p[1]]));
    }
    Ok((crop, out))
}

/// Writes records into numbered shards, starting a new one past `shard_bytes`.
struct ShardSink {
    dir: PathBuf,
    shard_bytes: u64,
    shards: Vec<ShardInfo>,
    writer: Option<RecordWriter>,
}

impl ShardSink {
    fn new(dir: &Path, shard_bytes: u64) -> Self {
        ShardSink {
            dir: dir.to_path_buf(),
            shard_bytes,
            shards: Vec::new(),
            writer: None,
        }
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let (records, bytes) = (w.records(), w.bytes_written());
            w.finish()?;
            self.shards.push(ShardInfo {
                file: format!("shard-{:05}.tfrecord", self.shards.len()),
                records,
                bytes,
            });
        }
        Ok(())
    }

    fn write(&mut self, record: &[u8]) -> Result<()> {
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.bytes_written() >= self.shard_bytes)
        {
            self.close_current()?;
        }
        if self.writer.is_none() {
            self.writer = Some(RecordWriter::create(
                &self
                    .dir
                    .join(format!("shard-{:05}.tfrecord", self.shards.len())),
            )?);
        }
        self.writer.as_mut().expect("just created").write(record)
    }

    fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.close_current()?;
        Ok(self.shards)
    }
}

/// Packs `opts.json` into TFRecord shards under `opts.output`.
pub fn pack(opts: &PackOptions) -> Result<PackReport> {
    let start = Instant::now();
    let list = ImageList::load(&opts.json)?;
    pack_list(list, opts, start)
}

/// Packs an already parsed list (see [`pack`]).
pub fn pack_list(list: ImageList, opts: &PackOptions, start: Instant) -> Result<PackReport> {
    if opts.output.exists() && !opts.overwrite {
        return Err(DataError::Invalid(format!(
            "{} already exists: choose another --output or pass --overwrite to replace it",
            opts.output.display()
        )));
    }
    if !opts.root.is_dir() {
        return Err(DataError::Invalid(format!(
            "image root {} is not a directory: pass --root, the folder the JSON's paths are relative to",
            opts.root.display()
        )));
    }
    let entries_in_list = list.entries.len() + list.rejected.len();
    let mut skipped = list.rejected;

    // Pass 1: decode everything in parallel.
    let bar = progress::bar(list.entries.len() as u64, "check", "img", opts.progress);
    let results: Vec<std::result::Result<Checked, Rejected>> = list
        .entries
        .into_par_iter()
        .map(|entry| {
            let r = check_entry(&opts.root, &entry);
            bar.inc(1);
            match r {
                Ok(face_box) => Ok(Checked { entry, face_box }),
                Err(reason) => Err(Rejected {
                    key: entry.path,
                    reason,
                }),
            }
        })
        .collect();
    bar.finish_and_clear();
    let mut good = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(c) => good.push(c),
            Err(rej) => skipped.push(rej),
        }
    }
    for s in &skipped {
        tracing::warn!("skipping {}: {}", s.key, s.reason);
    }
    if opts.strict && !skipped.is_empty() {
        let first: Vec<String> = skipped
            .iter()
            .take(5)
            .map(|s| format!("  {}: {}", s.key, s.reason))
            .collect();
        return Err(DataError::Invalid(format!(
            "--strict: {} of {entries_in_list} entries are bad, nothing was written. First ones:\n{}",
            skipped.len(),
            first.join("\n")
        )));
    }
    if good.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no usable entry ({} skipped); nothing to pack",
            opts.json.display(),
            skipped.len()
        )));
    }

    // Labels need not be contiguous: map them in sorted order onto 0..N-1.
    let label_map = dense_labels(good.iter().map(|c| c.entry.label));

    // Pass 2: write in list order into a staging directory.
    let manifest = publish_staged(&opts.output, |staging| {
        let shards = write_shards(staging, &good, &label_map, opts, &mut skipped)?;
        let failed: std::collections::HashSet<&str> =
            skipped.iter().map(|r| r.key.as_str()).collect();
        let aligned = opts.align.then(|| {
            good.iter()
                .filter(|c| c.entry.landmarks.is_some() && !failed.contains(c.entry.path.as_str()))
                .count() as u64
        });
        let mut manifest = Manifest::new(
            label_map,
            shards,
            skipped,
            Some(opts.root.display().to_string()),
        );
        manifest.crop_margin = opts.crop_margin;
        manifest.aligned = aligned;
        manifest.source_json = Some(opts.json.display().to_string());
        Ok(manifest)
    })?;
    Ok(PackReport {
        manifest,
        seconds: start.elapsed().as_secs_f64(),
        entries_in_list,
    })
}

/// Labels mapped, in sorted order, onto 0..N-1.
fn dense_labels(labels: impl IntoIterator<Item = u64>) -> BTreeMap<u64, u64> {
    let raw: std::collections::BTreeSet<u64> = labels.into_iter().collect();
    raw.into_iter()
        .enumerate()
        .map(|(i, l)| (l, i as u64))
        .collect()
}

/// Builds a dataset with `build` in a fresh staging directory beside `output`, writes the manifest
/// it returns there, and renames the directory into place. On an error the staging directory is
/// removed and `output` is left as it was.
fn publish_staged(
    output: &Path,
    build: impl FnOnce(&Path) -> Result<Manifest>,
) -> Result<Manifest> {
    let staging = atomic::temp_path(output);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    }
    // Also creates the output's parent: the staging directory sits beside the output.
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    let manifest = match build(&staging) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    atomic::write_json(&staging.join(MANIFEST_NAME), &manifest)?;
    atomic::replace_dir(&staging, output)?;
    Ok(manifest)
}

fn write_shards(
    dir: &Path,
    good: &[Checked],
    label_map: &BTreeMap<u64, u64>,
    opts: &PackOptions,
    skipped: &mut Vec<Rejected>,
) -> Result<Vec<ShardInfo>> {
    let bar = progress::bar(good.len() as u64, "pack", "img", opts.progress);
    let mut sink = ShardSink::new(dir, opts.shard_bytes);
    for chunk in good.chunks(256) {
        let encoded: Vec<std::result::Result<Vec<u8>, Rejected>> = chunk
            .par_iter()
            .map(|c| {
                let label = label_map[&c.entry.label] as i64;
                make_record(&opts.root, c, label, opts)
                    .map(|r| r.to_example())
                    .map_err(|reason| Rejected {
                        key: c.entry.path.clone(),
                        reason,
                    })
            })
            .collect();
        for item in encoded {
            bar.inc(1);
            let bytes = match item {
                Ok(b) => b,
                Err(rej) => {
                    // The file changed between the passes: still skip and report, never abort.
                    tracing::warn!("skipping {}: {}", rej.key, rej.reason);
                    skipped.push(rej);
                    continue;
                }
            };
            sink.write(&bytes)?;
        }
    }
    bar.finish_and_clear();
    sink.finish()
}

/// Converts an insightface / im2rec RecordIO pack (`DIR/train.rec` + `train.idx`, or a `.rec`
/// path) into ffem shards under `opts.output`: image records only (insightface's header and
/// identity records are recognised and left out), labels mapped onto 0..N-1, undecodable
/// payloads skipped and reported (or fatal with `strict`).
pub fn pack_from_rec(rec: &Path, opts: &PackOptions) -> Result<PackReport> {
    let start = Instant::now();
    if opts.output.exists() && !opts.overwrite {
        return Err(DataError::Invalid(format!(
            "{} already exists: choose another --output or pass --overwrite",
            opts.output.display()
        )));
    }
    let mut pack = crate::recordio::FacePack::open(rec)?;
    let n = pack.images.len();
    let manifest = publish_staged(&opts.output, |staging| {
        let (shards, label_map, skipped) = write_rec_shards(&mut pack, staging, opts)?;
        Ok(Manifest::new(
            label_map,
            shards,
            skipped,
            Some(rec.display().to_string()),
        ))
    })?;
    Ok(PackReport {
        manifest,
        seconds: start.elapsed().as_secs_f64(),
        entries_in_list: n,
    })
}

/// What writing a pack's shards produced: the shards, the count per label as stored, and the
/// entries rejected.
type WrittenShards = (Vec<ShardInfo>, BTreeMap<u64, u64>, Vec<Rejected>);

/// One pass over the pack writing records with their labels as stored (each payload is read
/// once: packs like MS1M are tens of GB). insightface packs label identities 0..N-1, which is
/// already the packed labelling; only when the labels have gaps are the staged shards read back
/// and rewritten with labels mapped onto 0..N-1.
fn write_rec_shards(
    pack: &mut crate::recordio::FacePack,
    staging: &Path,
    opts: &PackOptions,
) -> Result<WrittenShards> {
    let n = pack.images.len();
    let bar = progress::bar(n as u64, "pack", "img", opts.progress);
    let mut sink = ShardSink::new(staging, opts.shard_bytes);
    // A set, not a list: packs hold millions of images of far fewer identities.
    let mut labels = std::collections::BTreeSet::new();
    let mut skipped = Vec::new();
    for i in 0..n {
        match pack.record(i) {
            Ok(mut r) => {
                // Negative labels (never written by insightface) count as identity 0.
                r.label = r.label.max(0);
                labels.insert(r.label as u64);
                sink.write(&r.to_example())?;
            }
            Err(e) => skipped.push(Rejected {
                key: format!("rec:{}", pack.images[i].0),
                reason: e.to_string(),
            }),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut shards = sink.finish()?;
    if opts.strict && !skipped.is_empty() {
        return Err(DataError::Invalid(format!(
            "--strict: {} of {n} records are bad, nothing was written. First: {}: {}",
            skipped.len(),
            skipped[0].key,
            skipped[0].reason
        )));
    }
    let label_map = dense_labels(labels);
    if label_map.iter().any(|(raw, packed)| raw != packed) {
        let relabelled = staging.join("relabel");
        std::fs::create_dir_all(&relabelled).map_err(|e| DataError::io(&relabelled, e))?;
        let mut sink = ShardSink::new(&relabelled, opts.shard_bytes);
        for info in &shards {
            let path = staging.join(&info.file);
            for record in crate::tfrecord::RecordReader::open(&path)? {
                let mut r = FaceRecord::from_example(&record?.data)
                    .map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))?;
                r.label = label_map[&(r.label as u64)] as i64;
                sink.write(&r.to_example())?;
            }
            std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
        }
        shards = sink.finish()?;
        for info in &shards {
            let (from, to) = (relabelled.join(&info.file), staging.join(&info.file));
            std::fs::rename(&from, &to).map_err(|e| DataError::io(&from, e))?;
        }
        std::fs::remove_dir(&relabelled).map_err(|e| DataError::io(&relabelled, e))?;
    }
    Ok((shards, label_map, skipped))
}
