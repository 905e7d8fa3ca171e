//! Shadow Working Sets (RFC-0003, RFC-0019): isolated, persistent overlays anchored on one
//! snapshot. An SWS's working tree is itself a tree of nodes — the base tree with the paths its
//! patches touched re-encoded — whose new nodes are *staged* under the SWS's id, outside the DAG,
//! until a commit appends the ones its result needs. So lookups, diffs and commits use the same
//! tree code as history, two SWS never see each other's edits, discarding one deletes one key
//! prefix, and everything survives a restart because it lives in LMDB.
//!
//! Everything of one SWS lives in one table under keys that start with its id: the state at the
//! bare id, then its micro-history, its applied patch ids, its staged nodes, their counts and
//! its checkouts' pins, each behind a one-byte record tag. A patch therefore dirties one B-tree
//! path for all of them, which is most of what its durable commit costs.
//!
//! Invariant: a staged node stays exactly as long as something live reaches it — the working
//! tree, a version a conflict names, a tree a checkout holds, or content staged ahead of the
//! patch that will name it. Whatever a patch (or a conflicted commit) supersedes and nothing
//! live reaches is dropped in the patch's own transaction, so rewriting a file keeps one
//! version of it staged, not one per write-back; the micro-history keeps its records, but the
//! trees of superseded records may be gone. The counting is in [`gc`].

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub(crate) mod gc;
mod state;

pub use state::{exists, get, list, SwsId, SwsState};
pub(crate) use state::{
    put_state, HISTORY_TAG, RECORDS_TABLE, STAGED_TAG, TAG_RECORDS, WORKING_TABLE,
};
use state::{RECORDS, WORKING};

use crate::cbor;
use crate::content::EncodedNode;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::log::LogOp;
use crate::node::Node;
use crate::patch::{self, Patch, PatchOp};
use crate::refname::{RefKind, RefName};
use crate::source::{Dag, Source};
use crate::store::{NodeHeader, Op, ReadTxn, Store};
use crate::tree::{self, Change};
use crate::treeedit::TreeEditor;
use gc::Ledger;

/// One entry of an SWS's micro-history: one applied patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// Position in the micro-history, from 1.
    pub seq: u64,
    /// The patch's id.
    pub patch_id: String,
    /// Who wrote it.
    pub author: String,
    /// Their logical timestamp.
    pub ts: u64,
    /// How many operations it had.
    pub ops: u64,
    /// The working tree after it.
    pub tree: NodeId,
}

/// What applying a patch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The patch's position in the micro-history.
    pub seq: u64,
    /// The working tree after it.
    pub tree: NodeId,
    /// True when this patch id had been applied before (and nothing changed now).
    pub duplicate: bool,
}

/// How much is staged for an SWS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StagedSize {
    /// Staged nodes.
    pub nodes: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// An SWS's view of nodes: the DAG plus its own staged nodes.
pub struct SwsSource<'a, 't> {
    dag: Dag<'a, 't>,
    id: SwsId,
}

impl<'a, 't> SwsSource<'a, 't> {
    /// The view of SWS `id` within `txn`.
    pub fn new(store: &'a Store, txn: &'a ReadTxn<'t>, id: SwsId) -> Self {
        SwsSource {
            dag: Dag::new(store, txn),
            id,
        }
    }
}

impl Source for SwsSource<'_, '_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<Cow<'_, [u8]>>> {
        if let Some(bytes) = self.dag.bytes(id)? {
            return Ok(Some(bytes));
        }
        match self
            .dag
            .store
            .table(&RECORDS)
            .get(self.dag.txn, &self.id.staged_key(id))?
        {
            Some(bytes) => Ok(Some(Cow::Borrowed(crate::store::verified(id, bytes)?))),
            None => Ok(None),
        }
    }

    fn bytes_many(&self, ids: &[NodeId]) -> Result<Vec<Option<Cow<'_, [u8]>>>> {
        let mut found = self.dag.bytes_many(ids)?;
        let staged = ids
            .iter()
            .zip(&found)
            .filter(|(_, bytes)| bytes.is_none())
            .map(|(id, _)| {
                let key = self.id.staged_key(id);
                Ok((*id, self.dag.store.table(&RECORDS).get(self.dag.txn, &key)?))
            })
            .collect::<Result<Vec<_>>>()?;
        if staged.is_empty() {
            return Ok(found);
        }
        crate::store::verified_all(&staged)?;
        let mut staged = staged.into_iter().map(|(_, bytes)| bytes);
        for slot in found.iter_mut().filter(|bytes| bytes.is_none()) {
            *slot = staged.next().flatten().map(Cow::Borrowed);
        }
        Ok(found)
    }

    fn has(&self, id: &NodeId) -> Result<bool> {
        Ok(self.dag.has(id)?
            || self
                .dag
                .store
                .table(&RECORDS)
                .get(self.dag.txn, &self.id.staged_key(id))?
                .is_some())
    }

    fn header(&self, id: &NodeId) -> Result<Option<NodeHeader>> {
        if let Some(header) = self.dag.header(id)? {
            return Ok(Some(header));
        }
        match self.bytes(id)? {
            Some(bytes) => Ok(Some(crate::node::Node::decode(&bytes)?.header())),
            None => Ok(None),
        }
    }

    fn tree_cache(&self) -> Option<&crate::treecache::TreeCache> {
        self.dag.tree_cache()
    }
}

