//! The seed's dataset list, `image_list.json`: `{ "rel/path.jpg": {"label": 0, "x1": .., "y1": ..,
//! "x2": .., "y2": .., "landmarks": [10 numbers]} }`.
//!
//! Parsing keeps file order and sees duplicate keys (a plain JSON map would silently keep the last
//! one). Syntax errors fail the whole file with line and column; an entry whose values are wrong is
//! returned as a [`Rejected`] entry with the reason, so that tools can skip, count and report it.
//!
//! Over 600 lines because it is one format's reader, writer and validation together with the
//! list operations defined on it (merge with label offsets, label flipping): each needs the
//! entry rules the others check.

use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::error::{DataError, Result};

/// A face box in pixels: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl FaceBox {
    /// Width (may be negative for an invalid box).
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }
    /// Height (may be negative for an invalid box).
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }
    /// Clips the box to a `width` x `height` image; `None` when nothing of it is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<FaceBox> {
        let b = FaceBox {
            x1: self.x1.clamp(0.0, width as f32),
            y1: self.y1.clamp(0.0, height as f32),
            x2: self.x2.clamp(0.0, width as f32),
            y2: self.y2.clamp(0.0, height as f32),
        };
        (b.width() > 0.0 && b.height() > 0.0).then_some(b)
    }
    /// Intersection over union with another box.
    pub fn iou(&self, other: &FaceBox) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.width() * self.height() + other.width() * other.height() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// Flips `fraction` of `labels` (rounded to whole images) to another label that occurs in the
/// list, deterministically for a `seed`; returns the rows it flipped. For label-noise
/// experiments: the flipped rows are the ground truth a noise finder is scored against.
pub fn flip_labels(
    labels: &mut [u64],
    fraction: f64,
    seed: u64,
) -> std::collections::BTreeSet<usize> {
    use std::collections::BTreeSet;
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    // xorshift64: a few lines, and the same flips on every platform and crate version.
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let distinct: Vec<u64> = labels
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let wanted =
        ((labels.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize).min(labels.len());
    let mut flipped = BTreeSet::new();
    while flipped.len() < wanted && distinct.len() > 1 {
        let row = (next() % labels.len() as u64) as usize;
        if flipped.insert(row) {
            let old = labels[row];
            while labels[row] == old {
                labels[row] = distinct[(next() % distinct.len() as u64) as usize];
            }
        }
    }
    flipped
}

/// Concatenates several lists into one training list: each entry's path becomes its list's root
/// joined with the key (so the merged list reads with root `/` when the roots are absolute), and
/// each list's labels are offset past the largest label of the lists before it, so that label 0 of
/// CFP and label 0 of CelebA stay two identities. Gaps within a list are kept; an empty list
/// shifts nothing.
pub fn merge_lists<P: AsRef<Path>>(
    lists: impl IntoIterator<Item = (P, Vec<ImageEntry>)>,
) -> Vec<ImageEntry> {
    let mut merged = Vec::new();
    let mut offset = 0u64;
    for (root, entries) in lists {
        let Some(top) = entries.iter().map(|e| e.label).max() else {
            continue;
        };
        merged.extend(entries.into_iter().map(|e| ImageEntry {
            path: root.as_ref().join(&e.path).display().to_string(),
            label: e.label + offset,
            ..e
        }));
        offset += top + 1;
    }
    merged
}

/// Five facial points (left eye, right eye, nose, mouth left, mouth right) as x,y pairs.
pub type Landmarks = [f32; 10];

/// One valid entry of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    /// Path relative to the image root, exactly as written in the JSON key.
    pub path: String,
    /// The identity label as written (not yet remapped to 0..N-1).
    pub label: u64,
    /// The face box; `None` when the entry has no box keys (the whole image is the face).
    pub face_box: Option<FaceBox>,
    /// Optional five-point landmarks.
    pub landmarks: Option<Landmarks>,
}

impl ImageEntry {
    /// The image file the entry points at: the key without a face-index suffix (see [`file_of_key`]).
    pub fn file(&self) -> &str {
        file_of_key(&self.path)
    }
}

/// Separator between an image path and the face index in the keys `ffem detect --all-faces`
/// writes, one entry per face: `path#0`, `path#1`, ...
pub const FACE_SUFFIX: char = '#';

