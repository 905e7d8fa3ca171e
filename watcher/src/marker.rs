//! The `.jit-checkout/` directory at the top of a checkout: which universe it belongs to, the
//! locks that serialize the watcher with checkouts and status, and the cookies of synchronized
//! status. It is metadata, never part of the tree.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, WatchError};

/// Name of the metadata directory inside a checkout.
pub const META_DIR: &str = ".jit-checkout";
/// Prefix of cookie files written by synchronized status.
pub const COOKIE_PREFIX: &str = "cookie-";
const MARKER: &str = "checkout.json";
const FLUSH_LOCK: &str = "flush.lock";
const WATCHER_LOCK: &str = "watcher.lock";

/// What `.jit-checkout/checkout.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The universe's directory (the one holding `.jit/`).
    pub repo: PathBuf,
}

/// A located checkout: its top directory and marker.
#[derive(Debug, Clone)]
pub struct Located {
    /// The checkout's top directory (canonical).
    pub dir: PathBuf,
    /// Its marker.
    pub marker: Marker,
}

impl Located {
    /// The checkout's key in the kernel (its canonical path as text).
    pub fn key(&self) -> Result<String> {
        dir_key(&self.dir)
    }
}

/// The kernel key of a checkout directory.
pub fn dir_key(dir: &Path) -> Result<String> {
    dir.to_str()
        .map(str::to_owned)
        .ok_or_else(|| WatchError::BadName(dir.to_path_buf()))
}

/// The metadata directory of the checkout at `dir`.
pub fn meta_dir(dir: &Path) -> PathBuf {
    dir.join(META_DIR)
}

/// Finds the checkout containing `start` (itself or an ancestor).
pub fn find(start: &Path) -> Result<Option<Located>> {
    let start = std::fs::canonicalize(start).map_err(|e| WatchError::io(start, e))?;
    let mut dir = start.as_path();
    loop {
        let file = meta_dir(dir).join(MARKER);
        if file.is_file() {
            let text = std::fs::read_to_string(&file).map_err(|e| WatchError::io(&file, e))?;
            let marker: Marker = serde_json::from_str(&text)
                .map_err(|e| WatchError::Invalid(format!("{} is damaged: {e}", file.display())))?;
            return Ok(Some(Located {
                dir: dir.to_path_buf(),
                marker,
            }));
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return Ok(None),
        }
    }
}

/// Finds the checkout containing `start`, or says there is none.
pub fn require(start: &Path) -> Result<Located> {
    find(start)?.ok_or_else(|| WatchError::NotACheckout(start.to_path_buf()))
}

/// Writes the marker (creating `.jit-checkout/`).
pub fn write(dir: &Path, marker: &Marker) -> Result<()> {
    let meta = meta_dir(dir);
    std::fs::create_dir_all(&meta).map_err(|e| WatchError::io(&meta, e))?;
    let file = meta.join(MARKER);
    let text = serde_json::to_string_pretty(marker)
        .map_err(|e| WatchError::Invalid(format!("cannot encode the marker: {e}")))?;
    std::fs::write(&file, text).map_err(|e| WatchError::io(&file, e))?;
    // A git repository made inside the checkout must not track (and rewrite) the locks.
    let ignore = meta.join(".gitignore");
    std::fs::write(&ignore, "*\n").map_err(|e| WatchError::io(&ignore, e))
}

/// Cookie files waiting in the checkout's metadata directory.
pub fn cookies(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = meta_dir(dir);
    let entries = std::fs::read_dir(&meta).map_err(|e| WatchError::io(&meta, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WatchError::io(&meta, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(COOKIE_PREFIX)
        {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// An advisory lock file (flock), released when dropped or when the process dies.
pub struct Lock(#[allow(dead_code)] File);

fn open_lock(dir: &Path, name: &str) -> Result<File> {
    let path = meta_dir(dir).join(name);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WatchError::io(&path, e))
}

/// The flush lock: held by the watcher while it records a batch, and by checkouts and
/// watcher-less status while they compare or rewrite the directory. Blocks until free.
pub fn flush_lock(dir: &Path) -> Result<Lock> {
    let file = open_lock(dir, FLUSH_LOCK)?;
    file.lock()
        .map_err(|e| WatchError::io(&meta_dir(dir).join(FLUSH_LOCK), e))?;
    Ok(Lock(file))
}

/// The watcher lock: held for a watcher's whole life. `None` if another process holds it.
pub fn try_watcher_lock(dir: &Path) -> Result<Option<Lock>> {
    let file = open_lock(dir, WATCHER_LOCK)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Lock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(WatchError::io(&meta_dir(dir).join(WATCHER_LOCK), e))
        }
    }
}

/// Whether a watcher is running for the checkout at `dir` (it holds the watcher lock).
pub fn watcher_running(dir: &Path) -> Result<bool> {
    Ok(try_watcher_lock(dir)?.is_none())
}
