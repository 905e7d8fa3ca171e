//! Where a pull keeps nodes it has received and verified but not yet appended. The table
//! survives a crash or a dropped connection, so the next pull fetches only what is still
//! missing; the append that ends a pull empties it in the same transaction.

use crate::error::Result;
use crate::id::NodeId;
use heed::types::Bytes;

use crate::store::{Declared, Op, ReadTxn, Store, TableDef};

/// NodeId → verified bytes received by a pull that has not been appended yet.
const STAGED: TableDef<Bytes, Bytes> = TableDef::new("sync_staged", 6);
/// The staging table, for the registry.
pub(crate) const STAGED_TABLE: Declared = STAGED.declared();

/// Keeps verified nodes (id, canonical bytes) durably, in one write transaction.
pub fn keep(store: &Store, nodes: &[(NodeId, Vec<u8>)]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    store.unlogged_write(|txn| {
        for (id, bytes) in nodes {
            store.table(&STAGED).put(txn, id.as_bytes(), bytes)?;
        }
        Ok(())
    })
}

/// A staged node's bytes, if one was kept.
pub fn get<'t>(store: &Store, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<&'t [u8]>> {
    Ok(store.table(&STAGED).get(txn, id.as_bytes())?)
}

/// How many nodes are staged.
pub fn count(store: &Store, txn: &ReadTxn<'_>) -> Result<u64> {
    Ok(store.table(&STAGED).len(txn)?)
}

/// Empties the staging table inside `op` (the append that ends a pull does).
pub(crate) fn clear(op: &mut Op<'_>) -> Result<()> {
    op.store().table(&STAGED).clear(op.wtxn())?;
    Ok(())
}
