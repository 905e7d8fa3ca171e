//! The canonical CBOR codec for nodes: `Node::encode`, `Node::decode` and the payload schemas.
//!
//! A node's id is the BLAKE3 of the bytes written here, and those bytes are canonical CBOR
//! (RFC 8949 §4.2.1: shortest heads, definite lengths, map keys sorted by their encoded bytes), so
//! this code must stay byte-exact: any change to what it writes changes every id and breaks the
//! golden vectors in `kernel/tests/golden/nodes.txt`. The hot content payloads (chunk, inline blob,
//! tree) are written field by field; the rest go through a CBOR `Value` (`payload_value`), which
//! is also the reference schema the direct writer is tested against. Decoding is strict and
//! re-checks the model's shape rules, so accepted bytes always re-encode to themselves.

use std::collections::BTreeMap;

use ciborium::value::Value;

use super::model::{
    shape, Blob, ChunkRef, DeclaredTime, Direction, EntryKind, FederationEdge, Node, NodeError,
    NodeType, Payload, Provenance, Rewrite, RewriteKind, Snapshot, Tree, TreeEntry, Trust,
    FORMAT_VERSION,
};
use crate::cbor::{self, fields};
use crate::id::NodeId;

impl Node {
    /// Canonical bytes of this node. Written field by field, in canonical key order, rather
    /// than through a [`Value`]: a patch re-encodes every directory above the file it changes,
    /// and building the value tree allocated several times per entry. `to_value` is the
    /// reference this must match (tests compare them on nodes of every type).
    pub fn encode(&self) -> Result<Vec<u8>, NodeError> {
        self.validate_shape()?;
        let mut out = Vec::with_capacity(64 + self.payload_size_hint());
        // Keys sorted by their encoded bytes: shorter first, then bytewise.
        cbor::write_head(&mut out, cbor::MAP, 5);
        cbor::write_text(&mut out, "type");
        cbor::write_text(&mut out, self.node_type().as_str());
        cbor::write_text(&mut out, "clock");
        cbor::write_head(&mut out, cbor::UNSIGNED, self.clock);
        cbor::write_text(&mut out, "parents");
        cbor::write_head(&mut out, cbor::ARRAY, self.parents.len() as u64);
        for parent in &self.parents {
            cbor::write_bytes(&mut out, &parent.0);
        }
        cbor::write_text(&mut out, "payload");
        write_payload(&mut out, &self.payload)?;
        cbor::write_text(&mut out, "metadata");
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        cbor::encode_into(&Value::Map(metadata), &mut out)?;
        Ok(out)
    }

    /// Roughly how many bytes the payload encodes to, to size the buffer once.
    fn payload_size_hint(&self) -> usize {
        match &self.payload {
            Payload::Chunk(data) | Payload::Blob(Blob::Inline(data)) => data.len() + 16,
            Payload::Blob(Blob::Chunked { chunks, .. }) => chunks.len() * 40,
            Payload::Tree(tree) => tree.entries.iter().map(|e| e.name.len() + 42).sum(),
            _ => 128,
        }
    }

    /// Canonical bytes and the id they hash to.
    pub fn encode_with_id(&self) -> Result<(NodeId, Vec<u8>), NodeError> {
        let bytes = self.encode()?;
        Ok((NodeId::of_bytes(&bytes), bytes))
    }

    /// Strictly decodes canonical bytes, checking every context-free rule.
    pub fn decode(bytes: &[u8]) -> Result<Node, NodeError> {
        // Content nodes in their one canonical layout decode directly; anything else (or a
        // node that breaks a shape rule) goes through the strict decoder, which says why.
        if let Some(node) = super::direct::decode(bytes) {
            if node.validate_shape().is_ok() {
                return Ok(node);
            }
        }
        let value = cbor::decode(bytes)?;
        let node = Node::from_value(&value)?;
        node.validate_shape()?;
        Ok(node)
    }

