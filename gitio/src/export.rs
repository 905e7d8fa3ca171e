//! Exporting snapshots as git commits.

use std::collections::HashMap;
use std::path::Path;

use gix::objs::tree::EntryKind as GitKind;
use gix::ObjectId;
use jit_kernel::content;
use jit_kernel::node::{EntryKind, Payload, Snapshot};
use jit_kernel::source::{Dag, Source};
use jit_kernel::store::Store;
use jit_kernel::NodeId;

use crate::{GitError, Progress, Result};

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Commits written (or found already written).
    pub commits: u64,
    /// The git commit of the exported snapshot.
    pub commit: ObjectId,
    /// The git reference set.
    pub reference: String,
}

/// Writes `snapshot` and its history into the git repository at `path` (created if missing,
/// with HEAD naming `branch`) and points `refs/heads/<branch>` at it. An existing branch is
/// only moved forward — to a commit that descends from where it is — unless `force`; the move
/// is a compare-and-set, so a branch that moved meanwhile is not overwritten either.
pub fn export_git(
    store: &Store,
    snapshot: NodeId,
    path: &Path,
    branch: &str,
    force: bool,
    progress: Progress<'_>,
) -> Result<ExportReport> {
    let reference = format!("refs/heads/{branch}");
    gix::refs::FullName::try_from(reference.as_str())
        .map_err(|e| GitError::Git(format!("{branch:?} is not a git branch name: {e}")))?;
    let (repo, created) = match gix::open(path) {
        Ok(repo) => (repo, false),
        Err(_) => (gix::init(path).map_err(GitError::git)?, true),
    };
    let txn = store.read()?;
    let dag = Dag::new(store, &txn);
    let order = history_order(&dag, snapshot)?;
    let total = order.len() as u64;
    let mut exporter = Exporter {
        repo: &repo,
        dag: &dag,
        trees: HashMap::new(),
        blobs: HashMap::new(),
        commits: HashMap::new(),
    };
    for (done, (id, node)) in order.iter().enumerate() {
        exporter.commit(*id, node)?;
        progress(done as u64 + 1, total);
    }
    let commit = *exporter
        .commits
        .get(&snapshot)
        .ok_or_else(|| GitError::Git("nothing to export: the revision is the empty root".into()))?;
    point_branch(&repo, &reference, commit, force)?;
    if created {
        name_head(&repo, &reference)?;
    }
    Ok(ExportReport {
        commits: total,
        commit,
        reference,
    })
}

/// Points `reference` at `commit`: creates it, or moves it forward (anywhere with `force`),
/// compare-and-set against where it was read.
fn point_branch(
    repo: &gix::Repository,
    reference: &str,
    commit: ObjectId,
    force: bool,
) -> Result<()> {
    use gix::refs::transaction::PreviousValue;
    let existing = repo
        .try_find_reference(reference)
        .map_err(GitError::git)?
        .and_then(|r| r.target().try_id().map(|id| id.to_owned()));
    let expected = match existing {
        None => PreviousValue::MustNotExist,
        Some(old) if old == commit => return Ok(()),
        Some(old) => {
            let forward = repo
                .merge_base(old, commit)
                .map_err(GitError::git)?
                .is_some_and(|base| base.detach() == old);
            if !forward && !force {
                return Err(GitError::NotForward {
                    reference: reference.to_owned(),
                    old: old.to_string(),
                    new: commit.to_string(),
                });
            }
            PreviousValue::MustExistAndMatch(gix::refs::Target::Object(old))
        }
    };
    repo.reference(reference, commit, expected, "jit export-git")
        .map_err(GitError::git)?;
    Ok(())
}

/// Makes a new repository's HEAD name the exported branch (git's own default may differ).
fn name_head(repo: &gix::Repository, reference: &str) -> Result<()> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
    let target = gix::refs::FullName::try_from(reference).map_err(GitError::git)?;
    repo.edit_reference(RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "jit export-git".into(),
            },
            expected: PreviousValue::Any,
            new: gix::refs::Target::Symbolic(target),
        },
        name: "HEAD".try_into().map_err(GitError::git)?,
        deref: false,
    })
    .map_err(GitError::git)?;
    Ok(())
}

/// The git parents of a snapshot, as jit snapshots ([`jit_kernel::dag::history_parents`]).
fn git_parents(dag: &Dag<'_, '_>, snapshot: &NodeId) -> Result<Vec<NodeId>> {
    let node = dag.node(snapshot)?;
    Ok(jit_kernel::dag::history_parents(dag.store, dag.txn, &node)?.0)
}

