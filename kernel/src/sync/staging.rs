//! Where a pull keeps nodes it has received and verified but not yet appended: in the node
//! table itself, without a header. A node is part of the DAG once its header is written
//! ([`crate::store::Store::has_node`]); until then its bytes wait where they will stay, so the
//! append that ends a pull writes only headers and log records, and each received byte is
//! written once. The bytes survive a crash or a dropped connection, so the next pull fetches
//! only what is still missing.
//!
//! Received nodes are kept in the representation they travelled in when that is one this store
//! can resolve (a delta against a node it holds, within the chain cap), else compressed here.
//!
//! (Stores from before this kept received nodes in a table of their own, `sync_staged`; the
//! append empties it, and a pull fetches again what only it held.)

use std::borrow::Cow;

use crate::error::Result;
use crate::id::NodeId;
use heed::types::Bytes;

use crate::store::{Declared, Op, ReadTxn, Store, TableDef};

/// The table older stores kept received nodes in (emptied by the append that ends a pull).
const STAGED: TableDef<Bytes, Bytes> = TableDef::new("sync_staged", 6);
/// The legacy staging table, for the registry.
pub(crate) const STAGED_TABLE: Declared = STAGED.declared();

/// Keeps verified nodes, each `(id, stored representation)`, durably in one write transaction.
pub fn keep(store: &Store, nodes: &[(NodeId, Cow<'_, [u8]>)]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    store.keep_received(nodes)
}

/// How many received nodes wait to be appended.
pub fn count(store: &Store, txn: &ReadTxn<'_>) -> Result<u64> {
    Ok(store
        .node_count(txn)?
        .saturating_sub(store.header_count(txn)?))
}

/// Empties the legacy staging table inside `op` (the append that ends a pull does).
pub(crate) fn clear(op: &mut Op<'_>) -> Result<()> {
    let table = op.store().table(&STAGED);
    if !table.is_empty(op.txn())? {
        table.clear(op.wtxn())?;
    }
    Ok(())
}
