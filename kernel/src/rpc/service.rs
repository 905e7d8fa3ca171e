//! The one dispatcher behind the RPC: decodes each operation's payload, runs exactly one kernel
//! operation, and encodes the answer. Payloads and results are CBOR maps described by the serde
//! types below (node ids are 32-byte strings, SWS ids 32-character hex text).

use std::collections::BTreeMap;
use std::sync::Arc;

use ciborium::value::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{ErrorBody, Request, Response};
use crate::cbor;
use crate::checkout;
use crate::collapse::{self, Outcome};
use crate::content;
use crate::dag;
use crate::error::{Error, Result};
use crate::history;
use crate::id::NodeId;
use crate::merge::Conflict;
use crate::node::EntryKind;
use crate::patch::Patch;
use crate::refs::{self, RefName};
use crate::repo::Repository;
use crate::revparse;
use crate::source::{Dag, Source};
use crate::sws::{self, SwsId, SwsSource};
use crate::tree::{self, ChangeKind};

/// Serves RPC requests against one repository.
#[derive(Clone)]
pub struct Service {
    repo: Arc<Repository>,
}

pub use crate::history::{Committed, Declared};

/// `shadow.create` arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateArgs {
    /// Branch the SWS commits to (default: HEAD's branch).
    pub branch: Option<String>,
    /// Revision to anchor on (default: the branch tip).
    pub from: Option<String>,
    /// Owner (agent id or user).
    pub owner: String,
    /// Optional name.
    pub name: Option<String>,
}

/// Arguments naming one SWS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwsArgs {
    /// The SWS id (hex).
    pub sws: String,
}

/// `shadow.apply_patch` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// The patch.
    pub patch: Patch,
}

/// `shadow.stage` arguments: content nodes sent ahead of a `put-blob` (a file too large for
/// one request goes in several).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// Canonical CBOR of each content node (chunks and blobs).
    pub nodes: Vec<serde_bytes::ByteBuf>,
}

/// `collapse.commit` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// Declared inputs.
    #[serde(flatten)]
    pub declared: Declared,
}

/// Arguments naming a revision, with declared inputs (reset, rebase).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveArgs {
    /// Branch to move (default: HEAD's).
    pub branch: Option<String>,
    /// The revision.
    pub rev: String,
    /// Declared inputs.
    #[serde(flatten)]
    pub declared: Declared,
}

/// Arguments naming a revision or node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevArgs {
    /// A revision expression or node id.
    pub rev: String,
    /// For `dag.lineage`: at most this many.
    pub limit: Option<u64>,
}

/// `ref.*` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefArgs {
    /// Full (`heads/x`) or short name.
    pub name: String,
    /// Target revision, where the op needs one.
    pub target: Option<String>,
    /// Compare-and-set: the expected current target.
    pub expected: Option<String>,
    /// Allow deleting a tag.
    #[serde(default)]
    pub force: bool,
}

/// `mh.read_file` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadArgs {
    /// Path in the tree.
    pub path: String,
    /// Read from this SWS's working tree…
    pub sws: Option<String>,
    /// …or from this revision (default: HEAD).
    pub rev: Option<String>,
}

/// `mh.checkout` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutArgs {
    /// The branch to check out.
    pub branch: String,
}

/// Arguments naming a checkout directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirArgs {
    /// The checkout directory (absolute, canonical).
    pub dir: String,
}

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

fn payload<T: DeserializeOwned>(value: Value) -> Result<T> {
    cbor::from_value(value).map_err(|e| Error::InvalidInput(format!("bad payload: {e}")))
}

fn answer<T: Serialize>(value: &T) -> Result<Value> {
    Ok(cbor::to_value(value)?)
}

fn change_letter(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "A",
        ChangeKind::Deleted => "D",
        ChangeKind::Modified => "M",
    }
}

impl Service {
    /// A service for `repo`.
    pub fn new(repo: Arc<Repository>) -> Service {
        Service { repo }
    }

