//! The atomic end of a pull: append every received node, apply the ref rules, log the sync.
//!
//! Ref rules (SPEC §5), for each branch and tag of the peer:
//! - a branch we lack is created; one the peer moved ahead is fast-forwarded; one we moved
//!   ahead stays;
//! - a branch both sides moved is merged: a three-way merge of the two tips against their best
//!   common ancestor, recorded as an inversion rewrite (kind merge) and a snapshot on top, so
//!   the branch still only moves forward. The two tips are ordered by id and the merge
//!   snapshot's declared inputs come from the tips alone, so two replicas that merge the same
//!   divergence make the same nodes and converge at once. A merge with conflicts moves
//!   nothing: the peer's tip is kept as `remotes/<peer>/heads/<branch>` to merge by hand;
//! - a tag never moves: a peer's tag naming another target is kept as
//!   `remotes/<peer>/tags/<tag>`;
//! - HEAD is local and never touched.

use serde::{Deserialize, Serialize};

use super::wire::Frontier;
use crate::dag;
use crate::error::{Error, Result};
use crate::history::{self, CommitInfo};
use crate::id::NodeId;
use crate::log::LogOp;
use crate::merge;
use crate::node::{DeclaredTime, Payload, RewriteKind};
use crate::refs::{self, RefKind, RefName};
use crate::source::Dag;
use crate::store::{Op, Store};
use crate::tree;
use crate::treeedit::TreeEditor;

/// What sync did with one of the peer's refs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefAction {
    /// We did not have it; now we do.
    Created,
    /// Ours already pointed there.
    UpToDate,
    /// Ours moved forward to the peer's.
    FastForwarded,
    /// Ours is ahead of the peer's; nothing to do.
    LocalAhead,
    /// Both moved; ours now points at a merge of the two.
    Merged,
    /// Both moved and the merge conflicts (or the two share no history): ours stays, the
    /// peer's is kept under `remotes/`.
    Diverged,
    /// The peer's tag names another target than ours: ours stays, the peer's is kept under
    /// `remotes/`.
    TagConflict,
}

/// One of the peer's refs and what became of it here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefChange {
    /// Full ref name (`heads/main`).
    pub name: String,
    /// What happened.
    pub action: RefAction,
    /// Where ours pointed before (absent when we had none).
    pub from: Option<NodeId>,
    /// Where ours points now.
    pub to: Option<NodeId>,
    /// The peer's target.
    pub remote: NodeId,
    /// The ref the peer's target is kept under, when it could not be taken.
    pub kept_as: Option<String>,
    /// Conflicted paths of a divergent branch.
    pub conflicts: Vec<String>,
}

impl RefChange {
    fn new(name: &RefName, action: RefAction, from: Option<NodeId>, remote: NodeId) -> Self {
        RefChange {
            name: name.full().to_owned(),
            action,
            from,
            to: from,
            remote,
            kept_as: None,
            conflicts: Vec::new(),
        }
    }

    /// Whether the ref changed here (or a peer's ref was kept).
    pub fn changed(&self) -> bool {
        !matches!(self.action, RefAction::UpToDate | RefAction::LocalAhead)
    }
}

/// What checking a received node learned: its header, and what the DAG's rules ask of the
/// nodes it names ([`dag::Obligations`]). The append checks those against headers and writes
/// the header, without reading or decoding the node again; the headers of received nodes also
/// stand in for store lookups (they are appended first).
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) header: crate::store::NodeHeader,
    pub(crate) obligations: dag::Obligations,
}

