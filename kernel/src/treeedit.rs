//! Editing persistent trees. Setting or removing one path re-encodes only the directories above
//! it; everything else is shared with the original tree. New nodes are collected, and
//! [`TreeEditor::finish`] returns just those still reachable from the final root.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::content::EncodedNode;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{EntryKind, Node, Payload, Tree, TreeEntry};
use crate::path::RepoPath;
use crate::source::Source;

/// Why a tree edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A parent directory does not exist.
    #[error("{0}: no such directory")]
    NoSuchDirectory(String),
    /// A parent component is a file.
    #[error("{0}: not a directory")]
    NotADirectory(String),
}

/// Builds new trees on top of a [`Source`]; it is itself a source (new nodes first).
pub struct TreeEditor<'s> {
    src: &'s dyn Source,
    created: HashMap<NodeId, EncodedNode>,
    /// Trees this editor read or made (a path is read, then rewritten: decode it once).
    decoded: RefCell<HashMap<NodeId, Arc<Tree>>>,
}

impl<'s> TreeEditor<'s> {
    /// An editor reading existing nodes from `src`.
    pub fn new(src: &'s dyn Source) -> Self {
        TreeEditor {
            src,
            created: HashMap::new(),
            decoded: RefCell::new(HashMap::new()),
        }
    }

    /// Records a new node (a blob written by a patch, say); returns its id.
    pub fn add(&mut self, node: EncodedNode) -> NodeId {
        let id = node.id;
        self.created.entry(id).or_insert(node);
        id
    }

    /// Splits file content into nodes (see [`crate::content`]), records them, and returns the
    /// blob's id.
    pub fn add_content(&mut self, data: &[u8]) -> Result<NodeId> {
        let (blob, nodes) = crate::content::split_bytes(data)?;
        for node in nodes {
            self.add(node);
        }
        Ok(blob)
    }

    /// Whether `id` was created by this editor.
    pub fn is_new(&self, id: &NodeId) -> bool {
        self.created.contains_key(id)
    }

    /// A tree, new or existing. Decoded once: by this editor, or by an earlier edit of the
    /// same store (its tree cache), once `src` has shown it holds the node. A cached tree was
    /// decoded from bytes verified against its id, so a hit asks `src` only whether it holds
    /// the node (its header) and does not read and hash the bytes again.
    pub fn tree(&self, id: &NodeId) -> Result<Arc<Tree>> {
        if let Some(tree) = self.decoded.borrow().get(id) {
            return Ok(tree.clone());
        }
        let cache = self.src.tree_cache();
        let tree = match cache.and_then(|cache| cache.get(id)) {
            Some(tree) if self.created.contains_key(id) || self.src.has(id)? => tree,
            _ => match Node::decode(&self.bytes(id)?.ok_or(Error::NodeNotFound(*id))?)?.payload {
                Payload::Tree(tree) => {
                    let tree = Arc::new(tree);
                    if let Some(cache) = cache {
                        cache.insert(*id, tree.clone());
                    }
                    tree
                }
                other => {
                    return Err(Error::NotA {
                        id: *id,
                        found: Node::content(other).node_type().as_str(),
                        expected: "tree",
                    })
                }
            },
        };
        self.decoded.borrow_mut().insert(*id, tree.clone());
        Ok(tree)
    }

    /// Stores a tree; returns its id. The tree is remembered decoded, for the next edit.
    pub fn put_tree(&mut self, tree: Tree) -> Result<NodeId> {
        let shared = Arc::new(tree.clone());
        let id = self.add(EncodedNode::new(Node::content(Payload::Tree(tree)))?);
        if let Some(cache) = self.src.tree_cache() {
            cache.insert(id, shared.clone());
        }
        self.decoded.borrow_mut().insert(id, shared);
        Ok(id)
    }

    /// The entry at `path` below `root`, if any.
    pub fn get(&self, root: &NodeId, path: &RepoPath) -> Result<Option<TreeEntry>> {
        let mut dir = *root;
        let components = path.components();
        for (depth, name) in components.iter().enumerate() {
            let Some(entry) = self.tree(&dir)?.get(name).cloned() else {
                return Ok(None);
            };
            if depth + 1 == components.len() {
                return Ok(Some(entry));
            }
            if entry.kind != EntryKind::Directory {
                return Ok(None);
            }
            dir = entry.id;
        }
        Ok(None)
    }

