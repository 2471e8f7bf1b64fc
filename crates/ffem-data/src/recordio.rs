//! MXNet RecordIO packs as insightface distributes its training sets (`train.rec` + `train.idx`).
//!
//! Framing (dmlc-core): each chunk is `u32 magic 0xced7230a`, `u32 lrec` (low 29 bits length, top
//! 3 bits continuation flag: 0 whole, 1 first, 2 middle, 3 last part), the data, zero padding to 4
//! bytes. A record containing the magic at a 4-byte-aligned position is split there, and the magic
//! is put back between the parts on reading. Payload: `IRHeader { u32 flag, f32 label, u64 id,
//! u64 id2 }` (24 bytes), then `flag` f32 labels when flag > 0, then the encoded image.
//! `.idx` is text lines `key<TAB>offset`.
//!
//! insightface packs start with a header record (key 0, flag > 0) whose labels `[a, b]` say that
//! keys 1..a are images and a..b identity records (not images); im2rec packs have no header.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::example::FaceRecord;

/// The RecordIO chunk magic.
pub const MAGIC: u32 = 0xced7_230a;

/// MXNet's `IRHeader` plus the extra labels.
#[derive(Debug, Clone, PartialEq)]
pub struct IrHeader {
    /// Number of extra labels (0: the single `label` is used).
    pub flag: u32,
    /// The label when `flag == 0`.
    pub label: f32,
    /// Record id.
    pub id: u64,
    /// Second id.
    pub id2: u64,
    /// `flag` extra labels.
    pub labels: Vec<f32>,
}

