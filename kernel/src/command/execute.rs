//! Step 3: running a command. [`execute`] is the one place each operation's effect is written:
//! the RPC runs every command in its own transaction ([`At::Own`]); the plane runs the commands
//! it serves inside its group-commit operation ([`At::Within`]), so each effect commits together
//! with the plane's record of the message it answers.
//!
//! Settling: a command that [`Command::settles`] first lands what the mount has buffered. Inside
//! a caller's operation that is the caller's job, done before it opened the operation (the
//! plane's deliverer settles, then begins): settling needs the write transaction the operation
//! holds.

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::Serialize;

use super::args::{MoveArgs, ReadArgs, RefArgs};
use super::caller::Caller;
use super::reply::{self, CheckoutInfo};
use super::typed::Command;
use crate::cbor;
use crate::checkout;
use crate::collapse::{self, Outcome};
use crate::content;
use crate::dag;
use crate::error::{Error, Result};
use crate::federation;
use crate::history::{self, Committed};
use crate::id::NodeId;
use crate::node::EntryKind;
use crate::refs::{self, RefName};
use crate::repo::Repository;
use crate::revparse;
use crate::source::{Dag, Source};
use crate::store::{Op, ReadTxn};
use crate::sws::{self, SwsId, SwsSource};
use crate::sync::{serve, wire};
use crate::tree;

/// Where a command's reads and writes happen.
pub enum At<'o, 'e> {
    /// In transactions of its own: a write is committed before the command answers.
    Own,
    /// Inside the caller's open operation: durable when the caller commits it. Only commands
    /// that [`Command::runs_within`] may run here.
    Within(&'o mut Op<'e>),
}

