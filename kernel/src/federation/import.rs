//! Stages 3–7, the importing side: from a verified session to a pinned, read-only import.
//!
//! 1. **Head** — the publisher's signed head, verified against the one held: signed by its
//!    key, the same or a later epoch, its log an append-only extension (consistency proof); the
//!    log entries it adds must hash to its root with the ones held.
//! 2. **Dependency** (stage 3) — the snapshot the published name names is declared as what this
//!    universe depends on.
//! 3. **Manifest** (stage 4) — the publisher signs the closure's size and digest under that
//!    head; an oversized closure is refused before anything is allocated for it.
//! 4. **Transfer** (stage 4) — sync's verified, resumable transfer ([`crate::sync::transfer`])
//!    into this universe's own store for the publisher ([`super::foreign`]), asking only for
//!    nodes not already imported from it, and never for more than the manifest declared.
//! 5. **Verification** (stage 6) — the closure walked over what arrived: complete, every
//!    reference of the right type, exactly the manifest's set (count and digest).
//! 6. **Link and finalize** (stages 5, 7) — one operation commits the staged nodes, the head
//!    and log, the import record, and a `federation-edge` node whose only parent is this
//!    universe's HEAD tip; the edge names the remote universe and snapshot, the direction, the
//!    purpose and the trust level, and its metadata both universe ids (provenance).
//!
//! A fault that proves the publisher lied quarantines it ([`super::quarantine`]); any refusal
//! leaves nothing imported.

use ciborium::value::Value;
use jit_proto::equivocation::EquivocationProof;
use jit_proto::federation::{
    Manifest, Statement, CAP_FETCH, CAP_HEAD, CAP_MANIFEST, CAP_ZSTD, MAX_CLOSURE,
    MAX_CLOSURE_BYTES, MAX_PROOF_HASHES,
};
use jit_proto::head::{HeadError, SignedHead, MAX_HEAD};
use jit_proto::merkle;
use serde::Serialize;
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::closure;
use super::foreign::{self, Foreign};
use super::handshake::{self, Session};
use super::known::{self, Import};
use super::publish::Entry;
use super::wire::{
    DependReply, DependRequest, FetchAnswer, FetchReply, FetchRequest, HeadReply, HeadRequest,
    MAX_ENTRIES, MAX_ENTRY, MAX_HAVES,
};
use super::{peers, quarantine, refusal, refused};
use crate::command::Operation;
use crate::dag;
use crate::error::{Code, Error, Result};
use crate::history::{self, CommitInfo};
use crate::id::NodeId;
use crate::node::EntryKind;
use crate::node::{Direction, FederationEdge, Node, Payload, Trust};
use crate::path::RepoPath;
use crate::refname::validate_short_name;
use crate::refs::{self, RefName};
use crate::repo::Repository;
use crate::source::{Dag, Source};
use crate::store::{Op, ReadTxn, Store};
use crate::sync::transfer::{self, Holding, Transfer};
use crate::sync::{wire as sync_wire, Remote, SyncProgress};
use crate::tree;
use crate::treeedit::TreeEditor;

/// Most levels an imported closure may have (a snapshot, its trees' depth, blobs, chunks).
const MAX_ROUNDS: usize = 4096;

/// The purpose an import's edge records.
pub const PURPOSE: &str = "import";

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The publishing universe.
    pub universe: Uuid,
    /// The name it published the snapshot under.
    pub published: String,
    /// The name it is imported under here.
    pub local: String,
    /// The snapshot, by its id there (and here: ids are the same bytes everywhere).
    pub snapshot: NodeId,
    /// The epoch of the head it was imported under.
    pub epoch: u64,
    /// The edge recording the link.
    pub edge: NodeId,
    /// How many nodes its closure holds.
    pub closure: u64,
    /// Nodes that crossed the wire in this run, and their bytes.
    pub fetched_nodes: u64,
    /// Bytes of those nodes.
    pub fetched_bytes: u64,
    /// Nodes an interrupted earlier import had staged.
    pub resumed_nodes: u64,
    /// Nodes new to this universe's store for the publisher.
    pub new_nodes: u64,
    /// The trust level the edge records.
    pub trust: &'static str,
}

