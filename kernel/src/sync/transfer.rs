//! The verified, resumable, level-by-level transfer that sync and federation share: walk down
//! from the nodes wanted, ask the peer only for what is neither held nor staged, several
//! requests in flight, each reply bounded in bytes; check every node as it arrives; keep each
//! round's nodes durably before the next, so an interrupted transfer resumes where it stopped.
//!
//! What "held", "staged", "checked" and "the request" mean is the [`Holding`]'s: a replica holds
//! what its DAG holds and follows every dependency; a federation import holds what it imported
//! from that universe and follows only the closure (never a parent).

use std::collections::{HashSet, VecDeque};

use ciborium::value::Value;

use super::peer::{Remote, SyncProgress};
use super::wire::FetchReply;
use crate::command::Operation;
use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::Node;
use crate::store::{ReadTxn, Store};

/// Ids named in one fetch request.
const IDS_PER_FETCH: usize = 2048;
/// Byte budget asked of each fetch reply.
pub(crate) const REPLY_BYTES: u64 = 8 << 20;
/// Fetch requests kept in flight at once.
const IN_FLIGHT: usize = 4;

/// What a transfer fetches into.
pub(crate) trait Holding {
    /// Whether `id` is already held (it and what it needs are not fetched).
    fn held(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool>;
    /// The bytes of `id` if an earlier transfer staged it.
    fn staged<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<&'t [u8]>>;
    /// Keeps verified nodes durably (one round's).
    fn keep(&self, nodes: &[(NodeId, Vec<u8>)]) -> Result<()>;
    /// Checks a node as it arrives; returns the ids it needs.
    fn check(&self, id: NodeId, bytes: &[u8]) -> Result<Vec<NodeId>>;
    /// The request for `ids`, within a reply budget of `max_bytes`.
    fn request(&self, ids: Vec<NodeId>, max_bytes: u64) -> Result<(Operation, Value)>;
    /// The reply to such a request (a holding whose replies are compressed opens them here).
    fn reply(&self, answer: Value) -> Result<FetchReply> {
        super::wire::from_value(answer, "fetch reply")
    }
}

/// Checks a node's bytes against the id it was offered under, and that they are a canonical,
/// well-formed node naming nothing reserved (`.git`, `.jit`, `.jit-checkout`: see
/// [`crate::reserved`]).
pub(crate) fn verify(id: NodeId, bytes: &[u8]) -> Result<Node> {
    let actual = NodeId::of_bytes(bytes);
    if actual != id {
        return Err(Violation::HashMismatch {
            claimed: id,
            actual,
        }
        .into());
    }
    let node = Node::decode(bytes).map_err(|e| -> Error {
        Violation::Malformed {
            node: id,
            reason: e.to_string(),
        }
        .into()
    })?;
    crate::reserved::check_tree(&id, &node)?;
    Ok(node)
}

/// A transfer in progress.
pub(crate) struct Transfer<'a> {
    pub(crate) store: &'a Store,
    pub(crate) holding: &'a dyn Holding,
    pub(crate) remote: &'a mut dyn Remote,
    pub(crate) progress: &'a dyn SyncProgress,
    /// Most nodes this transfer may bring (a closure's declared size); refused beyond.
    pub(crate) limit: Option<u64>,
    /// Most bytes it may fetch (a closure's declared bytes); refused beyond.
    pub(crate) byte_limit: Option<u64>,
    /// Most rounds (levels of the walk) it may take; refused beyond.
    pub(crate) round_limit: Option<usize>,
    pub(crate) seen: HashSet<NodeId>,
    /// Every node this transfer brought or found staged, with what it needs.
    pub(crate) received: Vec<(NodeId, Vec<NodeId>)>,
    pub(crate) fetched_nodes: u64,
    pub(crate) fetched_bytes: u64,
    pub(crate) resumed_nodes: u64,
    /// Set when the transfer failed because the peer broke the protocol (sent what was not
    /// asked, left out what it must hold, exceeded the declared size) rather than because the
    /// transport failed.
    pub(crate) peer_broke_protocol: bool,
}

impl<'a> Transfer<'a> {
    /// A transfer into `holding` from `remote`.
    pub(crate) fn new(
        store: &'a Store,
        holding: &'a dyn Holding,
        remote: &'a mut dyn Remote,
        progress: &'a dyn SyncProgress,
    ) -> Self {
        Transfer {
            store,
            holding,
            remote,
            progress,
            limit: None,
            byte_limit: None,
            round_limit: None,
            seen: HashSet::new(),
            received: Vec::new(),
            fetched_nodes: 0,
            fetched_bytes: 0,
            resumed_nodes: 0,
            peer_broke_protocol: false,
        }
    }

    /// Fetches everything `start` needs that is not held.
    pub(crate) fn run(&mut self, start: Vec<NodeId>) -> Result<()> {
        let mut level = start;
        let mut rounds = 0usize;
        while !level.is_empty() {
            rounds += 1;
            if let Some(most) = self.round_limit.filter(|most| rounds > *most) {
                return Err(self.broken(format!("the peer's closure is deeper than {most} levels")));
            }
            let mut next = Vec::new();
            let mut wanted = Vec::new();
            {
                let txn = self.store.read()?;
                for id in level {
                    if !self.seen.insert(id) || self.holding.held(&txn, &id)? {
                        continue;
                    }
                    match self.holding.staged(&txn, &id)? {
                        Some(bytes) => {
                            let deps = self.holding.check(id, bytes)?;
                            next.extend_from_slice(&deps);
                            self.received.push((id, deps));
                            self.resumed_nodes += 1;
                        }
                        None => wanted.push(id),
                    }
                }
            }
            self.within_limit(wanted.len())?;
            self.fetch(wanted, &mut next)?;
            level = next;
        }
        Ok(())
    }

    fn broken(&mut self, reason: String) -> Error {
        self.peer_broke_protocol = true;
        Error::Sync {
            remote: self.remote.name().to_owned(),
            reason,
        }
    }

    fn within_limit(&mut self, more: usize) -> Result<()> {
        match self.limit {
            Some(limit) if (self.received.len() + more) as u64 > limit => Err(self.broken(
                format!("the peer's closure holds more than the {limit} nodes it declared"),
            )),
            _ => Ok(()),
        }
    }

    /// Fetches `wanted`, several requests in flight; what a reply's budget left out is asked
    /// again. Each round's nodes are verified and kept before the next round.
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
                requests.push(self.holding.request(ids.clone(), REPLY_BYTES)?);
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
                let reply = self.holding.reply(answer)?;
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
                    let deps = self.holding.check(fetched.id, &fetched.bytes)?;
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
            if let Some(most) = self
                .byte_limit
                .filter(|most| self.fetched_bytes + kept_bytes > *most)
            {
                return Err(self.broken(format!(
                    "the peer sent more than the {most} bytes its closure declared"
                )));
            }
            self.holding.keep(&kept)?;
            self.fetched_nodes += kept.len() as u64;
            self.fetched_bytes += kept_bytes;
            self.progress.received(kept.len() as u64, kept_bytes);
        }
        Ok(())
    }
}
