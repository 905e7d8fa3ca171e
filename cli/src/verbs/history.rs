//! Verbs that read history: `log` and `show`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use jit_kernel::dag;
use jit_kernel::node::{Blob, Payload};
use jit_kernel::source::Dag;
use jit_kernel::tree::{self, ChangeKind};
use jit_kernel::{NodeId, Repository};
use serde_json::{json, Value};

use crate::declared;
use crate::output::{lossy, shown_path, Output};

pub(crate) fn snapshot_json(id: &NodeId, s: &jit_kernel::node::Snapshot) -> Value {
    json!({
        "id": id.to_hex(), "tree": s.tree.to_hex(), "author": s.author, "message": s.message,
        "time": s.time.seconds, "tz_minutes": s.time.tz_minutes,
        "date": declared::format_date(s.time),
    })
}

pub(crate) fn log(
    out: &Output,
    repo: &Repository,
    rev: Option<String>,
    max_count: Option<usize>,
) -> Result<ExitCode> {
    let start = repo.resolve(rev.as_deref().unwrap_or("HEAD"))?;
    let store = repo.store();
    let txn = store.read()?;
    let mut entries = Vec::new();
    let mut text = String::new();
    let mut current = match store.view(&txn, &start)?.node_type {
        jit_kernel::NodeType::Root => None,
        jit_kernel::NodeType::Snapshot => Some(start),
        other => bail!("{start} is a {}, not a snapshot", other.as_str()),
    };
    while let Some(id) = current {
        if max_count.is_some_and(|max| entries.len() >= max) {
            break;
        }
        let node = store.node(&txn, &id)?;
        let Payload::Snapshot(snapshot) = &node.payload else {
            break;
        };
        let mut entry = snapshot_json(&id, snapshot);
        text.push_str(&format!(
            "snapshot {id}\nAuthor: {}\nDate:   {}\n",
            snapshot.author,
            declared::format_date(snapshot.time)
        ));
        if let Some(rewrite) = rewrite_of(repo, &txn, &node)? {
            text.push_str(&format!(
                "Rewrite: {} from {} to {}\n",
                rewrite.kind.as_str(),
                rewrite.from.short(),
                rewrite.to.short()
            ));
            entry["rewrite"] = json!({
                "kind": rewrite.kind.as_str(), "from": rewrite.from.to_hex(), "to": rewrite.to.to_hex(),
            });
        }
        text.push('\n');
        for line in snapshot.message.lines() {
            text.push_str(&format!("    {line}\n"));
        }
        text.push('\n');
        entries.push(entry);
        current = dag::mainline_parent(store, &txn, &id)?;
    }
    out.emit(Value::Array(entries), || text.trim_end().to_owned())
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

pub(crate) fn change_letter(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "A",
        ChangeKind::Deleted => "D",
        ChangeKind::Modified => "M",
    }
}

pub(crate) fn show(out: &Output, repo: &Repository, rev: &str) -> Result<ExitCode> {
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
            for change in &changes {
                text.push_str(&format!(
                    "{} {}\n",
                    change_letter(change.kind),
                    shown_path(&lossy(&change.path), change.is_dir())
                ));
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
    out.emit(value, || text.trim_end().to_owned())
}
