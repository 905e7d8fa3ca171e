//! A tree being edited by one patch. Each directory the patch touches is decoded once into an
//! editable map, every operation edits those maps in place, and [`Draft::finish`] encodes each
//! changed directory once, children before parents. A patch of N operations into one directory
//! therefore costs O(N) time and memory; editing the persistent tree once per operation (as
//! [`TreeEditor::set`] does) would re-encode the directory every time — O(N²) for N puts.
//!
//! Directories the patch only passes through are loaded too, but a directory that was not
//! changed keeps its id and is not encoded again.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{EntryKind, Tree, TreeEntry};
use crate::path::RepoPath;
use crate::treeedit::{EditError, TreeEditor};

/// One name in a directory being edited.
enum Slot {
    /// A file, symlink, or a directory not loaded: kind and id, as stored.
    Stored(EntryKind, NodeId),
    /// A loaded directory.
    Dir(Dir),
}

/// A loaded directory.
#[derive(Default)]
struct Dir {
    /// Its id while nothing in it changed; `None` once it changed (or if it is new).
    unchanged: Option<NodeId>,
    entries: BTreeMap<Vec<u8>, Slot>,
}

impl Dir {
    fn load(editor: &TreeEditor<'_>, id: NodeId) -> Result<Dir> {
        let tree = editor.tree(&id)?;
        Ok(Dir {
            unchanged: Some(id),
            entries: tree
                .entries
                .iter()
                .map(|e| (e.name.clone(), Slot::Stored(e.kind, e.id)))
                .collect(),
        })
    }
}

impl Slot {
    fn kind(&self) -> EntryKind {
        match self {
            Slot::Stored(kind, _) => *kind,
            Slot::Dir(_) => EntryKind::Directory,
        }
    }

    /// The directory in this slot, loaded if it was not; `None` for anything else.
    fn dir(&mut self, editor: &TreeEditor<'_>) -> Result<Option<&mut Dir>> {
        if let Slot::Stored(EntryKind::Directory, id) = self {
            *self = Slot::Dir(Dir::load(editor, *id)?);
        }
        Ok(match self {
            Slot::Dir(dir) => Some(dir),
            Slot::Stored(..) => None,
        })
    }
}

/// What an entry that a patch looks at is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its kind.
    pub kind: EntryKind,
    /// Its id; `None` for a directory this patch changed (its id is known at the end).
    pub id: Option<NodeId>,
}

/// An entry taken out of the tree by [`Draft::take`], to be put elsewhere.
pub struct Taken(Slot);

/// The tree one patch is editing.
pub struct Draft {
    root: Dir,
}

fn shown(components: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&components.join(&b'/')).into_owned()
}

impl Draft {
    /// Starts editing the tree `root`.
    pub fn new(editor: &TreeEditor<'_>, root: NodeId) -> Result<Draft> {
        Ok(Draft {
            root: Dir::load(editor, root)?,
        })
    }

