//! Verification pair sets with their images: LFW, CFP (FF / FP), insightface `.bin` files, and
//! pairs drawn from a labelled list (the synthetic demo). Images are embedded once each; pairs
//! index them.

use std::collections::HashMap;
use std::path::Path;

use ffem_data::image_list::ImageList;
use ffem_eval::VerificationReport;
use ffem_eval::pairs::{CfpProtocol, read_cfp_pairs, read_lfw_pairs};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::embed::{Embedder, FaceInput};
use crate::error::InferError;
use crate::faces::{EmbedOptions, EmbeddedFaces, FaceSource, embed_faces};

/// A pair set: unique images and pairs of indices into them.
#[derive(Debug, Clone)]
pub struct PairSet {
    /// Name for reports ("lfw", "cfp_fp", ...).
    pub name: String,
    /// The images.
    pub faces: Vec<FaceInput>,
    /// (image a, image b, same identity), in protocol order.
    pub pairs: Vec<(usize, usize, bool)>,
}

/// Reads the images at `paths` (relative to `root`), with boxes and landmarks from `list` when it
/// has the path; the first unreadable image is the error.
pub fn load_faces(
    root: &Path,
    list: Option<&ImageList>,
    paths: &[String],
) -> Result<Vec<FaceInput>, InferError> {
    let by_path: HashMap<&str, &ffem_data::ImageEntry> = list
        .map(|l| l.entries.iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    paths
        .par_iter()
        .map(|p| {
            match by_path.get(p.as_str()) {
                Some(entry) => FaceSource::list_entry(root, entry),
                None => FaceSource {
                    name: p.clone(),
                    ..FaceSource::file(&root.join(ffem_data::image_list::file_of_key(p)))
                },
            }
            .read()
        })
        .collect()
}

fn index_pairs(
    name: &str,
    pairs: Vec<ffem_eval::pairs::Pair>,
    root: &Path,
    list: Option<&ImageList>,
) -> Result<PairSet, InferError> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut paths = Vec::new();
    let mut idx = |p: &String| -> usize {
        *index.entry(p.clone()).or_insert_with(|| {
            paths.push(p.clone());
            paths.len() - 1
        })
    };
    let pairs: Vec<(usize, usize, bool)> = pairs
        .iter()
        .map(|p| (idx(&p.a), idx(&p.b), p.same))
        .collect();
    let faces = load_faces(root, list, &paths)?;
    Ok(PairSet {
        name: name.into(),
        faces,
        pairs,
    })
}

impl PairSet {
    /// LFW: `DIR/pairs.txt`, `DIR/image_list.json`, images under `DIR/lfw-deepfunneled`.
    pub fn lfw(dir: &Path) -> Result<PairSet, InferError> {
        let pairs = read_lfw_pairs(&dir.join("pairs.txt"))?;
        let list = ImageList::load(&dir.join("image_list.json"))?;
        index_pairs("lfw", pairs, &dir.join("lfw-deepfunneled"), Some(&list))
    }

    /// CFP: `DIR/Protocol`, `DIR/image_list.json`, images under `DIR/Data/Images`.
    pub fn cfp(dir: &Path, which: CfpProtocol) -> Result<PairSet, InferError> {
        let pairs = read_cfp_pairs(&dir.join("Protocol"), which)?;
        let list = ImageList::load(&dir.join("image_list.json"))?;
        let name = if which == CfpProtocol::FP {
            "cfp_fp"
        } else {
            "cfp_ff"
        };
        index_pairs(name, pairs, &dir.join("Data/Images"), Some(&list))
    }

