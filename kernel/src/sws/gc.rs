//! Dropping staged nodes that nothing live refers to, in the transaction that supersedes them.
//!
//! Every node staged for an SWS has a count: its record (`id || 'r' || node id` → references
//! and holds, each a big-endian `u64`), or, without one, one reference and no hold — the common
//! case, which so costs no write. A node counted before its bytes were staged always has a
//! record. The count is:
//!
//! - *references*: one for each root of the SWS that names the node (its working tree, each
//!   version a conflict names, each tree a checkout recorded against it, see [`pin`]) and one for
//!   each entry naming it in a staged node that is itself kept;
//! - *holds*: one for each time it was staged ahead of the patch that will name it
//!   (`shadow.stage`). A patch naming a held blob with `put-blob` releases one hold of the blob
//!   and of each held node below it.
//!
//! A node is *kept* while it has either. When a node becomes kept it counts a reference to each
//! of its children; when it stops being kept it is dropped — its staged bytes and its count go —
//! and each child loses that reference. So a superseded version goes when the patch that
//! supersedes it lands, and whatever it shares with what stays (a chunk, a subtree, the same blob
//! under another path) stays. The micro-history keeps its records; the trees they name may be
//! gone. LMDB reuses the freed pages for later writes.
//!
//! Nodes staged with an operation that nothing keeps when it ends (content sent with a patch
//! that did not use it) are not kept either, so every staged node is kept by something.
//!
//! An operation's changes are counted level by level from the roots ([`Ledger`]): a child that
//! a new tree gives +1 and the version it replaces −1 nets out before it is looked up, so an
//! operation costs what a diff of the paths it changed costs, never the size of the tree, and a
//! count that ends where it started is not written. A node that stops being kept on one level
//! and is kept again on a later one (a subtree moved deeper) loses nothing: nothing is deleted
//! before every level is counted. Nodes the DAG has are never counted or dropped: they are
//! permanent.

use std::collections::{HashMap, HashSet};

use heed::RwTxn;

use super::state::{SwsId, SwsState, RECORDS, STAGED_TAG};
use crate::content::EncodedNode;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{Node, NodeType, NodeView};
use crate::store::{ReadTxn, Store};

/// Record tag of counts (`id || 'r' || node id` → references `u64` BE || holds `u64` BE),
/// absent for a staged node with one reference and no hold.
pub(crate) const COUNT_TAG: u8 = b'r';
/// Record tag of checkout pins (`id || 'c' || BLAKE3(checkout dir)` → the tree id the checkout
/// holds).
pub(crate) const PIN_TAG: u8 = b'c';

/// How a node's count was stored when a [`Ledger`] loaded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// No count: the node was not counted, or this ledger staged it.
    Nothing,
    /// Staged without a count record: one reference and no hold, the common case.
    Implicit,
    /// A count record.
    Record { refs: u64, holds: u64 },
}

/// The count of one node, as loaded and changed by a [`Ledger`].
#[derive(Debug, Clone, Copy)]
struct Count {
    refs: u64,
    holds: u64,
    /// As stored, so a count that comes back to it (one reference moved from an old tree to
    /// its new version) is not written again.
    stored: Stored,
    /// Whether its bytes are staged, once known.
    staged: Option<bool>,
    /// Staged by this ledger: if nothing keeps it when the ledger settles, it goes again.
    fresh: bool,
}

impl Count {
    /// A count of nothing, as stored.
    fn none(staged: Option<bool>) -> Count {
        Count {
            refs: 0,
            holds: 0,
            stored: Stored::Nothing,
            staged,
            fresh: false,
        }
    }

    /// Whether anything still keeps the node.
    fn kept(&self) -> bool {
        self.refs > 0 || self.holds > 0
    }

    /// Whether something kept the node as stored: only such a node (or a fresh one) is
    /// dropped when nothing keeps it any more.
    fn was_kept(&self) -> bool {
        match self.stored {
            Stored::Nothing => false,
            Stored::Implicit => true,
            Stored::Record { refs, holds } => refs > 0 || holds > 0,
        }
    }

    fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.refs.to_be_bytes());
        out[8..].copy_from_slice(&self.holds.to_be_bytes());
        out
    }
}

