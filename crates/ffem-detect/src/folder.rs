//! `ffem detect`: find the face(s) in every image under a folder and write `image_list.json` with
//! boxes and landmarks, labels from the identity folder names; and the comparison of two lists
//! (box IoU, landmark distance) that checks a detector against a reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ffem_data::image_list::{
    FACE_SUFFIX, FaceBox, ImageEntry, ImageList, Rejected, split_face_key, write_image_list,
};
use rayon::prelude::*;

use crate::error::{DetectError, Result};
use crate::mtcnn::{Face, Mtcnn};

/// File extensions treated as images (ffem-data's one list).
pub use ffem_data::walk::IMAGE_EXTENSIONS;

/// What `detect_folder` does.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Folder of identity folders: `ROOT/<identity>/.../<image>`.
    pub root: PathBuf,
    /// Where `image_list.json` goes.
    pub output: PathBuf,
    /// One entry per face (keys `path#0`, `path#1`, ... nearest the centre first) instead of only
    /// the face nearest the image centre.
    pub all_faces: bool,
    /// Fail, writing nothing, when any image is skipped.
    pub strict: bool,
    /// Draw a progress bar.
    pub progress: bool,
}

/// What `detect_folder` did.
#[derive(Debug, Clone)]
pub struct DetectReport {
    /// Images found under the root.
    pub images: usize,
    /// Entries written (faces, with `all_faces`).
    pub entries: usize,
    /// Identities (folders) that got at least one entry.
    pub identities: usize,
    /// Images without an entry, with the reason (no face, unreadable, not in an identity folder).
    pub skipped: Vec<Rejected>,
    /// Files under the root that are not images (by extension), left alone.
    pub other_files: usize,
    /// The skip list written beside the output, when there were skips.
    pub skipped_file: Option<PathBuf>,
    /// Seconds spent.
    pub seconds: f64,
}

/// Every file under `root`, relative, with `/` separators, sorted.
fn walk(root: &Path) -> Result<Vec<String>> {
    let mut out: Vec<String> = ffem_data::walk::files_under(root)?
        .iter()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    out.sort();
    Ok(out)
}

fn is_image(path: &str) -> bool {
    ffem_data::walk::is_image(Path::new(path))
}

/// The skip list's path: `image_list.json` -> `image_list.skipped.json`.
pub fn skipped_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image_list".into());
    output.with_file_name(format!("{stem}.skipped.json"))
}

