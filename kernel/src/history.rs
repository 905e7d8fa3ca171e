//! Moving branches through history: committing a tree, and non-fast-forward moves (reset) that
//! go through an inversion-rewrite node so history is never edited.

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{DeclaredTime, Node, NodeType, Payload, Rewrite, RewriteKind, Snapshot};
use crate::refs::{self, RefName};
use crate::source::Dag;
use crate::store::{Op, Store};
use crate::tree;

/// The declared inputs of a commit: everything about it that is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Author, conventionally `Name <email>`.
    pub author: String,
    /// The message.
    pub message: String,
    /// The declared time.
    pub time: DeclaredTime,
}

/// Whether a commit whose tree equals its parent's is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyCommit {
    /// Refuse with "nothing to commit" (git's default).
    Refuse,
    /// Record it anyway.
    Allow,
}

fn snapshot_node(parent: NodeId, clock: u64, tree: NodeId, info: &CommitInfo) -> Node {
    Node::with_parents(
        vec![parent],
        clock,
        Payload::Snapshot(Snapshot {
            tree,
            author: info.author.clone(),
            message: info.message.clone(),
            time: info.time,
        }),
    )
}

/// Commits `tree` on top of `branch` in one operation: snapshot, log records, and the branch move
/// written last. Returns the new snapshot's id.
pub fn commit_tree(
    store: &Store,
    branch: &RefName,
    tree: NodeId,
    info: &CommitInfo,
    empty: EmptyCommit,
) -> Result<NodeId> {
    store.operation("commit", |op| {
        let tip = refs::get(op.store(), op.txn(), branch)?
            .ok_or_else(|| Error::RefNotFound(branch.to_string()))?;
        if empty == EmptyCommit::Refuse
            && tree::tree_of(&Dag::new(op.store(), op.txn()), &tip)? == tree
        {
            return Err(Error::InvalidInput(
                "nothing to commit: the tree is the same as the branch tip's".into(),
            ));
        }
        commit_on(op, branch, tip, tree, info)
    })
}

/// Appends a snapshot of `tree` whose parent is `tip` and moves `branch` to it.
fn commit_on(
    op: &mut Op<'_>,
    branch: &RefName,
    tip: NodeId,
    tree: NodeId,
    info: &CommitInfo,
) -> Result<NodeId> {
    let clock = dag::clock_of(op.store(), op.txn(), &tip)?.saturating_add(1);
    let snapshot = dag::append(op, &snapshot_node(tip, clock, tree, info))?;
    refs::set(op, branch, &snapshot, Some(&tip))?;
    Ok(snapshot)
}

/// Moves `branch` to the content of `target`. A fast-forward just moves the ref; any other move
/// appends a rewrite node (parents: the old tip and the target) and a snapshot of the target's tree
/// on top of it, so the branch still only moves forward and no history is lost.
pub fn reset(store: &Store, branch: &RefName, target: NodeId, info: &CommitInfo) -> Result<NodeId> {
    store.operation("reset", |op| {
        let tip = refs::get(op.store(), op.txn(), branch)?
            .ok_or_else(|| Error::RefNotFound(branch.to_string()))?;
        let target_type = op.store().require_header(op.txn(), &target)?.node_type;
        if !matches!(target_type, NodeType::Snapshot | NodeType::Root) {
            return Err(Error::NotA {
                id: target,
                found: target_type.as_str(),
                expected: "snapshot",
            });
        }
        if dag::is_ancestor(op.store(), op.txn(), &tip, &target)? {
            refs::set(op, branch, &target, Some(&tip))?;
            return Ok(target);
        }
        let clock = dag::clock_of(op.store(), op.txn(), &tip)?
            .max(dag::clock_of(op.store(), op.txn(), &target)?)
            .saturating_add(1);
        let rewrite = dag::append(
            op,
            &Node::with_parents(
                vec![tip, target],
                clock,
                Payload::Rewrite(Rewrite {
                    kind: RewriteKind::Reset,
                    from: tip,
                    to: target,
                    base: None,
                }),
            ),
        )?;
        let tree = tree::tree_of(&Dag::new(op.store(), op.txn()), &target)?;
        let snapshot = dag::append(
            op,
            &snapshot_node(rewrite, clock.saturating_add(1), tree, info),
        )?;
        refs::set(op, branch, &snapshot, Some(&tip))?;
        Ok(snapshot)
    })
}
