//! The verified, resumable transfer that sync and federation share: walk down from the nodes
//! wanted, breadth first (what an opened batch needs joins the queue at once, a level deeper),
//! ask the peer only for what is neither held nor staged, several requests in flight, each reply
//! bounded in bytes; open and check every node as it arrives, on all cores; keep each batch
//! durably ([`super::keeper`], while the next is opened), so an interrupted transfer resumes
//! where it stopped.
//!
//! What "held", "staged", "checked" and "the request" mean is the [`Holding`]'s: a replica holds
//! what its DAG holds and follows every dependency; a federation import holds what it imported
//! from that universe and follows only the closure (never a parent).

use std::collections::VecDeque;

pub(crate) use super::holding::{Holding, Received};
use super::keeper::{Keeper, Recent};
use super::peer::{Pending, Remote, SyncProgress};
use crate::error::{Error, Result, Violation};
use crate::id::{IdMap, IdSet, NodeId};
use crate::node::Node;
use crate::store::repr::{self, Stored};
use crate::store::{NodeHeader, ReadTxn, Store};

/// Ids named in one fetch request.
const IDS_PER_FETCH: usize = 2048;
/// Byte budget asked of each fetch reply.
pub(crate) const REPLY_BYTES: u64 = 8 << 20;
/// Fetch requests kept in flight at once.
const IN_FLIGHT: usize = 4;

/// Checks a node's bytes against the id it was offered under, and that they are a canonical,
/// well-formed node naming nothing reserved (`.git`, `.jit`, `.jit-checkout`: see
/// [`crate::reserved`]).
pub(crate) fn verify(id: NodeId, bytes: &[u8]) -> Result<Node> {
    match verify_leaf_or_node(id, bytes)? {
        Verified::Node(node) => Ok(node),
        // (Decoded after all, for a caller that wants the node.)
        Verified::Leaf(_) => decode_checked(id, bytes),
    }
}

/// What [`verify_leaf_or_node`] found.
pub(crate) enum Verified {
    /// A content leaf (a chunk, an inline blob), read in place: its header.
    Leaf(NodeHeader),
    /// Any other node, decoded.
    Node(Node),
}

/// [`verify`], reading a content leaf in place rather than decoding (copying) it: most of
/// what a clone brings is leaves, and only their header is needed.
pub(crate) fn verify_leaf_or_node(id: NodeId, bytes: &[u8]) -> Result<Verified> {
    let actual = NodeId::of_bytes(bytes);
    if actual != id {
        return Err(Violation::HashMismatch {
            claimed: id,
            actual,
        }
        .into());
    }
    if let Some(header) = Node::leaf_header(bytes) {
        return Ok(Verified::Leaf(header));
    }
    decode_checked(id, bytes).map(Verified::Node)
}

fn decode_checked(id: NodeId, bytes: &[u8]) -> Result<Node> {
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
    pub(crate) seen: IdSet,
    /// Every node this transfer brought or found staged, with what it needs.
    pub(crate) received: Vec<(NodeId, Vec<NodeId>)>,
    pub(crate) fetched_nodes: u64,
    pub(crate) fetched_bytes: u64,
    pub(crate) resumed_nodes: u64,
    /// Set when the transfer failed because the peer broke the protocol (sent what was not
    /// asked, left out what it must hold, exceeded the declared size) rather than because the
    /// transport failed.
    pub(crate) peer_broke_protocol: bool,
    /// Each queued id's level in the walk (the nodes wanted are level 1).
    level: IdMap<u32>,
    /// The deepest level met.
    deepest: u32,
    /// Deltas received before their base (the same content also sits at a shallower path, so
    /// the walk met it a level early): resolved when the base arrives, or asked again whole
    /// once the walk is done.
    waiting: Vec<Arrived>,
    /// Where the time went, for the debug summary at the end.
    timings: Timings,
}

