//! What the file system did to the store, said plainly: a `data.mdb` cut shorter than the pages
//! LMDB's header says it holds is refused before anything reads through the memory map (which
//! would kill the process with SIGBUS), and a write that failed because the disk is full says
//! so ([`Error::NoSpace`]) — LMDB reports a short write as a bare EIO, which says nothing of
//! the cause.

use std::path::Path;

use heed::{Env, WithoutTls};

use crate::error::{is_no_space, Error, Result};

/// The store's file inside its directory.
const DATA_FILE: &str = "data.mdb";

/// LMDB's two meta pages at the smallest page size: no store file is shorter.
const SMALLEST_STORE: u64 = 2 * 4096;

/// Below this many free bytes, an EIO from a write is taken for a full disk: a short write
/// leaves the file system full to within a block.
const FULL_BELOW: u64 = 4 << 20;

/// EIO on Linux.
const EIO: i32 = 5;

/// Refuses a store file too short to hold even LMDB's header, before LMDB reads it.
pub(super) fn refuse_too_short(dir: &Path) -> Result<()> {
    let file = dir.join(DATA_FILE);
    let size = std::fs::metadata(&file)
        .map_err(|e| Error::io(&file, e))?
        .len();
    if size < SMALLEST_STORE {
        return Err(Error::StoreTruncated {
            path: file,
            size,
            expected: SMALLEST_STORE,
        });
    }
    Ok(())
}

/// Refuses a store file shorter than its last used page, as LMDB's header records it. Only the
/// header is read (it is in the file's first pages); a file only ever grows while LMDB writes.
///
/// The header is read before the file's size: another process (the daemon) may commit in
/// between, and a commit writes its pages before the header that names them, so the size read
/// second is never behind the header read first. The other order took a store that grew between
/// the two reads for a truncated one.
pub(super) fn refuse_truncated(env: &Env<WithoutTls>, dir: &Path) -> Result<()> {
    let file = dir.join(DATA_FILE);
    let page = u64::from(env.stat().page_size);
    let expected = (env.info().last_page_number as u64).saturating_add(1) * page;
    let size = std::fs::metadata(&file)
        .map_err(|e| Error::io(&file, e))?
        .len();
    if size < expected {
        tracing::error!(store = %file.display(), size, expected, "the store is truncated");
        return Err(Error::StoreTruncated {
            path: file,
            size,
            expected,
        });
    }
    Ok(())
}

/// `error` as [`Error::NoSpace`] when it comes from a full disk (or a full map), else unchanged.
pub(super) fn classify(dir: &Path, error: Error) -> Error {
    let detail = match &error {
        Error::Store(heed::Error::Mdb(heed::MdbError::MapFull)) => {
            "the store's memory map is full".to_owned()
        }
        Error::Store(heed::Error::Io(io)) if is_no_space(io) => io.to_string(),
        Error::Store(heed::Error::Io(io)) if io.raw_os_error() == Some(EIO) => {
            match available(dir) {
                Some(free) if free < FULL_BELOW => {
                    format!("a write came up short ({io}) and {free} bytes are free")
                }
                _ => return error,
            }
        }
        _ => return error,
    };
    tracing::error!(store = %dir.display(), %detail, "the store's file system is full");
    Error::NoSpace {
        path: dir.to_path_buf(),
        detail,
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}