/// Detects faces in every image under `opts.root` and writes the seed-format list.
///
/// Labels are the indices of the top-level folder names in sorted order (LFW's and insightface's
/// `identity/image.jpg` layout). Boxes are the detector's, clipped to the image; landmarks are not
/// clipped. Images that cannot be decoded, hold no face, or sit directly in the root are skipped
/// and listed in `<output stem>.skipped.json`.
pub fn detect_folder(detector: &Mtcnn, opts: &DetectOptions) -> Result<DetectReport> {
    let start = Instant::now();
    let files = walk(&opts.root)?;
    let (images, others): (Vec<String>, Vec<String>) = files.into_iter().partition(|f| is_image(f));
    let identities: BTreeMap<&str, u64> = {
        let names: std::collections::BTreeSet<&str> = images
            .iter()
            .filter_map(|p| p.split_once('/').map(|(id, _)| id))
            .collect();
        names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as u64))
            .collect()
    };
    tracing::info!(
        "{} images of {} identities under {}",
        images.len(),
        identities.len(),
        opts.root.display()
    );
    let bar = ffem_data::progress::bar(images.len() as u64, "detect", "img", opts.progress);
    let results: Vec<std::result::Result<Vec<ImageEntry>, Rejected>> = images
        .par_iter()
        .map(|rel| {
            let r = detect_one(detector, &opts.root, rel, &identities, opts.all_faces);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for r in results {
        match r {
            Ok(e) => entries.extend(e),
            Err(rej) => skipped.push(rej),
        }
    }
    if opts.strict && !skipped.is_empty() {
        return Err(DetectError::Strict {
            count: skipped.len(),
            first: format!("{}: {}", skipped[0].key, skipped[0].reason),
        });
    }
    if entries.is_empty() {
        return Err(DetectError::Image {
            path: opts.root.clone(),
            reason: format!(
                "no face found in any of {} images ({} skipped); expected ROOT/<identity>/<image>.jpg",
                images.len(),
                skipped.len()
            ),
        });
    }
    write_image_list(&opts.output, &entries)?;
    let skipped_file = skipped_path(&opts.output);
    let skipped_file = if skipped.is_empty() {
        // A stale list from an earlier run would describe other images.
        let _ = std::fs::remove_file(&skipped_file);
        None
    } else {
        ffem_data::atomic::write_json(&skipped_file, &skipped)?;
        Some(skipped_file)
    };
    let used: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.label).collect();
    Ok(DetectReport {
        images: images.len(),
        entries: entries.len(),
        identities: used.len(),
        skipped,
        other_files: others.len(),
        skipped_file,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn detect_one(
    detector: &Mtcnn,
    root: &Path,
    rel: &str,
    identities: &BTreeMap<&str, u64>,
    all_faces: bool,
) -> std::result::Result<Vec<ImageEntry>, Rejected> {
    let reject = |reason: String| Rejected {
        key: rel.to_string(),
        reason,
    };
    let Some(label) = rel
        .split_once('/')
        .and_then(|(id, _)| identities.get(id))
        .copied()
    else {
        return Err(reject(
            "not inside an identity folder (expected ROOT/<identity>/<image>); no label to give it"
                .into(),
        ));
    };
    let path = root.join(rel);
    let bytes =
        std::fs::read(&path).map_err(|e| reject(format!("cannot read {}: {e}", path.display())))?;
    let img = ffem_data::imageops::decode_rgb(&bytes)
        .map_err(|e| reject(format!("{}: {e}", path.display())))?;
    let mut faces = detector
        .detect_photo(&img)
        .map_err(|e| reject(e.to_string()))?;
    if faces.is_empty() {
        return Err(reject("no face found".into()));
    }
    let (w, h) = img.dimensions();
    faces.sort_by(|a, b| {
        a.centre_distance2(w, h)
            .total_cmp(&b.centre_distance2(w, h))
    });
    let entry = |key: String, f: &Face| {
        let b = FaceBox {
            x1: f.bbox[0],
            y1: f.bbox[1],
            x2: f.bbox[2],
            y2: f.bbox[3],
        };
        ImageEntry {
            path: key,
            label,
            face_box: Some(b.clip(w, h).unwrap_or(b)),
            landmarks: Some(f.landmarks),
        }
    };
    Ok(if all_faces {
        faces
            .iter()
            .enumerate()
            .map(|(i, f)| entry(format!("{rel}{FACE_SUFFIX}{i}"), f))
            .collect()
    } else {
        vec![entry(rel.to_string(), &faces[0])]
    })
}

/// How close one list's boxes and landmarks are to another's, over the keys both hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Keys in both lists.
    pub matched: usize,
    /// Reference keys the candidate lacks.
    pub missing: usize,
    /// Mean intersection-over-union of the boxes.
    pub mean_iou: f64,
    /// Median IoU.
    pub median_iou: f64,
    /// Share of boxes with IoU >= 0.5 (the usual "same face" criterion).
    pub iou_above_half: f64,
    /// Mean over entries of the mean Euclidean distance of the five landmarks, in pixels.
    pub mean_landmark_px: f64,
    /// Entries with landmarks in both lists.
    pub landmark_pairs: usize,
}

/// Compares `candidate` against `reference` entry by entry (same keys; a `#N` face suffix in the
/// candidate is ignored for `#0` only, so `--all-faces` output compares its central face).
pub fn compare_lists(candidate: &ImageList, reference: &ImageList) -> Comparison {
    let cand: BTreeMap<&str, &ImageEntry> = candidate
        .entries
        .iter()
        .filter_map(|e| match split_face_key(&e.path) {
            (file, None | Some("0")) => Some((file, e)),
            _ => None,
        })
        .collect();
    let mut ious = Vec::new();
    let mut lm = Vec::new();
    let mut missing = 0;
    for r in &reference.entries {
        let Some(c) = cand.get(r.path.as_str()) else {
            missing += 1;
            continue;
        };
        if let (Some(a), Some(b)) = (c.face_box, r.face_box) {
            ious.push(a.iou(&b) as f64);
        }
        if let (Some(a), Some(b)) = (c.landmarks, r.landmarks) {
            let d: f64 = (0..5)
                .map(|i| ((a[2 * i] - b[2 * i]) as f64).hypot((a[2 * i + 1] - b[2 * i + 1]) as f64))
                .sum();
            lm.push(d / 5.0);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut sorted = ious.clone();
    sorted.sort_by(f64::total_cmp);
    Comparison {
        matched: ious.len(),
        missing,
        mean_iou: mean(&ious),
        median_iou: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        iou_above_half: if ious.is_empty() {
            0.0
        } else {
            ious.iter().filter(|&&v| v >= 0.5).count() as f64 / ious.len() as f64
        },
        mean_landmark_px: mean(&lm),
        landmark_pairs: lm.len(),
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images compared ({} missing): mean box IoU {:.4} (median {:.4}, {:.2}% >= 0.5), mean landmark error {:.3} px",
            self.matched,
            self.missing,
            self.mean_iou,
            self.median_iou,
            100.0 * self.iou_above_half,
            self.mean_landmark_px
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, b: [f32; 4], lm: [f32; 10]) -> ImageEntry {
        ImageEntry {
            path: path.into(),
            label: 0,
            face_box: Some(FaceBox {
                x1: b[0],
                y1: b[1],
                x2: b[2],
                y2: b[3],
            }),
            landmarks: Some(lm),
        }
    }

    #[test]
    fn comparison_by_hand() {
        let lm = [0.0; 10];
        let reference = ImageList {
            entries: vec![
                entry("a.jpg", [0.0, 0.0, 10.0, 10.0], lm),
                entry("b.jpg", [0.0, 0.0, 10.0, 10.0], lm),
                entry("c.jpg", [0.0; 4], lm),
            ],
            rejected: vec![],
        };
        // a: identical box, landmarks each moved by (3, 4) -> 5 px. b: shifted by 5 in x: overlap
        // 5x10 = 50, union 150 -> IoU 1/3; landmarks exact. b#1 is a second face: ignored.
        let mut moved = lm;
        for p in moved.chunks_exact_mut(2) {
            p[0] += 3.0;
            p[1] += 4.0;
        }
        let candidate = ImageList {
            entries: vec![
                entry("a.jpg", [0.0, 0.0, 10.0, 10.0], moved),
                entry("b.jpg#0", [5.0, 0.0, 15.0, 10.0], lm),
                entry("b.jpg#1", [50.0, 0.0, 60.0, 10.0], moved),
            ],
            rejected: vec![],
        };
        let c = compare_lists(&candidate, &reference);
        assert_eq!((c.matched, c.missing, c.landmark_pairs), (2, 1, 2));
        assert!((c.mean_iou - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-6, "{c:?}");
        assert!((c.mean_landmark_px - 2.5).abs() < 1e-9);
        assert_eq!(c.iou_above_half, 0.5);
    }

    #[test]
    fn skipped_list_sits_beside_the_output() {
        assert_eq!(
            skipped_path(Path::new("/x/image_list.json")),
            PathBuf::from("/x/image_list.skipped.json")
        );
    }
}