/// `shadow.create`: a new SWS on the tip of `branch` (or on `base`, if given, committing to
/// `branch`). Returns its id and state.
pub fn create(
    store: &Store,
    branch: &RefName,
    base: Option<NodeId>,
    owner: &str,
    name: Option<&str>,
) -> Result<(SwsId, SwsState)> {
    store.operation("shadow.create", |op| {
        create_in(op, branch, base, owner, name)
    })
}

pub(crate) fn create_in(
    op: &mut Op<'_>,
    branch: &RefName,
    base: Option<NodeId>,
    owner: &str,
    name: Option<&str>,
) -> Result<(SwsId, SwsState)> {
    if branch.kind() != RefKind::Branch {
        return Err(Error::TagImmutable(branch.short().to_owned()));
    }
    let tip = op
        .store()
        .ref_target(op.txn(), branch.full())?
        .ok_or_else(|| Error::RefNotFound(branch.to_string()))?;
    let base = base.unwrap_or(tip);
    let tree = tree::tree_of(&Dag::new(op.store(), op.txn()), &base)?;
    let id = SwsId::random();
    let state = SwsState {
        owner: owner.to_owned(),
        name: name.map(str::to_owned),
        branch: branch.full().to_owned(),
        base,
        tree,
        patches: 0,
        conflicts: Vec::new(),
        delegates: Vec::new(),
    };
    put_state(op, id, &state)?;
    count_roots(op, id, &state)?;
    op.log(LogOp::SwsCreated {
        sws: id.to_string(),
        branch: branch.full().to_owned(),
        base,
        owner: owner.to_owned(),
    })?;
    Ok((id, state))
}

/// The working SWS of `branch` (the one `head/` and `jit status` show), created on first use.
/// While it has no work it follows the branch wherever it moves ([`follow_branch`]).
pub fn working(store: &Store, branch: &RefName, owner: &str) -> Result<SwsId> {
    {
        let txn = store.read()?;
        if let Some(id) = working_id(store, &txn, branch)? {
            return Ok(id);
        }
    }
    store.operation("shadow.create", |op| working_in(op, branch, owner))
}

/// [`working`] within an operation.
pub(crate) fn working_in(op: &mut Op<'_>, branch: &RefName, owner: &str) -> Result<SwsId> {
    if let Some(id) = working_id(op.store(), op.txn(), branch)? {
        return Ok(id);
    }
    let (id, _) = create_in(
        op,
        branch,
        None,
        owner,
        Some(&format!("working:{}", branch.short())),
    )?;
    let store = op.store();
    store.table(&WORKING).put(op.wtxn(), branch.full(), &id.0)?;
    Ok(id)
}

/// The working SWS of `branch` if it has one now (never creates it: safe where writing is not).
pub fn working_id(store: &Store, txn: &ReadTxn<'_>, branch: &RefName) -> Result<Option<SwsId>> {
    let Some(raw) = store.table(&WORKING).get(txn, branch.full())? else {
        return Ok(None);
    };
    let Ok(bytes) = <[u8; 16]>::try_from(raw) else {
        return Ok(None);
    };
    let id = SwsId(bytes);
    Ok(store
        .table(&RECORDS)
        .get(txn, &id.0)?
        .is_some()
        .then_some(id))
}

