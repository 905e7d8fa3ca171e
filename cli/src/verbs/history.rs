//! Verbs that read history: `log` and `show`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use jit_kernel::dag;
use jit_kernel::node::{Blob, Payload};
use jit_kernel::source::Dag;
use jit_kernel::tree;
use jit_kernel::{NodeId, Repository};
use serde_json::{json, Value};

use super::diffs::{self, change_letter, Format};
use crate::declared;
use crate::output::{first_line, lossy, shown_path, Output};
use crate::pager::Paint;

pub(crate) fn snapshot_json(id: &NodeId, s: &jit_kernel::node::Snapshot) -> Value {
    json!({
        "id": id.to_hex(), "tree": s.tree.to_hex(), "author": s.author, "message": s.message,
        "time": s.time.seconds, "tz_minutes": s.time.tz_minutes,
        "date": declared::format_date(s.time),
    })
}

/// What `jit log` was asked.
pub(crate) struct LogRequest {
    pub(crate) rev: Option<String>,
    pub(crate) max_count: Option<usize>,
    pub(crate) all: bool,
    pub(crate) graph: bool,
    pub(crate) oneline: bool,
    pub(crate) first_parent: bool,
    pub(crate) changes: crate::args::ChangesArgs,
    pub(crate) view: crate::args::ViewArgs,
}

pub(crate) fn log(out: &Output, repo: &Repository, request: LogRequest) -> Result<ExitCode> {
    let store = repo.store();
    let txn = store.read()?;
    let head = repo.head()?;
    let mut starts = Vec::new();
    if request.all {
        for (_, target) in store.refs_with_prefix(&txn, "")? {
            starts.push(target);
        }
    }
    if !request.all || request.rev.is_some() {
        starts.push(repo.resolve(request.rev.as_deref().unwrap_or("HEAD"))?);
    }
    let mut snapshots = Vec::new();
    for start in starts {
        match store.view(&txn, &start)?.node_type {
            jit_kernel::NodeType::Root => {}
            jit_kernel::NodeType::Snapshot => snapshots.push(start),
            other => bail!("{start} is a {}, not a snapshot", other.as_str()),
        }
    }
    let labels = super::graph::labels(store, &txn, &head.to_string())?;
    let format = Format::from_flags(
        request.changes.patch,
        request.changes.stat,
        request.changes.name_only,
        request.changes.name_status,
        Format::None,
    );
    let paint = Paint(!out.json && request.view.color.enabled());
    let src = Dag::new(store, &txn);
    let mut lanes = super::graph::Lanes::default();
    let mut entries = Vec::new();
    let mut text = String::new();
    super::graph::walk(
        store,
        &txn,
        &snapshots,
        request.first_parent,
        &mut |visited| {
            if request.max_count.is_some_and(|max| entries.len() >= max) {
                return Ok(false);
            }
            let id = visited.id;
            let mut entry = snapshot_json(&id, &visited.snapshot);
            entry["parents"] = visited.parents.iter().map(|p| p.to_hex()).collect();
            let here = labels.get(&id).cloned().unwrap_or_default();
            entry["refs"] = json!(here);
            if let Some(rewrite) = &visited.rewrite {
                entry["rewrite"] = json!({
                    "kind": rewrite.kind.as_str(), "from": rewrite.from.to_hex(), "to": rewrite.to.to_hex(),
                });
            }
            let changed = if format == Format::None {
                None
            } else {
                let old = match visited.parents.first() {
                    Some(parent) => tree::tree_of(&src, parent)?,
                    None => tree::empty_tree_id(),
                };
                Some(diffs::changes(&src, &old, &visited.snapshot.tree, &[])?)
            };
            if let Some(changed) = &changed {
                entry["changes"] = diffs::to_json(changed);
            }
            if !out.json {
                let drawn = request.graph.then(|| lanes.place(id, &visited.parents));
                let (node_prefix, below) = match &drawn {
                    Some(drawn) => {
                        for line in &drawn.before {
                            text.push_str(&paint.graph(line.trim_end()));
                            text.push('\n');
                        }
                        (paint.graph(&drawn.node), paint.graph(&drawn.below))
                    }
                    None => (String::new(), String::new()),
                };
                let decoration = if here.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", paint.label(&here.join(", ")))
                };
                if request.oneline {
                    text.push_str(&format!(
                        "{node_prefix}{}{decoration} {}\n",
                        paint.id(&id.short()),
                        first_line(&visited.snapshot.message)
                    ));
                } else {
                    text.push_str(&format!(
                        "{node_prefix}{}{decoration}\n",
                        paint.id(&format!("snapshot {id}"))
                    ));
                    let mut body = format!(
                        "Author: {}\nDate:   {}\n",
                        visited.snapshot.author,
                        declared::format_date(visited.snapshot.time)
                    );
                    if visited.parents.len() > 1 {
                        let shorts: Vec<String> =
                            visited.parents.iter().map(|p| p.short()).collect();
                        body.push_str(&format!("Merge:  {}\n", shorts.join(" ")));
                    }
                    if let Some(rewrite) = &visited.rewrite {
                        body.push_str(&format!(
                            "Rewrite: {} from {} to {}\n",
                            rewrite.kind.as_str(),
                            rewrite.from.short(),
                            rewrite.to.short()
                        ));
                    }
                    body.push('\n');
                    for line in visited.snapshot.message.lines() {
                        body.push_str(&format!("    {line}\n"));
                    }
                    body.push('\n');
                    for line in body.lines() {
                        text.push_str(format!("{below}{line}").trim_end());
                        text.push('\n');
                    }
                }
                if let Some(changed) = &changed {
                    let mut rendered = String::new();
                    diffs::render(&src, changed, format, &mut rendered)?;
                    for line in rendered.lines() {
                        text.push_str(&below);
                        text.push_str(line);
                        text.push('\n');
                    }
                    if request.oneline && !rendered.is_empty() {
                        text.push_str(below.trim_end());
                        text.push('\n');
                    }
                }
                if let Some(drawn) = &drawn {
                    for line in &drawn.after {
                        text.push_str(&paint.graph(line.trim_end()));
                        text.push('\n');
                    }
                }
            }
            entries.push(entry);
            Ok(true)
        },
    )?;
    if out.json {
        return out.emit(Value::Array(entries), String::new);
    }
    crate::pager::show(text.trim_end(), !request.view.no_pager)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn rewrite_of(
    repo: &Repository,
    txn: &jit_kernel::store::ReadTxn<'_>,
    node: &jit_kernel::Node,
) -> Result<Option<jit_kernel::node::Rewrite>> {
    for parent in &node.parents {
        if let Payload::Rewrite(rewrite) = repo.store().node(txn, parent)?.payload {
            return Ok(Some(rewrite));
        }
    }
    Ok(None)
}

