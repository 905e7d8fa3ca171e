//! Ref names (RFC-0010): `heads/<branch>`, `tags/<tag>` and `remotes/<remote>/…`, what makes a
//! name valid, and which kind a name is. Pure text rules, with no store: every module that
//! names a branch uses them, and [`crate::refs`] moves refs.

use crate::error::{Error, Result};

/// Prefix of branch refs.
pub const HEADS: &str = "heads/";
/// Prefix of tag refs.
pub const TAGS: &str = "tags/";
/// Prefix of refs kept for a sync peer.
pub const REMOTES: &str = "remotes/";

/// Whether a ref is a branch or a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// Moves forward with commits.
    Branch,
    /// Never moves.
    Tag,
    /// What a sync peer holds, kept under its name (`remotes/<remote>/heads|tags/...`).
    Remote,
}

/// A validated ref name with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

impl RefName {
    /// A branch name (`main`, `feature/x`).
    pub fn branch(short: &str) -> Result<RefName> {
        validate_short_name(short)?;
        Ok(RefName(format!("{HEADS}{short}")))
    }

    /// A tag name.
    pub fn tag(short: &str) -> Result<RefName> {
        validate_short_name(short)?;
        Ok(RefName(format!("{TAGS}{short}")))
    }

    /// Where sync keeps the ref `of` (a branch or tag) of the peer named `remote`.
    pub fn remote(remote: &str, of: &RefName) -> Result<RefName> {
        validate_remote_name(remote)?;
        if of.kind() == RefKind::Remote {
            return Err(Error::BadRefName {
                name: of.to_string(),
                reason: "a remote's ref is a branch or a tag",
            });
        }
        Ok(RefName(format!("{REMOTES}{remote}/{}", of.full())))
    }

    /// Parses a full name (`heads/x`, `tags/x`, `remotes/r/heads/x`, with an optional leading
    /// `refs/`).
    pub fn parse_full(full: &str) -> Result<RefName> {
        let full = full.strip_prefix("refs/").unwrap_or(full);
        if let Some(short) = full.strip_prefix(HEADS) {
            RefName::branch(short)
        } else if let Some(short) = full.strip_prefix(TAGS) {
            RefName::tag(short)
        } else if let Some(rest) = full.strip_prefix(REMOTES) {
            let (remote, of) = rest.split_once('/').ok_or_else(|| Error::BadRefName {
                name: full.to_owned(),
                reason: "a remote ref is remotes/<remote>/heads/<branch> or .../tags/<tag>",
            })?;
            RefName::remote(remote, &RefName::parse_full(of)?)
        } else {
            Err(Error::BadRefName {
                name: full.to_owned(),
                reason: "a full ref name starts with heads/, tags/ or remotes/",
            })
        }
    }

    /// For a remote's ref, the peer's name and the ref as the peer names it.
    pub fn remote_parts(&self) -> Option<(&str, RefName)> {
        let rest = self.0.strip_prefix(REMOTES)?;
        let (remote, of) = rest.split_once('/')?;
        Some((remote, RefName(of.to_owned())))
    }

    /// The stored name.
    pub fn full(&self) -> &str {
        &self.0
    }

    /// The name without its `heads/` or `tags/` prefix (a remote's ref keeps its full name).
    pub fn short(&self) -> &str {
        self.0
            .strip_prefix(HEADS)
            .or_else(|| self.0.strip_prefix(TAGS))
            .unwrap_or(&self.0)
    }

    /// Branch, tag or a remote's ref.
    pub fn kind(&self) -> RefKind {
        if self.0.starts_with(TAGS) {
            RefKind::Tag
        } else if self.0.starts_with(REMOTES) {
            RefKind::Remote
        } else {
            RefKind::Branch
        }
    }
}

impl std::fmt::Display for RefName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a branch or tag name against git's `check-ref-format` rules, plus: not `HEAD`, at most
/// 200 bytes.
pub fn validate_short_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::BadRefName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.len() > 200 {
        return Err(Error::BadRefName {
            name: format!("{}…", name.chars().take(40).collect::<String>()),
            reason: "it is longer than 200 bytes",
        });
    }
    if name.is_empty() {
        return bad("it is empty");
    }
    if ["heads/", "tags/", "refs/"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return bad("heads/, tags/ and refs/ are reserved prefixes");
    }
    if name == "HEAD" || name == "@" {
        return bad("HEAD and @ are reserved");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return bad("it has an empty path component");
    }
    if name.ends_with('.') {
        return bad("it ends with '.'");
    }
    if name.contains("..") {
        return bad("it contains '..'");
    }
    if name.contains("@{") {
        return bad("it contains '@{'");
    }
    if name.starts_with('-') {
        return bad("it starts with '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        let _ = c;
        return bad("it contains a space, control character or one of ~ ^ : ? * [ \\");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return bad("a path component starts with '.'");
        }
        if component.ends_with(".lock") {
            return bad("a path component ends with '.lock'");
        }
    }
    Ok(())
}

/// Checks the name of a sync peer: one ref-name component (no `/`).
pub fn validate_remote_name(name: &str) -> Result<()> {
    validate_short_name(name)?;
    if name.contains('/') {
        return Err(Error::BadRefName {
            name: name.to_owned(),
            reason: "a remote's name is a single component (no '/')",
        });
    }
    Ok(())
}
