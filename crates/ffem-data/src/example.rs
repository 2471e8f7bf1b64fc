//! A minimal `tf.train.Example` protobuf codec (no protobuf dependency), and the face schema the
//! seed used: `jpeg` (bytes), `label`, `x1`, `y1`, `x2`, `y2` (int64), plus optional `landmarks`
//! (float list) and `path` (bytes).
//!
//! Wire layout: `Example { Features features = 1; }`, `Features { map<string, Feature> feature = 1; }`,
//! `Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }`,
//! each list `{ repeated T value = 1; }` (numbers packed when written; both forms accepted on read).

use std::collections::BTreeMap;

use crate::protobuf::{get_varint, put_len_field, put_varint};

/// One feature value of an Example.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    /// A list of byte strings.
    Bytes(Vec<Vec<u8>>),
    /// A list of 32-bit floats.
    Float(Vec<f32>),
    /// A list of 64-bit integers.
    Int64(Vec<i64>),
}

/// A decoded `tf.train.Example`: feature name to value.
pub type Example = BTreeMap<String, Feature>;

/// Serialises features in the given order (names must be unique).
pub fn encode_example(features: &[(&str, Feature)]) -> Vec<u8> {
    let mut feats = Vec::new();
    for (name, feature) in features {
        let mut entry = Vec::new();
        put_len_field(&mut entry, 1, name.as_bytes());
        let mut list = Vec::new();
        let tag = match feature {
            Feature::Bytes(values) => {
                for v in values {
                    put_len_field(&mut list, 1, v);
                }
                1
            }
            Feature::Float(values) => {
                let mut packed = Vec::with_capacity(values.len() * 4);
                for v in values {
                    packed.extend_from_slice(&v.to_le_bytes());
                }
                if !values.is_empty() {
                    put_len_field(&mut list, 1, &packed);
                }
                2
            }
            Feature::Int64(values) => {
                let mut packed = Vec::new();
                for &v in values {
                    put_varint(&mut packed, v as u64);
                }
                if !values.is_empty() {
                    put_len_field(&mut list, 1, &packed);
                }
                3
            }
        };
        let mut feature_msg = Vec::new();
        put_len_field(&mut feature_msg, tag, &list);
        put_len_field(&mut entry, 2, &feature_msg);
        put_len_field(&mut feats, 1, &entry);
    }
    let mut out = Vec::with_capacity(feats.len() + 8);
    put_len_field(&mut out, 1, &feats);
    out
}

/// Parses a serialised `tf.train.Example`.
pub fn decode_example(bytes: &[u8]) -> Result<Example, String> {
    let mut out = Example::new();
    for field in Fields::new(bytes) {
        let (num, value) = field?;
        if let (1, Value::Len(features)) = (num, value) {
            for field in Fields::new(features) {
                let (num, value) = field?;
                if let (1, Value::Len(entry)) = (num, value) {
                    let (name, feature) = decode_entry(entry)?;
                    out.insert(name, feature);
                }
            }
        }
    }
    Ok(out)
}

fn decode_entry(entry: &[u8]) -> Result<(String, Feature), String> {
    let mut name = String::new();
    let mut feature = Feature::Bytes(Vec::new());
    for field in Fields::new(entry) {
        match field? {
            (1, Value::Len(k)) => {
                name = String::from_utf8(k.to_vec())
                    .map_err(|_| "feature name is not UTF-8".to_string())?
            }
            (2, Value::Len(f)) => feature = decode_feature(f)?,
            _ => {}
        }
    }
    Ok((name, feature))
}

