//! Where another universe's nodes live here: apart from this universe's DAG, per universe, and
//! byte-identical to how their universe encoded them (RFC-0021 invariants 1, 4 and 5).
//!
//! A foreign node is never in the node table, so it is never counted as local, never found by a
//! local lookup, and a local node naming one as parent is refused by the DAG's ordinary rule
//! (its parents must exist). Two tables, keyed by universe (16 bytes) then node id (32):
//! `federation_nodes` holds what imports committed; `federation_staged` holds what an import in
//! progress has received and verified, so an interrupted transfer resumes where it stopped.
//! The commit of an import moves its staged nodes in the same transaction as its head and edge;
//! a refused import empties its universe's staging, leaving nothing imported.
//!
//! Reads are verified like the DAG's ([`crate::store::verified`]): bytes that no longer hash to
//! their id are refused as corrupt, never served.

use heed::types::Bytes;
use uuid::Uuid;

use crate::error::Result;
use crate::id::NodeId;
use crate::source::Source;
use crate::store::{verified, Declared, Op, ReadTxn, Store, TableDef};

/// (universe, id) → bytes of nodes imported and committed.
const NODES: TableDef<Bytes, Bytes> = TableDef::new("federation_nodes", 10);
/// (universe, id) → bytes received and verified by an import not yet committed.
const STAGED: TableDef<Bytes, Bytes> = TableDef::new("federation_staged", 11);
/// The committed foreign nodes table, for the registry.
pub(crate) const NODES_TABLE: Declared = NODES.declared();
/// The staging table, for the registry.
pub(crate) const STAGED_TABLE: Declared = STAGED.declared();

fn key(universe: Uuid, id: &NodeId) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..16].copy_from_slice(universe.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

/// Whether `universe`'s node `id` is imported here.
pub fn holds(store: &Store, txn: &ReadTxn<'_>, universe: Uuid, id: &NodeId) -> Result<bool> {
    Ok(store.table(&NODES).get(txn, &key(universe, id))?.is_some())
}

/// A staged node's bytes (verified when they were staged; verified again here).
pub fn staged<'t>(
    store: &Store,
    txn: &'t ReadTxn<'_>,
    universe: Uuid,
    id: &NodeId,
) -> Result<Option<&'t [u8]>> {
    match store.table(&STAGED).get(txn, &key(universe, id))? {
        Some(bytes) => Ok(Some(verified(id, bytes)?)),
        None => Ok(None),
    }
}

/// Keeps verified nodes of `universe` staged, durably, in one write transaction.
pub fn stage(store: &Store, universe: Uuid, nodes: &[(NodeId, Vec<u8>)]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    store.unlogged_write(|txn| {
        for (id, bytes) in nodes {
            store.table(&STAGED).put(txn, &key(universe, id), bytes)?;
        }
        Ok(())
    })
}

fn keys_of(
    store: &Store,
    txn: &ReadTxn<'_>,
    table: &TableDef<Bytes, Bytes>,
    universe: Uuid,
) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for entry in store
        .table(table)
        .prefix_iter(txn, &universe.as_bytes()[..])?
    {
        keys.push(entry?.0.to_vec());
    }
    Ok(keys)
}

/// Moves `universe`'s staged nodes that belong to `closure` into the committed table inside
/// `op` (any other staged node is dropped: only a verified closure is ever kept); returns how
/// many were new.
pub(crate) fn commit_staged(
    op: &mut Op<'_>,
    universe: Uuid,
    closure: &std::collections::HashSet<NodeId>,
) -> Result<u64> {
    let store = op.store();
    let keys = keys_of(store, op.txn(), &STAGED, universe)?;
    let mut moved = 0;
    for key in keys {
        let bytes = match store.table(&STAGED).get(op.txn(), &key)? {
            Some(bytes) => bytes.to_vec(),
            None => continue,
        };
        let in_closure = <[u8; 32]>::try_from(&key[16..])
            .map(|id| closure.contains(&NodeId(id)))
            .unwrap_or(false);
        if in_closure && store.table(&NODES).get(op.txn(), &key)?.is_none() {
            store.table(&NODES).put(op.wtxn(), &key, &bytes)?;
            moved += 1;
        }
        store.table(&STAGED).delete(op.wtxn(), &key)?;
    }
    Ok(moved)
}

/// Empties `universe`'s staging inside `op` (a refused import leaves nothing behind).
pub(crate) fn clear_staged(op: &mut Op<'_>, universe: Uuid) -> Result<()> {
    let store = op.store();
    for key in keys_of(store, op.txn(), &STAGED, universe)? {
        store.table(&STAGED).delete(op.wtxn(), &key)?;
    }
    Ok(())
}

/// How many of `universe`'s nodes are committed and staged here.
pub fn counts(store: &Store, txn: &ReadTxn<'_>, universe: Uuid) -> Result<(u64, u64)> {
    let count = |table| -> Result<u64> {
        let mut n = 0;
        for entry in store
            .table(table)
            .prefix_iter(txn, &universe.as_bytes()[..])?
        {
            entry?;
            n += 1;
        }
        Ok(n)
    };
    Ok((count(&NODES)?, count(&STAGED)?))
}

/// Every committed node of `universe`, for `jit fsck`: (id, stored bytes), unverified.
pub fn entries<'t>(
    store: &Store,
    txn: &'t ReadTxn<'_>,
    universe: Uuid,
) -> Result<Vec<(NodeId, &'t [u8])>> {
    let mut out = Vec::new();
    for entry in store
        .table(&NODES)
        .prefix_iter(txn, &universe.as_bytes()[..])?
    {
        let (key, bytes) = entry?;
        let id: [u8; 32] = key[16..].try_into().map_err(|_| {
            crate::error::Error::InvalidInput("a foreign node key is not 48 bytes".into())
        })?;
        out.push((NodeId(id), bytes));
    }
    Ok(out)
}

/// One universe's imported nodes as a [`Source`]: what the mount and `jit cat` read an imported
/// snapshot through. With `staged`, nodes an import has staged are read too (its own checks
/// before it commits).
pub struct Foreign<'a, 't> {
    store: &'a Store,
    txn: &'a ReadTxn<'t>,
    universe: Uuid,
    staged: bool,
    /// Committed nodes are handed out without hashing them again (see [`Foreign::checking`]).
    trust_committed: bool,
}

impl<'a, 't> Foreign<'a, 't> {
    /// `universe`'s committed nodes as `txn` sees them.
    pub fn new(store: &'a Store, txn: &'a ReadTxn<'t>, universe: Uuid) -> Self {
        Foreign {
            store,
            txn,
            universe,
            staged: false,
            trust_committed: false,
        }
    }

    /// What an import checks its closure over: the staged nodes (hashed again) and the
    /// committed ones, which are not hashed again — each was verified, with its whole closure,
    /// by the import that committed it, and every read that serves content verifies it anew.
    /// A re-import that changed one file then reads the few pages of the paths it walks, not
    /// every byte of a tree it already holds.
    pub(crate) fn checking(store: &'a Store, txn: &'a ReadTxn<'t>, universe: Uuid) -> Self {
        Foreign {
            store,
            txn,
            universe,
            staged: true,
            trust_committed: true,
        }
    }
}

impl Source for Foreign<'_, '_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<&[u8]>> {
        let key = key(self.universe, id);
        if let Some(bytes) = self.store.table(&NODES).get(self.txn, &key)? {
            if self.trust_committed {
                return Ok(Some(bytes));
            }
            return Ok(Some(verified(id, bytes)?));
        }
        if self.staged {
            return staged(self.store, self.txn, self.universe, id);
        }
        Ok(None)
    }
}