    /// An insightface `.bin` set: images are aligned crops, used whole.
    pub fn bin(path: &Path) -> Result<PairSet, InferError> {
        let set = ffem_eval::bin_set::read_bin(path)?;
        let faces = set
            .images
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                let dims = image::ImageReader::new(std::io::Cursor::new(&bytes))
                    .with_guessed_format()
                    .ok()
                    .and_then(|r| r.into_dimensions().ok());
                let face_box = dims.map(|(w, h)| [0.0, 0.0, w as f32, h as f32]);
                FaceInput {
                    bytes,
                    face_box,
                    landmarks: None,
                    name: format!("{}[{i}]", path.display()),
                }
            })
            .collect();
        let pairs = set
            .issame
            .iter()
            .enumerate()
            .map(|(i, &s)| (2 * i, 2 * i + 1, s))
            .collect();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bin".into());
        Ok(PairSet { name, faces, pairs })
    }

    /// Draws `n` same and `n` different pairs (interleaved by fold) from a labelled list.
    pub fn from_list(
        name: &str,
        root: &Path,
        list: &ImageList,
        n: usize,
        seed: u64,
    ) -> Result<PairSet, InferError> {
        let mut by_label: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for (i, e) in list.entries.iter().enumerate() {
            by_label.entry(e.label).or_default().push(i);
        }
        let labels: Vec<u64> = by_label.keys().copied().collect();
        let multi: Vec<u64> = by_label
            .iter()
            .filter(|(_, v)| v.len() >= 2)
            .map(|(k, _)| *k)
            .collect();
        if multi.is_empty() || labels.len() < 2 {
            return Err(InferError::Invalid(format!(
                "{name}: need identities with two or more images to draw pairs"
            )));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut same = Vec::new();
        let mut diff = Vec::new();
        while same.len() < n {
            let l = multi[rng.random_range(0..multi.len())];
            let imgs = &by_label[&l];
            let pick: Vec<&usize> = imgs.choose_multiple(&mut rng, 2).collect();
            same.push((*pick[0], *pick[1], true));
        }
        while diff.len() < n {
            let a = labels[rng.random_range(0..labels.len())];
            let b = labels[rng.random_range(0..labels.len())];
            if a == b {
                continue;
            }
            let ia = *by_label[&a].choose(&mut rng).expect("non-empty");
            let ib = *by_label[&b].choose(&mut rng).expect("non-empty");
            diff.push((ia, ib, false));
        }
        // Ten folds, each half same and half different, like LFW's layout.
        let per = n / 10;
        let mut pairs = Vec::with_capacity(2 * n);
        for f in 0..10 {
            let end = if f == 9 { n } else { (f + 1) * per };
            pairs.extend_from_slice(&same[f * per..end]);
            pairs.extend_from_slice(&diff[f * per..end]);
        }
        let paths: Vec<String> = list.entries.iter().map(|e| e.path.clone()).collect();
        let faces = load_faces(root, Some(list), &paths)?;
        Ok(PairSet {
            name: name.into(),
            faces,
            pairs,
        })
    }

    /// Parses `kind:path` (`lfw:DIR`, `cfp_fp:DIR`, `cfp_ff:DIR`, `bin:FILE`).
    pub fn from_spec(spec: &str) -> Result<PairSet, InferError> {
        let (kind, path) = spec.split_once(':').ok_or_else(|| {
            InferError::Invalid(format!(
                "pair set `{spec}`: write kind:path, e.g. lfw:../shared/data/lfw"
            ))
        })?;
        let path = Path::new(path);
        match kind {
            "lfw" => Self::lfw(path),
            "cfp_fp" => Self::cfp(path, CfpProtocol::FP),
            "cfp_ff" => Self::cfp(path, CfpProtocol::FF),
            "bin" => Self::bin(path),
            other => Err(InferError::Invalid(format!(
                "pair set kind `{other}`: use lfw, cfp_fp, cfp_ff or bin"
            ))),
        }
    }
}

/// Embeds every image of `set` (flip TTA when `flip`); the first face that cannot be prepared
/// fails the whole set.
pub fn embed_set(
    embedder: &Embedder,
    faces: &[FaceInput],
    align: bool,
    flip: bool,
    progress: bool,
) -> Result<EmbeddedFaces, InferError> {
    let opts = EmbedOptions {
        align,
        flip,
        progress,
        skip_bad: false,
        detector: None,
    };
    embed_faces(embedder, faces, |f| Ok(f.clone()), opts)
}

/// Squared L2 distance of each pair of a set, from its normalised embeddings.
pub fn set_distances(set: &PairSet, emb: &EmbeddedFaces) -> Vec<f32> {
    let d = emb.dim;
    let row = |i: usize| &emb.embeddings[i * d..][..d];
    set.pairs
        .iter()
        .map(|&(a, b, _)| {
            row(a)
                .iter()
                .zip(row(b))
                .map(|(x, y)| (x - y) * (x - y))
                .sum()
        })
        .collect()
}

/// Scores a pair set with the insightface protocol.
pub fn verify_set(set: &PairSet, emb: &EmbeddedFaces) -> VerificationReport {
    let dist = set_distances(set, emb);
    let issame: Vec<bool> = set.pairs.iter().map(|p| p.2).collect();
    ffem_eval::evaluate(&dist, &issame, 10, Some(emb.mean_norm))
}