/// Decodes a count record: references and holds.
fn decode_record(node: &NodeId, raw: &[u8]) -> Result<(u64, u64)> {
    let bytes = <[u8; 16]>::try_from(raw)
        .map_err(|_| Error::InvalidInput(format!("the staged count of {node} is damaged")))?;
    let (mut refs, mut holds) = ([0; 8], [0; 8]);
    refs.copy_from_slice(&bytes[..8]);
    holds.copy_from_slice(&bytes[8..]);
    Ok((u64::from_be_bytes(refs), u64::from_be_bytes(holds)))
}

/// What a settled ledger did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Staged nodes dropped.
    pub dropped: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The counting of one operation on one SWS. Changes are collected as deltas and counted when
/// the ledger [settles](Ledger::settle), level by level: a node that becomes kept (or stops
/// being kept) gives each child +1 (or −1) for the next level, and a child that gets +1 from a
/// new tree and −1 from the version it replaces is never even looked up. So a patch costs what
/// a diff of its old and new trees would.
pub(crate) struct Ledger {
    id: SwsId,
    counts: HashMap<NodeId, Count>,
    /// Whether the DAG has a node, as looked up.
    in_dag: HashMap<NodeId, bool>,
    /// Children of nodes the caller has decoded already.
    known: HashMap<NodeId, Vec<NodeId>>,
    /// Changes still to count: references and holds, per node.
    pending: HashMap<NodeId, Delta>,
    /// Holds still to release (each also releases the held nodes below).
    releases: Vec<NodeId>,
    /// Counting a store from before counts: a staged node without a record has no count yet
    /// (rather than one reference).
    legacy: bool,
}

/// A change to a node's count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Delta {
    refs: i64,
    holds: i64,
}

impl Ledger {
    /// A ledger for SWS `id`.
    pub(crate) fn new(id: SwsId) -> Ledger {
        Ledger {
            id,
            counts: HashMap::new(),
            in_dag: HashMap::new(),
            known: HashMap::new(),
            pending: HashMap::new(),
            releases: Vec::new(),
            legacy: false,
        }
    }

    /// Notes the children of nodes the caller holds decoded, so counting need not decode them
    /// again.
    pub(crate) fn know(&mut self, nodes: &[EncodedNode]) {
        for node in nodes {
            let children = node.node.references().into_iter().map(|(id, _)| id);
            self.known.insert(node.id, children.collect());
        }
    }

    /// Stages `bytes` as `node` unless the DAG or the staging area has it. A node counted as
    /// kept before its bytes came (a chunk listed by a blob staged ahead of it) now counts its
    /// children; one that nothing keeps when the ledger settles is dropped again (content sent
    /// with a patch that did not use it).
    pub(crate) fn stage(
        &mut self,
        store: &Store,
        txn: &mut RwTxn<'_>,
        node: NodeId,
        bytes: &[u8],
    ) -> Result<()> {
        if self.in_dag(store, txn, &node)? {
            return Ok(());
        }
        let key = self.id.staged_key(&node);
        if store.table(&RECORDS).get(txn, &key)?.is_some() {
            return Ok(());
        }
        store.table(&RECORDS).put(txn, &key, bytes)?;
        let count = match self.counts.get(&node) {
            Some(count) => *count,
            None => self.record(store, txn, &node)?.unwrap_or(Count::none(None)),
        };
        self.counts.insert(
            node,
            Count {
                staged: Some(true),
                fresh: true,
                ..count
            },
        );
        if count.kept() {
            for child in self.children(store, txn, &node)? {
                self.change(child, 1, 0);
            }
        }
        Ok(())
    }

    /// One more reference to `node` (a root).
    pub(crate) fn add_ref(&mut self, node: NodeId) {
        self.change(node, 1, 0);
    }

    /// One more hold on `node` (staged ahead of its patch).
    pub(crate) fn hold(&mut self, node: NodeId) {
        self.change(node, 0, 1);
    }

    /// One reference fewer to `node` (a root).
    pub(crate) fn remove_ref(&mut self, node: NodeId) {
        self.change(node, -1, 0);
    }

    /// Releases a hold on `node` and on each held node below it.
    pub(crate) fn release(&mut self, node: NodeId) {
        self.releases.push(node);
    }

    /// References for `new` roots instead of `old` ones: what a change of an SWS's roots does
    /// to its counts.
    pub(crate) fn retarget(&mut self, old: &[NodeId], new: &[NodeId]) {
        for node in new {
            self.add_ref(*node);
        }
        for node in old {
            self.remove_ref(*node);
        }
    }

    /// Notes a change still to count.
    fn change(&mut self, node: NodeId, refs: i64, holds: i64) {
        let delta = self.pending.entry(node).or_default();
        delta.refs += refs;
        delta.holds += holds;
    }

