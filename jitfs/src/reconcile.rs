//! Applying changes made elsewhere (an agent's patch, a commit, a checkout) to the mount's
//! inodes: a three-way walk of the tree the view mirrored, the tree it should show now and the
//! inodes in memory. Unchanged entries keep their inodes and mtimes; local edits not yet
//! written back win over the incoming change; every inode or name that changed is listed for
//! the kernel to drop from its caches.

use std::collections::HashMap;
use std::time::SystemTime;

use jit_kernel::content;
use jit_kernel::federation::foreign::Foreign;
use jit_kernel::node::{EntryKind, TreeEntry};
use jit_kernel::source::{Dag, Source};
use jit_kernel::sws::{SwsId, SwsSource};
use jit_kernel::{tree, NodeId, Repository};

use crate::error::Result;
use crate::inode::{Ino, Kind, ViewId};
use crate::source::Layered;
use crate::state::{Loaded, State};
use crate::views::Target;

/// A kernel cache entry to drop.
#[derive(Debug, Clone)]
pub enum Inval {
    /// The attributes and cached content of an inode.
    Inode(Ino),
    /// A name in a directory.
    Entry(Ino, Vec<u8>),
}

/// Moves view `view` to `target`, listing what the kernel must forget in `out`.
pub fn reconcile(
    state: &mut State,
    repo: &Repository,
    view: ViewId,
    target: &Target,
    out: &mut Vec<Inval>,
) -> Result<()> {
    let old_sws = state.views[view].sws;
    let foreign = match state.views[view].reads() {
        crate::views::Reads::Foreign(universe) => Some(universe),
        _ => None,
    };
    let old = state.views[view].known;
    state.views[view].sws = target.sws;
    if old == target.tree {
        return Ok(());
    }
    let store = repo.store();
    let txn = store.read()?;
    let dag = Dag::new(store, &txn);
    let mut sources: Vec<Box<dyn Source + '_>> = [target.sws, old_sws]
        .into_iter()
        .flatten()
        .map(|id: SwsId| Box::new(SwsSource::new(store, &txn, id)) as Box<dyn Source>)
        .collect();
    if let Some(universe) = foreign {
        sources.push(Box::new(Foreign::new(store, &txn, universe)));
    }
    let extra = HashMap::new();
    let mut bases: Vec<&dyn Source> = sources.iter().map(|s| s.as_ref()).collect();
    bases.push(&dag);
    let src = Layered {
        extra: &extra,
        bases,
    };
    let root = state.views[view].root;
    let mut walk = Walk {
        state,
        src: &src,
        view,
        out,
        now: SystemTime::now(),
    };
    walk.dir(root, Some(old), target.tree)?;
    walk.state.views[view].known = target.tree;
    Ok(())
}

struct Walk<'a, 's> {
    state: &'a mut State,
    src: &'a Layered<'s>,
    view: ViewId,
    out: &'a mut Vec<Inval>,
    now: SystemTime,
}

impl Walk<'_, '_> {
    fn entries(&self, tree: Option<NodeId>) -> Option<Vec<TreeEntry>> {
        tree::entries_of(self.src, tree.as_ref()).ok()
    }

