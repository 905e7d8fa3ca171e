//! Witnesses (issue #20): other universes that vouch for a publisher's head, so that one
//! importer is not alone against a publisher that lies to it.
//!
//! **Witnessing** ([`cosign`]): any universe can witness another it has met. It keeps the last
//! head of it that it cosigned (with the log under it) and cosigns a head only if it is that
//! head or a consistent extension of it. A fork — a head that cannot be true together with the
//! one cosigned — is refused, and the witness keeps the equivocation proof and quarantines the
//! publisher; an older head than the one cosigned is refused as **frozen** (`stale`), naming the
//! epoch the witness has seen. Every cosignature carries the witness's logical time: one more
//! for each head it cosigns, never a wall clock.
//!
//! **Requiring witnesses** ([`Policy`], [`require`]): per trust level, an importer may require
//! `k` cosignatures from `n` named witnesses, counted once per owner, before it accepts a head. It asks each witness
//! itself, over the transport a [`Reach`] provides, and refuses the head with fewer than `k`
//! valid cosignatures — saying which witness said what — or when a witness's time went back
//! (a replayed, frozen cosignature).

use jit_proto::equivocation::EquivocationProof;
use jit_proto::federation::{Cosignature, Statement, CAP_COSIGN};
use jit_proto::head::SignedHead;
use jit_proto::identity::SignedIdentity;
use jit_proto::merkle::{self, Hash};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::gossip::{self, ProofNote};
use super::known;
use super::serve::{open_session, publisher};
use super::wire::{CosignReply, CosignRequest, MAX_ENTRIES, MAX_ENTRY};
use super::{handshake, refusal, refused};
use crate::command::Operation;
use crate::error::{Code, Error, Result};
use crate::node::Trust;
use crate::repo::Repository;
use crate::store::{ReadTxn, Store};
use crate::sync::{wire as sync_wire, Remote};

/// The `meta` key of this universe's logical time as a witness (8 bytes, big-endian).
const TIME_KEY: &str = "federation.witness.time";

/// How an importer reaches a witness (the plane's Zenoh transport, or a test's).
pub trait Reach {
    /// A peer for the universe served at `endpoint`.
    fn reach(&self, endpoint: &str) -> Result<Box<dyn Remote>>;
}

/// The witnesses one trust level requires.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// How many cosignatures a head needs.
    pub k: u32,
    /// The witnesses that may give them.
    pub witnesses: Vec<ByteArray<16>>,
}

fn policy_key(trust: Trust) -> String {
    format!("federation.witnesses.{}", trust.as_str())
}

/// The policy for heads of universes at `trust` (none: no witness is required).
pub fn policy(store: &Store, txn: &ReadTxn<'_>, trust: Trust) -> Result<Policy> {
    match store.meta.get(txn, &policy_key(trust))? {
        None => Ok(Policy::default()),
        Some(bytes) => crate::cbor::from_canonical_bytes(bytes).map_err(|e| {
            Error::InvalidInput(format!(
                "the witness policy for {} is damaged: {e}",
                trust.as_str()
            ))
        }),
    }
}

/// `jit federation witnesses LEVEL K WITNESS…`: heads of universes at `trust` need `k`
/// cosignatures from `witnesses`.
pub fn set_policy(store: &Store, trust: Trust, k: u32, witnesses: &[Uuid]) -> Result<Policy> {
    if k as usize > witnesses.len() {
        return Err(Error::InvalidInput(format!(
            "{k} cosignatures cannot come from {} witnesses",
            witnesses.len()
        )));
    }
    let policy = Policy {
        k,
        witnesses: witnesses
            .iter()
            .map(|w| ByteArray::new(*w.as_bytes()))
            .collect(),
    };
    let bytes = crate::cbor::to_canonical_bytes(&policy)?;
    store.operation("federation.witnesses", |op| {
        op.put_meta(&policy_key(trust), &bytes)
    })?;
    Ok(policy)
}

fn leaves_of(entries: &[ByteBuf]) -> Result<Vec<Hash>> {
    if entries.len() > MAX_ENTRIES || entries.iter().any(|e| e.len() > MAX_ENTRY) {
        return Err(refusal(Code::TooLarge, "too many or too large log entries"));
    }
    Ok(entries.iter().map(|e| merkle::leaf_hash(e)).collect())
}