/// Re-anchors the working SWS of `branch` on `tip`, the branch's new target, when it has no
/// work: no conflicts, and a tree equal to its base's (never written, or written and reverted).
/// Such an SWS stands for "the branch as it is", so it must not keep showing the tip it was
/// created on after a reset, a sync, an import or another SWS's commit moved the branch:
/// `head/`, `jit status` and `jit checkout --into` read it. One with work keeps its base, so the
/// work is never lost; its commit merges with the new tip. Its micro-history and patch ids stay
/// until it is committed or discarded (both trees are in the DAG: nothing staged changes).
/// Logged as `sws-reanchored`.
///
/// Called by [`refs`] wherever a branch ref is written, in the same operation.
pub(crate) fn follow_branch(op: &mut Op<'_>, branch: &RefName, tip: &NodeId) -> Result<()> {
    let Some(id) = working_id(op.store(), op.txn(), branch)? else {
        return Ok(());
    };
    let mut state = get(op.store(), op.txn(), id)?;
    if state.base == *tip || !state.conflicts.is_empty() {
        return Ok(());
    }
    let (base_tree, tip_tree) = {
        let dag = Dag::new(op.store(), op.txn());
        (tree::tree_of(&dag, &state.base)?, tree::tree_of(&dag, tip)?)
    };
    if state.tree != base_tree {
        return Ok(());
    }
    let before = state.clone();
    state.base = *tip;
    state.tree = tip_tree;
    put_state(op, id, &state)?;
    supersede(op, Ledger::new(id), &before, &state)?;
    op.log(LogOp::SwsReanchored {
        sws: id.to_string(),
        from: before.base,
        to: *tip,
    })?;
    Ok(())
}

/// `shadow.apply_patch`: applies a patch whole or not at all. A patch id already applied to this
/// SWS is answered with its original result and changes nothing.
pub fn apply_patch(store: &Store, id: SwsId, patch: &Patch) -> Result<Applied> {
    store.operation("shadow.apply_patch", |op| apply_in(op, id, patch))
}

/// Applies a patch whose `put-blob` operations name content that is not stored yet: `nodes`
/// (chunks and blobs, typically just split from a file) are staged for the SWS first, in the
/// same transaction. This is how the mount's write-back lands file content. Those of `nodes`
/// the patched tree does not use are not kept.
pub fn apply_patch_with_nodes(
    store: &Store,
    id: SwsId,
    patch: &Patch,
    nodes: &[EncodedNode],
) -> Result<Applied> {
    store.operation("shadow.apply_patch", |op| {
        check_content(nodes)?;
        apply_with(op, id, patch, nodes)
    })
}

