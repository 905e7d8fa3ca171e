//! The FUSE request handlers: each takes the state lock only to read or change inodes, and
//! does content I/O (store reads, backing files) after releasing it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use jit_kernel::node::validate_entry_name;
use jit_kernel::sws::{self, SwsId};
use jit_kernel::NodeId;

use crate::error::{errno, Error, Result};
use crate::inode::{FileBody, Ino, Kind, Synth};
use crate::persist::join;
use crate::state::{attr, Handle, State, ROOT};
use crate::views::{self, ViewKind};
use crate::Shared;

/// How long the kernel may cache what a view shows: long, because every change made elsewhere
/// is invalidated explicitly.
const TTL: Duration = Duration::from_secs(3600);
/// Mount-only directories list refs and SWS that come and go: cache them briefly.
const SYNTH_TTL: Duration = Duration::from_secs(1);

/// The FUSE file system object handed to `fuser`.
pub struct JitFs {
    shared: Arc<Shared>,
}

impl JitFs {
    /// A file system over `shared`.
    pub fn new(shared: Arc<Shared>) -> JitFs {
        JitFs { shared }
    }
}

fn ttl_for(state: &State, ino: Ino) -> Duration {
    match state.nodes.get(&ino).map(|n| &n.kind) {
        Some(Kind::Synthetic(_)) | None => SYNTH_TTL,
        Some(_) if state.nodes.get(&ino).and_then(|n| n.view).is_none() => SYNTH_TTL,
        Some(_) => TTL,
    }
}

