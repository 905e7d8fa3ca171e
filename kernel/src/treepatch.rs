//! The patch that turns one tree into another. A writer that keeps its own tree (the mount's
//! write-back) hands the kernel ordinary patch operations — puts, deletes, mkdir, rmdir,
//! symlinks, chmods — so its edits read in the micro-history like anyone else's, and empty
//! directories and type changes survive (a file-level diff would lose both).

use crate::content::read_blob;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{EntryKind, TreeEntry};
use crate::patch::PatchOp;
use crate::source::Source;
use crate::tree::{entries_of, pair_entries};

/// Operations that, applied in order to `old`, give exactly `new`. Blobs they name must be
/// readable from `src` (and staged or in the DAG when the patch is applied).
pub fn between(src: &dyn Source, old: &NodeId, new: &NodeId) -> Result<Vec<PatchOp>> {
    let mut ops = Vec::new();
    dir(src, Some(old), Some(new), "", &mut ops)?;
    Ok(ops)
}

fn dir(
    src: &dyn Source,
    old: Option<&NodeId>,
    new: Option<&NodeId>,
    prefix: &str,
    ops: &mut Vec<PatchOp>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let (old_entries, new_entries) = (entries_of(src, old)?, entries_of(src, new)?);
    for (a, b) in pair_entries(&old_entries, &new_entries) {
        let name = a.or(b).map(|e| e.name.as_slice()).unwrap_or_default();
        let path = join(prefix, name)?;
        entry(src, a, b, &path, ops)?;
    }
    Ok(())
}

fn entry(
    src: &dyn Source,
    old: Option<&TreeEntry>,
    new: Option<&TreeEntry>,
    path: &str,
    ops: &mut Vec<PatchOp>,
) -> Result<()> {
    match (old, new) {
        (Some(a), Some(b)) if a.kind == b.kind && a.id == b.id => Ok(()),
        (Some(a), Some(b)) if a.kind == EntryKind::Directory && b.kind == EntryKind::Directory => {
            dir(src, Some(&a.id), Some(&b.id), path, ops)
        }
        (Some(a), Some(b)) if is_file(a) && is_file(b) && a.id == b.id => {
            ops.push(PatchOp::Chmod {
                path: path.to_owned(),
                executable: b.kind == EntryKind::Executable,
            });
            Ok(())
        }
        (Some(a), Some(b)) if is_file(a) && is_file(b) => add(src, b, path, ops),
        (old, new) => {
            if let Some(a) = old {
                remove(src, a, path, ops)?;
            }
            match new {
                Some(b) => add(src, b, path, ops),
                None => Ok(()),
            }
        }
    }
}

fn is_file(e: &TreeEntry) -> bool {
    matches!(e.kind, EntryKind::File | EntryKind::Executable)
}

fn add(src: &dyn Source, e: &TreeEntry, path: &str, ops: &mut Vec<PatchOp>) -> Result<()> {
    match e.kind {
        EntryKind::File | EntryKind::Executable => ops.push(PatchOp::PutBlob {
            path: path.to_owned(),
            blob: e.id,
            executable: e.kind == EntryKind::Executable,
        }),
        EntryKind::Symlink => {
            let target = String::from_utf8(read_blob(src, &e.id)?).map_err(|_| {
                Error::InvalidInput(format!("symlink {path:?} has a target that is not UTF-8"))
            })?;
            ops.push(PatchOp::Symlink {
                path: path.to_owned(),
                target,
            });
        }
        EntryKind::Directory => {
            ops.push(PatchOp::Mkdir {
                path: path.to_owned(),
            });
            dir(src, None, Some(&e.id), path, ops)?;
        }
    }
    Ok(())
}

fn remove(src: &dyn Source, e: &TreeEntry, path: &str, ops: &mut Vec<PatchOp>) -> Result<()> {
    if e.kind == EntryKind::Directory {
        dir(src, Some(&e.id), None, path, ops)?;
        ops.push(PatchOp::Rmdir {
            path: path.to_owned(),
        });
    } else {
        ops.push(PatchOp::Delete {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn join(prefix: &str, name: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(name).map_err(|_| {
        Error::InvalidInput(format!(
            "name {:?} under {prefix:?} is not UTF-8; patches carry UTF-8 paths",
            String::from_utf8_lossy(name)
        ))
    })?;
    Ok(if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    })
}