fn decode_feature(bytes: &[u8]) -> Result<Feature, String> {
    let mut feature = Feature::Bytes(Vec::new());
    for field in Fields::new(bytes) {
        let (kind, value) = field?;
        let Value::Len(list) = value else { continue };
        feature = match kind {
            1 => {
                let mut values = Vec::new();
                for f in Fields::new(list) {
                    if let (1, Value::Len(v)) = f? {
                        values.push(v.to_vec());
                    }
                }
                Feature::Bytes(values)
            }
            2 => {
                let mut values = Vec::new();
                for f in Fields::new(list) {
                    match f? {
                        (1, Value::Len(packed)) => {
                            if packed.len() % 4 != 0 {
                                return Err(
                                    "packed float list has a length not divisible by 4".into()
                                );
                            }
                            values.extend(
                                packed
                                    .chunks_exact(4)
                                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                            );
                        }
                        (1, Value::Fixed32(v)) => values.push(f32::from_bits(v)),
                        _ => {}
                    }
                }
                Feature::Float(values)
            }
            3 => {
                let mut values = Vec::new();
                for f in Fields::new(list) {
                    match f? {
                        (1, Value::Len(packed)) => {
                            let mut pos = 0;
                            while pos < packed.len() {
                                values.push(get_varint(packed, &mut pos)? as i64);
                            }
                        }
                        (1, Value::Varint(v)) => values.push(v as i64),
                        _ => {}
                    }
                }
                Feature::Int64(values)
            }
            _ => continue,
        };
    }
    Ok(feature)
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8]),
    Fixed32(u32),
}

struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let item = (|| {
            let key = get_varint(self.bytes, &mut self.pos)?;
            let value = match key & 7 {
                0 => Value::Varint(get_varint(self.bytes, &mut self.pos)?),
                1 => {
                    self.take(8)?;
                    Value::Fixed64
                }
                2 => {
                    let len = get_varint(self.bytes, &mut self.pos)? as usize;
                    Value::Len(self.take(len)?)
                }
                5 => {
                    let b = self.take(4)?;
                    Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
                w => return Err(format!("unsupported protobuf wire type {w}")),
            };
            Ok((key >> 3, value))
        })();
        if item.is_err() {
            self.pos = self.bytes.len();
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end =
            end.ok_or_else(|| "protobuf field runs past the end of the record".to_string())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// One face record in the seed's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The encoded image (JPEG unless the source was another format).
    pub jpeg: Vec<u8>,
    /// Identity label, 0..N-1 after packing.
    pub label: i64,
    /// Face box: left, top, right, bottom in pixels.
    pub face_box: [i64; 4],
    /// Optional five-point landmarks (x,y pairs).
    pub landmarks: Option<[f32; 10]>,
    /// Optional source path (ffem writes it; TensorFlow readers ignore it).
    pub path: Option<String>,
}

impl FaceRecord {
    /// Serialises to `tf.train.Example` bytes.
    pub fn to_example(&self) -> Vec<u8> {
        let mut features = vec![
            ("jpeg", Feature::Bytes(vec![self.jpeg.clone()])),
            ("label", Feature::Int64(vec![self.label])),
            ("x1", Feature::Int64(vec![self.face_box[0]])),
            ("y1", Feature::Int64(vec![self.face_box[1]])),
            ("x2", Feature::Int64(vec![self.face_box[2]])),
            ("y2", Feature::Int64(vec![self.face_box[3]])),
        ];
        if let Some(l) = self.landmarks {
            features.push(("landmarks", Feature::Float(l.to_vec())));
        }
        if let Some(p) = &self.path {
            features.push(("path", Feature::Bytes(vec![p.as_bytes().to_vec()])));
        }
        encode_example(&features)
    }

    /// Parses `tf.train.Example` bytes in the face schema; the error says which key is wrong.
    pub fn from_example(bytes: &[u8]) -> Result<FaceRecord, String> {
        let mut ex = decode_example(bytes)?;
        let int = |ex: &Example, key: &str| -> Result<i64, String> {
            match ex.get(key) {
                Some(Feature::Int64(v)) if v.len() == 1 => Ok(v[0]),
                Some(other) => Err(format!(
                    "feature \"{key}\" must be one int64, found {other:?}"
                )),
                None => Err(format!("missing feature \"{key}\"")),
            }
        };
        let label = int(&ex, "label")?;
        let face_box = [
            int(&ex, "x1")?,
            int(&ex, "y1")?,
            int(&ex, "x2")?,
            int(&ex, "y2")?,
        ];
        let jpeg = match ex.remove("jpeg") {
            Some(Feature::Bytes(mut v)) if v.len() == 1 => v.pop().unwrap_or_default(),
            Some(_) => return Err("feature \"jpeg\" must be exactly one byte string".into()),
            None => return Err("missing feature \"jpeg\"".into()),
        };
        let landmarks = match ex.get("landmarks") {
            Some(Feature::Float(v)) if v.len() == 10 => {
                let mut l = [0f32; 10];
                l.copy_from_slice(v);
                Some(l)
            }
            Some(Feature::Float(v)) if v.is_empty() => None,
            Some(other) => {
                return Err(format!(
                    "feature \"landmarks\" must be 10 floats, found {other:?}"
                ));
            }
            None => None,
        };
        let path = match ex.get("path") {
            Some(Feature::Bytes(v)) if v.len() == 1 => {
                Some(String::from_utf8_lossy(&v[0]).into_owned())
            }
            _ => None,
        };
        Ok(FaceRecord {
            jpeg,
            label,
            face_box,
            landmarks,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_protobuf_spec() {
        // Known encodings from the protobuf documentation: 150 -> 96 01, 300 -> ac 02.
        let mut out = Vec::new();
        put_varint(&mut out, 150);
        assert_eq!(out, [0x96, 0x01]);
        out.clear();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        // -1 as int64 is ten bytes.
        out.clear();
        put_varint(&mut out, -1i64 as u64);
        assert_eq!(out.len(), 10);
        let mut pos = 0;
        assert_eq!(get_varint(&out, &mut pos).unwrap() as i64, -1);
    }

    #[test]
    fn encodes_a_known_example_byte_for_byte() {
        // Built by hand from the .proto: Example{features{feature{"a": int64_list{1}}}}.
        let bytes = encode_example(&[("a", Feature::Int64(vec![1]))]);
        let feature = [0x1a, 0x03, 0x0a, 0x01, 0x01]; // int64_list(3){ value(1) packed [1] }
        let mut entry = vec![0x0a, 0x01, b'a', 0x12, feature.len() as u8];
        entry.extend(feature);
        let mut features = vec![0x0a, entry.len() as u8];
        features.extend(entry);
        let mut expected = vec![0x0a, features.len() as u8];
        expected.extend(features);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn face_record_round_trip_and_unpacked_lists() {
        let rec = FaceRecord {
            jpeg: vec![0xff, 0xd8, 1, 2, 3],
            label: 41,
            face_box: [1, -2, 300, 400],
            landmarks: Some([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]),
            path: Some("a/b.jpg".into()),
        };
        assert_eq!(FaceRecord::from_example(&rec.to_example()).unwrap(), rec);
        // Unpacked repeated int64 (as older writers emit) decodes too: field 1 varint 7 twice.
        let feature = [0x1a, 0x04, 0x08, 0x07, 0x08, 0x07];
        let mut entry = vec![0x0a, 0x01, b'z', 0x12, feature.len() as u8];
        entry.extend(feature);
        let mut msg = vec![0x0a, (entry.len() + 2) as u8, 0x0a, entry.len() as u8];
        msg.extend(entry);
        assert_eq!(
            decode_example(&msg).unwrap()["z"],
            Feature::Int64(vec![7, 7])
        );
    }

    #[test]
    fn schema_errors_name_the_key() {
        let bytes = encode_example(&[
            ("jpeg", Feature::Bytes(vec![vec![1]])),
            ("label", Feature::Int64(vec![1])),
        ]);
        assert_eq!(
            FaceRecord::from_example(&bytes).unwrap_err(),
            "missing feature \"x1\""
        );
        assert!(decode_example(&[0x0a, 0x05, 0x01]).is_err());
    }
}
