//! The verified, resumable, level-by-level transfer that sync and federation share: walk down
//! from the nodes wanted, ask the peer only for what is neither held nor staged, several
//! requests in flight, each reply bounded in bytes; check every node as it arrives; keep each
//! round's nodes durably before the next, so an interrupted transfer resumes where it stopped.
//!
//! What "held", "staged", "checked" and "the request" mean is the [`Holding`]'s: a replica holds
//! what its DAG holds and follows every dependency; a federation import holds what it imported
//! from that universe and follows only the closure (never a parent).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};

use ciborium::value::Value;

use super::peer::{Remote, SyncProgress};
use super::wire::FetchReply;
use crate::command::Operation;
use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::Node;
use crate::store::repr::{self, Stored};
use crate::store::{ReadTxn, Store};

/// Ids named in one fetch request.
const IDS_PER_FETCH: usize = 2048;
/// Byte budget asked of each fetch reply.
pub(crate) const REPLY_BYTES: u64 = 8 << 20;
/// Fetch requests kept in flight at once.
const IN_FLIGHT: usize = 4;

/// What a transfer fetches into.
pub(crate) trait Holding: Sync {
    /// Whether `id` is already held (it and what it needs are not fetched).
    fn held(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool>;
    /// The canonical bytes of `id` if an earlier transfer staged it.
    fn staged<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<Cow<'t, [u8]>>>;
    /// Keeps verified nodes durably (one round's).
    fn keep(&self, nodes: &[Received]) -> Result<()>;
    /// Checks a node as it arrives; returns the ids it needs.
    fn check(&self, id: NodeId, bytes: &[u8]) -> Result<Vec<NodeId>>;
    /// The request for `ids`, within a reply budget of `max_bytes`; `stored` asks for nodes
    /// as the peer stores them ([`crate::store::repr`]) rather than canonical bytes.
    fn request(&self, ids: Vec<NodeId>, max_bytes: u64, stored: bool)
        -> Result<(Operation, Value)>;
    /// Whether this holding's peer can send stored representations.
    fn takes_stored(&self) -> bool {
        false
    }
    /// The canonical bytes of a node this holding already has (a delta's base), if any.
    fn base<'t>(&self, _txn: &'t ReadTxn<'_>, _id: &NodeId) -> Result<Option<Cow<'t, [u8]>>> {
        Ok(None)
    }
    /// The reply to such a request (a holding whose replies are compressed opens them here).
    fn reply(&self, answer: Value) -> Result<FetchReply> {
        super::wire::from_value(answer, "fetch reply")
    }
}

/// A node received and verified: its canonical bytes, and the representation it travelled in
/// when that was a delta (which a holding may keep as it is, when it holds the base).
pub(crate) struct Received {
    /// The node.
    pub(crate) id: NodeId,
    /// Its canonical bytes (hashed to `id`).
    pub(crate) canonical: Vec<u8>,
    /// The representation it came in, when that was compressed or a delta
    /// ([`crate::store::repr`]); `None` when it came as canonical bytes.
    pub(crate) sent: Option<Vec<u8>>,
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
    /// Deltas received before their base (the same content also sits at a shallower path, so
    /// the walk met it a level early): resolved when the base arrives, or asked again whole
    /// once the walk is done.
    waiting: Vec<Arrived>,
}

/// A node as it arrived: its id and the bytes the peer sent.
type Arrived = (NodeId, Vec<u8>);

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
            waiting: Vec::new(),
        }
    }

    /// Fetches everything `start` needs that is not held.
    pub(crate) fn run(&mut self, start: Vec<NodeId>) -> Result<()> {
        let mut level = start;
        let mut rounds = 0usize;
        loop {
            if level.is_empty() {
                if self.waiting.is_empty() {
                    break;
                }
                let ids = std::mem::take(&mut self.waiting)
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let mut next = Vec::new();
                self.fetch(ids, &mut next, true)?;
                level = next;
                continue;
            }
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
                            let deps = self.holding.check(id, &bytes)?;
                            next.extend_from_slice(&deps);
                            self.received.push((id, deps));
                            self.resumed_nodes += 1;
                        }
                        None => wanted.push(id),
                    }
                }
            }
            self.within_limit(wanted.len())?;
            self.fetch(wanted, &mut next, false)?;
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
    /// again. Nodes come as the peer stores them (compressed, or deltas) unless `whole` or the
    /// peer cannot: a delta is rebuilt from its base — a node held here or received in this
    /// transfer — and one whose base has not come yet waits for it ([`Transfer::run`] asks for
    /// what still waits at the end, whole). Each round's nodes are verified and kept before
    /// the next round.
    fn fetch(&mut self, wanted: Vec<NodeId>, next: &mut Vec<NodeId>, whole: bool) -> Result<()> {
        let stored = !whole && self.holding.takes_stored();
        let mut queue: VecDeque<NodeId> = wanted.into();
        while !queue.is_empty() {
            let mut batches: Vec<Vec<NodeId>> = Vec::new();
            while batches.len() < IN_FLIGHT && !queue.is_empty() {
                let take = queue.len().min(IDS_PER_FETCH);
                batches.push(queue.drain(..take).collect());
            }
            let mut requests = Vec::with_capacity(batches.len());
            for ids in &batches {
                requests.push(self.holding.request(ids.clone(), REPLY_BYTES, stored)?);
            }
            let answers = self.remote.call(requests)?;
            if answers.len() != batches.len() {
                return Err(self.broken(format!(
                    "{} answers to {} fetch requests",
                    answers.len(),
                    batches.len()
                )));
            }
            let mut arrived: Vec<(NodeId, Vec<u8>)> = std::mem::take(&mut self.waiting);
            let mut sent_bytes = 0u64;
            let mut left_out: Vec<NodeId> = Vec::new();
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
                    sent_bytes += fetched.bytes.len() as u64;
                    arrived.push((fetched.id, fetched.bytes));
                }
                if got.is_empty() {
                    return Err(self.broken("the peer answered a fetch with no nodes".into()));
                }
                left_out.extend(ids.into_iter().filter(|id| !got.contains(id)));
            }
            // What a budget left out goes back to the front, in order: the walk asks for newer
            // versions first, and older ones that come as deltas need them.
            for id in left_out.into_iter().rev() {
                queue.push_front(id);
            }
            if let Some(most) = self
                .byte_limit
                .filter(|most| self.fetched_bytes + sent_bytes > *most)
            {
                return Err(self.broken(format!(
                    "the peer sent more than the {most} bytes its closure declared"
                )));
            }
            let (kept, unresolved) = self.rebuild(arrived, stored)?;
            self.waiting = unresolved;
            // Hashing and decoding every node is most of a pull's work: on all cores.
            let holding = self.holding;
            let checked = {
                use rayon::prelude::*;
                kept.par_iter()
                    .map(|node| holding.check(node.id, &node.canonical))
                    .collect::<Result<Vec<_>>>()?
            };
            for (node, deps) in kept.iter().zip(checked) {
                next.extend_from_slice(&deps);
                self.received.push((node.id, deps));
            }
            self.holding.keep(&kept)?;
            self.fetched_nodes += kept.len() as u64;
            self.fetched_bytes += sent_bytes;
            self.progress.received(kept.len() as u64, sent_bytes);
        }
        Ok(())
    }

    /// The canonical bytes of nodes as they arrived (canonical, or the peer's stored
    /// representations), each hashed to its id; deltas whose base is neither held here nor
    /// among these come back to wait (refused when they were asked whole).
    fn rebuild(
        &mut self,
        arrived: Vec<(NodeId, Vec<u8>)>,
        stored: bool,
    ) -> Result<(Vec<Received>, Vec<Arrived>)> {
        let mut kept: Vec<Received> = Vec::with_capacity(arrived.len());
        let mut at: HashMap<NodeId, usize> = HashMap::new();
        let mut waiting = arrived;
        let txn = self.store.read()?;
        // Passes until nothing more opens: a delta whose base came later in the round opens
        // on a later pass.
        loop {
            let before = waiting.len();
            let mut still = Vec::new();
            for (id, bytes) in waiting {
                let received = match bytes.first() {
                    // Canonical bytes: kept as they are (hashed by the holding's check).
                    Some(0xa0..=0xbf) => Received {
                        id,
                        canonical: bytes,
                        sent: None,
                    },
                    _ => match self.open(&txn, &id, &bytes, &kept, &at)? {
                        Some(canonical) => Received {
                            id,
                            canonical,
                            sent: Some(bytes),
                        },
                        None => {
                            still.push((id, bytes));
                            continue;
                        }
                    },
                };
                at.insert(id, kept.len());
                kept.push(received);
            }
            waiting = still;
            if waiting.is_empty() || waiting.len() == before {
                break;
            }
        }
        if let (false, Some((id, _))) = (stored, waiting.first()) {
            return Err(self.broken(format!(
                "the peer sent node {id} as a delta against a base it was told is missing"
            )));
        }
        Ok((kept, waiting))
    }

    /// One node's canonical bytes from a representation the peer sent (not yet hashed: the
    /// holding's [`Holding::check`] does that); `None` for a delta whose base is not at hand.
    fn open(
        &mut self,
        txn: &ReadTxn<'_>,
        id: &NodeId,
        sent: &[u8],
        kept: &[Received],
        at: &HashMap<NodeId, usize>,
    ) -> Result<Option<Vec<u8>>> {
        let parsed = Stored::parse(id, sent).map_err(|e| self.broken(e.to_string()))?;
        // Only a peer asked for stored forms may send them: anything else must send canonical
        // bytes, so a frame cannot stand in for them (and inflate past what was declared).
        if !self.holding.takes_stored() && !matches!(parsed, Stored::Raw(_)) {
            return Err(self.broken(format!(
                "the peer sent node {id} compressed, which was not asked for"
            )));
        }
        let canonical = match parsed {
            Stored::Raw(raw) => raw.to_vec(), // (rebuild keeps these without calling here)
            Stored::Zstd(frame) => {
                repr::inflate(id, frame, None).map_err(|e| self.broken(e.to_string()))?
            }
            Stored::Delta { base, frame, .. } => {
                let inflated = match at.get(&base) {
                    Some(i) => repr::inflate(id, frame, Some(&kept[*i].canonical)),
                    None => match self.holding.base(txn, &base)? {
                        Some(bytes) => repr::inflate(id, frame, Some(&bytes)),
                        None => return Ok(None),
                    },
                };
                inflated.map_err(|e| self.broken(e.to_string()))?
            }
        };
        // Hashed against `id` by the holding's check, next.
        Ok(Some(canonical))
    }
}
