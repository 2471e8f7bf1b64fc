//! The training input pipeline: shards -> shuffle buffer -> parallel decode -> crop (or align) to
//! 112x112 -> per-image augmentation -> normalised f32 NCHW batches, prepared ahead of the consumer
//! on background threads.
//!
//! Determinism: the record order comes from one RNG seeded by (seed, epoch), and every image's
//! augmentation from its own RNG seeded by (seed, epoch, position in the epoch), so the batches do not
//! depend on how many workers run or which finishes first.

use std::collections::BTreeMap;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::align::warp_aligned;
use crate::error::{DataError, Result};
use crate::example::FaceRecord;
use crate::imageops::{crop_resize, decode_rgb};
use crate::records::RecordSource;
use crate::sampler::{Sampler, pk_batches};
use image::RgbImage;

/// Which augmentations run; each fires per image with probability `probability`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Move each box coordinate by U(-10%, +10%) of its value (the crop pads past the image).
    pub box_jitter: bool,
    /// Mirror horizontally.
    pub flip: bool,
    /// Hue +-0.1, brightness +-0.1, contrast 0.9-1.1.
    pub color: bool,
    /// Fill a random square of 0-38 px with a random colour.
    pub cutout: bool,
    /// Chance that each enabled augmentation fires for an image.
    pub probability: f32,
}

impl AugmentConfig {
    /// The seed's augmentations, all on, each half the time.
    pub fn seed_default() -> Self {
        AugmentConfig {
            box_jitter: true,
            flip: true,
            color: true,
            cutout: true,
            probability: 0.5,
        }
    }
    /// No augmentation at all (evaluation).
    pub fn none() -> Self {
        AugmentConfig {
            box_jitter: false,
            flip: false,
            color: false,
            cutout: false,
            probability: 0.0,
        }
    }
}

/// How the pipeline batches.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Output side in pixels.
    pub image_size: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Records held for shuffling; 0 or 1 keeps file order.
    pub shuffle_buffer: usize,
    /// Seed for order and augmentation.
    pub seed: u64,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Decode threads.
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Augmentations.
    pub augment: AugmentConfig,
    /// Align by landmarks (records without landmarks fall back to the box).
    pub align: bool,
    /// Skip damaged records (counted) instead of failing.
    pub skip_corrupt: bool,
    /// When set, a label >= this is an error naming the record.
    pub num_classes: Option<u64>,
    /// Record order: the shuffle buffer, or identity-balanced P x K batches.
    pub sampler: Sampler,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            image_size: 112,
            batch_size: 64,
            shuffle_buffer: 4096,
            seed: 0,
            drop_last: true,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch: 4,
            augment: AugmentConfig::seed_default(),
            align: false,
            skip_corrupt: false,
            num_classes: None,
            sampler: Sampler::Shuffle,
        }
    }
}

