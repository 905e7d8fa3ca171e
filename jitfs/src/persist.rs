//! Keeping the overlay's records in step with the mount's inodes, both ways: every local
//! change is recorded before its FUSE request is answered ([`State::persist`],
//! [`State::persist_removed`], [`State::persist_rename`]); a directory loaded by a new daemon
//! takes its records back ([`State::merge_records`]); a finished write-back drops what the SWS
//! now has ([`State::settle_records`]).

use fuser::FileType;
use jit_kernel::{content, NodeId, Repository};

use crate::backing::Backing;
use crate::error::Result;
use crate::inode::{FileBody, Ino, Inode, Kind, ViewId};
use crate::overlay::{Batch, DirBase, Entry, Record, StoredAttr};
use crate::state::State;
use crate::views;

impl State {
    /// The overlay's name for view `view`; None for read-only views (nothing to keep).
    pub fn record_view(&self, view: ViewId) -> Option<String> {
        let kind = &self.views[view].kind;
        kind.writable().then(|| kind.key())
    }

    /// The record that describes `ino` now, given what was recorded at its path before.
    fn record_for(&self, ino: Ino, node: &Inode, before: Option<&Record>) -> Record {
        let entry = match &node.kind {
            Kind::File(body) => Entry::File {
                data: body
                    .backing
                    .as_ref()
                    .filter(|b| !b.is_disposable())
                    .map(|b| b.name.clone()),
                blob: body.blob.map(|b| *b.as_bytes()),
                link: (node.nlink > 1).then_some(ino),
            },
            Kind::Dir { .. } | Kind::Synthetic(_) => Entry::Dir {
                base: match before.map(|r| &r.entry) {
                    Some(Entry::Dir { base }) => *base,
                    _ if node.tracked => DirBase::Lower,
                    _ => DirBase::Empty,
                },
            },
            Kind::Symlink { target } => Entry::Symlink {
                target: target.clone(),
            },
            Kind::Special { kind, rdev } => Entry::Special {
                format: match kind {
                    FileType::NamedPipe => libc::S_IFIFO,
                    FileType::Socket => libc::S_IFSOCK,
                    FileType::CharDevice => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                },
                rdev: *rdev,
            },
        };
        Record {
            entry,
            attr: StoredAttr::of(&node.attr),
            pending: node.dirty || !self.tracked_path(ino),
            ignored: self.ignored_within(ino) || before.is_some_and(|r| r.ignored),
            attr_set: node.attr_set,
        }
    }

    /// Whether `ino` or a directory above it (in its view) is ignored.
    pub fn ignored_within(&self, ino: Ino) -> bool {
        let mut at = ino;
        while let Some(node) = self.nodes.get(&at) {
            if node.ignored {
                return true;
            }
            match node.view {
                Some(view) if self.views[view].root != at => at = node.parent,
                _ => return false,
            }
        }
        false
    }

    /// Whether the SWS has `ino` at its current path: it and every directory above it are
    /// entries the SWS has there. False below a directory moved (or made) here and not written
    /// back yet, even where the entry itself is clean: the SWS has it, but elsewhere.
    pub fn tracked_path(&self, ino: Ino) -> bool {
        let mut at = ino;
        while let Some(node) = self.nodes.get(&at) {
            match node.view {
                Some(view) if self.views[view].root != at => {
                    if !node.tracked {
                        return false;
                    }
                    at = node.parent;
                }
                _ => return true,
            }
        }
        true
    }

