//! The closure of published snapshots: every node needed to read them — each snapshot, its
//! tree, the subtrees, blobs and chunks below — and never a parent. A snapshot's parents are the
//! publisher's internal history: the closure stops at the snapshot (ASL visibility: an internal
//! snapshot stays hidden even when a published one descends from it).
//!
//! The publisher walks it to index what it shows ([`super::visible`]) and to sign a manifest;
//! the importer walks it over what it received to check that the closure is complete, every
//! reference names a node of the right type, and the set is exactly the one the manifest signed.

use std::collections::HashSet;

use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::{Blob, Node, NodeType, NodeView, Payload};
use crate::source::Source;

/// The closure of `roots` in `source`, roots first, each id once. A node the walk reaches but
/// `source` lacks is [`Violation::MissingReference`]; one of another type than its referrer
/// says is [`Violation::WrongType`]. `prune(id)` true stops the walk at `id` (it and what it
/// reaches are left out): the publisher's index skips what it already shows.
pub fn walk(
    source: &dyn Source,
    roots: &[NodeId],
    prune: impl FnMut(&NodeId) -> Result<bool>,
) -> Result<Vec<NodeId>> {
    Ok(walk_with_bytes(source, roots, prune)?.0)
}

/// [`walk`], also adding up the walked nodes' encoded bytes.
pub fn walk_with_bytes(
    source: &dyn Source,
    roots: &[NodeId],
    mut prune: impl FnMut(&NodeId) -> Result<bool>,
) -> Result<(Vec<NodeId>, u64)> {
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut level: Vec<(NodeId, Option<Referrer>)> = roots.iter().map(|id| (*id, None)).collect();
    while !level.is_empty() {
        let mut next = Vec::new();
        for (id, referrer) in level {
            if !seen.insert(id) || prune(&id)? {
                continue;
            }
            let Some(bytes) = source.bytes(&id)? else {
                return Err(match referrer {
                    Some(Referrer { from, .. }) => Violation::MissingReference {
                        node: from,
                        target: id,
                    }
                    .into(),
                    None => Error::NodeNotFound(id),
                });
            };
            // A zero-copy look: a file's or chunk's content is never copied, only its header
            // read; trees and chunk lists, which name other nodes, are decoded.
            let view = NodeView::peek(&bytes)?;
            let found = view.node_type;
            match referrer {
                Some(Referrer {
                    from,
                    expected,
                    len,
                }) => {
                    if found != expected {
                        return Err(Violation::WrongType {
                            node: from,
                            target: id,
                            found: found.as_str(),
                            expected: expected.as_str(),
                        }
                        .into());
                    }
                    if let Some(len) = len {
                        let data = view.chunk_data()?;
                        if data.len() as u64 != u64::from(len) {
                            return Err(Violation::Malformed {
                                node: from,
                                reason: format!(
                                    "chunk {id} is {} bytes, the blob says {len}",
                                    data.len()
                                ),
                            }
                            .into());
                        }
                    }
                }
                None if found != NodeType::Snapshot => {
                    return Err(Error::NotA {
                        id,
                        found: found.as_str(),
                        expected: "snapshot",
                    })
                }
                None => {}
            }
            out.push(id);
            total += bytes.len() as u64;
            let names_others = match found {
                NodeType::Tree | NodeType::Snapshot => true,
                NodeType::Blob => is_chunked(&view.payload)?,
                _ => false,
            };
            if !names_others {
                continue;
            }
            let node = Node::decode(&bytes)?;
            if let Payload::Blob(Blob::Chunked { chunks, .. }) = &node.payload {
                for chunk in chunks {
                    next.push((
                        chunk.id,
                        Some(Referrer {
                            from: id,
                            expected: NodeType::Chunk,
                            len: Some(chunk.len),
                        }),
                    ));
                }
                continue;
            }
            for (reference, expected) in node.references() {
                next.push((
                    reference,
                    Some(Referrer {
                        from: id,
                        expected,
                        len: None,
                    }),
                ));
            }
        }
        level = next;
    }
    Ok((out, total))
}

/// Whether a blob's encoded payload is a chunk list (`{chunks, size}`) rather than inline
/// data (`{data, size}`), read from its keys without touching the data.
fn is_chunked(payload: &[u8]) -> Result<bool> {
    let mut reader = crate::cbor::Reader::new(payload);
    for _ in 0..reader.expect(5)? {
        if reader.text()? == "chunks" {
            return Ok(true);
        }
        reader.skip()?;
    }
    Ok(false)
}

/// Who reached a node in the walk, and what it says the node is.
#[derive(Clone, Copy)]
struct Referrer {
    from: NodeId,
    expected: NodeType,
    /// A chunk's length, as its blob gives it.
    len: Option<u32>,
}

/// The nodes of `root`'s closure that the closures of `held` (snapshots an importer already
/// holds) lack, found by walking the trees side by side and descending only where ids differ:
/// O(changed paths), not O(tree). A file that changed contributes its blob and the chunks the
/// older versions at that path lack. The result may still name nodes held elsewhere in `held`
/// (a moved directory): it is a hint of what to send, and the importer skips what it holds.
pub fn missing(source: &dyn Source, root: NodeId, held: &[NodeId]) -> Result<Vec<NodeId>> {
    let mut out = vec![root];
    let new_tree = crate::tree::tree_of(source, &root)?;
    let mut old_trees = Vec::new();
    for snapshot in held {
        old_trees.push(crate::tree::tree_of(source, snapshot)?);
    }
    missing_below(source, new_tree, &old_trees, &mut out)?;
    Ok(out)
}

fn missing_below(
    source: &dyn Source,
    tree: NodeId,
    old: &[NodeId],
    out: &mut Vec<NodeId>,
) -> Result<()> {
    if old.contains(&tree) {
        return Ok(());
    }
    out.push(tree);
    let olds = old
        .iter()
        .map(|id| crate::tree::load(source, id))
        .collect::<Result<Vec<_>>>()?;
    for entry in crate::tree::load(source, &tree)?.entries {
        let before: Vec<&crate::node::TreeEntry> =
            olds.iter().filter_map(|t| t.get(&entry.name)).collect();
        if before.iter().any(|b| b.id == entry.id) {
            continue;
        }
        if entry.kind == crate::node::EntryKind::Directory {
            let old_dirs: Vec<NodeId> = before
                .iter()
                .filter(|b| b.kind == crate::node::EntryKind::Directory)
                .map(|b| b.id)
                .collect();
            missing_below(source, entry.id, &old_dirs, out)?;
            continue;
        }
        out.push(entry.id);
        let chunks_of = |blob: &NodeId| -> Result<Vec<NodeId>> {
            Ok(match crate::content::BlobLayout::load(source, blob)? {
                crate::content::BlobLayout::Chunked(chunks) => {
                    chunks.into_iter().map(|(_, c)| c.id).collect()
                }
                crate::content::BlobLayout::Inline(_) => Vec::new(),
            })
        };
        let new_chunks = chunks_of(&entry.id)?;
        if new_chunks.is_empty() {
            continue;
        }
        let mut old_chunks = HashSet::new();
        for b in before
            .iter()
            .filter(|b| b.kind != crate::node::EntryKind::Directory)
        {
            old_chunks.extend(chunks_of(&b.id)?);
        }
        out.extend(new_chunks.into_iter().filter(|c| !old_chunks.contains(c)));
    }
    Ok(())
}
