//! One enrolled face and its byte encoding in the gallery's `faces` table.

/// One enrolled face.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The identity it belongs to.
    pub identity: String,
    /// SHA-256 of the uploaded image.
    pub image_sha256: [u8; 32],
    /// The face box in that image.
    pub face_box: [f32; 4],
    /// The unit embedding.
    pub embedding: Vec<f32>,
}

impl FaceRecord {
    /// The bytes stored in the database: name length and name, image hash, box, embedding
    /// width and values, little-endian. A fixed layout keeps the file free of a serde format's
    /// versioning.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let name = self.identity.as_bytes();
        let mut out = Vec::with_capacity(2 + name.len() + 32 + 16 + 4 + 4 * self.embedding.len());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.image_sha256);
        for v in self.face_box {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.embedding.len() as u32).to_le_bytes());
        for v in &self.embedding {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The record [`FaceRecord::encode`] wrote, or `None` when the bytes are cut short or the
    /// name is not UTF-8 (a damaged file).
    pub(crate) fn decode(bytes: &[u8]) -> Option<FaceRecord> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = bytes.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let name_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let identity = String::from_utf8(take(name_len)?.to_vec()).ok()?;
        let image_sha256: [u8; 32] = take(32)?.try_into().ok()?;
        let mut face_box = [0f32; 4];
        for v in &mut face_box {
            *v = f32::from_le_bytes(take(4)?.try_into().ok()?);
        }
        let dim = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let embedding = (0..dim)
            .map(|_| Some(f32::from_le_bytes(take(4)?.try_into().ok()?)))
            .collect::<Option<Vec<f32>>>()?;
        Some(FaceRecord {
            identity,
            image_sha256,
            face_box,
            embedding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_records_round_trip_and_damage_is_detected() {
        let f = FaceRecord {
            identity: "x".into(),
            image_sha256: [7; 32],
            face_box: [1.0, 2.0, 3.0, 4.0],
            embedding: vec![0.6, 0.8],
        };
        assert_eq!(FaceRecord::decode(&f.encode()), Some(f.clone()));
        let bytes = f.encode();
        assert_eq!(FaceRecord::decode(&bytes[..bytes.len() - 1]), None);
    }
}