/// Where an import is also committed into this universe's history: a snapshot on `branch`
/// whose tree holds the imported tree at `path` (vendoring). The imported trees, blobs and
/// chunks are then copied into the DAG (content has no history; the publisher's snapshot node
/// stays apart), and the edge's local end is that snapshot.
#[derive(Debug, Clone)]
pub struct Into {
    /// The branch to commit on.
    pub branch: RefName,
    /// Where in its tree the import goes.
    pub path: RepoPath,
    /// The commit's declared inputs.
    pub info: CommitInfo,
    /// Allows an untrusted universe's snapshot into a branch.
    pub override_trust: bool,
}

/// Imports the snapshot `published` names in the universe behind `remote` as `local`. With
/// `expected`, the universe must be that one (and is checked against the deny list and the
/// quarantine before the network is touched).
pub fn import(
    repo: &Repository,
    remote: &mut dyn Remote,
    endpoint: Option<&str>,
    expected: Option<Uuid>,
    published: &str,
    local: &str,
    progress: &dyn SyncProgress,
) -> Result<ImportReport> {
    import_with(
        repo, remote, endpoint, expected, published, local, None, None, progress,
    )
}

/// [`import`], also committing the import into a branch ([`Into`]) and reaching the witnesses
/// the policy for the universe's trust level requires through `reach` ([`super::witness`]). An
/// untrusted universe can be linked but never committed into a branch unless `override_trust`
/// says so (`forbidden`, refused before the network is touched when the universe is named).
#[allow(clippy::too_many_arguments)]
pub fn import_with(
    repo: &Repository,
    remote: &mut dyn Remote,
    endpoint: Option<&str>,
    expected: Option<Uuid>,
    published: &str,
    local: &str,
    into: Option<&Into>,
    reach: Option<&dyn super::witness::Reach>,
    progress: &dyn SyncProgress,
) -> Result<ImportReport> {
    validate_short_name(local)?;
    let store = repo.store();
    if let Some(universe) = expected {
        let peer = peers::admit(store, universe)?;
        quarantine::check(store, universe)?;
        check_trust(universe, peer.trust, into)?;
    }
    let session = handshake::hello(repo, remote, endpoint)?;
    if let Some(universe) = expected {
        if session.universe != universe {
            return Err(refusal(
                Code::OtherUniverse,
                format!(
                    "the endpoint serves universe {}, not {universe}",
                    session.universe
                ),
            ));
        }
    }
    let peer = peers::admit(store, session.universe)?;
    check_trust(session.universe, peer.trust, into)?;
    let result = Importer {
        repo,
        store,
        session: &session,
        trust: peer.trust,
        into,
        endpoint,
        reach,
        proof: std::cell::RefCell::new(None),
    }
    .run(remote, published, local, progress);
    if let Err(error) = &result {
        if let Err(audit_error) = store.audit("federation.import", error) {
            tracing::warn!(%audit_error, "could not write audit record");
        }
    }
    result
}

/// The trust policy: an untrusted universe is linked, never committed into a branch unless the
/// user overrides it.
pub(crate) fn check_trust(universe: Uuid, trust: Trust, into: Option<&Into>) -> Result<()> {
    match into {
        Some(into) if trust == Trust::Untrusted && !into.override_trust => Err(refusal(
            Code::Forbidden,
            format!(
                "universe {universe} is untrusted: its snapshots can be imported (linked) but not committed into {} without --override-trust (or jit federation trust {universe} semi-trusted)",
                into.branch.short()
            ),
        )),
        _ => Ok(()),
    }
}

/// A fault found while importing: whether it proves the publisher lied.
enum Fault {
    /// Refused; nothing to hold against the publisher (a rollback, a size limit, the network).
    Refuse(Box<Error>),
    /// Quarantine, with the statement offered.
    Quarantine(Box<Error>, Option<Vec<u8>>),
}

impl Fault {
    fn refuse(error: Error) -> Fault {
        Fault::Refuse(Box::new(error))
    }

