//! Verbs that read content: `cat` and `ls-tree`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};
use jit_kernel::content;
use jit_kernel::node::EntryKind;
use jit_kernel::source::Dag;
use jit_kernel::tree::{self};
use jit_kernel::Repository;
use serde_json::{json, Value};

use crate::output::{lossy, Output};

pub(crate) fn ls_tree(
    out: &Output,
    repo: &Repository,
    rev: &str,
    path: Option<String>,
    recursive: bool,
) -> Result<ExitCode> {
    let id = repo.resolve(rev)?;
    let store = repo.store();
    let txn = store.read()?;
    let root = tree::tree_of(&Dag::new(store, &txn), &id)?;
    let path = path.unwrap_or_default();
    let start = tree::lookup(&Dag::new(store, &txn), &root, path.as_bytes())?.ok_or_else(|| {
        jit_kernel::Error::PathNotFound {
            path: path.clone(),
            rev: rev.to_owned(),
        }
    })?;
    if start.kind != EntryKind::Directory {
        bail!("{path} in {rev} is not a directory");
    }
    let prefix = path.trim_matches('/').as_bytes().to_vec();
    let mut rows = Vec::new();
    let mut text = String::new();
    tree::walk(
        &Dag::new(store, &txn),
        &start.id,
        &prefix,
        recursive,
        &mut |p, entry| {
            if recursive && entry.kind == EntryKind::Directory {
                return Ok(());
            }
            text.push_str(&format!(
                "{:06o} {} {}\t{}\n",
                entry.kind.mode(),
                entry.kind.as_str(),
                entry.id,
                lossy(p)
            ));
            rows.push(json!({ "path": lossy(p), "kind": entry.kind.as_str(), "mode": format!("{:06o}", entry.kind.mode()), "id": entry.id.to_hex() }));
            Ok(())
        },
    )?;
    out.emit(Value::Array(rows), || text.trim_end().to_owned())
}

pub(crate) fn cat(out: &Output, repo: &Repository, object: &str) -> Result<ExitCode> {
    let store = repo.store();
    let txn = store.read()?;
    let blob =
        match object.split_once(':') {
            Some((rev, path)) => {
                let rev = if rev.is_empty() { "HEAD" } else { rev };
                let root = tree::tree_of(&Dag::new(store, &txn), &repo.resolve(rev)?)?;
                let entry = tree::lookup(&Dag::new(store, &txn), &root, path.as_bytes())?
                    .ok_or_else(|| jit_kernel::Error::PathNotFound {
                        path: path.to_owned(),
                        rev: rev.to_owned(),
                    })?;
                if entry.kind == EntryKind::Directory {
                    bail!("{path} in {rev} is a directory (use jit ls-tree)");
                }
                entry.id
            }
            None => repo.resolve(object)?,
        };
    if !out.json {
        // Streamed: a large file is never held whole in memory.
        let mut stdout = std::io::stdout().lock();
        let streamed =
            content::write_blob(&Dag::new(store, &txn), &blob, &mut stdout).and_then(|_| {
                stdout
                    .flush()
                    .map_err(|e| jit_kernel::Error::io("<output>", e))
            });
        if let Err(error) = streamed {
            crate::output::end_if_reader_left(&error);
            return Err(error.into());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let data = content::read_blob(&Dag::new(store, &txn), &blob)?;
    let text = std::str::from_utf8(&data).ok();
    out.emit(
        json!({ "id": blob.to_hex(), "size": data.len(), "text": text,
                "hex": if text.is_none() { Some(hex_string(&data)) } else { None } }),
        String::new,
    )
}

pub(crate) fn hex_string(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
