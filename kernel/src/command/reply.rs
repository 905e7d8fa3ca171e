//! The answers of the commands that answer with more than a node id or a list: the same
//! structures on the RPC and the plane (an SWS's status is [`StatusInfo`] on both).

use serde::{Deserialize, Serialize};

use crate::checkout;
use crate::error::Result;
use crate::id::NodeId;
use crate::merge::Conflict;
use crate::refs::{self, RefName};
use crate::store::{ReadTxn, Store};
use crate::sws::{self, SwsId};
use crate::tree::ChangeKind;

/// What `checkout.get` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutInfo {
    /// The checkout's state.
    pub state: checkout::CheckoutState,
    /// The SWS its edits go to now (none until the branch's working SWS exists).
    pub sws: Option<String>,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// The path (an empty directory's without a trailing slash; `kind` says it is one).
    pub path: String,
    /// `A`, `M` or `D`.
    pub change: String,
    /// What the path is (the new entry's kind, else the old one's): `file`, `exec`,
    /// `symlink`, or `dir` for an empty directory that appeared or went away.
    #[serde(default)]
    pub kind: String,
    /// Old blob (for a directory: the empty tree).
    pub old: Option<NodeId>,
    /// New blob (for a directory: the empty tree).
    pub new: Option<NodeId>,
}

/// What `shadow.status` and `mh.status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// SWS id (hex).
    pub id: String,
    /// Owner.
    pub owner: String,
    /// Name.
    pub name: Option<String>,
    /// Branch it commits to (short name).
    pub branch: String,
    /// Its base snapshot.
    pub base: NodeId,
    /// The branch tip now.
    pub tip: Option<NodeId>,
    /// Its working tree.
    pub tree: NodeId,
    /// Patches applied.
    pub patches: u64,
    /// Changed paths.
    pub changes: Vec<ChangeInfo>,
    /// Conflicts from the last commit attempt.
    pub conflicts: Vec<Conflict>,
}

fn change_letter(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "A",
        ChangeKind::Deleted => "D",
        ChangeKind::Modified => "M",
    }
}

/// SWS `id`'s changed paths, as `shadow.diff` answers them.
pub fn changes(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<Vec<ChangeInfo>> {
    Ok(sws::diff(store, txn, id)?
        .into_iter()
        .map(|c| ChangeInfo {
            path: String::from_utf8_lossy(&c.path).into_owned(),
            change: change_letter(c.kind).into(),
            kind: c
                .entry()
                .map(|e| e.kind.as_str())
                .unwrap_or_default()
                .into(),
            old: c.old.map(|e| e.id),
            new: c.new.map(|e| e.id),
        })
        .collect())
}

/// SWS `id`'s status, as `shadow.status` and the plane's `status` answer it.
pub fn status(store: &Store, txn: &ReadTxn<'_>, id: SwsId) -> Result<StatusInfo> {
    let state = sws::get(store, txn, id)?;
    let branch = RefName::parse_full(&state.branch)?;
    Ok(StatusInfo {
        id: id.to_string(),
        owner: state.owner.clone(),
        name: state.name.clone(),
        branch: branch.short().to_owned(),
        base: state.base,
        tip: refs::get(store, txn, &branch)?,
        tree: state.tree,
        patches: state.patches,
        changes: changes(store, txn, id)?,
        conflicts: state.conflicts,
    })
}