    fn quarantine(error: Error, offered: Option<Vec<u8>>) -> Fault {
        Fault::Quarantine(Box::new(error), offered)
    }
}

impl From<Error> for Fault {
    fn from(error: Error) -> Self {
        Fault::refuse(error)
    }
}

struct Importer<'a> {
    repo: &'a Repository,
    store: &'a Store,
    session: &'a Session,
    trust: Trust,
    into: Option<&'a Into>,
    /// Where the universe was reached.
    endpoint: Option<&'a str>,
    /// How witnesses are reached.
    reach: Option<&'a dyn super::witness::Reach>,
    /// An equivocation proof a refused head made, kept with the quarantine.
    proof: std::cell::RefCell<Option<Vec<u8>>>,
}

/// The verified head and the whole log it covers.
struct VerifiedLog {
    head: SignedHead,
    head_bytes: Vec<u8>,
    entries: Vec<Vec<u8>>,
    log: Vec<Entry>,
}

impl Importer<'_> {
    fn run(
        &self,
        remote: &mut dyn Remote,
        published: &str,
        local: &str,
        progress: &dyn SyncProgress,
    ) -> Result<ImportReport> {
        let universe = self.session.universe;
        match self.stages(remote, published, local, progress) {
            Ok(report) => Ok(report),
            // A refusal keeps what was verified pending (an interrupted transfer resumes);
            // nothing of it is held until an import commits it.
            Err(Fault::Refuse(error)) => Err(*error),
            Err(Fault::Quarantine(error, offered)) => Err(quarantine::impose_with(
                self.store,
                universe,
                &error,
                offered,
                self.proof.take(),
            )?),
        }
    }

    fn stages(
        &self,
        remote: &mut dyn Remote,
        published: &str,
        local: &str,
        progress: &dyn SyncProgress,
    ) -> Result<ImportReport, Fault> {
        let universe = self.session.universe;
        let verified = self.head(remote)?;
        // The cosignatures the policy requires; a witness that saw a fork proves it.
        if let Err(error) = super::witness::require(
            self.repo,
            self.reach,
            universe,
            self.trust,
            &verified.head_bytes,
            &verified.entries,
        ) {
            return Err(if error.code() == Code::Equivocation {
                Fault::quarantine(error, Some(verified.head_bytes.clone()))
            } else {
                Fault::refuse(error)
            });
        }
        let snapshot = verified
            .log
            .iter()
            .rev()
            .find(|entry| entry.name == published)
            .map(|entry| entry.snapshot)
            .ok_or_else(|| {
                refusal(
                    Code::RefNotFound,
                    format!("universe {universe} has not published {published:?}"),
                )
            })?;
        // Optionally, the name must resolve to this snapshot in k sources.
        super::agree::require(self.repo, self.reach, local, universe, published, snapshot)?;
        let (manifest, hint) = self.manifest(remote, &verified, snapshot)?;

        // Stage 4: the closure, into this universe's store for the publisher.
        let holding = ForeignHolding {
            store: self.store,
            universe,
            token: &self.session.token,
            zstd: self.session.require(CAP_ZSTD).is_ok(),
        };
        let mut transfer = Transfer::new(self.store, &holding, remote, progress);
        transfer.limit = Some(manifest.count);
        transfer.byte_limit = Some(manifest.bytes);
        transfer.round_limit = Some(MAX_ROUNDS);
        // The hint's nodes are asked for in the first round; whatever they need that is not
        // held follows level by level, and the closure check below decides what is kept.
        let mut start = vec![snapshot];
        start.extend(hint);
        if let Err(error) = transfer.run(start) {
            // A node that fails its checks, or a peer that breaks the protocol, proves the
            // publisher misbehaved; a transport that failed does not (what was verified stays
            // pending, and the next import resumes with it).
            let proven = transfer.peer_broke_protocol
                || matches!(error, Error::Invariant(_) | Error::Node(_) | Error::Cbor(_));
            return Err(if proven {
                Fault::quarantine(error, None)
            } else {
                Fault::refuse(error)
            });
        }
        let (fetched_nodes, fetched_bytes, resumed_nodes) = (
            transfer.fetched_nodes,
            transfer.fetched_bytes,
            transfer.resumed_nodes,
        );
        progress.appending(transfer.received.len() as u64);

        // Stage 6: the closure is complete, well typed, and the set the manifest signed.
        let closure_ids = {
            let txn = self.store.read()?;
            let source = Foreign::checking(self.store, &txn, universe);
            let (ids, bytes) = closure::walk_with_bytes(&source, &[snapshot], |_| Ok(false))
                .map_err(|error| Fault::quarantine(error, None))?;
            let digest = jit_proto::federation::closure_digest(ids.iter().map(|id| &id.0));
            if ids.len() as u64 != manifest.count
                || bytes != manifest.bytes
                || digest != manifest.digest.into_array()
            {
                return Err(Fault::quarantine(
                    refusal(
                        Code::InvariantViolation,
                        format!(
                            "the closure of {snapshot} holds {} nodes of {bytes} bytes with digest {}, the signed manifest says {} of {} bytes with digest {}",
                            ids.len(),
                            hex::encode(digest),
                            manifest.count,
                            manifest.bytes,
                            hex::encode(manifest.digest.into_array())
                        ),
                    ),
                    None,
                ));
            }
            ids
        };

        // Stages 5 and 7: one operation links and finalizes.
        let (edge, new_nodes) = finalize(&Finalize {
            repo: self.repo,
            from: self.endpoint,
            universe,
            snapshot,
            published,
            local,
            trust: self.trust,
            into: self.into,
            closure: &closure_ids,
            head: &verified.head_bytes,
            entries: &verified.entries,
        })?;
        let (trust, epoch) = (self.trust, verified.head.head.epoch);
        Ok(ImportReport {
            universe,
            published: published.to_owned(),
            local: local.to_owned(),
            snapshot,
            epoch,
            edge,
            closure: manifest.count,
            fetched_nodes,
            fetched_bytes,
            resumed_nodes,
            new_nodes,
            trust: trust.as_str(),
        })
    }

    /// Stage "head": the signed head, verified against the one held, and the log under it.
    fn head(&self, remote: &mut dyn Remote) -> Result<VerifiedLog, Fault> {
        self.session.require(CAP_HEAD)?;
        let universe = self.session.universe;
        let record = known::get(self.store, &self.store.read()?, universe)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {universe} was never met")))?;
        let held = match &record.head {
            Some(bytes) => Some(SignedHead::decode(bytes).map_err(refused)?),
            None => None,
        };
        let mut entries: Vec<Vec<u8>> = record.entries.iter().map(|e| e.to_vec()).collect();
        let held_size = entries.len() as u64;
        let mut offered: Option<(SignedHead, Vec<u8>)> = None;
        let mut consistency = Vec::new();
        loop {
            let request = HeadRequest {
                session: ByteBuf::from(self.session.token.clone()),
                from: entries.len() as u64,
            };
            let reply: HeadReply = call(remote, Operation::FederationHead, &request, "head")?;
            let Some(bytes) = reply.head else {
                return Err(refusal(
                    Code::RefNotFound,
                    format!("universe {universe} has published nothing"),
                )
                .into());
            };
            if bytes.len() > MAX_HEAD {
                return Err(refusal(
                    Code::TooLarge,
                    format!("a signed head of {} bytes exceeds {MAX_HEAD}", bytes.len()),
                )
                .into());
            }
            let head = SignedHead::decode(&bytes).map_err(refused)?;
            match &offered {
                // Pages of one log must all be under one head; a publish in between restarts.
                Some((first, _)) if first != &head => {
                    return Err(refusal(
                        Code::SyncFailed,
                        "the publisher published while its log was read; try again",
                    )
                    .into())
                }
                Some(_) => {}
                None => {
                    if reply.consistency.len() > MAX_PROOF_HASHES {
                        return Err(refusal(
                            Code::TooLarge,
                            format!("a consistency proof of more than {MAX_PROOF_HASHES} hashes"),
                        )
                        .into());
                    }
                    consistency = reply.consistency.iter().map(|h| h.into_array()).collect();
                    offered = Some((head, bytes.to_vec()));
                }
            }
            if reply.entries.len() > MAX_ENTRIES {
                return Err(refusal(Code::TooLarge, "too many log entries in one reply").into());
            }
            for entry in reply.entries {
                if entry.len() > MAX_ENTRY {
                    return Err(refusal(Code::TooLarge, "an oversized publish log entry").into());
                }
                entries.push(entry.into_vec());
            }
            if !reply.more || entries.len() as u64 >= offered.as_ref().map_or(0, |o| o.0.head.size)
            {
                break;
            }
        }
        let Some((head, head_bytes)) = offered else {
            return Err(refusal(Code::SyncFailed, "no head").into());
        };
        let key = self.session.identity.public_key;
        if let Err(error) = head.verify_after(&key, held.as_ref().map(|h| &h.head), &consistency) {
            let fault = refused(error.clone());
            // Two heads the key signed that cannot both be true: keep the proof, to gossip.
            if let (HeadError::Equivocation(_), Some(held)) = (&error, &held) {
                let held_leaves: Vec<_> = record
                    .entries
                    .iter()
                    .map(|e| merkle::leaf_hash(e))
                    .collect();
                let offered_leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
                if let Some(proof) =
                    EquivocationProof::between(held, &held_leaves, &head, &offered_leaves)
                {
                    if proof.verify(&key).is_ok() {
                        *self.proof.borrow_mut() = proof.encode().ok();
                    }
                }
            }
            // A published name that moved inside an epoch: say which, where each was shown.
            let fault = match (&error, &held) {
                (HeadError::Equivocation(_), Some(held)) if held.head.epoch == head.head.epoch => {
                    self.moved_inside_epoch(remote, &record, held, &head)
                        .unwrap_or(fault)
                }
                _ => fault,
            };
            return Err(match error {
                HeadError::Rollback { .. } | HeadError::Malformed(_) => Fault::refuse(fault),
                _ => Fault::quarantine(fault, Some(head_bytes)),
            });
        }
        if head.head.universe != *universe.as_bytes() {
            return Err(Fault::quarantine(
                refusal(Code::OtherUniverse, "the head is of another universe"),
                Some(head_bytes),
            ));
        }
        // The log: every entry decodes in order, and held + new entries hash to the signed root.
        let mut log = Vec::with_capacity(entries.len());
        let mut leaves = Vec::with_capacity(entries.len());
        for (seq, bytes) in entries.iter().enumerate() {
            let entry = Entry::decode(bytes).map_err(|e| Fault::quarantine(e, None))?;
            if entry.seq != seq as u64 || entry.encode()? != *bytes {
                return Err(Fault::quarantine(
                    refusal(
                        Code::Malformed,
                        format!("publish log entry {seq} is not entry {seq} in canonical form"),
                    ),
                    Some(head_bytes),
                ));
            }
            leaves.push(merkle::leaf_hash(bytes));
            log.push(entry);
        }
        if leaves.len() as u64 != head.head.size || merkle::root(&leaves) != head.head.root {
            return Err(Fault::quarantine(
                refusal(
                    Code::Equivocation,
                    format!(
                        "the publish log ({} entries held, {} received) does not hash to the root epoch {} signs",
                        held_size,
                        leaves.len() as u64 - held_size,
                        head.head.epoch
                    ),
                ),
                Some(head_bytes),
            ));
        }
        Ok(VerifiedLog {
            head,
            head_bytes,
            entries,
            log,
        })
    }

    /// The error for a head that shows another log under an epoch already verified: reads the
    /// whole log offered, and names each published name that moved (old and new ids), where the
    /// held and the offered heads were shown, and the next command. None when the offered log
    /// cannot be read or names nothing differently.
    fn moved_inside_epoch(
        &self,
        remote: &mut dyn Remote,
        record: &known::Known,
        held: &SignedHead,
        offered: &SignedHead,
    ) -> Option<Error> {
        let request = HeadRequest {
            session: ByteBuf::from(self.session.token.clone()),
            from: 0,
        };
        let reply: HeadReply = call(remote, Operation::FederationHead, &request, "head").ok()?;
        let names = |entries: &mut dyn Iterator<Item = &[u8]>| {
            let mut names = std::collections::BTreeMap::new();
            for bytes in entries {
                if let Ok(entry) = Entry::decode(bytes) {
                    names.insert(entry.name, entry.snapshot);
                }
            }
            names
        };
        let before = names(&mut record.entries.iter().map(|e| e.as_slice()));
        let after = names(&mut reply.entries.iter().map(|e| e.as_slice()));
        let moved: Vec<String> = before
            .iter()
            .filter_map(|(name, old)| {
                let new = after.get(name)?;
                (new != old).then(|| format!("{name:?} from {old} to {new}"))
            })
            .collect();
        if moved.is_empty() {
            return None;
        }
        let universe = self.session.universe;
        Some(refusal(
            Code::Equivocation,
            format!(
                "universe {universe} moved {} inside epoch {}: the head held (root {}) was shown by {}, the head offered (root {}) by {}; run `jit federation ls --json` for both signed heads, and `jit federation release {universe}` only once the publisher explains",
                moved.join(", "),
                held.head.epoch,
                hex::encode(held.head.root),
                record.head_from.as_deref().unwrap_or("an earlier import"),
                hex::encode(offered.head.root),
                self.endpoint.unwrap_or("this connection"),
            ),
        ))
    }

    /// Stages 3–4: declares the dependency and verifies the signed manifest.
    fn manifest(
        &self,
        remote: &mut dyn Remote,
        verified: &VerifiedLog,
        snapshot: NodeId,
    ) -> Result<(Manifest, Vec<NodeId>), Fault> {
        self.session.require(CAP_MANIFEST)?;
        self.session.require(CAP_FETCH)?;
        // The snapshots already imported from this universe (and so held whole).
        let haves: Vec<NodeId> = {
            let txn = self.store.read()?;
            let record = known::get(self.store, &txn, self.session.universe)?;
            let mut haves: Vec<NodeId> = record
                .map(|r| r.imports.values().map(|i| i.snapshot).collect())
                .unwrap_or_default();
            haves.sort();
            haves.dedup();
            let mut held = Vec::new();
            for have in haves {
                if foreign::holds(self.store, &txn, self.session.universe, &have)? {
                    held.push(have);
                }
            }
            held.truncate(MAX_HAVES);
            held
        };
        let request = DependRequest {
            session: ByteBuf::from(self.session.token.clone()),
            roots: vec![snapshot],
            haves,
        };
        let reply: DependReply = call(remote, Operation::FederationDepend, &request, "manifest")?;
        let hint = reply.missing;
        let bytes = reply.manifest.into_vec();
        let manifest =
            Manifest::open(&bytes, &self.session.identity.public_key).map_err(|e| match e {
                jit_proto::federation::SealError::Malformed { .. } => Fault::refuse(refused(e)),
                _ => Fault::quarantine(refused(e), Some(bytes.clone())),
            })?;
        if manifest.count > MAX_CLOSURE || manifest.bytes > MAX_CLOSURE_BYTES {
            return Err(refusal(
                Code::TooLarge,
                format!(
                    "a closure of {} nodes and {} bytes exceeds the {MAX_CLOSURE} nodes or {MAX_CLOSURE_BYTES} bytes one import may hold",
                    manifest.count, manifest.bytes
                ),
            )
            .into());
        }
        let head = &verified.head.head;
        let wrong = if manifest.universe.into_array() != head.universe {
            Some("another universe")
        } else if manifest.epoch != head.epoch || manifest.head_root.into_array() != head.root {
            Some("another head")
        } else if manifest.roots.len() != 1 || manifest.roots[0].into_array() != snapshot.0 {
            Some("other roots")
        } else {
            None
        };
        if let Some(what) = wrong {
            return Err(Fault::quarantine(
                refusal(
                    Code::Equivocation,
                    format!("the signed manifest for {snapshot} is for {what}"),
                ),
                Some(bytes),
            ));
        }
        if hint.len() as u64 > manifest.count {
            return Err(refusal(
                Code::TooLarge,
                format!(
                    "a hint of {} nodes for a closure of {}",
                    hint.len(),
                    manifest.count
                ),
            )
            .into());
        }
        Ok((manifest, hint))
    }
}

