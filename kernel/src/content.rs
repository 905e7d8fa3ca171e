//! File content → content nodes, and back.
//!
//! Content up to [`INLINE_MAX`] bytes becomes one inline blob. Anything larger is cut by FastCDC
//! (content-defined, so an edit moves only nearby boundaries) into chunk nodes, listed in order by
//! one blob node: a one-byte change to a 1 GiB file adds a few chunks and one new chunk list, not
//! a new gigabyte. The representation is a pure function of the bytes, so equal content always has
//! equal ids.

use std::io::{Cursor, Read, Write};

use fastcdc::v2020::StreamCDC;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{
    Blob, ChunkRef, Node, NodeType, NodeView, Payload, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, INLINE_MAX,
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

/// Chunks asked for at once when a blob is read whole: a batch is verified in parallel
/// ([`Source::bytes_many`]). 32 chunks of the average size are 2 MiB.
const READ_BATCH: usize = 32;

/// Reads a blob's whole content.
pub fn read_blob(src: &dyn Source, blob: &NodeId) -> Result<Vec<u8>> {
    let layout = BlobLayout::load(src, blob)?;
    if let BlobLayout::Inline(data) = layout {
        return Ok(data);
    }
    // The chunk list's total is only a hint (it comes from stored bytes): capped for the
    // allocation.
    let mut out = Vec::with_capacity(layout.len().min(64 << 20) as usize);
    layout.for_each_piece(src, &mut |piece| {
        out.extend_from_slice(piece);
        Ok(())
    })?;
    Ok(out)
}

/// Writes a blob's content to `out` piece by piece (never the whole of a large file in
/// memory); returns its size.
pub fn write_blob(src: &dyn Source, blob: &NodeId, out: &mut dyn Write) -> Result<u64> {
    BlobLayout::load(src, blob)?.for_each_piece(src, &mut |piece| {
        out.write_all(piece).map_err(|e| Error::io("<output>", e))
    })
}

/// A blob's content length, read from its node without touching its chunks.
pub fn blob_size(src: &dyn Source, blob: &NodeId) -> Result<u64> {
    let header = src.header(blob)?.ok_or(Error::NodeNotFound(*blob))?;
    if header.node_type != NodeType::Blob {
        return Err(Error::NotA {
            id: *blob,
            found: header.node_type.as_str(),
            expected: "blob",
        });
    }
    Ok(header.size)
}

/// Where a blob's bytes are: inline, or chunk by chunk with each chunk's starting offset. Loaded
/// once per open file, so reads of a huge file decode its chunk list once, not per read.
#[derive(Debug, Clone)]
pub enum BlobLayout {
    /// The whole content, held in the blob node.
    Inline(Vec<u8>),
    /// Chunks in order, each with the offset of its first byte.
    Chunked(Vec<(u64, ChunkRef)>),
}

impl BlobLayout {
    /// Decodes the blob node `blob`.
    pub fn load(src: &dyn Source, blob: &NodeId) -> Result<BlobLayout> {
        match src.node(blob)?.payload {
            Payload::Blob(Blob::Inline(data)) => Ok(BlobLayout::Inline(data)),
            Payload::Blob(Blob::Chunked { chunks, .. }) => {
                let mut at = 0u64;
                let mut out = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    let len = u64::from(chunk.len);
                    out.push((at, chunk));
                    at += len;
                }
                Ok(BlobLayout::Chunked(out))
            }
            other => Err(Error::NotA {
                id: *blob,
                found: Node::content(other).node_type().as_str(),
                expected: "blob",
            }),
        }
    }

    /// The content's length: the end of the last chunk (read from the chunk list, not the
    /// chunks).
    pub fn len(&self) -> u64 {
        match self {
            BlobLayout::Inline(data) => data.len() as u64,
            BlobLayout::Chunked(chunks) => chunks
                .last()
                .map_or(0, |(at, chunk)| at + u64::from(chunk.len)),
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the whole content to `sink` in order, a chunk at a time (chunks fetched and
    /// verified in batches); returns its size.
    pub fn for_each_piece(
        &self,
        src: &dyn Source,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        match self {
            BlobLayout::Inline(data) => {
                sink(data)?;
                Ok(data.len() as u64)
            }
            BlobLayout::Chunked(chunks) => {
                let mut size = 0u64;
                for batch in chunks.chunks(READ_BATCH) {
                    let ids: Vec<NodeId> = batch.iter().map(|(_, chunk)| chunk.id).collect();
                    for (id, bytes) in ids.iter().zip(src.bytes_many(&ids)?) {
                        let bytes = bytes.ok_or(Error::NodeNotFound(*id))?;
                        let view = NodeView::peek(&bytes)?;
                        let data = view.chunk_data()?;
                        size += data.len() as u64;
                        sink(data)?;
                    }
                }
                Ok(size)
            }
        }
    }

    /// Reads up to `len` bytes from `offset` (fewer at the end), touching only the chunks that
    /// overlap the range.
    pub fn read(&self, src: &dyn Source, offset: u64, len: usize) -> Result<Vec<u8>> {
        match self {
            BlobLayout::Inline(data) => {
                let start = offset.min(data.len() as u64) as usize;
                let end = start.saturating_add(len).min(data.len());
                Ok(data[start..end].to_vec())
            }
            BlobLayout::Chunked(chunks) => {
                let end = offset.saturating_add(len as u64);
                let first = chunks.partition_point(|(at, c)| at + u64::from(c.len) <= offset);
                let mut out = Vec::with_capacity(len.min(64 << 20));
                for (at, chunk) in &chunks[first..] {
                    if *at >= end {
                        break;
                    }
                    let bytes = src.bytes(&chunk.id)?.ok_or(Error::NodeNotFound(chunk.id))?;
                    let view = NodeView::peek(&bytes)?;
                    let data = view.chunk_data()?;
                    let from = offset.saturating_sub(*at) as usize;
                    let to = ((end - at) as usize).min(data.len());
                    if from < to {
                        out.extend_from_slice(&data[from..to]);
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Reads up to `len` bytes of a blob from `offset` (see [`BlobLayout`] to read one blob often).
pub fn read_range(src: &dyn Source, blob: &NodeId, offset: u64, len: usize) -> Result<Vec<u8>> {
    BlobLayout::load(src, blob)?.read(src, offset, len)
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
    fn ranges_match_the_whole_content() {
        struct Nodes(std::collections::HashMap<NodeId, Vec<u8>>);
        impl Source for Nodes {
            fn bytes(&self, id: &NodeId) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
                Ok(self.0.get(id).map(|b| b.as_slice().into()))
            }
        }
        for data in [pseudo_random(3 << 20, 4), b"short inline content".to_vec()] {
            let (blob, nodes) = split_bytes(&data).unwrap();
            let src = Nodes(nodes.into_iter().map(|n| (n.id, n.bytes)).collect());
            assert_eq!(blob_size(&src, &blob).unwrap(), data.len() as u64);
            let len = data.len() as u64;
            for (offset, want) in [
                (0, 10),
                (5, 100_000),
                (len - 3, 4096),
                (len, 10),
                (len + 9, 1),
            ] {
                let got = read_range(&src, &blob, offset, want).unwrap();
                let start = offset.min(len) as usize;
                let end = (start + want).min(data.len());
                assert_eq!(got, data[start..end], "offset {offset} len {want}");
            }
            let mut at = 0;
            let mut whole = Vec::new();
            while at < len {
                let part = read_range(&src, &blob, at, 131_072).unwrap();
                at += part.len() as u64;
                whole.extend(part);
            }
            assert_eq!(whole, data);
        }
    }

    #[test]
    fn splitting_is_deterministic() {
        let data = pseudo_random(1 << 20, 9);
        assert_eq!(split_bytes(&data).unwrap().0, split_bytes(&data).unwrap().0);
    }
}