    /// Counts every change, level by level; drops every node no longer kept (and every node it
    /// staged that nothing keeps) and writes the counts that changed.
    pub(crate) fn settle(mut self, store: &Store, txn: &mut RwTxn<'_>) -> Result<Settled> {
        while !(self.pending.is_empty() && self.releases.is_empty()) {
            self.release_level(store, txn)?;
            self.count_level(store, txn)?;
        }
        self.write(store, txn)
    }

    /// Releases this level's holds: one each, where there is one, and one of each child's
    /// next.
    fn release_level(&mut self, store: &Store, txn: &ReadTxn<'_>) -> Result<()> {
        for node in std::mem::take(&mut self.releases) {
            if self.in_dag(store, txn, &node)? {
                continue;
            }
            let Some(count) = self.count(store, txn, &node)? else {
                continue;
            };
            let pending = self.pending.get(&node).map_or(0, |d| d.holds);
            if count.holds as i64 + pending <= 0 {
                continue;
            }
            self.change(node, 0, -1);
            let children = self.children(store, txn, &node)?;
            self.releases.extend(children);
        }
        Ok(())
    }

    /// Applies this level's changes; a node whose kept-ness changed gives its children theirs
    /// for the next level.
    fn count_level(&mut self, store: &Store, txn: &ReadTxn<'_>) -> Result<()> {
        for (node, delta) in std::mem::take(&mut self.pending) {
            if delta == Delta::default() || self.in_dag(store, txn, &node)? {
                continue;
            }
            let mut count = match self.count(store, txn, &node)? {
                Some(count) => count,
                // Neither staged nor counted yet: bytes still to come (a chunk sent after the
                // blob that lists it).
                None if delta.refs >= 0 && delta.holds >= 0 => Count::none(Some(false)),
                None => continue,
            };
            let was_kept = count.kept();
            let (Some(refs), Some(holds)) = (
                count.refs.checked_add_signed(delta.refs),
                count.holds.checked_add_signed(delta.holds),
            ) else {
                // Counts out of step with the trees (a damaged store): keeping is always safe.
                tracing::warn!(sws = %self.id, %node, "a staged node lost more references than it had; kept");
                continue;
            };
            (count.refs, count.holds) = (refs, holds);
            self.counts.insert(node, count);
            if count.kept() != was_kept {
                let step = if count.kept() { 1 } else { -1 };
                for child in self.children(store, txn, &node)? {
                    self.change(child, step, 0);
                }
            }
        }
        Ok(())
    }

    /// Writes the counts that changed; deletes the nodes (and counts) nothing keeps.
    fn write(&self, store: &Store, txn: &mut RwTxn<'_>) -> Result<Settled> {
        let mut settled = Settled::default();
        for (node, count) in &self.counts {
            let key = self.id.record_key(COUNT_TAG, node.as_bytes());
            if !count.kept() {
                if !(count.fresh || count.was_kept()) {
                    continue; // never counted: left alone
                }
                let staged = self.id.staged_key(node);
                if let Some(bytes) = store.table(&RECORDS).get(txn, &staged)? {
                    settled.bytes += bytes.len() as u64;
                    settled.dropped += 1;
                    store.table(&RECORDS).delete(txn, &staged)?;
                }
                if matches!(count.stored, Stored::Record { .. }) {
                    store.table(&RECORDS).delete(txn, &key)?;
                }
                continue;
            }
            let implicit =
                count.refs == 1 && count.holds == 0 && self.is_staged(store, txn, node, count)?;
            let wanted = if implicit {
                Stored::Implicit
            } else {
                Stored::Record {
                    refs: count.refs,
                    holds: count.holds,
                }
            };
            match (count.stored, wanted) {
                (stored, wanted) if stored == wanted => {}
                (Stored::Nothing, Stored::Implicit) => {}
                (Stored::Record { .. }, Stored::Implicit) => {
                    store.table(&RECORDS).delete(txn, &key)?;
                }
                _ => store.table(&RECORDS).put(txn, &key, &count.encode())?,
            }
        }
        Ok(settled)
    }

    /// Whether `node`'s bytes are staged.
    fn is_staged(
        &self,
        store: &Store,
        txn: &ReadTxn<'_>,
        node: &NodeId,
        count: &Count,
    ) -> Result<bool> {
        match count.staged {
            Some(staged) => Ok(staged),
            None => Ok(store
                .table(&RECORDS)
                .get(txn, &self.id.staged_key(node))?
                .is_some()),
        }
    }

