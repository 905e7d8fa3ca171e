//! `jit restore PATH…`: put paths of the working set back as a revision has them — by default
//! the working set's base, which drops its changes to those paths (git's `restore`, jj's
//! `restore`); `--source REV` takes them from any revision. Directories are restored whole:
//! what the revision has is put back, what it lacks is removed.
//!
//! The result is one patch on the working set (so the mount and `jit status` show it at once,
//! and it is in the micro-history like any edit), built from the revision's blob ids with
//! `put-blob` — no content is copied.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use jit_kernel::node::EntryKind;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::source::{Dag, Source};
use jit_kernel::sws::{SwsId, SwsSource};
use jit_kernel::{content, tree, NodeId, Repository};
use serde_json::json;

use crate::output::{count, Output};
use crate::place::Place;

/// Every entry at and under `path` in the tree `root`: path → (kind, id).
fn entries_under(
    src: &dyn Source,
    root: &NodeId,
    path: &str,
) -> Result<BTreeMap<String, (EntryKind, NodeId)>> {
    let mut out = BTreeMap::new();
    let Some(entry) = tree::lookup(src, root, path.as_bytes())? else {
        return Ok(out);
    };
    out.insert(path.to_owned(), (entry.kind, entry.id));
    if entry.kind == EntryKind::Directory {
        tree::walk(src, &entry.id, path.as_bytes(), true, &mut |p, e| {
            out.insert(String::from_utf8_lossy(p).into_owned(), (e.kind, e.id));
            Ok(())
        })?;
    }
    Ok(out)
}

/// Whether an entry of kind `a` can be replaced in place by one of kind `b` (a file by a file,
/// executable or not); otherwise the old one is removed first.
fn same_shape(a: EntryKind, b: EntryKind) -> bool {
    let file = |k| matches!(k, EntryKind::File | EntryKind::Executable);
    a == b || (file(a) && file(b))
}

/// The operations that make `paths` of the working set's tree `now` (read through `current`)
/// what they are in tree `wanted` (read through `source`).
fn operations(
    source: &dyn Source,
    wanted: &NodeId,
    current: &dyn Source,
    now: &NodeId,
    paths: &[String],
) -> Result<Vec<PatchOp>> {
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for path in paths {
        let path = path.trim_end_matches('/');
        let want = entries_under(source, wanted, path)?;
        let have = entries_under(current, now, path)?;
        if want.is_empty() && have.is_empty() {
            return Err(jit_kernel::Error::PathNotFound {
                path: path.to_owned(),
                rev: "the working set or the revision".into(),
            }
            .into());
        }
        // Removals, deepest first: what the revision lacks, or has in another shape.
        for (p, (kind, _)) in have.iter().rev() {
            let keep = want.get(p).is_some_and(|(k, _)| same_shape(*k, *kind));
            if !keep {
                removals.push(match kind {
                    EntryKind::Directory => PatchOp::Rmdir { path: p.clone() },
                    _ => PatchOp::Delete { path: p.clone() },
                });
            }
        }
        // Additions, shallowest first: what differs from the revision.
        for (p, (kind, id)) in &want {
            if have.get(p) == Some(&(*kind, *id)) {
                continue;
            }
            match kind {
                EntryKind::Directory => {
                    if !have.get(p).is_some_and(|(k, _)| *k == EntryKind::Directory) {
                        additions.push(PatchOp::Mkdir { path: p.clone() });
                    }
                }
                EntryKind::File | EntryKind::Executable => additions.push(PatchOp::PutBlob {
                    path: p.clone(),
                    blob: *id,
                    executable: *kind == EntryKind::Executable,
                }),
                EntryKind::Symlink => additions.push(PatchOp::Symlink {
                    path: p.clone(),
                    target: String::from_utf8_lossy(&content::read_blob(source, id)?).into_owned(),
                }),
            }
        }
    }
    removals.extend(additions);
    Ok(removals)
}

/// Runs `jit restore`.
pub(crate) fn restore(
    out: &Output,
    place: &Place,
    paths: &[String],
    source_rev: Option<&str>,
) -> Result<ExitCode> {
    if crate::ondisk::here(place)?.is_some() {
        return Err(jit_kernel::Error::InvalidInput(
            "jit restore works on the mount and the universe's working sets; in an on-disk checkout, write the files back (jit cat REV:PATH > PATH)".into(),
        )
        .into());
    }
    let status = crate::work::working_status(place)?;
    let ops = {
        let repo = Repository::discover_for_reading(&place.universe)?;
        let store = repo.store();
        let txn = store.read()?;
        let dag = Dag::new(store, &txn);
        let snapshot = match source_rev {
            Some(rev) => super::universe::resolve_snapshot(&repo, rev)?,
            None => status.base,
        };
        let wanted = tree::tree_of(&dag, &snapshot)?;
        let id: SwsId = status.id.parse()?;
        let current = SwsSource::new(store, &txn, id);
        operations(&dag, &wanted, &current, &status.tree, paths)?
    };
    let changed = ops.len();
    if changed > 0 {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let patch = Patch {
            id: format!("restore-{stamp}"),
            author: "jit restore".into(),
            ts: 0,
            ops,
        };
        crate::work::apply_patch(place, &status.id, &patch)?;
    }
    let from = source_rev.unwrap_or("the working set's base");
    out.emit(
        json!({ "sws": status.id, "paths": paths, "operations": changed, "source": source_rev }),
        || {
            if changed == 0 {
                format!("nothing to restore: {} as in {from}", paths.join(", "))
            } else {
                format!(
                    "restored {} from {from} ({})",
                    paths.join(", "),
                    count(changed as u64, "operation")
                )
            }
        },
    )
}