/// Time spent in each step of a transfer (logged at debug level when it ends).
#[derive(Default, Debug)]
struct Timings {
    /// Calls to the peer (each several requests).
    calls: u32,
    waiting_for_peer: std::time::Duration,
    opening: std::time::Duration,
    /// Waiting for the batch before to be kept.
    keeping: std::time::Duration,
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
            seen: IdSet::default(),
            received: Vec::new(),
            fetched_nodes: 0,
            fetched_bytes: 0,
            resumed_nodes: 0,
            peer_broke_protocol: false,
            waiting: Vec::new(),
            level: IdMap::default(),
            deepest: 0,
            timings: Timings::default(),
        }
    }

    /// Fetches everything `start` needs that is not held.
    pub(crate) fn run(&mut self, start: Vec<NodeId>) -> Result<()> {
        let (holding, progress) = (self.holding, self.progress);
        std::thread::scope(|scope| {
            let mut keeper = Keeper::new(scope, holding, progress);
            let walked = self.walk(start, &mut keeper);
            let kept = keeper.finish();
            walked.and(kept)
        })
    }

    /// [`Transfer::run`], each batch kept by `keeper` while the next is fetched. The walk
    /// streams: what an opened batch needs joins the queue at once (a level deeper), rather
    /// than waiting for the whole level, so the peer always has requests to answer.
    fn walk(&mut self, start: Vec<NodeId>, keeper: &mut Keeper<'_, '_>) -> Result<()> {
        let mut queue = VecDeque::new();
        self.enqueue(start.into_iter().map(|id| (id, 1)).collect(), &mut queue)?;
        self.fetch(keeper, &mut queue, false)?;
        // Deltas whose base never came (it sits at a shallower path elsewhere): asked whole,
        // with what they need after them.
        while !self.waiting.is_empty() {
            queue.extend(
                std::mem::take(&mut self.waiting)
                    .into_iter()
                    .map(|(id, _)| id),
            );
            self.fetch(keeper, &mut queue, true)?;
        }
        tracing::debug!(levels = self.deepest, nodes = self.received.len(), timings = ?self.timings, "transfer done");
        Ok(())
    }

    /// Queues the ids (each with its level in the walk) that are neither seen, held nor
    /// staged; a node an interrupted pull staged is checked now, and what it needs follows.
    fn enqueue(&mut self, ids: Vec<(NodeId, u32)>, queue: &mut VecDeque<NodeId>) -> Result<()> {
        let store = self.store;
        let txn = store.read()?;
        let mut pending = vec![ids];
        while let Some(ids) = pending.pop() {
            let mut needed = Vec::new();
            for (id, level) in ids {
                if !self.seen.insert(id) || self.holding.held(&txn, &id)? {
                    continue;
                }
                if let Some(most) = self.round_limit.filter(|most| level as usize > *most) {
                    return Err(
                        self.broken(format!("the peer's closure is deeper than {most} levels"))
                    );
                }
                self.deepest = self.deepest.max(level);
                match self.holding.staged(&txn, &id)? {
                    Some(bytes) => {
                        let deps = self.holding.check(id, &bytes)?;
                        needed.extend(deps.iter().map(|dep| (*dep, level + 1)));
                        self.received.push((id, deps));
                        self.resumed_nodes += 1;
                    }
                    None => {
                        self.level.insert(id, level);
                        queue.push_back(id);
                    }
                }
            }
            if !needed.is_empty() {
                pending.push(needed);
            }
        }
        self.within_limit(queue.len())
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
    fn fetch(
        &mut self,
        keeper: &mut Keeper<'_, '_>,
        queue: &mut VecDeque<NodeId>,
        whole: bool,
    ) -> Result<()> {
        let stored = !whole && self.holding.takes_stored();
        let mut in_flight = self.send_next(queue, stored)?;
        while let Some((batches, pending)) = in_flight.take() {
            let started = std::time::Instant::now();
            let answers = pending.wait()?;
            self.timings.waiting_for_peer += started.elapsed();
            self.timings.calls += 1;
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
                let asked: IdSet = ids.iter().copied().collect();
                let mut got = IdSet::default();
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
            // The next requests go out before this batch is opened: the peer answers them
            // meanwhile.
            in_flight = self.send_next(queue, stored)?;
            // Deltas here may name bases in the batch before, still being kept: the keeper
            // lends them.
            let started = std::time::Instant::now();
            let (kept, checked, unresolved) =
                self.open_and_check(arrived, stored, keeper.recent())?;
            self.waiting = unresolved;
            let mut needed = Vec::new();
            for (node, deps) in kept.iter().zip(checked) {
                let level = self.level.get(&node.id).copied().unwrap_or(1);
                needed.extend(deps.iter().map(|dep| (*dep, level + 1)));
                self.received.push((node.id, deps));
            }
            self.timings.opening += started.elapsed();
            self.fetched_nodes += kept.len() as u64;
            self.fetched_bytes += sent_bytes;
            let started = std::time::Instant::now();
            keeper.keep(kept, sent_bytes)?;
            self.timings.keeping += started.elapsed();
            // What this batch needs joins the queue now; if nothing was left to send, it goes
            // out at once.
            self.enqueue(needed, queue)?;
            if in_flight.is_none() {
                in_flight = self.send_next(queue, stored)?;
            }
        }
        Ok(())
    }

    /// Sends the requests for the next ids of `queue` (up to [`IN_FLIGHT`] requests of
    /// [`IDS_PER_FETCH`] ids) without waiting for the answers; `None` when the queue is empty.
    #[allow(clippy::type_complexity)]
    fn send_next(
        &mut self,
        queue: &mut VecDeque<NodeId>,
        stored: bool,
    ) -> Result<Option<(Vec<Vec<NodeId>>, Pending)>> {
        let mut batches: Vec<Vec<NodeId>> = Vec::new();
        while batches.len() < IN_FLIGHT && !queue.is_empty() {
            let take = queue.len().min(IDS_PER_FETCH);
            batches.push(queue.drain(..take).collect());
        }
        if batches.is_empty() {
            return Ok(None);
        }
        let mut requests = Vec::with_capacity(batches.len());
        for ids in &batches {
            requests.push(self.holding.request(ids.clone(), REPLY_BYTES, stored)?);
        }
        let pending = self.remote.send(requests)?;
        Ok(Some((batches, pending)))
    }

    /// Opens the nodes as they arrived (canonical bytes, or the peer's stored representations)
    /// and checks each ([`Holding::check`]: hashed to its id, decoded) — both on all cores.
    /// Returns the nodes opened with the ids each needs, and the deltas whose base is neither
    /// held here nor among these, to wait (refused when they were asked whole).
    ///
    /// A delta opens once its base is open. So the round is cut into layers: layer 0 opens
    /// without a base from this round (canonical bytes, a frame, a delta on a node held
    /// here), layer k on a base in layer k − 1; the layers open one after another, each in
    /// parallel.
    #[allow(clippy::type_complexity)]
    fn open_and_check(
        &mut self,
        arrived: Vec<Arrived>,
        stored: bool,
        recent: Option<&Recent>,
    ) -> Result<(Vec<Received>, Vec<Vec<NodeId>>, Vec<Arrived>)> {
        use rayon::prelude::*;
        let mut plans = Vec::with_capacity(arrived.len());
        for (id, bytes) in &arrived {
            plans.push(self.plan(id, bytes)?);
        }
        let at: IdMap<usize> = arrived
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        let layers = layers(&plans, &at);
        // Per arrived node, once open: its canonical bytes if they had to be rebuilt (a node
        // that came as canonical bytes is its own), and the ids it needs.
        let mut rebuilt: Vec<Option<Vec<u8>>> = vec![None; arrived.len()];
        let mut checked: Vec<Option<Vec<NodeId>>> = vec![None; arrived.len()];
        // Opened nodes in layer order: a base before the deltas on it (the holding's keep
        // works out chain depths in that order).
        let mut order = Vec::with_capacity(arrived.len());
        let holding = self.holding;
        let store = self.store;
        for layer in layers {
            let results: Vec<(usize, Opened)> = layer
                .par_iter()
                .map_init(
                    || store.read(),
                    |txn, &i| {
                        let (id, bytes) = &arrived[i];
                        let txn = txn.as_ref().map_err(|e| Failure::Txn(e.to_string()))?;
                        let bases = Bases {
                            holding,
                            txn,
                            at: &at,
                            arrived: &arrived,
                            rebuilt: &rebuilt,
                            checked: &checked,
                            recent,
                        };
                        let outcome = open(&bases, id, bytes, &plans[i])?;
                        Ok((i, outcome))
                    },
                )
                .collect::<std::result::Result<_, Failure>>()
                .map_err(|failure| self.failed(failure))?;
            for (i, outcome) in results {
                if let Opened::Node { canonical, deps } = outcome {
                    rebuilt[i] = canonical;
                    checked[i] = Some(deps);
                    order.push(i);
                }
            }
        }
        // The bytes that came are moved, not copied: into the canonical bytes of a node that
        // came so, else into the representation it travelled in.
        let mut arrived: Vec<Option<Arrived>> = arrived.into_iter().map(Some).collect();
        let mut kept = Vec::with_capacity(order.len());
        let mut needs = Vec::with_capacity(order.len());
        for &i in &order {
            if let (Some((id, bytes)), Some(deps)) = (arrived[i].take(), checked[i].take()) {
                kept.push(match rebuilt[i].take() {
                    Some(canonical) => Received {
                        id,
                        canonical,
                        sent: Some(bytes),
                    },
                    None => Received {
                        id,
                        canonical: bytes,
                        sent: None,
                    },
                });
                needs.push(deps);
            }
        }
        let waiting: Vec<Arrived> = arrived.into_iter().flatten().collect();
        if let (false, Some((id, _))) = (stored, waiting.first()) {
            return Err(self.broken(format!(
                "the peer sent node {id} as a delta against a base it was told is missing"
            )));
        }
        Ok((kept, needs, waiting))
    }

    /// How a node that arrived opens; a representation the peer should not have sent is
    /// refused here.
    fn plan(&mut self, id: &NodeId, bytes: &[u8]) -> Result<Plan> {
        if let Some(0xa0..=0xbf) = bytes.first() {
            return Ok(Plan::Canonical);
        }
        let parsed = Stored::parse(id, bytes).map_err(|e| self.broken(e.to_string()))?;
        // Only a peer asked for stored forms may send them: anything else must send canonical
        // bytes, so a frame cannot stand in for them (and inflate past what was declared).
        if !self.holding.takes_stored() && !matches!(parsed, Stored::Raw(_)) {
            return Err(self.broken(format!(
                "the peer sent node {id} compressed, which was not asked for"
            )));
        }
        Ok(match parsed {
            Stored::Raw(_) => Plan::Canonical,
            Stored::Zstd(_) => Plan::Frame,
            Stored::Delta { base, .. } => Plan::Delta(base),
        })
    }

    /// The error for a failure while opening: the peer's fault, or ours.
    fn failed(&mut self, failure: Failure) -> Error {
        match failure {
            Failure::Peer(reason) => self.broken(reason),
            Failure::Txn(reason) => Error::Sync {
                remote: self.remote.name().to_owned(),
                reason: format!("cannot read the store: {reason}"),
            },
            Failure::Local(error) | Failure::Check(error) => error,
        }
    }
}

