//! Where a pull keeps nodes it has received and verified but not yet appended. The table
//! survives a crash or a dropped connection, so the next pull fetches only what is still
//! missing; the append that ends a pull empties it in the same transaction.

use crate::error::Result;
use crate::id::NodeId;
use crate::store::{ReadTxn, Store};

/// Keeps verified nodes (id, canonical bytes) durably, in one write transaction.
pub fn keep(store: &Store, nodes: &[(NodeId, Vec<u8>)]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    store.unlogged_write(|txn| {
        for (id, bytes) in nodes {
            store.sync_staged.put(txn, id.as_bytes(), bytes)?;
        }
        Ok(())
    })
}

/// A staged node's bytes, if one was kept.
pub fn get<'t>(store: &Store, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<&'t [u8]>> {
    Ok(store.sync_staged.get(txn, id.as_bytes())?)
}

/// How many nodes are staged.
pub fn count(store: &Store, txn: &ReadTxn<'_>) -> Result<u64> {
    Ok(store.sync_staged.len(txn)?)
}
