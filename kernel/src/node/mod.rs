//! The node model: `{type, parents, clock, payload, metadata}` and its canonical encoding.
//!
//! Content nodes (chunk, blob, tree) are timeless: no parents, clock 0, no metadata, so the same
//! content always has the same id. History nodes (snapshot, rewrite, provenance, federation edge)
//! carry parents and a logical clock greater than every parent's. Everything hashed is an explicit
//! input: author, message and declared time are fields, never read from the machine.
//!
//! The module is split along its seams: `model` holds the types and the rules a node keeps on its
//! own, `codec` the byte-exact canonical CBOR encoding and strict decoding (a node's id is the
//! BLAKE3 of those bytes), `direct` a fast decoder for the one canonical layout of content nodes, and `view` a zero-copy reader for stored bytes. Everything is
//! re-exported here, so callers name `crate::node::X` and never the file it lives in. The store's
//! per-node index entry, [`crate::store::NodeHeader`], lives with the store.

mod codec;
mod direct;
mod model;
mod view;

pub use model::{
    validate_entry_name, Blob, ChunkRef, DeclaredTime, Direction, EntryKind, FederationEdge, Node,
    NodeError, NodeType, Payload, Provenance, Rewrite, RewriteKind, Snapshot, Tree, TreeEntry,
    Trust, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, FORMAT_VERSION, INLINE_MAX, MAX_CLOCK,
};
pub use view::NodeView;
