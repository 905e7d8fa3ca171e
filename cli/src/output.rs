//! How verbs print: one JSON value for machines, or text for people, and the small formatting
//! helpers every verb shares.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

/// How a verb prints: JSON for machines or text for people.
pub(crate) struct Output {
    /// One JSON value on stdout instead of text.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `text()` (unless empty) for people.
    pub(crate) fn emit(&self, value: Value, text: impl FnOnce() -> String) -> Result<ExitCode> {
        if self.json {
            println!("{value}");
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes `text` and a newline to stdout (what `println!` does in this crate).
pub(crate) fn stdout_line(text: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(text).and_then(|()| out.write_all(b"\n"));
    settle_write(written);
}

/// Writes `text` to stdout (what `print!` does in this crate).
pub(crate) fn stdout_text(text: fmt::Arguments<'_>) {
    let written = std::io::stdout().lock().write_fmt(text);
    settle_write(written);
}

/// Writes `bytes` to stdout as they are.
pub(crate) fn stdout_bytes(bytes: &[u8]) {
    let written = std::io::stdout().lock().write_all(bytes);
    settle_write(written);
}

/// Ends the command quietly, with success, if `error` is a write to stdout whose reader closed
/// the pipe (a streamed `jit cat FILE | head`); returns otherwise.
pub(crate) fn end_if_reader_left(error: &jit_kernel::Error) {
    if let jit_kernel::Error::Io { source, .. } = error {
        if source.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// A write to stdout that failed: a closed pipe means the reader has what it wanted, so the
/// command ends quietly with success (as ripgrep does; git dies of SIGPIPE); any other failure
/// (a full disk behind a redirect) is one error line and a failure.
fn settle_write(written: std::io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("jit: error: cannot write to stdout: {e}");
            std::process::exit(1)
        }
    }
}

/// `n` and a noun, singular or plural as `n` asks: "1 file", "2 files", "1 directory".
pub(crate) fn count(n: impl Into<u64>, singular: &str) -> String {
    let n = n.into();
    if n == 1 {
        return format!("1 {singular}");
    }
    let plural = match singular.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ if singular.ends_with('s') || singular.ends_with("sh") || singular.ends_with("ch") => {
            format!("{singular}es")
        }
        _ => format!("{singular}s"),
    };
    format!("{n} {plural}")
}

/// The candidate closest to `typed` by edit distance, if close enough to be a typo (at most two
/// edits, or a third of a long name; at least one edit away).
pub(crate) fn nearest<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (typed.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(typed, candidate), candidate))
        .filter(|(distance, _)| *distance > 0 && *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

pub(crate) fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A changed path as people read it: an (empty) directory ends in `/`.
pub(crate) fn shown_path(path: &str, is_dir: bool) -> String {
    if is_dir {
        format!("{path}/")
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn a_typo_finds_the_nearest_name_and_a_stranger_none() {
        let names = ["main", "topic", "release-1.0"];
        assert_eq!(super::nearest("mian", names), Some("main"));
        assert_eq!(super::nearest("topik", names), Some("topic"));
        assert_eq!(
            super::nearest("main", names),
            None,
            "an exact name is no typo"
        );
        assert_eq!(super::nearest("zzzzzz", names), None);
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1u64, "file"), "1 file");
        assert_eq!(count(0u64, "file"), "0 files");
        assert_eq!(count(2u64, "directory"), "2 directories");
        assert_eq!(count(1u64, "directory"), "1 directory");
        assert_eq!(count(3u64, "patch"), "3 patches");
        assert_eq!(count(2u64, "key"), "2 keys");
        assert_eq!(count(2u64, "new node"), "2 new nodes");
    }
}
