//! The one patch format (SPEC §1.6) used by FUSE writes, the watcher, the RPC and the message
//! plane: an ordered list of operations on paths, with a patch id, an author and a logical
//! timestamp. A patch applies whole or not at all; applying the same patch id twice to one SWS
//! has the effect of applying it once (see [`crate::sws`]).
//!
//! The same serde schema serves CBOR (the RPC) and JSON (`jit sws apply`): in JSON, `content` is
//! a text string and node ids are 64 hex characters.

use serde::{Deserialize, Serialize};

use crate::content;
use crate::draft::{Draft, Found};
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::EntryKind;
use crate::path::RepoPath;
use crate::treeedit::TreeEditor;

/// A patch: ordered operations plus who and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Unique per SWS; a repeated id is applied once.
    pub id: String,
    /// Who wrote it.
    pub author: String,
    /// The author's logical timestamp.
    #[serde(default)]
    pub ts: u64,
    /// The operations, applied in order (at most [`MAX_OPS`]; decoding stops past that).
    #[serde(deserialize_with = "bounded_ops")]
    pub ops: Vec<PatchOp>,
}

/// Decodes a patch's operations, refusing more than [`MAX_OPS`] before allocating for them.
fn bounded_ops<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<PatchOp>, D::Error> {
    struct Ops;
    impl<'de> serde::de::Visitor<'de> for Ops {
        type Value = Vec<PatchOp>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_OPS} patch operations")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            use serde::de::Error as _;
            let too_many =
                || A::Error::custom(format!("a patch holds at most {MAX_OPS} operations"));
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_OPS {
                return Err(too_many());
            }
            let mut ops = Vec::with_capacity(hint.min(1024));
            while let Some(op) = seq.next_element()? {
                if ops.len() == MAX_OPS {
                    return Err(too_many());
                }
                ops.push(op);
            }
            Ok(ops)
        }
    }
    deserializer.deserialize_seq(Ops)
}

/// One operation on a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PatchOp {
    /// Create or replace a file with this content (missing parent directories are created).
    Put {
        /// Target path.
        path: String,
        /// New content.
        #[serde(with = "serde_bytes")]
        content: Vec<u8>,
        /// Executable bit.
        #[serde(default)]
        executable: bool,
    },
    /// Create or replace a file with an existing blob.
    PutBlob {
        /// Target path.
        path: String,
        /// The blob (must already be in the DAG or this SWS).
        blob: NodeId,
        /// Executable bit.
        #[serde(default)]
        executable: bool,
    },
    /// Remove a file or symlink.
    Delete {
        /// The path.
        path: String,
    },
    /// Move a file, symlink or directory; the target must not exist.
    Rename {
        /// Source path.
        from: String,
        /// Destination path.
        to: String,
    },
    /// Create an empty directory.
    Mkdir {
        /// The path.
        path: String,
    },
    /// Remove an empty directory.
    Rmdir {
        /// The path.
        path: String,
    },
    /// Create a symbolic link.
    Symlink {
        /// The link's path.
        path: String,
        /// What it points to.
        target: String,
    },
    /// Set or clear the executable bit of a file.
    Chmod {
        /// The path.
        path: String,
        /// Executable or not.
        executable: bool,
    },
    /// Replace line ranges of a text file, checked against the blob the author edited.
    Edit {
        /// The file.
        path: String,
        /// The blob the hunks were computed against; must be the file's current content.
        base: NodeId,
        /// Non-overlapping hunks in ascending order.
        hunks: Vec<Hunk>,
    },
}

/// One line-range replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hunk {
    /// First line replaced (0-based).
    pub start: u64,
    /// How many lines are removed.
    pub remove: u64,
    /// Lines inserted in their place (each with its own line ending).
    pub insert: Vec<String>,
}

