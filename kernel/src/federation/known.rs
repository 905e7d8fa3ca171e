//! What this universe has verified of each other universe: its identity document, the
//! endpoint it was reached at, the last published head verified with the publish log under it,
//! what was imported from it, and whether it is quarantined. An import reads it before it asks
//! anything and writes it in the transaction that commits the import, after every check — so
//! after a crash, a partition or a refusal, the next exchange resumes from what was last
//! verified, never from what was merely received.
//!
//! Kept in this module's `federation_known` table: universe id (16 bytes) → canonical CBOR of
//! [`Known`].

use std::collections::BTreeMap;

use heed::types::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use crate::cbor;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::store::{Declared, Op, ReadTxn, Store, TableDef};

/// Universe id → what was verified of it.
const KNOWN: TableDef<Bytes, Bytes> = TableDef::new("federation_known", 12);
/// The table, for the registry.
pub(crate) const KNOWN_TABLE: Declared = KNOWN.declared();

/// Everything verified of one universe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// Its latest verified signed identity document (`jit_proto::identity`).
    pub identity: ByteBuf,
    /// Where it was last reached (`tcp/HOST:PORT`, `unixsock-stream/…`).
    pub endpoint: Option<String>,
    /// The last published head verified (`jit_proto::head`), none before the first import.
    pub head: Option<ByteBuf>,
    /// Where that head was shown (the endpoint of the import that verified it).
    #[serde(default)]
    pub head_from: Option<String>,
    /// The publish log entries the head covers, in order (their canonical bytes).
    pub entries: Vec<ByteBuf>,
    /// Local name → what was imported under it.
    pub imports: BTreeMap<String, Import>,
    /// Set when it misbehaved; nothing is imported from it while set.
    pub quarantine: Option<Quarantine>,
    /// An equivocation proof against it (`jit_proto::equivocation`), found here or heard
    /// through gossip; kept after a release as evidence (and so the same proof does not
    /// quarantine it again).
    #[serde(default)]
    pub proof: Option<ByteBuf>,
    /// As a witness of it: the last head of it this universe cosigned, and the log under it.
    #[serde(default)]
    pub witnessed: Option<ByteBuf>,
    /// The log under `witnessed`.
    #[serde(default)]
    pub witnessed_entries: Vec<ByteBuf>,
    /// As a witness for this universe: the latest logical time of its cosignatures seen here
    /// (a cosignature from an earlier time is refused as frozen).
    #[serde(default)]
    pub witness_time: Option<u64>,
}

/// One import: a published snapshot of the universe, pinned here under a local name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// The name it is published under there.
    pub published: String,
    /// The snapshot, by its id in that universe.
    pub snapshot: NodeId,
    /// The `federation-edge` node recording the link here.
    pub edge: NodeId,
    /// The epoch of the head it was imported under.
    pub epoch: u64,
}

/// Why a universe is quarantined, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    /// The code of the fault (`equivocation`, `bad_signature`, `invariant_violation`, …).
    pub code: String,
    /// What moved or failed, in words.
    pub reason: String,
    /// The head this universe held verified when it happened.
    pub held: Option<ByteBuf>,
    /// The head (or statement) the universe offered instead.
    pub offered: Option<ByteBuf>,
    /// When, in seconds since the epoch.
    pub at: i64,
}

impl Known {
    /// A universe first met: its verified identity, nothing else yet.
    pub fn first(identity: Vec<u8>, endpoint: Option<String>) -> Known {
        Known {
            identity: ByteBuf::from(identity),
            endpoint,
            head: None,
            head_from: None,
            entries: Vec::new(),
            imports: BTreeMap::new(),
            quarantine: None,
            proof: None,
            witnessed: None,
            witnessed_entries: Vec::new(),
            witness_time: None,
        }
    }
}

/// What was verified of `universe`, if it was ever met.
pub fn get(store: &Store, txn: &ReadTxn<'_>, universe: Uuid) -> Result<Option<Known>> {
    match store.table(&KNOWN).get(txn, universe.as_bytes())? {
        None => Ok(None),
        Some(bytes) => Ok(Some(cbor::from_canonical_bytes(bytes).map_err(|e| {
            Error::InvalidInput(format!(
                "the federation record of universe {universe} is damaged: {e}"
            ))
        })?)),
    }
}

/// Every universe met, by id.
pub fn list(store: &Store, txn: &ReadTxn<'_>) -> Result<Vec<(Uuid, Known)>> {
    let mut out = Vec::new();
    for item in store.table(&KNOWN).iter(txn)? {
        let (key, _) = item?;
        let universe = Uuid::from_slice(key)
            .map_err(|_| Error::InvalidInput("a federation record key is not a UUID".into()))?;
        if let Some(known) = get(store, txn, universe)? {
            out.push((universe, known));
        }
    }
    Ok(out)
}

/// Stores what was verified of `universe`, inside `op`.
pub(crate) fn put(op: &mut Op<'_>, universe: Uuid, known: &Known) -> Result<()> {
    let bytes = cbor::to_canonical_bytes(known)?;
    let store = op.store();
    store
        .table(&KNOWN)
        .put(op.wtxn(), universe.as_bytes(), &bytes)?;
    Ok(())
}
