//! What is on disk at one path: `lstat` in the index's terms, and content read so that a write
//! in progress is noticed (the file is stat'ed again after reading and read again if it moved).

use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jit_kernel::checkout::IndexEntry;

use crate::error::{Result, WatchError};

/// What kind of thing a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File {
        /// Any executable bit set.
        executable: bool,
    },
    /// A symbolic link.
    Symlink,
    /// A directory.
    Directory,
    /// A socket, fifo or device: never recorded.
    Other,
}

/// `lstat` of one path, as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`.
    pub mode: u32,
    /// Size.
    pub size: u64,
    /// mtime in ns.
    pub mtime_ns: i64,
    /// ctime in ns.
    pub ctime_ns: i64,
    /// Inode.
    pub ino: u64,
}

impl Stat {
    /// From `lstat` metadata.
    pub fn of(meta: &Metadata) -> Stat {
        Stat {
            mode: meta.mode(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }

    /// The kind of thing this is.
    pub fn kind(&self) -> Kind {
        kind_of_mode(self.mode)
    }

    /// Whether an index entry still describes this file without reading it.
    pub fn matches(&self, entry: &IndexEntry) -> bool {
        self.mode == entry.mode
            && self.size == entry.size
            && self.mtime_ns == entry.mtime_ns
            && self.ctime_ns == entry.ctime_ns
            && self.ino == entry.ino
    }

    /// The index entry for this stat and content.
    pub fn entry(&self, blob: Option<jit_kernel::NodeId>) -> IndexEntry {
        IndexEntry {
            mode: self.mode,
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            blob,
        }
    }
}

/// The kind encoded in an `st_mode`.
pub fn kind_of_mode(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o100000 => Kind::File {
            executable: mode & 0o111 != 0,
        },
        0o120000 => Kind::Symlink,
        0o040000 => Kind::Directory,
        _ => Kind::Other,
    }
}

/// `lstat`; `None` if nothing is there.
pub fn lstat(path: &Path) -> Result<Option<Stat>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(Stat::of(&meta))),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(WatchError::io(path, e)),
    }
}

/// Reads a file or symlink so that the content belongs to the returned stat: if the file changes
/// while being read (a writer still at work), it is read again. `None` if it vanished.
pub fn read_stable(path: &Path, first: Stat) -> Result<Option<(Stat, Vec<u8>)>> {
    let mut stat = first;
    for _ in 0..100 {
        let data = match stat.kind() {
            Kind::Symlink => {
                std::fs::read_link(path).map(|t| t.into_os_string().into_encoded_bytes())
            }
            _ => std::fs::read(path),
        };
        let data = match data {
            Ok(data) => data,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None)
            }
            Err(e) => return Err(WatchError::io(path, e)),
        };
        match lstat(path)? {
            None => return Ok(None),
            Some(after) if after == stat && after.size == data.len() as u64 => {
                return Ok(Some((after, data)))
            }
            Some(after) => stat = after,
        }
    }
    Err(WatchError::Invalid(format!(
        "{} keeps changing while it is read",
        path.display()
    )))
}
