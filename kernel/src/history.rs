//! Moving branches through history: committing a tree, and non-fast-forward moves (reset) that
//! go through an inversion-rewrite node so history is never edited.

use serde::{Deserialize, Serialize};

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::merge;
use crate::node::{DeclaredTime, Node, NodeType, Payload, Rewrite, RewriteKind, Snapshot};
use crate::refs::{self, RefName};
use crate::source::{Dag, Source};
use crate::store::{Op, Store};
use crate::tree;
use crate::treeedit::TreeEditor;

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

/// A commit's declared inputs as the RPC and the plane carry them (`time` in seconds since the
/// epoch, `tz` in minutes east of UTC); the one conversion to and from [`CommitInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// Author, `Name <email>`.
    pub author: String,
    /// Message.
    pub message: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// UTC offset in minutes.
    #[serde(default)]
    pub tz: i16,
}

impl Declared {
    /// The commit inputs these declare.
    pub fn info(&self) -> CommitInfo {
        CommitInfo {
            author: self.author.clone(),
            message: self.message.clone(),
            time: DeclaredTime {
                seconds: self.time,
                tz_minutes: self.tz,
            },
        }
    }
}

impl From<&CommitInfo> for Declared {
    fn from(info: &CommitInfo) -> Declared {
        Declared {
            author: info.author.clone(),
            message: info.message.clone(),
            time: info.time.seconds,
            tz: info.time.tz_minutes,
        }
    }
}

/// What a commit answers on success (`collapse.commit`, the plane's `commit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The new tip.
    pub snapshot: NodeId,
    /// The rewrite node, when the commit merged.
    pub rewrite: Option<NodeId>,
}

/// Whether a commit whose tree equals its parent's is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyCommit {
    /// Refuse with "nothing to commit" (git's default).
    Refuse,
    /// Record it anyway.
    Allow,
}

/// A snapshot of `tree` on `parent` with the declared inputs of `info`.
pub fn snapshot_node(parent: NodeId, clock: u64, tree: NodeId, info: &CommitInfo) -> Node {
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

/// Appends an inversion rewrite from `from` to `to` (parents: both) and, on top of it, a
/// snapshot of `tree` with `info`. Returns (rewrite, snapshot); the caller moves the branch,
/// which can only go forward because `from` is an ancestor of the new snapshot.
pub fn append_rewrite(
    op: &mut Op<'_>,
    kind: RewriteKind,
    from: NodeId,
    to: NodeId,
    base: Option<NodeId>,
    tree: NodeId,
    info: &CommitInfo,
) -> Result<(NodeId, NodeId)> {
    let clock = dag::clock_of(op.store(), op.txn(), &from)?
        .max(dag::clock_of(op.store(), op.txn(), &to)?)
        .saturating_add(1);
    let rewrite = dag::append(
        op,
        &Node::with_parents(
            vec![from, to],
            clock,
            Payload::Rewrite(Rewrite {
                kind,
                from,
                to,
                base,
            }),
        ),
    )?;
    let snapshot = dag::append(
        op,
        &snapshot_node(rewrite, clock.saturating_add(1), tree, info),
    )?;
    Ok((rewrite, snapshot))
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
        let tree = tree::tree_of(&Dag::new(op.store(), op.txn()), &target)?;
        let (_, snapshot) = append_rewrite(op, RewriteKind::Reset, tip, target, None, tree, info)?;
        refs::set(op, branch, &snapshot, Some(&tip))?;
        Ok(snapshot)
    })
}

/// The mainline of `tip`, newest first, down to (not including) the root.
fn mainline(store: &Store, txn: &crate::store::ReadTxn<'_>, tip: NodeId) -> Result<Vec<NodeId>> {
    let mut out = Vec::new();
    let mut current = match store.require_header(txn, &tip)?.node_type {
        NodeType::Snapshot => Some(tip),
        _ => None,
    };
    while let Some(id) = current {
        out.push(id);
        current = dag::mainline_parent(store, txn, &id)?;
    }
    Ok(out)
}

/// Replays the branch's own snapshots (those since its mainline meets `onto`'s) on top of `onto`,
/// each with its original author, message and time, merging as it goes. Because the branch only
/// moves forward, the replayed line is then joined by a rewrite node (kind rebase, from the old
/// tip, to the last replayed snapshot) and a snapshot with `info` on top of it. A conflict in any
/// step refuses the whole rebase.
pub fn rebase(store: &Store, branch: &RefName, onto: NodeId, info: &CommitInfo) -> Result<NodeId> {
    store.operation("history.rebase", |op| {
        let tip = refs::get(op.store(), op.txn(), branch)?
            .ok_or_else(|| Error::RefNotFound(branch.to_string()))?;
        if dag::is_ancestor(op.store(), op.txn(), &onto, &tip)? {
            return Ok(tip);
        }
        if dag::is_ancestor(op.store(), op.txn(), &tip, &onto)? {
            refs::set(op, branch, &onto, Some(&tip))?;
            return Ok(onto);
        }
        let onto_line: std::collections::HashSet<NodeId> =
            mainline(op.store(), op.txn(), onto)?.into_iter().collect();
        let own: Vec<NodeId> = mainline(op.store(), op.txn(), tip)?
            .into_iter()
            .take_while(|id| !onto_line.contains(id))
            .collect();
        let mut new_parent = onto;
        for snapshot_id in own.iter().rev() {
            let (nodes, merged, original) = {
                let dag_view = Dag::new(op.store(), op.txn());
                let node = dag_view.node(snapshot_id)?;
                let Payload::Snapshot(original) = node.payload else {
                    return Err(Error::NotA {
                        id: *snapshot_id,
                        found: "node",
                        expected: "snapshot",
                    });
                };
                let parent_tree = match dag::mainline_parent(op.store(), op.txn(), snapshot_id)? {
                    Some(parent) => tree::tree_of(&dag_view, &parent)?,
                    None => tree::empty_tree_id(),
                };
                let mut editor = TreeEditor::new(&dag_view);
                let onto_tree = tree::tree_of(&dag_view, &new_parent)?;
                let result = merge::merge(&mut editor, parent_tree, onto_tree, original.tree)?;
                if !result.conflicts.is_empty() {
                    return Err(Error::MergeConflict(result.conflicts));
                }
                (editor.finish(&result.tree)?, result.tree, original)
            };
            for node in &nodes {
                dag::append_encoded(op, node.id, &node.bytes)?;
            }
            let replayed = CommitInfo {
                author: original.author,
                message: original.message,
                time: original.time,
            };
            let clock = dag::clock_of(op.store(), op.txn(), &new_parent)?.saturating_add(1);
            new_parent = dag::append(op, &snapshot_node(new_parent, clock, merged, &replayed))?;
        }
        let tree = tree::tree_of(&Dag::new(op.store(), op.txn()), &new_parent)?;
        let (_, snapshot) =
            append_rewrite(op, RewriteKind::Rebase, tip, new_parent, None, tree, info)?;
        refs::set(op, branch, &snapshot, Some(&tip))?;
        Ok(snapshot)
    })
}