/// Builds a payload: header, labels, image.
pub fn pack_payload(h: &IrHeader, image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 4 * h.labels.len() + image.len());
    out.extend_from_slice(&(h.labels.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.label.to_le_bytes());
    out.extend_from_slice(&h.id.to_le_bytes());
    out.extend_from_slice(&h.id2.to_le_bytes());
    for l in &h.labels {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(image);
    out
}

/// Splits a payload into header and image bytes.
pub fn unpack_payload(p: &[u8]) -> std::result::Result<(IrHeader, &[u8]), String> {
    if p.len() < 24 {
        return Err(format!(
            "payload of {} bytes is shorter than the 24-byte IRHeader",
            p.len()
        ));
    }
    let u32_at = |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    let flag = u32_at(0);
    let end = 24usize
        .checked_add(4 * flag as usize)
        .filter(|&e| e <= p.len())
        .ok_or_else(|| {
            format!(
                "IRHeader says {flag} labels but the payload is {} bytes",
                p.len()
            )
        })?;
    let labels = (0..flag as usize)
        .map(|i| f32::from_le_bytes(p[24 + 4 * i..28 + 4 * i].try_into().expect("4 bytes")))
        .collect();
    Ok((
        IrHeader {
            flag,
            label: f32::from_bits(u32_at(4)),
            id: u64_at(8),
            id2: u64_at(16),
            labels,
        },
        &p[end..],
    ))
}

/// Writes a `.rec` and its `.idx` the way dmlc-core does (magic splitting included).
pub struct RecWriter {
    out: BufWriter<File>,
    idx: String,
    offset: u64,
    path: PathBuf,
    idx_path: PathBuf,
}

impl RecWriter {
    /// Creates `rec` and (on finish) `idx`.
    pub fn create(rec: &Path, idx: &Path) -> Result<Self> {
        let f = File::create(rec).map_err(|e| DataError::io(rec, e))?;
        Ok(RecWriter {
            out: BufWriter::new(f),
            idx: String::new(),
            offset: 0,
            path: rec.into(),
            idx_path: idx.into(),
        })
    }

    /// Appends one record under `key`.
    pub fn write(&mut self, key: u64, data: &[u8]) -> Result<()> {
        self.idx.push_str(&format!("{key}\t{}\n", self.offset));
        let magic = MAGIC.to_le_bytes();
        let len = data.len();
        let lower = len / 4 * 4;
        let mut chunks: Vec<(u32, &[u8])> = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < lower {
            if data[i..i + 4] == magic {
                chunks.push((if start == 0 { 1 } else { 2 }, &data[start..i]));
                start = i + 4;
            }
            i += 4;
        }
        chunks.push((if start != 0 { 3 } else { 0 }, &data[start..]));
        let mut buf = Vec::with_capacity(len + 16);
        for (flag, part) in chunks {
            buf.extend_from_slice(&magic);
            buf.extend_from_slice(&((flag << 29) | part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part);
        }
        buf.resize(buf.len() + (4 - len % 4) % 4, 0);
        self.out
            .write_all(&buf)
            .map_err(|e| DataError::io(&self.path, e))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Flushes the `.rec` and writes the `.idx`.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| DataError::io(&self.path, e))?;
        std::fs::write(&self.idx_path, &self.idx).map_err(|e| DataError::io(&self.idx_path, e))
    }
}

/// Reads records from a `.rec` file.
#[derive(Debug)]
pub struct RecReader {
    input: BufReader<File>,
    path: PathBuf,
    len: u64,
}

impl RecReader {
    /// Opens a `.rec` file.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
        Ok(RecReader {
            input: BufReader::with_capacity(1 << 20, f),
            path: path.into(),
            len,
        })
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> DataError {
        DataError::Corrupt {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    /// Reads the record starting at byte `offset`.
    pub fn read_at(&mut self, offset: u64) -> Result<Vec<u8>> {
        if offset >= self.len {
            return Err(self.corrupt(
                offset,
                format!(
                    "offset is past the end of the {}-byte file (is the .idx from another .rec?)",
                    self.len
                ),
            ));
        }
        self.input
            .seek(SeekFrom::Start(offset))
            .map_err(|e| DataError::io(&self.path, e))?;
        self.next_record(offset)?
            .ok_or_else(|| self.corrupt(offset, "no record here"))
    }

    /// Reads the record at the current position (`at` is its offset, for messages).
    fn next_record(&mut self, at: u64) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let mut pos = at;
        loop {
            let mut header = [0u8; 8];
            match self.input.read_exact(&mut header) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        && out.is_empty()
                        && pos == at =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(self.corrupt(at, "truncated record: the file ends inside it"));
                }
                Err(e) => return Err(DataError::io(&self.path, e)),
            }
            let magic = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            if magic != MAGIC {
                return Err(self.corrupt(pos, format!("wrong magic 0x{magic:08x} (expected 0x{MAGIC:08x}): not a RecordIO file, or a bad offset")));
            }
            let lrec = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            let (flag, len) = (lrec >> 29, (lrec & ((1 << 29) - 1)) as usize);
            let padded = len.div_ceil(4) * 4;
            // A damaged length must not become a huge allocation: the chunk has to fit in the file.
            if pos + 8 + padded as u64 > self.len {
                return Err(self.corrupt(
                    at,
                    format!(
                        "truncated record: a chunk of {len} bytes at byte {pos} runs past the end of the {}-byte file",
                        self.len
                    ),
                ));
            }
            let start = out.len();
            out.resize(start + padded, 0);
            self.input
                .read_exact(&mut out[start..])
                .map_err(|_| self.corrupt(at, "truncated record: the file ends inside it"))?;
            out.truncate(start + len);
            pos += 8 + padded as u64;
            match flag {
                0 | 3 => return Ok(Some(out)),
                1 | 2 => out.extend_from_slice(&MAGIC.to_le_bytes()),
                f => return Err(self.corrupt(pos, format!("unknown continuation flag {f}"))),
            }
        }
    }
}

/// Reads a `.idx` file: key -> offset.
pub fn read_idx(path: &Path) -> Result<BTreeMap<u64, u64>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut out = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            DataError::Invalid(format!(
                "{}: line {}: expected `key<TAB>offset`, found `{line}`",
                path.display(),
                i + 1
            ))
        };
        let mut it = line.split_whitespace();
        let key = it.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
        let off = it.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
        out.insert(key, off);
    }
    Ok(out)
}

/// An insightface / im2rec training pack: which keys are images and their labels.
#[derive(Debug)]
pub struct FacePack {
    reader: RecReader,
    /// Image record keys with their offsets, in key order (shared by [`FacePack::reopen`]ed
    /// copies: the index of a large pack has millions of lines).
    pub images: std::sync::Arc<Vec<(u64, u64)>>,
    /// True when the pack starts with insightface's header record.
    pub has_header: bool,
}