/// A batch of images as contiguous f32 NCHW in [-1, 1], with labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `len * 3 * size * size` values, NCHW.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<i64>,
    /// Each image's record path (empty for a record without one): the key of per-record data
    /// such as a distillation teacher's embeddings.
    pub paths: Vec<String>,
    /// Index of the batch within its epoch.
    pub index: u64,
    /// Image side.
    pub image_size: usize,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Mixes two numbers into a well-spread seed (splitmix64's finaliser).
pub fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 finaliser over a combination: cheap, well spread seeds per (seed, epoch, item).
    let mut z = a ^ b
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(0x632b_e59b_d9b4_e019);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Preprocesses one record into `out` (3 x size x size, normalised), with its own RNG.
pub fn preprocess(
    record: &FaceRecord,
    cfg: &PipelineConfig,
    rng: &mut impl Rng,
    out: &mut [f32],
) -> Result<(), String> {
    let img = decode_rgb(&record.jpeg)?;
    preprocess_image(&img, record.face_box, record.landmarks, cfg, rng, out)
}

/// [`preprocess`] of an image already decoded, with its face box and landmarks: for callers that
/// decode once for more than one use (detection, several faces of one photo).
pub fn preprocess_image(
    img: &RgbImage,
    face_box: [i64; 4],
    landmarks: Option<[f32; 10]>,
    cfg: &PipelineConfig,
    rng: &mut impl Rng,
    out: &mut [f32],
) -> Result<(), String> {
    let size = cfg.image_size;
    let (w, h) = (img.width() as f32, img.height() as f32);
    let mut hwc = vec![0f32; size * size * 3];
    let aug = &cfg.augment;
    let p = aug.probability;
    let aligned = match (cfg.align, landmarks) {
        (true, Some(lm)) => warp_aligned(img, &lm, size, &mut hwc),
        _ => None,
    };
    if aligned.is_none() {
        // The box as stored, even where it reaches past the image: crop_resize pads with black
        // (as TensorFlow's crop_and_resize does) instead of squeezing the face.
        let mut bx = face_box.map(|v| v as f32);
        if bx[2] - bx[0] < 1.0 || bx[3] - bx[1] < 1.0 {
            bx = [0.0, 0.0, w, h];
        }
        if aug.box_jitter && rng.random::<f32>() < p {
            let j: [f32; 4] =
                std::array::from_fn(|i| bx[i] + rng.random_range(-0.1f32..=0.1) * bx[i]);
            if j[2] - j[0] >= 1.0 && j[3] - j[1] >= 1.0 {
                bx = j;
            }
        }
        crop_resize(img, bx, size, &mut hwc);
    }
    if aug.flip && rng.random::<f32>() < p {
        for row in hwc.chunks_exact_mut(size * 3) {
            for x in 0..size / 2 {
                for c in 0..3 {
                    row.swap(x * 3 + c, (size - 1 - x) * 3 + c);
                }
            }
        }
    }
    if aug.color && rng.random::<f32>() < p {
        let hue = rng.random_range(-0.1f32..=0.1);
        let brightness = rng.random_range(-0.1f32..=0.1) * 255.0;
        let contrast = rng.random_range(0.9f32..=1.1);
        color_jitter(&mut hwc, hue, brightness, contrast);
    }
    if aug.cutout && rng.random::<f32>() < p {
        let side = rng.random_range(0..=38usize);
        let (cx, cy) = (rng.random_range(0..size), rng.random_range(0..size));
        let fill: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0f32..=255.0));
        let (x0, x1) = (
            cx.saturating_sub(side / 2),
            (cx + side.div_ceil(2)).min(size),
        );
        let (y0, y1) = (
            cy.saturating_sub(side / 2),
            (cy + side.div_ceil(2)).min(size),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                hwc[(y * size + x) * 3..][..3].copy_from_slice(&fill);
            }
        }
    }
    to_network_input(&hwc, out);
    Ok(())
}

/// Turns an interleaved RGB image (HWC, values 0..255) into the network's input: planar CHW,
/// `(v / 255 - 0.5) / 0.5`, i.e. -1..1. The one definition training, `ffem embed` and the library
/// API share, so a model always sees inputs scaled the way it was trained.
pub fn to_network_input(hwc: &[f32], chw: &mut [f32]) {
    let plane = hwc.len() / 3;
    debug_assert_eq!(chw.len(), hwc.len());
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = (px[c] / 255.0 - 0.5) / 0.5;
        }
    }
}

/// Hue shift (fraction of the colour circle), additive brightness (0..255 scale) and contrast about
/// each channel's mean, in TensorFlow's order; clamps to 0..255.
pub fn color_jitter(hwc: &mut [f32], hue: f32, brightness: f32, contrast: f32) {
    for px in hwc.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
        let mut h = h + hue;
        // Cheaper than rem_euclid: |hue| <= 1, so one correction suffices.
        if h < 0.0 {
            h += 1.0;
        } else if h >= 1.0 {
            h -= 1.0;
        }
        let (r, g, b) = hsv_to_rgb(h, s, v);
        px[0] = (r + brightness).clamp(0.0, 255.0);
        px[1] = (g + brightness).clamp(0.0, 255.0);
        px[2] = (b + brightness).clamp(0.0, 255.0);
    }
    let n = (hwc.len() / 3) as f32;
    let mut mean = [0f32; 3];
    for px in hwc.chunks_exact(3) {
        for c in 0..3 {
            mean[c] += px[c];
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    for px in hwc.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = ((px[c] - mean[c]) * contrast + mean[c]).clamp(0.0, 255.0);
        }
    }
}

/// RGB (any scale) to hue in [0, 1), saturation, value (same scale as input).
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        let x = (g - b) / d;
        (if x < 0.0 { x + 6.0 } else { x }) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    let s = if max == 0.0 { 0.0 } else { d / max };
    (h, s, max)
}

