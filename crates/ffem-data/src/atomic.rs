//! Atomic writes: write beside the target under a temporary name, then rename, so a crash never
//! leaves a half-written file where a complete one is expected.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Replaces directory `target` with the finished directory `staged` (both on one file system).
pub fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let old = temp_path(target).with_extension("old");
        std::fs::rename(target, &old).map_err(|e| DataError::io(target, e))?;
        std::fs::rename(staged, target).map_err(|e| DataError::io(target, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
    } else {
        std::fs::rename(staged, target).map_err(|e| DataError::io(target, e))?;
    }
    Ok(())
}
