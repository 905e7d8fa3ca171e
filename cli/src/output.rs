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
