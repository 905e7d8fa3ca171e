//! The pulling side of sync: frontier, negotiation, a resumable verified transfer, and the
//! atomic integration ([`super::integrate`]).

use std::borrow::Cow;
use std::collections::BTreeSet;

use ciborium::value::Value;
use serde::Serialize;

use super::integrate::{self, Known, RefChange};
use super::peer::{Remote, SyncProgress};
use super::staging;
use super::transfer::{self, Holding, Received, Transfer, Verified};
use super::wire::{self, FetchRequest, Frontier, NegotiateReply, NegotiateRequest};
use crate::command::Operation;
use crate::dag;
use crate::error::{Error, Result};
use crate::id::{IdMap, NodeId};
use crate::repo::Repository;
use crate::store::repr::{self, Stored};
use crate::store::{ReadTxn, Store};

/// How far back along each local branch haves are sampled (at distances 1, 2, 4, …).
const HAVE_DEPTH: usize = 1 << 12;

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullReport {
    /// The peer.
    pub remote: String,
    /// History nodes negotiation named.
    pub history: u64,
    /// Nodes fetched over the wire in this run.
    pub fetched_nodes: u64,
    /// Their bytes.
    pub fetched_bytes: u64,
    /// Nodes an interrupted earlier pull had already staged.
    pub resumed_nodes: u64,
    /// Nodes new to this store after the append.
    pub new_nodes: u64,
    /// What happened to each of the peer's refs.
    pub refs: Vec<RefChange>,
}

fn call_one(remote: &mut dyn Remote, op: Operation, payload: Value) -> Result<Value> {
    let mut answers = remote.call(vec![(op, payload)])?;
    answers.pop().ok_or_else(|| Error::Sync {
        remote: remote.name().to_owned(),
        reason: format!("no answer to {op}"),
    })
}

/// Asks the peer for its frontier: what `jit clone` needs to make a replica.
pub fn clone_info(remote: &mut dyn Remote) -> Result<Frontier> {
    let answer = call_one(remote, Operation::SyncFrontier, Value::Map(Vec::new()))?;
    wire::from_value(answer, "frontier")
}

/// Brings the peer's branches and tags into `repo`: everything they need that we lack is
/// fetched, verified and appended in one operation, then the ref rules apply. A refusal (a
/// node that fails verification, a broken protocol) leaves an audit record and nothing else;
/// verified nodes stay staged for the next attempt.
pub fn pull(
    repo: &Repository,
    remote: &mut dyn Remote,
    progress: &dyn SyncProgress,
) -> Result<PullReport> {
    let result = pull_inner(repo, remote, progress);
    if let Err(error) = &result {
        if matches!(error, Error::Invariant(_) | Error::Sync { .. }) {
            if let Err(audit_error) = repo.store().audit("sync.pull", error) {
                tracing::warn!(%audit_error, "could not write audit record");
            }
        }
    }
    result
}

fn pull_inner(
    repo: &Repository,
    remote: &mut dyn Remote,
    progress: &dyn SyncProgress,
) -> Result<PullReport> {
    let store = repo.store();
    let frontier = clone_info(remote)?;
    let ours = repo.universe()?;
    if frontier.universe.id != ours.id {
        return Err(Error::OtherUniverse {
            remote: remote.name().to_owned(),
            expected: ours.id.to_string(),
            found: frontier.universe.id.to_string(),
        });
    }
    let (wants, haves) = {
        let txn = store.read()?;
        if let Some(nodes) = frontier.nodes {
            progress.peer_holds(nodes);
        }
        let mut wants = BTreeSet::new();
        for target in frontier.refs.values() {
            if !store.has_node(&txn, target)? {
                wants.insert(*target);
            }
        }
        (wants, sample_haves(store, &txn, &frontier)?)
    };
    let holding = Replica {
        store,
        stored: frontier.stored,
        known: Default::default(),
    };
    let mut transfer = Transfer::new(store, &holding, remote, progress);
    let mut history = 0;
    if !wants.is_empty() {
        let request = NegotiateRequest {
            wants: wants.into_iter().collect(),
            haves,
        };
        let answer = call_one(
            transfer.remote,
            Operation::SyncNegotiate,
            wire::to_value(&request)?,
        )?;
        let reply: NegotiateReply = wire::from_value(answer, "negotiation reply")?;
        history = reply.history.len() as u64;
        tracing::debug!(history, "negotiated");
        progress.negotiated(history);
        // Newest first: each level of the walk then asks for newer versions of a path before
        // older ones, and a peer's old versions are deltas against newer ones
        // ([`crate::repack`]), so their bases arrive first.
        let mut start = reply.history;
        start.reverse();
        transfer.run(start)?;
    }
    progress.appending(transfer.received.len() as u64);
    let name = transfer.remote.name().to_owned();
    let known = std::mem::take(&mut *holding.known.lock().unwrap_or_else(|e| e.into_inner()));
    let started = std::time::Instant::now();
    let (new_nodes, refs) =
        integrate::integrate(store, &name, &transfer.received, &known, &frontier)?;
    tracing::debug!(elapsed = ?started.elapsed(), new_nodes, "appended");
    Ok(PullReport {
        remote: name,
        history,
        fetched_nodes: transfer.fetched_nodes,
        fetched_bytes: transfer.fetched_bytes,
        resumed_nodes: transfer.resumed_nodes,
        new_nodes,
        refs,
    })
}