/// Appends the received nodes (`(id, dependencies)`, bytes kept in the node table, what
/// checking each learned in `known`), applies the ref rules to the peer's refs and logs the
/// sync — one operation. Returns how many nodes were new and what happened to each ref.
///
/// Every node's [`dag::Obligations`] are checked first, on all cores, against the headers of
/// what the pull received and what the store holds (no rule reads a received node's stored
/// copy); then the headers are written, and the creations logged in dependency order (the
/// log never names a node before what it needs).
pub(crate) fn integrate(
    store: &Store,
    remote: &str,
    received: &[(NodeId, Vec<NodeId>)],
    known: &crate::id::IdMap<Known>,
    frontier: &Frontier,
) -> Result<(u64, Vec<RefChange>)> {
    // The order and the rules' checks read nothing the other writes: both at once.
    let (order, verdict) = rayon::join(
        || dag::dependency_order(received),
        || check_obligations(store, remote, received, known),
    );
    let order = order?;
    verdict?;
    let nodes = order
        .into_iter()
        .map(|i| {
            let id = received[i].0;
            // Every received node was checked (check_obligations refused one that was not).
            known
                .get(&id)
                .map(|checked| (id, checked))
                .ok_or_else(|| never_checked(remote, &id))
        })
        .collect::<Result<Vec<_>>>()?;
    // Headers are written in id order (neighbours in the table: a third faster than in
    // dependency order), creations logged in dependency order.
    let mut by_id: Vec<usize> = (0..nodes.len()).collect();
    by_id.sort_unstable_by_key(|&i| nodes[i].0);
    store.operation("sync.pull", |op| {
        // Into a store whose headers all sort before these (a clone), each is appended to
        // the table's end without a search.
        let at_end = match by_id.first() {
            Some(&first) => op.store().headers_end_before(op.txn(), &nodes[first].0)?,
            None => false,
        };
        let mut new = vec![false; nodes.len()];
        for i in by_id {
            let (id, checked) = nodes[i];
            new[i] = dag::append_kept(op, id, checked.header, at_end)?;
        }
        let mut new_nodes = 0u64;
        for ((id, checked), new) in nodes.iter().zip(new) {
            if new {
                op.created(*id, checked.header.node_type)?;
                new_nodes += 1;
            }
        }
        let mut changes = Vec::new();
        for (full, target) in &frontier.refs {
            let name = RefName::parse_full(full).map_err(|e| Error::Sync {
                remote: remote.to_owned(),
                reason: format!("the peer sent a bad ref name: {e}"),
            })?;
            let change = match name.kind() {
                RefKind::Branch => take_branch(op, remote, &name, *target)?,
                RefKind::Tag => take_tag(op, remote, &name, *target)?,
                RefKind::Remote => continue,
            };
            changes.push(change);
        }
        op.log(LogOp::Synced {
            remote: remote.to_owned(),
            nodes: new_nodes,
            refs: changes.iter().filter(|c| c.changed()).count() as u64,
        })?;
        super::staging::clear(op)?;
        Ok((new_nodes, changes))
    })
}

/// Keeps the peer's target under `remotes/<peer>/…`.
fn keep(op: &mut Op<'_>, remote: &str, name: &RefName, change: &mut RefChange) -> Result<()> {
    let kept = RefName::remote(remote, name)?;
    refs::mirror(op, &kept, &change.remote)?;
    change.kept_as = Some(kept.full().to_owned());
    Ok(())
}

/// Drops a kept ref once the branch has taken the peer's work.
fn forget_kept(op: &mut Op<'_>, remote: &str, name: &RefName) -> Result<()> {
    let kept = RefName::remote(remote, name)?;
    if refs::get(op.store(), op.txn(), &kept)?.is_some() {
        refs::delete(op, &kept, true)?;
    }
    Ok(())
}

/// Checks every received node's obligations, in parallel, each against the headers of the
/// received nodes and then the store's. The first refusal in `nodes`' order is the error.
fn check_obligations(
    store: &Store,
    remote: &str,
    received: &[(NodeId, Vec<NodeId>)],
    known: &crate::id::IdMap<Known>,
) -> Result<()> {
    use rayon::prelude::*;
    let verdicts: Vec<Result<()>> = received
        .par_iter()
        .map_init(
            || store.read(),
            |txn, (id, _)| {
                let txn = txn.as_ref().map_err(|e| Error::Sync {
                    remote: remote.to_owned(),
                    reason: format!("cannot read the store: {e}"),
                })?;
                let checked = known.get(id).ok_or_else(|| never_checked(remote, id))?;
                let header = |target: &NodeId| match known.get(target) {
                    Some(k) => Ok(Some(k.header)),
                    None => store.header(txn, target),
                };
                checked.obligations.check(&header, id)
            },
        )
        .collect();
    verdicts.into_iter().collect()
}

fn never_checked(remote: &str, id: &NodeId) -> Error {
    Error::Sync {
        remote: remote.to_owned(),
        reason: format!("received node {id} was never checked"),
    }
}