/// Splits a key into its file and its face index digits (`a/b.jpg#1` -> `("a/b.jpg", Some("1"))`);
/// a key without a numeric suffix is the file path itself.
pub fn split_face_key(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once(FACE_SUFFIX) {
        Some((file, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (file, Some(n))
        }
        _ => (key, None),
    }
}

/// The file part of a key (see [`split_face_key`]).
pub fn file_of_key(key: &str) -> &str {
    split_face_key(key).0
}

/// An entry that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// The JSON key (image path) of the entry.
    pub key: String,
    /// Why it was rejected, in words a user can act on.
    pub reason: String,
}

/// The parsed list: valid entries in file order, and rejected ones.
#[derive(Debug, Default, Clone)]
pub struct ImageList {
    /// Entries that passed the syntactic checks.
    pub entries: Vec<ImageEntry>,
    /// Entries that did not, in file order.
    pub rejected: Vec<Rejected>,
}

impl ImageList {
    /// Reads and parses `image_list.json` from a file.
    pub fn load(path: &Path) -> Result<ImageList> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses the text of an `image_list.json`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<ImageList> {
        if text.trim().is_empty() {
            return Err(DataError::Json {
                path: origin.to_path_buf(),
                line: 1,
                column: 1,
                message: "the file is empty".into(),
            });
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let pairs = de
            .deserialize_map(OrderedPairs)
            .and_then(|p| de.end().map(|_| p));
        let pairs = pairs.map_err(|e| DataError::Json {
            path: origin.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e
                .to_string()
                .split(" at line")
                .next()
                .unwrap_or_default()
                .to_string(),
        })?;
        let mut list = ImageList::default();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.clone()) {
                list.rejected.push(Rejected {
                    key,
                    reason: "duplicate path: the key appears more than once; keep one entry".into(),
                });
                continue;
            }
            match parse_entry(&key, &value) {
                Ok(entry) => list.entries.push(entry),
                Err(reason) => list.rejected.push(Rejected { key, reason }),
            }
        }
        Ok(list)
    }
}

fn parse_entry(key: &str, value: &Value) -> std::result::Result<ImageEntry, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("value must be an object with label and box, found {value}"))?;
    if key.is_empty() {
        return Err("empty image path".into());
    }
    let label = match obj.get("label") {
        None => return Err("missing \"label\"".into()),
        Some(v) => parse_label(v)?,
    };
    let coords: Vec<Option<&Value>> = ["x1", "y1", "x2", "y2"]
        .iter()
        .map(|k| obj.get(*k))
        .collect();
    let face_box = if coords.iter().all(Option::is_none) {
        None
    } else {
        let mut c = [0f32; 4];
        for (i, name) in ["x1", "y1", "x2", "y2"].iter().enumerate() {
            let v = coords[i].ok_or_else(|| format!("box is incomplete: missing \"{name}\""))?;
            c[i] = v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("\"{name}\" must be a number, found {v}"))?
                as f32;
        }
        let b = FaceBox {
            x1: c[0],
            y1: c[1],
            x2: c[2],
            y2: c[3],
        };
        if b.width() <= 0.0 || b.height() <= 0.0 {
            return Err(format!(
                "box has no area (x1={}, y1={}, x2={}, y2={}): need x2 > x1 and y2 > y1 \
                 (box = left, top, right, bottom)",
                b.x1, b.y1, b.x2, b.y2
            ));
        }
        Some(b)
    };
    let landmarks = match obj.get("landmarks") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_landmarks(v)?),
    };
    Ok(ImageEntry {
        path: key.to_string(),
        label,
        face_box,
        landmarks,
    })
}

fn parse_label(v: &Value) -> std::result::Result<u64, String> {
    if let Some(l) = v.as_u64() {
        return Ok(l);
    }
    if let Some(l) = v.as_i64() {
        return Err(format!(
            "label {l} is negative: labels must be integers >= 0"
        ));
    }
    if let Some(f) = v.as_f64() {
        if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 {
            return Ok(f as u64);
        }
        return Err(format!("label {f} is not a non-negative integer"));
    }
    Err(format!("label must be a non-negative integer, found {v}"))
}

fn parse_landmarks(v: &Value) -> std::result::Result<Landmarks, String> {
    let bad = || format!("\"landmarks\" must be 10 numbers (5 x,y points), found {v}");
    let flat: Vec<f64> = match v.as_array() {
        Some(items) if items.iter().all(Value::is_array) => {
            // Also accept [[x, y], ...] as written by some detectors.
            items
                .iter()
                .flat_map(|p| p.as_array().cloned().unwrap_or_default())
                .map(|x| x.as_f64())
                .collect::<Option<_>>()
                .ok_or_else(bad)?
        }
        Some(items) => items
            .iter()
            .map(Value::as_f64)
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        None => return Err(bad()),
    };
    if flat.len() != 10 || flat.iter().any(|x| !x.is_finite()) {
        return Err(bad());
    }
    let mut out = [0f32; 10];
    for (o, x) in out.iter_mut().zip(flat) {
        *o = x as f32;
    }
    Ok(out)
}

