//! Listing the files under a folder, for the tools that take a folder of photos.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// File extensions (lower case) of the images ffem reads: the formats its decoder is built with
/// (the decoder itself goes by the bytes, so a WebP named `.jpg` still decodes).
pub const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "webp", "bmp", "pgm", "ppm", "pbm", "pnm", "tif", "tiff",
];

/// Whether `path` names an image ffem can decode, by its extension (any case).
pub fn is_image(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
    })
}

/// The images under `root` (see [`files_under`]), as full paths.
pub fn images_under(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(files_under(root)?
        .into_iter()
        .filter(|p| is_image(p))
        .map(|p| root.join(p))
        .collect())
}

/// Every file under `root` (following symlinked folders), as paths relative to `root`, depth
/// first with each folder's entries in name order.
pub fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    visit(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn visit(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
        names.push(entry.map_err(|e| DataError::io(&dir, e))?.file_name());
    }
    names.sort();
    for name in names {
        let child = rel.join(name);
        if root.join(&child).is_dir() {
            visit(root, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nested_files_depth_first_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b/2.jpg", "b/1.jpg", "a.txt", "b/c/3.png", "d/4.jpg"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let got: Vec<String> = files_under(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(got, ["a.txt", "b/1.jpg", "b/2.jpg", "b/c/3.png", "d/4.jpg"]);
        assert!(
            files_under(&dir.path().join("missing"))
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }
}