/// What changed between two imported snapshots of `universe` (what a pin moved across), path
/// by path, read from that universe's store.
pub fn changes(
    store: &Store,
    universe: Uuid,
    old: &NodeId,
    new: &NodeId,
) -> Result<Vec<tree::Change>> {
    let txn = store.read()?;
    let source = Foreign::new(store, &txn, universe);
    let (old, new) = (tree::tree_of(&source, old)?, tree::tree_of(&source, new)?);
    tree::diff(&source, &old, &new)
}

/// What the last step of an import commits.
pub(crate) struct Finalize<'a> {
    pub(crate) repo: &'a Repository,
    /// Where the head was shown (an endpoint, or a bundle).
    pub(crate) from: Option<&'a str>,
    pub(crate) universe: Uuid,
    pub(crate) snapshot: NodeId,
    pub(crate) published: &'a str,
    pub(crate) local: &'a str,
    pub(crate) trust: Trust,
    pub(crate) into: Option<&'a Into>,
    /// The verified closure: its pending nodes are committed, any other dropped.
    pub(crate) closure: &'a [NodeId],
    /// The verified signed head, and the log under it.
    pub(crate) head: &'a [u8],
    pub(crate) entries: &'a [Vec<u8>],
}

/// Stages 5 and 7, in one operation: commits the closure's pending nodes, links it with a
/// `federation-edge` node (on HEAD's tip, or on the snapshot `into` commits), and records the
/// head, the log and the import. Returns the edge and how many nodes were committed.
pub(crate) fn finalize(f: &Finalize<'_>) -> Result<(NodeId, u64)> {
    let universe = f.universe;
    let closure_set: std::collections::HashSet<NodeId> = f.closure.iter().copied().collect();
    let ours = f.repo.universe()?.id;
    let branch = f.repo.head()?;
    let head = SignedHead::decode(f.head).map_err(refused)?.head;
    let epoch = head.epoch;
    f.repo.store().operation("federation.import", |op| {
        let new_nodes = foreign::commit_staged(op, universe, &closure_set)?;
        let tip = match f.into {
            Some(into) => vendor(op, universe, f.snapshot, f.closure, into)?,
            None => op
                .store()
                .ref_target(op.txn(), branch.full())?
                .ok_or_else(|| Error::RefNotFound(branch.full().to_owned()))?,
        };
        let clock = dag::clock_of(op.store(), op.txn(), &tip)?.saturating_add(1);
        let mut edge = Node::with_parents(
            vec![tip],
            clock,
            Payload::FederationEdge(FederationEdge {
                local: tip,
                universe: *universe.as_bytes(),
                remote: f.snapshot,
                direction: Direction::Import,
                purpose: PURPOSE.into(),
                trust: f.trust,
            }),
        );
        edge.metadata.extend([
            ("epoch".to_owned(), epoch.to_string()),
            ("head_root".to_owned(), hex::encode(head.root)),
            ("local_universe".to_owned(), ours.to_string()),
            ("published".to_owned(), f.published.to_owned()),
            ("remote_universe".to_owned(), universe.to_string()),
        ]);
        let edge = dag::append(op, &edge)?;
        let mut record = known::get(op.store(), op.txn(), universe)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {universe} was never met")))?;
        record.head = Some(ByteBuf::from(f.head.to_vec()));
        record.head_from = f.from.map(str::to_owned);
        record.entries = f.entries.iter().map(|e| ByteBuf::from(e.clone())).collect();
        record.imports.insert(
            f.local.to_owned(),
            Import {
                published: f.published.to_owned(),
                snapshot: f.snapshot,
                edge,
                epoch,
            },
        );
        known::put(op, universe, &record)?;
        Ok((edge, new_nodes))
    })
}

