//! `jit restore PATH…`: put paths of the working set back as a revision has them — by default
//! the working set's base, which drops its changes to those paths (git's `restore`, jj's
//! `restore`); `--source REV` takes them from any revision. Directories are restored whole:
//! what the revision has is put back, what it lacks is removed.
//!
//! The result is one patch on the working set (so the mount and `jit status` show it at once,
//! and it is in the micro-history like any edit), built from the revision's blob ids with
//! `put-blob` — no content is copied. In an on-disk checkout the files are the truth, so there
//! the paths are written back on disk (relative to the current directory, as git takes them)
//! and the checkout is synchronized, which records them in its working set.

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
    if let Some(located) = crate::ondisk::here(place)? {
        return restore_on_disk(out, place, located, paths, source_rev);
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

/// `jit restore` in an on-disk checkout: writes the paths as the revision has them and removes
/// what it lacks under them, then synchronizes the checkout so its working set records that.
fn restore_on_disk(
    out: &Output,
    place: &Place,
    located: jit_watcher::marker::Located,
    paths: &[String],
    source_rev: Option<&str>,
) -> Result<ExitCode> {
    let top = located.dir.clone();
    let below = place
        .cwd
        .canonicalize()
        .ok()
        .and_then(|cwd| cwd.strip_prefix(&top).ok().map(|p| p.to_path_buf()))
        .unwrap_or_default();
    let paths: Vec<String> = paths
        .iter()
        .map(|p| {
            below
                .join(p.trim_end_matches('/'))
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned()
        })
        .collect();
    let repo_dir = located.marker.repo.clone();
    let base = {
        let (mut session, id, _) = crate::ondisk::synchronized(located.clone())?;
        let status: jit_kernel::command::reply::StatusInfo = session.kernel().invoke(
            jit_kernel::command::Operation::SwsStatus,
            &jit_kernel::command::args::SwsArgs { sws: id },
        )?;
        status.base
    };
    let mut written = 0usize;
    {
        let repo = Repository::discover_for_reading(&repo_dir)?;
        let store = repo.store();
        let txn = store.read()?;
        let dag = Dag::new(store, &txn);
        let snapshot = match source_rev {
            Some(rev) => super::universe::resolve_snapshot(&repo, rev)?,
            None => base,
        };
        let wanted = tree::tree_of(&dag, &snapshot)?;
        for path in &paths {
            let want = entries_under(&dag, &wanted, path)?;
            let on_disk = top.join(path);
            let present = std::fs::symlink_metadata(&on_disk).is_ok();
            if want.is_empty() && !present {
                return Err(jit_kernel::Error::PathNotFound {
                    path: path.clone(),
                    rev: "the checkout or the revision".into(),
                }
                .into());
            }
            // What is there now goes (the revision's version is written fresh), then the
            // revision's entries, shallowest first.
            if present {
                let meta = std::fs::symlink_metadata(&on_disk)?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(&on_disk)?;
                } else {
                    std::fs::remove_file(&on_disk)?;
                }
                written += 1;
            }
            for (p, (kind, id)) in &want {
                let target = top.join(p);
                match kind {
                    EntryKind::Directory => std::fs::create_dir_all(&target)?,
                    EntryKind::Symlink => {
                        let link = content::read_blob(&dag, id)?;
                        std::os::unix::fs::symlink(
                            String::from_utf8_lossy(&link).as_ref(),
                            &target,
                        )?;
                    }
                    EntryKind::File | EntryKind::Executable => {
                        use std::os::unix::fs::PermissionsExt;
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&target, content::read_blob(&dag, id)?)?;
                        let mode = if *kind == EntryKind::Executable {
                            0o755
                        } else {
                            0o644
                        };
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
                    }
                }
                written += 1;
            }
        }
    }
    // Record what was written in the checkout's working set.
    let (_, id, _) = crate::ondisk::synchronized(located)?;
    let from = source_rev.unwrap_or("the working set's base");
    out.emit(
        json!({ "sws": id, "paths": paths, "operations": written, "source": source_rev, "checkout": top.display().to_string() }),
        || format!("restored {} from {from} in {}", paths.join(", "), top.display()),
    )
}