/// History we hold, for the peer to stop its walk at: the peer's tips we already have, each
/// local ref's tip, and ancestors along each tip's mainline at distances 1, 2, 4, … — a have
/// close to wherever the two histories part, for a few dozen ids.
fn sample_haves(store: &Store, txn: &ReadTxn<'_>, frontier: &Frontier) -> Result<Vec<NodeId>> {
    let mut haves = BTreeSet::new();
    for target in frontier.refs.values() {
        if store.has_node(txn, target)? {
            haves.insert(*target);
        }
    }
    for (_, tip) in store.refs_with_prefix(txn, "")? {
        haves.insert(tip);
        let (mut current, mut distance, mut sample_at) = (tip, 0usize, 1usize);
        while distance < HAVE_DEPTH {
            let Some(parent) = dag::mainline_parent(store, txn, &current)? else {
                break;
            };
            current = parent;
            distance += 1;
            if distance == sample_at {
                haves.insert(current);
                sample_at *= 2;
            }
        }
    }
    Ok(haves.into_iter().take(wire::MAX_NEGOTIATE_IDS).collect())
}

/// A replica's holding: its DAG, the nodes received but not appended yet, every dependency
/// (parents included).
struct Replica<'a> {
    store: &'a Store,
    /// Whether the peer sends stored representations.
    stored: bool,
    /// What checking each received node learned ([`Known`]), for the append.
    known: std::sync::Mutex<IdMap<Known>>,
}

impl Holding for Replica<'_> {
    fn held(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool> {
        self.store.has_node(txn, id)
    }

    fn staged<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<Cow<'t, [u8]>>> {
        // Asked only of a node not held (no header): its bytes, if an earlier pull kept them.
        self.store.node_bytes(txn, id)
    }

    fn base(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Option<std::sync::Arc<[u8]>>> {
        self.store.base_bytes(txn, id)
    }

    fn takes_stored(&self) -> bool {
        self.stored
    }

    /// Keeps each node in the representation it came in where this store can resolve it (a
    /// delta against a node it holds or receives with it, within the chain cap; a compressed
    /// frame; canonical bytes from a peer that sends what it stores, which kept them raw
    /// because compressing did not pay), else compressed here, on all cores. What arrived is
    /// kept without a copy where it can be.
    fn keep(&self, nodes: &[Received]) -> Result<()> {
        use rayon::prelude::*;
        /// What to keep for a node.
        enum Keep<'n> {
            AsSent(&'n [u8]),
            AtDepth(&'n [u8], u8),
            Compressed,
        }
        let txn = self.store.read()?;
        let mut depth: IdMap<u8> = IdMap::default();
        let mut chosen: Vec<Keep<'_>> = Vec::with_capacity(nodes.len());
        for node in nodes {
            // What to keep, and its chain depth here.
            let (keep, d) = match &node.sent {
                Some(sent) => match Stored::parse(&node.id, sent)? {
                    Stored::Zstd(_) => (Keep::AsSent(sent), 0),
                    Stored::Delta {
                        base,
                        depth: sent_depth,
                        ..
                    } => {
                        let base_depth = match depth.get(&base) {
                            Some(d) => Some(*d),
                            None => self
                                .store
                                .stored(&txn, &base)?
                                .map(|s| Stored::parse(&base, s).map(|p| p.depth()))
                                .transpose()?,
                        };
                        match base_depth {
                            Some(d) if d + 1 == sent_depth => (Keep::AsSent(sent), sent_depth),
                            Some(d) if d < repr::MAX_CHAIN => (Keep::AtDepth(sent, d + 1), d + 1),
                            _ => (Keep::Compressed, 0),
                        }
                    }
                    Stored::Raw(raw) if self.stored => (Keep::AsSent(raw), 0),
                    Stored::Raw(_) => (Keep::Compressed, 0),
                },
                None if self.stored => (Keep::AsSent(&node.canonical), 0),
                None => (Keep::Compressed, 0),
            };
            depth.insert(node.id, d);
            chosen.push(keep);
        }
        drop(txn);
        let stored = nodes
            .par_iter()
            .zip(chosen)
            .map(|(node, keep)| {
                let stored = match keep {
                    Keep::AsSent(sent) => Cow::Borrowed(sent),
                    Keep::AtDepth(sent, depth) => Cow::Owned(repr::with_depth(sent, depth)),
                    Keep::Compressed => repr::for_writing(&node.canonical)?,
                };
                Ok((node.id, stored))
            })
            .collect::<Result<Vec<_>>>()?;
        staging::keep(self.store, &stored)
    }

    fn check(&self, id: NodeId, bytes: &[u8]) -> Result<Vec<NodeId>> {
        let (known, deps) = match transfer::verify_leaf_or_node(id, bytes)? {
            Verified::Leaf(header) => (
                Known {
                    header,
                    obligations: dag::Obligations::none(&header),
                },
                Vec::new(),
            ),
            Verified::Node(node) => (
                Known {
                    header: node.header(),
                    obligations: dag::Obligations::of(&node),
                },
                dag::dependencies(&node),
            ),
        };
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, known);
        Ok(deps)
    }

    fn request(
        &self,
        ids: Vec<NodeId>,
        max_bytes: u64,
        stored: bool,
    ) -> Result<(Operation, Value)> {
        // A plain request, from a peer that sends stored forms, is for deltas whose base is
        // missing here: ask for them whole, still compressed.
        let request = FetchRequest {
            ids,
            max_bytes,
            stored: self.stored,
            whole: self.stored && !stored,
        };
        Ok((Operation::SyncFetch, wire::to_value(&request)?))
    }
}
