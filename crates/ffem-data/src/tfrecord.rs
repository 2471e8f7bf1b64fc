//! TFRecord framing: `u64 length | u32 masked CRC32C(length) | data | u32 masked CRC32C(data)`,
//! little-endian, the format TensorFlow's `TFRecordWriter` writes and `TFRecordDataset` reads.
//! Written here rather than taken from a crate: the framing is a few lines, and every length is
//! checked against the file before anything is allocated (the fuzz test holds it to that).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

const MASK_DELTA: u32 = 0xa282_ead8;

/// TensorFlow's masked CRC32C: rotate right by 15 bits and add a constant.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Appends records to a TFRecord file.
pub struct RecordWriter {
    out: BufWriter<File>,
    path: PathBuf,
    bytes_written: u64,
    records: u64,
}

impl RecordWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| DataError::io(path, e))?;
        Ok(RecordWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            bytes_written: 0,
            records: 0,
        })
    }

    /// Writes one record.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let res = (|| {
            self.out.write_all(&len)?;
            self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
            self.out.write_all(data)?;
            self.out.write_all(&masked_crc32c(data).to_le_bytes())
        })();
        res.map_err(|e| DataError::io(&self.path, e))?;
        self.bytes_written += data.len() as u64 + 16;
        self.records += 1;
        Ok(())
    }

    /// Bytes written so far, framing included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and syncs the file to disk.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| DataError::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| DataError::io(&self.path, e))
    }
}

/// Streams records from one TFRecord file, checking both checksums.
pub struct RecordReader {
    input: BufReader<File>,
    /// The file's size: no record may claim more than what is left of it.
    file_len: u64,
    path: PathBuf,
    offset: u64,
    index: u64,
    skip_corrupt: bool,
    skipped: u64,
    done: bool,
}

/// One record read from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The record's payload.
    pub data: Vec<u8>,
    /// Byte offset of the record's start in its file.
    pub offset: u64,
    /// 0-based index of the record in its file.
    pub index: u64,
}

impl RecordReader {
    /// Opens `path` for sequential reading.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        Ok(RecordReader {
            input: BufReader::with_capacity(1 << 20, file),
            file_len,
            path: path.to_path_buf(),
            offset: 0,
            index: 0,
            skip_corrupt: false,
            skipped: 0,
            done: false,
        })
    }

    /// With `true`, damaged records are counted in [`Self::skipped`] instead of failing the read.
    /// A damaged length field ends the file, since nothing after it can be located.
    pub fn skip_corrupt(mut self, skip: bool) -> Self {
        self.skip_corrupt = skip;
        self
    }

    /// Records skipped as corrupt so far (a damaged length counts the rest of the file as one).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> DataError {
        DataError::Corrupt {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of file before any byte.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(
                        self.corrupt(self.offset, "truncated record: the file ends inside it")
                    );
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(&self.path, e)),
            }
        }
        Ok(true)
    }

    fn read_one(&mut self) -> Result<Option<RawRecord>> {
        let start = self.offset;
        let mut header = [0u8; 12];
        if !self.read_full(&mut header)? {
            return Ok(None);
        }
        let len_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            let what = if start == 0 {
                "not a TFRecord file (the first record's length checksum does not match)"
            } else {
                "length checksum mismatch: the record header is damaged"
            };
            self.done = true;
            return Err(self.corrupt(start, what));
        }
        let len = u64::from_le_bytes(len_bytes);
        // The length's checksum matched, but the record must also fit in what is left of the file
        // before its bytes are allocated.
        if start.saturating_add(16).saturating_add(len) > self.file_len {
            self.done = true;
            return Err(self.corrupt(
                start,
                format!(
                    "truncated record: {len} bytes announced, the {}-byte file ends before",
                    self.file_len
                ),
            ));
        }
        let mut data = vec![0u8; len as usize];
        let mut crc = [0u8; 4];
        let complete =
            self.read_full(&mut data).map(|ok| ok || len == 0)? && self.read_full(&mut crc)?;
        if !complete {
            self.done = true;
            return Err(self.corrupt(start, "truncated record: the file ends inside it"));
        }
        self.offset += 16 + len;
        let index = self.index;
        self.index += 1;
        if masked_crc32c(&data) != u32::from_le_bytes(crc) {
            return Err(self.corrupt(start, format!("data checksum mismatch in record {index}")));
        }
        Ok(Some(RawRecord {
            data,
            offset: start,
            index,
        }))
    }
}

impl Iterator for RecordReader {
    type Item = Result<RawRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            match self.read_one() {
                Ok(Some(r)) => return Some(Ok(r)),
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e @ DataError::Corrupt { .. }) if self.skip_corrupt => {
                    tracing::warn!("skipping: {e}");
                    self.skipped += 1;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        // CRC-32C check value from RFC 3720 / the iSCSI spec; the mask is checked against
        // TensorFlow-written bytes in tests/tf_fixture.rs.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    fn write_records(path: &Path, records: &[&[u8]]) {
        let mut w = RecordWriter::create(path).unwrap();
        for r in records {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tfrecord");
        write_records(&p, &[b"hello", b"", b"world!"]);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 16 * 3 + 5 + 6);
        assert_eq!(&bytes[..8], &5u64.to_le_bytes());
        assert_eq!(&bytes[12..17], b"hello");
        let got: Vec<Vec<u8>> = RecordReader::open(&p)
            .unwrap()
            .map(|r| r.unwrap().data)
            .collect();
        assert_eq!(got, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
    }

    #[test]
    fn bad_data_crc_names_file_and_offset_and_can_be_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tfrecord");
        write_records(&p, &[b"aaaa", b"bbbb", b"cccc"]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20 + 12] ^= 0xff; // first data byte of record 1, which starts at offset 20
        std::fs::write(&p, &bytes).unwrap();
        let err = RecordReader::open(&p)
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.tfrecord: byte offset 20: data checksum mismatch in record 1"),
            "{err}"
        );
        let mut reader = RecordReader::open(&p).unwrap().skip_corrupt(true);
        let got: Vec<Vec<u8>> = reader.by_ref().map(|r| r.unwrap().data).collect();
        assert_eq!(got, vec![b"aaaa".to_vec(), b"cccc".to_vec()]);
        assert_eq!(reader.skipped(), 1);
    }

    #[test]
    fn truncated_last_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.tfrecord");
        write_records(&p, &[b"aaaa", b"bbbbbbbb"]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let results: Vec<_> = RecordReader::open(&p).unwrap().collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("byte offset 20: truncated record"), "{err}");
        let mut skipping = RecordReader::open(&p).unwrap().skip_corrupt(true);
        assert_eq!(skipping.by_ref().count(), 1);
        assert_eq!(skipping.skipped(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_tfrecord_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, b"this is plainly a text file, not records").unwrap();
        let err = RecordReader::open(&p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notes.txt: byte offset 0: not a TFRecord file"),
            "{err}"
        );
    }
}
