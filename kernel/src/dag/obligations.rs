//! What a node asks of the nodes it names, as a list checked against their headers.
//!
//! Every DAG rule that involves another node (SPEC §1.2: parents stored, older and of an
//! allowed type, the clock one more than the highest parent's; references present with the
//! right type; a rewrite's base a snapshot or the root; a chunked blob's chunks of the sizes it
//! declares) needs only that node's header. So the rules reduce to a node's [`Obligations`]: its
//! own type and clock, and one [`Need`] per node it names. [`super::validate_in_store`] is
//! `Obligations::of` then [`Obligations::check`]; a pull works out each node's obligations
//! while it checks the node as it arrives (decoding it once, on all cores), and the append that
//! ends the pull checks them against headers without reading or decoding the node again.

use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::{Blob, Node, NodeType, Payload, Rewrite};
use crate::store::NodeHeader;

/// What a node asks of one node it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A parent: stored, with an older clock, and of a type the node's own type allows.
    Parent,
    /// A reference (a tree entry, a snapshot's tree, a blob's chunk): stored, of this type.
    Reference(NodeType),
    /// A rewrite's base: stored, a snapshot or the root.
    RewriteBase,
    /// A chunk of a chunked blob: of exactly this many bytes.
    ChunkOfLength(u64),
}

/// A node's rules that involve other nodes, checked against their headers in the order
/// [`Obligations::check`] documents.
#[derive(Debug, Clone)]
pub(crate) struct Obligations {
    node_type: NodeType,
    clock: u64,
    /// Parents first, then references, the rewrite base and the chunk lengths.
    needs: Box<[(NodeId, Need)]>,
}

impl Obligations {
    /// The obligations of a decoded node.
    pub(crate) fn of(node: &Node) -> Self {
        let mut needs: Vec<(NodeId, Need)> =
            node.parents.iter().map(|p| (*p, Need::Parent)).collect();
        needs.extend(
            node.references()
                .into_iter()
                .map(|(target, expected)| (target, Need::Reference(expected))),
        );
        if let Payload::Rewrite(Rewrite {
            base: Some(base), ..
        }) = &node.payload
        {
            needs.push((*base, Need::RewriteBase));
        }
        if let Payload::Blob(Blob::Chunked { chunks, .. }) = &node.payload {
            needs.extend(
                chunks
                    .iter()
                    .map(|c| (c.id, Need::ChunkOfLength(c.len as u64))),
            );
        }
        Obligations {
            node_type: node.node_type(),
            clock: node.clock,
            needs: needs.into_boxed_slice(),
        }
    }

    /// The obligations of a node that names nothing (a content leaf): none.
    pub(crate) fn none(header: &NodeHeader) -> Self {
        Obligations {
            node_type: header.node_type,
            clock: header.clock,
            needs: Box::new([]),
        }
    }

    /// Checks the obligations of node `id`, with other nodes' headers from `header`: every
    /// parent, then the clock against the highest parent's, then every reference, the
    /// rewrite base and the chunk lengths. The first broken rule is the error.
    pub(crate) fn check(
        &self,
        header: &dyn Fn(&NodeId) -> Result<Option<NodeHeader>>,
        id: &NodeId,
    ) -> Result<()> {
        let parents = self
            .needs
            .iter()
            .take_while(|(_, need)| *need == Need::Parent)
            .count();
        let mut highest: Option<u64> = None;
        for (parent, _) in &self.needs[..parents] {
            let Some(found) = header(parent)? else {
                return Err(Violation::MissingParent {
                    node: *id,
                    parent: *parent,
                }
                .into());
            };
            self.check_parent(id, parent, &found)?;
            highest = highest.max(Some(found.clock));
        }
        if let Some(highest) = highest {
            let expected = highest.saturating_add(1);
            if self.clock != expected {
                return Err(Violation::ClockNotNext {
                    node: *id,
                    clock: self.clock,
                    expected,
                }
                .into());
            }
        }
        for (target, need) in &self.needs[parents..] {
            let found = header(target)?;
            match (*need, found) {
                (Need::ChunkOfLength(_), None) => return Err(Error::NodeNotFound(*target)),
                (_, None) => {
                    return Err(Violation::MissingReference {
                        node: *id,
                        target: *target,
                    }
                    .into())
                }
                (Need::Reference(expected), Some(found)) if found.node_type != expected => {
                    return Err(wrong_type(id, target, &found, expected.as_str()));
                }
                (Need::RewriteBase, Some(found))
                    if !matches!(found.node_type, NodeType::Snapshot | NodeType::Root) =>
                {
                    return Err(wrong_type(id, target, &found, "snapshot or root"));
                }
                (Need::ChunkOfLength(declared), Some(found)) if found.size != declared => {
                    return Err(Violation::Malformed {
                        node: *id,
                        reason: format!(
                            "chunk {target} is {} bytes, the blob says {declared}",
                            found.size
                        ),
                    }
                    .into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// One parent's rules: an older clock, and a type this node's type allows.
    fn check_parent(&self, id: &NodeId, parent: &NodeId, found: &NodeHeader) -> Result<()> {
        if found.clock >= self.clock {
            return Err(Violation::ClockNotIncreasing {
                node: *id,
                clock: self.clock,
                parent: *parent,
                parent_clock: found.clock,
            }
            .into());
        }
        let allowed: &[NodeType] = match self.node_type {
            NodeType::Snapshot => &[NodeType::Root, NodeType::Snapshot, NodeType::Rewrite],
            NodeType::Rewrite => &[NodeType::Root, NodeType::Snapshot],
            _ => &[],
        };
        if !allowed.is_empty() && !allowed.contains(&found.node_type) {
            return Err(wrong_type(id, parent, found, "root, snapshot or rewrite"));
        }
        Ok(())
    }
}

fn wrong_type(id: &NodeId, target: &NodeId, found: &NodeHeader, expected: &'static str) -> Error {
    Violation::WrongType {
        node: *id,
        target: *target,
        found: found.node_type.as_str(),
        expected,
    }
    .into()
}
