//! The pulling side of sync: frontier, negotiation, a resumable verified transfer, and the
//! atomic integration ([`super::integrate`]).

use std::collections::{BTreeSet, HashSet, VecDeque};

use ciborium::value::Value;
use serde::Serialize;

use super::integrate::{self, RefChange};
use super::staging;
use super::wire::{self, FetchReply, FetchRequest, Frontier, NegotiateReply, NegotiateRequest};
use crate::command::Operation;
use crate::dag;
use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::Node;
use crate::repo::Repository;
use crate::store::{ReadTxn, Store};

/// Ids named in one fetch request.
const IDS_PER_FETCH: usize = 2048;
/// Byte budget asked of each fetch reply.
const REPLY_BYTES: u64 = 8 << 20;
/// Fetch requests kept in flight at once.
const IN_FLIGHT: usize = 4;
/// How far back along each local branch haves are sampled (at distances 1, 2, 4, …).
const HAVE_DEPTH: usize = 1 << 12;

/// A peer that answers sync requests: over the message plane, the RPC, or in process.
pub trait Remote {
    /// How the user named the peer: recorded in the log and in `remotes/<name>/…`.
    fn name(&self) -> &str;

    /// Sends the requests (op, payload) at once and returns the answers in the same order; an
    /// error answer fails the call.
    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>>;
}

/// Progress of a pull, for a progress bar.
pub trait SyncProgress {
    /// Negotiation found this many history nodes to bring over.
    fn negotiated(&self, _history: u64) {}
    /// This many more nodes (and bytes) arrived, were verified and were staged.
    fn received(&self, _nodes: u64, _bytes: u64) {}
    /// The atomic append of this many nodes begins.
    fn appending(&self, _nodes: u64) {}
}

/// No progress reporting.
pub struct Quiet;
impl SyncProgress for Quiet {}

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
        let mut wants = BTreeSet::new();
        for target in frontier.refs.values() {
            if !store.has_node(&txn, target)? {
                wants.insert(*target);
            }
        }
        (wants, sample_haves(store, &txn, &frontier)?)
    };
    let mut transfer = Transfer {
        store,
        remote,
        progress,
        seen: HashSet::new(),
        received: Vec::new(),
        fetched_nodes: 0,
        fetched_bytes: 0,
        resumed_nodes: 0,
    };
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
        progress.negotiated(history);
        transfer.run(reply.history)?;
    }
    progress.appending(transfer.received.len() as u64);
    let name = transfer.remote.name().to_owned();
    let (new_nodes, refs) = integrate::integrate(store, &name, &transfer.received, &frontier)?;
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

/// Checks a node as it arrives: its bytes hash to the id it was offered under, they are a
/// canonical, well-formed node, and a tree names nothing reserved (`.git`, `.jit`,
/// `.jit-checkout`: see [`crate::reserved`]).
fn verify(id: NodeId, bytes: &[u8]) -> Result<Node> {
    let node = decode_verified(id, bytes)?;
    crate::reserved::check_tree(&id, &node)?;
    Ok(node)
}

fn decode_verified(id: NodeId, bytes: &[u8]) -> Result<Node> {
    let actual = NodeId::of_bytes(bytes);
    if actual != id {
        return Err(Violation::HashMismatch {
            claimed: id,
            actual,
        }
        .into());
    }
    Node::decode(bytes).map_err(|e| {
        Violation::Malformed {
            node: id,
            reason: e.to_string(),
        }
        .into()
    })
}

/// The transfer: walks down from the negotiated history, level by level, fetching what is
/// neither stored nor staged.
struct Transfer<'a> {
    store: &'a Store,
    remote: &'a mut dyn Remote,
    progress: &'a dyn SyncProgress,
    seen: HashSet<NodeId>,
    /// Every node this pull will append, with its dependencies.
    received: Vec<(NodeId, Vec<NodeId>)>,
    fetched_nodes: u64,
    fetched_bytes: u64,
    resumed_nodes: u64,
}

impl Transfer<'_> {
    fn run(&mut self, start: Vec<NodeId>) -> Result<()> {
        let mut level = start;
        while !level.is_empty() {
            let mut next = Vec::new();
            let mut wanted = Vec::new();
            {
                let txn = self.store.read()?;
                for id in level {
                    if !self.seen.insert(id) || self.store.has_node(&txn, &id)? {
                        continue;
                    }
                    match staging::get(self.store, &txn, &id)? {
                        Some(bytes) => {
                            let deps = dag::dependencies(&verify(id, bytes)?);
                            next.extend_from_slice(&deps);
                            self.received.push((id, deps));
                            self.resumed_nodes += 1;
                        }
                        None => wanted.push(id),
                    }
                }
            }
            self.fetch(wanted, &mut next)?;
            level = next;
        }
        Ok(())
    }

    fn broken(&self, reason: String) -> Error {
        Error::Sync {
            remote: self.remote.name().to_owned(),
            reason,
        }
    }

    /// Fetches `wanted`, several requests in flight; what a reply's budget left out is asked
    /// again. Each round's nodes are verified and staged before the next round.
    fn fetch(&mut self, wanted: Vec<NodeId>, next: &mut Vec<NodeId>) -> Result<()> {
        let mut queue: VecDeque<NodeId> = wanted.into();
        while !queue.is_empty() {
            let mut batches: Vec<Vec<NodeId>> = Vec::new();
            while batches.len() < IN_FLIGHT && !queue.is_empty() {
                let take = queue.len().min(IDS_PER_FETCH);
                batches.push(queue.drain(..take).collect());
            }
            let mut requests = Vec::with_capacity(batches.len());
            for ids in &batches {
                let request = FetchRequest {
                    ids: ids.clone(),
                    max_bytes: REPLY_BYTES,
                };
                requests.push((Operation::SyncFetch, wire::to_value(&request)?));
            }
            let answers = self.remote.call(requests)?;
            if answers.len() != batches.len() {
                return Err(self.broken(format!(
                    "{} answers to {} fetch requests",
                    answers.len(),
                    batches.len()
                )));
            }
            let mut kept = Vec::new();
            let mut kept_bytes = 0u64;
            for (ids, answer) in batches.into_iter().zip(answers) {
                let reply: FetchReply = wire::from_value(answer, "fetch reply")?;
                if let Some(id) = reply.missing.first() {
                    return Err(self.broken(format!(
                        "the peer does not hold node {id}, which its history needs"
                    )));
                }
                let asked: HashSet<NodeId> = ids.iter().copied().collect();
                let mut got = HashSet::new();
                for fetched in reply.nodes {
                    if !asked.contains(&fetched.id) || !got.insert(fetched.id) {
                        return Err(
                            self.broken(format!("the peer sent node {} unasked", fetched.id))
                        );
                    }
                    let deps = dag::dependencies(&verify(fetched.id, &fetched.bytes)?);
                    next.extend_from_slice(&deps);
                    self.received.push((fetched.id, deps));
                    kept_bytes += fetched.bytes.len() as u64;
                    kept.push((fetched.id, fetched.bytes));
                }
                if got.is_empty() {
                    return Err(self.broken("the peer answered a fetch with no nodes".into()));
                }
                queue.extend(ids.into_iter().filter(|id| !got.contains(id)));
            }
            staging::keep(self.store, &kept)?;
            self.fetched_nodes += kept.len() as u64;
            self.fetched_bytes += kept_bytes;
            self.progress.received(kept.len() as u64, kept_bytes);
        }
        Ok(())
    }
}
