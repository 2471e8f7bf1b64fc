//! The gallery's searchable copy of its faces, in memory: every face's id, identity and unit
//! embedding, searched exactly (a dot product per face) up to `ann_above` faces, and through an
//! HNSW graph (`hnsw_rs`) beyond, which is rebuilt when a tenth of its faces have been removed.

use ffem_eval::cluster::UnitCosineDistance;
use hnsw_rs::hnsw::Hnsw;

/// A search result: an identity and its best-matching face.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Match {
    /// The identity.
    pub identity: String,
    /// Its face most similar to the query.
    pub face_id: u64,
    /// Cosine similarity of that face to the query.
    pub score: f32,
}

/// Neighbours each HNSW node keeps, and the candidate list sizes when building and searching:
/// hnswlib's usual settings, which give recall@10 above 0.95 on face embeddings.
const HNSW_LINKS: usize = 16;
const HNSW_EF_BUILD: usize = 200;
const HNSW_EF_SEARCH: usize = 256;

/// The approximate index: an HNSW graph over face ids, and the ids removed since it was built
/// (searches skip them; many of them trigger a rebuild).
struct Ann {
    graph: Hnsw<'static, f32, UnitCosineDistance>,
    removed: std::collections::HashSet<u64>,
}

/// Every enrolled face, in face-id order (ids only grow, so appending keeps the order).
pub(crate) struct FaceIndex {
    dim: usize,
    face_ids: Vec<u64>,
    identities: Vec<String>,
    /// rows x dim, unit rows.
    embeddings: Vec<f32>,
    /// Faces from which on search goes through `ann`.
    ann_above: usize,
    ann: Option<Ann>,
}

impl FaceIndex {
    /// An empty index of `dim`-d embeddings that searches approximately from `ann_above` faces.
    pub(crate) fn new(dim: usize, ann_above: usize) -> Self {
        FaceIndex {
            dim,
            face_ids: Vec::new(),
            identities: Vec::new(),
            embeddings: Vec::new(),
            ann_above,
            ann: None,
        }
    }

    /// Faces indexed.
    pub(crate) fn len(&self) -> usize {
        self.face_ids.len()
    }

    /// Faces per identity.
    pub(crate) fn counts(&self) -> std::collections::HashMap<&str, usize> {
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for identity in &self.identities {
            *counts.entry(identity.as_str()).or_default() += 1;
        }
        counts
    }