    /// The count record of `node`, if it has one.
    fn record(&self, store: &Store, txn: &ReadTxn<'_>, node: &NodeId) -> Result<Option<Count>> {
        let key = self.id.record_key(COUNT_TAG, node.as_bytes());
        let Some(raw) = store.table(&RECORDS).get(txn, &key)? else {
            return Ok(None);
        };
        let (refs, holds) = decode_record(node, raw)?;
        Ok(Some(Count {
            refs,
            holds,
            stored: Stored::Record { refs, holds },
            staged: None,
            fresh: false,
        }))
    }

    /// The count of `node`, loaded once: its record, else one reference if it is staged (none
    /// when counting a store from before counts); `None` when it is neither counted nor staged.
    fn count(&mut self, store: &Store, txn: &ReadTxn<'_>, node: &NodeId) -> Result<Option<Count>> {
        if let Some(count) = self.counts.get(node) {
            return Ok(Some(*count));
        }
        let count = match self.record(store, txn, node)? {
            Some(count) => count,
            None if store
                .table(&RECORDS)
                .get(txn, &self.id.staged_key(node))?
                .is_none() =>
            {
                return Ok(None)
            }
            None if self.legacy => Count::none(Some(true)),
            None => Count {
                refs: 1,
                holds: 0,
                stored: Stored::Implicit,
                staged: Some(true),
                fresh: false,
            },
        };
        self.counts.insert(*node, count);
        Ok(Some(count))
    }

    /// Whether the DAG has `node`, looked up once.
    fn in_dag(&mut self, store: &Store, txn: &ReadTxn<'_>, node: &NodeId) -> Result<bool> {
        if let Some(known) = self.in_dag.get(node) {
            return Ok(*known);
        }
        let has = store.has_node(txn, node)?;
        self.in_dag.insert(*node, has);
        Ok(has)
    }

    /// The nodes `node` names (a tree's entries, a blob's chunks), from what the caller decoded
    /// or from its staged bytes.
    fn children(&self, store: &Store, txn: &ReadTxn<'_>, node: &NodeId) -> Result<Vec<NodeId>> {
        match self.known.get(node) {
            Some(known) => Ok(known.clone()),
            None => staged_children(store, txn, self.id, node),
        }
    }
}

/// The nodes staged node `node` of SWS `id` names (a tree's entries, a blob's chunks), from the
/// store's tree cache or its bytes; none when its bytes are not staged (yet).
fn staged_children(
    store: &Store,
    txn: &ReadTxn<'_>,
    id: SwsId,
    node: &NodeId,
) -> Result<Vec<NodeId>> {
    let Some(bytes) = store.table(&RECORDS).get(txn, &id.staged_key(node))? else {
        return Ok(Vec::new());
    };
    if NodeView::peek(bytes)?.node_type == NodeType::Chunk {
        return Ok(Vec::new());
    }
    if let Some(tree) = store.trees.get(node) {
        return Ok(tree.entries.iter().map(|e| e.id).collect());
    }
    let references = Node::decode(bytes)?.references();
    Ok(references.into_iter().map(|(id, _)| id).collect())
}

/// The roots of an SWS: its working tree and every version its conflicts name.
pub(crate) fn roots(state: &SwsState) -> Vec<NodeId> {
    let mut out = vec![state.tree];
    for conflict in &state.conflicts {
        out.extend(
            [conflict.base, conflict.ours, conflict.theirs]
                .into_iter()
                .flatten(),
        );
    }
    out
}

/// Key of the pin of checkout `dir` in SWS `id`.
fn pin_key(id: SwsId, dir: &str) -> Vec<u8> {
    id.record_key(PIN_TAG, blake3::hash(dir.as_bytes()).as_bytes())
}

/// Records that checkout `dir` holds `tree` of SWS `id` (`None`: nothing any more), so the
/// staged nodes of the tree it diffs from at its next switch stay while others patch the SWS.
pub(crate) fn pin(
    store: &Store,
    txn: &mut RwTxn<'_>,
    id: SwsId,
    dir: &str,
    tree: Option<NodeId>,
) -> Result<Settled> {
    let key = pin_key(id, dir);
    let old = match store.table(&RECORDS).get(txn, &key)? {
        Some(raw) => Some(NodeId::from_slice(raw).ok_or_else(|| {
            Error::InvalidInput(format!("the pin of checkout {dir} in SWS {id} is damaged"))
        })?),
        None => None,
    };
    if old == tree {
        return Ok(Settled::default());
    }
    let mut ledger = Ledger::new(id);
    ledger.retarget(old.as_slice(), tree.as_slice());
    match tree {
        Some(tree) => store.table(&RECORDS).put(txn, &key, tree.as_bytes())?,
        None => {
            store.table(&RECORDS).delete(txn, &key)?;
        }
    }
    ledger.settle(store, txn)
}

