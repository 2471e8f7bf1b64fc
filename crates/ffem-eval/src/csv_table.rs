//! The CSV files ffem writes and reads back (the gallery index, a run's `metrics.csv`), through the
//! `csv` crate: one header, then records. Reading checks the header and gives every record with
//! the line it starts on, so each caller can name the line of a bad value in its own terms.

use std::path::Path;

/// Why a CSV file could not be read as the table asked for.
#[derive(Debug)]
pub enum CsvProblem {
    /// The file could not be opened.
    Io(std::io::Error),
    /// The first record is not the expected header; `found` is what stands there.
    Header {
        /// The fields of the first record, joined by commas.
        found: String,
    },
    /// A record could not be read (bad UTF-8, ...) at this line.
    Line {
        /// 1-based line the record starts on.
        line: u64,
        /// The reader's message.
        message: String,
    },
}

/// The records after `header` in `path`, each with the 1-based line it starts on. Records may
/// have any number of fields: the caller checks the count, naming the line.
pub fn read_records(path: &Path, header: &[&str]) -> Result<Vec<(u64, Vec<String>)>, CsvProblem> {
    let file = std::fs::File::open(path).map_err(CsvProblem::Io)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let found = reader.headers().map_err(|e| CsvProblem::Line {
        line: 1,
        message: e.to_string(),
    })?;
    if found.iter().ne(header.iter().copied()) {
        return Err(CsvProblem::Header {
            found: found.iter().collect::<Vec<_>>().join(","),
        });
    }
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| CsvProblem::Line {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            let line = record.position().map_or(0, |p| p.line());
            Ok((line, record.iter().map(str::to_string).collect()))
        })
        .collect()
}

/// `header` and `rows` as CSV text (fields quoted where RFC 4180 needs it).
pub fn to_bytes<R, F>(header: &[&str], rows: R) -> Vec<u8>
where
    R: IntoIterator<Item = F>,
    F: IntoIterator,
    F::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>| -> csv::Result<()> {
        w.write_record(header)?;
        for row in rows {
            w.write_record(row)?;
        }
        w.flush()?;
        Ok(())
    };
    // Writing into memory cannot fail: the only errors are the sink's.
    write(&mut w).expect("writing CSV to memory");
    w.into_inner().expect("an in-memory CSV writer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_with_their_lines_and_the_header_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let text = to_bytes(&["a", "b"], [["1", "x,y"], ["2", "line\nbreak"], ["3", ""]]);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a,b\n1,\"x,y\"\n2,\"line\nbreak\"\n3,\n"
        );
        let records = read_records(&path, &["a", "b"]).unwrap();
        let lines: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 5]);
        assert_eq!(records[1].1, ["2", "line\nbreak"]);
        match read_records(&path, &["a", "c"]) {
            Err(CsvProblem::Header { found }) => assert_eq!(found, "a,b"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_records(&dir.path().join("none.csv"), &["a"]),
            Err(CsvProblem::Io(_))
        ));
    }
}
