//! A searchable gallery: L2-normalised embeddings (`NAME.npy`) with an index (`NAME.csv`,
//! columns `row,path,label`) that says which image each row came from. `ffem embed` writes both;
//! `ffem search` loads them. The CSV (the `csv` crate) quotes fields per RFC 4180, so names with
//! commas, quotes or line breaks survive the round trip.

use std::path::{Path, PathBuf};

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
    let index = index_path(npy);
    let csv_error = |e: csv::Error| EvalError::io(&index, e.into());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER).map_err(csv_error)?;
    for (row, e) in entries.iter().enumerate() {
        w.write_record([row.to_string().as_str(), &e.name, &e.label])
            .map_err(csv_error)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| EvalError::io(&index, e.into_error()))?;
    crate::npy::write_atomic(&index, &bytes)
}

/// Reads an index written by [`write`]; every row number must appear once, in order.
pub fn read_index(path: &Path) -> Result<Vec<GalleryEntry>> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let bad = |line: u64, message: String| EvalError::Format {
        path: path.to_path_buf(),
        location: format!("line {line}"),
        message,
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?;
    if header.iter().ne(HEADER) {
        return Err(bad(
            1,
            format!(
                "expected the header `{}` of an index written by `ffem embed`",
                HEADER.join(",")
            ),
        ));
    }
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let [row, name, label]: [&str; 3] = match record.iter().collect::<Vec<_>>().try_into() {
            Ok(fields) => fields,
            Err(f) => {
                return Err(bad(
                    line,
                    format!("{} fields, expected 3 ({})", f.len(), HEADER.join(",")),
                ));
            }
        };
        if row.parse::<usize>().ok() != Some(entries.len()) {
            return Err(bad(
                line,
                format!(
                    "row `{row}` where row {} was expected: the index does not match its .npy; re-run `ffem embed`",
                    entries.len()
                ),
            ));
        }
        entries.push(GalleryEntry {
            name: name.to_string(),
            label: label.to_string(),
        });
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
