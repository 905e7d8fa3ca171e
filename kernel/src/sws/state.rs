//! What an SWS is at rest: its id, its state, and the tables that hold it — `sws` (everything of
//! every SWS under keys that start with its id: the state at the bare id, then its records
//! behind one-byte tags) and `working` (each branch's working SWS). The tables are this
//! module's; the rest of `sws` reads and writes them through it.

use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use heed::types::{Bytes, Str};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::merge::Conflict;
use crate::store::{Declared, Op, ReadTxn, Store, TableDef};
use crate::upgrade::UpgradeStep;
use crate::upgrade::{self, Legacy};

/// Everything of every SWS, under keys that start with its 16-byte id.
pub(super) const RECORDS: TableDef<Bytes, Bytes> = TableDef::new("sws", 0);
/// The SWS records table, for the registry.
pub(crate) const RECORDS_TABLE: Declared = RECORDS.declared();
/// Full branch name → id of the branch's working SWS.
pub(super) const WORKING: TableDef<Str, Bytes> = TableDef::new("working", 1);
/// The working-SWS table, for the registry.
pub(crate) const WORKING_TABLE: Declared = WORKING.declared();

/// An SWS id: 128 random bits, shown as 32 hex characters. Unguessable by construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwsId(pub [u8; 16]);

impl SwsId {
    /// A fresh random id from the OS's CSPRNG.
    pub fn random() -> SwsId {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SwsId(bytes)
    }

    /// Key of one record of this SWS: its id, the record's tag, then the record's own key.
    pub(crate) fn record_key(&self, tag: u8, suffix: &[u8]) -> Vec<u8> {
        [&self.0[..], &[tag], suffix].concat()
    }

    /// Key of the micro-history record `seq`.
    pub(crate) fn history_key(&self, seq: u64) -> Vec<u8> {
        self.record_key(HISTORY_TAG, &seq.to_be_bytes())
    }

    /// Key of the record that patch `patch_id` was applied (its sequence number).
    pub(crate) fn patch_key(&self, patch_id: &str) -> Vec<u8> {
        self.record_key(PATCH_TAG, patch_id.as_bytes())
    }

    /// Key of a node staged for this SWS.
    pub(crate) fn staged_key(&self, node: &NodeId) -> Vec<u8> {
        self.record_key(STAGED_TAG, node.as_bytes())
    }

    /// The smallest id after this one, where the next SWS's keys may start; `None` after the
    /// largest id.
    fn successor(&self) -> Option<SwsId> {
        let mut bytes = self.0;
        for byte in bytes.iter_mut().rev() {
            if *byte < u8::MAX {
                *byte += 1;
                return Some(SwsId(bytes));
            }
            *byte = 0;
        }
        None
    }
}

/// Record tag of the micro-history (`id || 'h' || seq`, seq big-endian): records sort in
/// order, and each new one goes right after the last.
pub(crate) const HISTORY_TAG: u8 = b'h';
/// Record tag of applied patch ids (`id || 'p' || patch id` → seq): what makes applying
/// idempotent.
pub(crate) const PATCH_TAG: u8 = b'p';
/// Record tag of staged nodes (`id || 's' || node id` → node bytes).
pub(crate) const STAGED_TAG: u8 = b's';

impl fmt::Display for SwsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SwsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwsId({self})")
    }
}

impl FromStr for SwsId {
    type Err = Error;

    fn from_str(s: &str) -> Result<SwsId> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| Error::SwsNotFound(s.to_owned()))?;
        Ok(SwsId(bytes))
    }
}

/// The persisted state of one SWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwsState {
    /// The agent or person that owns it; only they (or a delegate) write and commit it.
    pub owner: String,
    /// Optional human name.
    pub name: Option<String>,
    /// The branch its commit moves (full ref name).
    pub branch: String,
    /// The snapshot it is anchored on.
    pub base: NodeId,
    /// Its current working tree.
    pub tree: NodeId,
    /// How many patches it has applied (the micro-history's length).
    pub patches: u64,
    /// Conflicts left by the last commit attempt, shown in the tree as marked files.
    pub conflicts: Vec<Conflict>,
    /// Agents allowed to act on it besides its owner.
    #[serde(default)]
    pub delegates: Vec<String>,
}

/// Loads an SWS's state.
pub fn get(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<SwsState> {
    let raw = store
        .table(&RECORDS)
        .get(txn, &id.0)?
        .ok_or_else(|| Error::SwsNotFound(id.to_string()))?;
    Ok(cbor::from_canonical_bytes(raw)?)
}

/// Whether SWS `id` exists.
pub fn exists(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<bool> {
    Ok(store.table(&RECORDS).get(txn, &id.0)?.is_some())
}

/// Every live SWS, by id. Seeks from one SWS's state to the next, past its records.
pub fn list(store: &Store, txn: &ReadTxn<'_>) -> Result<Vec<(SwsId, SwsState)>> {
    let mut out = Vec::new();
    let mut start: Bound<Vec<u8>> = Bound::Unbounded;
    loop {
        let bounds = (start.as_ref().map(Vec::as_slice), Bound::Unbounded);
        let Some(entry) = store.table(&RECORDS).range(txn, &bounds)?.next() else {
            break;
        };
        let (key, raw) = entry?;
        let Some(id) = key.get(..16).and_then(|id| <[u8; 16]>::try_from(id).ok()) else {
            // Only a damaged store holds one; the SWS after it still list.
            tracing::warn!(key = %hex::encode(key), "skipping an SWS key shorter than an id");
            start = Bound::Excluded(key.to_vec());
            continue;
        };
        let id = SwsId(id);
        if key.len() == id.0.len() {
            out.push((id, cbor::from_canonical_bytes(raw)?));
        }
        match id.successor() {
            Some(next) => start = Bound::Included(next.0.to_vec()),
            None => break,
        }
    }
    Ok(out)
}

/// Writes an SWS's state.
pub(crate) fn put_state(op: &mut Op<'_>, id: SwsId, state: &SwsState) -> Result<()> {
    let bytes = cbor::to_canonical_bytes(state)?;
    let store = op.store();
    store.table(&RECORDS).put(op.wtxn(), &id.0, &bytes)?;
    Ok(())
}

/// Layout 1's tables of SWS records, which live in `sws` behind record tags since layout 2.
const LEGACY_RECORDS: [Legacy; 3] = [
    Legacy {
        name: "staged",
        target: |store| store.table(&RECORDS),
        key: |old| upgrade::tagged(STAGED_TAG, old),
        merge: upgrade::keep_present,
    },
    Legacy {
        name: "sws_history",
        target: |store| store.table(&RECORDS),
        key: |old| upgrade::tagged(HISTORY_TAG, old),
        merge: upgrade::keep_present,
    },
    Legacy {
        name: "sws_patches",
        target: |store| store.table(&RECORDS),
        key: |old| upgrade::tagged(PATCH_TAG, old),
        merge: upgrade::keep_present,
    },
];

/// The upgrade step that moves layout 1's SWS records into the tagged layout.
pub(crate) const TAG_RECORDS: UpgradeStep = UpgradeStep {
    name: "tagged SWS records",
    pending: |env, _, rtxn, _| upgrade::legacy_pending(env, rtxn, &LEGACY_RECORDS),
    run: |env, store, wtxn, _| upgrade::move_legacy(env, wtxn, store, &LEGACY_RECORDS),
};
