//! The service's gallery: identities and their faces' embeddings in a redb database (an embedded,
//! crash-safe, pure-Rust key-value store: every write is a transaction committed durably before
//! it is acknowledged), and an in-memory index rebuilt from it at start (`index`). Search is
//! exact (a dot product per face) up to `ann_above` faces (one million by default); beyond, an
//! HNSW graph (`hnsw_rs`) answers, with its recall@10 against exact search measured in the tests
//! and in `bench/ann_recall.sh`. Each face is stored in the byte layout of `record`.
//!
//! Every writer takes the index's write lock before its database transaction and updates the
//! index after the commit, so searches never see a face the file does not hold.

use std::path::Path;
use std::sync::RwLock;

use redb::{Database, ReadableTable, TableDefinition};

mod index;
mod record;

use index::FaceIndex;
pub use index::Match;
pub use record::FaceRecord;

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

/// An identity with its face count.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
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
    index: RwLock<FaceIndex>,
}

impl Gallery {
    /// Opens (or creates) the database at `path` for `dim`-d embeddings and builds the index
    /// (exact search up to a million faces).
    pub fn open(path: &Path, dim: usize) -> Result<Gallery, GalleryError> {
        Self::open_with_ann(path, dim, 1_000_000)
    }

    /// [`Gallery::open`] with approximate (HNSW) search from `ann_above` faces on.
    pub fn open_with_ann(
        path: &Path,
        dim: usize,
        ann_above: usize,
    ) -> Result<Gallery, GalleryError> {
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
        let mut index = FaceIndex::new(dim, ann_above);
        {
            let txn = db.begin_read().map_err(db_err)?;
            let faces = txn.open_table(FACES).map_err(db_err)?;
            let mut stored = Vec::new();
            for item in faces.iter().map_err(db_err)? {
                let (id, bytes) = item.map_err(db_err)?;
                let face = FaceRecord::decode(bytes.value())
                    .ok_or_else(|| GalleryError::Db(format!("face {} is damaged", id.value())))?;
                stored.push((id.value(), face.identity, face.embedding));
            }
            index.extend(stored);
        }
        Ok(Gallery {
            db,
            dim,
            index: RwLock::new(index),
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Faces in the index.
    pub fn len(&self) -> usize {
        self.index.read().expect("index lock").len()
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
        let counts = index.counts();
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (name, _) = item.map_err(db_err)?;
            let name = name.value().to_string();
            let faces = counts.get(name.as_str()).copied().unwrap_or(0);
            out.push(IdentitySummary { name, faces });
        }
        Ok(out)
    }

    /// Deletes an identity and its faces; returns how many faces went.
    pub fn delete_identity(&self, name: &str) -> Result<usize, GalleryError> {
        let mut index = self.index.write().expect("index lock");
        let ids = index.face_ids_of(name);
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(IDENTITIES).map_err(db_err)?;
            if t.remove(name).map_err(db_err)?.is_none() {
                return Err(GalleryError::UnknownIdentity(name.to_string()));
            }
            let mut faces = txn.open_table(FACES).map_err(db_err)?;
            for id in &ids {
                faces.remove(id).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        index.retain(|_, identity| identity != name);
        Ok(ids.len())
    }

    /// Enrols many faces in one transaction (bulk import); durable when this returns. Returns
    /// their ids in order. Every identity must exist.
    pub fn add_faces(&self, faces: Vec<FaceRecord>) -> Result<Vec<u64>, GalleryError> {
        let mut index = self.index.write().expect("index lock");
        let txn = self.db.begin_write().map_err(db_err)?;
        let ids = {
            let identities = txn.open_table(IDENTITIES).map_err(db_err)?;
            for f in &faces {
                assert_eq!(
                    f.embedding.len(),
                    self.dim,
                    "an embedding of the gallery's width"
                );
                if identities
                    .get(f.identity.as_str())
                    .map_err(db_err)?
                    .is_none()
                {
                    return Err(GalleryError::UnknownIdentity(f.identity.clone()));
                }
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let first = meta
                .get("next_face_id")
                .map_err(db_err)?
                .map_or(1, |v| v.value());
            meta.insert("next_face_id", first + faces.len() as u64)
                .map_err(db_err)?;
            let mut table = txn.open_table(FACES).map_err(db_err)?;
            let ids: Vec<u64> = (first..first + faces.len() as u64).collect();
            for (id, f) in ids.iter().zip(&faces) {
                table.insert(*id, f.encode().as_slice()).map_err(db_err)?;
            }
            ids
        };
        txn.commit().map_err(db_err)?;
        index.extend(
            ids.iter()
                .zip(faces)
                .map(|(id, f)| (*id, f.identity, f.embedding)),
        );
        Ok(ids)
    }

    /// Enrols a face under `identity`; durable when this returns. Returns its id.
    pub fn add_face(&self, face: FaceRecord) -> Result<u64, GalleryError> {
        Ok(self.add_faces(vec![face])?[0])
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
        index.retain(|id, _| id != face_id);
        Ok(())
    }

    /// Whether searches go through the HNSW graph now.
    pub fn approximate(&self) -> bool {
        self.index.read().expect("index lock").approximate()
    }

    /// The `k` identities most similar to `query` (a unit vector), each with its best face:
    /// exact search over every enrolled face, or, from `ann_above` faces on, the HNSW graph's
    /// nearest faces (over-fetched, so that `k` distinct identities come back).
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Match> {
        self.index.read().expect("index lock").search(query, k)
    }

    /// Exact search: every face's cosine, the best per identity.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<Match> {
        self.index
            .read()
            .expect("index lock")
            .search_exact(query, k)
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

    /// Deterministic pseudo-random unit vectors.
    fn random_units(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        (0..n)
            .map(|_| unit(&(0..dim).map(|_| next()).collect::<Vec<f32>>()))
            .collect()
    }

    /// The same face enrolled twice and searched for through the graph: the dot product of a
    /// unit vector with its copy can round above 1, which hnsw_rs's own dot distance asserts
    /// against (a panic under the index lock, poisoning it for every later request).
    #[test]
    fn hnsw_search_survives_a_face_enrolled_twice() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 64;
        let g = Gallery::open_with_ann(&dir.path().join("g.redb"), dim, 0).unwrap();
        g.create_identity("twice").unwrap();
        let faces = random_units(50, dim, 3);
        let copies: Vec<FaceRecord> = faces
            .iter()
            .chain(faces.iter())
            .map(|e| FaceRecord {
                identity: "twice".into(),
                image_sha256: [0; 32],
                face_box: [0.0; 4],
                embedding: e.clone(),
            })
            .collect();
        g.add_faces(copies).unwrap();
        assert!(g.approximate());
        for q in &faces {
            let hits = g.search(q, 1);
            assert_eq!(hits.len(), 1);
            assert!(hits[0].score > 0.999, "{}", hits[0].score);
        }
    }

    #[test]
    fn hnsw_search_recalls_what_exact_search_finds() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dim) = (10_000, 48);
        // From 0 faces on: the graph answers every search.
        let g = Gallery::open_with_ann(&dir.path().join("g.redb"), dim, 0).unwrap();
        let names: Vec<String> = (0..1000).map(|i| format!("id{i}")).collect();
        for name in &names {
            g.create_identity(name).unwrap();
        }
        let faces: Vec<FaceRecord> = random_units(n, dim, 1)
            .into_iter()
            .enumerate()
            .map(|(i, e)| FaceRecord {
                identity: names[i % names.len()].clone(),
                image_sha256: [0; 32],
                face_box: [0.0; 4],
                embedding: e,
            })
            .collect();
        g.add_faces(faces).unwrap();
        assert!(g.approximate());
        let queries = random_units(100, dim, 2);
        let mut found = 0;
        for q in &queries {
            let exact: Vec<String> = g
                .search_exact(q, 10)
                .into_iter()
                .map(|m| m.identity)
                .collect();
            let approx = g.search(q, 10);
            found += approx
                .iter()
                .filter(|m| exact.contains(&m.identity))
                .count();
            // Scores are the true cosines of the faces returned.
            for m in &approx {
                assert!((-1.0..=1.0001).contains(&m.score));
            }
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
        // A removed face never comes back.
        let top = g.search(&queries[0], 1)[0].clone();
        g.remove_face(&top.identity, top.face_id).unwrap();
        assert!(
            g.search(&queries[0], 10)
                .iter()
                .all(|m| m.face_id != top.face_id)
        );
    }
}
