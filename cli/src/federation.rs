//! `jit federation hello|import|refresh|release|ls`: other universes, reached over the message
//! plane. Like a pull, an import runs in this process against the local store; a running
//! daemon's mount shows the import under `federation/` once it commits.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use jit_kernel::federation::{handshake, import, known, peers, quarantine};
use jit_kernel::sync::SyncProgress;
use jit_kernel::Repository;
use jit_plane::sync::ZenohRemote;
use serde_json::json;
use uuid::Uuid;

use crate::args::FederationCommand;
use crate::output::Output;
use crate::sync::{endpoint_of, runtime, Bar};

/// A connection to another universe; the runtime runs its session and must outlive it.
struct Connection {
    runtime: tokio::runtime::Runtime,
    remote: ZenohRemote,
}

impl Connection {
    fn open(endpoint: &str) -> Result<Connection> {
        let runtime = runtime()?;
        let remote =
            ZenohRemote::connect(endpoint, endpoint, "", runtime.handle().clone())?.federation();
        Ok(Connection { runtime, remote })
    }

    fn close(self) {
        self.remote.close();
        drop(self.runtime);
    }
}

/// A universe named by id, or by the name in its identity document (unique among those known).
pub(crate) fn universe_named(repo: &Repository, text: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(id);
    }
    let store = repo.store();
    let mut found = Vec::new();
    for (id, record) in known::list(store, &store.read()?)? {
        let doc = jit_proto::identity::SignedIdentity::decode(&record.identity)
            .map_err(|e| anyhow::anyhow!("the identity held for {id} is damaged: {e}"))?;
        if doc.doc.name == text {
            found.push(id);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no known universe is named {text:?} (jit federation hello ENDPOINT meets one; jit federation ls lists them)"),
        _ => bail!("several known universes are named {text:?}: name it by id"),
    }
}

/// The endpoint to reach `universe` at: `from`, else where the last hello reached it.
fn endpoint_for(
    base: &Path,
    repo: &Repository,
    universe: Uuid,
    from: Option<&str>,
) -> Result<String> {
    if let Some(from) = from {
        return endpoint_of(base, from);
    }
    let store = repo.store();
    known::get(store, &store.read()?, universe)?
        .and_then(|k| k.endpoint)
        .with_context(|| {
            format!("no endpoint is known for universe {universe}: name one with --from")
        })
}

#[allow(clippy::too_many_arguments)]
fn import_one(
    repo: &Repository,
    endpoint: &str,
    universe: Option<Uuid>,
    name: &str,
    local: &str,
    into: Option<&import::Into>,
    quiet: bool,
) -> Result<import::ImportReport> {
    let mut connection = Connection::open(endpoint)?;
    let bar = Bar::new(!quiet, false);
    let progress: &dyn SyncProgress = &bar;
    let reach = jit_plane::sync::ZenohReach::new(connection.runtime.handle().clone());
    let result = import::import_with(
        repo,
        &mut connection.remote,
        Some(endpoint),
        universe,
        name,
        local,
        into,
        Some(&reach),
        progress,
    );
    bar.bar.finish_and_clear();
    connection.close();
    Ok(result?)
}

fn report_line(r: &import::ImportReport) -> String {
    format!(
        "imported {}/{} as federation/{}/{}: snapshot {} (epoch {}, {} nodes; {} fetched, {} bytes, {} new); edge {} ({})",
        r.universe,
        r.published,
        r.universe,
        r.local,
        r.snapshot.short(),
        r.epoch,
        r.closure,
        r.fetched_nodes,
        r.fetched_bytes,
        r.new_nodes,
        r.edge.short(),
        r.trust
    )
}

