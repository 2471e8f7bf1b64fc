//! Atomic writes: write beside the target under a temporary name, then rename, so a crash never
//! leaves a half-written file where a complete one is expected.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
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
///
/// On Linux the two are swapped in one `renameat2(RENAME_EXCHANGE)`, so that at every instant
/// `target` names a complete directory, the old one or the new one: a crash at any point leaves a
/// usable checkpoint or pack. The old contents then sit under `staged` and are removed. Elsewhere
/// (or on a file system without exchange) the old directory is renamed away first and the new one
/// renamed in, which leaves a short window with no `target`.
pub fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    replace(staged, target, true)
}

/// [`replace_dir`] stopped after the swap, before the old contents are removed: what a crash at
/// that point leaves (tests only).
#[doc(hidden)]
pub fn replace_dir_without_cleanup(staged: &Path, target: &Path) -> Result<()> {
    replace(staged, target, false)
}

fn replace(staged: &Path, target: &Path, clean_up: bool) -> Result<()> {
    if !target.exists() {
        return std::fs::rename(staged, target).map_err(|e| DataError::io(target, e));
    }
    let old = if exchange(staged, target).is_ok() {
        staged.to_path_buf()
    } else {
        let old = temp_path(target).with_extension("old");
        std::fs::rename(target, &old).map_err(|e| DataError::io(target, e))?;
        std::fs::rename(staged, target).map_err(|e| DataError::io(target, e))?;
        old
    };
    if clean_up {
        std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
    }
    Ok(())
}

/// Swaps two paths atomically.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Removes the staging directories (`.NAME.tmp-PID`, and `.NAME.tmp-PID.old` of the fallback)
/// that interrupted writers of `target` left beside it. Call it only while no other process is
/// writing `target`.
pub fn remove_stale_staging(target: &Path) -> Result<usize> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(DataError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            let r = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(|e| DataError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
