//! Appending to the DAG with every invariant of SPEC §1.2 checked, and ancestry queries.
//!
//! Invariants: a node's id is the hash of its canonical bytes; parents are sorted, unique and
//! already stored; the logical clock is exactly one more than the highest parent's (so a clock
//! proves its depth and no history can exhaust it); referenced nodes exist with the right
//! type; nothing stored is ever changed (content addressing makes a re-append a no-op). A batch of
//! nodes offered together (sync, import) is ordered parents-first, and a cycle among them is
//! refused before anything is written.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use crate::error::{Error, Result, Violation};
use crate::id::NodeId;
use crate::node::{Node, NodeError, NodeType, Payload, Rewrite};
use crate::store::{NodeHeader, Op, ReadTxn, Store};

mod obligations;
pub(crate) use obligations::Obligations;

/// Checks every invariant that depends on other stored nodes.
pub fn validate_in_store(store: &Store, txn: &ReadTxn<'_>, id: &NodeId, node: &Node) -> Result<()> {
    Obligations::of(node).check(&|target| store.header(txn, target), id)
}

fn malformed(id: NodeId, error: NodeError) -> Error {
    Violation::Malformed {
        node: id,
        reason: error.to_string(),
    }
    .into()
}

/// Appends a node built in memory. Returns its id; appending an existing node is a no-op.
/// A refusal poisons `op`: it can no longer be committed.
pub fn append(op: &mut Op<'_>, node: &Node) -> Result<NodeId> {
    let result = append_unpoisoned(op, node);
    op.poison_on(&result);
    result
}

fn append_unpoisoned(op: &mut Op<'_>, node: &Node) -> Result<NodeId> {
    if node.parents.windows(2).any(|p| p[0] >= p[1]) {
        let id = node_id_unchecked(node);
        return Err(Violation::UnsortedParents { node: id }.into());
    }
    let (id, bytes) = node
        .encode_with_id()
        .map_err(|e| malformed(node_id_unchecked(node), e))?;
    insert_validated(op, id, node, &bytes)?;
    Ok(id)
}

/// Best-effort id for error messages about nodes that cannot be encoded canonically.
fn node_id_unchecked(node: &Node) -> NodeId {
    let mut probe = node.clone();
    probe.parents.sort_unstable();
    probe.parents.dedup();
    probe
        .encode_with_id()
        .map(|(id, _)| id)
        .unwrap_or(NodeId([0; 32]))
}

/// Appends a node offered as bytes under a claimed id (from a peer, a file, a patch).
/// A refusal poisons `op`.
pub fn append_encoded(op: &mut Op<'_>, claimed: NodeId, bytes: &[u8]) -> Result<bool> {
    let result = append_encoded_unpoisoned(op, claimed, bytes);
    op.poison_on(&result);
    result
}

/// Appends a node a sync received, verified and kept (its bytes are stored, without a
/// header) and whose [`Obligations`] the caller has checked against the headers of what it
/// names: only its header is written (the node is neither read nor decoded again); the
/// caller logs its creation ([`Op::created`]), in dependency order. Returns whether it was
/// new. A refusal poisons `op`.
pub(crate) fn append_kept(
    op: &mut Op<'_>,
    id: NodeId,
    header: NodeHeader,
    at_end: bool,
) -> Result<bool> {
    let result = op.put_header_of_kept(&id, header, at_end);
    op.poison_on(&result);
    result
}

fn append_encoded_unpoisoned(op: &mut Op<'_>, claimed: NodeId, bytes: &[u8]) -> Result<bool> {
    let actual = NodeId::of_bytes(bytes);
    if actual != claimed {
        return Err(Violation::HashMismatch { claimed, actual }.into());
    }
    decode_and_insert(op, claimed, bytes)
}

fn decode_and_insert(op: &mut Op<'_>, claimed: NodeId, bytes: &[u8]) -> Result<bool> {
    let node = Node::decode(bytes).map_err(|e| match e {
        NodeError::Shape(reason) if reason.contains("parents are not sorted") => {
            Violation::UnsortedParents { node: claimed }.into()
        }
        other => malformed(claimed, other),
    })?;
    insert_validated(op, claimed, &node, bytes)
}

pub(crate) fn insert_validated(
    op: &mut Op<'_>,
    id: NodeId,
    node: &Node,
    bytes: &[u8],
) -> Result<bool> {
    insert_validated_as(op, id, node, Representation::Canonical(bytes))
}