pub(crate) fn show(
    out: &Output,
    repo: &Repository,
    rev: &str,
    asked: crate::args::ChangesArgs,
    view: crate::args::ViewArgs,
) -> Result<ExitCode> {
    let id = repo.resolve(rev)?;
    let store = repo.store();
    let txn = store.read()?;
    let node = store.node(&txn, &id)?;
    let mut value = json!({
        "id": id.to_hex(), "type": node.node_type().as_str(), "clock": node.clock,
        "parents": node.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "metadata": node.metadata,
    });
    let mut text = format!("{} {id}\n", node.node_type().as_str());
    match &node.payload {
        Payload::Snapshot(snapshot) => {
            value = snapshot_json(&id, snapshot);
            value["type"] = json!("snapshot");
            let old_tree = match dag::mainline_parent(store, &txn, &id)? {
                Some(parent) => tree::tree_of(&Dag::new(store, &txn), &parent)?,
                None => tree::empty_tree_id(),
            };
            let changes = tree::diff(&Dag::new(store, &txn), &old_tree, &snapshot.tree)?;
            text.push_str(&format!(
                "Author: {}\nDate:   {}\nTree:   {}\n",
                snapshot.author,
                declared::format_date(snapshot.time),
                snapshot.tree
            ));
            if let Some(rewrite) = rewrite_of(repo, &txn, &node)? {
                text.push_str(&format!(
                    "Rewrite: {} from {} to {}\n",
                    rewrite.kind.as_str(),
                    rewrite.from,
                    rewrite.to
                ));
            }
            text.push('\n');
            for line in snapshot.message.lines() {
                text.push_str(&format!("    {line}\n"));
            }
            text.push('\n');
            let format = Format::from_flags(
                asked.patch,
                asked.stat,
                asked.name_only,
                asked.name_status,
                Format::None,
            );
            let src = Dag::new(store, &txn);
            if format == Format::None {
                // The default: the changed paths, then their diff.
                for change in &changes {
                    text.push_str(&format!(
                        "{} {}\n",
                        change_letter(change.kind),
                        shown_path(&lossy(&change.path), change.is_dir())
                    ));
                }
                if !changes.is_empty() {
                    text.push('\n');
                }
                diffs::render(&src, &changes, Format::Patch, &mut text)?;
            } else {
                diffs::render(&src, &changes, format, &mut text)?;
            }
            value["changes"] = changes
                .iter()
                .map(|c| {
                    json!({
                        "path": lossy(&c.path), "change": change_letter(c.kind),
                        "kind": c.entry().map(|e| e.kind.as_str()),
                    })
                })
                .collect();
        }
        Payload::Tree(t) => {
            for entry in &t.entries {
                text.push_str(&format!(
                    "{:06o} {} {}\t{}\n",
                    entry.kind.mode(),
                    entry.kind.as_str(),
                    entry.id,
                    lossy(&entry.name)
                ));
            }
            value["entries"] = t
                .entries
                .iter()
                .map(|e| json!({ "name": lossy(&e.name), "kind": e.kind.as_str(), "id": e.id.to_hex() }))
                .collect();
        }
        Payload::Blob(blob) => {
            let chunks = match blob {
                Blob::Inline(_) => 0,
                Blob::Chunked { chunks, .. } => chunks.len(),
            };
            text.push_str(&format!("size {} bytes, {chunks} chunks\n", blob.size()));
            value["size"] = json!(blob.size());
            value["chunks"] = json!(chunks);
        }
        Payload::Chunk(data) => {
            text.push_str(&format!("size {} bytes\n", data.len()));
            value["size"] = json!(data.len());
        }
        Payload::Rewrite(r) => {
            text.push_str(&format!(
                "kind {}\nfrom {}\nto   {}\n",
                r.kind.as_str(),
                r.from,
                r.to
            ));
            value["kind"] = json!(r.kind.as_str());
            value["from"] = json!(r.from.to_hex());
            value["to"] = json!(r.to.to_hex());
        }
        Payload::Root => text.push_str("the genesis node\n"),
        Payload::Provenance(p) => {
            text.push_str(&format!("agent {}\naction {}\n", p.agent, p.action));
            value["agent"] = json!(p.agent);
            value["action"] = json!(p.action);
        }
        Payload::FederationEdge(e) => {
            text.push_str(&format!("local {}\nremote {}\n", e.local, e.remote));
            value["local"] = json!(e.local.to_hex());
            value["remote"] = json!(e.remote.to_hex());
        }
    }
    if out.json {
        return out.emit(value, String::new);
    }
    let paint = Paint(view.color.enabled());
    let text = match text.split_once('\n') {
        Some((first, rest)) => format!("{}\n{rest}", paint.id(first)),
        None => text,
    };
    crate::pager::show(text.trim_end(), !view.no_pager)?;
    Ok(ExitCode::SUCCESS)
}

