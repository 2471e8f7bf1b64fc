//! The service's gallery: identities and their faces' embeddings in a redb database (an embedded,
//! crash-safe, pure-Rust key-value store: every write is a transaction committed durably before
//! it is acknowledged), and an in-memory index rebuilt from it at start for exact search.

use std::path::Path;
use std::sync::RwLock;

use redb::{Database, ReadableTable, TableDefinition};

/// Identity name -> creation time (seconds since 1970).
const IDENTITIES: TableDefinition<&str, u64> = TableDefinition::new("identities");
/// Face id -> encoded [`FaceRecord`].
const FACES: TableDefinition<u64, &[u8]> = TableDefinition::new("faces");
/// `next_face_id`, `dim`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Errors of the gallery, each mapped to an HTTP status by the service.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// The database file could not be opened, read or written.
    #[error("gallery database: {0}")]
    Db(String),
    /// No identity of that name.
    #[error("no identity `{0}` in the gallery")]
    UnknownIdentity(String),
    /// No face of that id under that identity.
    #[error("identity `{0}` has no face {1}")]
    UnknownFace(String, u64),
    /// The identity exists already.
    #[error("identity `{0}` exists already")]
    Exists(String),
    /// The name cannot be used.
    #[error(
        "identity name `{0}`: use 1 to 64 letters, digits, spaces, '.', '_' or '-' (no path characters)"
    )]
    BadName(String),
    /// The database holds embeddings of another width (another model).
    #[error(
        "the gallery holds {found}-d embeddings but the model makes {expected}-d ones: use a gallery made with this model"
    )]
    Dimension {
        /// The model's width.
        expected: usize,
        /// The database's width.
        found: usize,
    },
}

fn db_err(e: impl std::fmt::Display) -> GalleryError {
    GalleryError::Db(e.to_string())
}

/// Checks an identity name: 1 to 64 characters of letters, digits, space, `.`, `_`, `-`, not
/// starting with `.` (names end up in URLs and logs, never in paths).
pub fn validate_name(name: &str) -> Result<(), GalleryError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && !name.starts_with('.')
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(GalleryError::BadName(name.to_string()))
    }
}

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
    fn encode(&self) -> Vec<u8> {
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

    fn decode(bytes: &[u8]) -> Option<FaceRecord> {
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

/// The searchable copy of the faces.
#[derive(Default)]
struct Index {
    face_ids: Vec<u64>,
    identities: Vec<String>,
    /// rows x dim, unit rows.
    embeddings: Vec<f32>,
}

/// A search result: an identity and its best-matching face.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Match {
    /// The identity.
    pub identity: String,
    /// Its face most similar to the query.
    pub face_id: u64,
    /// Cosine similarity of that face to the query.
    pub score: f32,
}

/// An identity with its face count.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IdentitySummary {
    /// The name.
    pub name: String,
    /// Faces enrolled.
    pub faces: usize,
}

/// The database and its index.
pub struct Gallery {
    db: Database,
    dim: usize,
    index: RwLock<Index>,
}

