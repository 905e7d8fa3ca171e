//! Reading trees: resolving a revision's tree, looking up paths, walking, and diffing two trees
//! (equal subtree ids are skipped without being loaded).

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{EntryKind, Node, Payload, Tree, TreeEntry};
use crate::source::Source;

/// The id of the empty tree (stored at `init`, the tree of the root node).
pub fn empty_tree_id() -> NodeId {
    empty_tree_node()
        .encode_with_id()
        .map(|(id, _)| id)
        .unwrap_or(NodeId([0; 32]))
}

/// The empty tree node.
pub fn empty_tree_node() -> Node {
    Node::content(Payload::Tree(Tree::default()))
}

/// The root tree of a snapshot (the empty tree for the root node; a tree id is itself).
pub fn tree_of(src: &dyn Source, id: &NodeId) -> Result<NodeId> {
    let node = src.node(id)?;
    match node.payload {
        Payload::Snapshot(s) => Ok(s.tree),
        Payload::Tree(_) => Ok(*id),
        Payload::Root => Ok(empty_tree_id()),
        _ => Err(Error::NotA {
            id: *id,
            found: node.node_type().as_str(),
            expected: "snapshot or tree",
        }),
    }
}

/// Loads a tree node.
pub fn load(src: &dyn Source, id: &NodeId) -> Result<Tree> {
    let node = src.node(id)?;
    match node.payload {
        Payload::Tree(tree) => Ok(tree),
        _ => Err(Error::NotA {
            id: *id,
            found: node.node_type().as_str(),
            expected: "tree",
        }),
    }
}

/// Looks up a `/`-separated path below `tree`; the empty path is the tree itself.
pub fn lookup(src: &dyn Source, tree: &NodeId, path: &[u8]) -> Result<Option<TreeEntry>> {
    let mut current = TreeEntry {
        name: Vec::new(),
        kind: EntryKind::Directory,
        id: *tree,
    };
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if current.kind != EntryKind::Directory {
            return Ok(None);
        }
        match load(src, &current.id)?.get(component) {
            Some(entry) => current = entry.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Visits entries below `tree` in path order; `recursive` descends into directories.
pub fn walk(
    src: &dyn Source,
    tree: &NodeId,
    prefix: &[u8],
    recursive: bool,
    visit: &mut dyn FnMut(&[u8], &TreeEntry) -> Result<()>,
) -> Result<()> {
    for entry in load(src, tree)?.entries {
        let path = join(prefix, &entry.name);
        visit(&path, &entry)?;
        if recursive && entry.kind == EntryKind::Directory {
            walk(src, &entry.id, &path, true, visit)?;
        }
    }
    Ok(())
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

/// How a path differs between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the new tree.
    Added,
    /// Only in the old tree.
    Deleted,
    /// In both, with different content or kind.
    Modified,
}

/// One changed leaf: a file, an executable, a symlink, or an empty directory (trees may hold
/// empty directories; a non-empty one is never listed itself, only what it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path.
    pub path: Vec<u8>,
    /// What happened.
    pub kind: ChangeKind,
    /// The old entry, if any.
    pub old: Option<TreeEntry>,
    /// The new entry, if any.
    pub new: Option<TreeEntry>,
}

impl Change {
    /// The entry the change is about: the new one, else the old one.
    pub fn entry(&self) -> Option<&TreeEntry> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// Whether the changed leaf is an (empty) directory.
    pub fn is_dir(&self) -> bool {
        self.entry().is_some_and(|e| e.kind == EntryKind::Directory)
    }
}

/// The entries of a tree, or none for an absent one.
pub fn entries_of(src: &dyn Source, tree: Option<&NodeId>) -> Result<Vec<TreeEntry>> {
    Ok(match tree {
        Some(id) => load(src, id)?.entries,
        None => Vec::new(),
    })
}

/// Walks two directories' entries (each sorted by name) side by side: every name once, with
/// its entry on each side (None where it is absent), in name order.
pub fn pair_entries<'a>(
    old: &'a [TreeEntry],
    new: &'a [TreeEntry],
) -> impl Iterator<Item = (Option<&'a TreeEntry>, Option<&'a TreeEntry>)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.name.cmp(&b.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return None,
        };
        let pair = match order {
            std::cmp::Ordering::Less => (old.get(i), None),
            std::cmp::Ordering::Greater => (None, new.get(j)),
            std::cmp::Ordering::Equal => (old.get(i), new.get(j)),
        };
        if order != std::cmp::Ordering::Greater {
            i += 1;
        }
        if order != std::cmp::Ordering::Less {
            j += 1;
        }
        Some(pair)
    })
}

