//! The node model: `{type, parents, clock, payload, metadata}` and its canonical encoding.
//!
//! Content nodes (chunk, blob, tree) are timeless: no parents, clock 0, no metadata, so the same
//! content always has the same id. History nodes (snapshot, rewrite, provenance, federation edge)
//! carry parents and a logical clock greater than every parent's. Everything hashed is an explicit
//! input: author, message and declared time are fields, never read from the machine.

use std::collections::BTreeMap;

use ciborium::value::Value;

use crate::cbor::{self, fields, CborError};
use crate::id::NodeId;

/// Files up to this size are stored inline in one blob node.
pub const INLINE_MAX: usize = 64 * 1024;
/// Content-defined chunking parameters for larger files (FastCDC 2020).
pub const CHUNK_MIN: u32 = 16 * 1024;
/// Average chunk size.
pub const CHUNK_AVG: u32 = 64 * 1024;
/// Largest chunk FastCDC may cut.
pub const CHUNK_MAX: u32 = 256 * 1024;
/// Largest logical clock accepted: far beyond any real history, and far enough below `u64::MAX`
/// that `clock + 1` can never overflow.
pub const MAX_CLOCK: u64 = 1 << 62;
/// Version of the node format, hashed into the root node so a format change changes every id.
pub const FORMAT_VERSION: u64 = 1;

/// The kinds of node the DAG holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    /// The genesis node every universe shares.
    Root,
    /// A content-defined slice of a large file.
    Chunk,
    /// A file's content: inline bytes, or a list of chunks.
    Blob,
    /// A directory listing.
    Tree,
    /// A commit: a tree plus author, message and declared time.
    Snapshot,
    /// An inversion rewrite: records a non-fast-forward move (reset, rebase, merge).
    Rewrite,
    /// Who did what to which node.
    Provenance,
    /// A link from a local node to a node of another universe.
    FederationEdge,
}

impl NodeType {
    /// The name used in the encoding and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Root => "root",
            NodeType::Chunk => "chunk",
            NodeType::Blob => "blob",
            NodeType::Tree => "tree",
            NodeType::Snapshot => "snapshot",
            NodeType::Rewrite => "rewrite",
            NodeType::Provenance => "provenance",
            NodeType::FederationEdge => "federation-edge",
        }
    }

    /// Parses an encoded type name.
    pub fn parse(name: &str) -> Option<NodeType> {
        Some(match name {
            "root" => NodeType::Root,
            "chunk" => NodeType::Chunk,
            "blob" => NodeType::Blob,
            "tree" => NodeType::Tree,
            "snapshot" => NodeType::Snapshot,
            "rewrite" => NodeType::Rewrite,
            "provenance" => NodeType::Provenance,
            "federation-edge" => NodeType::FederationEdge,
            _ => return None,
        })
    }

    /// Content nodes are timeless and parentless.
    pub fn is_content(self) -> bool {
        matches!(self, NodeType::Chunk | NodeType::Blob | NodeType::Tree)
    }
}

/// Why a node cannot be decoded or is not well-formed on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The bytes are not canonical CBOR.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// The node breaks a rule that needs no other node to check.
    #[error("malformed node: {0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> NodeError {
    NodeError::Shape(msg.into())
}

/// A declared point in time: seconds since the Unix epoch plus the author's UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeclaredTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Offset from UTC in minutes, as the author declared it.
    pub tz_minutes: i16,
}

/// A file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    /// Up to [`INLINE_MAX`] bytes held in the node itself.
    Inline(Vec<u8>),
    /// Larger content as an ordered list of chunk nodes.
    Chunked {
        /// Total size in bytes.
        size: u64,
        /// The chunks in order.
        chunks: Vec<ChunkRef>,
    },
}

impl Blob {
    /// The content's length in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Blob::Inline(data) => data.len() as u64,
            Blob::Chunked { size, .. } => *size,
        }
    }
}

/// A chunk's id and length, so reads at an offset need not load earlier chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The chunk node.
    pub id: NodeId,
    /// Its length in bytes.
    pub len: u32,
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (mode 100644).
    File,
    /// An executable file (mode 100755).
    Executable,
    /// A symbolic link; the blob holds the target (mode 120000).
    Symlink,
    /// A subdirectory (mode 040000).
    Directory,
}

impl EntryKind {
    /// The git-compatible numeric mode.
    pub fn mode(self) -> u32 {
        match self {
            EntryKind::File => 0o100644,
            EntryKind::Executable => 0o100755,
            EntryKind::Symlink => 0o120000,
            EntryKind::Directory => 0o040000,
        }
    }

    /// Parses a numeric mode.
    pub fn from_mode(mode: u64) -> Option<EntryKind> {
        Some(match mode {
            0o100644 => EntryKind::File,
            0o100755 => EntryKind::Executable,
            0o120000 => EntryKind::Symlink,
            0o040000 => EntryKind::Directory,
            _ => return None,
        })
    }

    /// The node type an entry of this kind must point at.
    pub fn target_type(self) -> NodeType {
        match self {
            EntryKind::Directory => NodeType::Tree,
            _ => NodeType::Blob,
        }
    }

