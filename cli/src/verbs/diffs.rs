//! Differences between two trees of the store, printed the ways git users read them: a unified
//! patch (`-p`, the default of `diff` and `show`), a diffstat (`--stat`), names only
//! (`--name-only`) or with their change letter (`--name-status`). `jit diff REV REV`, `jit show`
//! and `jit log -p` all print through here, so they agree.

use jit_kernel::content;
use jit_kernel::node::EntryKind;
use jit_kernel::source::Source;
use jit_kernel::tree::{self, Change, ChangeKind};
use jit_kernel::NodeId;
use serde_json::{json, Value};

use crate::output::{count, lossy, shown_path};

/// How a set of changes is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    /// Nothing (a log without `-p` or `--stat`).
    #[default]
    None,
    /// A unified diff per file.
    Patch,
    /// One line per file with its added and removed lines, and a summary.
    Stat,
    /// The paths.
    NameOnly,
    /// The paths with A, M or D.
    NameStatus,
}

impl Format {
    /// The format the flags ask for (`fallback` when none does).
    pub(crate) fn from_flags(
        patch: bool,
        stat: bool,
        name_only: bool,
        name_status: bool,
        fallback: Format,
    ) -> Format {
        if name_only {
            Format::NameOnly
        } else if name_status {
            Format::NameStatus
        } else if stat {
            Format::Stat
        } else if patch {
            Format::Patch
        } else {
            fallback
        }
    }
}

