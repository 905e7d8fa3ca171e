//! Names: finding, listing, making and removing entries. Below the root the mount shows
//! mount-only directories (`refs/`, `sws/`, `nodes/`, `federation/`) that are computed from the store on
//! each lookup and never written; inside a view, entries are the inode tree's, and a change
//! is made in the tree and recorded in the overlay before the request is answered, so
//! `kill -9` loses nothing the kernel was told succeeded. A directory's listing is taken once
//! per open handle, so entries added or removed while it is read neither repeat nor vanish.
//! Renames have a module of their own ([`super::rename`]); `mkdir` and `rmdir` in `sws/` are
//! the SWS lifecycle ([`super::sws_dir`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FileType, FopenFlags, Request};
use jit_kernel::federation::known;
use jit_kernel::NodeId;
use uuid::Uuid;

use super::entry::{entry, name_bytes, new_name};
use super::sws_dir::{create_sws, discard_sws, sws_names};
use crate::error::{errno, Error, Result};
use crate::inode::{FileBody, Ino, Kind, Synth};
use crate::persist::join;
use crate::state::{attr, Handle, State, ROOT};
use crate::views::ViewKind;
use crate::Shared;

/// `lookup`: the entry `name` of `parent`, counted as looked up.
pub(super) fn lookup(shared: &Shared, parent: Ino, name: &OsStr) -> Result<(Duration, FileAttr)> {
    let name = name_bytes(name)?;
    let mut state = shared.lock();
    match lookup_in(shared, &mut state, parent, name)? {
        Some(ino) => entry(&mut state, ino),
        None => errno(Errno::ENOENT),
    }
}

/// `forget`: the kernel dropped `nlookup` lookups of `ino`; it goes once nothing holds it.
pub(super) fn forget(shared: &Shared, ino: Ino, nlookup: u64) {
    let mut state = shared.lock();
    if let Some(node) = state.nodes.get_mut(&ino) {
        node.lookups = node.lookups.saturating_sub(nlookup);
    }
    state.collect(ino);
}

/// `readlink`: the target of symlink `ino`.
pub(super) fn readlink(shared: &Shared, ino: Ino) -> Result<Vec<u8>> {
    match &shared.lock().get(ino)?.kind {
        Kind::Symlink { target } => Ok(target.clone()),
        _ => errno(Errno::EINVAL),
    }
}

fn lookup_in(shared: &Shared, state: &mut State, parent: Ino, name: &[u8]) -> Result<Option<Ino>> {
    let repo = &shared.repo;
    let synth = match &state.get(parent)?.kind {
        Kind::Synthetic(s) => s.clone(),
        Kind::Dir { .. } => {
            return Ok(state.children(repo, parent)?.get(name).copied());
        }
        _ => return errno(Errno::ENOTDIR),
    };
    let text = std::str::from_utf8(name).unwrap_or("");
    let synth_child = |s: Synth| Some(s);
    let found = match (&synth, text) {
        (Synth::Root, "head") => {
            return state.view_root(repo, ViewKind::Head, ROOT, name);
        }
        (Synth::Root, "refs") => synth_child(Synth::Refs),
        (Synth::Root, "sws") => synth_child(Synth::SwsList),
        (Synth::Root, "nodes") => synth_child(Synth::Nodes),
        (Synth::Root, "federation") => synth_child(Synth::Federation),
        (Synth::Federation, _) => match text.parse::<Uuid>() {
            Ok(universe) if imports_of(repo, universe)?.is_some() => {
                synth_child(Synth::FederationUniverse(universe))
            }
            _ => None,
        },
        (Synth::FederationUniverse(universe), _) => {
            let kind = ViewKind::Federated {
                universe: *universe,
                name: text.to_owned(),
            };
            if imports_of(repo, *universe)?.is_some_and(|names| names.iter().any(|n| n == text)) {
                return state.view_root(repo, kind, parent, name);
            }
            None
        }
        (Synth::Refs, "heads") => synth_child(Synth::RefLevel("heads/".into())),
        (Synth::Refs, "tags") => synth_child(Synth::RefLevel("tags/".into())),
        (Synth::RefLevel(prefix), _) if !text.is_empty() => {
            let full = format!("{prefix}{text}");
            let txn = repo.store().read()?;
            if repo.store().ref_target(&txn, &full)?.is_some() {
                drop(txn);
                return state.view_root(repo, ViewKind::Ref(full), parent, name);
            }
            let nested = format!("{full}/");
            if repo.store().refs_with_prefix(&txn, &nested)?.is_empty() {
                None
            } else {
                Some(Synth::RefLevel(nested))
            }
        }
        (Synth::SwsList, _) => {
            let listing = sws_names(shared)?;
            match listing.into_iter().find(|(n, _)| n.as_bytes() == name) {
                Some((_, id)) => {
                    return state.view_root(repo, ViewKind::Sws(id), parent, name);
                }
                None => None,
            }
        }
        (Synth::Nodes, _) => match text.parse::<NodeId>().ok() {
            Some(id) => return state.view_root(repo, ViewKind::Snapshot(id), parent, name),
            None => None,
        },
        _ => None,
    };
    Ok(found.map(|s| state.synthetic(parent, name, s)))
}

