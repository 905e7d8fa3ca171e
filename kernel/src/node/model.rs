//! The node model: the types a DAG node is made of and the rules a node must keep on its own.
//!
//! Everything here is plain data plus the context-free checks (`Node::validate_shape`): which
//! types are content and which are history, sorted parents and tree entries, size limits. How a
//! node becomes bytes lives in `codec`; this file must not grow encoding concerns, so that a
//! change to the model shows up as a change to the codec (and so to ids) only when it is meant to.

use std::collections::BTreeMap;

use crate::cbor::CborError;
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

/// A [`NodeError::Shape`] with this message (the codec and the view report shape errors too).
pub(super) fn shape(msg: impl Into<String>) -> NodeError {
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

    /// Parses an encoded rewrite kind (the inverse of [`RewriteKind::as_str`]).
    pub(super) fn parse(s: &str) -> Option<RewriteKind> {
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

impl Trust {
    /// Every level, most trusted first.
    pub const ALL: [Trust; 3] = [Trust::Trusted, Trust::SemiTrusted, Trust::Untrusted];

    /// The level's wire name (in `federation-edge` nodes and on the command line).
    pub const fn as_str(self) -> &'static str {
        match self {
            Trust::Trusted => "trusted",
            Trust::SemiTrusted => "semi-trusted",
            Trust::Untrusted => "untrusted",
        }
    }

    /// The level a wire name names.
    pub fn parse(name: &str) -> Option<Trust> {
        Trust::ALL.into_iter().find(|t| t.as_str() == name)
    }
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
