//! `NodeHeader`: the store's fixed-size index entry for a node (type, clock, size).
//!
//! It lives with the store, not with the node model, because it is the store's own format: the
//! `headers` table keeps one per node so validation, ancestry walks and `stat` never page in
//! content. It is derived from a node ([`Node::header`]) but is not part of the node's canonical
//! CBOR encoding and is never hashed, so its one-byte type codes ([`NodeType::code`]) are free of
//! the codec's byte-exactness rule; they must still stay stable, since existing stores hold them.

use crate::node::{Node, NodeType, Payload};

/// The fixed-size facts about a node that validation, ancestry walks and `stat` need, kept in
/// their own index so they never touch (or page in) the node's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHeader {
    /// The node's type.
    pub node_type: NodeType,
    /// Its logical clock.
    pub clock: u64,
    /// Content size for blobs and chunks, entry count for trees, 0 otherwise.
    pub size: u64,
}

impl NodeHeader {
    /// Encoded length.
    pub const LEN: usize = 17;

    /// Fixed big-endian encoding: type (1 byte), clock (8), size (8).
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = self.node_type.code();
        out[1..9].copy_from_slice(&self.clock.to_be_bytes());
        out[9..17].copy_from_slice(&self.size.to_be_bytes());
        out
    }

    /// Decodes [`NodeHeader::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<NodeHeader> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let mut clock = [0u8; 8];
        clock.copy_from_slice(&bytes[1..9]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[9..17]);
        Some(NodeHeader {
            node_type: NodeType::from_code(bytes[0])?,
            clock: u64::from_be_bytes(clock),
            size: u64::from_be_bytes(size),
        })
    }
}

impl NodeType {
    const ALL: [NodeType; 8] = [
        NodeType::Root,
        NodeType::Chunk,
        NodeType::Blob,
        NodeType::Tree,
        NodeType::Snapshot,
        NodeType::Rewrite,
        NodeType::Provenance,
        NodeType::FederationEdge,
    ];

    /// A one-byte code for the header index (not part of hashed data).
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0) as u8
    }

    /// The inverse of [`NodeType::code`].
    pub fn from_code(code: u8) -> Option<NodeType> {
        Self::ALL.get(code as usize).copied()
    }
}

impl Node {
    /// This node's header.
    pub fn header(&self) -> NodeHeader {
        let size = match &self.payload {
            Payload::Blob(blob) => blob.size(),
            Payload::Chunk(data) => data.len() as u64,
            Payload::Tree(tree) => tree.entries.len() as u64,
            _ => 0,
        };
        NodeHeader {
            node_type: self.node_type(),
            clock: self.clock,
            size,
        }
    }
}
