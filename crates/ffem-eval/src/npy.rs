//! NumPy `.npy` files of float32 matrices (version 1.0/2.0 headers, little-endian, C order).
//! Written here because ffem needs only this one case, read and written atomically, with the
//! header's shape checked against the file's size before allocating.

use std::io::Write;
use std::path::Path;

use crate::error::{EvalError, Result};

/// Writes a `rows x cols` float32 matrix as `.npy`, atomically (temporary name, then rename).
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    assert_eq!(data.len(), rows * cols, "matrix shape does not match data");
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary name and a rename, so a reader never sees half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| EvalError::io(path, e))
}

/// Reads a 2-D float32 (or float64, converted) `.npy`; returns data, rows, cols.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    let bad = |m: &str| EvalError::format(path, "header", m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (missing \\x93NUMPY magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = header[i + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.split('\'').nth(1))
        .ok_or_else(|| bad("no 'descr'"))?;
    let width = match descr {
        "<f4" | "=f4" => 4,
        "<f8" | "=f8" => 8,
        other => {
            return Err(bad(&format!(
                "dtype {other} is not supported: save float32 (np.float32) embeddings"
            )));
        }
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            "Fortran-ordered arrays are not supported: save with np.ascontiguousarray",
        ));
    }
    let shape_txt = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no 'shape'"))?;
    let dims: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!(
            "expected a 2-D array [pairs*2, dim], found shape {dims:?}"
        )));
    };
    let body = &bytes[start + hlen..];
    if body.len() != rows * cols * width {
        return Err(EvalError::format(
            path,
            "data",
            format!(
                "expected {} bytes for shape ({rows}, {cols}), found {}",
                rows * cols * width,
                body.len()
            ),
        ));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect()
    };
    Ok((data, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.npy");
        write_f32(&p, &[1.0, -2.5, 3.0, 4.0, 5.0, 6.0], 3, 2).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
        assert_eq!(
            read_f32(&p).unwrap(),
            (vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0], 3, 2)
        );
    }

    #[test]
    fn rejects_other_dtypes_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.npy");
        let mut h = "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }".to_string();
        while !(11 + h.len()).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(7i64.to_le_bytes());
        std::fs::write(&p, b).unwrap();
        assert!(
            read_f32(&p)
                .unwrap_err()
                .to_string()
                .contains("dtype <i8 is not supported")
        );
    }
}