/// `jit federation hello|import|refresh|release|ls`.
pub(crate) fn run(
    out: &Output,
    base: &Path,
    repo: &Repository,
    command: FederationCommand,
) -> Result<ExitCode> {
    let store = repo.store();
    match command {
        FederationCommand::Hello { endpoint } => {
            let endpoint = endpoint_of(base, &endpoint)?;
            let mut connection = Connection::open(&endpoint)?;
            let result = handshake::hello(repo, &mut connection.remote, Some(&endpoint));
            connection.close();
            let session = result?;
            let doc = &session.identity;
            out.emit(
                json!({
                    "universe": session.universe.to_string(), "name": doc.name,
                    "owner": doc.owner, "version": doc.version,
                    "public_key": hex::encode(doc.public_key), "epoch": session.accept.epoch,
                    "capabilities": session.accept.capabilities,
                    "policy": session.accept.policy, "first_contact": session.first_contact,
                    "endpoint": endpoint,
                }),
                || {
                    format!(
                        "universe {} ({}, owner {}), identity version {}, epoch {}; shared: {}{}",
                        session.universe,
                        doc.name,
                        doc.owner,
                        doc.version,
                        session.accept.epoch,
                        session.accept.capabilities.join(", "),
                        if session.first_contact {
                            " (first contact)"
                        } else {
                            ""
                        }
                    )
                },
            )
        }
        FederationCommand::Import {
            universe,
            name,
            local,
            from,
            into,
            override_trust,
            declared,
            quiet,
        } => {
            let bundle = base.join(&universe);
            if name.is_none() && bundle.is_file() {
                let mut file = std::io::BufReader::new(
                    std::fs::File::open(&bundle)
                        .with_context(|| format!("cannot open {}", bundle.display()))?,
                );
                let report = jit_kernel::federation::bundle::import(
                    repo,
                    &mut file,
                    local.as_deref(),
                    None,
                )?;
                return out.emit(serde_json::to_value(&report)?, || report_line(&report));
            }
            let name = name.with_context(|| {
                format!("name what {universe} published (or give a bundle file that exists)")
            })?;
            let id = universe_named(repo, &universe)?;
            let endpoint = endpoint_for(base, repo, id, from.as_deref())?;
            let local = local.unwrap_or_else(|| name.clone());
            let into = match into {
                Some(text) => {
                    let (branch, path) = text
                        .split_once(':')
                        .with_context(|| format!("--into takes BRANCH:PATH, not {text:?}"))?;
                    let message = declared
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("Import {name} from universe {id} at {path}"));
                    Some(import::Into {
                        branch: jit_kernel::refs::RefName::branch(branch)?,
                        path: jit_kernel::path::RepoPath::parse(path)?,
                        info: crate::declared::declared(
                            &message,
                            declared.author.as_deref(),
                            declared.date.as_deref(),
                            repo.config().author(),
                        )?,
                        override_trust,
                    })
                }
                None => None,
            };
            let report = import_one(
                repo,
                &endpoint,
                Some(id),
                &name,
                &local,
                into.as_ref(),
                quiet || out.json,
            )?;
            out.emit(serde_json::to_value(&report)?, || report_line(&report))
        }
        FederationCommand::Refresh { universe, quiet } => {
            let only = universe.map(|u| universe_named(repo, &u)).transpose()?;
            let mut reports = Vec::new();
            let all = known::list(store, &store.read()?)?;
            for (id, record) in all {
                let trusted = peers::get(store, &store.read()?, id)?.trust
                    == jit_kernel::node::Trust::Trusted;
                if only.map_or(!trusted, |u| u != id) || record.imports.is_empty() {
                    continue;
                }
                let endpoint = endpoint_for(base, repo, id, None)?;
                for (local, import) in &record.imports {
                    reports.push(import_one(
                        repo,
                        &endpoint,
                        Some(id),
                        &import.published,
                        local,
                        None,
                        quiet || out.json,
                    )?);
                }
            }
            out.emit(serde_json::to_value(&reports)?, || {
                if reports.is_empty() {
                    "nothing to refresh (only trusted universes refresh without being named)".into()
                } else {
                    reports
                        .iter()
                        .map(report_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
        FederationCommand::Release { universe, forget } => {
            let id = universe_named(repo, &universe)?;
            quarantine::release(store, id, forget)?;
            out.emit(
                json!({"universe": id.to_string(), "released": true, "forgot": forget}),
                || {
                    format!(
                        "released universe {id}{}",
                        if forget {
                            "; its head and log are forgotten"
                        } else {
                            ""
                        }
                    )
                },
            )
        }
        FederationCommand::Ls => ls(out, repo),
        FederationCommand::Agree { local, k, sources } => {
            let ids = sources
                .iter()
                .map(|s| universe_named(repo, s))
                .collect::<Result<Vec<_>>>()?;
            jit_kernel::federation::agree::set_policy(store, &local, k, &ids)?;
            let names: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            out.emit(json!({"local": local, "k": k, "sources": names}), || {
                format!("{local} moves when {k} of {} agree", names.join(", "))
            })
        }
        FederationCommand::Witnesses {
            level,
            k,
            witnesses,
        } => {
            let trust = jit_kernel::node::Trust::parse(&level).with_context(|| {
                format!("{level:?} is not a trust level (trusted, semi-trusted, untrusted)")
            })?;
            let ids = witnesses
                .iter()
                .map(|w| universe_named(repo, w))
                .collect::<Result<Vec<_>>>()?;
            jit_kernel::federation::witness::set_policy(store, trust, k, &ids)?;
            let names: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            out.emit(
                json!({"level": trust.as_str(), "k": k, "witnesses": names}),
                || {
                    format!(
                        "heads of {} universes need {k} cosignatures of {}",
                        trust.as_str(),
                        if names.is_empty() {
                            "no one".to_owned()
                        } else {
                            names.join(", ")
                        }
                    )
                },
            )
        }
        FederationCommand::Update {
            universe,
            local,
            quiet,
        } => {
            let id = universe_named(repo, &universe)?;
            let endpoint = endpoint_for(base, repo, id, None)?;
            let record = known::get(store, &store.read()?, id)?
                .with_context(|| format!("nothing was imported from universe {id}"))?;
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            for (name, pin) in &record.imports {
                if local.as_ref().is_some_and(|l| l != name) {
                    continue;
                }
                let report = import_one(
                    repo,
                    &endpoint,
                    Some(id),
                    &pin.published,
                    name,
                    None,
                    quiet || out.json,
                )?;
                let changes = import::changes(store, id, &pin.snapshot, &report.snapshot)?;
                let listed: Vec<(&str, String)> = changes
                    .iter()
                    .map(|c| {
                        let kind = match c.kind {
                            jit_kernel::tree::ChangeKind::Added => "A",
                            jit_kernel::tree::ChangeKind::Deleted => "D",
                            jit_kernel::tree::ChangeKind::Modified => "M",
                        };
                        (kind, String::from_utf8_lossy(&c.path).into_owned())
                    })
                    .collect();
                rows.push(json!({
                    "universe": id.to_string(), "local": name,
                    "from": {"snapshot": pin.snapshot.to_hex(), "epoch": pin.epoch},
                    "to": {"snapshot": report.snapshot.to_hex(), "epoch": report.epoch},
                    "changes": listed.iter().map(|(k, p)| json!({"change": k, "path": p})).collect::<Vec<_>>(),
                }));
                lines.push(format!(
                    "federation/{id}/{name}: epoch {} -> {}, {} -> {}",
                    pin.epoch,
                    report.epoch,
                    pin.snapshot.short(),
                    report.snapshot.short()
                ));
                lines.extend(listed.iter().map(|(k, p)| format!("{k}\t{p}")));
            }
            out.emit(serde_json::Value::Array(rows), || lines.join("\n"))
        }
        FederationCommand::Export {
            bundle,
            name,
            witnesses,
        } => {
            let ids = witnesses
                .iter()
                .map(|w| universe_named(repo, w))
                .collect::<Result<Vec<_>>>()?;
            let path = base.join(bundle);
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let runtime = runtime()?;
            let reach = jit_plane::sync::ZenohReach::new(runtime.handle().clone());
            let summary = jit_kernel::federation::bundle::export_cosigned(
                repo,
                &name,
                &ids,
                Some(&reach),
                &mut writer,
            )?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            out.emit(serde_json::to_value(&summary)?, || {
                format!(
                    "wrote {}: {} as published (epoch {}), snapshot {}, {} nodes, {} bytes",
                    path.display(),
                    summary.published,
                    summary.epoch,
                    summary.snapshot.short(),
                    summary.nodes,
                    summary.bytes
                )
            })
        }
        other => bail!("{other:?} is not handled here"),
    }
}

/// `jit federation verify FILE`: checks a bundle offline, in no universe.
pub(crate) fn verify_bundle(out: &Output, base: &Path, bundle: &Path) -> Result<ExitCode> {
    let path = base.join(bundle);
    let mut file = std::io::BufReader::new(
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let summary = jit_kernel::federation::bundle::verify(&mut file)?;
    out.emit(serde_json::to_value(&summary)?, || {
        format!(
            "verified: universe {} ({}) published {} as {} (epoch {}): {} nodes, {} bytes",
            summary.universe,
            summary.name,
            summary.snapshot.short(),
            summary.published,
            summary.epoch,
            summary.nodes,
            summary.bytes
        )
    })
}

/// `jit federation ls`: every universe with a policy or a record.
fn ls(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let store = repo.store();
    let txn = store.read()?;
    let mut ids: Vec<Uuid> = peers::list(store, &txn)?
        .iter()
        .map(|p| p.universe)
        .collect();
    let records = known::list(store, &txn)?;
    ids.extend(records.iter().map(|(id, _)| *id));
    ids.sort();
    ids.dedup();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for id in ids {
        let peer = peers::get(store, &txn, id)?;
        let record = records.iter().find(|(r, _)| *r == id).map(|(_, k)| k);
        let name = record
            .and_then(|k| jit_proto::identity::SignedIdentity::decode(&k.identity).ok())
            .map(|d| d.doc.name);
        let head = record
            .and_then(|k| k.head.as_ref())
            .and_then(|h| jit_proto::head::SignedHead::decode(h).ok())
            .map(|h| h.head);
        let quarantine = record.and_then(|k| k.quarantine.clone());
        let imports: Vec<_> = record
            .map(|k| {
                k.imports
                    .iter()
                    .map(|(local, i)| {
                        json!({"local": local, "published": i.published,
                               "snapshot": i.snapshot.to_hex(), "edge": i.edge.to_hex(),
                               "epoch": i.epoch})
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(json!({
            "universe": id.to_string(), "name": name, "trust": peer.trust.as_str(),
            "denied": peer.denied, "endpoint": record.and_then(|k| k.endpoint.clone()),
            "epoch": head.map(|h| h.epoch), "size": head.map(|h| h.size),
            "root": head.map(|h| hex::encode(h.root)),
            "imports": imports,
            "quarantine": quarantine.as_ref().map(|q| json!({
                "code": q.code, "reason": q.reason, "at": q.at,
                "held": q.held.as_ref().map(hex::encode),
                "offered": q.offered.as_ref().map(hex::encode),
            })),
        }));
        let mut line = format!(
            "{id} {} {}{}",
            name.as_deref().unwrap_or("-"),
            peer.trust.as_str(),
            if peer.denied { " denied" } else { "" }
        );
        if let Some(h) = head {
            line.push_str(&format!(" epoch {}", h.epoch));
        }
        if let Some(q) = &quarantine {
            line.push_str(&format!(" QUARANTINED ({}): {}", q.code, q.reason));
        }
        if let Some(k) = record {
            for (local, i) in &k.imports {
                line.push_str(&format!(
                    "\n  federation/{id}/{local} = {}:{} {} (epoch {})",
                    id,
                    i.published,
                    i.snapshot.short(),
                    i.epoch
                ));
            }
        }
        lines.push(line);
    }
    out.emit(serde_json::Value::Array(rows), || lines.join("\n"))
}