/// Inverse of [`rgb_to_hsv`].
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match (i as i32).clamp(0, 5) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// A dataset and a pipeline configuration; yields one iterator of batches per epoch.
pub struct Pipeline {
    source: RecordSource,
    config: PipelineConfig,
}

type RawBatch = (u64, Vec<(u64, FaceRecord)>);

impl Pipeline {
    /// Binds a configuration to a dataset.
    pub fn new(source: RecordSource, config: PipelineConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        if let Sampler::Pk { per_identity } = config.sampler
            && (per_identity == 0 || !config.batch_size.is_multiple_of(per_identity))
        {
            return Err(DataError::Invalid(format!(
                "the P x K sampler needs a batch size that is a multiple of its images per identity: \
                 {} is not a multiple of {per_identity}",
                config.batch_size
            )));
        }
        Ok(Pipeline { source, config })
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The dataset.
    pub fn source(&self) -> &RecordSource {
        &self.source
    }

    /// Batches of `epoch`, starting at batch `start_batch` (earlier ones are skipped without
    /// decoding, for resuming).
    pub fn epoch(&self, epoch: u64, start_batch: u64) -> EpochBatches {
        let cfg = self.config.clone();
        let prefetch = cfg.prefetch.max(1);
        let (raw_tx, raw_rx) = bounded::<Result<RawBatch>>(prefetch);
        let (out_tx, out_rx) = bounded::<(u64, Result<Batch>)>(prefetch);
        let source = self.source.clone();
        let reader_cfg = cfg.clone();
        let mut threads = Vec::new();
        threads.push(std::thread::spawn(move || {
            let cfg = reader_cfg;
            let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, epoch));
            let mut shards = source.shards.clone();
            if cfg.shuffle_buffer > 1 {
                shards.shuffle(&mut rng);
            }
            let ordered = source.with_shard_order(shards);
            let mut buffer: Vec<FaceRecord> = Vec::new();
            let mut batch: Vec<(u64, FaceRecord)> = Vec::with_capacity(cfg.batch_size);
            let (mut seq, mut batch_index) = (0u64, 0u64);
            let mut emit = |rec: FaceRecord, batch: &mut Vec<(u64, FaceRecord)>| -> bool {
                batch.push((seq, rec));
                seq += 1;
                if batch.len() == cfg.batch_size {
                    let full = std::mem::replace(batch, Vec::with_capacity(cfg.batch_size));
                    let send = batch_index >= start_batch;
                    batch_index += 1;
                    if send && raw_tx.send(Ok((batch_index - 1, full))).is_err() {
                        return false;
                    }
                }
                true
            };
            if let Sampler::Pk { per_identity } = cfg.sampler {
                // The whole epoch is read first: batches are drawn by identity.
                let mut records = Vec::new();
                for rec in ordered.records(cfg.skip_corrupt) {
                    match rec {
                        Ok(r) => records.push(r),
                        Err(e) => {
                            let _ = raw_tx.send(Err(e));
                            return;
                        }
                    }
                }
                let labels: Vec<i64> = records.iter().map(|r| r.label).collect();
                let per_batch = cfg.batch_size / per_identity;
                for indices in pk_batches(&labels, per_identity, per_batch, &mut rng) {
                    for i in indices {
                        if !emit(records[i].clone(), &mut batch) {
                            return;
                        }
                    }
                }
                return;
            }
            for rec in ordered.records(cfg.skip_corrupt) {
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = raw_tx.send(Err(e));
                        return;
                    }
                };
                let out = if cfg.shuffle_buffer <= 1 {
                    rec
                } else if buffer.len() < cfg.shuffle_buffer {
                    buffer.push(rec);
                    continue;
                } else {
                    let j = rng.random_range(0..buffer.len());
                    std::mem::replace(&mut buffer[j], rec)
                };
                if !emit(out, &mut batch) {
                    return;
                }
            }
            buffer.shuffle(&mut rng);
            for rec in buffer {
                if !emit(rec, &mut batch) {
                    return;
                }
            }
            if !batch.is_empty() && !cfg.drop_last && batch_index >= start_batch {
                let _ = raw_tx.send(Ok((batch_index, batch)));
            }
        }));
        for _ in 0..cfg.workers.max(1) {
            let (rx, tx, cfg) = (raw_rx.clone(), out_tx.clone(), cfg.clone());
            threads.push(std::thread::spawn(move || {
                let plane = 3 * cfg.image_size * cfg.image_size;
                for item in rx.iter() {
                    let (index, raw) = match item {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send((u64::MAX, Err(e)));
                            return;
                        }
                    };
                    let result = (|| {
                        let mut images = vec![0f32; raw.len() * plane];
                        let mut labels = Vec::with_capacity(raw.len());
                        let mut paths = Vec::with_capacity(raw.len());
                        for (seq, rec) in &raw {
                            if rec.label < 0 || cfg.num_classes.is_some_and(|n| rec.label as u64 >= n) {
                                return Err(DataError::Invalid(format!(
                                    "record {} has label {}, outside 0..{}: set num_identity to the dataset's \
                                     identity count (ffem inspect shows it)",
                                    rec.path.as_deref().unwrap_or("?"),
                                    rec.label,
                                    cfg.num_classes.unwrap_or(0)
                                )));
                            }
                            let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(cfg.seed, epoch), *seq));
                            let slot = labels.len();
                            match preprocess(rec, &cfg, &mut rng, &mut images[slot * plane..][..plane]) {
                                Ok(()) => {
                                    labels.push(rec.label);
                                    paths.push(rec.path.clone().unwrap_or_default());
                                }
                                Err(e) if cfg.skip_corrupt => {
                                    tracing::warn!("skipping record {}: {e}", rec.path.as_deref().unwrap_or("?"));
                                }
                                Err(e) => {
                                    return Err(DataError::Invalid(format!(
                                        "record {}: {e}",
                                        rec.path.as_deref().unwrap_or("?")
                                    )));
                                }
                            }
                        }
                        images.truncate(labels.len() * plane);
                        Ok(Batch { images, labels, paths, index, image_size: cfg.image_size })
                    })();
                    if tx.send((index, result)).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(out_tx);
        EpochBatches {
            rx: Some(out_rx),
            pending: BTreeMap::new(),
            next: start_batch,
            threads,
            failed: false,
        }
    }
}

