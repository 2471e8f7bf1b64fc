//! What the embedding commands and the evaluation sets read: faces gathered from image files,
//! folders (searched recursively, the parent folder's name as label) and `image_list.json` files
//! (with their boxes and landmarks), and the one embedding loop over them that skips and reports
//! what cannot be read, decoded or cropped. A face that comes without a box is found by the
//! detector (MTCNN) when one is given, with its five landmarks, so that a model trained on aligned
//! crops is fed aligned crops; without a detector the centre square is used.

use std::path::{Path, PathBuf};

use ffem_data::image_list::{ImageEntry, ImageList};
use rayon::prelude::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use ffem_detect::Mtcnn;

use crate::embed::{Embedder, FaceInput, prepare_decoded};
use crate::error::InferError;

/// The network input of a face, its photo decoded once. A face given without a box is found
/// first when there is a detector: MTCNN on the upright photo (large photos shrunk first, see
/// `Mtcnn::detect_photo`), the largest face (ties: the one nearest the centre), its box and
/// landmarks filled in; a photo without a face is an error naming it. Also returns how many faces
/// the photo held (0 when none was looked for).
pub fn prepare_face(
    face: &mut FaceInput,
    detector: Option<&Mtcnn>,
    size: usize,
    align: bool,
) -> Result<(Vec<f32>, usize), InferError> {
    let name = face.name.clone();
    let unusable = |reason: String| InferError::Unusable {
        name: name.clone(),
        reason,
    };
    let img = ffem_data::imageops::decode_rgb(&face.bytes)
        .map_err(|e| unusable(format!("not a decodable image: {e}")))?;
    let mut found = 0;
    if let (None, Some(detector)) = (face.face_box, detector) {
        let faces = detector.faces_in(&img).map_err(&unusable)?;
        face.face_box = Some(faces[0].bbox);
        face.landmarks = Some(faces[0].landmarks);
        found = faces.len();
    }
    let image =
        prepare_decoded(&img, face.face_box, face.landmarks, size, align).map_err(unusable)?;
    Ok((image, found))
}

/// A face to embed, not yet read: where its image is and what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceSource {
    /// The image file.
    pub path: PathBuf,
    /// How to name it in outputs and messages (the list key, or the path).
    pub name: String,
    /// Identity label text: the list's label, the parent folder's name, or empty.
    pub label: String,
    /// Face box (left, top, right, bottom); `None` embeds the centre crop.
    pub face_box: Option<[f32; 4]>,
    /// Five landmarks, for models that align.
    pub landmarks: Option<[f32; 10]>,
}

impl FaceSource {
    /// An image file with no box or label.
    pub fn file(path: &Path) -> Self {
        FaceSource {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            label: String::new(),
            face_box: None,
            landmarks: None,
        }
    }

    /// An image file, with the box and landmarks of the list entry whose key its path ends with.
    pub fn file_in_list(path: &Path, entries: &[ImageEntry]) -> Self {
        let slashed = path.to_string_lossy().replace('\\', "/");
        let entry = entries.iter().find(|e| slashed.ends_with(&e.path));
        FaceSource {
            face_box: entry
                .and_then(|e| e.face_box)
                .map(|b| [b.x1, b.y1, b.x2, b.y2]),
            landmarks: entry.and_then(|e| e.landmarks),
            ..Self::file(path)
        }
    }

    /// An entry of an image list whose paths are relative to `root`.
    pub fn list_entry(root: &Path, entry: &ImageEntry) -> Self {
        FaceSource {
            path: root.join(entry.file()),
            name: entry.path.clone(),
            label: entry.label.to_string(),
            face_box: entry.face_box.map(|b| [b.x1, b.y1, b.x2, b.y2]),
            landmarks: entry.landmarks,
        }
    }

