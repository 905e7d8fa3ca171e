//! The FUSE adapter: `fuser` calls [`JitFs`], which decodes each request, hands it to the
//! module that does that job, and turns the result into the reply. The work itself is done in
//! `namespace` (lookup, listing, making and removing entries), `file` (open, read, write,
//! release, fsync, fallocate, setattr), `rename`, and `sws_dir` (the `sws/` directory and the
//! SWS lifecycle); `entry` holds what every reply about an entry carries. Each takes the state
//! lock only to read or change inodes, and does content I/O (store reads, backing files) after
//! releasing it.

mod entry;
mod file;
mod namespace;
mod rename;
pub(crate) mod sws_dir;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::error::Result;
use crate::Shared;

/// The FUSE file system object handed to `fuser`.
pub struct JitFs {
    shared: Arc<Shared>,
}

impl JitFs {
    /// A file system over `shared`.
    pub fn new(shared: Arc<Shared>) -> JitFs {
        JitFs { shared }
    }

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
}

/// The permission bits a new entry gets.
fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

/// Answers a request that changed nothing of the tree.
fn reply_empty(result: Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e.errno()),
    }
}

/// Answers a request for bytes (file content, a symlink's target).
fn reply_data(result: Result<Vec<u8>>, reply: ReplyData) {
    match result {
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e.errno()),
    }
}

/// Answers a request that made or looked up an entry.
fn reply_entry(result: Result<(std::time::Duration, fuser::FileAttr)>, reply: ReplyEntry) {
    match result {
        Ok((ttl, attr)) => reply.entry(&ttl, &attr, Generation(0)),
        Err(e) => reply.error(e.errno()),
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
        reply_entry(namespace::lookup(&self.shared, parent.0, name), reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        namespace::forget(&self.shared, ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match entry::getattr(&self.shared, ino.0) {
            Ok((ttl, attr)) => reply.attr(&ttl, &attr),
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
        let set = file::SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            ctime,
        };
        match file::setattr(&self.shared, ino.0, set) {
            Ok((ttl, attr)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply_data(namespace::readlink(&self.shared, ino.0), reply);
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
        let perm = perm(mode, umask);
        let result = namespace::mknod(&self.shared, req, parent.0, name, mode, perm, rdev);
        reply_entry(result, reply);
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
        let perm = perm(mode, umask);
        reply_entry(
            namespace::mkdir(&self.shared, req, parent.0, name, perm),
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.done(namespace::unlink(&self.shared, parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.done(namespace::rmdir(&self.shared, parent.0, name), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let result = namespace::symlink(&self.shared, req, parent.0, link_name, target);
        reply_entry(result, reply);
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
        let result = rename::rename(&self.shared, parent.0, name, newparent.0, newname, flags);
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
        reply_entry(
            namespace::link(&self.shared, ino.0, newparent.0, newname),
            reply,
        );
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
        match file::open_file(&self.shared, ino.0, flags, &opener) {
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
        reply_data(
            file::read(&self.shared, ino.0, offset, size as usize),
            reply,
        );
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
        match file::write(&self.shared, ino.0, offset, data) {
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
        file::release(&self.shared, ino.0, fh.0);
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
        reply_empty(file::sync_view_of(&self.shared, ino.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match namespace::opendir(&self.shared, ino.0) {
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
        let add = |ino, next, kind, name: &OsStr| reply.add(INodeNo(ino), next, kind, name);
        match namespace::readdir(&self.shared, ino.0, fh.0, offset, add) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        namespace::releasedir(&self.shared, fh.0);
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
        reply_empty(file::sync_view_of(&self.shared, ino.0), reply);
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
        let perm = perm(mode, umask);
        let passthrough_on = self.shared.passthrough();
        let opener = |file: &std::fs::File| -> Option<Arc<BackingId>> {
            if !passthrough_on {
                return None;
            }
            reply.open_backing(file).ok().map(Arc::new)
        };
        let result = file::create(&self.shared, req, parent.0, name, perm, flags, &opener);
        match result {
            Ok((ttl, attr, (fh, _, Some(id)))) => reply.created_passthrough(
                &ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            Ok((ttl, attr, (fh, fopen, None))) => {
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
        let result = file::fallocate(&self.shared, ino.0, offset, length, mode);
        self.done(result, reply);
    }
}