/// Every snapshot the export needs, parents first.
fn history_order(dag: &Dag<'_, '_>, tip: NodeId) -> Result<Vec<(NodeId, Snapshot)>> {
    let mut order = Vec::new();
    let mut done = std::collections::HashSet::new();
    let mut stack = vec![(tip, false)];
    while let Some((id, expanded)) = stack.pop() {
        if done.contains(&id) {
            continue;
        }
        let Payload::Snapshot(snapshot) = dag.node(&id)?.payload else {
            done.insert(id);
            continue;
        };
        if expanded {
            done.insert(id);
            order.push((id, snapshot));
            continue;
        }
        stack.push((id, true));
        for parent in git_parents(dag, &id)?.into_iter().rev() {
            if !done.contains(&parent) {
                stack.push((parent, false));
            }
        }
    }
    Ok(order)
}

struct Exporter<'r, 'd, 's, 't> {
    repo: &'r gix::Repository,
    dag: &'d Dag<'s, 't>,
    trees: HashMap<NodeId, ObjectId>,
    blobs: HashMap<NodeId, ObjectId>,
    commits: HashMap<NodeId, ObjectId>,
}

/// Splits `Name <email>` (anything else is all name).
fn split_author(author: &str) -> (&str, &str) {
    match (author.rfind('<'), author.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (author[..open].trim_end(), &author[open + 1..close])
        }
        _ => (author, ""),
    }
}

impl Exporter<'_, '_, '_, '_> {
    fn blob(&mut self, id: NodeId) -> Result<ObjectId> {
        if let Some(oid) = self.blobs.get(&id) {
            return Ok(*oid);
        }
        let data = content::read_blob(self.dag, &id)?;
        let oid = self.repo.write_blob(&data).map_err(GitError::git)?.detach();
        self.blobs.insert(id, oid);
        Ok(oid)
    }

    /// Git trees cannot hold empty directories: those are left out (`None` if nothing remains).
    fn tree(&mut self, id: NodeId) -> Result<Option<ObjectId>> {
        if let Some(oid) = self.trees.get(&id) {
            return Ok(Some(*oid));
        }
        let tree = jit_kernel::tree::load(self.dag, &id)?;
        let mut out = gix::objs::Tree::empty();
        for entry in tree.entries {
            let (mode, oid) = match entry.kind {
                EntryKind::Directory => match self.tree(entry.id)? {
                    Some(oid) => (GitKind::Tree, oid),
                    None => continue,
                },
                EntryKind::File => (GitKind::Blob, self.blob(entry.id)?),
                EntryKind::Executable => (GitKind::BlobExecutable, self.blob(entry.id)?),
                EntryKind::Symlink => (GitKind::Link, self.blob(entry.id)?),
            };
            out.entries.push(gix::objs::tree::Entry {
                mode: mode.into(),
                filename: entry.name.into(),
                oid,
            });
        }
        if out.entries.is_empty() {
            return Ok(None);
        }
        out.entries.sort();
        let oid = self
            .repo
            .write_object(&out)
            .map_err(GitError::git)?
            .detach();
        self.trees.insert(id, oid);
        Ok(Some(oid))
    }

    fn commit(&mut self, id: NodeId, snapshot: &Snapshot) -> Result<ObjectId> {
        let tree = match self.tree(snapshot.tree)? {
            Some(oid) => oid,
            None => self
                .repo
                .write_object(gix::objs::Tree::empty())
                .map_err(GitError::git)?
                .detach(),
        };
        let parents = git_parents(self.dag, &id)?
            .iter()
            .filter_map(|p| self.commits.get(p).copied())
            .collect();
        let (name, email) = split_author(&snapshot.author);
        let signature = gix::actor::Signature {
            name: name.into(),
            email: email.into(),
            time: gix::date::Time::new(snapshot.time.seconds, snapshot.time.tz_minutes as i32 * 60),
        };
        let commit = gix::objs::Commit {
            tree,
            parents,
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: snapshot.message.as_str().into(),
            extra_headers: Vec::new(),
        };
        let oid = self
            .repo
            .write_object(&commit)
            .map_err(GitError::git)?
            .detach();
        self.commits.insert(id, oid);
        Ok(oid)
    }
}
