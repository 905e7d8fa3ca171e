//! How verbs print: one JSON value for machines, or text for people, and the small formatting
//! helpers every verb shares.

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
