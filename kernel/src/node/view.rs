//! `NodeView`: a zero-copy look at stored node bytes.
//!
//! Readers that only need a node's type, clock, parents or a chunk's bytes (ancestry walks, content
//! reads) take them straight from the store's memory map instead of decoding and copying the whole
//! payload. It reads the same canonical CBOR the codec writes, and trusts that the store already
//! validated it; it never writes bytes, so it cannot change an encoding or an id.

use std::borrow::Cow;

use super::model::{shape, NodeError, NodeType};
use crate::cbor;
use crate::id::NodeId;

/// A zero-copy look at stored node bytes: type, clock, parents and the raw payload, without
/// decoding (and copying) the payload. Only for bytes the store already validated.
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    /// The node's type.
    pub node_type: NodeType,
    /// The node's logical clock.
    pub clock: u64,
    /// The node's parents.
    pub parents: Vec<NodeId>,
    /// The payload's encoded bytes (borrowed from the store's map when it keeps the node as
    /// it is; owned when the node was rebuilt from a compressed form).
    pub payload: Cow<'a, [u8]>,
}

impl<'a> NodeView<'a> {
    /// Reads the header fields of canonical node bytes.
    pub fn peek(bytes: &'a [u8]) -> Result<NodeView<'a>, NodeError> {
        let mut r = cbor::Reader::new(bytes);
        let entries = r.expect(5)?;
        let (mut node_type, mut clock, mut parents, mut payload) = (None, None, Vec::new(), None);
        for _ in 0..entries {
            match r.text()? {
                "type" => {
                    let name = r.text()?;
                    node_type = Some(
                        NodeType::parse(name)
                            .ok_or_else(|| shape(format!("unknown type {name:?}")))?,
                    );
                }
                "clock" => clock = Some(r.expect(0)?),
                "parents" => {
                    for _ in 0..r.expect(4)? {
                        parents.push(
                            NodeId::from_slice(r.bytes()?)
                                .ok_or_else(|| shape("parent id must be 32 bytes"))?,
                        );
                    }
                }
                "payload" => {
                    let start = r.position();
                    r.skip()?;
                    payload = Some(&bytes[start..r.position()]);
                }
                _ => r.skip()?,
            }
        }
        match (node_type, clock, payload) {
            (Some(node_type), Some(clock), Some(payload)) => Ok(NodeView {
                node_type,
                clock,
                parents,
                payload: Cow::Borrowed(payload),
            }),
            _ => Err(shape("node lacks type, clock or payload")),
        }
    }

    /// A chunk's bytes, borrowed from the view.
    pub fn chunk_data(&self) -> Result<&[u8], NodeError> {
        if self.node_type != NodeType::Chunk {
            return Err(shape("not a chunk"));
        }
        Ok(cbor::Reader::new(&self.payload).bytes()?)
    }

    /// The view with its payload copied, independent of the bytes it was read from.
    pub fn into_owned(self) -> NodeView<'static> {
        NodeView {
            node_type: self.node_type,
            clock: self.clock,
            parents: self.parents,
            payload: Cow::Owned(self.payload.into_owned()),
        }
    }
}