/// The names of the imports from `universe`; None if nothing was imported from it.
fn imports_of(repo: &jit_kernel::Repository, universe: Uuid) -> Result<Option<Vec<String>>> {
    let txn = repo.store().read()?;
    Ok(known::get(repo.store(), &txn, universe)?
        .filter(|record| !record.imports.is_empty())
        .map(|record| record.imports.into_keys().collect()))
}

fn list(shared: &Shared, state: &mut State, dir: Ino) -> Result<Vec<(Vec<u8>, Ino, FileType)>> {
    let repo = &shared.repo;
    let synth = match &state.get(dir)?.kind {
        Kind::Synthetic(s) => s.clone(),
        Kind::Dir { .. } => {
            let children: Vec<(Vec<u8>, Ino)> = state
                .children(repo, dir)?
                .iter()
                .map(|(n, i)| (n.clone(), *i))
                .collect();
            return Ok(children
                .into_iter()
                .filter_map(|(n, i)| state.nodes.get(&i).map(|c| (n, i, c.file_type())))
                .collect());
        }
        _ => return errno(Errno::ENOTDIR),
    };
    let names: Vec<String> = match &synth {
        Synth::Root => ["federation", "head", "nodes", "refs", "sws"]
            .map(String::from)
            .to_vec(),
        Synth::Federation => {
            let txn = repo.store().read()?;
            known::list(repo.store(), &txn)?
                .into_iter()
                .filter(|(_, record)| !record.imports.is_empty())
                .map(|(universe, _)| universe.to_string())
                .collect()
        }
        Synth::FederationUniverse(universe) => imports_of(repo, *universe)?.unwrap_or_default(),
        Synth::Refs => ["heads", "tags"].map(String::from).to_vec(),
        Synth::RefLevel(prefix) => {
            let txn = repo.store().read()?;
            let mut names: Vec<String> = repo
                .store()
                .refs_with_prefix(&txn, prefix)?
                .into_iter()
                .filter_map(|(full, _)| full[prefix.len()..].split('/').next().map(str::to_owned))
                .collect();
            names.dedup();
            names
        }
        Synth::SwsList => sws_names(shared)?.into_iter().map(|(n, _)| n).collect(),
        Synth::Nodes => Vec::new(),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(ino) = lookup_in(shared, state, dir, name.as_bytes())? {
            out.push((name.into_bytes(), ino, FileType::Directory));
        }
    }
    Ok(out)
}

/// `opendir`: a handle for directory `ino` and the kernel's caching flags for it.
pub(super) fn opendir(shared: &Shared, ino: Ino) -> Result<(u64, FopenFlags)> {
    let mut state = shared.lock();
    // View directories change only through this mount or through a reconcile that
    // invalidates them, so the kernel may keep their listings. The listing itself is
    // taken at the first readdir: a cached directory is opened without being read.
    let flags = match state.get(ino)?.kind {
        Kind::Dir { .. } => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        Kind::Synthetic(_) => FopenFlags::empty(),
        _ => return errno(Errno::ENOTDIR),
    };
    Ok((state.open_handle(Handle::Dir { entries: None }), flags))
}