    /// The directory holding `path`'s last component, if every parent exists as a directory.
    fn parent_if_any<'d>(
        &'d mut self,
        editor: &TreeEditor<'_>,
        path: &RepoPath,
    ) -> Result<Option<&'d mut Dir>> {
        let components = path.components();
        let mut dir = &mut self.root;
        for name in &components[..components.len() - 1] {
            let Some(slot) = dir.entries.get_mut(name) else {
                return Ok(None);
            };
            match slot.dir(editor)? {
                Some(child) => dir = child,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// The parent directory of `path` for a change: every directory on the way is marked
    /// changed; missing ones are created when `create` is set.
    fn parent_for_change<'d>(
        &'d mut self,
        editor: &TreeEditor<'_>,
        path: &RepoPath,
        create: bool,
    ) -> Result<&'d mut Dir> {
        let components = path.components();
        let mut dir = &mut self.root;
        dir.unchanged = None;
        for (depth, name) in components[..components.len() - 1].iter().enumerate() {
            if !dir.entries.contains_key(name) {
                if !create {
                    return Err(Error::Edit(EditError::NoSuchDirectory(shown(
                        &components[..=depth],
                    ))));
                }
                dir.entries.insert(name.clone(), Slot::Dir(Dir::default()));
            }
            let slot = dir.entries.get_mut(name).ok_or_else(|| {
                Error::Edit(EditError::NoSuchDirectory(shown(&components[..=depth])))
            })?;
            dir = slot.dir(editor)?.ok_or_else(|| {
                Error::Edit(EditError::NotADirectory(shown(&components[..=depth])))
            })?;
            dir.unchanged = None;
        }
        Ok(dir)
    }

    /// The entry at `path`, if any.
    pub fn get(&mut self, editor: &TreeEditor<'_>, path: &RepoPath) -> Result<Option<Found>> {
        let Some(dir) = self.parent_if_any(editor, path)? else {
            return Ok(None);
        };
        Ok(dir.entries.get(path.name()).map(|slot| match slot {
            Slot::Stored(kind, id) => Found {
                kind: *kind,
                id: Some(*id),
            },
            Slot::Dir(dir) => Found {
                kind: EntryKind::Directory,
                id: dir.unchanged,
            },
        }))
    }

    /// Whether the directory at `path` exists and is empty.
    pub fn is_empty_dir(&mut self, editor: &TreeEditor<'_>, path: &RepoPath) -> Result<bool> {
        let Some(parent) = self.parent_if_any(editor, path)? else {
            return Ok(false);
        };
        match parent.entries.get_mut(path.name()) {
            Some(slot) => Ok(slot.dir(editor)?.is_some_and(|d| d.entries.is_empty())),
            None => Ok(false),
        }
    }

    /// Sets the entry at `path` (a file, symlink or stored directory); parents must exist as
    /// directories unless `create_parents` is set (`mkdir -p`).
    pub fn set(
        &mut self,
        editor: &TreeEditor<'_>,
        path: &RepoPath,
        kind: EntryKind,
        id: NodeId,
        create_parents: bool,
    ) -> Result<()> {
        self.put(editor, path, Taken(Slot::Stored(kind, id)), create_parents)
    }

    /// Creates an empty directory at `path` (its parents must exist).
    pub fn mkdir(&mut self, editor: &TreeEditor<'_>, path: &RepoPath) -> Result<()> {
        self.put(editor, path, Taken(Slot::Dir(Dir::default())), false)
    }

    /// Puts an entry taken from elsewhere at `path`.
    pub fn put(
        &mut self,
        editor: &TreeEditor<'_>,
        path: &RepoPath,
        entry: Taken,
        create_parents: bool,
    ) -> Result<()> {
        let parent = self.parent_for_change(editor, path, create_parents)?;
        parent.entries.insert(path.name().to_vec(), entry.0);
        Ok(())
    }

    /// Removes the entry at `path` and returns it (`None` if there is none).
    pub fn take(&mut self, editor: &TreeEditor<'_>, path: &RepoPath) -> Result<Option<Taken>> {
        if self.get(editor, path)?.is_none() {
            return Ok(None);
        }
        let parent = self.parent_for_change(editor, path, false)?;
        Ok(parent.entries.remove(path.name()).map(Taken))
    }

    /// The kind of an entry taken out.
    pub fn kind_of(taken: &Taken) -> EntryKind {
        taken.0.kind()
    }

    /// Encodes every changed directory once, children first, into `editor`; returns the root.
    pub fn finish(self, editor: &mut TreeEditor<'_>) -> Result<NodeId> {
        encode(editor, self.root)
    }
}

fn encode(editor: &mut TreeEditor<'_>, dir: Dir) -> Result<NodeId> {
    if let Some(id) = dir.unchanged {
        return Ok(id);
    }
    let mut entries = Vec::with_capacity(dir.entries.len());
    for (name, slot) in dir.entries {
        let (kind, id) = match slot {
            Slot::Stored(kind, id) => (kind, id),
            Slot::Dir(child) => (EntryKind::Directory, encode(editor, child)?),
        };
        entries.push(TreeEntry { name, kind, id });
    }
    editor.put_tree(Tree { entries })
}
