//! A direct decoder for the nodes read most: chunks, inline blobs and trees.
//!
//! The strict decoder ([`crate::cbor::decode`]) builds a CBOR value tree first and converts it,
//! which allocates for every key and value and copies content twice; decoding was a quarter of
//! a clone's work. Content nodes have exactly one canonical layout (the one `Node::encode`
//! writes field by field), so this reads that layout straight into a [`Node`]: each key must be
//! the expected one in the expected place, each head in its shortest form (the reader checks),
//! metadata empty, nothing after the end. Bytes that match are canonical by construction. For
//! anything else it returns `None` and [`Node::decode`] runs the strict decoder, which accepts
//! or refuses with the precise reason; tests check both agree on every node this accepts.

use super::model::{
    Blob, EntryKind, Node, NodeType, Payload, Tree, TreeEntry, CHUNK_MAX, INLINE_MAX,
};
use crate::cbor::{self, Reader};
use crate::id::NodeId;
use crate::store::NodeHeader;

/// A content node read in place: a leaf's bytes are borrowed, a tree's entries built.
enum Parsed<'a> {
    Chunk(&'a [u8]),
    InlineBlob(&'a [u8]),
    Tree(Tree),
}

/// The node `bytes` encode, when they are a chunk, an inline blob or a tree in canonical form
/// with no parents and no metadata; `None` otherwise (including for every malformed input).
/// The node's shape rules are not checked here.
pub(super) fn decode(bytes: &[u8]) -> Option<Node> {
    let payload = match parse(bytes)? {
        Parsed::Chunk(data) => Payload::Chunk(data.to_vec()),
        Parsed::InlineBlob(data) => Payload::Blob(Blob::Inline(data.to_vec())),
        Parsed::Tree(tree) => Payload::Tree(tree),
    };
    Some(Node {
        parents: Vec::new(),
        clock: 0,
        payload,
        metadata: Default::default(),
    })
}

/// The header of a chunk or inline blob in its canonical layout that keeps the shape rules
/// (a chunk of 1 to `CHUNK_MAX` bytes, an inline blob of at most `INLINE_MAX`), without
/// copying its bytes: what checking a received leaf needs. `None` for any other bytes.
pub(super) fn leaf_header(bytes: &[u8]) -> Option<NodeHeader> {
    let (node_type, size) = match parse_leaf(bytes)? {
        Parsed::Chunk(data) if !data.is_empty() && data.len() <= CHUNK_MAX as usize => {
            (NodeType::Chunk, data.len())
        }
        Parsed::InlineBlob(data) if data.len() <= INLINE_MAX => (NodeType::Blob, data.len()),
        _ => return None,
    };
    Some(NodeHeader {
        node_type,
        clock: 0,
        size: size as u64,
    })
}

/// [`parse`], for leaves only: a tree (its canonical start, `{"type": "tree", …`) is not built.
fn parse_leaf(bytes: &[u8]) -> Option<Parsed<'_>> {
    const TREE: &[u8] = b"\xa5\x64type\x64tree";
    if bytes.starts_with(TREE) {
        return None;
    }
    parse(bytes)
}

/// Reads the one canonical layout of a content node.
fn parse(bytes: &[u8]) -> Option<Parsed<'_>> {
    let mut r = Reader::new(bytes);
    if r.expect(cbor::MAP).ok()? != 5 || r.text().ok()? != "type" {
        return None;
    }
    let node_type = match r.text().ok()? {
        "chunk" => NodeType::Chunk,
        "blob" => NodeType::Blob,
        "tree" => NodeType::Tree,
        _ => return None,
    };
    key(&mut r, "clock")?;
    if r.expect(cbor::UNSIGNED).ok()? != 0 {
        return None;
    }
    // Content nodes have no parents and clock 0 (a node that breaks that breaks a shape rule:
    // the strict decoder says which).
    key(&mut r, "parents")?;
    if r.expect(cbor::ARRAY).ok()? != 0 {
        return None;
    }
    key(&mut r, "payload")?;
    let parsed = match node_type {
        NodeType::Chunk => Parsed::Chunk(r.bytes().ok()?),
        NodeType::Blob => {
            if r.expect(cbor::MAP).ok()? != 2 {
                return None;
            }
            key(&mut r, "data")?;
            let data = r.bytes().ok()?;
            key(&mut r, "size")?;
            if r.expect(cbor::UNSIGNED).ok()? != data.len() as u64 {
                return None;
            }
            Parsed::InlineBlob(data)
        }
        _ => Parsed::Tree(tree(&mut r)?),
    };
    key(&mut r, "metadata")?;
    if r.expect(cbor::MAP).ok()? != 0 || !r.is_at_end() {
        return None;
    }
    Some(parsed)
}

