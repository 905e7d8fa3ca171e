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
pub fn commit_info(args: &CommitArgs, configured: Option<String>) -> Result<CommitInfo> {
    declared(
        &args.message,
        args.author.as_deref(),
        args.date.as_deref(),
        configured,
    )
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
