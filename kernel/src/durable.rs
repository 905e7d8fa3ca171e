//! Small files that survive a crash whole: written to a temporary file, flushed, renamed over
//! the old one, and the directory flushed, so a reader sees the old bytes or the new, never a
//! mix or nothing (HEAD, config, identity).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes a small file atomically and durably: temp file, fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A temporary name of this writer's own: two writers of one file (two `jit checkout`s
    // moving HEAD) never write into each other's temporary file, and the last rename wins
    // whole.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}