/// How a node that arrived opens.
enum Plan {
    /// It came as canonical bytes.
    Canonical,
    /// It came as a compressed frame.
    Frame,
    /// It came as a delta against this base.
    Delta(NodeId),
}

/// What opening one node gave.
enum Opened {
    /// It checked out: its canonical bytes when they had to be rebuilt (`None` when they came
    /// as they are), and the ids it needs.
    Node {
        canonical: Option<Vec<u8>>,
        deps: Vec<NodeId>,
    },
    /// A delta whose base is not at hand.
    Waiting,
}

/// Why opening a node failed.
enum Failure {
    /// The peer sent something that does not open (a broken frame, a bad delta).
    Peer(String),
    /// A read transaction on our own store could not begin.
    Txn(String),
    /// Our own store failed (a base held here does not read).
    Local(Error),
    /// The node opened but its check refused it.
    Check(Error),
}

/// The round cut into layers (indexes into `plans`): a node is in layer 0 unless it is a
/// delta whose base arrived in this round, then one layer after its base. Deltas whose base
/// never opens in this round (a loop) are left out; they wait.
fn layers(plans: &[Plan], at: &IdMap<usize>) -> Vec<Vec<usize>> {
    let base_here = |i: usize| match &plans[i] {
        Plan::Delta(base) => at.get(base).copied(),
        _ => None,
    };
    let mut layer_of: Vec<Option<usize>> = plans
        .iter()
        .enumerate()
        .map(|(i, _)| base_here(i).is_none().then_some(0))
        .collect();
    let mut layers = vec![(0..plans.len())
        .filter(|&i| layer_of[i] == Some(0))
        .collect::<Vec<_>>()];
    let mut pending: Vec<usize> = (0..plans.len())
        .filter(|&i| layer_of[i].is_none())
        .collect();
    while !pending.is_empty() {
        let depth = layers.len();
        let (ready, still): (Vec<usize>, Vec<usize>) = pending
            .into_iter()
            .partition(|&i| base_here(i).is_some_and(|b| layer_of[b].is_some_and(|l| l < depth)));
        if ready.is_empty() {
            break;
        }
        for &i in &ready {
            layer_of[i] = Some(depth);
        }
        layers.push(ready);
        pending = still;
    }
    layers
}