/// Lists the changed leaves from `old` to `new`: files, executables and symlinks, and empty
/// directories that appear or disappear (an empty directory counts as present where the other
/// tree has no directory at its path, or a non-empty one). Per name, what the old tree had is
/// listed before what the new tree has, so a file replaced by a directory is `D x`, then
/// `A x/…`; otherwise in path order. A kind change between two non-directories is `Modified`.
pub fn diff(src: &dyn Source, old: &NodeId, new: &NodeId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let empty = empty_tree_id();
    diff_into(src, Some(old), Some(new), b"", &empty, &mut out)?;
    Ok(out)
}

/// Diffs two directories (either may be absent) below `prefix` into `out`.
fn diff_into(
    src: &dyn Source,
    old: Option<&NodeId>,
    new: Option<&NodeId>,
    prefix: &[u8],
    empty: &NodeId,
    out: &mut Vec<Change>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let (old_entries, new_entries) = (entries_of(src, old)?, entries_of(src, new)?);
    for (a, b) in pair_entries(&old_entries, &new_entries) {
        let name = a.or(b).map(|e| e.name.as_slice()).unwrap_or_default();
        diff_name(src, a, b, &join(prefix, name), empty, out)?;
    }
    Ok(())
}

/// Diffs what one name holds on each side.
fn diff_name(
    src: &dyn Source,
    old: Option<&TreeEntry>,
    new: Option<&TreeEntry>,
    path: &[u8],
    empty: &NodeId,
    out: &mut Vec<Change>,
) -> Result<()> {
    if let (Some(a), Some(b)) = (old, new) {
        if a.kind == b.kind && a.id == b.id {
            return Ok(());
        }
    }
    let is_dir = |e: &&TreeEntry| e.kind == EntryKind::Directory;
    match (old.filter(is_dir), new.filter(is_dir)) {
        (Some(a), Some(b)) => {
            // Still a directory: it is a leaf change only if it became or stopped being empty.
            if b.id == *empty {
                out.push(leaf(path, ChangeKind::Added, None, Some(b)));
            } else if a.id == *empty {
                out.push(leaf(path, ChangeKind::Deleted, Some(a), None));
            }
            diff_into(src, Some(&a.id), Some(&b.id), path, empty, out)
        }
        (old_dir, new_dir) => {
            let (old_file, new_file) = (old.filter(|e| !is_dir(e)), new.filter(|e| !is_dir(e)));
            if let Some(a) = old_dir {
                lone_dir(src, a, ChangeKind::Deleted, path, empty, out)?;
            }
            match (old_file, new_file) {
                (Some(a), Some(b)) if a.id == b.id && a.kind == b.kind => {}
                (Some(a), Some(b)) => out.push(leaf(path, ChangeKind::Modified, Some(a), Some(b))),
                (Some(a), None) => out.push(leaf(path, ChangeKind::Deleted, Some(a), None)),
                (None, Some(b)) => out.push(leaf(path, ChangeKind::Added, None, Some(b))),
                (None, None) => {}
            }
            if let Some(b) = new_dir {
                lone_dir(src, b, ChangeKind::Added, path, empty, out)?;
            }
            Ok(())
        }
    }
}