/// Stages content nodes (chunks and blobs, each canonical CBOR) for an SWS ahead of the patch
/// whose `put-blob` uses them. This is how a client lands a file larger than one request: its
/// nodes in several requests, then a small patch naming the blob. Each node is held until a
/// patch names it (see [`gc`]): patches in between never drop it.
pub fn stage_content(store: &Store, id: SwsId, encoded: &[Vec<u8>]) -> Result<usize> {
    let nodes = encoded
        .iter()
        .map(|bytes| {
            let node = Node::decode(bytes)?;
            Ok(EncodedNode {
                id: NodeId::of_bytes(bytes),
                bytes: bytes.clone(),
                node,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    store.operation("shadow.stage", |op| {
        check_content(&nodes)?;
        get(op.store(), op.txn(), id)?;
        let mut ledger = Ledger::new(id);
        stage(op, &mut ledger, &nodes)?;
        for node in &nodes {
            ledger.hold(node.id);
        }
        settle(op, ledger)?;
        Ok(nodes.len())
    })
}

/// Refuses anything but well-formed content nodes that hash to their ids.
fn check_content(nodes: &[EncodedNode]) -> Result<()> {
    for node in nodes {
        if NodeId::of_bytes(&node.bytes) != node.id {
            return Err(Error::InvalidInput(format!(
                "node {} does not hash to its id",
                node.id
            )));
        }
        if node.node.node_type().is_content() {
            node.node.validate_shape()?;
        } else {
            return Err(Error::InvalidInput(format!(
                "only content nodes may be staged, not a {}",
                node.node.node_type().as_str()
            )));
        }
    }
    Ok(())
}

/// Applies `patch` to SWS `id` within an operation (see [`apply_patch`]).
pub(crate) fn apply_in(op: &mut Op<'_>, id: SwsId, patch: &Patch) -> Result<Applied> {
    apply_with(op, id, patch, &[])
}

/// [`apply_in`] with content `nodes` staged for the patch first (see
/// [`apply_patch_with_nodes`]); `nodes` must have passed [`check_content`].
fn apply_with(op: &mut Op<'_>, id: SwsId, patch: &Patch, nodes: &[EncodedNode]) -> Result<Applied> {
    let mut state = get(op.store(), op.txn(), id)?;
    let patch_key = id.patch_key(&patch.id);
    if let Some(raw) = op.store().table(&RECORDS).get(op.txn(), &patch_key)? {
        let seq = <[u8; 8]>::try_from(raw)
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        return Ok(Applied {
            seq,
            tree: history_record(op.store(), op.txn(), id, seq)?
                .map(|r| r.tree)
                .unwrap_or(state.tree),
            duplicate: true,
        });
    }
    let mut ledger = Ledger::new(id);
    stage(op, &mut ledger, nodes)?;
    let (tree, staged) = {
        let src = SwsSource::new(op.store(), op.txn(), id);
        let mut editor = TreeEditor::new(&src);
        let tree = patch::apply(&mut editor, state.tree, patch)?;
        (tree, editor.finish(&tree)?)
    };
    let old = state.clone();
    state.tree = tree;
    state.patches += 1;
    let seq = state.patches;
    put_state(op, id, &state)?;
    stage(op, &mut ledger, &staged)?;
    for patch_op in &patch.ops {
        if let PatchOp::PutBlob { blob, .. } = patch_op {
            ledger.release(*blob);
        }
    }
    supersede(op, ledger, &old, &state)?;
    let record = PatchRecord {
        seq,
        patch_id: patch.id.clone(),
        author: patch.author.clone(),
        ts: patch.ts,
        ops: patch.ops.len() as u64,
        tree,
    };
    let store = op.store();
    store.table(&RECORDS).put(
        op.wtxn(),
        &id.history_key(seq),
        &cbor::to_canonical_bytes(&record)?,
    )?;
    store
        .table(&RECORDS)
        .put(op.wtxn(), &patch_key, &seq.to_be_bytes())?;
    op.log(LogOp::SwsPatched {
        sws: id.to_string(),
        seq,
        patch_id: patch.id.clone(),
    })?;
    Ok(Applied {
        seq,
        tree,
        duplicate: false,
    })
}

/// Writes nodes into an SWS's staging area (skipping any the DAG or the staging area already
/// has), noting their children in `ledger`. The largest go first: LMDB gives each value the
/// first free run of pages it fits in, and filling the runs a dropped version left with the
/// largest values first leaves fewer too small to use (first fit, decreasing).
pub(crate) fn stage(op: &mut Op<'_>, ledger: &mut Ledger, nodes: &[EncodedNode]) -> Result<()> {
    ledger.know(nodes);
    let mut order: Vec<&EncodedNode> = nodes.iter().collect();
    order.sort_by_key(|node| std::cmp::Reverse(node.bytes.len()));
    let store = op.store();
    for node in order {
        ledger.stage(store, op.wtxn(), node.id, &node.bytes)?;
    }
    Ok(())
}

/// Counts the change of an SWS's roots from those of `old` to those of `new` (its working
/// tree, its conflicts' versions) in `ledger`, and drops what nothing reaches any more.
pub(crate) fn supersede(
    op: &mut Op<'_>,
    mut ledger: Ledger,
    old: &SwsState,
    new: &SwsState,
) -> Result<()> {
    ledger.retarget(&gc::roots(old), &gc::roots(new));
    settle(op, ledger)
}

/// Counts the roots of a new SWS.
fn count_roots(op: &mut Op<'_>, id: SwsId, state: &SwsState) -> Result<()> {
    let mut ledger = Ledger::new(id);
    ledger.retarget(&[], &gc::roots(state));
    settle(op, ledger)
}

/// Settles `ledger` in `op`'s transaction.
fn settle(op: &mut Op<'_>, ledger: Ledger) -> Result<()> {
    let store = op.store();
    let settled = ledger.settle(store, op.wtxn())?;
    if settled.dropped > 0 {
        tracing::trace!(
            nodes = settled.dropped,
            bytes = settled.bytes,
            "dropped superseded staged nodes"
        );
        op.note_freed(settled.bytes);
    }
    Ok(())
}

/// Records that checkout `dir` holds `tree` of SWS `id` (`None`: nothing any more): its staged
/// nodes stay while others patch the SWS, so the checkout's next switch can diff from it.
pub(crate) fn pin_checkout(
    op: &mut Op<'_>,
    id: SwsId,
    dir: &str,
    tree: Option<NodeId>,
) -> Result<()> {
    let store = op.store();
    let settled = gc::pin(store, op.wtxn(), id, dir, tree)?;
    op.note_freed(settled.bytes);
    Ok(())
}

/// How many nodes, and bytes, are staged for SWS `id`.
pub fn staged_size(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<StagedSize> {
    let mut size = StagedSize::default();
    for entry in store
        .table(&RECORDS)
        .prefix_iter(txn, &id.record_key(STAGED_TAG, &[]))?
    {
        let (_, bytes) = entry?;
        size.nodes += 1;
        size.bytes += bytes.len() as u64;
    }
    Ok(size)
}

/// One micro-history record.
pub fn history_record(
    store: &Store,
    txn: &ReadTxn<'_>,
    id: SwsId,
    seq: u64,
) -> Result<Option<PatchRecord>> {
    match store.table(&RECORDS).get(txn, &id.history_key(seq))? {
        Some(raw) => Ok(Some(cbor::from_canonical_bytes(raw)?)),
        None => Ok(None),
    }
}

/// The whole micro-history, oldest first.
pub fn history(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<Vec<PatchRecord>> {
    let mut out = Vec::new();
    for entry in store
        .table(&RECORDS)
        .prefix_iter(txn, &id.record_key(HISTORY_TAG, &[]))?
    {
        let (_, raw) = entry?;
        out.push(cbor::from_canonical_bytes(raw)?);
    }
    Ok(out)
}

/// `shadow.diff`: file-level changes from the SWS's base to its working tree.
pub fn diff(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<Vec<Change>> {
    let state = get(store, txn, id)?;
    let src = SwsSource::new(store, txn, id);
    let base_tree = tree::tree_of(&src, &state.base)?;
    tree::diff(&src, &base_tree, &state.tree)
}

/// `shadow.discard`: removes the SWS and everything staged for it. The DAG is untouched.
pub fn discard(store: &Store, id: SwsId) -> Result<()> {
    store.operation("shadow.discard", |op| discard_in(op, id))
}

/// Makes the registered agent `agent` a delegate of SWS `id`: it may then write and commit it
/// as its owner may. Returns the SWS's state.
pub fn delegate(store: &Store, id: SwsId, agent: &str) -> Result<SwsState> {
    if crate::agents::get(store, agent)?.is_none() {
        return Err(Error::InvalidInput(format!(
            "no agent is registered as {agent:?} (jit agent add or jit agent new)"
        )));
    }
    store.operation("shadow.delegate", |op| {
        let mut state = get(op.store(), op.txn(), id)?;
        if !state.delegates.iter().any(|d| d == agent) {
            state.delegates.push(agent.to_owned());
            state.delegates.sort();
            put_state(op, id, &state)?;
            op.log(LogOp::SwsDelegated {
                sws: id.to_string(),
                agent: agent.to_owned(),
            })?;
        }
        Ok(state)
    })
}

/// [`discard`] within an operation.
pub(crate) fn discard_in(op: &mut Op<'_>, id: SwsId) -> Result<()> {
    get(op.store(), op.txn(), id)?;
    remove(op, id)?;
    op.log(LogOp::SwsDiscarded {
        sws: id.to_string(),
    })?;
    Ok(())
}

/// Deletes every record of an SWS (state, staging, micro-history, patch ids, working entry).
pub(crate) fn remove(op: &mut Op<'_>, id: SwsId) -> Result<()> {
    let store = op.store();
    let keys: Vec<Vec<u8>> = store
        .table(&RECORDS)
        .prefix_iter(op.txn(), &id.0)?
        .map(|entry| entry.map(|(key, _)| key.to_vec()))
        .collect::<Result<_, _>>()?;
    for key in keys {
        store.table(&RECORDS).delete(op.wtxn(), &key)?;
    }
    let working: Vec<String> = store
        .table(&WORKING)
        .iter(op.txn())?
        .filter_map(|entry| match entry {
            Ok((branch, raw)) if raw == id.0 => Some(Ok(branch.to_owned())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for branch in working {
        store.table(&WORKING).delete(op.wtxn(), &branch)?;
    }
    Ok(())
}
