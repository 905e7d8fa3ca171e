//! File content and attributes: open, read, write, release, fsync, fallocate and setattr.
//! An unchanged file is read straight from the store's chunks; opening it for writing (or a
//! large clean file for reading, when the kernel takes passthrough) first copies it into a
//! backing file, without the state lock, and from then on the kernel reads and writes that
//! file directly. Passthrough writes never reach the daemon, so closing a writer is when the
//! file counts as changed again and its backing file's mtime is taken into the inode. `fsync`
//! writes the file's view back into its SWS before it answers.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileType, FopenFlags, OpenAccMode, OpenFlags, Request, TimeOrNow,
};

use super::entry::{attr_of, ttl_for};
use super::namespace::make;
use crate::backing::Backing;
use crate::error::{errno, Error, Result};
use crate::inode::{FileBody, Ino, Kind};
use crate::state::{Handle, State};
use crate::views;
use crate::Shared;

/// Clean files at least this large are copied into a backing file on open, for passthrough.
const READ_PASSTHROUGH_MIN: u64 = 1 << 20;

/// Asks the kernel for a passthrough reference to a backing file; None to serve the handle
/// through the daemon.
pub(super) type Opener<'a> = &'a dyn Fn(&std::fs::File) -> Option<Arc<BackingId>>;

/// What `open` and `create` answer: the handle, its flags, and the passthrough reference if
/// the kernel reads and writes the backing file directly.
pub(super) type Opened = (u64, FopenFlags, Option<Arc<BackingId>>);