fn take_branch(op: &mut Op<'_>, remote: &str, name: &RefName, theirs: NodeId) -> Result<RefChange> {
    let Some(ours) = refs::get(op.store(), op.txn(), name)? else {
        let mut change = RefChange::new(name, RefAction::Created, None, theirs);
        match refs::create(op, name, &theirs) {
            Ok(()) => change.to = Some(theirs),
            // `a` here and `a/b` there: keep theirs aside rather than fail the whole sync.
            Err(Error::RefExists(_)) => {
                change.action = RefAction::Diverged;
                keep(op, remote, name, &mut change)?;
            }
            Err(e) => return Err(e),
        }
        return Ok(change);
    };
    let (store, txn) = (op.store(), op.txn());
    let mut change = RefChange::new(name, RefAction::UpToDate, Some(ours), theirs);
    if ours == theirs {
    } else if dag::is_ancestor(store, txn, &ours, &theirs)? {
        refs::set(op, name, &theirs, Some(&ours))?;
        change.action = RefAction::FastForwarded;
        change.to = Some(theirs);
    } else if dag::is_ancestor(store, txn, &theirs, &ours)? {
        change.action = RefAction::LocalAhead;
    } else {
        match merge_divergent(op, name, ours, theirs)? {
            Ok(snapshot) => {
                change.action = RefAction::Merged;
                change.to = Some(snapshot);
            }
            Err(conflicts) => {
                change.action = RefAction::Diverged;
                change.conflicts = conflicts;
                keep(op, remote, name, &mut change)?;
                return Ok(change);
            }
        }
    }
    forget_kept(op, remote, name)?;
    Ok(change)
}

fn take_tag(op: &mut Op<'_>, remote: &str, name: &RefName, theirs: NodeId) -> Result<RefChange> {
    let ours = refs::get(op.store(), op.txn(), name)?;
    let mut change = RefChange::new(name, RefAction::UpToDate, ours, theirs);
    match ours {
        Some(ours) if ours == theirs => forget_kept(op, remote, name)?,
        Some(_) => {
            change.action = RefAction::TagConflict;
            keep(op, remote, name, &mut change)?;
        }
        None => match refs::create(op, name, &theirs) {
            Ok(()) => {
                change.action = RefAction::Created;
                change.to = Some(theirs);
            }
            Err(Error::RefExists(_)) => {
                change.action = RefAction::TagConflict;
                keep(op, remote, name, &mut change)?;
            }
            Err(e) => return Err(e),
        },
    }
    Ok(change)
}

/// The declared time of a snapshot (the epoch for the root).
fn declared_time(op: &Op<'_>, id: &NodeId) -> Result<DeclaredTime> {
    Ok(match op.store().node(op.txn(), id)?.payload {
        Payload::Snapshot(snapshot) => snapshot.time,
        _ => DeclaredTime::default(),
    })
}

/// Merges two divergent tips of `branch` and moves it to the result: `Ok(snapshot)`, or
/// `Err(conflicted paths)` with nothing written. The result depends only on the two tips.
fn merge_divergent(
    op: &mut Op<'_>,
    branch: &RefName,
    local: NodeId,
    remote: NodeId,
) -> Result<std::result::Result<NodeId, Vec<String>>> {
    let (first, second) = if local < remote {
        (local, remote)
    } else {
        (remote, local)
    };
    let Some(base) = dag::merge_base(op.store(), op.txn(), &first, &second)? else {
        return Ok(Err(Vec::new()));
    };
    let (nodes, merged) = {
        let src = Dag::new(op.store(), op.txn());
        let mut editor = TreeEditor::new(&src);
        let result = merge::merge(
            &mut editor,
            tree::tree_of(&src, &base)?,
            tree::tree_of(&src, &first)?,
            tree::tree_of(&src, &second)?,
        )?;
        if !result.conflicts.is_empty() {
            return Ok(Err(result.conflicts.into_iter().map(|c| c.path).collect()));
        }
        (editor.finish(&result.tree)?, result.tree)
    };
    for node in &nodes {
        dag::append_encoded(op, node.id, &node.bytes)?;
    }
    let (a, b) = (declared_time(op, &first)?, declared_time(op, &second)?);
    let time = if b.seconds > a.seconds { b } else { a };
    let info = CommitInfo {
        author: "jit sync".to_owned(),
        message: format!(
            "Merge divergent {} ({} and {})",
            branch.short(),
            first.short(),
            second.short()
        ),
        time,
    };
    let (_, snapshot) = history::append_rewrite(
        op,
        RewriteKind::Merge,
        first,
        second,
        Some(base),
        merged,
        &info,
    )?;
    refs::set(op, branch, &snapshot, Some(&local))?;
    Ok(Ok(snapshot))
}
