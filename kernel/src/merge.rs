//! The deterministic three-way merge behind collapse (RFC-0005): `base` is the snapshot an SWS
//! started from, `ours` the branch tip that landed meanwhile, `theirs` the SWS's tree.
//!
//! Per path: a side that did not change yields to the side that did; equal changes agree. When
//! both changed a path differently: directories merge recursively, text files merge per line
//! (`diffy`, git's "merge" conflict style), and everything else is a structural conflict
//! (add/add, modify/delete, file vs directory, symlink, binary). Before merging, exact renames on
//! one side (a path deleted and the same content added elsewhere) are carried over to the other
//! side, so a rename on one side and an edit on the other merge cleanly.
//!
//! The result depends only on the three trees, so every machine computes the same ids.

use std::collections::BTreeMap;

use diffy::{ConflictStyle, MergeOptions};

use crate::content;
use crate::error::Result;
use crate::id::NodeId;
use crate::node::{EntryKind, Tree, TreeEntry};
use crate::path::RepoPath;
use crate::tree::{self, ChangeKind};
use crate::treeedit::TreeEditor;

/// The kinds of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Both sides changed the same lines of a text file.
    Text,
    /// Both sides changed a binary file.
    Binary,
    /// Both sides added different content at the same path.
    AddAdd,
    /// One side modified what the other deleted.
    ModifyDelete,
    /// A file on one side, a directory (or symlink) on the other.
    TypeChange,
}

/// One conflicted path with the three versions (entry ids; `None` where absent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conflict {
    /// The path.
    pub path: String,
    /// What kind of conflict.
    pub kind: ConflictKind,
    /// The merge base's version.
    pub base: Option<NodeId>,
    /// The branch tip's version.
    pub ours: Option<NodeId>,
    /// The SWS's version.
    pub theirs: Option<NodeId>,
}

/// The outcome of a merge: the merged tree (with conflict markers written into conflicted text
/// files) and the conflicts, if any.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merged root tree.
    pub tree: NodeId,
    /// Conflicts; empty when the merge is clean.
    pub conflicts: Vec<Conflict>,
}

/// Suffix given to the SWS's version of a path that became a directory on the branch.
pub const THEIRS_SUFFIX: &str = "~sws";

/// Merges `theirs` into `ours` relative to `base`. New nodes are left in `editor`.
pub fn merge(
    editor: &mut TreeEditor<'_>,
    base: NodeId,
    ours: NodeId,
    theirs: NodeId,
) -> Result<Merged> {
    if base == ours || ours == theirs {
        return Ok(Merged {
            tree: theirs,
            conflicts: Vec::new(),
        });
    }
    if base == theirs {
        return Ok(Merged {
            tree: ours,
            conflicts: Vec::new(),
        });
    }
    let (base, ours, theirs) = carry_renames(editor, base, ours, theirs)?;
    let mut conflicts = Vec::new();
    let tree = merge_dirs(
        editor,
        Some(base),
        Some(ours),
        Some(theirs),
        b"",
        &mut conflicts,
    )?
    .unwrap_or(base);
    Ok(Merged { tree, conflicts })
}

/// Exact renames: a path deleted on one side whose base content reappears, unchanged, at a path
/// the other side never had. If the other side modified the old path, apply the rename to base
/// and that side too, so the edit lands at the new path.
fn carry_renames(
    editor: &mut TreeEditor<'_>,
    base: NodeId,
    ours: NodeId,
    theirs: NodeId,
) -> Result<(NodeId, NodeId, NodeId)> {
    let (mut base, mut ours, mut theirs) = (base, ours, theirs);
    for renaming_is_theirs in [true, false] {
        let (renamer, other) = if renaming_is_theirs {
            (theirs, ours)
        } else {
            (ours, theirs)
        };
        let renames = exact_renames(editor, base, renamer)?;
        let other_changes: BTreeMap<Vec<u8>, ChangeKind> = tree::diff(editor, &base, &other)?
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        for (from, to) in renames {
            let from_bytes = from.to_bytes();
            if other_changes.get(&from_bytes) != Some(&ChangeKind::Modified)
                || other_changes.contains_key(&to.to_bytes())
            {
                continue;
            }
            let Some(entry) = editor.get(&other, &from)? else {
                continue;
            };
            let Some(base_entry) = editor.get(&base, &from)? else {
                continue;
            };
            let moved_other = editor.set(&other, &from, None)?;
            let moved_other = match editor.set(&moved_other, &to, Some((entry.kind, entry.id))) {
                Ok(id) => id,
                Err(_) => continue, // the new path's directory does not exist on that side
            };
            let moved_base = editor.set(&base, &from, None)?;
            let Ok(moved_base) =
                editor.set(&moved_base, &to, Some((base_entry.kind, base_entry.id)))
            else {
                continue;
            };
            base = moved_base;
            if renaming_is_theirs {
                ours = moved_other;
            } else {
                theirs = moved_other;
            }
        }
    }
    Ok((base, ours, theirs))
}

