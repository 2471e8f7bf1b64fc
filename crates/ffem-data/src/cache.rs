//! Where the setup scripts (`scripts/fetch-*.sh`) put downloaded files, so that the code that
//! loads them looks in the same place.

use std::path::PathBuf;

/// `$OVERRIDE_VAR` if set, else `$XDG_CACHE_HOME/ffem/NAME` (`~/.cache/ffem/NAME` when unset), the
/// layout every fetch script writes.
pub fn dir(override_var: &str, name: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(override_var) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("ffem").join(name)
}
