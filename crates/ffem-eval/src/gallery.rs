//! A searchable gallery: L2-normalised embeddings (`NAME.npy`) with an index (`NAME.csv`,
//! columns `row,path,label`) that says which image each row came from. `ffem embed` writes both;
//! `ffem search` loads them. The CSV (the `csv` crate) quotes fields per RFC 4180, so names with
//! commas, quotes or line breaks survive the round trip.

use std::path::{Path, PathBuf};

use crate::csv_table::{self, CsvProblem};
use crate::embedding::{cosine, normalize_rows};
use crate::error::{EvalError, Result};

const HEADER: [&str; 3] = ["row", "path", "label"];

/// Where one gallery row came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryEntry {
    /// The image (a path, or an image_list.json key).
    pub name: String,
    /// Its identity label text (the folder name or the list's label; empty when unknown).
    pub label: String,
}

/// The index file that belongs beside embeddings file `npy`.
pub fn index_path(npy: &Path) -> PathBuf {
    npy.with_extension("csv")
}

/// Writes `embeddings` (rows x dim) to `npy` and the index of `entries` beside it, each atomically.
pub fn write(npy: &Path, embeddings: &[f32], dim: usize, entries: &[GalleryEntry]) -> Result<()> {
    crate::npy::write_f32(npy, embeddings, entries.len(), dim)?;
    let rows = entries
        .iter()
        .enumerate()
        .map(|(row, e)| [row.to_string(), e.name.clone(), e.label.clone()]);
    crate::npy::write_atomic(&index_path(npy), &csv_table::to_bytes(&HEADER, rows))
}

/// Reads an index written by [`write`]; every row number must appear once, in order.
pub fn read_index(path: &Path) -> Result<Vec<GalleryEntry>> {
    let bad = |line: u64, message: String| EvalError::Format {
        path: path.to_path_buf(),
        location: format!("line {line}"),
        message,
    };
    let records = csv_table::read_records(path, &HEADER).map_err(|problem| match problem {
        CsvProblem::Io(e) => EvalError::io(path, e),
        CsvProblem::Header { .. } => bad(
            1,
            format!(
                "expected the header `{}` of an index written by `ffem embed`",
                HEADER.join(",")
            ),
        ),
        CsvProblem::Line { line, message } => bad(line, message),
    })?;
    let mut entries = Vec::new();
    for (line, fields) in records {
        let [row, name, label]: [String; 3] = fields.try_into().map_err(|f: Vec<String>| {
            bad(
                line,
                format!("{} fields, expected 3 ({})", f.len(), HEADER.join(",")),
            )
        })?;
        if row.parse::<usize>().ok() != Some(entries.len()) {
            return Err(bad(
                line,
                format!(
                    "row `{row}` where row {} was expected: the index does not match its .npy; re-run `ffem embed`",
                    entries.len()
                ),
            ));
        }
        entries.push(GalleryEntry { name, label });
    }
    Ok(entries)
}

/// Embeddings with their index, ready to search.
#[derive(Debug, Clone)]
pub struct Gallery {
    /// rows x dim, L2-normalised.
    pub embeddings: Vec<f32>,
    /// Embedding width.
    pub dim: usize,
    /// One entry per row.
    pub entries: Vec<GalleryEntry>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Cosine similarity to the query.
    pub score: f32,
    /// Row in the gallery.
    pub row: usize,
}

impl Gallery {
    /// A gallery of `embeddings` (normalised here) and their entries.
    pub fn new(mut embeddings: Vec<f32>, dim: usize, entries: Vec<GalleryEntry>) -> Self {
        assert_eq!(embeddings.len(), entries.len() * dim, "one row per entry");
        normalize_rows(&mut embeddings, dim);
        Gallery {
            embeddings,
            dim,
            entries,
        }
    }

    /// Loads `npy` and its index; the two must have the same number of rows.
    pub fn load(npy: &Path) -> Result<Self> {
        let (data, rows, dim) = crate::npy::read_f32(npy)?;
        let index = index_path(npy);
        let entries = read_index(&index)?;
        if entries.len() != rows {
            return Err(EvalError::Invalid(format!(
                "{} has {rows} rows but its index {} lists {}: re-run `ffem embed`",
                npy.display(),
                index.display(),
                entries.len()
            )));
        }
        Ok(Gallery::new(data, dim, entries))
    }

    /// The `k` rows most similar to `query` (any scale), best first; ties go to the lower row.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .embeddings
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(row, g)| Hit {
                score: cosine(query, g),
                row,
            })
            .collect();
        hits.sort_by(|x, y| y.score.total_cmp(&x.score).then(x.row.cmp(&y.row)));
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_commas_quotes_and_newlines_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("g.npy");
        let entries = vec![
            GalleryEntry {
                name: "Smith, John/01.jpg".into(),
                label: "Smith, John".into(),
            },
            GalleryEntry {
                name: "the \"Rock\"/a.jpg".into(),
                label: "".into(),
            },
            GalleryEntry {
                name: "two\nlines.jpg".into(),
                label: "7".into(),
            },
        ];
        write(&npy, &[1.0, 0.0, 0.0, 2.0, 3.0, 4.0], 2, &entries).unwrap();
        let g = Gallery::load(&npy).unwrap();
        assert_eq!(g.entries, entries);
        assert_eq!(g.embeddings, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        // The query (1, 1) is 45 degrees from rows 0 and 1 and 8.1 degrees from row 2.
        let hits = g.search(&[1.0, 1.0], 2);
        let rows: Vec<usize> = hits.iter().map(|h| h.row).collect();
        assert_eq!(
            rows,
            vec![2, 0],
            "row 2 first, then the tie 0/1 broken by row"
        );
        assert!((hits[0].score - 1.4 / 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn a_mismatched_index_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("g.npy");
        crate::npy::write_f32(&npy, &[1.0, 0.0, 0.0, 1.0], 2, 2).unwrap();
        std::fs::write(index_path(&npy), "row,path,label\n0,a.jpg,x\n2,b.jpg,y\n").unwrap();
        let err = Gallery::load(&npy).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("row `2`"), "{err}");
        // A quote never closed runs to the end of the file: one field short on its line.
        std::fs::write(index_path(&npy), "row,path,label\n0,\"a.jpg,x\n").unwrap();
        let err = Gallery::load(&npy).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("2 fields"), "{err}");
    }
}
