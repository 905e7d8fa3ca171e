//! Commit = collapse (RFC-0005): turning an SWS into a snapshot on its branch in one transaction.
//!
//! - Base is the branch tip: the snapshot is base + the SWS's tree.
//! - Otherwise: a deterministic three-way merge ([`crate::merge`]) of the SWS's base, the tip and
//!   the SWS's tree. A clean merge appends the SWS's own snapshot (on its base), an inversion
//!   rewrite recording the merge (from the tip, to that snapshot, with the base), and the merged
//!   snapshot on top of the rewrite — so the branch moves forward and both lines of work stay in
//!   history. Conflicts fail the commit: the SWS is re-anchored on the tip with the merged tree,
//!   conflicted text files carrying git-style markers, and the structured conflicts are returned.
//!   Resolving them is an ordinary edit followed by another commit.
//!
//! Staged nodes the snapshot needs, the snapshots, the rewrite, log records and the branch move
//! are one LMDB transaction; concurrent commits serialize on it, and each merges against the
//! tip it finds. A conflicted commit keeps what its conflicts name staged and drops the rest of
//! the tree it replaced, like a patch ([`crate::sws`]).

use std::collections::HashSet;

use crate::dag;
use crate::error::{Error, Result};
use crate::history::{self, snapshot_node, CommitInfo};
use crate::id::NodeId;
use crate::log::LogOp;
use crate::merge::{self, Conflict};
use crate::node::{Node, RewriteKind};
use crate::refs::{self, RefName};
use crate::source::Source;
use crate::store::{Op, Store};
use crate::sws::{self, SwsId, SwsSource};
use crate::tree;
use crate::treeedit::TreeEditor;

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The branch moved to `snapshot`.
    Committed {
        /// The new branch tip.
        snapshot: NodeId,
        /// The rewrite node, when the commit merged.
        rewrite: Option<NodeId>,
    },
    /// Nothing was committed; the SWS now shows these conflicts.
    Conflicted {
        /// The conflicted paths.
        conflicts: Vec<Conflict>,
    },
}

/// `collapse.commit`: commits SWS `id` onto its branch and retires it (on success).
pub fn commit(store: &Store, id: SwsId, info: &CommitInfo) -> Result<Outcome> {
    store.operation("collapse.commit", |op| commit_in(op, id, info))
}

/// `collapse.validate`: would the commit merge cleanly right now? Returns the conflicts it would
/// meet (empty when clean). Writes nothing.
pub fn validate(store: &Store, id: SwsId) -> Result<Vec<Conflict>> {
    let txn = store.read()?;
    validate_at(store, &txn, id)
}

/// [`validate`] within an existing transaction.
pub fn validate_at(
    store: &Store,
    txn: &crate::store::ReadTxn<'_>,
    id: SwsId,
) -> Result<Vec<Conflict>> {
    let state = sws::get(store, txn, id)?;
    let branch = RefName::parse_full(&state.branch)?;
    let tip =
        refs::get(store, txn, &branch)?.ok_or_else(|| Error::RefNotFound(branch.to_string()))?;
    if tip == state.base {
        return Ok(Vec::new());
    }
    let src = SwsSource::new(store, txn, id);
    let mut editor = TreeEditor::new(&src);
    let base_tree = tree::tree_of(&src, &state.base)?;
    let tip_tree = tree::tree_of(&src, &tip)?;
    Ok(merge::merge(&mut editor, base_tree, tip_tree, state.tree)?.conflicts)
}

fn next_clock(op: &Op<'_>, ids: &[NodeId]) -> Result<u64> {
    let mut max = 0;
    for id in ids {
        max = max.max(dag::clock_of(op.store(), op.txn(), id)?);
    }
    max.checked_add(1)
        .ok_or_else(|| Error::InvalidInput("logical clock exhausted".into()))
}

