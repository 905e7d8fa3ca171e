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
    /// Asks for the reply compressed ([`PackedFetchReply`]); honoured when the session shares
    /// `zstd/v1`.
    #[serde(default)]
    pub zstd: bool,
}

/// A fetch reply compressed with zstd: `zstd` decompresses to the canonical CBOR of a
/// [`FetchReply`] of exactly `size` bytes (at most [`crate::sync::wire::MAX_REPLY_FRAME`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackedFetchReply {
    /// The compressed reply.
    pub zstd: ByteBuf,
    /// Its size once decompressed.
    pub size: u64,
}

/// What a federation fetch answers: plain, or compressed when asked and shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FetchAnswer {
    /// Compressed.
    Packed(PackedFetchReply),
    /// Plain.
    Plain(FetchReply),
}

/// zstd level of compressed replies: fast, most of the ratio on source text.
const ZSTD_LEVEL: i32 = 1;

impl FetchAnswer {
    /// `reply`, compressed when `zstd`.
    pub fn new(reply: FetchReply, zstd: bool) -> crate::error::Result<FetchAnswer> {
        if !zstd {
            return Ok(FetchAnswer::Plain(reply));
        }
        let plain = crate::cbor::to_canonical_bytes(&reply)?;
        let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL).map_err(|e| {
            crate::error::Error::InvalidInput(format!("cannot compress a fetch reply: {e}"))
        })?;
        Ok(FetchAnswer::Packed(PackedFetchReply {
            zstd: ByteBuf::from(packed),
            size: plain.len() as u64,
        }))
    }

    /// The reply, decompressed within the bound a reply may have (refused beyond it, before
    /// anything that large is allocated).
    pub fn open(self) -> crate::error::Result<FetchReply> {
        let packed = match self {
            FetchAnswer::Plain(reply) => return Ok(reply),
            FetchAnswer::Packed(packed) => packed,
        };
        let bound = crate::sync::wire::MAX_REPLY_FRAME as u64;
        let refuse = |reason: String| crate::error::Error::Federation {
            code: crate::error::Code::TooLarge,
            message: reason,
        };
        if packed.size > bound {
            return Err(refuse(format!(
                "a compressed reply of {} bytes exceeds {bound}",
                packed.size
            )));
        }
        let plain = zstd::bulk::decompress(&packed.zstd, packed.size as usize).map_err(|e| {
            refuse(format!(
                "a compressed reply does not decompress within its size: {e}"
            ))
        })?;
        if plain.len() as u64 != packed.size {
            return Err(refuse(format!(
                "a compressed reply decompressed to {} bytes, not {}",
                plain.len(),
                packed.size
            )));
        }
        crate::cbor::from_canonical_bytes(&plain).map_err(|e| {
            crate::error::Error::InvalidInput(format!("malformed compressed fetch reply: {e}"))
        })
    }
}

/// Asks a witness to cosign another universe's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    /// The session token (with the witness).
    pub session: ByteBuf,
    /// The universe whose head it is.
    pub universe: ByteArray<16>,
    /// Its signed head.
    pub head: ByteBuf,
    /// The publish log under it.
    pub entries: Vec<ByteBuf>,
}

/// A witness's answer: its sealed [`jit_proto::federation::Cosignature`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignReply {
    /// The sealed cosignature.
    pub cosignature: ByteBuf,
}
