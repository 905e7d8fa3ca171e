//! The mount's in-memory tree: every inode the kernel knows, the views they belong to, and
//! the operations on them that all FUSE requests share (loading a directory from its tree,
//! naming new inodes, marking local changes for write-back). One mutex guards it; nothing
//! slow (content I/O, hashing, fsync) happens while it is held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{Errno, FileType};
use jit_kernel::content::{self, BlobLayout};
use jit_kernel::node::EntryKind;
use jit_kernel::sws::{self, SwsId};
use jit_kernel::{tree, NodeId, Repository};

use crate::backing::Backing;
use crate::error::{errno, Result};
use crate::inode::{Attr, FileBody, Ino, Inode, Kind, Synth, ViewId};
use crate::overlay::Overlay;
use crate::views::{self, View, ViewKind};

/// The mount root's inode number (fixed by FUSE).
pub const ROOT: Ino = 1;

/// An open file or directory.
#[derive(Debug)]
pub enum Handle {
    /// An open file.
    File {
        /// Its inode.
        ino: Ino,
        /// Whether this handle may write.
        writer: bool,
        /// The kernel's reference to the backing file, for passthrough handles.
        passthrough: Option<Arc<fuser::BackingId>>,
        /// Served uncached (passthrough handles were open on the inode when it opened).
        direct: bool,
    },
    /// An open directory: its entries as of the first `readdir`, so listing while deleting is
    /// stable.
    Dir {
        /// Name, inode, type; None until read.
        entries: Option<Vec<(Vec<u8>, Ino, FileType)>>,
    },
}

/// Everything the mount holds in memory.
pub struct State {
    /// Every live inode.
    pub nodes: HashMap<Ino, Inode>,
    /// Every view ever opened, by index.
    pub views: Vec<View>,
    /// View key → index.
    view_index: HashMap<String, ViewId>,
    /// Open handles.
    pub handles: HashMap<u64, Handle>,
    /// Directories holding a hard link to an inode besides its `parent`: a change to the
    /// file must mark each of them for write-back.
    pub extra_parents: HashMap<Ino, Vec<Ino>>,
    next_handle: u64,
    /// Owner given to entries.
    pub uid: u32,
    /// Group given to entries.
    pub gid: u32,
    /// When the mount started (mtime of mount-only directories).
    pub epoch: SystemTime,
    /// What the mount holds beyond its SWS, on disk.
    pub overlay: Arc<Overlay>,
    /// Hard-link groups of the overlay's records, per view: the inode each group loaded as.
    pub links: HashMap<(ViewId, u64), Ino>,
}

/// Attributes for a new inode.
pub fn attr(perm: u16, uid: u32, gid: u32, time: SystemTime) -> Attr {
    Attr {
        perm,
        uid,
        gid,
        atime: time,
        mtime: time,
        ctime: time,
    }
}

fn ino_for(key: &str, path: &[u8]) -> Ino {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(&[0]);
    hasher.update(path);
    let bytes = hasher.finalize();
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes.as_bytes()[..8]);
    // Keep clear of the small numbers FUSE and tools treat specially.
    (u64::from_le_bytes(raw) >> 1) | 0x100
}

impl State {
    /// An empty mount owned by `uid`:`gid`, keeping what it holds beyond its SWS in `overlay`.
    pub fn new(uid: u32, gid: u32, overlay: Arc<Overlay>) -> State {
        let epoch = SystemTime::now();
        let mut state = State {
            overlay,
            links: HashMap::new(),
            nodes: HashMap::new(),
            views: Vec::new(),
            view_index: HashMap::new(),
            handles: HashMap::new(),
            extra_parents: HashMap::new(),
            next_handle: 1,
            uid,
            gid,
            epoch,
        };
        state.nodes.insert(
            ROOT,
            Inode {
                lookups: 1,
                ..Inode::new(
                    ROOT,
                    b"",
                    None,
                    Kind::Synthetic(Synth::Root),
                    attr(0o755, uid, gid, epoch),
                )
            },
        );
        state
    }

