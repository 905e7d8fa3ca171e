//! Gossip (issue #20): importers compare notes, so a publisher that shows one history to one
//! importer and another to a second is caught — and everyone who hears of it can check why.
//!
//! 1. **Heads** ([`HeadNote`]): every daemon tells the others the head it last verified of
//!    each universe, with the publish log under it.
//! 2. **Hearing a head** ([`hear_head`]): a head of a universe this one follows, signed by its
//!    key and matching its log, that is inconsistent with the one held
//!    ([`EquivocationProof::between`]) makes an equivocation proof; the universe is
//!    quarantined with it, and the proof is passed on. Anything unsigned or malformed is
//!    ignored: it proves nothing, whoever sent it.
//! 3. **Hearing a proof** ([`hear_proof`]): a proof that verifies under the universe's key
//!    quarantines it, also in a daemon that never imported from it (which then learns the
//!    identity from the note and keeps it); a proof already held changes nothing, so a
//!    `jit federation release` sticks.
//!
//! The transport (Zenoh keys `jit/fed/<universe>/heads` and `jit/fed/<universe>/proofs`) is the
//! plane's; this module only decides.

use jit_proto::equivocation::EquivocationProof;
use jit_proto::head::SignedHead;
use jit_proto::identity::SignedIdentity;
use jit_proto::merkle::{self, Hash};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::known::{self, Known, Quarantine};
use super::wire::{MAX_ENTRIES, MAX_ENTRY};
use super::{peers, quarantine};
use crate::error::{Code, Error, Result};
use crate::store::Store;

/// Largest gossip note accepted, in bytes (refused unread beyond).
pub const MAX_NOTE: usize = 1 << 20;

/// The head a daemon last verified of one universe, and the log under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadNote {
    /// The universe.
    pub universe: ByteArray<16>,
    /// Its signed head.
    pub head: ByteBuf,
    /// Its publish log's entries, in order.
    pub entries: Vec<ByteBuf>,
}

/// An equivocation proof against one universe, with its identity document (so a daemon that
/// never met it can check the proof, and keeps that identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofNote {
    /// The universe.
    pub universe: ByteArray<16>,
    /// Its signed identity document.
    pub identity: ByteBuf,
    /// The proof (`jit_proto::equivocation`).
    pub proof: ByteBuf,
}

/// Decodes a note, refusing an oversized one before decoding it.
pub fn decode_note<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > MAX_NOTE {
        return Err(Error::Federation {
            code: Code::TooLarge,
            message: format!("a gossip note of {} bytes exceeds {MAX_NOTE}", bytes.len()),
        });
    }
    crate::cbor::from_canonical_bytes(bytes)
        .map_err(|e| Error::InvalidInput(format!("malformed gossip note: {e}")))
}

/// What this daemon tells others: the head it verified of each universe it follows.
pub fn head_notes(store: &Store) -> Result<Vec<HeadNote>> {
    let txn = store.read()?;
    Ok(known::list(store, &txn)?
        .into_iter()
        .filter_map(|(universe, record)| {
            record.head.map(|head| HeadNote {
                universe: ByteArray::new(*universe.as_bytes()),
                head,
                entries: record.entries,
            })
        })
        .collect())
}

/// The proofs this daemon holds, to pass on (late joiners hear them too).
pub fn proof_notes(store: &Store) -> Result<Vec<ProofNote>> {
    let txn = store.read()?;
    Ok(known::list(store, &txn)?
        .into_iter()
        .filter_map(|(universe, record)| {
            record.proof.map(|proof| ProofNote {
                universe: ByteArray::new(*universe.as_bytes()),
                identity: record.identity,
                proof,
            })
        })
        .collect())
}

fn leaves(entries: &[ByteBuf]) -> Option<Vec<Hash>> {
    if entries.len() > MAX_ENTRIES || entries.iter().any(|e| e.len() > MAX_ENTRY) {
        return None;
    }
    Some(entries.iter().map(|e| merkle::leaf_hash(e)).collect())
}

/// A head and log that verify under `key`: the head's signature, and the log hashing to it.
fn verified(key: &[u8; 32], head: &[u8], entries: &[ByteBuf]) -> Option<(SignedHead, Vec<Hash>)> {
    let head = SignedHead::decode(head).ok()?;
    head.verify(key).ok()?;
    let leaves = leaves(entries)?;
    (leaves.len() as u64 == head.head.size && merkle::root(&leaves) == head.head.root)
        .then_some((head, leaves))
}

