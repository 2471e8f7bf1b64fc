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

/// Writes `value` as pretty JSON to `path` atomically ([`write_file`]).
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("plain data serialises to JSON");
    write_file(path, text.as_bytes())
}

/// Replaces directory `target` with the finished directory `staged` (both on one file system).
///
/// On Linux the two are swapped in one `renameat2(RENAME_EXCHANGE)`, so that at every instant
/// `target` names a complete directory, the old one or the new one. The old contents then sit
/// under `staged` and are removed. Elsewhere (or on a file system without exchange) the old
/// directory is first renamed to `.NAME.tmp-PID.old` and the new one renamed in: a crash between
/// the two renames leaves no `target`, and [`recover_dir`] puts the old one back.
pub fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    replace(staged, target, Strategy::Exchange, None)
}

/// Where [`replace_dir_interrupted`] stops, as a crash at that point would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// Exchange: after the swap, before the old contents are removed.
    AfterSwap,
    /// Two renames (no exchange): after the old directory was moved away, before the new one in.
    BetweenRenames,
    /// Two renames: after the new one is in, before the old one is removed.
    AfterRenames,
}

/// [`replace_dir`] stopped at `at`, leaving what a crash there leaves (crash-window tests only).
#[doc(hidden)]
pub fn replace_dir_interrupted(staged: &Path, target: &Path, at: Interruption) -> Result<()> {
    let strategy = match at {
        Interruption::AfterSwap => Strategy::Exchange,
        Interruption::BetweenRenames | Interruption::AfterRenames => Strategy::TwoRenames,
    };
    replace(staged, target, strategy, Some(at))
}

#[derive(PartialEq)]
enum Strategy {
    Exchange,
    TwoRenames,
}

fn replace(
    staged: &Path,
    target: &Path,
    strategy: Strategy,
    stop: Option<Interruption>,
) -> Result<()> {
    if !target.exists() {
        return std::fs::rename(staged, target).map_err(|e| DataError::io(target, e));
    }
    let old = if strategy == Strategy::Exchange && exchange(staged, target).is_ok() {
        if stop == Some(Interruption::AfterSwap) {
            return Ok(());
        }
        staged.to_path_buf()
    } else {
        let old = old_path(target);
        std::fs::rename(target, &old).map_err(|e| DataError::io(target, e))?;
        if stop == Some(Interruption::BetweenRenames) {
            return Ok(());
        }
        std::fs::rename(staged, target).map_err(|e| DataError::io(target, e))?;
        if stop == Some(Interruption::AfterRenames) {
            return Ok(());
        }
        old
    };
    std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))
}

/// Where the two-rename fallback parks the old `target` while the new one moves in:
/// `.NAME.tmp-PID.old` (appended: `with_extension` would replace the `tmp-PID` part).
fn old_path(target: &Path) -> PathBuf {
    let mut name = temp_path(target).into_os_string();
    name.push(".old");
    PathBuf::from(name)
}

/// Undoes a replacement a crash cut off between its two renames: when `target` is missing and
/// an old copy (`.NAME.tmp-PID.old`, complete: it was the live directory) waits beside it, that
/// copy becomes `target` again. Returns whether it did. Call it before reading `target`, and
/// before [`remove_stale_staging`], which would delete that copy.
pub fn recover_dir(target: &Path) -> Result<bool> {
    if target.exists() {
        return Ok(false);
    }
    let parked = staging_beside(target)?
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".old"));
    let Some(parked) = parked else {
        return Ok(false);
    };
    std::fs::rename(&parked, target).map_err(|e| DataError::io(target, e))?;
    tracing::warn!(
        "{}: restored from {}, left by a replacement that was interrupted",
        target.display(),
        parked.display()
    );
    Ok(true)
}

/// The staging paths writers of `target` use beside it (`.NAME.tmp-PID`, `.NAME.tmp-PID.old`).
fn staging_beside(target: &Path) -> Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(vec![]);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(DataError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            out.push(entry.path());
        }
    }
    Ok(out)
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
    let stale = staging_beside(target)?;
    for path in &stale {
        let r = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        r.map_err(|e| DataError::io(path, e))?;
    }
    Ok(stale.len())
}