/// Commits the import into `into.branch` inside `op`: copies the closure's content (never the
/// publisher's snapshot node) into the DAG, puts the imported tree at `into.path`, and appends
/// the snapshot. Returns it: the local end of the import's edge.
fn vendor(
    op: &mut Op<'_>,
    universe: Uuid,
    snapshot: NodeId,
    closure_ids: &[NodeId],
    into: &Into,
) -> Result<NodeId> {
    let store = op.store();
    let content: Vec<(NodeId, Vec<u8>)> = {
        let txn = op.txn();
        let source = Foreign::new(store, txn, universe);
        let mut content = Vec::new();
        for id in closure_ids.iter().filter(|id| **id != snapshot) {
            if !store.has_node(txn, id)? {
                let bytes = source.bytes(id)?.ok_or(Error::NodeNotFound(*id))?;
                content.push((*id, bytes.to_vec()));
            }
        }
        content
    };
    dag::append_batch(op, &content)?;
    let tip = refs::get(op.store(), op.txn(), &into.branch)?
        .ok_or_else(|| Error::RefNotFound(into.branch.to_string()))?;
    let (root, edited) = {
        let txn = op.txn();
        let foreign_source = Foreign::new(store, txn, universe);
        let imported = tree::tree_of(&foreign_source, &snapshot)?;
        let dag_source = Dag::new(store, txn);
        let mut editor = TreeEditor::new(&dag_source);
        let base = tree::tree_of(&dag_source, &tip)?;
        let root =
            editor.set_creating_parents(&base, &into.path, (EntryKind::Directory, imported))?;
        (root, editor.finish(&root)?)
    };
    for node in edited {
        dag::append_encoded(op, node.id, &node.bytes)?;
    }
    let clock = dag::clock_of(op.store(), op.txn(), &tip)?.saturating_add(1);
    let committed = dag::append(op, &history::snapshot_node(tip, clock, root, &into.info))?;
    refs::set(op, &into.branch, &committed, Some(&tip))?;
    Ok(committed)
}