/// `readdir`: hands `add` (inode, next offset, type, name) the entries of handle `fh` from
/// `offset` on, until it says the reply is full. The listing is taken at the first call.
pub(super) fn readdir(
    shared: &Shared,
    dir: Ino,
    fh: u64,
    offset: u64,
    mut add: impl FnMut(Ino, u64, FileType, &OsStr) -> bool,
) -> Result<()> {
    let mut state = shared.lock();
    match state.handles.get(&fh) {
        Some(Handle::Dir { entries: Some(_) }) => {}
        Some(Handle::Dir { entries: None }) => snapshot_listing(shared, &mut state, dir, fh)?,
        _ => return errno(Errno::EBADF),
    }
    let Some(Handle::Dir {
        entries: Some(entries),
    }) = state.handles.get(&fh)
    else {
        return errno(Errno::EBADF);
    };
    for (i, (name, ino, kind)) in entries.iter().enumerate().skip(offset as usize) {
        if add(*ino, (i + 1) as u64, *kind, OsStr::from_bytes(name)) {
            break;
        }
    }
    Ok(())
}

/// Takes a directory's listing for handle `fh`, so entries added or removed while it is
/// read neither repeat nor vanish.
fn snapshot_listing(shared: &Shared, state: &mut State, dir: Ino, fh: u64) -> Result<()> {
    let mut entries = vec![
        (b".".to_vec(), dir, FileType::Directory),
        (b"..".to_vec(), state.get(dir)?.parent, FileType::Directory),
    ];
    entries.extend(list(shared, state, dir)?);
    if let Some(Handle::Dir { entries: slot }) = state.handles.get_mut(&fh) {
        *slot = Some(entries);
    }
    Ok(())
}

/// `releasedir`: forgets handle `fh`.
pub(super) fn releasedir(shared: &Shared, fh: u64) {
    shared.lock().handles.remove(&fh);
}

/// Common part of create/mknod/mkdir/symlink in a view directory.
pub(super) fn make(
    shared: &Shared,
    req: &Request,
    parent: Ino,
    name: &OsStr,
    kind: Kind,
    perm: u16,
) -> Result<(Duration, FileAttr, Ino)> {
    let name = new_name(name)?;
    let mut state = shared.lock();
    let view = state.writable(parent)?;
    if state.children(&shared.repo, parent)?.contains_key(name) {
        return errno(Errno::EEXIST);
    }
    state.ensure_sws(&shared.repo, &shared.owner, view)?;
    // A regular file gets its (empty) data file at once, so its record names it from the
    // start.
    let backing = match &kind {
        Kind::File(_) => Some(Arc::new(crate::backing::Backing::create(
            &shared.backing_dir,
        )?)),
        _ => None,
    };
    let now = SystemTime::now();
    let gid = match &state.get(parent)?.attr {
        a if a.perm & 0o2000 != 0 => a.gid,
        _ => req.gid(),
    };
    let ino = state.create_child(parent, name, kind, attr(perm, req.uid(), gid, now))?;
    if let Some(backing) = backing {
        if let Kind::File(body) = &mut state.get_mut(ino)?.kind {
            body.backing = Some(backing);
        }
    }
    state.persist(ino)?;
    touch_dir(&mut state, parent, now);
    let (ttl, attr) = entry(&mut state, ino)?;
    drop(state);
    shared.kick();
    Ok((ttl, attr, ino))
}

/// `mknod`: a regular file, FIFO, socket or device node, by the type bits of `mode`.
pub(super) fn mknod(
    shared: &Shared,
    req: &Request,
    parent: Ino,
    name: &OsStr,
    mode: u32,
    perm: u16,
    rdev: u32,
) -> Result<(Duration, FileAttr)> {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Kind::File(FileBody::default()),
        libc::S_IFIFO => Kind::Special {
            kind: FileType::NamedPipe,
            rdev: 0,
        },
        libc::S_IFSOCK => Kind::Special {
            kind: FileType::Socket,
            rdev: 0,
        },
        libc::S_IFCHR => Kind::Special {
            kind: FileType::CharDevice,
            rdev,
        },
        libc::S_IFBLK => Kind::Special {
            kind: FileType::BlockDevice,
            rdev,
        },
        _ => return Err(Error::Errno(Errno::EINVAL)),
    };
    let (ttl, attr, _) = make(shared, req, parent, name, kind, perm)?;
    Ok((ttl, attr))
}

/// `mkdir`: a directory in a view, or in `sws/` a new SWS.
pub(super) fn mkdir(
    shared: &Shared,
    req: &Request,
    parent: Ino,
    name: &OsStr,
    perm: u16,
) -> Result<(Duration, FileAttr)> {
    let is_sws_list = matches!(
        shared.lock().get(parent)?.kind,
        Kind::Synthetic(Synth::SwsList)
    );
    if is_sws_list {
        return create_sws(shared, parent, name);
    }
    let kind = Kind::Dir {
        tree: None,
        children: Some(Default::default()),
    };
    let (ttl, attr, _) = make(shared, req, parent, name, kind, perm)?;
    Ok((ttl, attr))
}