    /// What directory `dir` mirrored, told by its clean, tracked entries in memory: the stand-in
    /// for an old tree that can no longer be read (its SWS was discarded along with the nodes
    /// staged for it). Without it, entries only that tree had would stay on as ghosts.
    fn remembered(&self, dir: Ino) -> Vec<TreeEntry> {
        let Some(Kind::Dir {
            children: Some(children),
            ..
        }) = self.state.nodes.get(&dir).map(|n| &n.kind)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, child) in children {
            let Some(node) = self.state.nodes.get(child) else {
                continue;
            };
            if node.dirty || !node.tracked || node.ignored {
                continue;
            }
            let entry = match &node.kind {
                Kind::File(body) => body.blob.map(|id| {
                    let kind = if node.attr.perm & 0o100 != 0 {
                        EntryKind::Executable
                    } else {
                        EntryKind::File
                    };
                    (kind, id)
                }),
                Kind::Dir { tree, .. } => tree.map(|id| (EntryKind::Directory, id)),
                Kind::Symlink { target } => content::split_bytes(target)
                    .ok()
                    .map(|(id, _)| (EntryKind::Symlink, id)),
                _ => None,
            };
            if let Some((kind, id)) = entry {
                out.push(TreeEntry {
                    name: name.clone(),
                    kind,
                    id,
                });
            }
        }
        out
    }

    fn dir(&mut self, dir: Ino, old: Option<NodeId>, new: NodeId) -> Result<()> {
        let node = self.state.get(dir)?;
        let loaded = matches!(
            node.kind,
            Kind::Dir {
                children: Some(_),
                ..
            }
        );
        if !loaded {
            if let Kind::Dir { tree, .. } = &mut self.state.get_mut(dir)?.kind {
                *tree = Some(new);
            }
            return Ok(());
        }
        let old_entries = match self.entries(old) {
            Some(entries) => entries,
            None => self.remembered(dir),
        };
        let new_entries = self.entries(Some(new)).unwrap_or_default();
        for (o, n) in tree::pair_entries(&old_entries, &new_entries) {
            let name = o.or(n).map(|e| e.name.clone()).unwrap_or_default();
            self.entry(dir, &name, o.cloned(), n.cloned())?;
        }
        let node = self.state.get_mut(dir)?;
        if !node.dirty {
            if let Kind::Dir { tree, .. } = &mut node.kind {
                *tree = Some(new);
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: Ino,
        name: &[u8],
        old: Option<TreeEntry>,
        new: Option<TreeEntry>,
    ) -> Result<()> {
        if old.as_ref().map(|e| (e.kind, e.id)) == new.as_ref().map(|e| (e.kind, e.id)) {
            return Ok(());
        }
        let child = match &self.state.get(dir)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children.get(name).copied(),
            _ => None,
        };
        let Some(child) = child else {
            // Absent here: new outside, or deleted here and not yet written back.
            if let (None, Some(n)) = (&old, &new) {
                self.add(dir, name, n)?;
            }
            return Ok(());
        };
        let node = self.state.get(child)?;
        let child_is_dir = matches!(node.kind, Kind::Dir { .. });
        if let Some(n) = &new {
            if child_is_dir && n.kind == EntryKind::Directory {
                let old_dir = old.filter(|o| o.kind == EntryKind::Directory).map(|o| o.id);
                return self.dir(child, old_dir, n.id);
            }
        }
        if node.dirty {
            return Ok(());
        }
        match (&node.kind, &new) {
            (Kind::File(body), Some(n))
                if matches!(n.kind, EntryKind::File | EntryKind::Executable) =>
            {
                if body.blob == Some(n.id) {
                    return Ok(());
                }
                let size = content::blob_size(self.src, &n.id)?;
                let now = self.now;
                let node = self.state.get_mut(child)?;
                if let Kind::File(body) = &mut node.kind {
                    body.blob = Some(n.id);
                    body.size = size;
                    body.layout = None;
                    body.backing = None;
                }
                node.attr.perm = if n.kind == EntryKind::Executable {
                    node.attr.perm | 0o111
                } else {
                    node.attr.perm & !0o111
                };
                node.attr.mtime = now;
                node.attr.ctime = now;
                self.out.push(Inval::Inode(child));
            }
            (Kind::Symlink { .. }, Some(n)) if n.kind == EntryKind::Symlink => {
                let target = content::read_blob(self.src, &n.id)?;
                let node = self.state.get_mut(child)?;
                node.kind = Kind::Symlink { target };
                node.attr.ctime = self.now;
                self.out.push(Inval::Inode(child));
            }
            _ => {
                self.state.detach_external(dir, name);
                self.out.push(Inval::Entry(dir, name.to_vec()));
                // The directory's cached listing is stale too.
                self.out.push(Inval::Inode(dir));
                if let Some(n) = &new {
                    self.add(dir, name, n)?;
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, dir: Ino, name: &[u8], entry: &TreeEntry) -> Result<()> {
        let loaded = match entry.kind {
            EntryKind::Directory => Loaded::Dir(entry.id),
            EntryKind::File | EntryKind::Executable => Loaded::File {
                blob: entry.id,
                size: content::blob_size(self.src, &entry.id)?,
                executable: entry.kind == EntryKind::Executable,
            },
            EntryKind::Symlink => Loaded::Symlink(content::read_blob(self.src, &entry.id)?),
        };
        let base = self.state.path_of(dir);
        let ino = self.state.add_loaded(self.view, dir, &base, name, loaded);
        let now = self.now;
        if let Some(node) = self.state.nodes.get_mut(&ino) {
            node.attr.mtime = now;
            node.attr.ctime = now;
        }
        if let Some(Kind::Dir {
            children: Some(children),
            ..
        }) = self.state.nodes.get_mut(&dir).map(|n| &mut n.kind)
        {
            children.insert(name.to_vec(), ino);
        }
        self.out.push(Inval::Entry(dir, name.to_vec()));
        self.out.push(Inval::Inode(dir));
        Ok(())
    }
}
