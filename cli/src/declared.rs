//! Resolving the declared inputs of a commit (author, time) from flags, environment and config.
//! They are hashed, so they are always explicit: the same flags give the same ids anywhere.

use anyhow::{bail, Context, Result};
use jit_kernel::history::CommitInfo;
use jit_kernel::DeclaredTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::args::CommitArgs;

/// Parses a declared time: RFC 3339, or `@SECONDS` optionally followed by `+HHMM`/`-HHMM`.
pub fn parse_date(text: &str) -> Result<DeclaredTime> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('@') {
        let mut parts = rest.split_whitespace();
        let seconds: i64 = parts
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("invalid date {text:?}: expected @SECONDS [+HHMM]"))?;
        let tz_minutes = match parts.next() {
            Some(offset) => parse_offset(offset)?,
            None => 0,
        };
        if parts.next().is_some() {
            bail!("invalid date {text:?}: expected @SECONDS [+HHMM]");
        }
        return Ok(DeclaredTime {
            seconds,
            tz_minutes,
        });
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
        format!("invalid date {text:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or @SECONDS")
    })?;
    Ok(DeclaredTime {
        seconds: parsed.unix_timestamp(),
        tz_minutes: parsed.offset().whole_minutes(),
    })
}

fn parse_offset(offset: &str) -> Result<i16> {
    let bad = || anyhow::anyhow!("invalid UTC offset {offset:?}: expected +HHMM or -HHMM");
    let (sign, digits) = match offset.as_bytes().first() {
        Some(b'+') => (1, &offset[1..]),
        Some(b'-') => (-1, &offset[1..]),
        _ => return Err(bad()),
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hours: i16 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i16 = digits[2..].parse().map_err(|_| bad())?;
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok(sign * (hours * 60 + minutes))
}

/// Formats a declared time the way `git log` does: RFC 3339 in the author's offset.
pub fn format_date(time: DeclaredTime) -> String {
    let offset = time::UtcOffset::from_whole_seconds(time.tz_minutes as i32 * 60)
        .unwrap_or(time::UtcOffset::UTC);
    OffsetDateTime::from_unix_timestamp(time.seconds)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{}", time.seconds))
}

/// Builds the commit's declared inputs; `configured` is the author from `.jit/config.toml`.
/// Without `-m`, the message is written in the user's editor.
pub fn commit_info(args: &CommitArgs, configured: Option<String>) -> Result<CommitInfo> {
    let message = match &args.message {
        Some(message) => message.clone(),
        None => edit_message()?,
    };
    declared(
        &message,
        args.author.as_deref(),
        args.date.as_deref(),
        configured,
    )
}

/// The editor git would run: `$GIT_EDITOR`, `$VISUAL`, `$EDITOR`, else `vi`.
fn editor() -> String {
    ["JIT_EDITOR", "GIT_EDITOR", "VISUAL", "EDITOR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned())
}

/// What the editor starts with, as git's commit template: every `#` line is dropped.
const TEMPLATE: &str = "\n# Please enter the commit message for your changes. Lines starting\n# with '#' will be ignored, and an empty message aborts the commit.\n";

/// Opens the editor on a message template (the editor string is run by the shell, so it may
/// carry arguments, as git allows) and returns the message without comment lines and
/// surrounding blank lines; an empty message aborts.
fn edit_message() -> Result<String> {
    let path = std::env::temp_dir().join(format!("jit-COMMIT_EDITMSG-{}", std::process::id()));
    std::fs::write(&path, TEMPLATE).with_context(|| format!("cannot write {}", path.display()))?;
    let editor = editor();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg(&editor)
        .arg(&path)
        .status()
        .with_context(|| format!("cannot run the editor {editor:?}"));
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let status = status?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was committed");
    }
    let message = strip_comments(&text.context("cannot read the message back")?);
    if message.is_empty() {
        return Err(jit_kernel::Error::InvalidInput(
            "aborting the commit: the message is empty".into(),
        )
        .into());
    }
    Ok(message)
}

/// A message without `#` lines, trailing spaces and surrounding blank lines, ending in no
/// newline.
fn strip_comments(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(str::trim_end)
        .collect();
    kept.join("\n").trim_matches('\n').to_owned()
}

/// git's `user.name` and `user.email`, when git is installed and they are set.
fn git_author() -> Option<String> {
    let get = |key: &str| {
        std::process::Command::new("git")
            .args(["config", "--get", key])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let name = get("user.name")?;
    Some(match get("user.email") {
        Some(email) => format!("{name} <{email}>"),
        None => name,
    })
}

/// Builds declared inputs from their parts.
pub fn declared(
    message: &str,
    author: Option<&str>,
    date: Option<&str>,
    configured: Option<String>,
) -> Result<CommitInfo> {
    let author = author
        .map(str::to_owned)
        .or(configured)
        .or_else(git_author)
        .or_else(|| {
            std::env::var("USER")
                .ok()
                .map(|u| format!("{u} <{u}@localhost>"))
        })
        .unwrap_or_else(|| "unknown <unknown@localhost>".into());
    if author.trim().is_empty() || author.contains('\n') {
        bail!("invalid author {author:?}: expected one line like \"Name <email>\"");
    }
    let time = match date {
        Some(text) => parse_date(text)?,
        None => DeclaredTime {
            seconds: OffsetDateTime::now_utc().unix_timestamp(),
            tz_minutes: 0,
        },
    };
    Ok(CommitInfo {
        author,
        message: message.to_owned(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_lines_and_surrounding_blank_lines_are_dropped() {
        assert_eq!(
            strip_comments("\n\nfix: the thing  \n\nbody\n# a comment\n\n"),
            "fix: the thing\n\nbody"
        );
        assert_eq!(strip_comments(TEMPLATE), "");
    }

    #[test]
    fn dates_parse_in_both_forms() {
        assert_eq!(
            parse_date("@1700000000 +0130").unwrap(),
            DeclaredTime {
                seconds: 1_700_000_000,
                tz_minutes: 90
            }
        );
        assert_eq!(
            parse_date("2024-01-01T02:00:00+02:00").unwrap(),
            DeclaredTime {
                seconds: 1_704_067_200,
                tz_minutes: 120
            }
        );
        assert!(parse_date("yesterday").is_err());
        assert!(parse_date("@12 +99").is_err());
    }

    #[test]
    fn dates_format_in_the_declared_offset() {
        let t = DeclaredTime {
            seconds: 1_704_067_200,
            tz_minutes: 120,
        };
        assert_eq!(format_date(t), "2024-01-01T02:00:00+02:00");
    }
}
