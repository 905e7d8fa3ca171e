//! Golden vectors: fixed nodes must encode to fixed bytes and ids on every machine, forever (or
//! until FORMAT_VERSION changes). The expected values are checked in at `tests/golden/nodes.txt`;
//! regenerate deliberately with `JIT_BLESS=1 cargo test -p jit-kernel --test golden`.

use std::collections::BTreeMap;

use jit_kernel::cbor::{self, CborError};
use jit_kernel::node::*;
use jit_kernel::NodeId;

fn id(byte: u8) -> NodeId {
    NodeId([byte; 32])
}

fn golden_nodes() -> Vec<(&'static str, Node)> {
    let time = DeclaredTime {
        seconds: 1_700_000_000,
        tz_minutes: -300,
    };
    let mut edge_parents = Node::with_parents(
        vec![id(1)],
        9,
        Payload::FederationEdge(FederationEdge {
            local: id(1),
            universe: [0xab; 16],
            remote: id(2),
            direction: Direction::Import,
            purpose: "vendored lib".into(),
            trust: Trust::SemiTrusted,
        }),
    );
    edge_parents.metadata.insert("why".into(), "test".into());
    vec![
        ("root", Node::root()),
        ("empty-tree", Node::content(Payload::Tree(Tree::default()))),
        (
            "blob-hello",
            Node::content(Payload::Blob(Blob::Inline(b"hello\n".to_vec()))),
        ),
        ("chunk", Node::content(Payload::Chunk(vec![0x5a; 100]))),
        (
            "blob-chunked",
            Node::content(Payload::Blob(Blob::Chunked {
                size: 70_000,
                chunks: vec![
                    ChunkRef {
                        id: id(3),
                        len: 40_000,
                    },
                    ChunkRef {
                        id: id(4),
                        len: 30_000,
                    },
                ],
            })),
        ),
        (
            "tree",
            Node::content(Payload::Tree(Tree {
                entries: vec![
                    TreeEntry {
                        name: b"README".to_vec(),
                        kind: EntryKind::File,
                        id: id(5),
                    },
                    TreeEntry {
                        name: b"run".to_vec(),
                        kind: EntryKind::Executable,
                        id: id(6),
                    },
                    TreeEntry {
                        name: b"src".to_vec(),
                        kind: EntryKind::Directory,
                        id: id(7),
                    },
                    TreeEntry {
                        name: b"x".to_vec(),
                        kind: EntryKind::Symlink,
                        id: id(8),
                    },
                ],
            })),
        ),
        (
            "snapshot",
            Node::with_parents(
                vec![id(9)],
                1,
                Payload::Snapshot(Snapshot {
                    tree: id(10),
                    author: "Ada <ada@example.org>".into(),
                    message: "first\n\nbody ünïcode".into(),
                    time,
                }),
            ),
        ),
        (
            "rewrite",
            Node::with_parents(
                vec![id(12), id(11)],
                5,
                Payload::Rewrite(Rewrite {
                    kind: RewriteKind::Reset,
                    from: id(12),
                    to: id(11),
                    base: None,
                }),
            ),
        ),
        (
            "provenance",
            Node::with_parents(
                vec![id(13)],
                2,
                Payload::Provenance(Provenance {
                    agent: "agent-7".into(),
                    action: "patch".into(),
                    detail: BTreeMap::from([("sws".into(), "abc".into())]),
                }),
            ),
        ),
        ("federation-edge", edge_parents),
    ]
}

const GOLDEN: &str = include_str!("golden/nodes.txt");

#[test]
fn nodes_encode_to_the_checked_in_bytes_and_ids() {
    let computed: Vec<String> = golden_nodes()
        .into_iter()
        .map(|(name, node)| {
            let (id, bytes) = node.encode_with_id().expect("golden node encodes");
            format!("{name} {id} {}", hex::encode(bytes))
        })
        .collect();
    if std::env::var_os("JIT_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/nodes.txt");
        std::fs::write(path, computed.join("\n") + "\n").expect("write golden file");
        return;
    }
    let expected: Vec<&str> = GOLDEN.lines().collect();
    assert_eq!(computed.len(), expected.len(), "number of golden vectors");
    for (got, want) in computed.iter().zip(expected) {
        assert_eq!(got, want);
    }
}

#[test]
fn checked_in_bytes_decode_back_to_the_same_nodes() {
    for ((name, node), line) in golden_nodes().into_iter().zip(GOLDEN.lines()) {
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some(name));
        let id: NodeId = parts.next().unwrap().parse().unwrap();
        let bytes = hex::decode(parts.next().unwrap()).unwrap();
        assert_eq!(
            NodeId::of_bytes(&bytes),
            id,
            "{name}: id is the BLAKE3 of the bytes"
        );
        assert_eq!(Node::decode(&bytes).unwrap(), node, "{name}");
    }
}

