//! Where another universe's nodes live here: apart from this universe's DAG, per universe, and
//! byte-identical to how their universe encoded them (RFC-0021 invariants 1, 4 and 5).
//!
//! A foreign node is never in the node table, so it is never counted as local, never found by a
//! local lookup, and a local node naming one as parent is refused by the DAG's ordinary rule
//! (its parents must exist). `federation_nodes` holds the bytes, keyed by universe (16 bytes)
//! then node id (32). A node an import in progress has received and verified is written there
//! once, with a marker in `federation_pending` (same key, no value): pending nodes are not held —
//! an interrupted transfer resumes with them, and nothing reaches them until the import's
//! commit, which drops the markers of its verified closure (and the nodes outside it) in the
//! same transaction as its head and edge. A refused import deletes its pending nodes, leaving
//! nothing imported. Each byte is written once, not staged and copied.
//!
//! Reads are verified like the DAG's ([`crate::store::verified`]): bytes that no longer hash to
//! their id are refused as corrupt, never served.

use std::borrow::Cow;
use std::collections::HashSet;

use heed::types::Bytes;
use uuid::Uuid;

use crate::error::Result;
use crate::id::NodeId;
use crate::source::Source;
use crate::store::{verified, Declared, Op, ReadTxn, Store, TableDef};

/// (universe, id) → node bytes, committed or pending.
const NODES: TableDef<Bytes, Bytes> = TableDef::new("federation_nodes", 10);
/// (universe, id) → nothing: the nodes of `NODES` an import has not committed yet.
const PENDING: TableDef<Bytes, Bytes> = TableDef::new("federation_pending", 11);
/// The foreign nodes table, for the registry.
pub(crate) const NODES_TABLE: Declared = NODES.declared();
/// The pending markers table, for the registry.
pub(crate) const PENDING_TABLE: Declared = PENDING.declared();

fn key(universe: Uuid, id: &NodeId) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..16].copy_from_slice(universe.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

fn pending(store: &Store, txn: &ReadTxn<'_>, key: &[u8; 48]) -> Result<bool> {
    Ok(store.table(&PENDING).get(txn, key)?.is_some())
}

/// Whether `universe`'s node `id` is imported (committed) here.
pub fn holds(store: &Store, txn: &ReadTxn<'_>, universe: Uuid, id: &NodeId) -> Result<bool> {
    let key = key(universe, id);
    Ok(store.table(&NODES).get(txn, &key)?.is_some() && !pending(store, txn, &key)?)
}

/// A pending node's bytes (verified when they arrived; verified again here).
pub fn staged<'t>(
    store: &Store,
    txn: &'t ReadTxn<'_>,
    universe: Uuid,
    id: &NodeId,
) -> Result<Option<&'t [u8]>> {
    let key = key(universe, id);
    if !pending(store, txn, &key)? {
        return Ok(None);
    }
    match store.table(&NODES).get(txn, &key)? {
        Some(bytes) => Ok(Some(verified(id, bytes)?)),
        None => Ok(None),
    }
}

/// Keeps verified nodes of `universe`, pending, durably, in one write transaction.
pub fn stage(store: &Store, universe: Uuid, nodes: &[(NodeId, Vec<u8>)]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    store.unlogged_write(|txn| {
        for (id, bytes) in nodes {
            let key = key(universe, id);
            if store.table(&NODES).get(txn, &key)?.is_some() {
                continue; // committed already (or pending from an earlier attempt)
            }
            store.table(&NODES).put(txn, &key, bytes)?;
            store.table(&PENDING).put(txn, &key, &[])?;
        }
        Ok(())
    })
}

fn pending_keys(store: &Store, txn: &ReadTxn<'_>, universe: Uuid) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for entry in store
        .table(&PENDING)
        .prefix_iter(txn, &universe.as_bytes()[..])?
    {
        keys.push(entry?.0.to_vec());
    }
    Ok(keys)
}

/// Commits `universe`'s pending nodes that belong to `closure` inside `op` (any other pending
/// node is deleted: only a verified closure is ever kept); returns how many were committed.
pub(crate) fn commit_staged(
    op: &mut Op<'_>,
    universe: Uuid,
    closure: &HashSet<NodeId>,
) -> Result<u64> {
    let store = op.store();
    let mut committed = 0;
    for key in pending_keys(store, op.txn(), universe)? {
        let in_closure = <[u8; 32]>::try_from(&key[16..])
            .map(|id| closure.contains(&NodeId(id)))
            .unwrap_or(false);
        if in_closure {
            committed += 1;
        } else {
            store.table(&NODES).delete(op.wtxn(), &key)?;
        }
        store.table(&PENDING).delete(op.wtxn(), &key)?;
    }
    Ok(committed)
}

/// Deletes `universe`'s pending nodes inside `op` (a refused import leaves nothing behind).
pub(crate) fn clear_staged(op: &mut Op<'_>, universe: Uuid) -> Result<()> {
    let store = op.store();
    for key in pending_keys(store, op.txn(), universe)? {
        store.table(&NODES).delete(op.wtxn(), &key)?;
        store.table(&PENDING).delete(op.wtxn(), &key)?;
    }
    Ok(())
}

/// How many of `universe`'s nodes are committed and pending here.
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
    let (all, pending) = (count(&NODES)?, count(&PENDING)?);
    Ok((all - pending.min(all), pending))
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
        let key: [u8; 48] = key.try_into().map_err(|_| {
            crate::error::Error::InvalidInput("a foreign node key is not 48 bytes".into())
        })?;
        if !pending(store, txn, &key)? {
            out.push((NodeId(id), bytes));
        }
    }
    Ok(out)
}

/// One universe's imported nodes as a [`Source`]: what the mount and `jit cat` read an imported
/// snapshot through. Reads look in one table, with no pending check: a pending node is reached
/// only from the closure of the import that stages it (which commits or drops it), never from a
/// committed import, so the mount's reads pay one lookup per node.
pub struct Foreign<'a, 't> {
    store: &'a Store,
    txn: &'a ReadTxn<'t>,
    universe: Uuid,
    /// Nodes are handed out without hashing them again (see [`Foreign::checking`]).
    trust_committed: bool,
}

impl<'a, 't> Foreign<'a, 't> {
    /// `universe`'s nodes as `txn` sees them, each verified against its id as it is read.
    pub fn new(store: &'a Store, txn: &'a ReadTxn<'t>, universe: Uuid) -> Self {
        Foreign {
            store,
            txn,
            universe,
            trust_committed: false,
        }
    }

    /// What an import checks its closure over: its pending nodes and the committed ones,
    /// neither hashed again — a pending node was verified (hash, canonical encoding, shape) as
    /// it arrived, and a committed one, with its whole closure, by the import that committed
    /// it; every read that serves content verifies it anew. The check then reads only the
    /// pages of trees and chunk lists, not every byte of the content.
    pub(crate) fn checking(store: &'a Store, txn: &'a ReadTxn<'t>, universe: Uuid) -> Self {
        Foreign {
            store,
            txn,
            universe,
            trust_committed: true,
        }
    }
}

impl Source for Foreign<'_, '_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<Cow<'_, [u8]>>> {
        let key = key(self.universe, id);
        let Some(bytes) = self.store.table(&NODES).get(self.txn, &key)? else {
            return Ok(None);
        };
        if self.trust_committed {
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        Ok(Some(Cow::Borrowed(verified(id, bytes)?)))
    }
}