/// Renames from `base` to `side` where the content is byte-identical and the match unique.
fn exact_renames(
    editor: &TreeEditor<'_>,
    base: NodeId,
    side: NodeId,
) -> Result<Vec<(RepoPath, RepoPath)>> {
    // Files only: an empty directory that moved is no content to carry edits along.
    let changes = tree::diff(editor, &base, &side)?
        .into_iter()
        .filter(|change| !change.is_dir());
    let mut deleted: BTreeMap<(NodeId, u32), Vec<Vec<u8>>> = BTreeMap::new();
    let mut added: BTreeMap<(NodeId, u32), Vec<Vec<u8>>> = BTreeMap::new();
    for change in changes {
        match change.kind {
            ChangeKind::Deleted => {
                if let Some(old) = change.old {
                    deleted
                        .entry((old.id, old.kind.mode()))
                        .or_default()
                        .push(change.path);
                }
            }
            ChangeKind::Added => {
                if let Some(new) = change.new {
                    added
                        .entry((new.id, new.kind.mode()))
                        .or_default()
                        .push(change.path);
                }
            }
            ChangeKind::Modified => {}
        }
    }
    let mut out = Vec::new();
    for (key, from) in deleted {
        if let (Some(to), [from]) = (added.get(&key), from.as_slice()) {
            if let [to] = to.as_slice() {
                out.push((RepoPath::from_bytes(from)?, RepoPath::from_bytes(to)?));
            }
        }
    }
    Ok(out)
}

fn load(editor: &TreeEditor<'_>, id: Option<NodeId>) -> Result<Vec<TreeEntry>> {
    Ok(match id {
        Some(id) => editor.tree(&id)?.entries.clone(),
        None => Vec::new(),
    })
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

fn merge_dirs(
    editor: &mut TreeEditor<'_>,
    base: Option<NodeId>,
    ours: Option<NodeId>,
    theirs: Option<NodeId>,
    prefix: &[u8],
    conflicts: &mut Vec<Conflict>,
) -> Result<Option<NodeId>> {
    if ours == theirs || base == theirs {
        return Ok(ours);
    }
    if base == ours {
        return Ok(theirs);
    }
    let mut names: BTreeMap<Vec<u8>, [Option<TreeEntry>; 3]> = BTreeMap::new();
    for (slot, id) in [base, ours, theirs].into_iter().enumerate() {
        for entry in load(editor, id)? {
            let name = entry.name.clone();
            names.entry(name).or_default()[slot] = Some(entry);
        }
    }
    let mut merged = Tree::default();
    for (name, [b, o, t]) in names {
        let path = join(prefix, &name);
        for (entry_name, kind, id) in merge_entry(editor, &path, b, o, t, conflicts)? {
            merged.entries.push(TreeEntry {
                name: if entry_name.is_empty() {
                    name.clone()
                } else {
                    entry_name
                },
                kind,
                id,
            });
        }
    }
    merged.entries.sort_by(|a, b| a.name.cmp(&b.name));
    merged.entries.dedup_by(|a, b| a.name == b.name);
    Ok(Some(editor.put_tree(merged)?))
}

type Out = Vec<(Vec<u8>, EntryKind, NodeId)>;

fn keep(entry: Option<TreeEntry>) -> Out {
    entry
        .map(|e| vec![(Vec::new(), e.kind, e.id)])
        .unwrap_or_default()
}

fn same(a: &Option<TreeEntry>, b: &Option<TreeEntry>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.kind == b.kind && a.id == b.id,
        (None, None) => true,
        _ => false,
    }
}

fn is_file(e: &Option<TreeEntry>) -> bool {
    matches!(e, Some(e) if matches!(e.kind, EntryKind::File | EntryKind::Executable))
}