impl At<'_, '_> {
    /// Runs `read` on a read view: a fresh read transaction, or the caller's operation.
    fn read<T>(
        &self,
        repo: &Repository,
        read: impl FnOnce(&ReadTxn<'_>) -> Result<T>,
    ) -> Result<T> {
        match self {
            At::Own => read(&repo.store().read()?),
            At::Within(op) => read(op.txn()),
        }
    }

    /// Runs `write` in an operation: a new one named after the command, or the caller's.
    fn write<T>(
        &mut self,
        repo: &Repository,
        command: &Command,
        write: impl FnOnce(&mut Op<'_>) -> Result<T>,
    ) -> Result<T> {
        match self {
            At::Own => repo.store().operation(command.operation().as_str(), write),
            At::Within(op) => write(op),
        }
    }
}

fn answer<T: Serialize>(value: &T) -> Result<Value> {
    Ok(cbor::to_value(value)?)
}

fn empty() -> Result<Value> {
    Ok(Value::Map(Vec::new()))
}

/// Who owns the working SWS a local caller's `mh.status` creates: the user running the kernel.
fn local_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}

fn branch_or_head(repo: &Repository, branch: Option<&str>) -> Result<RefName> {
    match branch {
        Some(name) => RefName::parse_full(name).or_else(|_| RefName::branch(name)),
        None => repo.head(),
    }
}

/// Runs `command` for `caller` at `at`: authorizes it, settles if it must, runs it, and answers.
/// A merge conflict is the error [`Error::MergeConflict`] (the SWS now shows the conflicts).
pub fn execute(
    repo: &Repository,
    mut at: At<'_, '_>,
    caller: &Caller<'_>,
    command: Command,
) -> Result<Value> {
    let store = repo.store();
    if let At::Within(_) = at {
        if !command.runs_within() {
            return Err(Error::InvalidInput(format!(
                "{} cannot run inside another operation",
                command.operation()
            )));
        }
    } else if command.settles() {
        store.settle()?;
    }
    if !matches!(caller, Caller::Local) {
        at.read(repo, |txn| {
            caller.authorize(command.permission(), store, txn)
        })?;
    }
    match &command {
        Command::Info => {
            let universe = repo.universe()?;
            answer(&BTreeMap::from([
                ("universe", universe.id.to_string()),
                ("name", universe.name.clone()),
                ("public_key", universe.public_key.clone()),
                ("head", repo.head()?.short().to_owned()),
                ("tip", repo.resolve("HEAD")?.to_hex()),
            ]))
        }
        Command::CreateSws(args) => {
            let branch = branch_or_head(repo, args.branch.as_deref())?;
            let base = args
                .from
                .as_deref()
                .map(|rev| repo.resolve(rev))
                .transpose()?;
            let (id, _) = at.write(repo, &command, |op| {
                sws::create_in(op, &branch, base, &args.owner, args.name.as_deref())
            })?;
            status(repo, &at, id)
        }
        Command::WorkingSws(args) => {
            let branch = branch_or_head(repo, args.branch.as_deref())?;
            let id = sws::working(store, &branch, &args.owner)?;
            status(repo, &at, id)
        }
        Command::ApplyPatch { sws, patch } => {
            answer(&at.write(repo, &command, |op| sws::apply_in(op, *sws, patch))?)
        }
        Command::Stage { sws, nodes } => {
            let staged = sws::stage_content(store, *sws, nodes)?;
            answer(&BTreeMap::from([("staged", staged as u64)]))
        }
        Command::SwsStatus(id) => status(repo, &at, *id),
        Command::SwsDiff(id) => answer(&at.read(repo, |txn| reply::changes(store, txn, *id))?),
        Command::ListSws => answer(&at.read(repo, |txn| {
            sws::list(store, txn)?
                .into_iter()
                .map(|(id, _)| reply::status(store, txn, id))
                .collect::<Result<Vec<_>>>()
        })?),
        Command::SwsHistory(id) => answer(&at.read(repo, |txn| sws::history(store, txn, *id))?),
        Command::ReadSws { sws: id, args } => at.read(repo, |txn| read_sws(store, txn, *id, args)),
        Command::ListSwsDir { sws: id, args } => {
            at.read(repo, |txn| list_sws_dir(store, txn, *id, &args.path))
        }
        Command::Discard(id) => {
            at.write(repo, &command, |op| sws::discard_in(op, *id))?;
            empty()
        }
        Command::DelegateSws { sws: id, agent } => {
            /// `shadow.delegate`'s answer.
            #[derive(Serialize)]
            struct Delegated {
                sws: String,
                delegates: Vec<String>,
            }
            let state = sws::delegate(store, *id, agent)?;
            answer(&Delegated {
                sws: id.to_string(),
                delegates: state.delegates,
            })
        }
        Command::Commit { sws, declared } => {
            match at.write(repo, &command, |op| {
                collapse::commit_in(op, *sws, &declared.info())
            })? {
                Outcome::Committed { snapshot, rewrite } => {
                    answer(&Committed { snapshot, rewrite })
                }
                Outcome::Conflicted { conflicts } => Err(Error::MergeConflict(conflicts)),
            }
        }
        Command::Validate(id) => {
            answer(&at.read(repo, |txn| collapse::validate_at(store, txn, *id))?)
        }
        Command::Reset(args) | Command::Rebase(args) => move_branch(repo, &command, args),
        Command::GetNode(args) => {
            let id = repo.resolve(&args.rev)?;
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
        Command::GetParents(args) => {
            let id = repo.resolve(&args.rev)?;
            let txn = store.read()?;
            answer(&store.view(&txn, &id)?.parents)
        }
        Command::Lineage(args) => {
            let mut current = Some(repo.resolve(&args.rev)?);
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
        Command::GetRef(args) => {
            let name = RefName::parse_full(&args.name)?;
            answer(&refs::get(store, &store.read()?, &name)?)
        }
        Command::ListRefs => {
            let all: BTreeMap<String, NodeId> = store
                .refs_with_prefix(&store.read()?, "")?
                .into_iter()
                .collect();
            answer(&all)
        }
        Command::SetRef(args) => {
            let target = repo.resolve(args.target.as_deref().unwrap_or("HEAD"))?;
            let expected = args
                .expected
                .as_deref()
                .map(|rev| repo.resolve(rev))
                .transpose()?;
            repo.set_branch(&args.name, target, expected)?;
            empty()
        }
        Command::CreateBranch(args) | Command::CreateTag(args) => {
            create_ref(repo, &command, args)?;
            empty()
        }
        Command::DeleteRef(args) => {
            let name = RefName::parse_full(&args.name)?;
            let was = match name.kind() {
                refs::RefKind::Branch => repo.delete_branch(name.short())?,
                refs::RefKind::Tag => repo.delete_tag(name.short(), args.force)?,
                refs::RefKind::Remote => repo.delete_kept(&name)?,
            };
            answer(&BTreeMap::from([("was", was)]))
        }
        Command::HeadStatus => {
            let id = sws::working(store, &repo.head()?, &local_user())?;
            status(repo, &at, id)
        }
        Command::CheckoutBranch(args) => {
            let branch =
                RefName::parse_full(&args.branch).or_else(|_| RefName::branch(&args.branch))?;
            if refs::get(store, &store.read()?, &branch)?.is_none() {
                return Err(Error::RefNotFound(branch.to_string()));
            }
            repo.set_head(&branch)?;
            answer(&BTreeMap::from([("head", branch.short().to_owned())]))
        }
        Command::ReadFile(args) => read_file(repo, args),
        Command::ListTree(args) => at.read(repo, |txn| list_tree(repo, txn, args)),
        Command::ReadAt(args) => at.read(repo, |txn| read_at(repo, txn, args)),
        Command::RecordCheckout(record) => answer(&checkout::record(store, record, &local_user())?),
        Command::GetCheckout(args) => {
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
        Command::ForgetCheckout(args) => {
            checkout::forget(store, &args.dir)?;
            empty()
        }
        Command::SyncFrontier => wire::to_value(&serve::frontier(repo)?),
        Command::SyncNegotiate(request) => {
            wire::to_value(&serve::negotiate(store, &store.read()?, request)?)
        }
        Command::SyncFetch(request) => {
            wire::to_value(&serve::fetch(store, &store.read()?, request)?)
        }
        Command::FederationHello(request) => {
            wire::to_value(&federation::serve::hello(repo, request)?)
        }
        Command::FederationHead(request) => {
            wire::to_value(&federation::serve::head(repo, request)?)
        }
        Command::FederationDepend(request) => {
            wire::to_value(&federation::serve::depend(repo, request)?)
        }
        Command::FederationFetch(request) => {
            wire::to_value(&federation::serve::fetch(repo, request)?)
        }
        Command::FederationCosign(request) => {
            wire::to_value(&federation::witness::cosign(repo, request)?)
        }
    }
}

fn status(repo: &Repository, at: &At<'_, '_>, id: SwsId) -> Result<Value> {
    answer(&at.read(repo, |txn| reply::status(repo.store(), txn, id))?)
}

/// `history.reset` and `history.rebase`.
fn move_branch(repo: &Repository, command: &Command, args: &MoveArgs) -> Result<Value> {
    let branch = branch_or_head(repo, args.branch.as_deref())?;
    let target = repo.resolve(&args.rev)?;
    let info = args.declared.info();
    let tip = match command {
        Command::Reset(_) => history::reset(repo.store(), &branch, target, &info)?,
        _ => history::rebase(repo.store(), &branch, target, &info)?,
    };
    answer(&BTreeMap::from([("snapshot", tip)]))
}

/// `ref.create_branch` and `ref.create_tag`.
fn create_ref(repo: &Repository, command: &Command, args: &RefArgs) -> Result<()> {
    let store = repo.store();
    let target = revparse::resolve_snapshot(
        store,
        &store.read()?,
        &repo.head()?,
        args.target.as_deref().unwrap_or("HEAD"),
    )?;
    match command {
        Command::CreateTag(_) => repo.create_tag(&args.name, target),
        _ => repo.create_branch(&args.name, target),
    }
}

/// `mh.read_file`: a file from an SWS's working tree or a revision.
fn read_file(repo: &Repository, args: &ReadArgs) -> Result<Value> {
    let store = repo.store();
    let txn = store.read()?;
    let (entry, data) = match &args.sws {
        Some(text) => {
            let id: SwsId = text.parse()?;
            let state = sws::get(store, &txn, id)?;
            read_path(&SwsSource::new(store, &txn, id), &state.tree, &args.path)?
        }
        None => {
            let rev = repo.resolve(args.rev.as_deref().unwrap_or("HEAD"))?;
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

/// `shadow.read`: a file of an SWS's working tree ([`read_range`]).
fn read_sws(
    store: &crate::store::Store,
    txn: &ReadTxn<'_>,
    id: SwsId,
    args: &super::args::SwsReadArgs,
) -> Result<Value> {
    let state = sws::get(store, txn, id)?;
    let src = SwsSource::new(store, txn, id);
    let range = (args.offset, args.len);
    read_range(&src, &state.tree, &args.path, range, &format!("SWS {id}"))
}

/// `mh.read`: a file of a revision's tree ([`read_range`]), with the snapshot it resolved to.
fn read_at(repo: &Repository, txn: &ReadTxn<'_>, args: &super::args::RevReadArgs) -> Result<Value> {
    let (snapshot, rev) = resolve_in(repo, txn, args.rev.as_deref())?;
    let src = Dag::new(repo.store(), txn);
    let root = tree::tree_of(&src, &snapshot)?;
    let range = (args.offset, args.len);
    with_snapshot(read_range(&src, &root, &args.path, range, &rev)?, snapshot)
}

/// `mh.ls`: a directory of a revision's tree ([`list_dir`]), with the snapshot it resolved to.
fn list_tree(repo: &Repository, txn: &ReadTxn<'_>, args: &super::args::TreeArgs) -> Result<Value> {
    let (snapshot, rev) = resolve_in(repo, txn, args.rev.as_deref())?;
    let src = Dag::new(repo.store(), txn);
    let root = tree::tree_of(&src, &snapshot)?;
    with_snapshot(list_dir(&src, &root, &args.path, &rev)?, snapshot)
}

/// The snapshot a revision (default HEAD) names, read in `txn`, and the revision's text.
fn resolve_in(repo: &Repository, txn: &ReadTxn<'_>, rev: Option<&str>) -> Result<(NodeId, String)> {
    let rev = rev.unwrap_or("HEAD");
    let snapshot = revparse::resolve_snapshot(repo.store(), txn, &repo.head()?, rev)?;
    Ok((snapshot, rev.to_owned()))
}

/// Adds `snapshot` (hex) to an answer map (the encoder puts keys in canonical order).
fn with_snapshot(mut answer: Value, snapshot: NodeId) -> Result<Value> {
    if let Value::Map(fields) = &mut answer {
        fields.push((
            Value::Text("snapshot".into()),
            Value::Text(snapshot.to_hex()),
        ));
    }
    Ok(answer)
}

/// A file under `root` — its kind, blob id and size, and the bytes of the range asked
/// (`(offset, len)`, at most [`super::args::MAX_READ`]); `place` names the tree in errors.
fn read_range(
    src: &dyn Source,
    root: &NodeId,
    path: &str,
    (offset, len): (u64, Option<u64>),
    place: &str,
) -> Result<Value> {
    let entry = tree::lookup(src, root, path.as_bytes())?.ok_or_else(|| Error::PathNotFound {
        path: path.to_owned(),
        rev: place.to_owned(),
    })?;
    if entry.kind == EntryKind::Directory {
        return Err(Error::InvalidInput(format!("{path} is a directory")));
    }
    let size = content::blob_size(src, &entry.id)?;
    let len = len
        .unwrap_or(super::args::MAX_READ)
        .min(super::args::MAX_READ)
        .min(size.saturating_sub(offset));
    let data = if len == 0 {
        Vec::new()
    } else {
        content::read_range(src, &entry.id, offset, len as usize)?
    };
    let text = |s: &str| Value::Text(s.into());
    Ok(Value::Map(vec![
        (text("blob"), Value::Text(entry.id.to_hex())),
        (text("kind"), Value::Text(entry.kind.as_str().into())),
        (text("size"), Value::Integer(size.into())),
        (text("offset"), Value::Integer(offset.into())),
        (text("content"), Value::Bytes(data)),
    ]))
}

/// `shadow.ls`: a directory of an SWS's working tree ([`list_dir`]).
fn list_sws_dir(
    store: &crate::store::Store,
    txn: &ReadTxn<'_>,
    id: SwsId,
    path: &str,
) -> Result<Value> {
    let state = sws::get(store, txn, id)?;
    let src = SwsSource::new(store, txn, id);
    list_dir(&src, &state.tree, path, &format!("SWS {id}"))
}

/// A directory under `root` (`""`: the root itself) — each entry's name, kind, blob (or tree)
/// id and, for files, size; `place` names the tree in errors.
fn list_dir(src: &dyn Source, root: &NodeId, path: &str, place: &str) -> Result<Value> {
    let dir = if path.is_empty() {
        *root
    } else {
        let entry =
            tree::lookup(src, root, path.as_bytes())?.ok_or_else(|| Error::PathNotFound {
                path: path.to_owned(),
                rev: place.to_owned(),
            })?;
        if entry.kind != EntryKind::Directory {
            return Err(Error::InvalidInput(format!("{path} is not a directory")));
        }
        entry.id
    };
    let text = |s: &str| Value::Text(s.into());
    let mut entries = Vec::new();
    for entry in tree::load(src, &dir)?.entries {
        let mut fields = vec![
            (text("id"), Value::Text(entry.id.to_hex())),
            (text("kind"), Value::Text(entry.kind.as_str().into())),
            (
                text("name"),
                Value::Text(String::from_utf8_lossy(&entry.name).into_owned()),
            ),
        ];
        if entry.kind != EntryKind::Directory {
            fields.push((
                text("size"),
                Value::Integer(content::blob_size(src, &entry.id)?.into()),
            ));
        }
        entries.push(Value::Map(fields));
    }
    Ok(Value::Map(vec![(text("entries"), Value::Array(entries))]))
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
