//! File content → content nodes, and back.
//!
//! Content up to [`INLINE_MAX`] bytes becomes one inline blob. Anything larger is cut by FastCDC
//! (content-defined, so an edit moves only nearby boundaries) into chunk nodes, listed in order by
//! one blob node: a one-byte change to a 1 GiB file adds a few chunks and one new chunk list, not
//! a new gigabyte. The representation is a pure function of the bytes, so equal content always has
//! equal ids.

use std::io::{Cursor, Read};

use fastcdc::v2020::StreamCDC;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{
    Blob, ChunkRef, Node, NodeView, Payload, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, INLINE_MAX,
};
use crate::source::Source;

/// A node ready to append: its id, canonical bytes and decoded form.
#[derive(Debug, Clone)]
pub struct EncodedNode {
    /// The id (hash of `bytes`).
    pub id: NodeId,
    /// Canonical bytes.
    pub bytes: Vec<u8>,
    /// The node itself, so appending need not decode the bytes again.
    pub node: Node,
}

impl EncodedNode {
    /// Encodes a node.
    pub fn new(node: Node) -> Result<EncodedNode> {
        let (id, bytes) = node.encode_with_id()?;
        Ok(EncodedNode { id, bytes, node })
    }
}

/// Splits the content read from `reader` into nodes, handing each to `emit` parents-first
/// (chunks before the blob that lists them). Returns the blob's id and the content's size.
pub fn split<R: Read>(
    mut reader: R,
    emit: &mut dyn FnMut(EncodedNode) -> Result<()>,
) -> Result<(NodeId, u64)> {
    let mut head = Vec::with_capacity(4096);
    (&mut reader)
        .take(INLINE_MAX as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("<content>", e))?;
    if head.len() <= INLINE_MAX {
        let size = head.len() as u64;
        let blob = EncodedNode::new(Node::content(Payload::Blob(Blob::Inline(head))))?;
        let id = blob.id;
        emit(blob)?;
        return Ok((id, size));
    }
    let stream = StreamCDC::new(
        Cursor::new(head).chain(reader),
        CHUNK_MIN,
        CHUNK_AVG,
        CHUNK_MAX,
    );
    let mut chunks = Vec::new();
    let mut size = 0u64;
    for chunk in stream {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => Error::io("<content>", io),
            other => Error::InvalidInput(format!("chunking failed: {other}")),
        })?;
        let len = chunk.data.len() as u32;
        size += len as u64;
        let node = EncodedNode::new(Node::content(Payload::Chunk(chunk.data)))?;
        chunks.push(ChunkRef { id: node.id, len });
        emit(node)?;
    }
    let blob = EncodedNode::new(Node::content(Payload::Blob(Blob::Chunked { size, chunks })))?;
    let id = blob.id;
    emit(blob)?;
    Ok((id, size))
}

/// Splits in-memory content; returns the blob id and every node, parents-first.
pub fn split_bytes(data: &[u8]) -> Result<(NodeId, Vec<EncodedNode>)> {
    let mut nodes = Vec::new();
    let (id, _) = split(data, &mut |n| {
        nodes.push(n);
        Ok(())
    })?;
    Ok((id, nodes))
}

/// Reads a blob's whole content.
pub fn read_blob(src: &dyn Source, blob: &NodeId) -> Result<Vec<u8>> {
    match src.node(blob)?.payload {
        Payload::Blob(Blob::Inline(data)) => Ok(data),
        Payload::Blob(Blob::Chunked { size, chunks }) => {
            // The declared size is only a hint: never trust it for an allocation.
            let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
            for chunk in chunks {
                match src.bytes(&chunk.id)? {
                    Some(bytes) => out.extend_from_slice(NodeView::peek(bytes)?.chunk_data()?),
                    None => return Err(Error::NodeNotFound(chunk.id)),
                }
            }
            Ok(out)
        }
        other => Err(Error::NotA {
            id: *blob,
            found: Node::content(other).node_type().as_str(),
            expected: "blob",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn small_content_is_one_inline_blob() {
        let (id, nodes) = split_bytes(b"hello\n").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].id, id);
        let (_, again) = split_bytes(&vec![7u8; INLINE_MAX]).unwrap();
        assert_eq!(again.len(), 1, "exactly INLINE_MAX bytes stays inline");
    }

    #[test]
    fn large_content_is_chunked_and_a_small_edit_adds_few_chunks() {
        let data = pseudo_random(8 << 20, 1);
        let (a, nodes_a) = split_bytes(&data).unwrap();
        assert!(nodes_a.len() > 50, "8 MiB should give many chunks");
        let mut edited = data.clone();
        edited[4 << 20] ^= 0xff;
        let (b, nodes_b) = split_bytes(&edited).unwrap();
        assert_ne!(a, b);
        let old: std::collections::HashSet<_> = nodes_a.iter().map(|n| n.id).collect();
        let new = nodes_b.iter().filter(|n| !old.contains(&n.id)).count();
        // The changed chunk (possibly two around a moved boundary) plus the new chunk list.
        assert!(new <= 3, "a one-byte edit added {new} nodes");
    }

    #[test]
    fn splitting_is_deterministic() {
        let data = pseudo_random(1 << 20, 9);
        assert_eq!(split_bytes(&data).unwrap().0, split_bytes(&data).unwrap().0);
    }
}
