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

/// How many nodes are visible.
pub fn count(store: &Store, txn: &ReadTxn<'_>) -> Result<u64> {
    Ok(store.table(&VISIBLE).len(txn)?)
}