fn golden_bytes(name: &str) -> Vec<u8> {
    let line = GOLDEN
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap();
    hex::decode(line.rsplit(' ').next().unwrap()).unwrap()
}

#[test]
fn indefinite_lengths_are_rejected() {
    let bytes = golden_bytes("blob-hello");
    // The top-level map head is 0xa5 (5 entries); rewrite it as indefinite (0xbf ... 0xff).
    let mut indefinite = bytes.clone();
    indefinite[0] = 0xbf;
    indefinite.push(0xff);
    assert!(matches!(
        Node::decode(&indefinite),
        Err(NodeError::Cbor(CborError::NonCanonical {
            reason: "indefinite-length item",
            ..
        }))
    ));
    indefinite.truncate(1);
    assert!(Node::decode(&indefinite).is_err());
}

#[test]
fn unsorted_keys_are_rejected() {
    // {"b": 1, "a": 2}: well-formed, but keys out of order.
    let bytes = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
    assert!(matches!(
        cbor::decode(&bytes),
        Err(CborError::NonCanonical {
            reason: "map keys not in canonical (bytewise) order",
            ..
        })
    ));
    // The same inside a real node: swap the first two keys of the root node.
    let root = golden_bytes("root");
    let value = cbor::decode(&root).unwrap();
    let ciborium::value::Value::Map(mut entries) = value else {
        panic!("root is a map")
    };
    entries.swap(0, 1);
    let mut unsorted = vec![0xa0 | entries.len() as u8];
    for (k, v) in &entries {
        unsorted.extend(cbor::encode(k).unwrap());
        unsorted.extend(cbor::encode(v).unwrap());
    }
    assert!(matches!(
        Node::decode(&unsorted),
        Err(NodeError::Cbor(CborError::NonCanonical { .. }))
    ));
}

#[test]
fn non_minimal_integers_are_rejected() {
    // 5 written as a one-byte argument (0x18 0x05) instead of inline (0x05).
    assert!(matches!(
        cbor::decode(&[0x18, 0x05]),
        Err(CborError::NonCanonical {
            reason: "integer or length not in its shortest form",
            ..
        })
    ));
    // 300 written with four bytes.
    assert!(cbor::decode(&[0x1a, 0, 0, 1, 44]).is_err());
    // A text length written long-form inside a node: the root's clock 0 → 0x18 0x00.
    let root = golden_bytes("root");
    let clock_key = [0x65, b'c', b'l', b'o', b'c', b'k', 0x00];
    let at = root
        .windows(clock_key.len())
        .position(|w| w == clock_key)
        .unwrap();
    let mut long = root.clone();
    long.splice(at + 6..at + 7, [0x18, 0x00]);
    assert!(matches!(
        Node::decode(&long),
        Err(NodeError::Cbor(CborError::NonCanonical { .. }))
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = golden_bytes("snapshot");
    bytes.push(0x00);
    assert!(matches!(
        Node::decode(&bytes),
        Err(NodeError::Cbor(CborError::NonCanonical {
            reason: "trailing bytes after the item",
            ..
        }))
    ));
}

#[test]
fn schema_breaking_nodes_are_rejected() {
    // Unknown field, wrong types, unsorted parents, inline blob over the limit.
    let mut snapshot = golden_nodes().remove(6).1;
    snapshot.parents = vec![id(2), id(1)];
    assert!(
        snapshot.encode().is_err(),
        "unsorted parents cannot be encoded"
    );
    let big = Node::content(Payload::Blob(Blob::Inline(vec![0; INLINE_MAX + 1])));
    assert!(big.encode().is_err(), "oversized inline blob");
    let bad_name = Node::content(Payload::Tree(Tree {
        entries: vec![TreeEntry {
            name: b"a/b".to_vec(),
            kind: EntryKind::File,
            id: id(1),
        }],
    }));
    assert!(bad_name.encode().is_err(), "slash in a tree entry name");
}

/// Any mutation of golden bytes that still decodes must be canonical: re-encoding gives the
/// same bytes. (A cheap property test over thousands of single-byte edits.)
#[test]
fn whatever_decodes_re_encodes_identically() {
    let mut accepted = 0;
    for line in GOLDEN.lines() {
        let bytes = hex::decode(line.rsplit(' ').next().unwrap()).unwrap();
        for i in 0..bytes.len() {
            for delta in [1u8, 0x20, 0x80] {
                let mut mutated = bytes.clone();
                mutated[i] = mutated[i].wrapping_add(delta);
                if let Ok(node) = Node::decode(&mutated) {
                    accepted += 1;
                    assert_eq!(
                        node.encode().unwrap(),
                        mutated,
                        "mutation at {i} decoded non-canonically"
                    );
                }
                if let Ok(value) = cbor::decode(&mutated) {
                    assert_eq!(cbor::encode(&value).unwrap(), mutated);
                }
            }
        }
    }
    assert!(
        accepted > 0,
        "some payload-byte mutations are still valid nodes"
    );
}