/// What [`insert_validated_as`] stores: the canonical bytes (compressed on the way in), or a
/// representation of them already made ([`crate::store::repr`]).
pub(crate) enum Representation<'b> {
    Canonical(&'b [u8]),
    Stored(&'b [u8]),
}

/// [`insert_validated`], storing `bytes` as given.
pub(crate) fn insert_validated_as(
    op: &mut Op<'_>,
    id: NodeId,
    node: &Node,
    bytes: Representation<'_>,
) -> Result<bool> {
    if op.store().has_node(op.txn(), &id)? {
        return Ok(false);
    }
    validate_in_store(op.store(), op.txn(), &id, node)?;
    match bytes {
        Representation::Canonical(bytes) => op.put_node(&id, bytes, node.header())?,
        Representation::Stored(stored) => op.put_stored(&id, stored, node.header())?,
    };
    op.created(id, node.node_type())?;
    Ok(true)
}

/// Appends a set of encoded nodes offered together, in any order: they are sorted so parents
/// and references come first, and a cycle among them is refused before anything is checked
/// further. Returns how many were new. A refusal poisons `op`, so a half-appended batch can
/// never be committed.
pub fn append_batch(op: &mut Op<'_>, nodes: &[(NodeId, Vec<u8>)]) -> Result<usize> {
    let result = append_batch_unpoisoned(op, nodes);
    op.poison_on(&result);
    result
}

fn append_batch_unpoisoned(op: &mut Op<'_>, nodes: &[(NodeId, Vec<u8>)]) -> Result<usize> {
    let mut deps = Vec::with_capacity(nodes.len());
    for (id, bytes) in nodes {
        let node = Node::decode(bytes).map_err(|e| malformed(*id, e))?;
        deps.push((*id, dependencies(&node)));
    }
    let mut created = 0;
    for i in dependency_order(&deps)? {
        if append_encoded(op, nodes[i].0, &nodes[i].1)? {
            created += 1;
        }
    }
    Ok(created)
}

/// Every node `node` needs stored before it: its parents, the nodes it references and a
/// rewrite's merge base.
pub fn dependencies(node: &Node) -> Vec<NodeId> {
    let mut deps: Vec<NodeId> = node.parents.clone();
    deps.extend(node.references().into_iter().map(|(target, _)| target));
    if let Payload::Rewrite(Rewrite {
        base: Some(base), ..
    }) = &node.payload
    {
        deps.push(*base);
    }
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// Orders nodes offered together so each comes after those of its dependencies that are
/// among them (dependencies outside the set must already be stored). Returns indexes into
/// `nodes`; a cycle is refused.
pub fn dependency_order(nodes: &[(NodeId, Vec<NodeId>)]) -> Result<Vec<usize>> {
    let index: crate::id::IdMap<usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    // Edges within the set, node i depending on node j, as (j, i); then grouped by j in one
    // array (a clone's set has as many edges as its trees have entries: no vector per node).
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut pending = vec![0usize; nodes.len()];
    for (i, (id, deps)) in nodes.iter().enumerate() {
        for dep in deps {
            if let Some(&j) = index.get(dep) {
                if j == i {
                    return Err(Violation::Cycle { node: *id }.into());
                }
                edges.push((j, i));
                pending[i] += 1;
            }
        }
    }
    let mut start = vec![0usize; nodes.len() + 1];
    for &(j, _) in &edges {
        start[j + 1] += 1;
    }
    for j in 0..nodes.len() {
        start[j + 1] += start[j];
    }
    let mut dependents = vec![0usize; edges.len()];
    let mut fill = start.clone();
    for &(j, i) in &edges {
        dependents[fill[j]] = i;
        fill[j] += 1;
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(j) = ready.pop_front() {
        order.push(j);
        for &i in &dependents[start[j]..start[j + 1]] {
            pending[i] -= 1;
            if pending[i] == 0 {
                ready.push_back(i);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|&i| pending[i] > 0).unwrap_or(0);
        return Err(Violation::Cycle {
            node: nodes[stuck].0,
        }
        .into());
    }
    Ok(order)
}

/// The logical clock of a stored node.
pub fn clock_of(store: &Store, txn: &ReadTxn<'_>, id: &NodeId) -> Result<u64> {
    Ok(store.require_header(txn, id)?.clock)
}

/// Whether `ancestor` is `descendant` or reachable from it through parents. Clocks prune the
/// walk: a node whose clock is below the ancestor's cannot lead to it.
pub fn is_ancestor(
    store: &Store,
    txn: &ReadTxn<'_>,
    ancestor: &NodeId,
    descendant: &NodeId,
) -> Result<bool> {
    if ancestor == descendant {
        return Ok(true);
    }
    let floor = store.require_header(txn, ancestor)?;
    if floor.node_type == NodeType::Root {
        // Every history node has a parent with an older clock, and only the root (one node:
        // its bytes are fixed) has none: every history node descends from it. A new replica's
        // branch starts at the root, so its first pull would otherwise walk all of history.
        return Ok(!store
            .require_header(txn, descendant)?
            .node_type
            .is_content());
    }
    let floor = floor.clock;
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([*descendant]);
    while let Some(id) = queue.pop_front() {
        let view = store.view(txn, &id)?;
        for parent in view.parents {
            if parent == *ancestor {
                return Ok(true);
            }
            if seen.insert(parent) && clock_of(store, txn, &parent)? > floor {
                queue.push_back(parent);
            }
        }
    }
    Ok(false)
}

/// The mainline predecessor of a snapshot: its single parent, or for a snapshot produced by a
/// rewrite, the branch tip the rewrite started `from`. `None` at the root.
pub fn mainline_parent(store: &Store, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Option<NodeId>> {
    let view = store.view(txn, id)?;
    let Some(parent) = view.parents.first().copied() else {
        return Ok(None);
    };
    let mainline = match store.require_header(txn, &parent)?.node_type {
        NodeType::Rewrite => match store.node(txn, &parent)?.payload {
            Payload::Rewrite(rewrite) => rewrite.from,
            _ => return Ok(None),
        },
        _ => parent,
    };
    match store.require_header(txn, &mainline)?.node_type {
        NodeType::Snapshot => Ok(Some(mainline)),
        _ => Ok(None),
    }
}

/// The snapshots a snapshot follows, as git would give its commit parents: its parent snapshot;
/// through a rewrite, the rewrite's mainline side (`from`), and for a merge its other side
/// (`to`) too. Also the rewrite, if the snapshot records one. Types are read from headers, so
/// no parent's content is loaded. `git log`-like walks and git export share it.
pub fn history_parents(
    store: &Store,
    txn: &ReadTxn<'_>,
    node: &Node,
) -> Result<(Vec<NodeId>, Option<Rewrite>)> {
    let mut sides = Vec::new();
    let mut rewrite_seen = None;
    for parent in &node.parents {
        match store.require_header(txn, parent)?.node_type {
            NodeType::Snapshot => sides.push(*parent),
            NodeType::Rewrite => {
                if let Payload::Rewrite(rewrite) = store.node(txn, parent)?.payload {
                    sides.push(rewrite.from);
                    if rewrite.kind == crate::node::RewriteKind::Merge {
                        sides.push(rewrite.to);
                    }
                    rewrite_seen = Some(rewrite);
                }
            }
            _ => {}
        }
    }
    let mut parents = Vec::with_capacity(sides.len());
    for id in sides {
        if store.require_header(txn, &id)?.node_type == NodeType::Snapshot && !parents.contains(&id)
        {
            parents.push(id);
        }
    }
    Ok((parents, rewrite_seen))
}

/// The best common ancestor of `a` and `b`: of the snapshots (or the root) reachable from both,
/// the one with the highest clock (ties broken by the smaller id, so every replica picks the
/// same one). `None` when the two share no history.
pub fn merge_base(
    store: &Store,
    txn: &ReadTxn<'_>,
    a: &NodeId,
    b: &NodeId,
) -> Result<Option<NodeId>> {
    const FROM_A: u8 = 1;
    const FROM_B: u8 = 2;
    let mut paint: HashMap<NodeId, u8> = HashMap::new();
    // Max-heap on clock, then on the reversed id (smaller ids first among equal clocks).
    let mut queue = BinaryHeap::new();
    for (id, side) in [(*a, FROM_A), (*b, FROM_B)] {
        *paint.entry(id).or_default() |= side;
        queue.push((clock_of(store, txn, &id)?, std::cmp::Reverse(id)));
    }
    // A child's clock exceeds its parents', so when a node leaves the queue every path to it
    // from `a` or `b` has been walked: its paint is final.
    while let Some((_, std::cmp::Reverse(id))) = queue.pop() {
        let Some(&flags) = paint.get(&id) else {
            continue;
        };
        if flags == FROM_A | FROM_B
            && matches!(
                store.require_header(txn, &id)?.node_type,
                NodeType::Snapshot | NodeType::Root
            )
        {
            return Ok(Some(id));
        }
        for parent in store.view(txn, &id)?.parents {
            let entry = paint.entry(parent).or_default();
            if *entry & flags != flags {
                let first_visit = *entry == 0;
                *entry |= flags;
                if first_visit {
                    queue.push((clock_of(store, txn, &parent)?, std::cmp::Reverse(parent)));
                }
            }
        }
    }
    Ok(None)
}