/// `open`: a handle on file `ino`; a writer gets a backing file (emptied for `O_TRUNC`).
pub(super) fn open_file(
    shared: &Shared,
    ino: Ino,
    flags: OpenFlags,
    reply_open: Opener,
) -> Result<Opened> {
    let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
    let truncate = flags.0 & libc::O_TRUNC != 0 && write;
    if write && !truncate {
        shared.prepare_backing(ino, false)?;
    } else if !write && read_passthrough_wanted(shared, ino)? {
        // A large file read through the daemon costs a request per 1 MiB; a copy in a
        // real file lets the kernel read it directly, at native speed, from then on.
        if let Err(error) = shared.prepare_backing(ino, true) {
            tracing::debug!(%error, "no read copy; serving through the daemon");
        }
    }
    let mut state = shared.lock();
    if !matches!(state.get(ino)?.kind, Kind::File(_)) {
        return errno(Errno::EISDIR);
    }
    if write {
        let view = state.writable(ino)?;
        state.ensure_sws(&shared.repo, &shared.owner, view)?;
        let backing = state.ensure_backing(&shared.repo, &shared.backing_dir, ino, truncate)?;
        // A copy made for reading is now where writes go: it must outlive its handles.
        backing.keep();
        if truncate {
            backing.truncate(0)?;
            let now = SystemTime::now();
            let node = state.get_mut(ino)?;
            node.attr.mtime = now;
            node.attr.ctime = now;
        }
        state.mark_dirty(ino);
        state.persist(ino)?;
    }
    let node = state.get_mut(ino)?;
    node.opens += 1;
    let Kind::File(body) = &mut node.kind else {
        return errno(Errno::EISDIR);
    };
    if write {
        body.writers += 1;
    }
    let mut passthrough = None;
    let mut fopen = FopenFlags::empty();
    match &body.backing {
        Some(backing) if body.cached_opens == 0 => {
            passthrough = body
                .backing_id
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
                .or_else(|| reply_open(&backing.file));
            if let Some(id) = &passthrough {
                body.backing_id = Some(Arc::downgrade(id));
                body.passthrough_opens += 1;
                body.cache_valid = false;
            } else {
                body.cached_opens += 1;
            }
        }
        _ => {
            if body.passthrough_opens > 0 {
                // Passthrough handles are open on this inode: the kernel cannot also
                // cache it, so this handle reads and writes through the daemon uncached.
                fopen |= FopenFlags::FOPEN_DIRECT_IO;
            } else {
                body.cached_opens += 1;
                if body.cache_valid && body.backing.is_none() {
                    fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                body.cache_valid = true;
            }
        }
    }
    let fh = state.open_handle(Handle::File {
        ino,
        writer: write,
        passthrough: passthrough.clone(),
        direct: fopen.contains(FopenFlags::FOPEN_DIRECT_IO),
    });
    Ok((fh, fopen, passthrough))
}

/// `create`: a new empty file `name` in `parent`, opened.
pub(super) fn create(
    shared: &Shared,
    req: &Request,
    parent: Ino,
    name: &OsStr,
    perm: u16,
    flags: i32,
    reply_open: Opener,
) -> Result<(Duration, FileAttr, Opened)> {
    let (ttl, attr, ino) = make(
        shared,
        req,
        parent,
        name,
        Kind::File(FileBody::default()),
        perm,
    )?;
    // The kernel checked the create against the directory; the new file is ours to
    // open with whatever access was asked, even if its mode forbids it.
    let opened = open_file(shared, ino, OpenFlags(flags & !libc::O_TRUNC), reply_open)?;
    Ok((ttl, attr, opened))
}

fn read_passthrough_wanted(shared: &Shared, ino: Ino) -> Result<bool> {
    if !shared.passthrough() {
        return Ok(false);
    }
    let state = shared.lock();
    Ok(match &state.get(ino)?.kind {
        Kind::File(body) => {
            body.backing.is_none()
                && body.cached_opens == 0
                && body.size >= READ_PASSTHROUGH_MIN
                && crate::backing::read_copy_fits(body.size)
        }
        _ => false,
    })
}

/// `read`: up to `size` bytes at `offset`, from the backing file or the store's chunks.
pub(super) fn read(shared: &Shared, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>> {
    let (backing, layout, reads) = {
        let mut state = shared.lock();
        let view = state.view_of(ino)?;
        let reads = state.views[view].reads();
        let backing = match &state.get(ino)?.kind {
            Kind::File(body) => body.backing.clone(),
            _ => return errno(Errno::EISDIR),
        };
        let layout = match backing {
            Some(_) => None,
            None => state.layout(&shared.repo, ino)?,
        };
        (backing, layout, reads)
    };
    if let Some(backing) = backing {
        return backing.read(offset, size);
    }
    let Some(layout) = layout else {
        return Ok(Vec::new());
    };
    views::with_source(shared.repo.store(), reads, |src| {
        Ok(layout.read(src, offset, size)?)
    })
}

/// `write` (for handles the kernel does not pass through): into the backing file.
pub(super) fn write(shared: &Shared, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
    let backing = written_backing(&mut shared.lock(), ino)?;
    backing.write(offset, data)?;
    let mut state = shared.lock();
    let now = SystemTime::now();
    let node = state.get_mut(ino)?;
    node.attr.mtime = now;
    node.attr.ctime = now;
    // Writing drops setuid/setgid, as on every local file system.
    node.attr.perm &= !0o6000;
    if let Kind::File(body) = &mut node.kind {
        body.size = body.size.max(offset + data.len() as u64);
    }
    Ok(data.len() as u32)
}

/// The backing file a handle of `ino` writes to, with the file marked changed; `EBADF` if it
/// has none (it was not opened for writing).
fn written_backing(state: &mut State, ino: Ino) -> Result<Arc<Backing>> {
    let backing = match &state.get(ino)?.kind {
        Kind::File(FileBody {
            backing: Some(b), ..
        }) => b.clone(),
        _ => return errno(Errno::EBADF),
    };
    state.mark_dirty(ino);
    Ok(backing)
}

/// `release`: handle `fh` on `ino` is closed; a writer's close marks the file changed.
pub(super) fn release(shared: &Shared, ino: Ino, fh: u64) {
    let mut state = shared.lock();
    let wrote = if let Some(Handle::File {
        writer,
        passthrough,
        direct,
        ..
    }) = state.handles.remove(&fh)
    {
        if let Some(node) = state.nodes.get_mut(&ino) {
            node.opens = node.opens.saturating_sub(1);
            if let Kind::File(body) = &mut node.kind {
                if writer {
                    body.writers = body.writers.saturating_sub(1);
                }
                if passthrough.is_some() {
                    body.passthrough_opens = body.passthrough_opens.saturating_sub(1);
                } else if !direct {
                    body.cached_opens = body.cached_opens.saturating_sub(1);
                }
            }
        }
        writer
    } else {
        false
    };
    if wrote {
        // Passthrough writes never reach the daemon: closing a writer is the moment its
        // content may have changed, so a write-back that hashed it earlier cannot count.
        state.mark_dirty(ino);
        fold_backing_mtime(&mut state, ino);
    }
    state.collect(ino);
    drop(state);
    if wrote {
        shared.kick();
    }
}

/// Takes the mtime that passthrough writes left on the backing file into the inode.
fn fold_backing_mtime(state: &mut State, ino: Ino) {
    let Some(node) = state.nodes.get_mut(&ino) else {
        return;
    };
    let mtime = match &node.kind {
        Kind::File(FileBody {
            backing: Some(backing),
            ..
        }) => backing.file.metadata().and_then(|m| m.modified()).ok(),
        _ => None,
    };
    if let Some(mtime) = mtime {
        node.attr.mtime = node.attr.mtime.max(mtime);
        node.attr.ctime = node.attr.ctime.max(mtime);
    }
}

/// `fsync` and `fsyncdir`: writes back the view of `ino` now, if it is writable.
pub(super) fn sync_view_of(shared: &Shared, ino: Ino) -> Result<()> {
    let view = {
        let state = shared.lock();
        match state.get(ino)?.view {
            Some(view) if state.views[view].kind.writable() => view,
            _ => return Ok(()),
        }
    };
    shared.flush_view(view)
}

/// `fallocate` on the backing file of an open writer.
pub(super) fn fallocate(
    shared: &Shared,
    ino: Ino,
    offset: u64,
    length: u64,
    mode: i32,
) -> Result<()> {
    let backing = {
        let mut state = shared.lock();
        let backing = written_backing(&mut state, ino)?;
        let now = SystemTime::now();
        let node = state.get_mut(ino)?;
        node.attr.mtime = now;
        node.attr.ctime = now;
        backing
    };
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&backing.file),
        nix::fcntl::FallocateFlags::from_bits_truncate(mode),
        offset as i64,
        length as i64,
    )
    .map_err(|e| Error::Errno(Errno::from_i32(e as i32)))?;
    Ok(())
}