/// One request and its decoded answer.
fn call<T: Serialize, R: serde::de::DeserializeOwned>(
    remote: &mut dyn Remote,
    op: Operation,
    request: &T,
    what: &str,
) -> Result<R> {
    let mut answers = remote.call(vec![(op, sync_wire::to_value(request)?)])?;
    let answer = answers
        .pop()
        .ok_or_else(|| refusal(Code::SyncFailed, format!("no answer to the {what} request")))?;
    sync_wire::from_value(answer, what)
}

/// An import's holding: the universe's own store here; a node's needs are its closure's
/// references, never its parents.
struct ForeignHolding<'a> {
    store: &'a Store,
    universe: Uuid,
    token: &'a [u8],
    /// Whether replies come compressed (both sides share `zstd/v1`).
    zstd: bool,
}

impl Holding for ForeignHolding<'_> {
    fn held(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool> {
        foreign::holds(self.store, txn, self.universe, id)
    }

    fn staged<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        id: &NodeId,
    ) -> Result<Option<std::borrow::Cow<'t, [u8]>>> {
        Ok(foreign::staged(self.store, txn, self.universe, id)?.map(std::borrow::Cow::Borrowed))
    }

    fn keep(&self, nodes: &[transfer::Received]) -> Result<()> {
        let nodes: Vec<(NodeId, Vec<u8>)> =
            nodes.iter().map(|n| (n.id, n.canonical.clone())).collect();
        foreign::stage(self.store, self.universe, &nodes)
    }

    fn check(&self, id: NodeId, bytes: &[u8]) -> Result<Vec<NodeId>> {
        let node = transfer::verify(id, bytes)?;
        Ok(node.references().into_iter().map(|(id, _)| id).collect())
    }

    fn request(
        &self,
        ids: Vec<NodeId>,
        max_bytes: u64,
        _stored: bool,
    ) -> Result<(Operation, Value)> {
        let request = FetchRequest {
            session: ByteBuf::from(self.token.to_vec()),
            ids,
            max_bytes,
            zstd: self.zstd,
        };
        Ok((Operation::FederationFetch, sync_wire::to_value(&request)?))
    }

    fn reply(&self, answer: Value) -> Result<FetchReply> {
        let answer: FetchAnswer = sync_wire::from_value(answer, "fetch reply")?;
        answer.open()
    }
}
