//! Importing a git history.

use std::collections::HashMap;
use std::path::Path;

use gix::objs::tree::EntryKind as GitKind;
use gix::ObjectId;
use jit_kernel::batch::NodeWriter;
use jit_kernel::content::{self, EncodedNode};
use jit_kernel::dag;
use jit_kernel::history::{self, CommitInfo};
use jit_kernel::node::{EntryKind, Node, Payload, RewriteKind, Tree, TreeEntry};
use jit_kernel::refs::{self, RefName};
use jit_kernel::store::Store;
use jit_kernel::{DeclaredTime, NodeId};

use crate::{GitError, Progress, Result};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Commits imported.
    pub commits: u64,
    /// Of which merges.
    pub merges: u64,
    /// Submodule entries skipped.
    pub skipped_submodules: u64,
    /// Entries named `.git`, `.jit` or `.jit-checkout` (or an alias, see
    /// [`jit_kernel::reserved`]) skipped: they never enter a tree.
    pub skipped_reserved: u64,
    /// Extra octopus-merge parents dropped.
    pub dropped_parents: u64,
    /// The snapshot of the imported tip.
    pub tip: NodeId,
    /// Content nodes that were new to the store.
    pub new_nodes: u64,
}

/// One commit, read from git.
struct GitCommit {
    id: ObjectId,
    parents: Vec<ObjectId>,
    tree: ObjectId,
    info: CommitInfo,
}

/// Imports the history of `git_ref` (a branch name, or HEAD) of the git repository at `path` onto
/// the jit branch `branch` (created if missing; otherwise it must be an ancestor of the import).
pub fn import_git(
    store: &Store,
    path: &Path,
    git_ref: Option<&str>,
    branch: &RefName,
    progress: Progress<'_>,
) -> Result<ImportReport> {
    let repo = gix::open(path).map_err(GitError::git)?;
    let tip = match git_ref {
        Some(name) => {
            let full = if name.starts_with("refs/") {
                name.to_owned()
            } else {
                format!("refs/heads/{name}")
            };
            let mut reference = repo.find_reference(full.as_str()).map_err(GitError::git)?;
            reference.peel_to_id().map_err(GitError::git)?.detach()
        }
        None => repo.head_id().map_err(GitError::git)?.detach(),
    };
    let commits = read_history(&repo, tip)?;
    let total = commits.len() as u64;
    progress(0, total);

    // Content first, in bounded batches: trees and blobs, each converted once.
    let mut converter = Converter {
        repo: &repo,
        writer: NodeWriter::new(store),
        trees: HashMap::new(),
        blobs: HashMap::new(),
        skipped_submodules: 0,
        skipped_reserved: 0,
    };
    let mut trees = Vec::with_capacity(commits.len());
    for (done, commit) in commits.iter().enumerate() {
        trees.push(converter.tree(commit.tree)?);
        progress(done as u64 + 1, total);
    }
    let skipped_submodules = converter.skipped_submodules;
    let skipped_reserved = converter.skipped_reserved;
    let new_nodes = converter.writer.finish()?;

    // Then history and the branch move in one operation.
    let (tip_snapshot, merges, dropped_parents) = store.operation("git.import", |op| {
        let mut snapshots: HashMap<ObjectId, NodeId> = HashMap::new();
        let (mut merges, mut dropped) = (0, 0);
        // Root commits hang off the genesis node every universe has.
        let genesis = Node::root().encode_with_id().map_err(jit_kernel::Error::from)?.0;
        for (commit, tree) in commits.iter().zip(&trees) {
            let parents: Vec<NodeId> = commit
                .parents
                .iter()
                .filter_map(|p| snapshots.get(p).copied())
                .collect();
            let snapshot = match parents.as_slice() {
                [] => {
                    let clock = dag::clock_of(op.store(), op.txn(), &genesis)? + 1;
                    dag::append(op, &history::snapshot_node(genesis, clock, *tree, &commit.info))?
                }
                [only] => {
                    let clock = dag::clock_of(op.store(), op.txn(), only)? + 1;
                    dag::append(op, &history::snapshot_node(*only, clock, *tree, &commit.info))?
                }
                [first, second, rest @ ..] if first != second => {
                    merges += 1;
                    dropped += rest.len() as u64;
                    if !rest.is_empty() {
                        tracing::warn!(commit = %commit.id, "octopus merge: parents beyond the second are dropped");
                    }
                    let (_, snapshot) = history::append_rewrite(
                        op,
                        RewriteKind::Merge,
                        *first,
                        *second,
                        None,
                        *tree,
                        &commit.info,
                    )?;
                    snapshot
                }
                [first, ..] => {
                    let clock = dag::clock_of(op.store(), op.txn(), first)? + 1;
                    dag::append(op, &history::snapshot_node(*first, clock, *tree, &commit.info))?
                }
            };
            snapshots.insert(commit.id, snapshot);
        }
        let tip_snapshot = *snapshots
            .get(&tip)
            .ok_or_else(|| jit_kernel::Error::InvalidInput("the git tip was not imported".into()))?;
        match refs::get(op.store(), op.txn(), branch)? {
            Some(current) => refs::set(op, branch, &tip_snapshot, Some(&current))?,
            None => refs::create(op, branch, &tip_snapshot)?,
        }
        Ok((tip_snapshot, merges, dropped))
    })?;
    Ok(ImportReport {
        commits: total,
        merges,
        skipped_submodules,
        skipped_reserved,
        dropped_parents,
        tip: tip_snapshot,
        new_nodes,
    })
}