/// Why a patch was refused. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// The path exists already.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// A file operation met a directory.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A directory operation met something else.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// `rmdir` of a non-empty directory.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// An edit against content that is no longer there.
    #[error("{path}: edit is against {expected}, but the file is {found}")]
    BaseMismatch {
        /// The file.
        path: String,
        /// The base the patch names.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// Hunks out of order, overlapping, or past the end of the file.
    #[error("{path}: bad hunk: {reason}")]
    BadHunk {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A rename of a directory into itself.
    #[error("cannot move {0} into itself")]
    IntoItself(String),
    /// The patch has no operations or no id.
    #[error("patch {0}")]
    Empty(&'static str),
    /// More operations than one patch may hold ([`MAX_OPS`]).
    #[error("patch has {ops} operations; at most {MAX_OPS} are accepted in one patch")]
    TooLarge {
        /// How many it has.
        ops: usize,
    },
}

fn path(p: &str) -> Result<RepoPath> {
    Ok(RepoPath::parse(p)?)
}

/// A path something is removed from: reserved names are accepted, so an entry that entered a
/// tree before such names were refused can still be taken out.
fn removal_path(p: &str) -> Result<RepoPath> {
    Ok(RepoPath::parse_to_remove(p)?)
}

fn reject(e: PatchError) -> Error {
    Error::Patch(e)
}

/// Most operations one patch may hold. Applying costs time and memory linear in the patch, so
/// this bounds the work one request can ask for; larger changes go in several patches.
pub const MAX_OPS: usize = 1 << 20;

/// Applies `patch` to the tree `root`, returning the new root. New nodes are left in `editor`.
/// Each directory the patch touches is edited once (see [`crate::draft`]): O(N) for N
/// operations, however many land in one directory.
pub fn apply(editor: &mut TreeEditor<'_>, root: NodeId, patch: &Patch) -> Result<NodeId> {
    if patch.id.is_empty() {
        return Err(reject(PatchError::Empty("has no id")));
    }
    if patch.ops.is_empty() {
        return Err(reject(PatchError::Empty("has no operations")));
    }
    if patch.ops.len() > MAX_OPS {
        return Err(reject(PatchError::TooLarge {
            ops: patch.ops.len(),
        }));
    }
    let mut draft = Draft::new(editor, root)?;
    for op in &patch.ops {
        apply_op(editor, &mut draft, op)?;
    }
    draft.finish(editor)
}

fn file_kind(executable: bool) -> EntryKind {
    if executable {
        EntryKind::Executable
    } else {
        EntryKind::File
    }
}

fn apply_op(editor: &mut TreeEditor<'_>, draft: &mut Draft, op: &PatchOp) -> Result<()> {
    match op {
        PatchOp::Put {
            path: p,
            content,
            executable,
        } => {
            let target = path(p)?;
            refuse_directory(editor, draft, &target)?;
            let blob = editor.add_content(content)?;
            draft.set(editor, &target, file_kind(*executable), blob, true)
        }
        PatchOp::PutBlob {
            path: p,
            blob,
            executable,
        } => {
            let target = path(p)?;
            refuse_directory(editor, draft, &target)?;
            match crate::source::Source::node(editor, blob) {
                Ok(node) if node.node_type() == crate::NodeType::Blob => {}
                Ok(node) => {
                    return Err(Error::NotA {
                        id: *blob,
                        found: node.node_type().as_str(),
                        expected: "blob",
                    })
                }
                Err(e) => return Err(e),
            }
            draft.set(editor, &target, file_kind(*executable), *blob, true)
        }
        PatchOp::Delete { path: p } => {
            let target = removal_path(p)?;
            match draft.get(editor, &target)? {
                None => Err(reject(PatchError::NotFound(target.to_string()))),
                Some(e) if e.kind == EntryKind::Directory => {
                    Err(reject(PatchError::IsADirectory(target.to_string())))
                }
                Some(_) => draft.take(editor, &target).map(drop),
            }
        }
        PatchOp::Rename { from, to } => {
            let (from, to) = (removal_path(from)?, path(to)?);
            if draft.get(editor, &from)?.is_none() {
                return Err(reject(PatchError::NotFound(from.to_string())));
            }
            if from == to {
                return Ok(());
            }
            if to.starts_with(&from) {
                return Err(reject(PatchError::IntoItself(from.to_string())));
            }
            if draft.get(editor, &to)?.is_some() {
                return Err(reject(PatchError::AlreadyExists(to.to_string())));
            }
            let Some(entry) = draft.take(editor, &from)? else {
                return Err(reject(PatchError::NotFound(from.to_string())));
            };
            draft.put(editor, &to, entry, true)
        }
        PatchOp::Mkdir { path: p } => {
            let target = path(p)?;
            if draft.get(editor, &target)?.is_some() {
                return Err(reject(PatchError::AlreadyExists(target.to_string())));
            }
            draft.mkdir(editor, &target)
        }
        PatchOp::Rmdir { path: p } => {
            let target = removal_path(p)?;
            match draft.get(editor, &target)? {
                None => Err(reject(PatchError::NotFound(target.to_string()))),
                Some(e) if e.kind != EntryKind::Directory => {
                    Err(reject(PatchError::NotADirectory(target.to_string())))
                }
                Some(_) if !draft.is_empty_dir(editor, &target)? => {
                    Err(reject(PatchError::NotEmpty(target.to_string())))
                }
                Some(_) => draft.take(editor, &target).map(drop),
            }
        }
        PatchOp::Symlink { path: p, target } => {
            let link = path(p)?;
            if draft.get(editor, &link)?.is_some() {
                return Err(reject(PatchError::AlreadyExists(link.to_string())));
            }
            let blob = editor.add_content(target.as_bytes())?;
            draft.set(editor, &link, EntryKind::Symlink, blob, true)
        }
        PatchOp::Chmod {
            path: p,
            executable,
        } => {
            let target = path(p)?;
            match draft.get(editor, &target)? {
                None => Err(reject(PatchError::NotFound(target.to_string()))),
                Some(Found {
                    kind: EntryKind::File | EntryKind::Executable,
                    id: Some(id),
                }) => draft.set(editor, &target, file_kind(*executable), id, false),
                Some(_) => Err(reject(PatchError::NotADirectory(format!(
                    "{target} (chmod applies to regular files)"
                )))),
            }
        }
        PatchOp::Edit {
            path: p,
            base,
            hunks,
        } => {
            let target = path(p)?;
            let Some(entry) = draft.get(editor, &target)? else {
                return Err(reject(PatchError::NotFound(target.to_string())));
            };
            let (kind, id) = match entry {
                Found {
                    kind: EntryKind::Directory,
                    ..
                }
                | Found { id: None, .. } => {
                    return Err(reject(PatchError::IsADirectory(target.to_string())))
                }
                Found { kind, id: Some(id) } => (kind, id),
            };
            if id != *base {
                return Err(reject(PatchError::BaseMismatch {
                    path: target.to_string(),
                    expected: base.to_hex(),
                    found: id.to_hex(),
                }));
            }
            let old = content::read_blob(editor, &id)?;
            let new = apply_hunks(&target, &old, hunks)?;
            let blob = editor.add_content(&new)?;
            draft.set(editor, &target, kind, blob, false)
        }
    }
}

fn refuse_directory(editor: &TreeEditor<'_>, draft: &mut Draft, target: &RepoPath) -> Result<()> {
    match draft.get(editor, target)? {
        Some(e) if e.kind == EntryKind::Directory => {
            Err(reject(PatchError::IsADirectory(target.to_string())))
        }
        _ => Ok(()),
    }
}

/// Splits text into lines, each keeping its `\n` (the last may lack one).
pub fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&b| b == b'\n').collect()
}

fn apply_hunks(target: &RepoPath, old: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>> {
    let lines = split_lines(old);
    let bad = |reason: String| {
        reject(PatchError::BadHunk {
            path: target.to_string(),
            reason,
        })
    };
    let mut out = Vec::with_capacity(old.len());
    let mut next = 0usize;
    for hunk in hunks {
        let start = usize::try_from(hunk.start).map_err(|_| bad("start out of range".into()))?;
        let remove = usize::try_from(hunk.remove).map_err(|_| bad("remove out of range".into()))?;
        if start < next {
            return Err(bad(format!(
                "hunk at line {start} overlaps or precedes the previous one"
            )));
        }
        let end = start
            .checked_add(remove)
            .filter(|&end| end <= lines.len())
            .ok_or_else(|| {
                bad(format!(
                    "lines {start}..{start}+{remove} are past the end ({} lines)",
                    lines.len()
                ))
            })?;
        for line in &lines[next..start] {
            out.extend_from_slice(line);
        }
        for line in &hunk.insert {
            out.extend_from_slice(line.as_bytes());
        }
        next = end;
    }
    for line in &lines[next..] {
        out.extend_from_slice(line);
    }
    Ok(out)
}