    /// Reads the image file.
    pub fn read(&self) -> Result<FaceInput, InferError> {
        let bytes = std::fs::read(&self.path).map_err(|source| InferError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(FaceInput {
            bytes,
            face_box: self.face_box,
            landmarks: self.landmarks,
            name: self.name.clone(),
        })
    }
}

/// Gathers the faces of `inputs`: image files, folders of images (recursively, labelled by their
/// parent folder) and `image_list.json` files (paths relative to `root`, default the list's
/// folder). Invalid list entries are logged and left out.
pub fn gather(inputs: &[PathBuf], root: Option<&Path>) -> Result<Vec<FaceSource>, InferError> {
    let mut sources = Vec::new();
    for input in inputs {
        if input.is_dir() {
            for path in ffem_data::walk::images_under(input)? {
                let label = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                sources.push(FaceSource {
                    label,
                    ..FaceSource::file(&path)
                });
            }
        } else if input.extension().is_some_and(|e| e == "json") {
            let list = ImageList::load(input)?;
            for r in &list.rejected {
                tracing::warn!("{}: skipping {}: {}", input.display(), r.key, r.reason);
            }
            let base = root
                .map(Path::to_path_buf)
                .unwrap_or_else(|| input.parent().map(Path::to_path_buf).unwrap_or_default());
            sources.extend(
                list.entries
                    .iter()
                    .map(|e| FaceSource::list_entry(&base, e)),
            );
        } else {
            sources.push(FaceSource::file(input));
        }
    }
    Ok(sources)
}

/// Every face of the photos among `sources` that come without a box, each as a source of its own
/// named `NAME#0`, `NAME#1`, ... (largest first, the key form `ffem detect --all-faces` writes);
/// sources with a box pass through. Photos that cannot be read or hold no face are returned with
/// the reason, by index into `sources`.
pub fn expand_all_faces(
    detector: &Mtcnn,
    sources: &[FaceSource],
) -> (Vec<FaceSource>, Vec<(usize, String)>) {
    let found: Vec<Result<Vec<FaceSource>, InferError>> = sources
        .par_iter()
        .map(|s| {
            if s.face_box.is_some() {
                return Ok(vec![s.clone()]);
            }
            let face = s.read()?;
            let unusable = |reason: String| InferError::Unusable {
                name: s.name.clone(),
                reason,
            };
            let img = ffem_data::imageops::decode_rgb(&face.bytes)
                .map_err(|e| unusable(format!("not a decodable image: {e}")))?;
            let faces = detector.faces_in(&img).map_err(unusable)?;
            Ok(faces
                .iter()
                .enumerate()
                .map(|(k, f)| FaceSource {
                    name: format!("{}{}{k}", s.name, ffem_data::image_list::FACE_SUFFIX),
                    face_box: Some(f.bbox),
                    landmarks: Some(f.landmarks),
                    ..s.clone()
                })
                .collect())
        })
        .collect();
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for (i, r) in found.into_iter().enumerate() {
        match r {
            Ok(faces) => out.extend(faces),
            Err(e) => skipped.push((i, e.to_string())),
        }
    }
    (out, skipped)
}

/// What [`embed_sources`] produced.
#[derive(Debug, Clone)]
pub struct EmbeddedFaces {
    /// L2-normalised embeddings of the faces that worked, in order.
    pub embeddings: Vec<f32>,
    /// Embedding width.
    pub dim: usize,
    /// Mean norm of the plain images' embeddings before normalisation.
    pub mean_norm: f64,
    /// Index into the sources of each embedding row.
    pub kept: Vec<usize>,
    /// Sources that could not be read, decoded or cropped, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// Faces embedded from the centre crop for lack of a box.
    pub centre_cropped: usize,
}

/// Embeds faces: reading, decoding and cropping (aligning when `align`) in parallel, a batch at a
/// time, with flip test-time augmentation when `flip`. With `skip_bad`, faces that fail are
/// skipped and reported; otherwise the first failure is the error.
pub fn embed_faces<F>(
    embedder: &Embedder,
    faces: &[F],
    read: impl Fn(&F) -> Result<FaceInput, InferError> + Sync,
    opts: EmbedOptions,
) -> Result<EmbeddedFaces, InferError>
where
    F: Sync,
{
    let size = embedder.config().image_size;
    let dim = embedder.dim();
    let bar = ffem_data::progress::bar(faces.len() as u64, "embed", "img", opts.progress);
    let several_faces = AtomicUsize::new(0);
    let mut out = Vec::with_capacity(faces.len() * dim);
    let chunk = embedder.batch_size.max(1);
    let (mut centre_cropped, mut norm_sum) = (0, 0f64);
    let (mut kept, mut skipped) = (Vec::with_capacity(faces.len()), Vec::new());
    for (g, group) in faces.chunks(chunk).enumerate() {
        let prepared: Vec<Result<(Vec<f32>, bool), InferError>> = group
            .par_iter()
            .map(|f| {
                let mut face = read(f)?;
                let (image, found) = prepare_face(&mut face, opts.detector, size, opts.align)?;
                if found > 1 {
                    several_faces.fetch_add(1, Ordering::Relaxed);
                }
                Ok((image, face.face_box.is_none()))
            })
            .collect();
        let mut images = Vec::with_capacity(group.len() * 3 * size * size);
        for (j, p) in prepared.into_iter().enumerate() {
            let index = g * chunk + j;
            match p {
                Ok((image, centre)) => {
                    images.extend(image);
                    kept.push(index);
                    centre_cropped += usize::from(centre);
                }
                Err(e) if opts.skip_bad => skipped.push((index, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        bar.inc(group.len() as u64);
        let n = images.len() / (3 * size * size);
        if n > 0 {
            let (rows, norms) = embedder.embed_batch(&images, n, opts.flip);
            out.extend(rows);
            norm_sum += norms;
        }
    }
    bar.finish_and_clear();
    if centre_cropped > 0 {
        tracing::warn!(
            "{centre_cropped} images had no face box and were embedded from the centre crop"
        );
    }
    let several_faces = several_faces.into_inner();
    if several_faces > 0 {
        tracing::warn!("{several_faces} photos held more than one face; the largest was used");
    }
    ffem_eval::embedding::normalize_rows(&mut out, dim);
    Ok(EmbeddedFaces {
        embeddings: out,
        dim,
        mean_norm: if kept.is_empty() {
            0.0
        } else {
            norm_sum / kept.len() as f64
        },
        kept,
        skipped,
        centre_cropped,
    })
}

impl EmbeddedFaces {
    /// The gallery entries (name, label) of the embedded rows, from the sources they came from.
    pub fn gallery_entries(&self, sources: &[FaceSource]) -> Vec<ffem_eval::gallery::GalleryEntry> {
        self.kept
            .iter()
            .map(|&i| ffem_eval::gallery::GalleryEntry {
                name: sources[i].name.clone(),
                label: sources[i].label.clone(),
            })
            .collect()
    }
}

/// How [`embed_faces`] treats the faces.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbedOptions<'a> {
    /// Align by landmarks where a face has them (use the model's `align`).
    pub align: bool,
    /// Flip test-time augmentation.
    pub flip: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// Skip and report faces that fail instead of failing.
    pub skip_bad: bool,
    /// Finds faces that come without a box; `None` embeds their centre square.
    pub detector: Option<&'a Mtcnn>,
}

/// Embeds the faces of `sources` (see [`embed_faces`]).
pub fn embed_sources(
    embedder: &Embedder,
    sources: &[FaceSource],
    opts: EmbedOptions,
) -> Result<EmbeddedFaces, InferError> {
    embed_faces(embedder, sources, FaceSource::read, opts)
}