    /// Records `ino` as it is now under each of its names.
    pub fn persist(&self, ino: Ino) -> Result<()> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        let Some(key) = node.view.and_then(|v| self.record_view(v)) else {
            return Ok(());
        };
        if node.nlink == 0 {
            // No name reaches it: its old path's record (a whiteout, or another file) stays.
            return Ok(());
        }
        let paths = self.paths_of(ino);
        self.overlay.batch(|batch| {
            for path in &paths {
                self.persist_in(batch, &key, path, ino)?;
            }
            Ok(())
        })
    }

    fn persist_in(&self, batch: &mut Batch<'_>, key: &str, path: &[u8], ino: Ino) -> Result<()> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        let before = batch.get(key, path)?;
        let record = self.record_for(ino, node, before.as_ref());
        if before.as_ref() != Some(&record) {
            batch.put(key, path, &record)?;
        }
        Ok(())
    }

    /// Every path `ino` has in its view: its primary name, then its other hard links.
    pub fn paths_of(&self, ino: Ino) -> Vec<Vec<u8>> {
        let mut paths = vec![self.path_of(ino)];
        for parent in self.extra_parents.get(&ino).into_iter().flatten() {
            if let Some(Inode {
                kind:
                    Kind::Dir {
                        children: Some(children),
                        ..
                    },
                ..
            }) = self.nodes.get(parent)
            {
                let base = self.path_of(*parent);
                for (name, _) in children.iter().filter(|(_, c)| **c == ino) {
                    paths.push(join(&base, name));
                }
            }
        }
        paths
    }

    /// Records that `path` of `view` was removed (with everything below it, for a directory).
    pub fn persist_removed(&self, view: ViewId, path: &[u8], was_dir: bool) -> Result<()> {
        let Some(key) = self.record_view(view) else {
            return Ok(());
        };
        self.overlay.batch(|batch| {
            if was_dir {
                batch.remove_below(&key, path)?;
            }
            batch.put(&key, path, &whiteout())
        })
    }

    /// Records that `moved` went from `from` to `to` in `view` (replacing whatever was at
    /// `to`). The SWS's entries at `to` are not the ones moved, so everything the moved
    /// directory shows is recorded below `to` explicitly; clean subdirectories by their tree.
    /// `replaced_dir` says whether a directory was at `to` before.
    pub fn persist_rename(
        &self,
        view: ViewId,
        from: &[u8],
        to: &[u8],
        moved: Ino,
        replaced_dir: bool,
    ) -> Result<()> {
        let Some(key) = self.record_view(view) else {
            return Ok(());
        };
        let moved_dir = self.nodes.get(&moved).is_some_and(Inode::is_dir);
        self.overlay.batch(|batch| {
            if replaced_dir {
                batch.remove_below(&key, to)?;
            }
            if moved_dir {
                batch.move_below(&key, from, to)?;
            }
            let before = batch.get(&key, from)?;
            batch.remove(&key, from)?;
            batch.put(&key, from, &whiteout())?;
            self.record_moved(batch, &key, to, moved, before)
        })
    }

    /// Records that `a` (at `from`) and `b` (at `to`) swapped places.
    pub fn persist_exchange(
        &self,
        view: ViewId,
        from: &[u8],
        to: &[u8],
        a: Ino,
        b: Ino,
    ) -> Result<()> {
        let Some(key) = self.record_view(view) else {
            return Ok(());
        };
        // Paths never hold NUL: a scratch place for one side's records while they swap.
        let scratch: &[u8] = b"\0exchange";
        self.overlay.batch(|batch| {
            let before_a = batch.get(&key, from)?;
            let before_b = batch.get(&key, to)?;
            let a_dir = self.nodes.get(&a).is_some_and(Inode::is_dir);
            let b_dir = self.nodes.get(&b).is_some_and(Inode::is_dir);
            if a_dir {
                batch.move_below(&key, from, scratch)?;
            }
            if b_dir {
                batch.move_below(&key, to, from)?;
            }
            if a_dir {
                batch.move_below(&key, scratch, to)?;
            }
            batch.remove(&key, from)?;
            batch.remove(&key, to)?;
            self.record_moved(batch, &key, to, a, before_a)?;
            self.record_moved(batch, &key, from, b, before_b)
        })
    }

    /// Records `ino`, now at `path`, and (for a directory) what it shows below.
    fn record_moved(
        &self,
        batch: &mut Batch<'_>,
        key: &str,
        path: &[u8],
        ino: Ino,
        before: Option<Record>,
    ) -> Result<()> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        let mut record = self.record_for(ino, node, None);
        record.pending = true;
        record.ignored |= before.is_some_and(|b| b.ignored);
        if let (Kind::Dir { tree, children }, Entry::Dir { base }) = (&node.kind, &mut record.entry)
        {
            match (tree, children) {
                (Some(tree), _) if !node.dirty => *base = DirBase::Tree(*tree.as_bytes()),
                (_, Some(children)) => {
                    // The SWS's entries at the new path are not these: every entry is recorded
                    // in full (a record moved along may only hold attributes).
                    *base = DirBase::Empty;
                    for (name, child) in children {
                        let child_path = join(path, name);
                        let recorded = batch.get(key, &child_path)?;
                        self.record_moved(batch, key, &child_path, *child, recorded)?;
                    }
                }
                (Some(tree), None) => *base = DirBase::Tree(*tree.as_bytes()),
                (None, None) => *base = DirBase::Empty,
            }
        }
        batch.put(key, path, &record)
    }

    /// Applies the overlay's records for directory `dir` (at `path` in `view`) to the
    /// entries just loaded from its tree.
    pub fn merge_records(
        &mut self,
        repo: &Repository,
        view: ViewId,
        dir: Ino,
        path: &[u8],
    ) -> Result<()> {
        let Some(key) = self.record_view(view) else {
            return Ok(());
        };
        let records = self.overlay.children(&key, path)?;
        if records.is_empty() {
            return Ok(());
        }
        let mut stale = Vec::new();
        for (name, record) in records {
            let existing = self.child(dir, &name);
            let child_path = join(path, &name);
            if record.entry == Entry::Whiteout {
                if existing.is_some() {
                    self.detach_external(dir, &name);
                    if record.pending {
                        self.mark_dirty(dir);
                    }
                }
                continue;
            }
            if !record.pending && !record.ignored {
                // Attributes only, for an entry the SWS has.
                match existing {
                    Some(child) if self.same_kind(child, &record.entry) => {
                        self.apply_attr(child, &record.attr, record.attr_set);
                        self.join_link_group(view, dir, &name, child, &record.entry);
                    }
                    _ => stale.push(child_path),
                }
                continue;
            }
            if let (
                Entry::Dir {
                    base: DirBase::Lower,
                },
                Some(child),
            ) = (&record.entry, existing)
            {
                self.apply_attr(child, &record.attr, record.attr_set);
                if record.pending {
                    self.mark_dirty(child);
                }
                continue;
            }
            let Some(kind) = self.kind_from_record(repo, view, &record.entry)? else {
                stale.push(child_path);
                continue;
            };
            if existing.is_some() {
                self.detach_external(dir, &name);
            }
            let ino = match self.linked(view, &record.entry) {
                Some(ino) => {
                    self.add_link(ino, dir, &name);
                    ino
                }
                None => {
                    let ino = self.insert_recorded(view, dir, &name, &child_path, kind, &record);
                    // An entry the SWS has at this path stays tracked (never ignored).
                    if let Some(node) = self.nodes.get_mut(&ino) {
                        node.tracked = existing.is_some();
                    }
                    ino
                }
            };
            if record.pending {
                self.mark_dirty(ino);
            }
        }
        if !stale.is_empty() {
            self.overlay.batch(|batch| {
                for path in &stale {
                    batch.remove(&key, path)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn child(&self, dir: Ino, name: &[u8]) -> Option<Ino> {
        match &self.nodes.get(&dir)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children.get(name).copied(),
            _ => None,
        }
    }

    fn same_kind(&self, ino: Ino, entry: &Entry) -> bool {
        matches!(
            (self.nodes.get(&ino).map(|n| &n.kind), entry),
            (Some(Kind::File(_)), Entry::File { .. })
                | (Some(Kind::Dir { .. }), Entry::Dir { .. })
                | (Some(Kind::Symlink { .. }), Entry::Symlink { .. })
        )
    }

    /// Gives `ino` recorded attributes; a file's executable bit stays the tree's (a change
    /// made elsewhere since wins over the record).
    fn apply_attr(&mut self, ino: Ino, stored: &StoredAttr, stored_set: bool) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let mut attr = stored.attr();
        if matches!(node.kind, Kind::File(_)) && (attr.perm & 0o100) != (node.attr.perm & 0o100) {
            return;
        }
        attr.perm &= 0o7777;
        node.attr = attr;
        node.attr_set = stored_set;
    }

    /// The inode content a record describes; None when what it names is gone (a data file
    /// removed once its content was stored, a blob no longer reachable).
    fn kind_from_record(
        &self,
        repo: &Repository,
        view: ViewId,
        entry: &Entry,
    ) -> Result<Option<Kind>> {
        let reads = self.views[view].reads();
        Ok(Some(match entry {
            Entry::File { data, blob, .. } => {
                let backing = match data {
                    Some(name) => Backing::reopen(self.overlay.data_dir(), name)?,
                    None => None,
                };
                let blob = blob.map(NodeId);
                let size = match (&backing, blob) {
                    (Some(backing), _) => backing.size()?,
                    (None, Some(blob)) => {
                        match views::with_source(repo.store(), reads, |src| {
                            Ok(content::blob_size(src, &blob)?)
                        }) {
                            Ok(size) => size,
                            Err(_) => return Ok(None),
                        }
                    }
                    (None, None) if data.is_some() => return Ok(None),
                    (None, None) => 0,
                };
                Kind::File(FileBody {
                    blob: if backing.is_some() { None } else { blob },
                    size,
                    backing: backing.map(std::sync::Arc::new),
                    ..FileBody::default()
                })
            }
            Entry::Dir { base } => Kind::Dir {
                tree: match base {
                    DirBase::Tree(tree) => Some(NodeId(*tree)),
                    DirBase::Lower | DirBase::Empty => None,
                },
                children: None,
            },
            Entry::Symlink { target } => Kind::Symlink {
                target: target.clone(),
            },
            Entry::Special { format, rdev } => Kind::Special {
                kind: match *format {
                    libc::S_IFIFO => FileType::NamedPipe,
                    libc::S_IFSOCK => FileType::Socket,
                    libc::S_IFCHR => FileType::CharDevice,
                    _ => FileType::BlockDevice,
                },
                rdev: *rdev,
            },
            Entry::Whiteout => return Ok(None),
        }))
    }

    /// The live inode of the hard-link group a record names, if one loaded already.
    fn linked(&self, view: ViewId, entry: &Entry) -> Option<Ino> {
        let Entry::File {
            link: Some(group), ..
        } = entry
        else {
            return None;
        };
        let ino = *self.links.get(&(view, *group))?;
        matches!(self.nodes.get(&ino), Some(n) if matches!(n.kind, Kind::File(_))).then_some(ino)
    }

    /// Makes `child` (just loaded as `name` in `dir`) one inode with the other names of its
    /// recorded hard-link group: the first name loaded stands for the group.
    fn join_link_group(&mut self, view: ViewId, dir: Ino, name: &[u8], child: Ino, entry: &Entry) {
        let Entry::File {
            link: Some(group), ..
        } = entry
        else {
            return;
        };
        match self.linked(view, entry) {
            Some(first) if first != child => {
                self.detach_external(dir, name);
                self.add_link(first, dir, name);
            }
            Some(_) => {}
            None => {
                self.links.insert((view, *group), child);
            }
        }
    }

    /// Gives `ino` one more name: `name` in `dir`.
    fn add_link(&mut self, ino: Ino, dir: Ino, name: &[u8]) {
        if let Some(Kind::Dir {
            children: Some(children),
            ..
        }) = self.nodes.get_mut(&dir).map(|n| &mut n.kind)
        {
            children.insert(name.to_vec(), ino);
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.nlink += 1;
        }
        self.extra_parents.entry(ino).or_default().push(dir);
    }

    /// Inserts the inode a record describes as `name` in `dir`.
    fn insert_recorded(
        &mut self,
        view: ViewId,
        dir: Ino,
        name: &[u8],
        path: &[u8],
        kind: Kind,
        record: &Record,
    ) -> Ino {
        let ino = self.free_ino(&self.views[view].kind.key(), path);
        let mut node = Inode::new(dir, name, Some(view), kind, record.attr.attr());
        node.ignored = record.ignored;
        node.attr_set = record.attr_set;
        if let Kind::File(FileBody {
            backing: Some(backing),
            ..
        }) = &node.kind
        {
            // Written after the record was: the data file knows when.
            if let Ok(mtime) = backing.file.metadata().and_then(|m| m.modified()) {
                node.attr.mtime = node.attr.mtime.max(mtime);
            }
        }
        self.nodes.insert(ino, node);
        if let Some(Kind::Dir {
            children: Some(children),
            ..
        }) = self.nodes.get_mut(&dir).map(|n| &mut n.kind)
        {
            children.insert(name.to_vec(), ino);
        }
        if let Entry::File {
            link: Some(group), ..
        } = &record.entry
        {
            self.links.insert((view, *group), ino);
        }
        ino
    }

    /// After a write-back of view `view`: drops the records of what the SWS now has, keeping
    /// what is still pending (dirty, or in a directory not loaded), ignored entries, and
    /// attributes the tree does not carry (rewritten as no longer pending).
    pub fn settle_records(&self, view: ViewId) -> Result<()> {
        let Some(key) = self.record_view(view) else {
            return Ok(());
        };
        let records = self.overlay.all(&key)?;
        if records.is_empty() {
            return Ok(());
        }
        let root = self.views[view].root;
        self.overlay.batch(|batch| {
            for (path, record) in records {
                let keep = match self.locate(root, &path) {
                    // Nothing in memory says otherwise: the record is all there is.
                    Located::Unloaded => Some(record.clone()),
                    Located::Absent { parent } => {
                        let parent_clean = self.nodes.get(&parent).is_some_and(|n| !n.dirty);
                        (!parent_clean).then(|| record.clone())
                    }
                    Located::Found(_) if record.entry == Entry::Whiteout => None,
                    Located::Found(ino) => self.settled(ino, &record),
                };
                match keep {
                    Some(kept) if kept != record => batch.put(&key, &path, &kept)?,
                    Some(_) => {}
                    None => batch.remove(&key, &path)?,
                }
            }
            Ok(())
        })
    }

    /// What the record of loaded entry `ino` becomes once a write-back ran: unchanged while
    /// it is dirty; marked ignored when it is; attributes only (or nothing) once stored.
    fn settled(&self, ino: Ino, record: &Record) -> Option<Record> {
        let node = &self.nodes[&ino];
        if node.dirty || !self.tracked_path(ino) {
            // Not in the SWS at this path yet (a directory above it was moved here since the
            // write-back's snapshot): the record is still what restores it.
            return Some(record.clone());
        }
        if self.ignored_within(ino) {
            return Some(Record {
                ignored: true,
                ..record.clone()
            });
        }
        if !self.keeps_attributes(node) {
            return None;
        }
        let mut kept = self.record_for(ino, node, Some(record));
        kept.pending = false;
        kept.ignored = false;
        if let Entry::File { data, .. } = &mut kept.entry {
            *data = None;
        }
        if let Entry::Dir { base } = &mut kept.entry {
            *base = DirBase::Lower;
        }
        Some(kept)
    }

    /// Whether an entry's attributes say more than its tree entry (mode beyond the
    /// executable bit, owner, explicitly set times, hard links).
    fn keeps_attributes(&self, node: &Inode) -> bool {
        let default_perm = match &node.kind {
            Kind::File(_) if node.attr.perm & 0o100 != 0 => 0o755,
            Kind::File(_) => 0o644,
            Kind::Symlink { .. } => 0o777,
            _ => 0o755,
        };
        node.attr_set
            || node.attr.perm != default_perm
            || node.attr.uid != self.uid
            || node.attr.gid != self.gid
            || node.nlink > 1
            || matches!(node.kind, Kind::Special { .. })
    }

    /// Where `path` below `root` stands in memory.
    fn locate(&self, root: Ino, path: &[u8]) -> Located {
        let mut at = root;
        for name in path.split(|&b| b == b'/') {
            match self.nodes.get(&at).map(|n| &n.kind) {
                Some(Kind::Dir {
                    children: Some(children),
                    ..
                }) => match children.get(name) {
                    Some(child) => at = *child,
                    None => return Located::Absent { parent: at },
                },
                Some(Kind::Dir { children: None, .. }) => return Located::Unloaded,
                // A file where a directory was: the path is gone.
                Some(_) => return Located::Absent { parent: at },
                None => return Located::Unloaded,
            }
        }
        Located::Found(at)
    }
}

/// Where a recorded path stands in the mount's memory.
enum Located {
    /// In memory, as this inode.
    Found(Ino),
    /// Not there, though its directory `parent` is loaded.
    Absent {
        /// The deepest loaded directory on the way.
        parent: Ino,
    },
    /// A directory on the way is not loaded: memory cannot tell.
    Unloaded,
}

fn whiteout() -> Record {
    Record {
        entry: Entry::Whiteout,
        attr: StoredAttr {
            perm: 0,
            uid: 0,
            gid: 0,
            times: [(0, 0); 3],
        },
        pending: true,
        ignored: false,
        attr_set: false,
    }
}

/// `base/name`, or `name` at the view root.
pub fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        name.to_vec()
    } else {
        [base, b"/", name].concat()
    }
}