pub(crate) fn commit_in(op: &mut Op<'_>, id: SwsId, info: &CommitInfo) -> Result<Outcome> {
    let mut state = sws::get(op.store(), op.txn(), id)?;
    let branch = RefName::parse_full(&state.branch)?;
    let tip = refs::get(op.store(), op.txn(), &branch)?
        .ok_or_else(|| Error::RefNotFound(branch.to_string()))?;

    // Read phase: merge (if needed) and gather every node the result needs that the DAG lacks.
    let (merged, conflicts, to_stage, to_append) = {
        let src = SwsSource::new(op.store(), op.txn(), id);
        let base_tree = tree::tree_of(&src, &state.base)?;
        if tip == state.base && state.tree == base_tree {
            return Err(Error::InvalidInput(
                "nothing to commit: the SWS has no changes".into(),
            ));
        }
        let mut editor = TreeEditor::new(&src);
        let (merged, conflicts) = if tip == state.base {
            (state.tree, Vec::new())
        } else {
            let tip_tree = tree::tree_of(&src, &tip)?;
            let result = merge::merge(&mut editor, base_tree, tip_tree, state.tree)?;
            (result.tree, result.conflicts)
        };
        if conflicts.is_empty() {
            let mut needed = Vec::new();
            let mut seen = HashSet::new();
            missing_from_dag(op, &editor, &state.tree, &mut seen, &mut needed)?;
            missing_from_dag(op, &editor, &merged, &mut seen, &mut needed)?;
            (merged, conflicts, Vec::new(), needed)
        } else {
            let staged = editor.finish(&merged)?;
            (merged, conflicts, staged, Vec::new())
        }
    };

    if !conflicts.is_empty() {
        let before = state.clone();
        state.base = tip;
        state.tree = merged;
        state.conflicts = conflicts.clone();
        sws::put_state(op, id, &state)?;
        let mut ledger = sws::gc::Ledger::new(id);
        sws::stage(op, &mut ledger, &to_stage)?;
        sws::supersede(op, ledger, &before, &state)?;
        op.log(LogOp::SwsConflicted {
            sws: id.to_string(),
            conflicts: conflicts.len() as u64,
        })?;
        return Ok(Outcome::Conflicted { conflicts });
    }

    for (node_id, bytes) in &to_append {
        dag::append_encoded(op, *node_id, bytes)?;
    }
    let (snapshot_id, rewrite) = if tip == state.base {
        let clock = next_clock(op, &[tip])?;
        (
            dag::append(op, &snapshot_node(tip, clock, state.tree, info))?,
            None,
        )
    } else {
        let own_clock = next_clock(op, &[state.base])?;
        let own = dag::append(op, &snapshot_node(state.base, own_clock, state.tree, info))?;
        let (rewrite, merged_snapshot) = history::append_rewrite(
            op,
            RewriteKind::Merge,
            tip,
            own,
            Some(state.base),
            merged,
            info,
        )?;
        (merged_snapshot, Some(rewrite))
    };
    sws::remove(op, id)?;
    op.log(LogOp::SwsCommitted {
        sws: id.to_string(),
        snapshot: snapshot_id,
    })?;
    refs::set(op, &branch, &snapshot_id, Some(&tip))?;
    Ok(Outcome::Committed {
        snapshot: snapshot_id,
        rewrite,
    })
}

/// Collects, children first, the nodes reachable from `root` that the DAG does not have yet
/// (they are staged for the SWS or new from the merge).
fn missing_from_dag(
    op: &Op<'_>,
    src: &dyn Source,
    root: &NodeId,
    seen: &mut HashSet<NodeId>,
    out: &mut Vec<(NodeId, Vec<u8>)>,
) -> Result<()> {
    if !seen.insert(*root) || op.store().has_node(op.txn(), root)? {
        return Ok(());
    }
    let bytes = src.bytes(root)?.ok_or(Error::NodeNotFound(*root))?.to_vec();
    let node = Node::decode(&bytes)?;
    for (child, _) in node.references() {
        missing_from_dag(op, src, &child, seen, out)?;
    }
    out.push((*root, bytes));
    Ok(())
}
