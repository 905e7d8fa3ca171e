//! Verbs on the universe itself: `init`, `fsck`, `info`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use jit_kernel::fsck;
use jit_kernel::repo::InitOptions;
use jit_kernel::{NodeId, Repository};
use serde_json::json;

use crate::output::Output;

/// A new universe in `target` on branch `branch`, named `name` or after the directory, owned
/// by `$USER`.
fn make_universe(target: &Path, branch: &str, name: Option<String>) -> Result<Repository> {
    let display_name = name.unwrap_or_else(|| {
        std::fs::canonicalize(target)
            .ok()
            .or_else(|| Some(target.to_path_buf()))
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "universe".into())
    });
    let owner = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let created = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Repository::init(
        target,
        &InitOptions {
            branch: branch.to_owned(),
            name: display_name,
            owner,
            created,
            replica_of: None,
        },
    )?)
}

pub(crate) fn init(
    out: &Output,
    base: &Path,
    dir: Option<PathBuf>,
    branch: &str,
    name: Option<String>,
) -> Result<ExitCode> {
    let target = match dir {
        Some(dir) => base.join(dir),
        None => base.to_path_buf(),
    };
    let repo = make_universe(&target, branch, name)?;
    let identity = repo.identity()?;
    out.emit(
        json!({
            "path": repo.jit_dir().display().to_string(), "branch": branch,
            "universe": identity.info.id.to_string(), "public_key": identity.info.public_key,
        }),
        || {
            format!(
                "Initialized empty JIT universe {} in {} (branch {branch})",
                identity.info.id,
                repo.jit_dir().display()
            )
        },
    )
}

/// Makes a universe in `dir` as `jit init` does (branch main, named after the directory),
/// printing nothing.
pub(crate) fn init_quietly(dir: &Path) -> Result<()> {
    make_universe(dir, "main", None).map(drop)
}

pub(crate) fn resolve_snapshot(repo: &Repository, rev: &str) -> Result<NodeId> {
    let head = repo.head()?;
    let txn = repo.store().read()?;
    Ok(jit_kernel::revparse::resolve_snapshot(
        repo.store(),
        &txn,
        &head,
        rev,
    )?)
}