/// The first layout whose staged nodes are counted.
pub(crate) const COUNTED: u64 = 4;

/// Trees on-disk checkouts hold, by the SWS they belong to: `(checkout directory, tree)`.
pub(crate) type CheckoutPins = HashMap<SwsId, Vec<(String, NodeId)>>;

/// Counts the staged nodes of every SWS of a store written before counts existed: references
/// from each SWS's roots and from the trees its checkouts hold (`pins`, read by the checkout
/// module, whose table they are in), and a hold on every staged node nothing reaches (it may be
/// content staged ahead of its patch), so nothing staged then is dropped before something
/// supersedes it. Part of the store upgrade to layout [`COUNTED`].
pub(crate) fn count_legacy(
    store: &Store,
    txn: &mut RwTxn<'_>,
    mut pins: CheckoutPins,
) -> Result<u64> {
    let swss = super::state::list(store, txn)?;
    let mut counted = 0;
    for (id, state) in &swss {
        let mut ledger = Ledger {
            legacy: true,
            ..Ledger::new(*id)
        };
        let mut roots = roots(state);
        for (dir, tree) in pins.remove(id).unwrap_or_default() {
            store
                .table(&RECORDS)
                .put(txn, &pin_key(*id, &dir), tree.as_bytes())?;
            roots.push(tree);
        }
        ledger.retarget(&[], &roots);
        let reached = reachable(store, txn, *id, &roots)?;
        for node in staged_ids(store, txn, *id)? {
            if !reached.contains(&node) {
                ledger.hold(node);
            }
        }
        ledger.settle(store, txn)?;
        counted += 1;
    }
    Ok(counted)
}

/// The staged nodes of SWS `id` that `roots` reach (through staged nodes only: the DAG never
/// names a staged node).
fn reachable(
    store: &Store,
    txn: &ReadTxn<'_>,
    id: SwsId,
    roots: &[NodeId],
) -> Result<HashSet<NodeId>> {
    let mut reached = HashSet::new();
    let mut work = roots.to_vec();
    while let Some(node) = work.pop() {
        if store
            .table(&RECORDS)
            .get(txn, &id.staged_key(&node))?
            .is_none()
            || !reached.insert(node)
        {
            continue;
        }
        work.extend(staged_children(store, txn, id, &node)?);
    }
    Ok(reached)
}