/// Hears another daemon's note: returns the proof to pass on if it shows the universe
/// equivocated (the universe is then quarantined here with it).
pub fn hear_head(store: &Store, note: &HeadNote) -> Result<Option<ProofNote>> {
    let universe = Uuid::from_bytes(note.universe.into_array());
    let txn = store.read()?;
    if peers::get(store, &txn, universe)?.denied {
        return Ok(None);
    }
    let Some(record) = known::get(store, &txn, universe)? else {
        return Ok(None); // not followed here
    };
    drop(txn);
    if record.proof.is_some() {
        return Ok(None);
    }
    let Some(held_bytes) = &record.head else {
        return Ok(None);
    };
    let key = SignedIdentity::decode(&record.identity)
        .map_err(super::refused)?
        .doc
        .public_key;
    let (Some((held, held_leaves)), Some((offered, offered_leaves))) = (
        verified(&key, held_bytes, &record.entries),
        verified(&key, &note.head, &note.entries),
    ) else {
        return Ok(None);
    };
    if offered.head.universe != *universe.as_bytes() {
        return Ok(None);
    }
    let Some(proof) = EquivocationProof::between(&held, &held_leaves, &offered, &offered_leaves)
    else {
        return Ok(None);
    };
    proof.verify(&key).map_err(super::refused)?;
    let note = ProofNote {
        universe: note.universe,
        identity: record.identity.clone(),
        proof: ByteBuf::from(proof.encode()?),
    };
    record_proof(store, universe, &note, &proof)?;
    Ok(Some(note))
}

/// Hears a proof: returns it to pass on if it was new here and verified (the universe is
/// then quarantined here with it).
pub fn hear_proof(store: &Store, note: &ProofNote) -> Result<Option<ProofNote>> {
    let universe = Uuid::from_bytes(note.universe.into_array());
    let Ok(proof) = EquivocationProof::decode(&note.proof) else {
        return Ok(None);
    };
    if proof.first.head.universe != *universe.as_bytes() {
        return Ok(None);
    }
    let txn = store.read()?;
    if peers::get(store, &txn, universe)?.denied {
        return Ok(None);
    }
    let record = known::get(store, &txn, universe)?;
    drop(txn);
    let identity = match &record {
        Some(record) if record.proof.is_some() => return Ok(None),
        Some(record) => SignedIdentity::decode(&record.identity).map_err(super::refused)?,
        // Never met: the identity travels with the proof; version 1 must sign itself.
        None => match SignedIdentity::decode(&note.identity) {
            Ok(identity)
                if identity.doc.universe == *universe.as_bytes()
                    && identity.verify_after(None).is_ok() =>
            {
                identity
            }
            _ => return Ok(None),
        },
    };
    if proof.verify(&identity.doc.public_key).is_err() {
        return Ok(None);
    }
    let note = ProofNote {
        universe: note.universe,
        identity: ByteBuf::from(identity.encode()?),
        proof: note.proof.clone(),
    };
    record_proof(store, universe, &note, &proof)?;
    Ok(Some(note))
}

/// Quarantines `universe` with `proof` (recording its identity if it was never met), with an
/// audit record.
pub(crate) fn record_proof(
    store: &Store,
    universe: Uuid,
    note: &ProofNote,
    proof: &EquivocationProof,
) -> Result<()> {
    let quarantine = Quarantine {
        code: Code::Equivocation.as_str().to_owned(),
        reason: format!(
            "it signed two heads that cannot both be true ({}): epoch {} (root {}) and epoch {} (root {})",
            proof.evidence_kind(),
            proof.first.head.epoch,
            hex::encode(proof.first.head.root),
            proof.second.head.epoch,
            hex::encode(proof.second.head.root),
        ),
        held: Some(ByteBuf::from(proof.first.encode()?)),
        offered: Some(ByteBuf::from(proof.second.encode()?)),
        at: super::session::now_signed(),
    };
    let error = quarantine::refusal_for(universe, &quarantine);
    store.operation("federation.equivocation", |op| {
        let mut record = known::get(op.store(), op.txn(), universe)?
            .unwrap_or_else(|| Known::first(note.identity.to_vec(), None));
        record.quarantine = Some(quarantine.clone());
        record.proof = Some(note.proof.clone());
        known::put(op, universe, &record)?;
        super::foreign::clear_staged(op, universe)
    })?;
    store.audit("federation.equivocation", &error)?;
    Ok(())
}
