//! The publish log: the snapshots this universe shows other universes, in the order it
//! published them, and the signed head over it (`jit_proto::head`). Only a published snapshot
//! (and the nodes that support it) will ever be visible to another universe.
//!
//! Each entry is canonical CBOR `{name, seq, snapshot}` at key `seq` (8 bytes, big-endian) of
//! this module's `publish_log` table; the log is only appended to. Every publish appends one
//! entry and signs a new head — `{universe, epoch, size, root}`, the epoch one more than the
//! last, the root the Merkle root over every entry's leaf hash — in the same transaction, so the
//! log and its head never disagree.

use ciborium::value::Value;
use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use jit_proto::head::{PublishedHead, SignedHead};
use jit_proto::merkle::{self, Hash};

use crate::cbor::{self, fields};
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::identity::UniverseIdentity;
use crate::refname::validate_short_name;
use crate::repo::Repository;
use crate::revparse;
use crate::store::{Declared, ReadTxn, Store, TableDef};
use crate::upgrade::UpgradeStep;

/// Seq → canonical entry bytes.
const LOG: TableDef<U64<BigEndian>, Bytes> = TableDef::new("publish_log", 7);
/// The publish log table, for the registry.
pub(crate) const LOG_TABLE: Declared = LOG.declared();

/// The `meta` key of the current signed head.
const HEAD_KEY: &str = "federation.head";

/// One published snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the log, from 0.
    pub seq: u64,
    /// The name it is published as.
    pub name: String,
    /// The snapshot.
    pub snapshot: NodeId,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Entry {
    /// Canonical bytes: what the log stores and the leaf hash covers.
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(cbor::encode(&Value::Map(vec![
            (text("name"), text(&self.name)),
            (text("seq"), Value::Integer(self.seq.into())),
            (text("snapshot"), Value::Bytes(self.snapshot.0.to_vec())),
        ]))?)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Entry> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "publish entry")?;
        fields::only(map, &["name", "seq", "snapshot"])?;
        let snapshot: [u8; 32] = fields::as_bytes(fields::require(map, "snapshot")?, "snapshot")?
            .try_into()
            .map_err(|_| {
                Error::InvalidInput("a publish entry's snapshot is not 32 bytes".into())
            })?;
        Ok(Entry {
            seq: fields::as_u64(fields::require(map, "seq")?, "seq")?,
            name: fields::as_text(fields::require(map, "name")?, "name")?.to_owned(),
            snapshot: NodeId(snapshot),
        })
    }

    /// Its leaf in the Merkle tree.
    pub fn leaf(&self) -> Result<Hash> {
        Ok(merkle::leaf_hash(&self.encode()?))
    }
}

/// Every entry, in log order.
pub fn entries(store: &Store, txn: &ReadTxn<'_>) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in store.table(&LOG).iter(txn)? {
        let (seq, bytes) = item?;
        let entry = Entry::decode(bytes)?;
        if entry.seq != seq {
            return Err(Error::InvalidInput(format!(
                "publish log entry {seq} says it is entry {}",
                entry.seq
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

/// Layout 5 indexes what other universes may see ([`super::visible`]); a store of an earlier
/// layout that published shows its published closures once, on upgrade.
const SHOWN: u64 = 5;

/// Indexing the closures a store from before layout 5 published.
pub(crate) const SHOW_PUBLISHED: UpgradeStep = UpgradeStep {
    name: "indexed published closures",
    pending: |_, _, _, recorded| Ok(recorded.is_none_or(|layout| layout < SHOWN)),
    run: |_, store, wtxn, _| {
        let log = entries(store, wtxn)?;
        let mut shown = 0;
        for entry in log {
            shown += super::visible::show(store, wtxn, entry.snapshot)?;
            super::visible::summarize(store, wtxn, entry.snapshot)?;
        }
        Ok(shown)
    },
};

/// The current signed head; none before the first publish.
pub fn head(store: &Store, txn: &ReadTxn<'_>) -> Result<Option<SignedHead>> {
    match store.meta.get(txn, HEAD_KEY)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(SignedHead::decode(bytes).map_err(|e| {
            Error::InvalidInput(format!("the stored published head is damaged: {e}"))
        })?)),
    }
}

/// `jit publish REV --as NAME`: appends the snapshot `rev` names to the publish log as `name`
/// and signs the next head, in one transaction. Returns the entry and the head.
pub fn publish(repo: &Repository, rev: &str, name: &str) -> Result<(Entry, SignedHead)> {
    validate_short_name(name)?;
    let identity = UniverseIdentity::load(repo.jit_dir())?;
    let universe = *identity.info.id.as_bytes();
    let store = repo.store();
    // Refuses anything but a snapshot (`wrong_node_type`).
    let snapshot = revparse::resolve_snapshot(store, &store.read()?, &repo.head()?, rev)?;
    store.operation("federation.publish", |op| {
        let mut log = entries(op.store(), op.txn())?;
        let last = head(op.store(), op.txn())?;
        let entry = Entry {
            seq: log.len() as u64,
            name: name.to_owned(),
            snapshot,
        };
        let bytes = entry.encode()?;
        let table = op.store().table(&LOG);
        table.put(op.wtxn(), &entry.seq, &bytes)?;
        let store = op.store();
        super::visible::show(store, op.wtxn(), snapshot)?;
        super::visible::summarize(store, op.wtxn(), snapshot)?;
        log.push(entry.clone());
        let leaves = log.iter().map(Entry::leaf).collect::<Result<Vec<_>>>()?;
        let next = PublishedHead {
            universe,
            epoch: last.map_or(1, |h| h.head.epoch + 1),
            size: leaves.len() as u64,
            root: merkle::root(&leaves),
        };
        let signed = identity.sign_head(next)?;
        op.put_meta(HEAD_KEY, &signed.encode()?)?;
        Ok((entry, signed))
    })
}