fn is_dir(e: &Option<TreeEntry>) -> bool {
    matches!(e, Some(e) if e.kind == EntryKind::Directory)
}

fn merge_entry(
    editor: &mut TreeEditor<'_>,
    path: &[u8],
    b: Option<TreeEntry>,
    o: Option<TreeEntry>,
    t: Option<TreeEntry>,
    conflicts: &mut Vec<Conflict>,
) -> Result<Out> {
    if same(&o, &t) || same(&b, &t) {
        return Ok(keep(o));
    }
    if same(&b, &o) {
        return Ok(keep(t));
    }
    let record = |conflicts: &mut Vec<Conflict>, kind| {
        conflicts.push(Conflict {
            path: String::from_utf8_lossy(path).into_owned(),
            kind,
            base: b.as_ref().map(|e| e.id),
            ours: o.as_ref().map(|e| e.id),
            theirs: t.as_ref().map(|e| e.id),
        })
    };
    // Both changed, differently.
    if is_dir(&o) && is_dir(&t) {
        let base_dir = b
            .as_ref()
            .filter(|e| e.kind == EntryKind::Directory)
            .map(|e| e.id);
        let merged = merge_dirs(
            editor,
            base_dir,
            o.as_ref().map(|e| e.id),
            t.as_ref().map(|e| e.id),
            path,
            conflicts,
        )?;
        return Ok(merged
            .map(|id| vec![(Vec::new(), EntryKind::Directory, id)])
            .unwrap_or_default());
    }
    if is_file(&o) && is_file(&t) {
        let (Some(oe), Some(te)) = (&o, &t) else {
            return Ok(keep(o));
        };
        let base_file = b
            .as_ref()
            .filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Executable));
        let kind = match base_file {
            Some(be) if be.kind == oe.kind => te.kind,
            _ => oe.kind,
        };
        if oe.id == te.id {
            return Ok(vec![(Vec::new(), kind, oe.id)]);
        }
        let base_bytes = match base_file {
            Some(be) => read(editor, &be.id)?,
            None => Vec::new(),
        };
        let ours_bytes = read(editor, &oe.id)?;
        let theirs_bytes = read(editor, &te.id)?;
        if is_binary(&base_bytes) || is_binary(&ours_bytes) || is_binary(&theirs_bytes) {
            record(conflicts, unless_added(&b, ConflictKind::Binary));
            return Ok(keep(o));
        }
        let mut options = MergeOptions::new();
        options.set_conflict_style(ConflictStyle::Merge);
        return match options.merge_bytes(&base_bytes, &ours_bytes, &theirs_bytes) {
            Ok(clean) => Ok(vec![(Vec::new(), kind, editor.add_content(&clean)?)]),
            Err(marked) => {
                record(conflicts, unless_added(&b, ConflictKind::Text));
                Ok(vec![(Vec::new(), kind, editor.add_content(&marked)?)])
            }
        };
    }
    match (&o, &t) {
        // One side deleted what the other changed: keep the changed version.
        (None, Some(_)) | (Some(_), None) => {
            record(conflicts, ConflictKind::ModifyDelete);
            Ok(keep(o.or(t)))
        }
        (Some(oe), Some(te)) => {
            let both_links = oe.kind == EntryKind::Symlink && te.kind == EntryKind::Symlink;
            if both_links {
                record(conflicts, unless_added(&b, ConflictKind::Text));
                return Ok(keep(o));
            }
            // A file against a directory (or symlink): keep the branch's, and the SWS's version
            // beside it under a suffixed name.
            record(conflicts, ConflictKind::TypeChange);
            let mut name = path.rsplit(|&c| c == b'/').next().unwrap_or(path).to_vec();
            name.extend_from_slice(THEIRS_SUFFIX.as_bytes());
            Ok(vec![(Vec::new(), oe.kind, oe.id), (name, te.kind, te.id)])
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// Both sides adding the same path is add/add, whatever else the conflict is.
fn unless_added(base: &Option<TreeEntry>, kind: ConflictKind) -> ConflictKind {
    if base.is_none() {
        ConflictKind::AddAdd
    } else {
        kind
    }
}

/// Git's heuristic: a NUL byte in the first 8000 bytes means binary.
fn is_binary(data: &[u8]) -> bool {
    data.iter().take(8000).any(|&b| b == 0)
}

fn read(editor: &TreeEditor<'_>, blob: &NodeId) -> Result<Vec<u8>> {
    content::read_blob(editor, blob)
}