impl FacePack {
    /// Opens `DIR/train.rec` + `DIR/train.idx` (or a `.rec` path with its `.idx` beside it).
    pub fn open(path: &Path) -> Result<Self> {
        let rec = if path.is_dir() {
            path.join("train.rec")
        } else {
            path.to_path_buf()
        };
        let idx_path = rec.with_extension("idx");
        let idx = read_idx(&idx_path)?;
        let mut reader = RecReader::open(&rec)?;
        let mut has_header = false;
        let mut keys: Vec<(u64, u64)> = idx.iter().map(|(&k, &o)| (k, o)).collect();
        if let Some(&off0) = idx.get(&0) {
            let first = reader.read_at(off0)?;
            let (h, _) = unpack_payload(&first).map_err(|e| reader.corrupt(off0, e))?;
            if h.flag > 0 && !h.labels.is_empty() {
                // insightface: images are keys 1..labels[0]; the rest describe identities.
                let end = h.labels[0] as u64;
                keys.retain(|&(k, _)| k >= 1 && k < end);
                has_header = true;
            }
        }
        Ok(FacePack {
            reader,
            images: std::sync::Arc::new(keys),
            has_header,
        })
    }

    /// A second reader over the same pack, sharing the parsed index instead of re-reading it.
    pub fn reopen(&self) -> Result<Self> {
        Ok(FacePack {
            reader: RecReader::open(&self.reader.path)?,
            images: self.images.clone(),
            has_header: self.has_header,
        })
    }