impl Gallery {
    /// Opens (or creates) the database at `path` for `dim`-d embeddings and builds the index.
    pub fn open(path: &Path, dim: usize) -> Result<Gallery, GalleryError> {
        let db = Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta.get("dim").map_err(db_err)?.map(|v| v.value());
            match stored {
                Some(found) if found as usize != dim => {
                    return Err(GalleryError::Dimension {
                        expected: dim,
                        found: found as usize,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("dim", dim as u64).map_err(db_err)?;
                }
            }
            txn.open_table(IDENTITIES).map_err(db_err)?;
            txn.open_table(FACES).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let gallery = Gallery {
            db,
            dim,
            index: RwLock::new(Index::default()),
        };
        gallery.rebuild_index()?;
        Ok(gallery)
    }

    fn rebuild_index(&self) -> Result<(), GalleryError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let faces = txn.open_table(FACES).map_err(db_err)?;
        let mut index = Index::default();
        for item in faces.iter().map_err(db_err)? {
            let (id, bytes) = item.map_err(db_err)?;
            let face = FaceRecord::decode(bytes.value())
                .ok_or_else(|| GalleryError::Db(format!("face {} is damaged", id.value())))?;
            index.face_ids.push(id.value());
            index.identities.push(face.identity);
            index.embeddings.extend(face.embedding);
        }
        *self.index.write().expect("index lock") = index;
        Ok(())
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Faces in the index.
    pub fn len(&self) -> usize {
        self.index.read().expect("index lock").face_ids.len()
    }

    /// Whether no face is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates an identity.
    pub fn create_identity(&self, name: &str) -> Result<(), GalleryError> {
        validate_name(name)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(IDENTITIES).map_err(db_err)?;
            if t.get(name).map_err(db_err)?.is_some() {
                return Err(GalleryError::Exists(name.to_string()));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            t.insert(name, now).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Every identity with its face count, by name.
    pub fn identities(&self) -> Result<Vec<IdentitySummary>, GalleryError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(IDENTITIES).map_err(db_err)?;
        let index = self.index.read().expect("index lock");
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (name, _) = item.map_err(db_err)?;
            let name = name.value().to_string();
            let faces = index.identities.iter().filter(|i| **i == name).count();
            out.push(IdentitySummary { name, faces });
        }
        Ok(out)
    }

    /// Deletes an identity and its faces.
    pub fn delete_identity(&self, name: &str) -> Result<usize, GalleryError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let removed = {
            let mut t = txn.open_table(IDENTITIES).map_err(db_err)?;
            if t.remove(name).map_err(db_err)?.is_none() {
                return Err(GalleryError::UnknownIdentity(name.to_string()));
            }
            let ids: Vec<u64> = {
                let index = self.index.read().expect("index lock");
                index
                    .face_ids
                    .iter()
                    .zip(&index.identities)
                    .filter(|(_, i)| *i == name)
                    .map(|(id, _)| *id)
                    .collect()
            };
            let mut faces = txn.open_table(FACES).map_err(db_err)?;
            for id in &ids {
                faces.remove(id).map_err(db_err)?;
            }
            ids.len()
        };
        txn.commit().map_err(db_err)?;
        let mut index = self.index.write().expect("index lock");
        self.retain(&mut index, |_, identity| identity != name);
        Ok(removed)
    }

    fn retain(&self, index: &mut Index, keep: impl Fn(u64, &str) -> bool) {
        let dim = self.dim;
        let mut next = Index::default();
        for (row, (id, identity)) in index.face_ids.iter().zip(&index.identities).enumerate() {
            if keep(*id, identity) {
                next.face_ids.push(*id);
                next.identities.push(identity.clone());
                next.embeddings
                    .extend_from_slice(&index.embeddings[row * dim..(row + 1) * dim]);
            }
        }
        *index = next;
    }

    /// Enrols a face under `identity`; durable when this returns. Returns its id.
    pub fn add_face(&self, face: FaceRecord) -> Result<u64, GalleryError> {
        assert_eq!(
            face.embedding.len(),
            self.dim,
            "an embedding of the gallery's width"
        );
        // One writer at a time: redb serialises write transactions, and the index follows.
        let mut index = self.index.write().expect("index lock");
        let txn = self.db.begin_write().map_err(db_err)?;
        let id = {
            if txn
                .open_table(IDENTITIES)
                .map_err(db_err)?
                .get(face.identity.as_str())
                .map_err(db_err)?
                .is_none()
            {
                return Err(GalleryError::UnknownIdentity(face.identity.clone()));
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let id = meta
                .get("next_face_id")
                .map_err(db_err)?
                .map_or(1, |v| v.value());
            meta.insert("next_face_id", id + 1).map_err(db_err)?;
            let mut faces = txn.open_table(FACES).map_err(db_err)?;
            faces.insert(id, face.encode().as_slice()).map_err(db_err)?;
            id
        };
        txn.commit().map_err(db_err)?;
        index.face_ids.push(id);
        index.identities.push(face.identity);
        index.embeddings.extend(face.embedding);
        Ok(id)
    }

    /// Removes one face of an identity.
    pub fn remove_face(&self, identity: &str, face_id: u64) -> Result<(), GalleryError> {
        let mut index = self.index.write().expect("index lock");
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut faces = txn.open_table(FACES).map_err(db_err)?;
            let belongs = faces
                .get(face_id)
                .map_err(db_err)?
                .and_then(|v| FaceRecord::decode(v.value()))
                .is_some_and(|f| f.identity == identity);
            if !belongs {
                return Err(GalleryError::UnknownFace(identity.to_string(), face_id));
            }
            faces.remove(face_id).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        self.retain(&mut index, |id, _| id != face_id);
        Ok(())
    }

    /// The `k` identities most similar to `query` (a unit vector), each with its best face;
    /// exact search over every enrolled face.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Match> {
        let index = self.index.read().expect("index lock");
        let mut best: std::collections::HashMap<&str, (f32, u64)> = Default::default();
        for (row, g) in index.embeddings.chunks_exact(self.dim).enumerate() {
            let score: f32 = g.iter().zip(query).map(|(a, b)| a * b).sum();
            let e = best
                .entry(index.identities[row].as_str())
                .or_insert((f32::MIN, 0));
            if score > e.0 {
                *e = (score, index.face_ids[row]);
            }
        }
        let mut out: Vec<Match> = best
            .into_iter()
            .map(|(identity, (score, face_id))| Match {
                identity: identity.to_string(),
                face_id,
                score,
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.identity.cmp(&b.identity))
        });
        out.truncate(k);
        out
    }