    /// A short word for output.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Executable => "exec",
            EntryKind::Symlink => "symlink",
            EntryKind::Directory => "dir",
        }
    }
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// The file name (raw bytes, as on Linux).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// The blob or tree it names.
    pub id: NodeId,
}

/// A directory: entries strictly sorted by name bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// The entries, sorted and unique by name.
    pub entries: Vec<TreeEntry>,
}

impl Tree {
    /// Finds an entry by name (binary search: entries are sorted).
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Checks one path component: non-empty, no `/` or NUL, not `.` or `..`.
pub fn validate_entry_name(name: &[u8]) -> Result<(), NodeError> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(shape(format!(
            "invalid tree entry name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(shape(format!(
            "tree entry name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// A commit of a tree onto a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The root tree.
    pub tree: NodeId,
    /// Author, conventionally `Name <email>`.
    pub author: String,
    /// The commit message.
    pub message: String,
    /// The declared time.
    pub time: DeclaredTime,
}

/// What kind of non-fast-forward move a rewrite node records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteKind {
    /// The branch was set back (or sideways) to an existing snapshot's content.
    Reset,
    /// Work was replayed onto another snapshot.
    Rebase,
    /// Two lines of work were merged.
    Merge,
}

impl RewriteKind {
    /// The encoded name.
    pub fn as_str(self) -> &'static str {
        match self {
            RewriteKind::Reset => "reset",
            RewriteKind::Rebase => "rebase",
            RewriteKind::Merge => "merge",
        }
    }

    fn parse(s: &str) -> Option<RewriteKind> {
        Some(match s {
            "reset" => RewriteKind::Reset,
            "rebase" => RewriteKind::Rebase,
            "merge" => RewriteKind::Merge,
            _ => return None,
        })
    }
}

/// An inversion rewrite: the branch moved from `from` towards `to` without rewriting history.
/// Its parents are exactly `{from, to}`; the snapshot that carries the result has it as parent,
/// so the branch still only moves forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Which operation.
    pub kind: RewriteKind,
    /// The branch tip before the move (the mainline).
    pub from: NodeId,
    /// The snapshot moved to, merged in, or rebased onto.
    pub to: NodeId,
    /// The merge base, for merges.
    pub base: Option<NodeId>,
}

/// Records who did what to the node that is its single parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The acting agent or person.
    pub agent: String,
    /// What was done.
    pub action: String,
    /// Free-form details, sorted by key.
    pub detail: BTreeMap<String, String>,
}

/// Direction of a federation link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We depend on the remote node.
    Import,
    /// The remote depends on our node.
    Export,
}

/// Trust declared for a remote universe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Fully trusted.
    Trusted,
    /// Verified but limited.
    SemiTrusted,
    /// Read-only, verify everything.
    Untrusted,
}

/// A link from a local node to a node of another universe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationEdge {
    /// The local node (also the edge's only parent).
    pub local: NodeId,
    /// The remote universe's UUID.
    pub universe: [u8; 16],
    /// The remote node, by its id in that universe.
    pub remote: NodeId,
    /// Which way the dependency points.
    pub direction: Direction,
    /// Why the link exists.
    pub purpose: String,
    /// Trust level at the time of linking.
    pub trust: Trust,
}

/// The typed payload of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Genesis.
    Root,
    /// Raw chunk bytes.
    Chunk(Vec<u8>),
    /// File content.
    Blob(Blob),
    /// Directory.
    Tree(Tree),
    /// Commit.
    Snapshot(Snapshot),
    /// Inversion rewrite.
    Rewrite(Rewrite),
    /// Provenance record.
    Provenance(Provenance),
    /// Federation link.
    FederationEdge(FederationEdge),
}

/// A DAG node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Parent ids, strictly ascending.
    pub parents: Vec<NodeId>,
    /// Logical clock: greater than every parent's.
    pub clock: u64,
    /// Typed content.
    pub payload: Payload,
    /// Extra declared attributes (hashed). Empty for content nodes.
    pub metadata: BTreeMap<String, String>,
}

impl Node {
    /// The genesis node shared by every universe of this format version.
    pub fn root() -> Node {
        Node::content(Payload::Root)
    }

    /// A parentless, timeless node (root, chunk, blob, tree).
    pub fn content(payload: Payload) -> Node {
        Node {
            parents: Vec::new(),
            clock: 0,
            payload,
            metadata: BTreeMap::new(),
        }
    }

    /// A history node; parents are sorted and deduplicated here.
    pub fn with_parents(mut parents: Vec<NodeId>, clock: u64, payload: Payload) -> Node {
        parents.sort_unstable();
        parents.dedup();
        Node {
            parents,
            clock,
            payload,
            metadata: BTreeMap::new(),
        }
    }

    /// This node's type.
    pub fn node_type(&self) -> NodeType {
        match &self.payload {
            Payload::Root => NodeType::Root,
            Payload::Chunk(_) => NodeType::Chunk,
            Payload::Blob(_) => NodeType::Blob,
            Payload::Tree(_) => NodeType::Tree,
            Payload::Snapshot(_) => NodeType::Snapshot,
            Payload::Rewrite(_) => NodeType::Rewrite,
            Payload::Provenance(_) => NodeType::Provenance,
            Payload::FederationEdge(_) => NodeType::FederationEdge,
        }
    }