/// `jit diff`: between two revisions, from one to the working SWS, or the working SWS's own
/// changes; `paths` limit it.
pub(crate) fn diff(
    out: &Output,
    place: &crate::place::Place,
    revs: &[String],
    paths: &[String],
    asked: crate::args::ChangesArgs,
    view: crate::args::ViewArgs,
) -> Result<ExitCode> {
    let format = Format::from_flags(
        asked.patch,
        asked.stat,
        asked.name_only,
        asked.name_status,
        Format::Patch,
    );
    // The working SWS's own diff, as it always was (it reads through the daemon).
    if revs.is_empty() && paths.is_empty() && format == Format::Patch {
        return crate::work::diff_verb(place, out.json);
    }
    let working = if revs.len() < 2 {
        Some(crate::work::working_status(place)?)
    } else {
        None
    };
    let repo = Repository::discover_for_reading(&place.universe)?;
    let store = repo.store();
    let txn = store.read()?;
    let dag = Dag::new(store, &txn);
    let tree_at = |rev: &str| -> Result<jit_kernel::NodeId> {
        let id = super::universe::resolve_snapshot(&repo, rev)?;
        Ok(tree::tree_of(&dag, &id)?)
    };
    let mut text = String::new();
    let changed = match (revs, &working) {
        ([old, new], _) => {
            let changed = diffs::changes(&dag, &tree_at(old)?, &tree_at(new)?, paths)?;
            diffs::render(&dag, &changed, format, &mut text)?;
            changed
        }
        (_, Some(status)) => {
            let old = match revs.first() {
                Some(rev) => tree_at(rev)?,
                None => tree::tree_of(&dag, &status.base)?,
            };
            let id: jit_kernel::sws::SwsId = status.id.parse()?;
            let src = jit_kernel::sws::SwsSource::new(store, &txn, id);
            let changed = diffs::changes(&src, &old, &status.tree, paths)?;
            diffs::render(&src, &changed, format, &mut text)?;
            changed
        }
        _ => bail!("jit diff takes at most two revisions"),
    };
    if out.json {
        return out.emit(diffs::to_json(&changed), String::new);
    }
    let _ = Paint(view.color.enabled());
    if !text.is_empty() {
        crate::pager::show(text.trim_end(), !view.no_pager)?;
    }
    Ok(ExitCode::SUCCESS)
}