    /// redb's own integrity check of the file (needs exclusive access).
    pub fn check_integrity(path: &Path) -> Result<bool, GalleryError> {
        let mut db = Database::open(path).map_err(db_err)?;
        db.check_integrity().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn face(identity: &str, e: &[f32]) -> FaceRecord {
        FaceRecord {
            identity: identity.into(),
            image_sha256: [7; 32],
            face_box: [1.0, 2.0, 3.0, 4.0],
            embedding: unit(e),
        }
    }

    #[test]
    fn enrol_search_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.redb");
        let g = Gallery::open(&path, 2).unwrap();
        g.create_identity("Ada Lovelace").unwrap();
        g.create_identity("Alan.Turing").unwrap();
        assert!(matches!(
            g.create_identity("Ada Lovelace"),
            Err(GalleryError::Exists(_))
        ));
        assert!(matches!(
            g.create_identity("../etc"),
            Err(GalleryError::BadName(_))
        ));
        let a1 = g.add_face(face("Ada Lovelace", &[1.0, 0.0])).unwrap();
        let a2 = g.add_face(face("Ada Lovelace", &[0.8, 0.6])).unwrap();
        let t1 = g.add_face(face("Alan.Turing", &[0.0, 1.0])).unwrap();
        assert!(matches!(
            g.add_face(face("Nobody", &[1.0, 1.0])),
            Err(GalleryError::UnknownIdentity(_))
        ));
        // Query (0.6, 0.8): Ada's best is a2 (0.96), Alan's t1 (0.8).
        let m = g.search(&[0.6, 0.8], 5);
        assert_eq!(
            m.iter()
                .map(|m| (m.identity.as_str(), m.face_id))
                .collect::<Vec<_>>(),
            vec![("Ada Lovelace", a2), ("Alan.Turing", t1)]
        );
        assert!((m[0].score - 0.96).abs() < 1e-6 && (m[1].score - 0.8).abs() < 1e-6);
        g.remove_face("Ada Lovelace", a2).unwrap();
        assert!(matches!(
            g.remove_face("Alan.Turing", a1),
            Err(GalleryError::UnknownFace(..))
        ));
        drop(g);
        // Reopened: the index is rebuilt from the file.
        let g = Gallery::open(&path, 2).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.search(&[0.6, 0.8], 1)[0].face_id, t1);
        assert_eq!(
            g.identities().unwrap(),
            vec![
                IdentitySummary {
                    name: "Ada Lovelace".into(),
                    faces: 1
                },
                IdentitySummary {
                    name: "Alan.Turing".into(),
                    faces: 1
                }
            ]
        );
        assert_eq!(g.delete_identity("Ada Lovelace").unwrap(), 1);
        assert_eq!(g.len(), 1);
        drop(g);
        assert!(matches!(
            Gallery::open(&path, 3),
            Err(GalleryError::Dimension {
                expected: 3,
                found: 2
            })
        ));
        assert!(Gallery::check_integrity(&path).unwrap());
    }

    #[test]
    fn face_records_round_trip_and_damage_is_detected() {
        let f = face("x", &[3.0, 4.0]);
        assert_eq!(FaceRecord::decode(&f.encode()), Some(f.clone()));
        let bytes = f.encode();
        assert_eq!(FaceRecord::decode(&bytes[..bytes.len() - 1]), None);
    }
}