    /// A free inode number for `path` in the view keyed `key`: stable across restarts for the
    /// same path, probed past collisions.
    pub(crate) fn free_ino(&self, key: &str, path: &[u8]) -> Ino {
        let mut ino = ino_for(key, path);
        while self.nodes.contains_key(&ino) || ino == ROOT {
            ino = ino.wrapping_add(1) | 0x100;
        }
        ino
    }

    /// The inode, or ENOENT.
    pub fn get(&self, ino: Ino) -> Result<&Inode> {
        match self.nodes.get(&ino) {
            Some(node) => Ok(node),
            None => errno(Errno::ENOENT),
        }
    }

    /// The inode, mutably, or ENOENT.
    pub fn get_mut(&mut self, ino: Ino) -> Result<&mut Inode> {
        match self.nodes.get_mut(&ino) {
            Some(node) => Ok(node),
            None => errno(Errno::ENOENT),
        }
    }

    /// Registers a new handle.
    pub fn open_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, handle);
        fh
    }

    /// The view an inode belongs to, or EROFS/ENOENT rules for mount-only directories.
    pub fn view_of(&self, ino: Ino) -> Result<ViewId> {
        match self.get(ino)?.view {
            Some(view) => Ok(view),
            None => errno(Errno::EACCES),
        }
    }

    /// Fails with EROFS unless `ino` is in a writable view.
    pub fn writable(&self, ino: Ino) -> Result<ViewId> {
        let view = self
            .get(ino)?
            .view
            .ok_or(crate::error::Error::Errno(Errno::EROFS))?;
        if !self.views[view].kind.writable() {
            return errno(Errno::EROFS);
        }
        if !self.views[view].live {
            return errno(Errno::ENOENT);
        }
        Ok(view)
    }

    /// The path of `ino` inside its view (empty for the view root).
    pub fn path_of(&self, ino: Ino) -> Vec<u8> {
        let mut names = Vec::new();
        let mut at = ino;
        while let Some(node) = self.nodes.get(&at) {
            let Some(view) = node.view else { break };
            if self.views[view].root == at {
                break;
            }
            names.push(node.name.clone());
            at = node.parent;
        }
        names.reverse();
        names.join(&b'/')
    }

    /// The root of the view `kind`, opening the view on first use; None if it does not exist.
    pub fn view_root(
        &mut self,
        repo: &Repository,
        kind: ViewKind,
        parent: Ino,
        name: &[u8],
    ) -> Result<Option<Ino>> {
        let key = kind.key();
        if let Some(&id) = self.view_index.get(&key) {
            let view = &self.views[id];
            if view.live {
                return Ok(Some(view.root));
            }
        }
        let txn = repo.store().read()?;
        let Some(target) = views::resolve(repo, &txn, &kind)? else {
            return Ok(None);
        };
        drop(txn);
        let epoch = self.epoch;
        let writable = kind.writable();
        let id = self.views.len();
        let root = self.free_ino(&key, b"");
        self.nodes.insert(
            root,
            Inode::new(
                parent,
                name,
                Some(id),
                Kind::Dir {
                    tree: Some(target.tree),
                    children: None,
                },
                attr(
                    if writable { 0o755 } else { 0o555 },
                    self.uid,
                    self.gid,
                    epoch,
                ),
            ),
        );
        self.views.push(View {
            kind,
            root,
            sws: target.sws,
            known: target.tree,
            dirty: false,
            epoch,
            live: true,
            writing_back: false,
        });
        self.view_index.insert(key, id);
        Ok(Some(root))
    }

    /// The inode of a mount-only directory, created on first use.
    pub fn synthetic(&mut self, parent: Ino, name: &[u8], synth: Synth) -> Ino {
        let key = format!("synthetic:{synth:?}");
        let ino = ino_for(&key, b"");
        if let Some(node) = self.nodes.get(&ino) {
            if matches!(&node.kind, Kind::Synthetic(s) if *s == synth) {
                return ino;
            }
        }
        let ino = self.free_ino(&key, b"");
        let epoch = self.epoch;
        self.nodes.insert(
            ino,
            Inode::new(
                parent,
                name,
                None,
                Kind::Synthetic(synth),
                attr(0o755, self.uid, self.gid, epoch),
            ),
        );
        ino
    }

    /// Views currently open and live.
    pub fn live_views(&self) -> Vec<ViewId> {
        (0..self.views.len())
            .filter(|&v| self.views[v].live)
            .collect()
    }

    /// Live views no write-back is in the middle of: those a refresh may reconcile.
    pub fn refreshable_views(&self) -> Vec<ViewId> {
        (0..self.views.len())
            .filter(|&v| self.views[v].live && !self.views[v].writing_back)
            .collect()
    }

    /// Makes sure a view directory's entries are in memory: its tree's entries, then the
    /// overlay's records for it (changes not written back, ignored entries, attributes).
    pub fn ensure_loaded(&mut self, repo: &Repository, dir: Ino) -> Result<()> {
        let node = self.get(dir)?;
        let (tree, view) = match (&node.kind, node.view) {
            (
                Kind::Dir {
                    children: None,
                    tree,
                },
                Some(view),
            ) => (*tree, view),
            _ => return Ok(()),
        };
        let reads = self.views[view].reads();
        let entries = match tree {
            Some(tree) => views::with_source(repo.store(), reads, |src| {
                let mut out = Vec::new();
                for entry in tree::load(src, &tree)?.entries {
                    let loaded = match entry.kind {
                        EntryKind::Directory => Loaded::Dir(entry.id),
                        EntryKind::File | EntryKind::Executable => Loaded::File {
                            blob: entry.id,
                            size: content::blob_size(src, &entry.id)?,
                            executable: entry.kind == EntryKind::Executable,
                        },
                        EntryKind::Symlink => Loaded::Symlink(content::read_blob(src, &entry.id)?),
                    };
                    out.push((entry.name, loaded));
                }
                Ok(out)
            })?,
            None => Vec::new(),
        };
        let mut children = BTreeMap::new();
        let base = self.path_of(dir);
        for (name, loaded) in entries {
            let ino = self.add_loaded(view, dir, &base, &name, loaded);
            children.insert(name, ino);
        }
        if let Kind::Dir { children: slot, .. } = &mut self.get_mut(dir)?.kind {
            *slot = Some(children);
        }
        if self.views[view].kind.writable() {
            self.merge_records(repo, view, dir, &base)?;
        }
        Ok(())
    }

    /// Creates the inode for one tree entry under `parent` (whose view path is `base`).
    pub fn add_loaded(
        &mut self,
        view: ViewId,
        parent: Ino,
        base: &[u8],
        name: &[u8],
        loaded: Loaded,
    ) -> Ino {
        let path = if base.is_empty() {
            name.to_vec()
        } else {
            [base, b"/", name].concat()
        };
        let key = self.views[view].kind.key();
        let ino = self.free_ino(&key, &path);
        let writable = self.views[view].kind.writable();
        let ro = |perm: u16| if writable { perm } else { perm & 0o555 };
        let (kind, perm) = match loaded {
            Loaded::Dir(tree) => (
                Kind::Dir {
                    tree: Some(tree),
                    children: None,
                },
                ro(0o755),
            ),
            Loaded::File {
                blob,
                size,
                executable,
            } => (
                Kind::File(FileBody {
                    blob: Some(blob),
                    size,
                    ..FileBody::default()
                }),
                ro(if executable { 0o755 } else { 0o644 }),
            ),
            Loaded::Symlink(target) => (Kind::Symlink { target }, 0o777),
        };
        let epoch = self.views[view].epoch;
        self.nodes.insert(
            ino,
            Inode {
                tracked: true,
                ..Inode::new(
                    parent,
                    name,
                    Some(view),
                    kind,
                    attr(perm, self.uid, self.gid, epoch),
                )
            },
        );
        ino
    }

    /// A directory's entries (loading them first).
    pub fn children(&mut self, repo: &Repository, dir: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>> {
        self.ensure_loaded(repo, dir)?;
        match &self.get(dir)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => Ok(children),
            _ => errno(Errno::ENOTDIR),
        }
    }

    /// A directory's entries, mutably (loading them first).
    pub fn children_mut(
        &mut self,
        repo: &Repository,
        dir: Ino,
    ) -> Result<&mut BTreeMap<Vec<u8>, Ino>> {
        self.ensure_loaded(repo, dir)?;
        match &mut self.get_mut(dir)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => Ok(children),
            _ => errno(Errno::ENOTDIR),
        }
    }

    /// How many child directories a directory has (for `nlink`), if loaded.
    pub fn subdirs(&self, dir: Ino) -> u32 {
        match self.nodes.get(&dir).map(|n| &n.kind) {
            Some(Kind::Dir {
                children: Some(children),
                ..
            }) => children
                .values()
                .filter(|c| self.nodes.get(c).is_some_and(Inode::is_dir))
                .count() as u32,
            _ => 0,
        }
    }

    /// Records a local change at `ino`: it and every directory up to its view root need
    /// writing back.
    pub fn mark_dirty(&mut self, ino: Ino) {
        let Some(view) = self.nodes.get(&ino).and_then(|n| n.view) else {
            return;
        };
        if let Some(parents) = self.extra_parents.get(&ino).cloned() {
            for parent in parents {
                self.mark_dirty(parent);
            }
        }
        self.views[view].dirty = true;
        let root = self.views[view].root;
        let generation = crate::inode::fresh_generation();
        let mut at = ino;
        while let Some(node) = self.nodes.get_mut(&at) {
            node.dirty = true;
            node.generation = generation;
            if let Kind::Dir {
                tree,
                children: Some(_),
            } = &mut node.kind
            {
                *tree = None;
            }
            if at == root {
                break;
            }
            at = node.parent;
        }
    }

    /// Adds a new inode `name` under `parent` in the same view and marks it dirty.
    pub fn create_child(
        &mut self,
        parent: Ino,
        name: &[u8],
        kind: Kind,
        attr: Attr,
    ) -> Result<Ino> {
        let view = self.writable(parent)?;
        let base = self.path_of(parent);
        let path = if base.is_empty() {
            name.to_vec()
        } else {
            [base.as_slice(), b"/", name].concat()
        };
        let ino = self.free_ino(&self.views[view].kind.key(), &path);
        self.nodes.insert(
            ino,
            Inode {
                dirty: true,
                ..Inode::new(parent, name, Some(view), kind, attr)
            },
        );
        if let Kind::Dir {
            children: Some(children),
            ..
        } = &mut self.get_mut(parent)?.kind
        {
            children.insert(name.to_vec(), ino);
        }
        self.mark_dirty(ino);
        Ok(ino)
    }

    /// Removes `name` from `parent` because of a change made elsewhere (nothing to write back).
    pub fn detach_external(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let removed = match &mut self.nodes.get_mut(&parent)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children.remove(name),
            _ => None,
        }?;
        self.unlink_parent(removed, parent, name);
        if let Some(node) = self.nodes.get_mut(&removed) {
            node.nlink = node.nlink.saturating_sub(1);
        }
        self.collect(removed);
        Some(removed)
    }

    /// Removes `name` from `parent` as a local change (to be written back); the inode lives on
    /// while looked up or open.
    pub fn detach(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let removed = self.detach_external(parent, name)?;
        self.mark_dirty(parent);
        Some(removed)
    }

    /// Records that `ino` lost its name `name` in `parent`, keeping its remaining names'
    /// directories known.
    pub fn unlink_parent(&mut self, ino: Ino, parent: Ino, name: &[u8]) {
        let Some(extra) = self.extra_parents.get_mut(&ino) else {
            return;
        };
        if let Some(i) = extra.iter().position(|p| *p == parent) {
            extra.remove(i);
        } else if let Some(new_primary) = extra.pop() {
            // The primary name went: another one becomes primary.
            let other_name = match self.nodes.get(&new_primary).map(|n| &n.kind) {
                Some(Kind::Dir {
                    children: Some(children),
                    ..
                }) => children
                    .iter()
                    .find(|(_, c)| **c == ino)
                    .map(|(n, _)| n.clone()),
                _ => None,
            };
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = new_primary;
                node.name = other_name.unwrap_or_else(|| name.to_vec());
            }
        }
        if self.extra_parents.get(&ino).is_some_and(Vec::is_empty) {
            self.extra_parents.remove(&ino);
        }
    }

    /// Drops an inode the kernel no longer references and no name reaches.
    pub fn collect(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        if node.nlink > 0 || node.lookups > 0 || node.opens > 0 || ino == ROOT {
            return;
        }
        let children: Vec<Ino> = match &node.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children.values().copied().collect(),
            _ => Vec::new(),
        };
        if let Some(Inode {
            kind:
                Kind::File(FileBody {
                    backing: Some(backing),
                    ..
                }),
            ..
        }) = self.nodes.remove(&ino)
        {
            // No name reaches it and nothing holds it open: its data file has no use left.
            backing.dispose();
        }
        self.extra_parents.remove(&ino);
        for child in children {
            if let Some(node) = self.nodes.get_mut(&child) {
                node.nlink = 0;
            }
            self.collect(child);
        }
    }

    /// The blob layout of a clean file, decoded once and cached on the inode.
    pub fn layout(&mut self, repo: &Repository, ino: Ino) -> Result<Option<Arc<BlobLayout>>> {
        let view = self.view_of(ino)?;
        let reads = self.views[view].reads();
        let Kind::File(body) = &self.get(ino)?.kind else {
            return errno(Errno::EISDIR);
        };
        if let Some(layout) = &body.layout {
            return Ok(Some(layout.clone()));
        }
        let Some(blob) = body.blob else {
            return Ok(None);
        };
        let layout = Arc::new(views::with_source(repo.store(), reads, |src| {
            Ok(BlobLayout::load(src, &blob)?)
        })?);
        if let Kind::File(body) = &mut self.get_mut(ino)?.kind {
            body.layout = Some(layout.clone());
        }
        Ok(Some(layout))
    }

    /// Gives a file a backing file (copy-on-write), copying its stored content unless
    /// `truncate`. Returns it. Large copies should be made first with
    /// [`crate::Shared::prepare_backing`], which copies without holding the state lock; this
    /// then only finds the result.
    pub fn ensure_backing(
        &mut self,
        repo: &Repository,
        backing_dir: &std::path::Path,
        ino: Ino,
        truncate: bool,
    ) -> Result<Arc<Backing>> {
        if let Kind::File(FileBody {
            backing: Some(backing),
            ..
        }) = &self.get(ino)?.kind
        {
            return Ok(backing.clone());
        }
        let view = self.view_of(ino)?;
        let reads = self.views[view].reads();
        let layout = if truncate {
            None
        } else {
            self.layout(repo, ino)?
        };
        let backing = Arc::new(match layout {
            Some(layout) => views::with_source(repo.store(), reads, |src| {
                Backing::with_content(backing_dir, src, &layout)
            })?,
            None => Backing::create(backing_dir)?,
        });
        let node = self.get_mut(ino)?;
        let _ = backing
            .file
            .set_times(std::fs::FileTimes::new().set_modified(node.attr.mtime));
        if let Kind::File(body) = &mut node.kind {
            body.size = backing.size()?;
            body.backing = Some(backing.clone());
        }
        Ok(backing)
    }

    /// Makes sure `head/` has a working SWS to write to (created on its first write).
    pub fn ensure_sws(&mut self, repo: &Repository, owner: &str, view: ViewId) -> Result<SwsId> {
        if let Some(id) = self.views[view].sws {
            return Ok(id);
        }
        let branch = repo.head()?;
        let id = crate::guard::as_mount(|| sws::working(repo.store(), &branch, owner))?;
        self.views[view].sws = Some(id);
        Ok(id)
    }
}

/// A tree entry as loaded, before it becomes an inode.
#[derive(Debug)]
pub enum Loaded {
    /// A directory and its tree.
    Dir(NodeId),
    /// A file.
    File {
        /// Its blob.
        blob: NodeId,
        /// Its size.
        size: u64,
        /// Executable bit.
        executable: bool,
    },
    /// A symlink and its target.
    Symlink(Vec<u8>),
}