/// The changes a `setattr` asks for; None leaves an attribute as it is.
pub(super) struct SetAttr {
    /// New permission bits (the type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
    /// New change time; now when not given.
    pub ctime: Option<SystemTime>,
}

/// `setattr`: truncation, times, mode and owner of `ino`. A size change or an executable bit
/// that flips is a content change for write-back; the rest are recorded as attributes.
pub(super) fn setattr(shared: &Shared, ino: Ino, set: SetAttr) -> Result<(Duration, FileAttr)> {
    let (mode, uid, gid) = (set.mode, set.uid, set.gid);
    let mut state = shared.lock();
    let view = state.writable(ino)?;
    let now = SystemTime::now();
    let mut content_changed = false;
    if let Some(size) = set.size {
        if !matches!(state.get(ino)?.kind, Kind::File(_)) {
            return errno(Errno::EISDIR);
        }
        if size > 0 {
            drop(state);
            shared.prepare_backing(ino, false)?;
            state = shared.lock();
        }
        state.ensure_sws(&shared.repo, &shared.owner, view)?;
        let backing = state.ensure_backing(&shared.repo, &shared.backing_dir, ino, size == 0)?;
        backing.keep();
        backing.truncate(size)?;
        content_changed = true;
        let node = state.get_mut(ino)?;
        node.attr.mtime = now;
        if let Kind::File(body) = &mut node.kind {
            body.size = size;
        }
    }
    if let Some(mode) = mode {
        let node = state.get(ino)?;
        let was_exec = node.attr.perm & 0o100 != 0;
        let perm = (mode & 0o7777) as u16;
        if matches!(node.kind, Kind::File(_)) && was_exec != (perm & 0o100 != 0) {
            content_changed = true;
        }
        state.get_mut(ino)?.attr.perm = perm;
    }
    let node = state.get_mut(ino)?;
    if let Some(uid) = uid {
        node.attr.uid = uid;
    }
    if let Some(gid) = gid {
        node.attr.gid = gid;
    }
    if (uid.is_some() || gid.is_some()) && node.file_type() != FileType::Directory {
        // chown drops setuid/setgid, as on every local file system.
        node.attr.perm &= !0o6000;
    }
    if let Some(atime) = set.atime {
        node.attr.atime = time_of(atime);
    }
    if let Some(mtime) = set.mtime {
        node.attr.mtime = time_of(mtime);
        if let Kind::File(FileBody {
            backing: Some(backing),
            ..
        }) = &node.kind
        {
            let times = std::fs::FileTimes::new().set_modified(node.attr.mtime);
            let _ = backing.file.set_times(times);
        }
    }
    node.attr.ctime = set.ctime.unwrap_or(now);
    if mode.is_some()
        || uid.is_some()
        || gid.is_some()
        || set.atime.is_some()
        || set.mtime.is_some()
    {
        node.attr_set = true;
    }
    if content_changed {
        state.mark_dirty(ino);
    }
    state.persist(ino)?;
    let attr = attr_of(&state, ino)?;
    let ttl = ttl_for(&state, ino);
    drop(state);
    if content_changed {
        shared.kick();
    }
    Ok((ttl, attr))
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}
