//! The sync protocol's messages, encoded as canonical CBOR like every other JIT message.
//! Requests and replies are [`crate::rpc::protocol`] payloads; over the message plane each op
//! is a query on `jit/sync/<op>` (see `docs/sync.md`). The operations are
//! [`jit_proto::Operation`]'s `sync.frontier`, `sync.negotiate` and `sync.fetch`.

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::identity::UniverseInfo;

/// Most ids one fetch request may name.
pub const MAX_FETCH_IDS: usize = 8192;
/// Most bytes one fetch reply carries (a single larger node is still sent alone).
pub const MAX_REPLY_BYTES: u64 = 32 << 20;
/// Largest reply accepted from a peer, in bytes (a fetch reply's budget, or one node larger than
/// it, fits).
pub const MAX_REPLY_FRAME: usize = crate::rpc::protocol::MAX_FRAME;
/// Most CBOR items a reply may decode to (each costs memory beyond its bytes).
pub const MAX_REPLY_ITEMS: usize = 1 << 22;

/// Decodes a peer's reply bytes, refusing an oversized or item-bomb reply before decoding it.
pub fn decode_reply(remote: &str, bytes: &[u8]) -> Result<crate::rpc::protocol::Response> {
    let refuse = |reason: String| Error::Sync {
        remote: remote.to_owned(),
        reason,
    };
    if bytes.len() > MAX_REPLY_FRAME {
        return Err(refuse(format!(
            "a reply of {} bytes exceeds {MAX_REPLY_FRAME}",
            bytes.len()
        )));
    }
    match crate::cbor::shape::items(bytes, MAX_REPLY_ITEMS) {
        // Malformed bytes: the decoder says precisely how (`bad_cbor`), within the item bound.
        Ok(_) | Err(crate::cbor::shape::ShapeError::Malformed) => {}
        Err(e) => return Err(refuse(format!("a reply refused unread: {e}"))),
    }
    Ok(crate::rpc::protocol::Response::decode(bytes)?)
}

/// Most wants or haves one negotiation may name.
pub const MAX_NEGOTIATE_IDS: usize = 1 << 16;

/// The peer's state: its universe and its branches and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontier {
    /// The universe the peer holds (its public description).
    pub universe: UniverseInfo,
    /// The peer's checked-out branch: a hint for `jit clone`, never synced.
    pub head: Option<String>,
    /// Full ref name (`heads/…`, `tags/…`) → target.
    pub refs: BTreeMap<String, NodeId>,
    /// How many nodes the peer holds: at most what a clone brings over, so a clone can show a
    /// bar with a total. Absent from peers that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u64>,
    /// Whether the peer sends nodes as it stores them ([`FetchRequest::stored`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stored: bool,
}

/// Tips we lack and tips we hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiateRequest {
    /// History nodes to send the ancestry of.
    pub wants: Vec<NodeId>,
    /// History nodes we hold with all their ancestry; unknown ones are ignored.
    pub haves: Vec<NodeId>,
}

/// The history nodes the asker lacks, parents before children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiateReply {
    /// History node ids (root, snapshots, rewrites, provenance, federation edges).
    pub history: Vec<NodeId>,
}

/// Node bytes wanted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// The ids, at most [`MAX_FETCH_IDS`].
    pub ids: Vec<NodeId>,
    /// The reply's byte budget (capped at [`MAX_REPLY_BYTES`]).
    pub max_bytes: u64,
    /// Asks for each node as the peer stores it — compressed, or a delta against another node
    /// ([`crate::store::repr`]) — rather than its canonical bytes. The asker rebuilds and
    /// hashes every node either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stored: bool,
    /// With `stored`: no deltas — a node stored as a delta is sent compressed whole (the asker
    /// asks so for deltas whose base it lacks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
}

/// Some of the requested nodes, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchReply {
    /// Nodes sent; requested ids neither here nor in `missing` did not fit the budget.
    pub nodes: Vec<FetchedNode>,
    /// Requested ids the peer does not hold.
    pub missing: Vec<NodeId>,
}

/// One node as it travels: its claimed id and canonical bytes (or, when asked, its stored
/// representation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchedNode {
    /// The id it is offered under (checked against the bytes on arrival).
    pub id: NodeId,
    /// Canonical CBOR bytes, or the stored representation when the request asked for it.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A message as a CBOR value.
pub fn to_value<T: Serialize>(message: &T) -> Result<Value> {
    Ok(cbor::to_value(message)?)
}

/// A message from a CBOR value, with a clear error naming what was malformed.
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    cbor::from_value(value).map_err(|e| Error::InvalidInput(format!("malformed {what}: {e}")))
}
