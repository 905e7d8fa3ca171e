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

/// One changed non-directory path.
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

/// Lists file-level changes from `old` to `new`, in path order.
pub fn diff(src: &dyn Source, old: &NodeId, new: &NodeId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_into(src, Some(old), Some(new), b"", &mut out)?;
    Ok(out)
}

fn diff_into(
    src: &dyn Source,
    old: Option<&NodeId>,
    new: Option<&NodeId>,
    prefix: &[u8],
    out: &mut Vec<Change>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let (old_entries, new_entries) = (entries_of(src, old)?, entries_of(src, new)?);
    for (a, b) in pair_entries(&old_entries, &new_entries) {
        let name = a.or(b).map(|e| e.name.as_slice()).unwrap_or_default();
        let path = join(prefix, name);
        let dir =
            |e: Option<&TreeEntry>| e.filter(|e| e.kind == EntryKind::Directory).map(|e| e.id);
        let file = |e: Option<&TreeEntry>| e.filter(|e| e.kind != EntryKind::Directory).cloned();
        let (old_dir, new_dir) = (dir(a), dir(b));
        if old_dir.is_some() || new_dir.is_some() {
            diff_into(src, old_dir.as_ref(), new_dir.as_ref(), &path, out)?;
        }
        let (old_file, new_file) = (file(a), file(b));
        let kind = match (&old_file, &new_file) {
            (None, None) => continue,
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Deleted,
            (Some(x), Some(y)) if x.id == y.id && x.kind == y.kind => continue,
            _ => ChangeKind::Modified,
        };
        out.push(Change {
            path,
            kind,
            old: old_file,
            new: new_file,
        });
    }
    Ok(())
}