pub(crate) fn run_fsck(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let report = fsck::fsck_universe(repo)?;
    out.emit(serde_json::to_value(&report)?, || {
        let mut text: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect();
        text.push(format!(
            "checked {}, {}, {}: {}",
            crate::output::count(report.log_records, "log record"),
            crate::output::count(report.nodes, "node"),
            crate::output::count(report.refs, "ref"),
            if report.is_clean() {
                "clean".to_owned()
            } else {
                format!("{} problems", report.problems.len())
            }
        ));
        text.join("\n")
    })?;
    if report.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("jit: error: fsck found {} problems", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn info(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let universe = repo.universe()?;
    let head = repo.head()?;
    let tip = repo.resolve("HEAD")?;
    let txn = repo.store().read()?;
    let nodes = repo.store().header_count(&txn)?;
    let i = &universe;
    out.emit(
        json!({
            "universe": i.id.to_string(), "name": i.name, "owner": i.owner,
            "public_key": i.public_key, "head": head.short(), "tip": tip.to_hex(),
            "workdir": repo.workdir().display().to_string(), "nodes": nodes,
        }),
        || {
            format!(
                "universe   {} ({})\nowner      {}\npublic key {}\nhead       {} at {}\nworkdir    {}\nnodes      {nodes}",
                i.id,
                i.name,
                i.owner,
                i.public_key,
                head.short(),
                tip.short(),
                repo.workdir().display()
            )
        },
    )
}

/// `jit federation whoami`: this universe's signed identity document, checked before it is
/// shown (a document that does not verify is a damaged key or identity file).
pub(crate) fn whoami(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let identity = jit_kernel::identity::UniverseIdentity::load(repo.jit_dir())?;
    let signed = identity.document()?;
    let doc = signed
        .verify_after(None)
        .map_err(|e| anyhow::anyhow!("this universe's identity does not verify: {e}"))?;
    let bytes = signed.encode().map_err(jit_kernel::Error::from)?;
    let fingerprint = blake3::hash(&bytes).to_hex().to_string();
    let universe = uuid::Uuid::from_bytes(doc.universe);
    let public_key = hex::encode(doc.public_key);
    out.emit(
        json!({
            "universe": universe.to_string(), "version": doc.version,
            "public_key": public_key, "name": doc.name, "owner": doc.owner,
            "description": doc.description, "created": doc.created,
            "fingerprint": fingerprint, "document": hex::encode(&bytes),
        }),
        || {
            format!(
                "universe    {universe} ({})\nversion     {}\npublic key  {public_key}\nowner       {}\ndescription {}\ncreated     {}\nfingerprint {fingerprint}",
                doc.name, doc.version, doc.owner, doc.description, doc.created
            )
        },
    )
}

/// `jit publish REV [--as NAME]`: appends the snapshot to the publish log and signs the next
/// head.
pub(crate) fn publish(
    out: &Output,
    repo: &Repository,
    rev: &str,
    name: Option<&str>,
) -> Result<ExitCode> {
    let (entry, head) = jit_kernel::federation::publish::publish(repo, rev, name.unwrap_or(rev))?;
    let h = &head.head;
    let root = hex::encode(h.root);
    out.emit(
        json!({
            "name": entry.name, "seq": entry.seq, "snapshot": entry.snapshot.to_hex(),
            "epoch": h.epoch, "size": h.size, "root": root,
            "head": hex::encode(head.encode().map_err(jit_kernel::Error::from)?),
        }),
        || {
            format!(
                "published {} as {} (entry {}); head: epoch {}, {} entries, root {root}",
                entry.snapshot.short(),
                entry.name,
                entry.seq,
                h.epoch,
                h.size
            )
        },
    )
}

/// `jit federation trust|deny|ls`: this universe's policy for others.
pub(crate) fn federation_policy(
    out: &Output,
    repo: &Repository,
    command: crate::args::FederationCommand,
) -> Result<ExitCode> {
    use crate::args::FederationCommand;
    use jit_kernel::federation::peers::{self, Peer};
    let universe_id = |text: &str| crate::federation::universe_named(repo, text);
    let row = |p: &Peer| json!({"universe": p.universe.to_string(), "trust": p.trust.as_str(), "denied": p.denied});
    let line = |p: &Peer| {
        format!(
            "{} {}{}",
            p.universe,
            p.trust.as_str(),
            if p.denied { " denied" } else { "" }
        )
    };
    let store = repo.store();
    match command {
        FederationCommand::Trust { universe, level } => {
            let trust = jit_kernel::node::Trust::parse(&level).ok_or_else(|| {
                jit_kernel::Error::InvalidInput(format!(
                    "{level:?} is not a trust level (trusted, semi-trusted, untrusted)"
                ))
            })?;
            let peer = peers::trust(store, universe_id(&universe)?, trust)?;
            out.emit(row(&peer), || line(&peer))
        }
        FederationCommand::Deny { universe } => {
            let peer = peers::deny(store, universe_id(&universe)?)?;
            out.emit(row(&peer), || line(&peer))
        }
        other => anyhow::bail!("{other:?} is not a policy verb"),
    }
}

/// The git branch `jit export-git REV` writes when none is given: REV's own name when it names
/// a branch (`main`, `heads/main`); any other revision needs `--branch`, so that an export never
/// writes under a name the user did not choose.
pub(crate) fn exported_branch(repo: &Repository, rev: &str) -> Result<String> {
    let txn = repo.store().read()?;
    let named = jit_kernel::refs::RefName::parse_full(rev)
        .or_else(|_| jit_kernel::refs::RefName::branch(rev))
        .ok()
        .filter(|name| name.kind() == jit_kernel::refs::RefKind::Branch);
    if let Some(name) = named {
        if jit_kernel::refs::get(repo.store(), &txn, &name)?.is_some() {
            return Ok(name.short().to_owned());
        }
    }
    Err(jit_kernel::Error::InvalidInput(format!(
        "{rev} is not a branch: say which git branch to write with --branch NAME"
    ))
    .into())
}
