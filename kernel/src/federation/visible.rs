//! What this universe shows other universes: the closure of every snapshot it ever published
//! ([`super::closure`]), indexed so that serving asks one question of one table per node.
//!
//! ASL's visibility table follows from it: a published snapshot and the trees, blobs and chunks
//! that support it are visible; an internal snapshot, an internal artifact and the blocks only
//! internal artifacts use are not — and a node another universe may not see is answered exactly
//! as a node that does not exist, through the same lookup, so internal ids cannot be enumerated.
//!
//! The index grows in the transaction of each publish and never shrinks (the publish log is
//! append-only). A subtree already shown is not walked again, so publishing a new epoch that
//! changed one file walks only the path to it.

use heed::types::Bytes;
use heed::RwTxn;

use super::closure;
use crate::error::Result;
use crate::id::NodeId;
use crate::source::Dag;
use crate::store::{Declared, ReadTxn, Store, TableDef};

/// Node id → nothing: the nodes of published closures.
const VISIBLE: TableDef<Bytes, Bytes> = TableDef::new("federation_visible", 9);
/// The visible-index table, for the registry.
pub(crate) const VISIBLE_TABLE: Declared = VISIBLE.declared();
/// Published snapshot id → its closure's node count (8 bytes, big-endian), digest (32 bytes)
/// and encoded bytes (8, big-endian): what a manifest states, computed once at publish instead
/// of at every import.
const SUMMARIES: TableDef<Bytes, Bytes> = TableDef::new("federation_summaries", 13);
/// The summaries table, for the registry.
pub(crate) const SUMMARIES_TABLE: Declared = SUMMARIES.declared();

/// What a manifest says of one published snapshot's closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many nodes the closure holds.
    pub count: u64,
    /// `jit_proto::federation::closure_digest` of their ids.
    pub digest: [u8; 32],
    /// Their encoded bytes.
    pub bytes: u64,
}

/// Whether another universe may see node `id`.
pub fn contains(store: &Store, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool> {
    Ok(store.table(&VISIBLE).get(txn, id.as_bytes())?.is_some())
}

/// Shows `snapshot`'s closure, inside the publish's write transaction; returns how many nodes
/// became visible.
pub(crate) fn show(store: &Store, wtxn: &mut RwTxn<'_>, snapshot: NodeId) -> Result<u64> {
    let table = store.table(&VISIBLE);
    let new = {
        let txn: &ReadTxn<'_> = wtxn;
        closure::walk(&Dag::new(store, txn), &[snapshot], |id| {
            Ok(table.get(txn, id.as_bytes())?.is_some())
        })?
    };
    for id in &new {
        table.put(wtxn, id.as_bytes(), &[])?;
    }
    Ok(new.len() as u64)
}

/// Records the summary of `snapshot`'s closure, inside the publish's write transaction.
pub(crate) fn summarize(store: &Store, wtxn: &mut RwTxn<'_>, snapshot: NodeId) -> Result<Summary> {
    let (ids, bytes) = {
        let txn: &ReadTxn<'_> = wtxn;
        closure::walk_with_bytes(&Dag::new(store, txn), &[snapshot], |_| Ok(false))?
    };
    let summary = Summary {
        count: ids.len() as u64,
        digest: jit_proto::federation::closure_digest(ids.iter().map(|id| &id.0)),
        bytes,
    };
    let mut value = summary.count.to_be_bytes().to_vec();
    value.extend_from_slice(&summary.digest);
    value.extend_from_slice(&summary.bytes.to_be_bytes());
    store
        .table(&SUMMARIES)
        .put(wtxn, snapshot.as_bytes(), &value)?;
    Ok(summary)
}

/// The summary of a published snapshot's closure, if one was recorded.
pub fn summary(store: &Store, txn: &ReadTxn<'_>, snapshot: &NodeId) -> Result<Option<Summary>> {
    let Some(value) = store.table(&SUMMARIES).get(txn, snapshot.as_bytes())? else {
        return Ok(None);
    };
    // A summary recorded before it held the bytes (40 bytes) is walked again instead.
    if value.len() != 48 {
        return Ok(None);
    }
    let (count, rest) = value.split_at(8);
    let (digest, bytes) = rest.split_at(32);
    match (
        <[u8; 8]>::try_from(count),
        <[u8; 32]>::try_from(digest),
        <[u8; 8]>::try_from(bytes),
    ) {
        (Ok(count), Ok(digest), Ok(bytes)) => Ok(Some(Summary {
            count: u64::from_be_bytes(count),
            digest,
            bytes: u64::from_be_bytes(bytes),
        })),
        _ => Err(crate::error::Error::InvalidInput(format!(
            "the closure summary of {snapshot} is damaged"
        ))),
    }
}

/// How many nodes are visible.
pub fn count(store: &Store, txn: &ReadTxn<'_>) -> Result<u64> {
    Ok(store.table(&VISIBLE).len(txn)?)
}
