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
use crate::node::{Blob, Node, NodeType, Payload};
use crate::source::Source;

/// The closure of `roots` in `source`, roots first, each id once. A node the walk reaches but
/// `source` lacks is [`Violation::MissingReference`]; one of another type than its referrer
/// says is [`Violation::WrongType`]. `prune(id)` true stops the walk at `id` (it and what it
/// reaches are left out): the publisher's index skips what it already shows.
pub fn walk(
    source: &dyn Source,
    roots: &[NodeId],
    mut prune: impl FnMut(&NodeId) -> Result<bool>,
) -> Result<Vec<NodeId>> {
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut out = Vec::new();
    let mut level: Vec<(NodeId, Option<Referrer>)> = roots.iter().map(|id| (*id, None)).collect();
    while !level.is_empty() {
        let mut next = Vec::new();
        for (id, referrer) in level {
            if !seen.insert(id) || prune(&id)? {
                continue;
            }
            let node = match source.bytes(&id)? {
                Some(bytes) => Node::decode(bytes)?,
                None => {
                    return Err(match referrer {
                        Some(Referrer { from, .. }) => Violation::MissingReference {
                            node: from,
                            target: id,
                        }
                        .into(),
                        None => Error::NodeNotFound(id),
                    })
                }
            };
            if let Some(Referrer {
                from,
                expected,
                len,
            }) = referrer
            {
                if node.node_type() != expected {
                    return Err(Violation::WrongType {
                        node: from,
                        target: id,
                        found: node.node_type().as_str(),
                        expected: expected.as_str(),
                    }
                    .into());
                }
                if let (Some(len), Payload::Chunk(data)) = (len, &node.payload) {
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
            } else if node.node_type() != NodeType::Snapshot {
                return Err(Error::NotA {
                    id,
                    found: node.node_type().as_str(),
                    expected: "snapshot",
                });
            }
            out.push(id);
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
    Ok(out)
}

/// Who reached a node in the walk, and what it says the node is.
#[derive(Clone, Copy)]
struct Referrer {
    from: NodeId,
    expected: NodeType,
    /// A chunk's length, as its blob gives it.
    len: Option<u32>,
}