/// `symlink`: a symlink to `target`, which must be UTF-8 to be written back.
pub(super) fn symlink(
    shared: &Shared,
    req: &Request,
    parent: Ino,
    name: &OsStr,
    target: &Path,
) -> Result<(Duration, FileAttr)> {
    let target = target.as_os_str().as_bytes().to_vec();
    if std::str::from_utf8(&target).is_err() {
        return errno(Errno::EILSEQ);
    }
    let (ttl, attr, _) = make(shared, req, parent, name, Kind::Symlink { target }, 0o777)?;
    Ok((ttl, attr))
}

/// `link`: another name for file `ino`, in the same view.
pub(super) fn link(
    shared: &Shared,
    ino: Ino,
    newparent: Ino,
    newname: &OsStr,
) -> Result<(Duration, FileAttr)> {
    let newname = new_name(newname)?;
    let repo = &shared.repo;
    let mut state = shared.lock();
    let view = state.writable(newparent)?;
    if state.view_of(ino)? != view {
        return errno(Errno::EXDEV);
    }
    if state.get(ino)?.is_dir() {
        return errno(Errno::EPERM);
    }
    if state.children(repo, newparent)?.contains_key(newname) {
        return errno(Errno::EEXIST);
    }
    state
        .children_mut(repo, newparent)?
        .insert(newname.to_vec(), ino);
    let now = SystemTime::now();
    let node = state.get_mut(ino)?;
    node.nlink += 1;
    node.attr.ctime = now;
    state.extra_parents.entry(ino).or_default().push(newparent);
    state.mark_dirty(ino);
    state.mark_dirty(newparent);
    state.persist(ino)?;
    touch_dir(&mut state, newparent, now);
    let answer = entry(&mut state, ino)?;
    drop(state);
    shared.kick();
    Ok(answer)
}

/// `unlink`: removes the non-directory `name` from `parent`.
pub(super) fn unlink(shared: &Shared, parent: Ino, name: &OsStr) -> Result<()> {
    let name = name_bytes(name)?;
    let mut state = shared.lock();
    state.writable(parent)?;
    let Some(child) = state.children(&shared.repo, parent)?.get(name).copied() else {
        return errno(Errno::ENOENT);
    };
    if state.get(child)?.is_dir() {
        return errno(Errno::EISDIR);
    }
    let now = SystemTime::now();
    state.get_mut(child)?.attr.ctime = now;
    let path = join(&state.path_of(parent), name);
    let view = state.view_of(parent)?;
    state.detach(parent, name);
    state.persist_removed(view, &path, false)?;
    // A file with other names changed (its link count): their records say so.
    state.persist(child)?;
    touch_dir(&mut state, parent, now);
    Ok(())
}

/// `rmdir`: removes the empty directory `name` from `parent`, or in `sws/` discards an SWS.
pub(super) fn rmdir(shared: &Shared, parent: Ino, name: &OsStr) -> Result<()> {
    let name = name_bytes(name)?;
    let mut state = shared.lock();
    if matches!(state.get(parent)?.kind, Kind::Synthetic(Synth::SwsList)) {
        drop(state);
        return discard_sws(shared, name);
    }
    state.writable(parent)?;
    let Some(child) = state.children(&shared.repo, parent)?.get(name).copied() else {
        return errno(Errno::ENOENT);
    };
    if !state.get(child)?.is_dir() {
        return errno(Errno::ENOTDIR);
    }
    if !state.children(&shared.repo, child)?.is_empty() {
        return errno(Errno::ENOTEMPTY);
    }
    let path = join(&state.path_of(parent), name);
    let view = state.view_of(parent)?;
    state.detach(parent, name);
    state.persist_removed(view, &path, true)?;
    touch_dir(&mut state, parent, SystemTime::now());
    Ok(())
}

/// Gives directory `dir` the time of a change of its entries.
pub(super) fn touch_dir(state: &mut State, dir: Ino, now: SystemTime) {
    if let Some(node) = state.nodes.get_mut(&dir) {
        node.attr.mtime = now;
        node.attr.ctime = now;
    }
}
