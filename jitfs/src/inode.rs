//! What the mount keeps per inode: where it hangs, what it is, and its POSIX attributes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo};
use jit_kernel::content::BlobLayout;
use jit_kernel::NodeId;

use crate::backing::Backing;

/// An inode number as the kernel sees it.
pub type Ino = u64;

/// Index of a view (`head/`, one SWS, one ref, one snapshot) in the mount's table.
pub type ViewId = usize;

/// The directories that exist only in the mount, not in any tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synth {
    /// The mount root: `head`, `sws`, `refs`, `nodes`, `federation`.
    Root,
    /// `refs/`: `heads`, `tags`.
    Refs,
    /// A level of ref names by stored prefix: `heads/` (shown as `refs/heads/`), or
    /// `heads/feature/` for branch `feature/x`.
    RefLevel(String),
    /// `sws/`: one directory per live SWS.
    SwsList,
    /// `nodes/`: any snapshot by id, looked up, never listed.
    Nodes,
    /// `federation/`: one directory per universe something was imported from.
    Federation,
    /// `federation/<universe>/`: one directory per import from it.
    FederationUniverse(uuid::Uuid),
}

/// A regular file's content: a blob in the store, or a backing file once written.
#[derive(Debug, Default)]
pub struct FileBody {
    /// The stored content it mirrors (None only for a file created and not yet written back).
    pub blob: Option<NodeId>,
    /// Decoded chunk list of `blob`, kept while the inode lives so reads decode it once.
    pub layout: Option<Arc<BlobLayout>>,
    /// Content size (of the backing file when there is one).
    pub size: u64,
    /// Copy-on-write content once the file was opened for writing or truncated.
    pub backing: Option<Arc<Backing>>,
    /// Open handles that may write (their writes bypass the daemon under passthrough).
    pub writers: u32,
    /// Open handles served through the kernel's page cache for this inode.
    pub cached_opens: u32,
    /// Open handles passed through to the backing file.
    pub passthrough_opens: u32,
    /// The kernel's handle on the backing file, shared by every passthrough open of this inode
    /// (the kernel refuses two different backing files for one inode).
    pub backing_id: Option<std::sync::Weak<fuser::BackingId>>,
    /// The kernel's page cache for this inode still matches the content (no passthrough
    /// write happened since it was filled).
    pub cache_valid: bool,
}

/// What an inode is.
#[derive(Debug)]
pub enum Kind {
    /// A mount-only directory.
    Synthetic(Synth),
    /// A directory of a view.
    Dir {
        /// The tree it shows, when unchanged since loading or the last write-back.
        tree: Option<NodeId>,
        /// Its entries once loaded (name → inode).
        children: Option<BTreeMap<Vec<u8>, Ino>>,
    },
    /// A regular file.
    File(FileBody),
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: Vec<u8>,
    },
    /// A FIFO, socket or device node: kept by the mount only, never written to the SWS.
    Special {
        /// Which kind.
        kind: FileType,
        /// Device number for device nodes.
        rdev: u32,
    },
}

/// POSIX attributes the mount keeps (trees carry only the executable bit).
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// Permission bits (including setuid/setgid/sticky).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: SystemTime,
    /// Last content change.
    pub mtime: SystemTime,
    /// Last metadata change.
    pub ctime: SystemTime,
}

/// A generation value never handed out before in this process.
pub fn fresh_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One inode.
#[derive(Debug)]
pub struct Inode {
    /// Parent directory (itself for the root).
    pub parent: Ino,
    /// Name in the parent.
    pub name: Vec<u8>,
    /// The view it belongs to (None for mount-only directories).
    pub view: Option<ViewId>,
    /// What it is.
    pub kind: Kind,
    /// Its attributes.
    pub attr: Attr,
    /// Local changes not yet written back (files: content; directories: entries below).
    pub dirty: bool,
    /// A value no other inode of this mount ever had, renewed by every local change, so a
    /// write-back can tell whether it raced one. Unique across inodes (not a per-inode
    /// counter): inode numbers are reused once the kernel forgets one, and a write-back result
    /// meant for the old inode must never match the new one (that emptied renamed-over files).
    pub generation: u64,
    /// Kernel lookups not yet forgotten.
    pub lookups: u64,
    /// Open handles.
    pub opens: u32,
    /// It mirrors an entry of its view's SWS tree (loaded from it, or written back into it).
    /// Only untracked entries can be ignored: a tracked file stays tracked, as in git.
    pub tracked: bool,
    /// Ignored (`.gitignore`, `.jitignore`, `.git`): it lives in the overlay only and is never
    /// written back; everything below an ignored directory is too.
    pub ignored: bool,
    /// Its attributes were set explicitly (chmod, chown, utimens): the overlay keeps them.
    pub attr_set: bool,
    /// Names it has (0 once unlinked or replaced; the inode is kept while open or looked up).
    /// Files may have several: hard links live in the mount, and write-back stores each name
    /// with the same content.
    pub nlink: u32,
}

impl Inode {
    /// A new inode with one name, not yet looked up, opened or changed.
    pub fn new(parent: Ino, name: &[u8], view: Option<ViewId>, kind: Kind, attr: Attr) -> Inode {
        Inode {
            generation: fresh_generation(),
            parent,
            name: name.to_vec(),
            view,
            kind,
            attr,
            dirty: false,
            tracked: false,
            ignored: false,
            attr_set: false,
            lookups: 0,
            opens: 0,
            nlink: 1,
        }
    }

    /// The FUSE file type.
    pub fn file_type(&self) -> FileType {
        match &self.kind {
            Kind::Synthetic(_) | Kind::Dir { .. } => FileType::Directory,
            Kind::File(_) => FileType::RegularFile,
            Kind::Symlink { .. } => FileType::Symlink,
            Kind::Special { kind, .. } => *kind,
        }
    }

    /// True for directories of either sort.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    /// The attributes the kernel is given; `subdirs` counts child directories for `nlink`.
    pub fn file_attr(&self, ino: Ino, subdirs: u32) -> FileAttr {
        let (size, rdev, nlink) = match &self.kind {
            Kind::Synthetic(_) | Kind::Dir { .. } => (4096, 0, 2 + subdirs),
            Kind::File(body) => (body.size, 0, self.nlink),
            Kind::Symlink { target } => (target.len() as u64, 0, self.nlink),
            Kind::Special { rdev, .. } => (0, *rdev, self.nlink),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.attr.atime,
            mtime: self.attr.mtime,
            ctime: self.attr.ctime,
            crtime: self.attr.ctime,
            kind: self.file_type(),
            perm: self.attr.perm,
            nlink,
            uid: self.attr.uid,
            gid: self.attr.gid,
            rdev,
            blksize: 4096,
            flags: 0,
        }
    }
}