    /// Reads image `i` (in key order) as a face record (box = the whole image, as these packs
    /// hold aligned 112x112 crops). Errors name the key and offset.
    pub fn record(&mut self, i: usize) -> Result<FaceRecord> {
        let (key, off) = self.images[i];
        let payload = self.reader.read_at(off)?;
        let (h, image) = unpack_payload(&payload)
            .map_err(|e| self.reader.corrupt(off, format!("key {key}: {e}")))?;
        let label = if h.flag > 0 { h.labels[0] } else { h.label };
        let dims = image::ImageReader::new(std::io::Cursor::new(image))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        let (w, h) = dims.ok_or_else(|| DataError::Schema {
            path: self.reader.path.clone(),
            index: key,
            what: "payload is not a decodable image".into(),
        })?;
        Ok(FaceRecord {
            jpeg: image.to_vec(),
            label: label as i64,
            face_box: [0, 0, w as i64, h as i64],
            landmarks: None,
            path: Some(format!("rec:{key}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(seed: u8) -> Vec<u8> {
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([x as u8 * 9 + seed, y as u8 * 9, seed])
        });
        crate::imageops::encode_jpeg(&img, 90).unwrap()
    }

    fn header(label: f32, labels: Vec<f32>) -> IrHeader {
        IrHeader {
            flag: labels.len() as u32,
            label,
            id: 0,
            id2: 0,
            labels,
        }
    }

    #[test]
    fn framing_by_hand_and_magic_splitting() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("t.rec"), dir.path().join("t.idx"));
        let mut w = RecWriter::create(&rec, &idx).unwrap();
        w.write(0, b"abcde").unwrap();
        // A record with the magic at offset 4: split into parts "wxyz" and "tail!" joined by magic.
        let mut tricky = b"wxyz".to_vec();
        tricky.extend_from_slice(&MAGIC.to_le_bytes());
        tricky.extend_from_slice(b"tail!");
        w.write(1, &tricky).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&rec).unwrap();
        // Record 0: magic, lrec = 5 (flag 0), "abcde", 3 padding bytes.
        assert_eq!(&bytes[..4], &MAGIC.to_le_bytes());
        assert_eq!(&bytes[4..8], &5u32.to_le_bytes());
        assert_eq!(&bytes[8..13], b"abcde");
        assert_eq!(&bytes[13..16], &[0, 0, 0]);
        // Record 1: part (flag 1, len 4) then part (flag 3, len 5).
        assert_eq!(&bytes[20..24], &((1u32 << 29) | 4).to_le_bytes());
        assert_eq!(&bytes[32..36], &((3u32 << 29) | 5).to_le_bytes());
        let idx_map = read_idx(&idx).unwrap();
        assert_eq!(idx_map[&1], 16);
        let mut r = RecReader::open(&rec).unwrap();
        assert_eq!(r.read_at(0).unwrap(), b"abcde");
        assert_eq!(r.read_at(16).unwrap(), tricky);
    }

    #[test]
    fn insightface_pack_with_header_and_identity_records() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
        let mut w = RecWriter::create(&rec, &idx).unwrap();
        // Header: images are keys 1..4, identity records 4..6.
        w.write(0, &pack_payload(&header(0.0, vec![4.0, 6.0]), b""))
            .unwrap();
        for (k, label) in [(1, 0.0), (2, 0.0), (3, 1.0)] {
            w.write(k, &pack_payload(&header(label, vec![]), &jpeg(k as u8)))
                .unwrap();
        }
        w.write(4, &pack_payload(&header(0.0, vec![1.0, 3.0]), b""))
            .unwrap();
        w.write(5, &pack_payload(&header(0.0, vec![3.0, 4.0]), b""))
            .unwrap();
        w.finish().unwrap();
        let mut pack = FacePack::open(dir.path()).unwrap();
        assert!(pack.has_header);
        assert_eq!(
            pack.images.iter().map(|k| k.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let r = pack.record(2).unwrap();
        assert_eq!((r.label, r.face_box), (1, [0, 0, 16, 16]));
        // A reopened pack reads the same records through its own file handle, sharing the index.
        let mut again = pack.reopen().unwrap();
        assert!(std::sync::Arc::ptr_eq(&pack.images, &again.images) && again.has_header);
        assert_eq!(again.record(0).unwrap().jpeg, pack.record(0).unwrap().jpeg);
        assert_eq!(again.record(0).unwrap().jpeg, jpeg(1));
    }

    #[test]
    fn im2rec_pack_without_header_and_array_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
        let mut w = RecWriter::create(&rec, &idx).unwrap();
        w.write(0, &pack_payload(&header(7.0, vec![]), &jpeg(1)))
            .unwrap();
        w.write(1, &pack_payload(&header(0.0, vec![9.0, 0.5]), &jpeg(2)))
            .unwrap();
        w.finish().unwrap();
        let mut pack = FacePack::open(&rec).unwrap();
        assert!(!pack.has_header);
        assert_eq!(pack.record(0).unwrap().label, 7);
        assert_eq!(
            pack.record(1).unwrap().label,
            9,
            "with flag > 0 the first label counts"
        );
    }

    #[test]
    fn bad_packs_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
        let mut w = RecWriter::create(&rec, &idx).unwrap();
        w.write(0, &pack_payload(&header(1.0, vec![]), &jpeg(1)))
            .unwrap();
        w.write(
            1,
            &pack_payload(&header(2.0, vec![]), b"definitely not an image"),
        )
        .unwrap();
        w.finish().unwrap();
        let mut pack = FacePack::open(dir.path()).unwrap();
        assert!(
            pack.record(1)
                .unwrap_err()
                .to_string()
                .contains("not a decodable image")
        );
        // Truncated .rec.
        let bytes = std::fs::read(&rec).unwrap();
        std::fs::write(&rec, &bytes[..bytes.len() - 10]).unwrap();
        let mut pack = FacePack::open(dir.path()).unwrap();
        assert!(
            pack.record(1)
                .unwrap_err()
                .to_string()
                .contains("truncated record")
        );
        // Offsets past the end.
        std::fs::write(&idx, "0\t0\n1\t999999\n").unwrap();
        let mut pack = FacePack::open(dir.path()).unwrap();
        assert!(
            pack.record(1)
                .unwrap_err()
                .to_string()
                .contains("past the end")
        );
        // Wrong magic.
        std::fs::write(&rec, vec![1u8; 64]).unwrap();
        std::fs::write(&idx, "0\t0\n").unwrap();
        let err = FacePack::open(dir.path()).expect_err("fails").to_string();
        assert!(err.contains("wrong magic"), "{err}");
    }
}