    /// The ids of an identity's faces.
    pub(crate) fn face_ids_of(&self, identity: &str) -> Vec<u64> {
        self.face_ids
            .iter()
            .zip(&self.identities)
            .filter(|(_, i)| *i == identity)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Appends faces whose ids are larger than any indexed (`(id, identity, embedding)`), to the
    /// graph too when there is one; then builds the graph if the gallery has grown to need one.
    pub(crate) fn extend(&mut self, faces: impl IntoIterator<Item = (u64, String, Vec<f32>)>) {
        let mut added: Vec<(Vec<f32>, usize)> = Vec::new();
        for (id, identity, embedding) in faces {
            assert_eq!(
                embedding.len(),
                self.dim,
                "an embedding of the index's width"
            );
            debug_assert!(self.face_ids.last().is_none_or(|last| *last < id));
            self.face_ids.push(id);
            self.identities.push(identity);
            self.embeddings.extend_from_slice(&embedding);
            if self.ann.is_some() {
                added.push((embedding, id as usize));
            }
        }
        if let Some(ann) = &self.ann {
            let rows: Vec<(&[f32], usize)> =
                added.iter().map(|(e, id)| (e.as_slice(), *id)).collect();
            ann.graph.parallel_insert_slice(&rows);
        }
        self.refresh_ann();
    }

    /// Keeps only the faces for which `keep(id, identity)` holds; the graph skips the others
    /// until enough are gone for a rebuild.
    pub(crate) fn retain(&mut self, keep: impl Fn(u64, &str) -> bool) {
        let dim = self.dim;
        let (mut face_ids, mut identities, mut embeddings) = (Vec::new(), Vec::new(), Vec::new());
        for (row, (id, identity)) in self.face_ids.iter().zip(&self.identities).enumerate() {
            if keep(*id, identity) {
                face_ids.push(*id);
                identities.push(identity.clone());
                embeddings.extend_from_slice(&self.embeddings[row * dim..(row + 1) * dim]);
            } else if let Some(ann) = self.ann.as_mut() {
                ann.removed.insert(*id);
            }
        }
        (self.face_ids, self.identities, self.embeddings) = (face_ids, identities, embeddings);
        self.refresh_ann();
    }

    /// Builds the HNSW graph when the gallery has reached `ann_above` faces and has none, or
    /// when a tenth of the graph's faces have been removed since it was built; drops it when the
    /// gallery falls below `ann_above`.
    fn refresh_ann(&mut self) {
        let n = self.face_ids.len();
        if n < self.ann_above.max(1) {
            self.ann = None;
            return;
        }
        let stale = self
            .ann
            .as_ref()
            .is_none_or(|a| a.removed.len() * 10 > a.graph.get_nb_point());
        if !stale {
            return;
        }
        let layers = 16.min(((n as f64).ln().ceil() as usize).max(1));
        let graph = Hnsw::new(HNSW_LINKS, n, layers, HNSW_EF_BUILD, UnitCosineDistance);
        let rows: Vec<(&[f32], usize)> = self
            .embeddings
            .chunks_exact(self.dim)
            .zip(&self.face_ids)
            .map(|(e, id)| (e, *id as usize))
            .collect();
        graph.parallel_insert_slice(&rows);
        self.ann = Some(Ann {
            graph,
            removed: Default::default(),
        });
    }

    /// Whether searches go through the HNSW graph now.
    pub(crate) fn approximate(&self) -> bool {
        self.ann.is_some()
    }

    /// The `k` identities most similar to `query`, each with its best face: exact, or through
    /// the graph when there is one.
    pub(crate) fn search(&self, query: &[f32], k: usize) -> Vec<Match> {
        match &self.ann {
            Some(ann) => self.search_ann(ann, query, k),
            None => self.search_exact(query, k),
        }
    }

    fn search_ann(&self, ann: &Ann, query: &[f32], k: usize) -> Vec<Match> {
        // Faces of one identity crowd together: fetch enough faces for k distinct identities.
        let fetch = (32 * k).max(128) + ann.removed.len().min(1024);
        let mut best: Vec<Match> = Vec::new();
        for n in ann.graph.search(query, fetch, HNSW_EF_SEARCH.max(fetch)) {
            let id = n.d_id as u64;
            if ann.removed.contains(&id) {
                continue;
            }
            let Ok(row) = self.face_ids.binary_search(&id) else {
                continue;
            };
            let identity = &self.identities[row];
            if best.iter().any(|m| &m.identity == identity) {
                continue;
            }
            best.push(Match {
                identity: identity.clone(),
                face_id: id,
                score: 1.0 - n.distance,
            });
        }
        by_score(best, k)
    }

    /// Exact search: every face's cosine, the best per identity.
    pub(crate) fn search_exact(&self, query: &[f32], k: usize) -> Vec<Match> {
        let mut best: std::collections::HashMap<&str, (f32, u64)> = Default::default();
        for (row, g) in self.embeddings.chunks_exact(self.dim).enumerate() {
            let score: f32 = g.iter().zip(query).map(|(a, b)| a * b).sum();
            let e = best
                .entry(self.identities[row].as_str())
                .or_insert((f32::MIN, 0));
            if score > e.0 {
                *e = (score, self.face_ids[row]);
            }
        }
        let matches = best
            .into_iter()
            .map(|(identity, (score, face_id))| Match {
                identity: identity.to_string(),
                face_id,
                score,
            })
            .collect();
        by_score(matches, k)
    }
}

/// The `k` best matches, highest score first (ties by name, so answers are stable).
fn by_score(mut matches: Vec<Match>, k: usize) -> Vec<Match> {
    matches.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.identity.cmp(&b.identity))
    });
    matches.truncate(k);
    matches
}