/// A tree payload: `{"entries": [[name, mode, id], …]}`.
fn tree(r: &mut Reader<'_>) -> Option<Tree> {
    if r.expect(cbor::MAP).ok()? != 1 {
        return None;
    }
    key(r, "entries")?;
    let count = r.expect(cbor::ARRAY).ok()?;
    // Each entry takes at least 36 bytes: never reserve more than the input could hold.
    let mut entries = Vec::with_capacity((count as usize).min(r.remaining() / 36));
    for _ in 0..count {
        if r.expect(cbor::ARRAY).ok()? != 3 {
            return None;
        }
        let name = r.bytes().ok()?.to_vec();
        let kind = EntryKind::from_mode(r.expect(cbor::UNSIGNED).ok()?)?;
        entries.push(TreeEntry {
            name,
            kind,
            id: id(r)?,
        });
    }
    Some(Tree { entries })
}

/// Reads a text string that must be `expected`.
fn key(r: &mut Reader<'_>, expected: &str) -> Option<()> {
    (r.text().ok()? == expected).then_some(())
}

/// Reads a 32-byte id.
fn id(r: &mut Reader<'_>) -> Option<NodeId> {
    NodeId::from_slice(r.bytes().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Content nodes: chunks, inline blobs and trees with names that may break shape rules.
    fn content_node() -> impl Strategy<Value = Node> {
        let entry = (
            proptest::collection::vec(proptest::sample::select(b"ab.-_z\xc3\xa9".to_vec()), 1..10),
            prop_oneof![
                Just(EntryKind::File),
                Just(EntryKind::Executable),
                Just(EntryKind::Symlink),
                Just(EntryKind::Directory),
            ],
            any::<[u8; 32]>(),
        )
            .prop_map(|(name, kind, id)| TreeEntry {
                name,
                kind,
                id: NodeId(id),
            });
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Chunk),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|data| Payload::Blob(Blob::Inline(data))),
            proptest::collection::vec(entry, 0..8).prop_map(|mut entries| {
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                entries.dedup_by(|a, b| a.name == b.name);
                Payload::Tree(Tree { entries })
            }),
        ]
        .prop_map(|payload| Node::with_parents(Vec::new(), 0, payload))
    }

    /// Bytes a hostile peer might send: a node's canonical bytes with one byte changed, one
    /// removed or one added.
    fn mutated(bytes: &[u8], at: usize, byte: u8, how: u8) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at = at % (out.len() + 1);
        match how % 3 {
            0 if at < out.len() => out[at] = byte,
            1 if at < out.len() => {
                out.remove(at);
            }
            _ => out.insert(at, byte),
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every content node's canonical bytes decode directly to the node itself, and a
        /// leaf's header read in place is its header.
        #[test]
        fn content_nodes_decode_directly(node in content_node()) {
            let Ok(bytes) = node.encode() else { return Ok(()) };
            let is_leaf = !matches!(node.payload, Payload::Tree(_));
            prop_assert_eq!(leaf_header(&bytes), is_leaf.then(|| node.header()));
            prop_assert_eq!(decode(&bytes), Some(node));
        }

        /// Whatever the direct decoder or the leaf reader accepts, the strict decoder accepts
        /// as the same node: neither lets through bytes that are not canonical.
        #[test]
        fn direct_never_accepts_what_strict_refuses(
            node in content_node(),
            at in any::<usize>(),
            byte in any::<u8>(),
            how in any::<u8>(),
        ) {
            let Ok(bytes) = node.encode() else { return Ok(()) };
            let bytes = mutated(&bytes, at, byte, how);
            if let Some(header) = leaf_header(&bytes) {
                let strict = Node::decode(&bytes);
                prop_assert!(strict.is_ok(), "leaf reader accepted {:02x?}", bytes);
                prop_assert_eq!(strict.ok().map(|n| n.header()), Some(header));
            }
            if let Some(direct) = decode(&bytes) {
                let value = cbor::decode(&bytes);
                prop_assert!(value.is_ok(), "direct accepted non-canonical bytes {:02x?}", bytes);
                if direct.validate_shape().is_ok() {
                    prop_assert_eq!(Node::decode(&bytes).ok(), Some(direct.clone()));
                    prop_assert_eq!(direct.encode().ok(), Some(bytes));
                }
            }
        }
    }

    /// History nodes, and content that carries metadata, are left to the strict decoder.
    #[test]
    fn other_nodes_are_left_to_the_strict_decoder() {
        let tree = NodeId([7; 32]);
        let snapshot = Node::with_parents(
            vec![NodeId([1; 32])],
            2,
            Payload::Snapshot(crate::node::Snapshot {
                tree,
                author: "a <a@x>".into(),
                message: "m".into(),
                time: crate::node::DeclaredTime {
                    seconds: 1,
                    tz_minutes: 0,
                },
            }),
        );
        let bytes = snapshot.encode().expect("encodes");
        assert_eq!(decode(&bytes), None);
        assert_eq!(Node::decode(&bytes).expect("strict decodes"), snapshot);
        // A chunk carrying metadata (which content may not): refused, by the strict decoder.
        let chunk = Node::with_parents(Vec::new(), 0, Payload::Chunk(b"x".to_vec()));
        let mut bytes = chunk.encode().expect("encodes");
        assert_eq!(bytes.pop(), Some(0xa0), "empty metadata ends the node");
        bytes.extend_from_slice(&[0xa1, 0x61, b'k', 0x61, b'v']);
        assert_eq!(decode(&bytes), None);
        assert!(Node::decode(&bytes).is_err());
    }
}
