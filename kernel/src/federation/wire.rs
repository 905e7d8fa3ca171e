//! The federation protocol's requests and replies, canonical CBOR like every JIT message.
//! Over the message plane each is a query on `jit/federation/<op>` (the operations
//! `federation.hello`, `.head`, `.depend` and `.fetch`); over the RPC the same payloads travel
//! in request envelopes. `docs/federation.md` gives every schema.

use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};

use crate::id::NodeId;

pub use crate::sync::wire::{FetchReply, FetchedNode};

/// Most entries of the publish log one head reply carries; a longer log comes in several.
pub const MAX_ENTRIES: usize = 4096;
/// Largest encoded publish log entry accepted.
pub const MAX_ENTRY: usize = 1024;
/// Longest identity chain accepted (key rotations since the universe began).
pub const MAX_CHAIN: usize = 64;

/// Stage 1: a sealed [`jit_proto::federation::Hello`] and the importer's identity chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloRequest {
    /// The sealed hello.
    pub hello: ByteBuf,
    /// The importer's signed identity documents, version 1 first.
    pub identity: Vec<ByteBuf>,
}

/// Stage 2: a sealed [`jit_proto::federation::Accept`] and the publisher's identity chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloReply {
    /// The sealed accept.
    pub accept: ByteBuf,
    /// The publisher's signed identity documents, version 1 first.
    pub identity: Vec<ByteBuf>,
}

/// The signed head, and the log entries after the ones the importer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadRequest {
    /// The session token.
    pub session: ByteBuf,
    /// How many entries the importer holds verified (the size of its last head).
    pub from: u64,
}

/// The publisher's head and what the importer lacks of its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadReply {
    /// The signed head; none before the first publish.
    pub head: Option<ByteBuf>,
    /// Entries `from` onwards (at most [`MAX_ENTRIES`]; `more` says if others follow).
    pub entries: Vec<ByteBuf>,
    /// Whether entries beyond these exist (ask again from the new size).
    pub more: bool,
    /// RFC 9162 consistency proof from the importer's size to the head's.
    pub consistency: Vec<ByteArray<32>>,
}

/// Stage 3: the published snapshots the importer depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependRequest {
    /// The session token.
    pub session: ByteBuf,
    /// Published snapshots, by id.
    pub roots: Vec<NodeId>,
    /// Published snapshots of this universe the importer already holds (at most
    /// [`MAX_HAVES`]): the reply then names what the importer likely lacks.
    #[serde(default)]
    pub haves: Vec<NodeId>,
}

/// Most snapshots one dependency declaration may say it holds.
pub const MAX_HAVES: usize = 64;

/// Stage 4: the signed manifest of their closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependReply {
    /// A sealed [`jit_proto::federation::Manifest`].
    pub manifest: ByteBuf,
    /// A hint, not part of what is signed: the closure's nodes the `haves` lack, so the
    /// importer can ask for them in one round. Everything is verified as always.
    #[serde(default)]
    pub missing: Vec<NodeId>,
}

/// Nodes of published closures, by id (sync's fetch, within a session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// The session token.
    pub session: ByteBuf,
    /// The ids, at most [`crate::sync::wire::MAX_FETCH_IDS`].
    pub ids: Vec<NodeId>,
    /// The reply's byte budget.
    pub max_bytes: u64,
}