/// Where a delta's base is found: among this round's opened nodes, in the batch before (still
/// being kept), or held.
struct Bases<'a> {
    holding: &'a dyn Holding,
    txn: &'a ReadTxn<'a>,
    at: &'a IdMap<usize>,
    arrived: &'a [Arrived],
    rebuilt: &'a [Option<Vec<u8>>],
    checked: &'a [Option<Vec<NodeId>>],
    recent: Option<&'a Recent>,
}

impl Bases<'_> {
    /// The canonical bytes of this round's node `i`, once it is open.
    fn opened(&self, i: usize) -> Option<&[u8]> {
        self.checked[i].as_ref()?;
        Some(self.rebuilt[i].as_deref().unwrap_or(&self.arrived[i].1))
    }
}

/// Opens and checks one node: its canonical bytes from the representation it came in (a
/// delta's base from [`Bases`]), then the holding's check.
fn open(
    bases: &Bases<'_>,
    id: &NodeId,
    sent: &[u8],
    plan: &Plan,
) -> std::result::Result<Opened, Failure> {
    let peer = |e: Error| Failure::Peer(e.to_string());
    let rebuilt = match plan {
        Plan::Canonical => None,
        Plan::Frame | Plan::Delta(_) => Some(match Stored::parse(id, sent).map_err(peer)? {
            Stored::Raw(raw) => raw.to_vec(),
            Stored::Zstd(frame) => repr::inflate(id, frame, None).map_err(peer)?,
            Stored::Delta { base, frame, .. } => {
                let here = bases.at.get(&base).map(|&b| bases.opened(b));
                let held;
                let base_bytes: &[u8] = match (here, bases.recent.and_then(|r| r.get(&base))) {
                    (Some(Some(bytes)), _) | (None, Some(bytes)) => bytes,
                    // Its base came in this round but did not open: it waits too.
                    (Some(None), _) => return Ok(Opened::Waiting),
                    (None, None) => match bases
                        .holding
                        .base(bases.txn, &base)
                        .map_err(Failure::Local)?
                    {
                        Some(bytes) => {
                            held = bytes;
                            &held
                        }
                        None => return Ok(Opened::Waiting),
                    },
                };
                repr::inflate(id, frame, Some(base_bytes)).map_err(peer)?
            }
        }),
    };
    let canonical = rebuilt.as_deref().unwrap_or(sent);
    let deps = bases
        .holding
        .check(*id, canonical)
        .map_err(Failure::Check)?;
    Ok(Opened::Node {
        canonical: rebuilt,
        deps,
    })
}