    /// The header of canonical bytes that are a content leaf (a chunk or an inline blob) keeping
    /// the shape rules, read in place without copying the content; `None` for anything else
    /// (which [`Node::decode`] then reads or refuses).
    pub(crate) fn leaf_header(bytes: &[u8]) -> Option<crate::store::NodeHeader> {
        super::direct::leaf_header(bytes)
    }

    /// The node as a CBOR value: the schema [`Node::encode`] writes directly.
    #[cfg(test)]
    fn to_value(&self) -> Value {
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        Value::Map(vec![
            (text("type"), text(self.node_type().as_str())),
            (
                text("parents"),
                Value::Array(self.parents.iter().map(id_value).collect()),
            ),
            (text("clock"), Value::Integer(self.clock.into())),
            (text("payload"), payload_value(&self.payload)),
            (text("metadata"), Value::Map(metadata)),
        ])
    }

    fn from_value(value: &Value) -> Result<Node, NodeError> {
        let map = fields::as_map(value, "node")?;
        fields::only(map, &["type", "parents", "clock", "payload", "metadata"])?;
        let type_name = fields::as_text(fields::require(map, "type")?, "type")?;
        let node_type = NodeType::parse(type_name)
            .ok_or_else(|| shape(format!("unknown type {type_name:?}")))?;
        let parents = fields::as_array(fields::require(map, "parents")?, "parents")?
            .iter()
            .map(|v| id_from(v, "parent"))
            .collect::<Result<Vec<_>, _>>()?;
        let clock = fields::as_u64(fields::require(map, "clock")?, "clock")?;
        let mut metadata = BTreeMap::new();
        for (k, v) in fields::as_map(fields::require(map, "metadata")?, "metadata")? {
            let key = fields::as_text(k, "metadata key")?.to_owned();
            let val = fields::as_text(v, "metadata value")?.to_owned();
            metadata.insert(key, val);
        }
        let payload = payload_from(node_type, fields::require(map, "payload")?)?;
        Ok(Node {
            parents,
            clock,
            payload,
            metadata,
        })
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn id_value(id: &NodeId) -> Value {
    Value::Bytes(id.0.to_vec())
}

fn id_from(v: &Value, what: &str) -> Result<NodeId, NodeError> {
    NodeId::from_slice(fields::as_bytes(v, what)?)
        .ok_or_else(|| shape(format!("{what} id must be 32 bytes")))
}

fn int(n: impl Into<ciborium::value::Integer>) -> Value {
    Value::Integer(n.into())
}

/// Appends a payload's canonical encoding: content payloads (written by every patch) directly,
/// the others through [`payload_value`].
fn write_payload(out: &mut Vec<u8>, payload: &Payload) -> Result<(), cbor::CborError> {
    match payload {
        Payload::Chunk(data) => cbor::write_bytes(out, data),
        // Keys in canonical order: "data" and "size" have the same length.
        Payload::Blob(Blob::Inline(data)) => {
            cbor::write_head(out, cbor::MAP, 2);
            cbor::write_text(out, "data");
            cbor::write_bytes(out, data);
            cbor::write_text(out, "size");
            cbor::write_head(out, cbor::UNSIGNED, data.len() as u64);
        }
        Payload::Tree(tree) => {
            cbor::write_head(out, cbor::MAP, 1);
            cbor::write_text(out, "entries");
            cbor::write_head(out, cbor::ARRAY, tree.entries.len() as u64);
            for entry in &tree.entries {
                cbor::write_head(out, cbor::ARRAY, 3);
                cbor::write_bytes(out, &entry.name);
                cbor::write_head(out, cbor::UNSIGNED, u64::from(entry.kind.mode()));
                cbor::write_bytes(out, &entry.id.0);
            }
        }
        other => cbor::encode_into(&payload_value(other), out)?,
    }
    Ok(())
}

fn payload_value(payload: &Payload) -> Value {
    match payload {
        Payload::Root => Value::Map(vec![(text("format"), int(FORMAT_VERSION))]),
        Payload::Chunk(data) => Value::Bytes(data.clone()),
        Payload::Blob(Blob::Inline(data)) => Value::Map(vec![
            (text("size"), int(data.len() as u64)),
            (text("data"), Value::Bytes(data.clone())),
        ]),
        Payload::Blob(Blob::Chunked { size, chunks }) => Value::Map(vec![
            (text("size"), int(*size)),
            (
                text("chunks"),
                Value::Array(
                    chunks
                        .iter()
                        .map(|c| Value::Array(vec![id_value(&c.id), int(c.len)]))
                        .collect(),
                ),
            ),
        ]),
        Payload::Tree(tree) => Value::Map(vec![(
            text("entries"),
            Value::Array(
                tree.entries
                    .iter()
                    .map(|e| {
                        Value::Array(vec![
                            Value::Bytes(e.name.clone()),
                            int(e.kind.mode()),
                            id_value(&e.id),
                        ])
                    })
                    .collect(),
            ),
        )]),
        Payload::Snapshot(s) => Value::Map(vec![
            (text("tree"), id_value(&s.tree)),
            (text("author"), text(&s.author)),
            (text("message"), text(&s.message)),
            (text("time"), int(s.time.seconds)),
            (text("tz"), int(s.time.tz_minutes)),
        ]),
        Payload::Rewrite(r) => {
            let mut map = vec![
                (text("kind"), text(r.kind.as_str())),
                (text("from"), id_value(&r.from)),
                (text("to"), id_value(&r.to)),
            ];
            if let Some(base) = &r.base {
                map.push((text("base"), id_value(base)));
            }
            Value::Map(map)
        }
        Payload::Provenance(p) => Value::Map(vec![
            (text("agent"), text(&p.agent)),
            (text("action"), text(&p.action)),
            (
                text("detail"),
                Value::Map(p.detail.iter().map(|(k, v)| (text(k), text(v))).collect()),
            ),
        ]),
        Payload::FederationEdge(e) => Value::Map(vec![
            (text("local"), id_value(&e.local)),
            (text("universe"), Value::Bytes(e.universe.to_vec())),
            (text("remote"), id_value(&e.remote)),
            (
                text("direction"),
                text(match e.direction {
                    Direction::Import => "import",
                    Direction::Export => "export",
                }),
            ),
            (text("purpose"), text(&e.purpose)),
            (text("trust"), text(e.trust.as_str())),
        ]),
    }
}

fn payload_from(node_type: NodeType, v: &Value) -> Result<Payload, NodeError> {
    Ok(match node_type {
        NodeType::Root => {
            let map = fields::as_map(v, "root payload")?;
            fields::only(map, &["format"])?;
            let format = fields::as_u64(fields::require(map, "format")?, "format")?;
            if format != FORMAT_VERSION {
                return Err(shape(format!("unsupported node format {format}")));
            }
            Payload::Root
        }
        NodeType::Chunk => Payload::Chunk(fields::as_bytes(v, "chunk")?.to_vec()),
        NodeType::Blob => {
            let map = fields::as_map(v, "blob payload")?;
            let size = fields::as_u64(fields::require(map, "size")?, "size")?;
            if let Some(data) = fields::get(map, "data") {
                fields::only(map, &["size", "data"])?;
                let data = fields::as_bytes(data, "data")?.to_vec();
                if data.len() as u64 != size {
                    return Err(shape("inline blob size does not match its data"));
                }
                Payload::Blob(Blob::Inline(data))
            } else {
                fields::only(map, &["size", "chunks"])?;
                let chunks = fields::as_array(fields::require(map, "chunks")?, "chunks")?
                    .iter()
                    .map(|c| {
                        let pair = fields::as_array(c, "chunk ref")?;
                        let [id, len] = pair else {
                            return Err(shape("chunk ref must be [id, len]"));
                        };
                        let len = u32::try_from(fields::as_u64(len, "chunk length")?)
                            .map_err(|_| shape("chunk length out of range"))?;
                        Ok(ChunkRef {
                            id: id_from(id, "chunk")?,
                            len,
                        })
                    })
                    .collect::<Result<Vec<_>, NodeError>>()?;
                Payload::Blob(Blob::Chunked { size, chunks })
            }
        }
        NodeType::Tree => {
            let map = fields::as_map(v, "tree payload")?;
            fields::only(map, &["entries"])?;
            let entries = fields::as_array(fields::require(map, "entries")?, "entries")?
                .iter()
                .map(|e| {
                    let triple = fields::as_array(e, "tree entry")?;
                    let [name, mode, id] = triple else {
                        return Err(shape("tree entry must be [name, mode, id]"));
                    };
                    let mode = fields::as_u64(mode, "mode")?;
                    Ok(TreeEntry {
                        name: fields::as_bytes(name, "entry name")?.to_vec(),
                        kind: EntryKind::from_mode(mode)
                            .ok_or_else(|| shape(format!("unknown mode {mode:o}")))?,
                        id: id_from(id, "entry")?,
                    })
                })
                .collect::<Result<Vec<_>, NodeError>>()?;
            Payload::Tree(Tree { entries })
        }
        NodeType::Snapshot => {
            let map = fields::as_map(v, "snapshot payload")?;
            fields::only(map, &["tree", "author", "message", "time", "tz"])?;
            let tz = fields::as_i64(fields::require(map, "tz")?, "tz")?;
            Payload::Snapshot(Snapshot {
                tree: id_from(fields::require(map, "tree")?, "tree")?,
                author: fields::as_text(fields::require(map, "author")?, "author")?.to_owned(),
                message: fields::as_text(fields::require(map, "message")?, "message")?.to_owned(),
                time: DeclaredTime {
                    seconds: fields::as_i64(fields::require(map, "time")?, "time")?,
                    tz_minutes: i16::try_from(tz).map_err(|_| shape("tz out of range"))?,
                },
            })
        }
        NodeType::Rewrite => {
            let map = fields::as_map(v, "rewrite payload")?;
            fields::only(map, &["kind", "from", "to", "base"])?;
            let kind_name = fields::as_text(fields::require(map, "kind")?, "kind")?;
            Payload::Rewrite(Rewrite {
                kind: RewriteKind::parse(kind_name)
                    .ok_or_else(|| shape(format!("unknown rewrite kind {kind_name:?}")))?,
                from: id_from(fields::require(map, "from")?, "from")?,
                to: id_from(fields::require(map, "to")?, "to")?,
                base: fields::get(map, "base")
                    .map(|b| id_from(b, "base"))
                    .transpose()?,
            })
        }
        NodeType::Provenance => {
            let map = fields::as_map(v, "provenance payload")?;
            fields::only(map, &["agent", "action", "detail"])?;
            let mut detail = BTreeMap::new();
            for (k, val) in fields::as_map(fields::require(map, "detail")?, "detail")? {
                detail.insert(
                    fields::as_text(k, "detail key")?.to_owned(),
                    fields::as_text(val, "detail value")?.to_owned(),
                );
            }
            Payload::Provenance(Provenance {
                agent: fields::as_text(fields::require(map, "agent")?, "agent")?.to_owned(),
                action: fields::as_text(fields::require(map, "action")?, "action")?.to_owned(),
                detail,
            })
        }
        NodeType::FederationEdge => {
            let map = fields::as_map(v, "federation edge payload")?;
            fields::only(
                map,
                &[
                    "local",
                    "universe",
                    "remote",
                    "direction",
                    "purpose",
                    "trust",
                ],
            )?;
            let universe = <[u8; 16]>::try_from(fields::as_bytes(
                fields::require(map, "universe")?,
                "universe",
            )?)
            .map_err(|_| shape("universe id must be 16 bytes"))?;
            let direction = match fields::as_text(fields::require(map, "direction")?, "direction")?
            {
                "import" => Direction::Import,
                "export" => Direction::Export,
                other => return Err(shape(format!("unknown direction {other:?}"))),
            };
            let trust = fields::as_text(fields::require(map, "trust")?, "trust")?;
            let trust = Trust::parse(trust)
                .ok_or_else(|| shape(format!("unknown trust level {trust:?}")))?;
            Payload::FederationEdge(FederationEdge {
                local: id_from(fields::require(map, "local")?, "local")?,
                universe,
                remote: id_from(fields::require(map, "remote")?, "remote")?,
                direction,
                purpose: fields::as_text(fields::require(map, "purpose")?, "purpose")?.to_owned(),
                trust,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    /// One node of every type, with metadata on one of them.
    fn samples() -> Vec<Node> {
        let tree = Tree {
            entries: vec![
                TreeEntry {
                    name: b"a.txt".to_vec(),
                    kind: EntryKind::File,
                    id: id(1),
                },
                TreeEntry {
                    name: b"bin".to_vec(),
                    kind: EntryKind::Directory,
                    id: id(2),
                },
                TreeEntry {
                    name: "z-\u{e9}".repeat(20).into_bytes(),
                    kind: EntryKind::Executable,
                    id: id(3),
                },
            ],
        };
        let mut with_metadata = Node::with_parents(
            vec![id(9)],
            7,
            Payload::Provenance(Provenance {
                agent: "agent".into(),
                action: "patch".into(),
                detail: [("sws".to_owned(), "s1".to_owned())].into(),
            }),
        );
        with_metadata
            .metadata
            .insert("a-much-longer-key".into(), "v".into());
        with_metadata.metadata.insert("b".into(), "w".into());
        vec![
            Node::root(),
            Node::content(Payload::Chunk(vec![5; 300])),
            Node::content(Payload::Blob(Blob::Inline(b"hello\n".to_vec()))),
            Node::content(Payload::Blob(Blob::Chunked {
                size: 70_000,
                chunks: vec![
                    ChunkRef {
                        id: id(4),
                        len: 40_000,
                    },
                    ChunkRef {
                        id: id(5),
                        len: 30_000,
                    },
                ],
            })),
            Node::content(Payload::Tree(Tree::default())),
            Node::content(Payload::Tree(tree)),
            Node::with_parents(
                vec![id(6)],
                3,
                Payload::Snapshot(Snapshot {
                    tree: id(2),
                    author: "A <a@example.org>".into(),
                    message: "m".repeat(300),
                    time: DeclaredTime {
                        seconds: -5,
                        tz_minutes: -120,
                    },
                }),
            ),
            Node::with_parents(
                vec![id(7), id(6)],
                4,
                Payload::Rewrite(Rewrite {
                    kind: RewriteKind::Rebase,
                    from: id(7),
                    to: id(6),
                    base: Some(id(1)),
                }),
            ),
            with_metadata,
            Node::with_parents(
                vec![id(6)],
                5,
                Payload::FederationEdge(FederationEdge {
                    local: id(6),
                    universe: [1; 16],
                    remote: id(3),
                    direction: Direction::Import,
                    purpose: "vendor".into(),
                    trust: Trust::SemiTrusted,
                }),
            ),
        ]
    }

    #[test]
    fn direct_encoding_matches_the_value_schema_and_decodes_back() {
        for node in samples() {
            let direct = node.encode().unwrap_or_else(|e| panic!("{node:?}: {e}"));
            let reference = cbor::encode(&node.to_value()).expect("reference encoding");
            assert_eq!(direct, reference, "{:?}", node.node_type());
            assert_eq!(Node::decode(&direct).expect("decodes"), node);
        }
    }
}