/// The witness's side: cosigns `request.head` if it extends every head of that universe this
/// universe cosigned before.
pub fn cosign(repo: &Repository, request: &CosignRequest) -> Result<CosignReply> {
    let identity = publisher(repo)?;
    open_session(repo, &identity, &request.session, CAP_COSIGN)?;
    let store = repo.store();
    let universe = Uuid::from_bytes(request.universe.into_array());
    let record = known::get(store, &store.read()?, universe)?.ok_or_else(|| {
        refusal(
            Code::Forbidden,
            format!("this universe does not know universe {universe}: it witnesses only universes it has met"),
        )
    })?;
    let key = SignedIdentity::decode(&record.identity)
        .map_err(refused)?
        .doc
        .public_key;
    let offered = SignedHead::decode(&request.head).map_err(refused)?;
    offered.verify(&key).map_err(refused)?;
    let offered_leaves = leaves_of(&request.entries)?;
    if offered.head.universe != *universe.as_bytes()
        || offered_leaves.len() as u64 != offered.head.size
        || merkle::root(&offered_leaves) != offered.head.root
    {
        return Err(refusal(
            Code::Malformed,
            "the log does not hash to the head's root",
        ));
    }
    if let Some(held_bytes) = &record.witnessed {
        let held = SignedHead::decode(held_bytes).map_err(refused)?;
        let held_leaves = leaves_of(&record.witnessed_entries)?;
        if let Some(proof) =
            EquivocationProof::between(&held, &held_leaves, &offered, &offered_leaves)
        {
            let note = ProofNote {
                universe: request.universe,
                identity: record.identity.clone(),
                proof: ByteBuf::from(proof.encode()?),
            };
            gossip::record_proof(store, universe, &note, &proof)?;
            return Err(refusal(
                Code::Equivocation,
                format!(
                    "this witness refuses to cosign a fork: universe {universe} signed epoch {} (root {}) and epoch {} (root {}), which cannot both be true",
                    proof.first.head.epoch,
                    hex::encode(proof.first.head.root),
                    proof.second.head.epoch,
                    hex::encode(proof.second.head.root)
                ),
            ));
        }
        if offered.head.epoch < held.head.epoch {
            return Err(refusal(
                Code::Stale,
                format!(
                    "frozen: this witness has cosigned epoch {} of universe {universe} (root {}); the head offered is epoch {}",
                    held.head.epoch,
                    hex::encode(held.head.root),
                    offered.head.epoch
                ),
            ));
        }
    }
    let time = store.operation("federation.cosign", |op| {
        let time = match op.store().meta.get(op.txn(), TIME_KEY)? {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().unwrap_or_default()),
            None => 0,
        } + 1;
        op.put_meta(TIME_KEY, &time.to_be_bytes())?;
        let mut record = known::get(op.store(), op.txn(), universe)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {universe} was never met")))?;
        record.witnessed = Some(request.head.clone());
        record.witnessed_entries = request.entries.clone();
        known::put(op, universe, &record)?;
        Ok(time)
    })?;
    let cosignature = Cosignature {
        witness: ByteArray::new(*identity.info.id.as_bytes()),
        universe: request.universe,
        epoch: offered.head.epoch,
        size: offered.head.size,
        root: ByteArray::new(offered.head.root),
        time,
    };
    Ok(CosignReply {
        cosignature: ByteBuf::from(identity.seal(&cosignature)?),
    })
}

/// The importer's side: the head (with its log) of `universe`, which this universe trusts at
/// `trust`, must carry the cosignatures the policy for that level requires. Returns how many
/// it got.
pub fn require(
    repo: &Repository,
    reach: Option<&dyn Reach>,
    universe: Uuid,
    trust: Trust,
    head: &[u8],
    entries: &[Vec<u8>],
) -> Result<u32> {
    let store = repo.store();
    let policy = policy(store, &store.read()?, trust)?;
    if policy.k == 0 {
        return Ok(0);
    }
    let signed = SignedHead::decode(head).map_err(refused)?;
    let answers = policy
        .witnesses
        .iter()
        .map(|w| {
            let witness = Uuid::from_bytes(w.into_array());
            let owner = ask(repo, reach, witness, universe, &signed, head, entries);
            (witness, owner)
        })
        .collect();
    tally(&policy, trust, universe, &signed, answers, "has")
}

/// Counts the cosignatures `answers` gave (each witness's owner, or why it gave none) once per
/// owner against `policy`. A witness that saw a fork proves the publisher equivocated; fewer
/// cosignatures than required are refused, as frozen when a witness said so.
fn tally(
    policy: &Policy,
    trust: Trust,
    universe: Uuid,
    signed: &SignedHead,
    answers: Vec<(Uuid, Result<String>)>,
    verb: &str,
) -> Result<u32> {
    // Witnesses run by one party are one voice.
    let mut owners = std::collections::BTreeSet::new();
    let mut said = Vec::new();
    for (witness, answer) in answers {
        match answer {
            Ok(owner) => {
                said.push(format!("{witness}: cosigned (owner {owner:?})"));
                owners.insert(owner);
            }
            Err(error) if error.code() == Code::Equivocation => {
                return Err(refusal(Code::Equivocation, error.to_string()))
            }
            Err(error) => said.push(format!("{witness}: {error}")),
        }
    }
    let got = owners.len() as u32;
    if got < policy.k {
        let frozen = said.iter().any(|s| s.contains("frozen"));
        return Err(refusal(
            if frozen { Code::Stale } else { Code::Forbidden },
            format!(
                "{}the head of epoch {} of universe {universe} {verb} {got} of the {} cosignatures (from different owners) the {} policy requires ({})",
                if frozen { "frozen: " } else { "" },
                signed.head.epoch,
                policy.k,
                trust.as_str(),
                if said.is_empty() { "none".to_owned() } else { said.join("; ") }
            ),
        ));
    }
    Ok(got)
}