    /// The repository served.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Handles one request. Never panics on input; every failure is an error response.
    pub fn handle(&self, request: Request) -> Response {
        match self.dispatch(&request.op, request.payload) {
            Ok(result) => Response::Ok(result),
            Err(Error::MergeConflict(conflicts)) => Response::Err(ErrorBody {
                code: crate::Code::MergeConflict.as_str().to_owned(),
                message: Error::MergeConflict(conflicts.clone()).to_string(),
                details: cbor::to_value(&conflicts).ok(),
            }),
            Err(error) => crate::rpc::protocol::error_response(&error),
        }
    }

    fn branch_or_head(&self, branch: Option<&str>) -> Result<RefName> {
        match branch {
            Some(name) => RefName::parse_full(name).or_else(|_| RefName::branch(name)),
            None => self.repo.head(),
        }
    }

    fn resolve(&self, rev: &str) -> Result<NodeId> {
        self.repo.resolve(rev)
    }

    fn sws_id(text: &str) -> Result<SwsId> {
        text.parse()
    }

    fn dispatch(&self, op: &str, payload_value: Value) -> Result<Value> {
        let store = self.repo.store();
        if ["shadow.", "collapse.", "history.", "mh."]
            .iter()
            .any(|prefix| op.starts_with(prefix))
        {
            // Writes buffered by the mount land first, so the operation sees all of them (and
            // edits buffered in `head/` go to the branch a checkout leaves).
            store.settle()?;
        }
        match op {
            op if op.starts_with("sync.") => {
                crate::sync::serve::dispatch(&self.repo, op, payload_value)
            }
            "jit.info" => {
                let universe = self.repo.universe()?;
                let head = self.repo.head()?;
                let tip = self.resolve("HEAD")?;
                answer(&BTreeMap::from([
                    ("universe", universe.id.to_string()),
                    ("name", universe.name.clone()),
                    ("public_key", universe.public_key.clone()),
                    ("head", head.short().to_owned()),
                    ("tip", tip.to_hex()),
                ]))
            }
            "shadow.create" => {
                let args: CreateArgs = payload(payload_value)?;
                let branch = self.branch_or_head(args.branch.as_deref())?;
                let base = args
                    .from
                    .as_deref()
                    .map(|rev| self.resolve(rev))
                    .transpose()?;
                let (id, _) = sws::create(store, &branch, base, &args.owner, args.name.as_deref())?;
                self.status_value(id)
            }
            "shadow.working" => {
                let args: CreateArgs = payload(payload_value)?;
                let branch = self.branch_or_head(args.branch.as_deref())?;
                let id = sws::working(store, &branch, &args.owner)?;
                self.status_value(id)
            }
            "shadow.apply_patch" => {
                let args: ApplyArgs = payload(payload_value)?;
                answer(&sws::apply_patch(
                    store,
                    Self::sws_id(&args.sws)?,
                    &args.patch,
                )?)
            }
            "shadow.stage" => {
                let args: StageArgs = payload(payload_value)?;
                let nodes: Vec<Vec<u8>> = args.nodes.into_iter().map(|b| b.into_vec()).collect();
                let staged = sws::stage_content(store, Self::sws_id(&args.sws)?, &nodes)?;
                Ok(Value::Map(vec![(
                    Value::Text("staged".into()),
                    Value::Integer((staged as u64).into()),
                )]))
            }
            "shadow.status" => {
                let args: SwsArgs = payload(payload_value)?;
                self.status_value(Self::sws_id(&args.sws)?)
            }
            "shadow.diff" => {
                let args: SwsArgs = payload(payload_value)?;
                let txn = store.read()?;
                answer(&self.changes(&txn, Self::sws_id(&args.sws)?)?)
            }
            "shadow.list" => {
                let txn = store.read()?;
                let ids: Vec<SwsId> = sws::list(store, &txn)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                drop(txn);
                let all = ids
                    .into_iter()
                    .map(|id| self.status(id))
                    .collect::<Result<Vec<_>>>()?;
                answer(&all)
            }
            "shadow.history" => {
                let args: SwsArgs = payload(payload_value)?;
                let txn = store.read()?;
                answer(&sws::history(store, &txn, Self::sws_id(&args.sws)?)?)
            }
            "shadow.discard" => {
                let args: SwsArgs = payload(payload_value)?;
                sws::discard(store, Self::sws_id(&args.sws)?)?;
                Ok(Value::Map(Vec::new()))
            }
            "collapse.commit" => {
                let args: CommitArgs = payload(payload_value)?;
                match collapse::commit(store, Self::sws_id(&args.sws)?, &args.declared.info())? {
                    Outcome::Committed { snapshot, rewrite } => {
                        answer(&Committed { snapshot, rewrite })
                    }
                    Outcome::Conflicted { conflicts } => Err(Error::MergeConflict(conflicts)),
                }
            }
            "collapse.validate" => {
                let args: SwsArgs = payload(payload_value)?;
                answer(&collapse::validate(store, Self::sws_id(&args.sws)?)?)
            }
            "history.reset" | "history.rebase" => {
                let args: MoveArgs = payload(payload_value)?;
                let branch = self.branch_or_head(args.branch.as_deref())?;
                let target = self.resolve(&args.rev)?;
                let tip = if op == "history.reset" {
                    history::reset(store, &branch, target, &args.declared.info())?
                } else {
                    history::rebase(store, &branch, target, &args.declared.info())?
                };
                answer(&BTreeMap::from([("snapshot", tip)]))
            }
            "dag.get_node" => {
                let args: RevArgs = payload(payload_value)?;
                let id = self.resolve(&args.rev)?;
                let txn = store.read()?;
                let bytes = store
                    .node_bytes(&txn, &id)?
                    .ok_or(Error::NodeNotFound(id))?;
                let header = store.require_header(&txn, &id)?;
                Ok(Value::Map(vec![
                    (Value::Text("id".into()), Value::Bytes(id.0.to_vec())),
                    (
                        Value::Text("type".into()),
                        Value::Text(header.node_type.as_str().into()),
                    ),
                    (Value::Text("bytes".into()), Value::Bytes(bytes.to_vec())),
                ]))
            }
            "dag.get_parents" => {
                let args: RevArgs = payload(payload_value)?;
                let id = self.resolve(&args.rev)?;
                let txn = store.read()?;
                answer(&store.view(&txn, &id)?.parents)
            }
            "dag.lineage" => {
                let args: RevArgs = payload(payload_value)?;
                let mut current = Some(self.resolve(&args.rev)?);
                let limit = args.limit.unwrap_or(u64::MAX);
                let txn = store.read()?;
                let mut line = Vec::new();
                while let Some(id) = current {
                    if line.len() as u64 >= limit {
                        break;
                    }
                    line.push(id);
                    current = dag::mainline_parent(store, &txn, &id)?;
                }
                answer(&line)
            }
            "ref.get" => {
                let args: RefArgs = payload(payload_value)?;
                let name = RefName::parse_full(&args.name)?;
                let txn = store.read()?;
                answer(&refs::get(store, &txn, &name)?)
            }
            "ref.list" => {
                let txn = store.read()?;
                let all: BTreeMap<String, NodeId> =
                    store.refs_with_prefix(&txn, "")?.into_iter().collect();
                answer(&all)
            }
            "ref.set" => {
                let args: RefArgs = payload(payload_value)?;
                let target = self.resolve(args.target.as_deref().unwrap_or("HEAD"))?;
                let expected = args
                    .expected
                    .as_deref()
                    .map(|rev| self.resolve(rev))
                    .transpose()?;
                self.repo.set_branch(&args.name, target, expected)?;
                Ok(Value::Map(Vec::new()))
            }
            "ref.create_branch" | "ref.create_tag" => {
                let args: RefArgs = payload(payload_value)?;
                let txn = store.read()?;
                let head = self.repo.head()?;
                let target = revparse::resolve_snapshot(
                    store,
                    &txn,
                    &head,
                    args.target.as_deref().unwrap_or("HEAD"),
                )?;
                drop(txn);
                if op == "ref.create_branch" {
                    self.repo.create_branch(&args.name, target)?;
                } else {
                    self.repo.create_tag(&args.name, target)?;
                }
                Ok(Value::Map(Vec::new()))
            }
            "ref.delete" => {
                let args: RefArgs = payload(payload_value)?;
                let name = RefName::parse_full(&args.name)?;
                let was = match name.kind() {
                    refs::RefKind::Branch => self.repo.delete_branch(name.short())?,
                    refs::RefKind::Tag => self.repo.delete_tag(name.short(), args.force)?,
                    refs::RefKind::Remote => self.repo.delete_kept(&name)?,
                };
                answer(&BTreeMap::from([("was", was)]))
            }
            "mh.status" => {
                let head = self.repo.head()?;
                let id = sws::working(store, &head, &daemon_user())?;
                self.status_value(id)
            }
            "mh.checkout" => {
                let args: CheckoutArgs = payload(payload_value)?;
                let branch =
                    RefName::parse_full(&args.branch).or_else(|_| RefName::branch(&args.branch))?;
                let txn = store.read()?;
                if refs::get(store, &txn, &branch)?.is_none() {
                    return Err(Error::RefNotFound(branch.to_string()));
                }
                drop(txn);
                self.repo.set_head(&branch)?;
                answer(&BTreeMap::from([("head", branch.short().to_owned())]))
            }
            "checkout.record" => {
                let args: checkout::Record = payload(payload_value)?;
                answer(&checkout::record(store, &args, &daemon_user())?)
            }
            "checkout.get" => {
                let args: DirArgs = payload(payload_value)?;
                let txn = store.read()?;
                let state = checkout::get(store, &txn, &args.dir)?.ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{} is not a checkout (jit checkout --into makes one)",
                        args.dir
                    ))
                })?;
                let sws = checkout::sws_of(store, &txn, &state)?.map(|id| id.to_string());
                answer(&CheckoutInfo { state, sws })
            }
            "checkout.forget" => {
                let args: DirArgs = payload(payload_value)?;
                checkout::forget(store, &args.dir)?;
                Ok(Value::Map(Vec::new()))
            }
            "mh.read_file" => {
                let args: ReadArgs = payload(payload_value)?;
                let txn = store.read()?;
                let (entry, data) = match &args.sws {
                    Some(text) => {
                        let id = Self::sws_id(text)?;
                        let state = sws::get(store, &txn, id)?;
                        let src = SwsSource::new(store, &txn, id);
                        read_path(&src, &state.tree, &args.path)?
                    }
                    None => {
                        let rev = self.resolve(args.rev.as_deref().unwrap_or("HEAD"))?;
                        let src = Dag::new(store, &txn);
                        let root = tree::tree_of(&src, &rev)?;
                        read_path(&src, &root, &args.path)?
                    }
                };
                Ok(Value::Map(vec![
                    (
                        Value::Text("kind".into()),
                        Value::Text(entry.as_str().into()),
                    ),
                    (Value::Text("content".into()), Value::Bytes(data)),
                ]))
            }
            other => Err(Error::InvalidInput(format!("unknown operation {other:?}"))),
        }
    }

    fn changes(&self, txn: &crate::store::ReadTxn<'_>, id: SwsId) -> Result<Vec<ChangeInfo>> {
        Ok(sws::diff(self.repo.store(), txn, id)?
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

    fn status(&self, id: SwsId) -> Result<StatusInfo> {
        let store = self.repo.store();
        let txn = store.read()?;
        let state = sws::get(store, &txn, id)?;
        let branch = RefName::parse_full(&state.branch)?;
        Ok(StatusInfo {
            id: id.to_string(),
            owner: state.owner.clone(),
            name: state.name.clone(),
            branch: branch.short().to_owned(),
            base: state.base,
            tip: refs::get(store, &txn, &branch)?,
            tree: state.tree,
            patches: state.patches,
            changes: self.changes(&txn, id)?,
            conflicts: state.conflicts,
        })
    }

    fn status_value(&self, id: SwsId) -> Result<Value> {
        answer(&self.status(id)?)
    }
}

/// Who owns working SWS this process creates: the user running it.
fn daemon_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}

fn read_path(src: &dyn Source, root: &NodeId, path: &str) -> Result<(EntryKind, Vec<u8>)> {
    let entry = tree::lookup(src, root, path.as_bytes())?.ok_or_else(|| Error::PathNotFound {
        path: path.to_owned(),
        rev: "the requested tree".into(),
    })?;
    if entry.kind == EntryKind::Directory {
        return Err(Error::InvalidInput(format!("{path} is a directory")));
    }
    Ok((entry.kind, content::read_blob(src, &entry.id)?))
}