    /// Sets (or with `None`, removes) the entry at `path`; parents must exist as directories.
    /// Returns the new root.
    pub fn set(
        &mut self,
        root: &NodeId,
        path: &RepoPath,
        entry: Option<(EntryKind, NodeId)>,
    ) -> Result<NodeId> {
        self.set_at(root, path.components(), 0, entry, false)
    }

    /// Like [`TreeEditor::set`], creating missing parent directories (`mkdir -p`); a parent that
    /// exists as a file is still an error.
    pub fn set_creating_parents(
        &mut self,
        root: &NodeId,
        path: &RepoPath,
        entry: (EntryKind, NodeId),
    ) -> Result<NodeId> {
        self.set_at(root, path.components(), 0, Some(entry), true)
    }

    fn set_at(
        &mut self,
        dir: &NodeId,
        components: &[Vec<u8>],
        depth: usize,
        entry: Option<(EntryKind, NodeId)>,
        create_parents: bool,
    ) -> Result<NodeId> {
        let mut tree = Tree::clone(&*self.tree(dir)?);
        let name = &components[depth];
        let position = tree
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name));
        if depth + 1 == components.len() {
            match (position, entry) {
                (Ok(i), Some((kind, id))) => {
                    tree.entries[i].kind = kind;
                    tree.entries[i].id = id;
                }
                (Err(i), Some((kind, id))) => tree.entries.insert(
                    i,
                    TreeEntry {
                        name: name.clone(),
                        kind,
                        id,
                    },
                ),
                (Ok(i), None) => {
                    tree.entries.remove(i);
                }
                (Err(_), None) => return Ok(*dir),
            }
            return self.put_tree(tree);
        }
        let shown =
            || RepoPath::from_bytes(&components[..=depth].join(&b'/')).map(|p| p.to_string());
        let i = match position {
            Ok(i) => i,
            Err(i) if create_parents && entry.is_some() => {
                let empty = self.put_tree(Tree::default())?;
                tree.entries.insert(
                    i,
                    TreeEntry {
                        name: name.clone(),
                        kind: EntryKind::Directory,
                        id: empty,
                    },
                );
                i
            }
            Err(_) => {
                return Err(Error::Edit(EditError::NoSuchDirectory(
                    shown().unwrap_or_default(),
                )))
            }
        };
        if tree.entries[i].kind != EntryKind::Directory {
            return Err(Error::Edit(EditError::NotADirectory(
                shown().unwrap_or_default(),
            )));
        }
        let child = tree.entries[i].id;
        let new_child = self.set_at(&child, components, depth + 1, entry, create_parents)?;
        if new_child == child {
            return Ok(*dir);
        }
        tree.entries[i].id = new_child;
        self.put_tree(tree)
    }

    /// The new nodes reachable from `root` (anything superseded during editing is dropped),
    /// children before parents.
    pub fn finish(mut self, root: &NodeId) -> Result<Vec<EncodedNode>> {
        let mut out = Vec::new();
        self.collect(root, &mut out)?;
        Ok(out)
    }

    fn collect(&mut self, id: &NodeId, out: &mut Vec<EncodedNode>) -> Result<()> {
        let Some(node) = self.created.remove(id) else {
            return Ok(());
        };
        let references: Vec<NodeId> = node.node.references().into_iter().map(|(r, _)| r).collect();
        for child in references {
            self.collect(&child, out)?;
        }
        out.push(node);
        Ok(())
    }
}

impl Source for TreeEditor<'_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<Cow<'_, [u8]>>> {
        match self.created.get(id) {
            Some(node) => Ok(Some(Cow::Borrowed(&node.bytes))),
            None => self.src.bytes(id),
        }
    }

    fn has(&self, id: &NodeId) -> Result<bool> {
        Ok(self.created.contains_key(id) || self.src.has(id)?)
    }

    fn tree_cache(&self) -> Option<&crate::treecache::TreeCache> {
        self.src.tree_cache()
    }
}