/// The ids of every node staged for SWS `id`.
pub(crate) fn staged_ids(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<Vec<NodeId>> {
    let prefix = id.record_key(STAGED_TAG, &[]);
    let mut out = Vec::new();
    for entry in store.table(&RECORDS).prefix_iter(txn, &prefix)? {
        let (key, _) = entry?;
        if let Some(node) = NodeId::from_slice(&key[prefix.len()..]) {
            out.push(node);
        }
    }
    Ok(out)
}

/// What a recount from scratch finds wrong with SWS `id`'s counts: references that differ from
/// what its roots, pins, holds and kept nodes give, staged nodes nothing keeps (a leak) and kept
/// nodes that are not staged (a loss). Empty when the counts are exact.
#[cfg(test)]
pub(crate) fn audit(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<Vec<String>> {
    use std::collections::HashSet;

    let state = super::state::get(store, txn, id)?;
    let mut roots = roots(&state);
    for entry in store
        .table(&RECORDS)
        .prefix_iter(txn, &id.record_key(PIN_TAG, &[]))?
    {
        let (_, raw) = entry?;
        roots.extend(NodeId::from_slice(raw));
    }
    let staged: HashSet<NodeId> = staged_ids(store, txn, id)?.into_iter().collect();
    // (references, holds): a record, else one reference for a staged node.
    let mut stored: HashMap<NodeId, (u64, u64)> = staged.iter().map(|n| (*n, (1, 0))).collect();
    let count_prefix = id.record_key(COUNT_TAG, &[]);
    for entry in store.table(&RECORDS).prefix_iter(txn, &count_prefix)? {
        let (key, raw) = entry?;
        let node = NodeId::from_slice(&key[count_prefix.len()..])
            .ok_or_else(|| Error::InvalidInput("count key".into()))?;
        let record = decode_record(&node, raw)?;
        if record == (1, 0) && staged.contains(&node) {
            return Ok(vec![format!(
                "{node}: a record says what its absence would"
            )]);
        }
        stored.insert(node, record);
    }
    let ledger = Ledger::new(id);
    let mut expected: HashMap<NodeId, u64> = HashMap::new();
    let mut work: Vec<NodeId> = stored
        .iter()
        .filter(|(_, (_, holds))| *holds > 0)
        .map(|(n, _)| *n)
        .collect();
    for root in roots {
        if !store.has_node(txn, &root)? {
            *expected.entry(root).or_default() += 1;
            work.push(root);
        }
    }
    let mut kept = HashSet::new();
    while let Some(node) = work.pop() {
        if !kept.insert(node) {
            continue;
        }
        for child in ledger.children(store, txn, &node)? {
            if !store.has_node(txn, &child)? {
                *expected.entry(child).or_default() += 1;
                work.push(child);
            }
        }
    }
    let mut problems = Vec::new();
    for node in kept.iter().chain(stored.keys()) {
        let refs = stored.get(node).map_or(0, |(refs, _)| *refs);
        let want = expected.get(node).copied().unwrap_or(0);
        if refs != want {
            problems.push(format!("{node}: {refs} references counted, {want} found"));
        }
    }
    for node in staged.difference(&kept) {
        problems.push(format!("{node}: staged but nothing keeps it"));
    }
    for node in kept.difference(&staged) {
        problems.push(format!("{node}: kept but not staged"));
    }
    problems.sort();
    problems.dedup();
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::{self, Record};
    use crate::collapse::{self, Outcome};
    use crate::content::{read_blob, split_bytes};
    use crate::patch::{Patch, PatchOp};
    use crate::refs::RefName;
    use crate::repo::Repository;
    use crate::source::Source;
    use crate::sws::{self, SwsSource};

    /// A new universe with one SWS on main.
    fn sws_repo() -> (tempfile::TempDir, Repository, SwsId) {
        let (dir, repo) = Repository::scratch();
        let main = RefName::branch("main").unwrap();
        let id = sws::create(repo.store(), &main, None, "me", None)
            .unwrap()
            .0;
        (dir, repo, id)
    }

    /// Stages `data`'s nodes for SWS `id` ahead of the patch that will name its blob; returns
    /// the blob.
    fn stage_ahead(repo: &Repository, id: SwsId, data: &[u8]) -> NodeId {
        let (blob, nodes) = split_bytes(data).unwrap();
        let encoded: Vec<Vec<u8>> = nodes.iter().map(|n| n.bytes.clone()).collect();
        sws::stage_content(repo.store(), id, &encoded).unwrap();
        blob
    }

    fn patch(id: &str, ops: Vec<PatchOp>) -> Patch {
        Patch {
            id: id.into(),
            author: "me".into(),
            ts: 0,
            ops,
        }
    }

    /// Deterministic pseudo-random numbers (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    fn assert_exact(repo: &Repository, id: SwsId, after: &str) {
        let txn = repo.store().read().unwrap();
        let problems = audit(repo.store(), &txn, id).unwrap();
        assert!(problems.is_empty(), "after {after}: {problems:#?}");
    }

    /// Every file of SWS `id`'s working tree reads whole.
    fn assert_readable(repo: &Repository, id: SwsId, tree: Option<NodeId>, after: &str) {
        let txn = repo.store().read().unwrap();
        let src = SwsSource::new(repo.store(), &txn, id);
        let tree = tree.unwrap_or_else(|| sws::get(repo.store(), &txn, id).unwrap().tree);
        crate::tree::walk(&src, &tree, b"", true, &mut |path, entry| {
            if entry.kind != crate::node::EntryKind::Directory {
                read_blob(&src, &entry.id).map_err(|e| {
                    Error::InvalidInput(format!(
                        "after {after}: {} unreadable: {e}",
                        String::from_utf8_lossy(path)
                    ))
                })?;
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn counts_stay_exact_and_staging_minimal_through_random_patches() {
        for seed in [0x5eed, 7, 1 << 40] {
            random_patches(seed);
        }
    }

    /// 400 random patches of every kind on one SWS, checking after each that the counts are
    /// exact, nothing is leaked or lost and every file reads; then a commit.
    fn random_patches(seed: u64) {
        let (_dir, repo, id) = sws_repo();
        let mut rng = Rng(seed);
        // Content shared in every way: equal small files, large files that share chunks.
        let big = rng.bytes(300_000);
        let mut pool: Vec<Vec<u8>> = vec![b"one\n".to_vec(), b"two\n".to_vec(), big.clone()];
        pool.push([&big[..], b"tail"].concat());
        pool.push([&rng.bytes(70_000)[..], &big[..150_000]].concat());
        let paths = ["a", "b", "d/x", "d/y", "d/e/z", "f/x", "f/e/z"];
        let mut ahead: Vec<NodeId> = Vec::new();
        for round in 0..400 {
            let path = paths[rng.below(paths.len())].to_owned();
            let data = &pool[rng.below(pool.len())];
            let op = match rng.below(8) {
                0 | 1 => PatchOp::Put {
                    path,
                    content: data.clone(),
                    executable: false,
                },
                2 => PatchOp::Delete { path },
                3 => {
                    // Subtrees move, to other depths too.
                    let dirs = ["d", "f", "g", "d/e", "g/h/i"];
                    PatchOp::Rename {
                        from: dirs[rng.below(dirs.len())].into(),
                        to: dirs[rng.below(dirs.len())].into(),
                    }
                }
                4 => {
                    // Staged ahead: the patch that names it comes some rounds later.
                    let unique = [&data[..], &rng.bytes(8)[..]].concat();
                    ahead.push(stage_ahead(&repo, id, &unique));
                    assert_exact(&repo, id, &format!("seed {seed} round {round} (stage)"));
                    continue;
                }
                5 if !ahead.is_empty() => PatchOp::PutBlob {
                    path,
                    blob: ahead.remove(rng.below(ahead.len())),
                    executable: false,
                },
                _ => {
                    // Sent with content the patch does not use (a file that changed again
                    // while the mount hashed it): that is not kept.
                    let (blob, mut nodes) = split_bytes(data).unwrap();
                    if rng.below(2) == 0 {
                        nodes.extend(split_bytes(&rng.bytes(100_000)).unwrap().1);
                    }
                    let op = PatchOp::PutBlob {
                        path,
                        blob,
                        executable: false,
                    };
                    let p = patch(&format!("p{round}"), vec![op]);
                    sws::apply_patch_with_nodes(repo.store(), id, &p, &nodes).unwrap();
                    assert_exact(&repo, id, &format!("seed {seed} round {round}"));
                    assert_readable(&repo, id, None, &format!("seed {seed} round {round}"));
                    continue;
                }
            };
            // A refused patch (no such path, say) changes nothing.
            let _ = sws::apply_patch(repo.store(), id, &patch(&format!("p{round}"), vec![op]));
            assert_exact(&repo, id, &format!("seed {seed} round {round}"));
            assert_readable(&repo, id, None, &format!("seed {seed} round {round}"));
        }
        // Content staged ahead and never named is still whole, and only it is held: naming a
        // blob released its holds.
        let txn = repo.store().read().unwrap();
        let src = SwsSource::new(repo.store(), &txn, id);
        for blob in &ahead {
            read_blob(&src, blob).unwrap();
        }
        let prefix = id.record_key(COUNT_TAG, &[]);
        for entry in repo
            .store()
            .table(&RECORDS)
            .prefix_iter(&txn, &prefix)
            .unwrap()
        {
            let (key, raw) = entry.unwrap();
            let node = NodeId::from_slice(&key[prefix.len()..]).unwrap();
            let (_, holds) = decode_record(&node, raw).unwrap();
            let is_blob = src.view(&node).unwrap().node_type == NodeType::Blob;
            if holds > 0 && is_blob {
                assert!(ahead.contains(&node), "{node} is held after it was named");
            }
        }
        drop(txn);
        let info = crate::history::CommitInfo {
            author: "me <me@example.org>".into(),
            message: "random".into(),
            time: crate::DeclaredTime {
                seconds: 0,
                tz_minutes: 0,
            },
        };
        assert!(matches!(
            collapse::commit(repo.store(), id, &info).unwrap(),
            Outcome::Committed { .. }
        ));
        assert!(crate::fsck::fsck(repo.store()).unwrap().is_clean());
    }

    #[test]
    fn a_checkout_keeps_the_tree_it_recorded_while_others_patch_its_sws() {
        let (_dir, repo) = Repository::scratch();
        let store = repo.store();
        checkout::record(store, &Record::new_checkout_of_main("/co"), "me").unwrap();
        let big = Rng(7).bytes(200_000);
        let recorded = checkout::record(
            store,
            &Record {
                dir: "/co".into(),
                generation: 1,
                patch: Some(patch(
                    "w1",
                    vec![PatchOp::Put {
                        path: "f".into(),
                        content: big.clone(),
                        executable: false,
                    }],
                )),
                ..Record::default()
            },
            "me",
        )
        .unwrap();
        let id: SwsId = recorded.sws.parse().unwrap();
        let held = recorded.applied.unwrap().tree;
        // Another writer (the mount, say) replaces the file twice.
        for round in 0..2 {
            let op = PatchOp::Put {
                path: "f".into(),
                content: Rng(round + 10).bytes(200_000),
                executable: false,
            };
            sws::apply_patch(store, id, &patch(&format!("m{round}"), vec![op])).unwrap();
        }
        assert_exact(&repo, id, "the other writer's patches");
        assert_readable(&repo, id, Some(held), "the other writer's patches");
        // The checkout's next record moves its pin: what only it held goes.
        let before = sws::staged_size(store, &store.read().unwrap(), id).unwrap();
        let next = Record {
            dir: "/co".into(),
            generation: 2,
            patch: Some(patch(
                "w2",
                vec![PatchOp::Put {
                    path: "g".into(),
                    content: b"small\n".to_vec(),
                    executable: false,
                }],
            )),
            ..Record::default()
        };
        checkout::record(store, &next, "me").unwrap();
        assert_exact(&repo, id, "the checkout's next record");
        let after = sws::staged_size(store, &store.read().unwrap(), id).unwrap();
        assert!(
            after.bytes + 150_000 < before.bytes,
            "{before:?} → {after:?}"
        );
        checkout::forget(store, "/co").unwrap();
        assert_exact(&repo, id, "forget");
    }

    #[test]
    fn a_store_from_before_counts_gets_them_once_and_drops_nothing_it_needs() {
        let (dir, repo, id) = sws_repo();
        let mut rng = Rng(3);
        let a = rng.bytes(300_000);
        let op = PatchOp::Put {
            path: "a".into(),
            content: a.clone(),
            executable: false,
        };
        sws::apply_patch(repo.store(), id, &patch("a", vec![op])).unwrap();
        // Content staged ahead of its patch, sharing chunks with a.
        let b = [&a[..], b"more"].concat();
        let b_blob = stage_ahead(&repo, id, &b);
        // Make it look like layout 3: no counts.
        let store = repo.store();
        store
            .unlogged_write(|wtxn| {
                let prefix = id.record_key(COUNT_TAG, &[]);
                let keys: Vec<Vec<u8>> = store
                    .table(&RECORDS)
                    .prefix_iter(wtxn, &prefix)?
                    .map(|e| e.map(|(key, _)| key.to_vec()))
                    .collect::<std::result::Result<_, _>>()?;
                assert!(!keys.is_empty());
                for key in keys {
                    store.table(&RECORDS).delete(wtxn, &key)?;
                }
                store.meta.put(wtxn, "layout", &3u64.to_be_bytes())?;
                Ok(())
            })
            .unwrap();
        drop(repo);
        let repo = Repository::open(dir.path()).unwrap();
        assert_exact(&repo, id, "the upgrade");
        // a is rewritten and deleted; b, staged ahead, is named afterwards and reads whole.
        let op = PatchOp::Put {
            path: "a".into(),
            content: rng.bytes(300_000),
            executable: false,
        };
        sws::apply_patch(repo.store(), id, &patch("a2", vec![op])).unwrap();
        let op = PatchOp::Delete { path: "a".into() };
        sws::apply_patch(repo.store(), id, &patch("rm", vec![op])).unwrap();
        let op = PatchOp::PutBlob {
            path: "b".into(),
            blob: b_blob,
            executable: false,
        };
        sws::apply_patch(repo.store(), id, &patch("b", vec![op])).unwrap();
        assert_exact(&repo, id, "patches after the upgrade");
        let txn = repo.store().read().unwrap();
        let src = SwsSource::new(repo.store(), &txn, id);
        assert_eq!(read_blob(&src, &b_blob).unwrap(), b);
        assert!(src.bytes(&b_blob).unwrap().is_some());
    }
}