/// A directory only one side has at this name (`Added`: the new side's; `Deleted`: the old
/// side's): listed itself when empty, then everything it holds.
fn lone_dir(
    src: &dyn Source,
    dir: &TreeEntry,
    kind: ChangeKind,
    path: &[u8],
    empty: &NodeId,
    out: &mut Vec<Change>,
) -> Result<()> {
    let (old, new) = match kind {
        ChangeKind::Added => (None, Some(dir)),
        _ => (Some(dir), None),
    };
    if dir.id == *empty {
        out.push(leaf(path, kind, old, new));
    }
    diff_into(
        src,
        old.map(|e| &e.id),
        new.map(|e| &e.id),
        path,
        empty,
        out,
    )
}

/// One change at `path`.
fn leaf(path: &[u8], kind: ChangeKind, old: Option<&TreeEntry>, new: Option<&TreeEntry>) -> Change {
    Change {
        path: path.to_vec(),
        kind,
        old: old.cloned(),
        new: new.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Trees kept in memory.
    #[derive(Default)]
    struct Nodes(HashMap<NodeId, Vec<u8>>);

    impl Source for Nodes {
        fn bytes(&self, id: &NodeId) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
            Ok(self.0.get(id).map(|b| b.as_slice().into()))
        }
    }

    impl Nodes {
        /// Stores a tree of `(name, kind, id)` entries.
        fn tree(&mut self, entries: &[(&str, EntryKind, NodeId)]) -> NodeId {
            let mut tree = Tree::default();
            for (name, kind, id) in entries {
                tree.entries.push(TreeEntry {
                    name: name.as_bytes().to_vec(),
                    kind: *kind,
                    id: *id,
                });
            }
            tree.entries.sort_by(|a, b| a.name.cmp(&b.name));
            let (id, bytes) = Node::content(Payload::Tree(tree))
                .encode_with_id()
                .expect("encode");
            self.0.insert(id, bytes);
            id
        }
    }

    fn listed(src: &Nodes, old: NodeId, new: NodeId) -> Vec<(String, ChangeKind, bool)> {
        diff(src, &old, &new)
            .expect("diff")
            .into_iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(&c.path).into_owned(),
                    c.kind,
                    c.is_dir(),
                )
            })
            .collect()
    }

    #[test]
    fn empty_directories_are_leaves_and_non_empty_ones_are_not_listed() {
        use ChangeKind::*;
        use EntryKind::{Directory as D, File as F};
        let mut src = Nodes::default();
        let blob = NodeId([7; 32]);
        let empty = src.tree(&[]);
        let with_file = src.tree(&[("a", F, blob)]);
        let base = src.tree(&[("f", F, blob)]);
        // An empty directory appears, and one with a file (listed by its file only).
        let added = src.tree(&[("e", D, empty), ("f", F, blob), ("full", D, with_file)]);
        assert_eq!(
            listed(&src, base, added),
            [("e".into(), Added, true), ("full/a".into(), Added, false)]
        );
        assert_eq!(
            listed(&src, added, base),
            [
                ("e".into(), Deleted, true),
                ("full/a".into(), Deleted, false)
            ]
        );
        // A directory emptied of its file stays as an empty directory, and the other way.
        let emptied = src.tree(&[("e", D, empty), ("f", F, blob), ("full", D, empty)]);
        assert_eq!(
            listed(&src, added, emptied),
            [
                ("full".into(), Added, true),
                ("full/a".into(), Deleted, false)
            ]
        );
        assert_eq!(
            listed(&src, emptied, added),
            [
                ("full".into(), Deleted, true),
                ("full/a".into(), Added, false)
            ]
        );
        // A file replaced by an empty directory: the old first.
        let replaced = src.tree(&[("f", D, empty)]);
        assert_eq!(
            listed(&src, base, replaced),
            [("f".into(), Deleted, false), ("f".into(), Added, true)]
        );
        assert_eq!(
            listed(&src, replaced, base),
            [("f".into(), Deleted, true), ("f".into(), Added, false)]
        );
        assert!(listed(&src, emptied, emptied).is_empty());
        // An unchanged empty directory next to a change is not listed.
        let edited = src.tree(&[
            ("e", D, empty),
            ("f", F, NodeId([8; 32])),
            ("full", D, empty),
        ]);
        assert_eq!(
            listed(&src, emptied, edited),
            [("f".into(), Modified, false)]
        );
    }
}