/// Visits a JSON object as an ordered list of pairs, keeping duplicates.
struct OrderedPairs;

impl<'de> Visitor<'de> for OrderedPairs {
    type Value = Vec<(String, Value)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object mapping image paths to entries")
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

/// Writes entries in the seed format (keys in the given order), atomically.
pub fn write_image_list(path: &Path, entries: &[ImageEntry]) -> Result<()> {
    let mut text = String::from("{");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('\n');
        let mut obj = serde_json::Map::new();
        obj.insert("label".into(), e.label.into());
        if let Some(b) = e.face_box {
            for (k, v) in [("x1", b.x1), ("y1", b.y1), ("x2", b.x2), ("y2", b.y2)] {
                obj.insert(k.into(), json_number(v));
            }
        }
        if let Some(l) = e.landmarks {
            obj.insert(
                "landmarks".into(),
                Value::Array(l.iter().map(|&v| json_number(v)).collect()),
            );
        }
        text.push_str(&serde_json::to_string(&e.path).expect("string serialises"));
        text.push(':');
        text.push_str(&Value::Object(obj).to_string());
    }
    text.push_str("\n}\n");
    crate::atomic::write_file(path, text.as_bytes())
}

fn json_number(v: f32) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        Value::from(v as i64)
    } else {
        Value::from(((v as f64) * 100.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lists_keeps_colliding_labels_apart_and_roots_the_paths() {
        let entry = |path: &str, label| ImageEntry {
            path: path.into(),
            label,
            face_box: None,
            landmarks: None,
        };
        let cfp = vec![
            entry("1/a.jpg", 0),
            entry("2/b.jpg", 5),
            entry("1/c.jpg", 0),
        ];
        let celeba = vec![entry("x.jpg", 0), entry("y.jpg", 1)];
        let lfw = vec![entry("z.jpg", 1)];
        let merged = merge_lists(vec![
            (Path::new("/d/cfp"), cfp),
            (Path::new("/d/empty"), Vec::new()),
            (Path::new("/d/celeba"), celeba),
            (Path::new("/d/lfw"), lfw),
        ]);
        let got: Vec<(&str, u64)> = merged.iter().map(|e| (e.path.as_str(), e.label)).collect();
        // CFP's labels 0..=5 stay; CelebA's start at 6 (after CFP's largest, gap kept), the
        // empty list shifts nothing, the last list's 1 lands after CelebA's 7.
        assert_eq!(
            got,
            [
                ("/d/cfp/1/a.jpg", 0),
                ("/d/cfp/2/b.jpg", 5),
                ("/d/cfp/1/c.jpg", 0),
                ("/d/celeba/x.jpg", 6),
                ("/d/celeba/y.jpg", 7),
                ("/d/lfw/z.jpg", 9),
            ]
        );
    }

    #[test]
    fn flip_labels_flips_the_asked_share_to_other_existing_labels() {
        let original: Vec<u64> = (0..200).map(|i| i % 7).collect();
        let mut labels = original.clone();
        let flipped = flip_labels(&mut labels, 0.2, 3);
        assert_eq!(flipped.len(), 40);
        for (row, (a, b)) in original.iter().zip(&labels).enumerate() {
            assert_eq!(a != b, flipped.contains(&row), "row {row}");
            assert!(*b < 7);
        }
        let mut again = original.clone();
        assert_eq!(flip_labels(&mut again, 0.2, 3), flipped);
        assert_eq!(again, labels);
        let mut other = original.clone();
        assert_ne!(flip_labels(&mut other, 0.2, 4), flipped);
    }

    #[test]
    fn face_suffix_is_stripped_only_when_numeric() {
        assert_eq!(file_of_key("a/b.jpg#2"), "a/b.jpg");
        assert_eq!(file_of_key("a/b.jpg#10"), "a/b.jpg");
        assert_eq!(file_of_key("a/b.jpg"), "a/b.jpg");
        assert_eq!(file_of_key("a/#b.jpg"), "a/#b.jpg");
        assert_eq!(file_of_key("a/b.jpg#"), "a/b.jpg#");
    }

    fn parse(text: &str) -> Result<ImageList> {
        ImageList::parse(text, Path::new("list.json"))
    }

    #[test]
    fn parses_seed_format_in_file_order() {
        let list = parse(
            r#"{"b/2.jpg": {"label": 7, "x1": 1, "y1": 2, "x2": 30, "y2": 40.5, "extra": "ignored"},
                "a/1.jpg": {"label": 3, "x1": 0, "y1": 0, "x2": 9, "y2": 9,
                            "landmarks": [1,2,3,4,5,6,7,8,9,10]}}"#,
        )
        .unwrap();
        assert!(list.rejected.is_empty());
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[0].path, "b/2.jpg");
        assert_eq!(list.entries[0].label, 7);
        assert_eq!(
            list.entries[0].face_box,
            Some(FaceBox {
                x1: 1.0,
                y1: 2.0,
                x2: 30.0,
                y2: 40.5
            })
        );
        assert_eq!(list.entries[1].landmarks.unwrap()[9], 10.0);
    }

    #[test]
    fn rejects_bad_entries_with_reasons() {
        let list = parse(
            r#"{"neg.jpg": {"label": -1, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
                "frac.jpg": {"label": 1.5, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
                "str.jpg": {"label": "3", "x1": 0, "y1": 0, "x2": 5, "y2": 5},
                "flat.jpg": {"label": 1, "x1": 5, "y1": 0, "x2": 5, "y2": 5},
                "half.jpg": {"label": 1, "x1": 0, "y1": 0, "x2": 5},
                "dup.jpg": {"label": 1, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
                "dup.jpg": {"label": 2, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
                "lm.jpg": {"label": 1, "landmarks": [1, 2, 3]},
                "ok.jpg": {"label": 4.0}}"#,
        )
        .unwrap();
        let reasons: Vec<(&str, &str)> = list
            .rejected
            .iter()
            .map(|r| (r.key.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons[0].1.contains("negative"));
        assert!(reasons[1].1.contains("not a non-negative integer"));
        assert!(reasons[2].1.contains("must be a non-negative integer"));
        assert!(reasons[3].1.contains("no area"));
        assert!(reasons[4].1.contains("missing \"y2\""));
        assert_eq!(
            reasons[5],
            (
                "dup.jpg",
                "duplicate path: the key appears more than once; keep one entry"
            )
        );
        assert!(reasons[6].1.contains("10 numbers"));
        // The first of the duplicates is kept, and an integral float label is accepted.
        let kept: Vec<(&str, u64)> = list
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.label))
            .collect();
        assert_eq!(kept, vec![("dup.jpg", 1), ("ok.jpg", 4)]);
        assert_eq!(list.entries[1].face_box, None);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = parse("{\n  \"a.jpg\": {\"label\": 1,}\n}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("list.json: line 2, column"), "{err}");
        let err = parse("   ").unwrap_err().to_string();
        assert!(err.contains("line 1, column 1: the file is empty"), "{err}");
        let err = parse("[1, 2]").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse("{} trailing").unwrap_err().to_string();
        assert!(err.contains("line 1, column 4"), "{err}");
    }

    #[test]
    fn write_then_parse_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        let entries = vec![ImageEntry {
            path: "x/\"q\".jpg".into(),
            label: 5,
            face_box: Some(FaceBox {
                x1: 1.0,
                y1: 2.5,
                x2: 3.0,
                y2: 4.0,
            }),
            landmarks: Some([1.5; 10]),
        }];
        write_image_list(&path, &entries).unwrap();
        assert_eq!(ImageList::load(&path).unwrap().entries, entries);
    }

    #[test]
    fn box_clip_and_iou() {
        let b = FaceBox {
            x1: -10.0,
            y1: 5.0,
            x2: 20.0,
            y2: 300.0,
        };
        assert_eq!(
            b.clip(100, 100),
            Some(FaceBox {
                x1: 0.0,
                y1: 5.0,
                x2: 20.0,
                y2: 100.0
            })
        );
        assert_eq!(
            FaceBox {
                x1: 200.0,
                y1: 0.0,
                x2: 300.0,
                y2: 10.0
            }
            .clip(100, 100),
            None
        );
        let a = FaceBox {
            x1: 0.0,
            y1: 0.0,
            x2: 2.0,
            y2: 2.0,
        };
        let c = FaceBox {
            x1: 1.0,
            y1: 0.0,
            x2: 3.0,
            y2: 2.0,
        };
        assert!((a.iou(&c) - 2.0 / 6.0).abs() < 1e-6);
    }
}