/// Asks one witness to cosign, and checks its cosignature; returns the witness's owner.
fn ask(
    repo: &Repository,
    reach: Option<&dyn Reach>,
    witness: Uuid,
    universe: Uuid,
    signed: &SignedHead,
    head: &[u8],
    entries: &[Vec<u8>],
) -> Result<String> {
    let cosignature = collect(repo, reach, witness, universe, head, entries)?;
    check(repo.store(), witness, universe, signed, &cosignature)
}

/// Asks `witness` (over `reach`) to cosign `universe`'s head; returns the sealed cosignature.
pub fn collect(
    repo: &Repository,
    reach: Option<&dyn Reach>,
    witness: Uuid,
    universe: Uuid,
    head: &[u8],
    entries: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let store = repo.store();
    let record = known::get(store, &store.read()?, witness)?
        .ok_or_else(|| refusal(Code::Forbidden, "never met (jit federation hello it)"))?;
    let endpoint = record
        .endpoint
        .clone()
        .ok_or_else(|| refusal(Code::Forbidden, "no endpoint is known"))?;
    let reach = reach.ok_or_else(|| refusal(Code::Unsupported, "no transport to witnesses"))?;
    let mut remote = reach.reach(&endpoint)?;
    let session = handshake::hello(repo, remote.as_mut(), Some(&endpoint))?;
    if session.universe != witness {
        return Err(refusal(
            Code::OtherUniverse,
            format!("{endpoint} serves universe {}", session.universe),
        ));
    }
    session.require(CAP_COSIGN)?;
    let request = CosignRequest {
        session: ByteBuf::from(session.token.clone()),
        universe: ByteArray::new(*universe.as_bytes()),
        head: ByteBuf::from(head.to_vec()),
        entries: entries.iter().cloned().map(ByteBuf::from).collect(),
    };
    let mut answers = remote.call(vec![(
        Operation::FederationCosign,
        sync_wire::to_value(&request)?,
    )])?;
    let answer = answers
        .pop()
        .ok_or_else(|| refusal(Code::SyncFailed, "no answer"))?;
    let reply: CosignReply = sync_wire::from_value(answer, "cosignature")?;
    Ok(reply.cosignature.into_vec())
}

/// Checks a sealed cosignature offline: signed by `witness`'s key (as held here), for exactly
/// `signed`, and not from an earlier time than one already seen from it (then recorded).
/// Returns the witness's owner.
pub fn check(
    store: &Store,
    witness: Uuid,
    universe: Uuid,
    signed: &SignedHead,
    sealed: &[u8],
) -> Result<String> {
    let record = known::get(store, &store.read()?, witness)?
        .ok_or_else(|| refusal(Code::Forbidden, "never met (jit federation hello it)"))?;
    let identity = SignedIdentity::decode(&record.identity).map_err(refused)?;
    let cosignature = Cosignature::open(sealed, &identity.doc.public_key).map_err(refused)?;
    if cosignature.witness.into_array() != *witness.as_bytes()
        || cosignature.universe.into_array() != *universe.as_bytes()
        || (
            cosignature.epoch,
            cosignature.size,
            cosignature.root.into_array(),
        ) != (signed.head.epoch, signed.head.size, signed.head.root)
    {
        return Err(refusal(
            Code::BadSignature,
            "the cosignature is for another head",
        ));
    }
    // The witness's time never goes back: an older cosignature is a frozen one, replayed.
    store.operation("federation.witnessed", |op| {
        let mut record = known::get(op.store(), op.txn(), witness)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {witness} was never met")))?;
        if record
            .witness_time
            .is_some_and(|seen| cosignature.time < seen)
        {
            return Err(refusal(
                Code::Stale,
                format!(
                    "frozen: its cosignature is from time {}, it has cosigned at time {} already",
                    cosignature.time,
                    record.witness_time.unwrap_or_default()
                ),
            ));
        }
        record.witness_time = Some(cosignature.time);
        known::put(op, witness, &record)
    })?;
    Ok(identity.doc.owner)
}

/// The offline form of [`require`]: the cosignatures a bundle carries must satisfy the policy
/// for `trust` (each checked with [`check`]).
pub fn require_carried(
    store: &Store,
    universe: Uuid,
    trust: Trust,
    head: &[u8],
    carried: &[(Uuid, Vec<u8>)],
) -> Result<u32> {
    let policy = policy(store, &store.read()?, trust)?;
    if policy.k == 0 {
        return Ok(0);
    }
    let signed = SignedHead::decode(head).map_err(refused)?;
    let answers = carried
        .iter()
        .map(|(witness, sealed)| {
            let named = policy
                .witnesses
                .iter()
                .any(|w| w.into_array() == *witness.as_bytes());
            let owner = if named {
                check(store, *witness, universe, &signed, sealed)
            } else {
                Err(refusal(Code::Forbidden, "not a witness the policy names"))
            };
            (*witness, owner)
        })
        .collect();
    tally(&policy, trust, universe, &signed, answers, "carries")
}