    /// Every node id this node points at besides its parents (tree entries, chunks, a snapshot's
    /// tree, a rewrite's endpoints). All must exist before this node is appended.
    pub fn references(&self) -> Vec<(NodeId, NodeType)> {
        match &self.payload {
            Payload::Blob(Blob::Chunked { chunks, .. }) => {
                chunks.iter().map(|c| (c.id, NodeType::Chunk)).collect()
            }
            Payload::Tree(tree) => tree
                .entries
                .iter()
                .map(|e| (e.id, e.kind.target_type()))
                .collect(),
            Payload::Snapshot(s) => vec![(s.tree, NodeType::Tree)],
            _ => Vec::new(),
        }
    }

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
        let value = cbor::decode(bytes)?;
        let node = Node::from_value(&value)?;
        node.validate_shape()?;
        Ok(node)
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

    /// Rules that need no other node: sorted parents, per-type parent and clock rules, sorted
    /// tree entries, consistent blob sizes.
    pub fn validate_shape(&self) -> Result<(), NodeError> {
        if self.parents.windows(2).any(|p| p[0] >= p[1]) {
            return Err(shape("parents are not sorted by id and unique"));
        }
        let node_type = self.node_type();
        if self.clock > MAX_CLOCK {
            return Err(shape(format!(
                "clock {} exceeds the maximum {MAX_CLOCK}",
                self.clock
            )));
        }
        if node_type == NodeType::Snapshot && self.parents.len() != 1 {
            return Err(shape(
                "a snapshot has exactly one parent (merges go through a rewrite node)",
            ));
        }
        if node_type.is_content() || node_type == NodeType::Root {
            if !self.parents.is_empty() || self.clock != 0 || !self.metadata.is_empty() {
                return Err(shape(format!(
                    "{} nodes have no parents, clock 0 and no metadata",
                    node_type.as_str()
                )));
            }
        } else if self.parents.is_empty() || self.clock == 0 {
            return Err(shape(format!(
                "{} nodes need at least one parent and a clock above 0",
                node_type.as_str()
            )));
        }
        match &self.payload {
            Payload::Chunk(data) => {
                if data.is_empty() || data.len() > CHUNK_MAX as usize {
                    return Err(shape("chunk length out of range"));
                }
            }
            Payload::Blob(Blob::Inline(data)) => {
                if data.len() > INLINE_MAX {
                    return Err(shape("inline blob larger than the inline limit"));
                }
            }
            Payload::Blob(Blob::Chunked { size, chunks }) => {
                let total: u64 = chunks.iter().map(|c| c.len as u64).sum();
                if *size <= INLINE_MAX as u64 || total != *size {
                    return Err(shape("chunked blob size does not match its chunks"));
                }
                if chunks.iter().any(|c| c.len == 0 || c.len > CHUNK_MAX) {
                    return Err(shape("chunk length out of range"));
                }
            }
            Payload::Tree(tree) => {
                for entry in &tree.entries {
                    validate_entry_name(&entry.name)?;
                }
                if tree.entries.windows(2).any(|e| e[0].name >= e[1].name) {
                    return Err(shape("tree entries are not sorted by name and unique"));
                }
            }
            Payload::Rewrite(rewrite) => {
                let mut expected = vec![rewrite.from, rewrite.to];
                expected.sort_unstable();
                if rewrite.from == rewrite.to || self.parents != expected {
                    return Err(shape("a rewrite's parents must be exactly {from, to}"));
                }
            }
            Payload::Provenance(_) => {
                if self.parents.len() != 1 {
                    return Err(shape("a provenance node has exactly one parent"));
                }
            }
            Payload::FederationEdge(edge) => {
                if self.parents != [edge.local] {
                    return Err(shape("a federation edge's only parent is its local node"));
                }
            }
            Payload::Root | Payload::Snapshot(_) => {}
        }
        Ok(())
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
            (
                text("trust"),
                text(match e.trust {
                    Trust::Trusted => "trusted",
                    Trust::SemiTrusted => "semi-trusted",
                    Trust::Untrusted => "untrusted",
                }),
            ),
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
            let trust = match fields::as_text(fields::require(map, "trust")?, "trust")? {
                "trusted" => Trust::Trusted,
                "semi-trusted" => Trust::SemiTrusted,
                "untrusted" => Trust::Untrusted,
                other => return Err(shape(format!("unknown trust level {other:?}"))),
            };
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
    /// The payload's encoded bytes.
    pub payload: &'a [u8],
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
                payload,
            }),
            _ => Err(shape("node lacks type, clock or payload")),
        }
    }

    /// A chunk's bytes, borrowed from the store.
    pub fn chunk_data(&self) -> Result<&'a [u8], NodeError> {
        if self.node_type != NodeType::Chunk {
            return Err(shape("not a chunk"));
        }
        Ok(cbor::Reader::new(self.payload).bytes()?)
    }
}

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