/// Every commit reachable from `tip`, parents before children (deterministic DFS post-order).
fn read_history(repo: &gix::Repository, tip: ObjectId) -> Result<Vec<GitCommit>> {
    let mut known: HashMap<ObjectId, GitCommit> = HashMap::new();
    for info in repo.rev_walk([tip]).all().map_err(GitError::git)? {
        let info = info.map_err(GitError::git)?;
        let commit = info.object().map_err(GitError::git)?;
        let author = commit.author().map_err(GitError::git)?;
        let time = author.time().map_err(GitError::git)?;
        let info_ = CommitInfo {
            author: format!("{} <{}>", author.name, author.email),
            message: commit.message_raw().map_err(GitError::git)?.to_string(),
            time: DeclaredTime {
                seconds: time.seconds,
                tz_minutes: (time.offset / 60) as i16,
            },
        };
        known.insert(
            info.id,
            GitCommit {
                id: info.id,
                parents: commit.parent_ids().map(|p| p.detach()).collect(),
                tree: commit.tree_id().map_err(GitError::git)?.detach(),
                info: info_,
            },
        );
    }
    // Post-order: a commit after all its parents, parents visited in order.
    let mut order = Vec::with_capacity(known.len());
    let mut done: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
    let mut stack = vec![(tip, false)];
    while let Some((id, expanded)) = stack.pop() {
        if done.contains(&id) {
            continue;
        }
        if expanded {
            done.insert(id);
            order.push(id);
            continue;
        }
        stack.push((id, true));
        if let Some(commit) = known.get(&id) {
            for parent in commit.parents.iter().rev() {
                if !done.contains(parent) && known.contains_key(parent) {
                    stack.push((*parent, false));
                }
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| known.remove(&id))
        .collect())
}

/// Converts git trees and blobs to jit nodes, each once.
struct Converter<'r, 's> {
    repo: &'r gix::Repository,
    writer: NodeWriter<'s>,
    trees: HashMap<ObjectId, NodeId>,
    blobs: HashMap<ObjectId, NodeId>,
    skipped_submodules: u64,
    skipped_reserved: u64,
}

impl Converter<'_, '_> {
    fn blob(&mut self, oid: ObjectId) -> Result<NodeId> {
        if let Some(id) = self.blobs.get(&oid) {
            return Ok(*id);
        }
        let object = self.repo.find_object(oid).map_err(GitError::git)?;
        let (id, nodes) = content::split_bytes(&object.data)?;
        self.writer.append(nodes)?;
        self.blobs.insert(oid, id);
        Ok(id)
    }

    fn tree(&mut self, oid: ObjectId) -> Result<NodeId> {
        if let Some(id) = self.trees.get(&oid) {
            return Ok(*id);
        }
        let entries: Vec<(GitKind, Vec<u8>, ObjectId)> = {
            let tree = self
                .repo
                .find_object(oid)
                .map_err(GitError::git)?
                .try_into_tree()
                .map_err(GitError::git)?;
            tree.iter()
                .map(|e| e.map(|e| (e.mode().kind(), e.filename().to_vec(), e.oid().to_owned())))
                .collect::<std::result::Result<_, _>>()
                .map_err(GitError::git)?
        };
        let mut tree = Tree::default();
        for (kind, name, entry_oid) in entries {
            if jit_kernel::reserved::is_reserved(&name) {
                // Git's own fsck flags these; a checkout would write into repository metadata.
                tracing::warn!(tree = %oid, name = %String::from_utf8_lossy(&name),
                    "skipping a reserved name (.git, .jit, .jit-checkout)");
                self.skipped_reserved += 1;
                continue;
            }
            let (kind, id) = match kind {
                GitKind::Tree => (EntryKind::Directory, self.tree(entry_oid)?),
                GitKind::Blob => (EntryKind::File, self.blob(entry_oid)?),
                GitKind::BlobExecutable => (EntryKind::Executable, self.blob(entry_oid)?),
                GitKind::Link => (EntryKind::Symlink, self.blob(entry_oid)?),
                GitKind::Commit => {
                    self.skipped_submodules += 1;
                    continue;
                }
            };
            tree.entries.push(TreeEntry { name, kind, id });
        }
        tree.entries.sort_by(|a, b| a.name.cmp(&b.name));
        let node = EncodedNode::new(Node::content(Payload::Tree(tree)))?;
        let id = node.id;
        self.writer.append(vec![node])?;
        self.trees.insert(oid, id);
        Ok(id)
    }
}
