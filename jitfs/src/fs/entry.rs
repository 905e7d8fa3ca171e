//! What the kernel is told about an entry, and what a name from the kernel must be. Every kind
//! of request answers with the same attributes — size and times taken from the backing file
//! while one exists, since passthrough writes never reach the daemon — and the same cache
//! lifetimes: long for views, whose changes from elsewhere are invalidated one by one, short
//! for the mount-only directories, whose refs and SWS come and go unannounced.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use fuser::{Errno, FileAttr};
use jit_kernel::node::validate_entry_name;

use crate::error::{errno, Error, Result};
use crate::inode::{FileBody, Ino, Kind};
use crate::state::State;
use crate::Shared;

/// How long the kernel may cache what a view shows: long, because every change made elsewhere
/// is invalidated explicitly.
const TTL: Duration = Duration::from_secs(3600);
/// Mount-only directories list refs and SWS that come and go: cache them briefly.
const SYNTH_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may cache `ino` and its attributes.
pub(super) fn ttl_for(state: &State, ino: Ino) -> Duration {
    match state.nodes.get(&ino).map(|n| &n.kind) {
        Some(Kind::Synthetic(_)) | None => SYNTH_TTL,
        Some(_) if state.nodes.get(&ino).and_then(|n| n.view).is_none() => SYNTH_TTL,
        Some(_) => TTL,
    }
}

/// The attributes of `ino`, reading size and times from its backing file when it has one.
pub(super) fn attr_of(state: &State, ino: Ino) -> Result<FileAttr> {
    let node = state.get(ino)?;
    let mut attr = node.file_attr(ino, state.subdirs(ino));
    if let Kind::File(FileBody {
        backing: Some(backing),
        writers,
        ..
    }) = &node.kind
    {
        let meta = backing
            .file
            .metadata()
            .map_err(|e| Error::io("cannot stat a backing file", e))?;
        attr.size = meta.len();
        attr.blocks = meta.len().div_ceil(512);
        // While writers are open their (passthrough) writes move only the backing file's
        // mtime; on close it is folded into the inode's.
        if *writers > 0 {
            if let Ok(mtime) = meta.modified() {
                attr.mtime = attr.mtime.max(mtime);
                attr.ctime = attr.ctime.max(mtime);
            }
        }
    }
    Ok(attr)
}

/// `getattr`: the attributes of `ino` and how long they may be cached.
pub(super) fn getattr(shared: &Shared, ino: Ino) -> Result<(Duration, FileAttr)> {
    let state = shared.lock();
    let attr = attr_of(&state, ino)?;
    Ok((ttl_for(&state, ino), attr))
}

/// An entry handed to the kernel: its attributes, counting the lookup the kernel now holds.
pub(super) fn entry(state: &mut State, ino: Ino) -> Result<(Duration, FileAttr)> {
    let attr = attr_of(state, ino)?;
    state.get_mut(ino)?.lookups += 1;
    Ok((ttl_for(state, ino), attr))
}

/// A name the kernel asks about: at most 255 bytes, and a valid tree entry name.
pub(super) fn name_bytes(name: &OsStr) -> Result<&[u8]> {
    let bytes = name.as_bytes();
    if bytes.len() > 255 {
        return errno(Errno::ENAMETOOLONG);
    }
    if validate_entry_name(bytes).is_err() {
        return errno(Errno::EINVAL);
    }
    Ok(bytes)
}

/// A name for a new entry. Names written back go into patches, which carry UTF-8 paths.
pub(super) fn new_name(name: &OsStr) -> Result<&[u8]> {
    let bytes = name_bytes(name)?;
    if std::str::from_utf8(bytes).is_err() {
        return errno(Errno::EILSEQ);
    }
    Ok(bytes)
}