/// The changes from tree `old` to tree `new`, limited to `paths` (each a file or a directory
/// prefix; none: everything).
pub(crate) fn changes(
    src: &dyn Source,
    old: &NodeId,
    new: &NodeId,
    paths: &[String],
) -> anyhow::Result<Vec<Change>> {
    let all = tree::diff(src, old, new)?;
    if paths.is_empty() {
        return Ok(all);
    }
    Ok(all
        .into_iter()
        .filter(|change| {
            let path = lossy(&change.path);
            paths.iter().any(|wanted| {
                let wanted = wanted.trim_end_matches('/');
                wanted.is_empty()
                    || path == wanted
                    || path
                        .strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        })
        .collect())
}

/// A file's bytes on one side of a change (empty when absent, or for a directory).
fn side(src: &dyn Source, entry: Option<&jit_kernel::node::TreeEntry>) -> anyhow::Result<Vec<u8>> {
    match entry {
        Some(entry) if entry.kind != EntryKind::Directory => {
            Ok(content::read_blob(src, &entry.id)?)
        }
        _ => Ok(Vec::new()),
    }
}

/// Lines added and removed by one change (None for binary content).
fn line_counts(old: &[u8], new: &[u8]) -> Option<(usize, usize)> {
    let (old, new) = (
        std::str::from_utf8(old).ok()?,
        std::str::from_utf8(new).ok()?,
    );
    let patch = diffy::create_patch(old, new);
    let (mut added, mut removed) = (0, 0);
    for hunk in patch.hunks() {
        for line in hunk.lines() {
            match line {
                diffy::Line::Insert(_) => added += 1,
                diffy::Line::Delete(_) => removed += 1,
                diffy::Line::Context(_) => {}
            }
        }
    }
    Some((added, removed))
}

/// Appends `changes` to `out` in `format`.
pub(crate) fn render(
    src: &dyn Source,
    changes: &[Change],
    format: Format,
    out: &mut String,
) -> anyhow::Result<()> {
    match format {
        Format::None => {}
        Format::NameOnly => {
            for change in changes {
                out.push_str(&shown_path(&lossy(&change.path), change.is_dir()));
                out.push('\n');
            }
        }
        Format::NameStatus => {
            for change in changes {
                out.push_str(&format!(
                    "{}\t{}\n",
                    change_letter(change.kind),
                    shown_path(&lossy(&change.path), change.is_dir())
                ));
            }
        }
        Format::Stat => stat(src, changes, out)?,
        Format::Patch => {
            for change in changes {
                patch(src, change, out)?;
            }
        }
    }
    Ok(())
}

fn stat(src: &dyn Source, changes: &[Change], out: &mut String) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let (mut added, mut removed) = (0usize, 0usize);
    for change in changes {
        let path = shown_path(&lossy(&change.path), change.is_dir());
        let counts = if change.is_dir() {
            Some((0, 0))
        } else {
            line_counts(
                &side(src, change.old.as_ref())?,
                &side(src, change.new.as_ref())?,
            )
        };
        if let Some((a, r)) = counts {
            added += a;
            removed += r;
        }
        rows.push((path, counts));
    }
    let width = rows
        .iter()
        .map(|(p, _)| p.chars().count())
        .max()
        .unwrap_or(0);
    let most = rows
        .iter()
        .filter_map(|(_, c)| c.map(|(a, r)| a + r))
        .max()
        .unwrap_or(0)
        .max(1);
    for (path, counts) in &rows {
        match counts {
            Some((a, r)) => {
                // Scaled to at most 40 marks, as git does for a narrow terminal.
                let scale = |n: usize| {
                    if most <= 40 {
                        n
                    } else {
                        (n * 40).div_ceil(most)
                    }
                };
                out.push_str(&format!(
                    " {path:<width$} | {:>5} {}{}\n",
                    a + r,
                    "+".repeat(scale(*a)),
                    "-".repeat(scale(*r))
                ));
            }
            None => out.push_str(&format!(" {path:<width$} | Bin\n")),
        }
    }
    out.push_str(&format!(
        " {} changed, {}(+), {}(-)\n",
        count(changes.len() as u64, "file"),
        count(added as u64, "insertion"),
        count(removed as u64, "deletion")
    ));
    Ok(())
}

fn patch(src: &dyn Source, change: &Change, out: &mut String) -> anyhow::Result<()> {
    let path = lossy(&change.path);
    out.push_str(&format!("diff --jit a/{path} b/{path}\n"));
    if change.is_dir() {
        out.push_str(match change.kind {
            ChangeKind::Added => "new directory\n",
            _ => "deleted directory\n",
        });
        return Ok(());
    }
    match (&change.old, &change.new) {
        (None, Some(new)) => out.push_str(&format!("new file ({})\n", new.kind.as_str())),
        (Some(old), None) => out.push_str(&format!("deleted file ({})\n", old.kind.as_str())),
        (Some(old), Some(new)) if old.kind != new.kind => out.push_str(&format!(
            "kind {} -> {}\n",
            old.kind.as_str(),
            new.kind.as_str()
        )),
        _ => {}
    }
    let (old, new) = (
        side(src, change.old.as_ref())?,
        side(src, change.new.as_ref())?,
    );
    if old != new {
        out.push_str(&unified(
            &path,
            change.old.is_some().then_some(old.as_slice()),
            change.new.is_some().then_some(new.as_slice()),
        ));
    }
    Ok(())
}

/// One file's unified diff body — `--- a/PATH`, `+++ b/PATH` (`/dev/null` for a side that does
/// not exist) and the hunks — or that binary files differ.
pub(crate) fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    fn text(side: Option<&[u8]>) -> Option<&str> {
        std::str::from_utf8(side.unwrap_or_default()).ok()
    }
    match (text(old), text(new)) {
        (Some(old_text), Some(new_text)) => {
            let patch = diffy::create_patch(old_text, new_text).to_string();
            // diffy's own two header lines name no path: ours replace them.
            let body = patch
                .split_once('\n')
                .and_then(|(_, rest)| rest.split_once('\n'))
                .map(|(_, rest)| rest)
                .unwrap_or("");
            let from = old.map_or("/dev/null".into(), |_| format!("a/{path}"));
            let to = new.map_or("/dev/null".into(), |_| format!("b/{path}"));
            format!("--- {from}\n+++ {to}\n{body}")
        }
        _ => "Binary files differ\n".into(),
    }
}

/// A change's letter, as git prints it: A, D or M.
pub(crate) fn change_letter(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "A",
        ChangeKind::Deleted => "D",
        ChangeKind::Modified => "M",
    }
}

/// The changes as JSON rows: path, change letter, kind.
pub(crate) fn to_json(changes: &[Change]) -> Value {
    changes
        .iter()
        .map(|c| {
            json!({
                "path": lossy(&c.path), "change": change_letter(c.kind),
                "kind": c.entry().map(|e| e.kind.as_str()),
            })
        })
        .collect()
}
