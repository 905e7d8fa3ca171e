//! What a transfer fetches into ([`Holding`]) and what it hands over ([`Received`]): the seam
//! between the transfer ([`super::transfer`]), shared by sync and federation, and what each
//! does with the nodes (a replica keeps them for its DAG; an import keeps only a closure).

use std::borrow::Cow;

use ciborium::value::Value;

use super::wire::FetchReply;
use crate::command::Operation;
use crate::error::Result;
use crate::id::NodeId;
use crate::store::ReadTxn;

/// What a transfer fetches into.
pub(crate) trait Holding: Sync {
    /// Whether `id` is already held (it and what it needs are not fetched).
    fn held(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool>;
    /// The canonical bytes of `id` if an earlier transfer staged it (asked only of a node
    /// [`Holding::held`] says is not held).
    fn staged<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<Cow<'t, [u8]>>>;
    /// Keeps verified nodes durably (one round's).
    fn keep(&self, nodes: &[Received]) -> Result<()>;
    /// Checks a node as it arrives; returns the ids it needs.
    fn check(&self, id: NodeId, bytes: &[u8]) -> Result<Vec<NodeId>>;
    /// The request for `ids`, within a reply budget of `max_bytes`; `stored` asks for nodes
    /// as the peer stores them ([`crate::store::repr`]) rather than canonical bytes.
    fn request(&self, ids: Vec<NodeId>, max_bytes: u64, stored: bool)
        -> Result<(Operation, Value)>;
    /// Whether this holding's peer can send stored representations.
    fn takes_stored(&self) -> bool {
        false
    }
    /// The canonical bytes of a node this holding already has (a delta's base), if any.
    fn base(&self, _txn: &ReadTxn<'_>, _id: &NodeId) -> Result<Option<std::sync::Arc<[u8]>>> {
        Ok(None)
    }
    /// The reply to such a request (a holding whose replies are compressed opens them here).
    fn reply(&self, answer: Value) -> Result<FetchReply> {
        super::wire::from_value(answer, "fetch reply")
    }
}

/// A node received and verified: its canonical bytes, and the representation it travelled in
/// when that was a delta (which a holding may keep as it is, when it holds the base).
pub(crate) struct Received {
    /// The node.
    pub(crate) id: NodeId,
    /// Its canonical bytes (hashed to `id`).
    pub(crate) canonical: Vec<u8>,
    /// The representation it came in, when that was compressed or a delta
    /// ([`crate::store::repr`]); `None` when it came as canonical bytes.
    pub(crate) sent: Option<Vec<u8>>,
}