/// The batches of one epoch, in order.
pub struct EpochBatches {
    rx: Option<Receiver<(u64, Result<Batch>)>>,
    pending: BTreeMap<u64, Batch>,
    next: u64,
    threads: Vec<JoinHandle<()>>,
    failed: bool,
}

impl Iterator for EpochBatches {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(b) = self.pending.remove(&self.next) {
                self.next += 1;
                return Some(Ok(b));
            }
            let rx = self.rx.as_ref()?;
            match rx.recv() {
                Ok((_, Err(e))) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Ok((index, Ok(b))) => {
                    self.pending.insert(index, b);
                }
                Err(_) => {
                    // All workers are done: hand out what is left in order (gaps cannot happen).
                    let first = self.pending.keys().next().copied()?;
                    self.next = first;
                }
            }
        }
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Closing the channel makes workers and the reader stop at their next send.
        self.rx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_and_known_values() {
        assert_eq!(rgb_to_hsv(255.0, 0.0, 0.0), (0.0, 1.0, 255.0));
        let (h, s, v) = rgb_to_hsv(0.0, 0.0, 200.0);
        assert!((h - 2.0 / 3.0).abs() < 1e-6 && s == 1.0 && v == 200.0);
        for &(r, g, b) in &[(12.0, 200.0, 99.0), (250.0, 250.0, 3.0), (40.0, 40.0, 40.0)] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-3 && (g - g2).abs() < 1e-3 && (b - b2).abs() < 1e-3);
        }
        // A hue shift of 1/3 turns pure red into pure green.
        let mut px = vec![255.0, 0.0, 0.0];
        color_jitter(&mut px, 1.0 / 3.0, 0.0, 1.0);
        assert!((px[0]).abs() < 1e-3 && (px[1] - 255.0).abs() < 1e-3 && px[2].abs() < 1e-3);
    }

    #[test]
    fn contrast_scales_about_the_channel_mean() {
        let mut px = vec![100.0, 0.0, 0.0, 200.0, 0.0, 0.0];
        color_jitter(&mut px, 0.0, 0.0, 1.1);
        // mean red 150: 100 -> 150 - 50 * 1.1 = 95, 200 -> 150 + 50 * 1.1 = 205.
        assert!((px[0] - 95.0).abs() < 1e-3 && (px[3] - 205.0).abs() < 1e-3);
    }
}