/// The attributes of `ino`, reading size and times from its backing file when it has one.
fn attr_of(state: &State, ino: Ino) -> Result<FileAttr> {
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

fn name_bytes(name: &OsStr) -> Result<&[u8]> {
    let bytes = name.as_bytes();
    if bytes.len() > 255 {
        return errno(Errno::ENAMETOOLONG);
    }
    if validate_entry_name(bytes).is_err() {
        return errno(Errno::EINVAL);
    }
    Ok(bytes)
}

/// Names written back go into patches, which carry UTF-8 paths.
fn new_name(name: &OsStr) -> Result<&[u8]> {
    let bytes = name_bytes(name)?;
    if std::str::from_utf8(bytes).is_err() {
        return errno(Errno::EILSEQ);
    }
    Ok(bytes)
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl JitFs {
    fn lookup_in(&self, state: &mut State, parent: Ino, name: &[u8]) -> Result<Option<Ino>> {
        let repo = &self.shared.repo;
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
                let listing = sws_names(&self.shared)?;
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

    fn list(&self, state: &mut State, dir: Ino) -> Result<Vec<(Vec<u8>, Ino, FileType)>> {
        let repo = &self.shared.repo;
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
            Synth::Root => ["head", "nodes", "refs", "sws"].map(String::from).to_vec(),
            Synth::Refs => ["heads", "tags"].map(String::from).to_vec(),
            Synth::RefLevel(prefix) => {
                let txn = repo.store().read()?;
                let mut names: Vec<String> = repo
                    .store()
                    .refs_with_prefix(&txn, prefix)?
                    .into_iter()
                    .filter_map(|(full, _)| {
                        full[prefix.len()..].split('/').next().map(str::to_owned)
                    })
                    .collect();
                names.dedup();
                names
            }
            Synth::SwsList => sws_names(&self.shared)?
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
            Synth::Nodes => Vec::new(),
        };
        let mut out = Vec::new();
        for name in names {
            if let Some(ino) = self.lookup_in(state, dir, name.as_bytes())? {
                out.push((name.into_bytes(), ino, FileType::Directory));
            }
        }
        Ok(out)
    }

    fn entry(&self, state: &mut State, ino: Ino) -> Result<(Duration, FileAttr)> {
        let attr = attr_of(state, ino)?;
        state.get_mut(ino)?.lookups += 1;
        Ok((ttl_for(state, ino), attr))
    }

    /// Common part of create/mknod/mkdir/symlink in a view directory.
    fn make(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        perm: u16,
    ) -> Result<(Duration, FileAttr, Ino)> {
        let name = new_name(name)?;
        let mut state = self.shared.lock();
        let view = state.writable(parent)?;
        if state
            .children(&self.shared.repo, parent)?
            .contains_key(name)
        {
            return errno(Errno::EEXIST);
        }
        state.ensure_sws(&self.shared.repo, &self.shared.owner, view)?;
        // A regular file gets its (empty) data file at once, so its record names it from the
        // start.
        let backing = match &kind {
            Kind::File(_) => Some(Arc::new(crate::backing::Backing::create(
                &self.shared.backing_dir,
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
        let (ttl, attr) = self.entry(&mut state, ino)?;
        drop(state);
        self.shared.kick();
        Ok((ttl, attr, ino))
    }

    fn open_file(
        &self,
        ino: Ino,
        flags: OpenFlags,
        reply_open: &dyn Fn(&std::fs::File) -> Option<Arc<BackingId>>,
    ) -> Result<(u64, FopenFlags, Option<Arc<BackingId>>)> {
        let shared = &self.shared;
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0 && write;
        if write && !truncate {
            shared.prepare_backing(ino, false)?;
        } else if !write && self.read_passthrough_wanted(ino)? {
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
}

/// Live SWS as listed in `sws/`: by name when it has a unique one usable as a file name,
/// else by id.
pub(crate) fn sws_names(shared: &Shared) -> Result<Vec<(String, SwsId)>> {
    let store = shared.repo.store();
    let txn = store.read()?;
    let all = sws::list(store, &txn)?;
    let mut counts = std::collections::HashMap::new();
    for (_, state) in &all {
        if let Some(name) = &state.name {
            *counts.entry(name.clone()).or_insert(0) += 1;
        }
    }
    Ok(all
        .into_iter()
        .map(|(id, state)| {
            let name = state
                .name
                .filter(|n| counts.get(n) == Some(&1))
                .filter(|n| validate_entry_name(n.as_bytes()).is_ok() && n.len() <= 255)
                .filter(|n| n.len() != 32 || n.parse::<SwsId>().is_err())
                .unwrap_or_else(|| id.to_string());
            (name, id)
        })
        .collect())
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

fn touch_dir(state: &mut State, dir: Ino, now: SystemTime) {
    if let Some(node) = state.nodes.get_mut(&dir) {
        node.attr.mtime = now;
        node.attr.ctime = now;
    }
}

impl Filesystem for JitFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.shared.set_passthrough(true);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(error) = self.shared.flush_all() {
            tracing::error!(%error, "could not write back the mount's last changes");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = (|| {
            let name = name_bytes(name)?;
            let mut state = self.shared.lock();
            match self.lookup_in(&mut state, parent.0, name)? {
                Some(ino) => self.entry(&mut state, ino),
                None => errno(Errno::ENOENT),
            }
        })();
        match result {
            Ok((ttl, attr)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut state = self.shared.lock();
        if let Some(node) = state.nodes.get_mut(&ino.0) {
            node.lookups = node.lookups.saturating_sub(nlookup);
        }
        state.collect(ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.shared.lock();
        match attr_of(&state, ino.0) {
            Ok(attr) => reply.attr(&ttl_for(&state, ino.0), &attr),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            let shared = &self.shared;
            let ino = ino.0;
            let mut state = shared.lock();
            let view = state.writable(ino)?;
            let now = SystemTime::now();
            let mut content_changed = false;
            if let Some(size) = size {
                if !matches!(state.get(ino)?.kind, Kind::File(_)) {
                    return errno(Errno::EISDIR);
                }
                if size > 0 {
                    drop(state);
                    shared.prepare_backing(ino, false)?;
                    state = shared.lock();
                }
                state.ensure_sws(&shared.repo, &shared.owner, view)?;
                let backing =
                    state.ensure_backing(&shared.repo, &shared.backing_dir, ino, size == 0)?;
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
            if let Some(atime) = atime {
                node.attr.atime = time_of(atime);
            }
            if let Some(mtime) = mtime {
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
            node.attr.ctime = ctime.unwrap_or(now);
            if mode.is_some()
                || uid.is_some()
                || gid.is_some()
                || atime.is_some()
                || mtime.is_some()
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
        })();
        match result {
            Ok((ttl, attr)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let state = self.shared.lock();
        match state.get(ino.0).map(|n| &n.kind) {
            Ok(Kind::Symlink { target }) => reply.data(target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Ok(Kind::File(FileBody::default())),
            libc::S_IFIFO => Ok(Kind::Special {
                kind: FileType::NamedPipe,
                rdev: 0,
            }),
            libc::S_IFSOCK => Ok(Kind::Special {
                kind: FileType::Socket,
                rdev: 0,
            }),
            libc::S_IFCHR => Ok(Kind::Special {
                kind: FileType::CharDevice,
                rdev,
            }),
            libc::S_IFBLK => Ok(Kind::Special {
                kind: FileType::BlockDevice,
                rdev,
            }),
            _ => Err(Error::Errno(Errno::EINVAL)),
        };
        match kind.and_then(|kind| self.make(req, parent.0, name, kind, perm)) {
            Ok((ttl, attr, _)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let result = (|| {
            let is_sws_list = matches!(
                self.shared.lock().get(parent.0)?.kind,
                Kind::Synthetic(Synth::SwsList)
            );
            if is_sws_list {
                return self.create_sws(parent.0, name);
            }
            self.make(
                req,
                parent.0,
                name,
                Kind::Dir {
                    tree: None,
                    children: Some(Default::default()),
                },
                perm,
            )
            .map(|(ttl, attr, _)| (ttl, attr))
        })();
        match result {
            Ok((ttl, attr)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = (|| {
            let name = name_bytes(name)?;
            let mut state = self.shared.lock();
            state.writable(parent.0)?;
            let Some(child) = state
                .children(&self.shared.repo, parent.0)?
                .get(name)
                .copied()
            else {
                return errno(Errno::ENOENT);
            };
            if state.get(child)?.is_dir() {
                return errno(Errno::EISDIR);
            }
            let now = SystemTime::now();
            state.get_mut(child)?.attr.ctime = now;
            let path = join(&state.path_of(parent.0), name);
            let view = state.view_of(parent.0)?;
            state.detach(parent.0, name);
            state.persist_removed(view, &path, false)?;
            // A file with other names changed (its link count): their records say so.
            state.persist(child)?;
            touch_dir(&mut state, parent.0, now);
            Ok(())
        })();
        self.done(result, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = (|| {
            let name = name_bytes(name)?;
            let mut state = self.shared.lock();
            if matches!(state.get(parent.0)?.kind, Kind::Synthetic(Synth::SwsList)) {
                drop(state);
                return self.discard_sws(parent.0, name);
            }
            state.writable(parent.0)?;
            let Some(child) = state
                .children(&self.shared.repo, parent.0)?
                .get(name)
                .copied()
            else {
                return errno(Errno::ENOENT);
            };
            if !state.get(child)?.is_dir() {
                return errno(Errno::ENOTDIR);
            }
            if !state.children(&self.shared.repo, child)?.is_empty() {
                return errno(Errno::ENOTEMPTY);
            }
            let path = join(&state.path_of(parent.0), name);
            let view = state.view_of(parent.0)?;
            state.detach(parent.0, name);
            state.persist_removed(view, &path, true)?;
            touch_dir(&mut state, parent.0, SystemTime::now());
            Ok(())
        })();
        self.done(result, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes().to_vec();
        if std::str::from_utf8(&target).is_err() {
            reply.error(Errno::EILSEQ);
            return;
        }
        match self.make(req, parent.0, link_name, Kind::Symlink { target }, 0o777) {
            Ok((ttl, attr, _)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.rename_in(parent.0, name, newparent.0, newname, flags);
        self.done(result, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            let newname = new_name(newname)?;
            let repo = &self.shared.repo;
            let mut state = self.shared.lock();
            let view = state.writable(newparent.0)?;
            if state.view_of(ino.0)? != view {
                return errno(Errno::EXDEV);
            }
            if state.get(ino.0)?.is_dir() {
                return errno(Errno::EPERM);
            }
            if state.children(repo, newparent.0)?.contains_key(newname) {
                return errno(Errno::EEXIST);
            }
            state
                .children_mut(repo, newparent.0)?
                .insert(newname.to_vec(), ino.0);
            let now = SystemTime::now();
            let node = state.get_mut(ino.0)?;
            node.nlink += 1;
            node.attr.ctime = now;
            state
                .extra_parents
                .entry(ino.0)
                .or_default()
                .push(newparent.0);
            state.mark_dirty(ino.0);
            state.mark_dirty(newparent.0);
            state.persist(ino.0)?;
            touch_dir(&mut state, newparent.0, now);
            self.entry(&mut state, ino.0)
        })();
        match result {
            Ok((ttl, attr)) => {
                self.shared.kick();
                reply.entry(&ttl, &attr, Generation(0))
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let passthrough_on = self.shared.passthrough();
        let opener = |file: &std::fs::File| -> Option<Arc<BackingId>> {
            if !passthrough_on {
                return None;
            }
            match reply.open_backing(file) {
                Ok(id) => Some(Arc::new(id)),
                Err(error) => {
                    tracing::debug!(%error, "passthrough refused; serving this file through the daemon");
                    None
                }
            }
        };
        match self.open_file(ino.0, flags, &opener) {
            Ok((fh, _, Some(id))) => {
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
            }
            Ok((fh, fopen, None)) => reply.opened(FileHandle(fh), fopen),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_at(ino.0, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = (|| {
            let backing = {
                let mut state = self.shared.lock();
                let backing = match &state.get(ino.0)?.kind {
                    Kind::File(FileBody {
                        backing: Some(b), ..
                    }) => b.clone(),
                    _ => return errno::<u32>(Errno::EBADF),
                };
                state.mark_dirty(ino.0);
                backing
            };
            backing.write(offset, data)?;
            let mut state = self.shared.lock();
            let now = SystemTime::now();
            let node = state.get_mut(ino.0)?;
            node.attr.mtime = now;
            node.attr.ctime = now;
            // Writing drops setuid/setgid, as on every local file system.
            node.attr.perm &= !0o6000;
            if let Kind::File(body) = &mut node.kind {
                body.size = body.size.max(offset + data.len() as u64);
            }
            Ok(data.len() as u32)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.shared.lock();
        let wrote = if let Some(Handle::File {
            writer,
            passthrough,
            direct,
            ..
        }) = state.handles.remove(&fh.0)
        {
            if let Some(node) = state.nodes.get_mut(&ino.0) {
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
            state.mark_dirty(ino.0);
            fold_backing_mtime(&mut state, ino.0);
        }
        state.collect(ino.0);
        drop(state);
        if wrote {
            self.shared.kick();
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.sync_view_of(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = (|| -> Result<(u64, FopenFlags)> {
            let mut state = self.shared.lock();
            // View directories change only through this mount or through a reconcile that
            // invalidates them, so the kernel may keep their listings. The listing itself is
            // taken at the first readdir: a cached directory is opened without being read.
            let flags = match state.get(ino.0)?.kind {
                Kind::Dir { .. } => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                Kind::Synthetic(_) => FopenFlags::empty(),
                _ => return errno(Errno::ENOTDIR),
            };
            Ok((state.open_handle(Handle::Dir { entries: None }), flags))
        })();
        match result {
            Ok((fh, flags)) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.shared.lock();
        let taken = match state.handles.get(&fh.0) {
            Some(Handle::Dir { entries: Some(_) }) => Ok(()),
            Some(Handle::Dir { entries: None }) => self.snapshot_listing(&mut state, ino.0, fh.0),
            _ => Err(Error::Errno(Errno::EBADF)),
        };
        if let Err(e) = taken {
            reply.error(e.errno());
            return;
        }
        let Some(Handle::Dir {
            entries: Some(entries),
        }) = state.handles.get(&fh.0)
        else {
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (name, ino, kind)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(*ino),
                (i + 1) as u64,
                *kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.sync_view_of(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(self.shared.backing_dir.as_path()) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let passthrough_on = self.shared.passthrough();
        let result = (|| -> Result<_> {
            let (ttl, attr, ino) =
                self.make(req, parent.0, name, Kind::File(FileBody::default()), perm)?;
            let opener = |file: &std::fs::File| -> Option<Arc<BackingId>> {
                if !passthrough_on {
                    return None;
                }
                reply.open_backing(file).ok().map(Arc::new)
            };
            // The kernel checked the create against the directory; the new file is ours to
            // open with whatever access was asked, even if its mode forbids it.
            let (fh, fopen, id) =
                self.open_file(ino, OpenFlags(flags & !libc::O_TRUNC), &opener)?;
            Ok((ttl, attr, fh, fopen, id))
        })();
        match result {
            Ok((ttl, attr, fh, _, Some(id))) => reply.created_passthrough(
                &ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            Ok((ttl, attr, fh, fopen, None)) => {
                reply.created(&ttl, &attr, Generation(0), FileHandle(fh), fopen)
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let backing = {
                let mut state = self.shared.lock();
                let backing = match &state.get(ino.0)?.kind {
                    Kind::File(FileBody {
                        backing: Some(b), ..
                    }) => b.clone(),
                    _ => return errno(Errno::EBADF),
                };
                state.mark_dirty(ino.0);
                let now = SystemTime::now();
                let node = state.get_mut(ino.0)?;
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
        })();
        self.done(result, reply);
    }
}

/// Clean files at least this large are copied into a backing file on open, for passthrough.
const READ_PASSTHROUGH_MIN: u64 = 1 << 20;

impl JitFs {
    /// Answers a request that changed the tree: wakes the write-back on success.
    fn done(&self, result: Result<()>, reply: ReplyEmpty) {
        match result {
            Ok(()) => {
                self.shared.kick();
                reply.ok()
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    /// Takes a directory's listing for handle `fh`, so entries added or removed while it is
    /// read neither repeat nor vanish.
    fn snapshot_listing(&self, state: &mut State, dir: Ino, fh: u64) -> Result<()> {
        let mut entries = vec![
            (b".".to_vec(), dir, FileType::Directory),
            (b"..".to_vec(), state.get(dir)?.parent, FileType::Directory),
        ];
        entries.extend(self.list(state, dir)?);
        if let Some(Handle::Dir { entries: slot }) = state.handles.get_mut(&fh) {
            *slot = Some(entries);
        }
        Ok(())
    }

    fn read_passthrough_wanted(&self, ino: Ino) -> Result<bool> {
        if !self.shared.passthrough() {
            return Ok(false);
        }
        let state = self.shared.lock();
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

    fn read_at(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>> {
        let (backing, layout, sws) = {
            let mut state = self.shared.lock();
            let view = state.view_of(ino)?;
            let sws = state.views[view].sws;
            let backing = match &state.get(ino)?.kind {
                Kind::File(body) => body.backing.clone(),
                _ => return errno(Errno::EISDIR),
            };
            let layout = match backing {
                Some(_) => None,
                None => state.layout(&self.shared.repo, ino)?,
            };
            (backing, layout, sws)
        };
        if let Some(backing) = backing {
            return backing.read(offset, size);
        }
        let Some(layout) = layout else {
            return Ok(Vec::new());
        };
        views::with_source(self.shared.repo.store(), sws, |src| {
            Ok(layout.read(src, offset, size)?)
        })
    }

    fn sync_view_of(&self, ino: Ino) -> Result<()> {
        let view = {
            let state = self.shared.lock();
            match state.get(ino)?.view {
                Some(view) if state.views[view].kind.writable() => view,
                _ => return Ok(()),
            }
        };
        self.shared.flush_view(view)
    }

    fn create_sws(&self, parent: Ino, name: &OsStr) -> Result<(Duration, FileAttr)> {
        let text = std::str::from_utf8(new_name(name)?)
            .map_err(|_| Error::Errno(Errno::EILSEQ))?
            .to_owned();
        if sws_names(&self.shared)?.iter().any(|(n, _)| *n == text) {
            return errno(Errno::EEXIST);
        }
        let repo = &self.shared.repo;
        let branch = repo.head()?;
        let (id, _) = crate::guard::as_mount(|| {
            sws::create(repo.store(), &branch, None, &self.shared.owner, Some(&text))
        })?;
        let mut state = self.shared.lock();
        let ino = state
            .view_root(repo, ViewKind::Sws(id), parent, text.as_bytes())?
            .ok_or(Error::Errno(Errno::EIO))?;
        self.entry(&mut state, ino)
    }

    fn discard_sws(&self, parent: Ino, name: &[u8]) -> Result<()> {
        let Some((_, id)) = sws_names(&self.shared)?
            .into_iter()
            .find(|(n, _)| n.as_bytes() == name)
        else {
            return errno(Errno::ENOENT);
        };
        let _ = parent;
        sws::discard(self.shared.repo.store(), id)?;
        // What the mount kept for it goes with it (its data files at the next start).
        let overlay = self.shared.lock().overlay.clone();
        overlay.batch(|batch| batch.remove_view(&ViewKind::Sws(id).key()).map(drop))?;
        Ok(())
    }

    fn rename_in(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        let name = name_bytes(name)?;
        let newname = new_name(newname)?;
        let repo = &self.shared.repo;
        let mut state = self.shared.lock();
        let view = state.writable(parent)?;
        if state.writable(newparent)? != view {
            return errno(Errno::EXDEV);
        }
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return errno(Errno::EINVAL);
        }
        let Some(src) = state.children(repo, parent)?.get(name).copied() else {
            return errno(Errno::ENOENT);
        };
        let dst = state.children(repo, newparent)?.get(newname).copied();
        if dst == Some(src) {
            return Ok(());
        }
        let from = join(&state.path_of(parent), name);
        let to = join(&state.path_of(newparent), newname);
        // A directory cannot move below itself.
        let mut at = newparent;
        loop {
            if at == src {
                return errno(Errno::EINVAL);
            }
            let node = state.get(at)?;
            if node.view.is_none() || state.views[view].root == at {
                break;
            }
            at = node.parent;
        }
        let now = SystemTime::now();
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let Some(dst) = dst else {
                return errno(Errno::ENOENT);
            };
            state.children_mut(repo, parent)?.insert(name.to_vec(), dst);
            state
                .children_mut(repo, newparent)?
                .insert(newname.to_vec(), src);
            for (ino, p, n) in [(src, newparent, newname), (dst, parent, name)] {
                let node = state.get_mut(ino)?;
                node.parent = p;
                node.name = n.to_vec();
                node.attr.ctime = now;
                node.tracked = false;
            }
            state.mark_dirty(parent);
            state.mark_dirty(newparent);
            state.persist_exchange(view, &from, &to, src, dst)?;
            // Both are new entries at their paths: see the rename below.
            state.mark_dirty(src);
            state.mark_dirty(dst);
        } else {
            let src_dir = state.get(src)?.is_dir();
            let mut replaced_dir = false;
            if let Some(dst) = dst {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return errno(Errno::EEXIST);
                }
                let dst_dir = state.get(dst)?.is_dir();
                replaced_dir = dst_dir;
                match (src_dir, dst_dir) {
                    (true, false) => return errno(Errno::ENOTDIR),
                    (false, true) => return errno(Errno::EISDIR),
                    (true, true) if !state.children(repo, dst)?.is_empty() => {
                        return errno(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
                state.get_mut(dst)?.attr.ctime = now;
                state.detach(newparent, newname);
            }
            state.children_mut(repo, parent)?.remove(name);
            state
                .children_mut(repo, newparent)?
                .insert(newname.to_vec(), src);
            let primary = state.get(src)?.parent == parent && state.get(src)?.name == name;
            if primary {
                let node = state.get_mut(src)?;
                node.parent = newparent;
                node.name = newname.to_vec();
            } else if let Some(extra) = state.extra_parents.get_mut(&src) {
                if let Some(slot) = extra.iter_mut().find(|p| **p == parent) {
                    *slot = newparent;
                }
            }
            let node = state.get_mut(src)?;
            node.attr.ctime = now;
            // At its new path it is a new entry of the tree (and may be ignored there).
            node.tracked = false;
            state.mark_dirty(parent);
            state.mark_dirty(newparent);
            state.persist_rename(view, &from, &to, src, replaced_dir)?;
            // The moved entry itself is a change until the SWS has it at its new path. Marked
            // after its records are written (they describe it by its tree while it is clean),
            // and with a fresh generation: a write-back that took its snapshot before the
            // rename must not find it clean when it finishes, or settling would drop the
            // records of its new path and a `kill -9` before the next write-back would lose it.
            state.mark_dirty(src);
        }
        touch_dir(&mut state, parent, now);
        touch_dir(&mut state, newparent, now);
        Ok(())
    }
}
