//! Refs (RFC-0010): branches move forward only, tags never move, HEAD is local and advisory.
//!
//! Refs are stored by full name: `heads/<branch>` and `tags/<tag>`. Every change is logged in the
//! same transaction as the nodes it points at, and written last. The invariants:
//! 1. a ref's target exists; 2. branch updates are atomic (compare-and-set) and written last;
//! 3. every change is logged; 4. tags are immutable (delete needs an explicit override);
//! 5. a branch never moves backwards or sideways — such moves go through an inversion rewrite
//!    ([`crate::history`]); 6. fast-forward is decided by ancestry alone, deterministically;
//! 7. HEAD never enters the DAG or the log (it is a file, see [`crate::repo`]).
//!
//! When a branch moves, its working SWS follows in the same transaction if it has no work
//! ([`crate::sws::follow_branch`]); one with work keeps its base and merges at commit.
//!
//! A third kind, `remotes/<remote>/heads/<b>` and `remotes/<remote>/tags/<t>`, is written only by
//! sync: it keeps what a replica said when it could not be taken as is — a tag that names
//! another target than ours, a branch that diverged with conflicts. Such a ref mirrors the
//! remote: it is replaced (deleted and created, both logged) rather than moved backwards.

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::log::LogOp;
use crate::node::NodeType;
use crate::store::{Op, ReadTxn, Store};
use crate::sws;

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

/// `ref.get`: the target of a ref.
pub fn get(store: &Store, txn: &ReadTxn<'_>, name: &RefName) -> Result<Option<NodeId>> {
    store.ref_target(txn, name.full())
}

/// A branch points at a snapshot or the root (an empty branch); a tag at a snapshot, rewrite or
/// provenance node (RFC-0010).
fn check_target(store: &Store, txn: &ReadTxn<'_>, name: &RefName, target: &NodeId) -> Result<()> {
    let node_type = store.require_header(txn, target)?.node_type;
    let (ok, expected) = match name.kind() {
        RefKind::Branch => (
            matches!(node_type, NodeType::Root | NodeType::Snapshot),
            "snapshot",
        ),
        RefKind::Tag => (
            matches!(
                node_type,
                NodeType::Snapshot | NodeType::Rewrite | NodeType::Provenance
            ),
            "snapshot, rewrite or provenance node",
        ),
        RefKind::Remote => (
            matches!(
                node_type,
                NodeType::Root | NodeType::Snapshot | NodeType::Rewrite | NodeType::Provenance
            ),
            "snapshot, rewrite or provenance node",
        ),
    };
    if !ok {
        return Err(Error::NotA {
            id: *target,
            found: node_type.as_str(),
            expected,
        });
    }
    Ok(())
}

/// `ref.create_branch` / `ref.create_tag`: creates a ref that must not exist yet.
pub fn create(op: &mut Op<'_>, name: &RefName, target: &NodeId) -> Result<()> {
    if get(op.store(), op.txn(), name)?.is_some() {
        return Err(Error::RefExists(name.to_string()));
    }
    check_no_directory_conflict(op.store(), op.txn(), name)?;
    check_target(op.store(), op.txn(), name, target)?;
    op.log(LogOp::RefCreated {
        name: name.full().to_owned(),
        target: *target,
    })?;
    write(op, name, target)
}

/// Writes a ref's new target: the last write of every change to a ref, after its log record.
/// This is the one place a branch moves, so it is where the branch's working SWS follows it
/// when it has no work ([`sws::follow_branch`]), in the same transaction: whatever moved the
/// branch (a commit of another SWS, a reset, sync, an import), `head/` and `jit status` show
/// the new tip at once.
fn write(op: &mut Op<'_>, name: &RefName, target: &NodeId) -> Result<()> {
    if name.kind() == RefKind::Branch {
        sws::follow_branch(op, name, target)?;
    }
    op.put_ref(name.full(), target)
}

/// Like git: `a` and `a/b` cannot both exist (and the mount shows refs as directories).
fn check_no_directory_conflict(store: &Store, txn: &ReadTxn<'_>, name: &RefName) -> Result<()> {
    let below = format!("{}/", name.full());
    if let Some((existing, _)) = store.refs_with_prefix(txn, &below)?.first() {
        return Err(Error::RefExists(format!(
            "{existing} (a ref cannot also be a directory of refs)"
        )));
    }
    let mut prefix = name.full();
    while let Some(cut) = prefix.rfind('/') {
        prefix = &prefix[..cut];
        if prefix == "heads" || prefix == "tags" {
            break;
        }
        if store.ref_target(txn, prefix)?.is_some() {
            return Err(Error::RefExists(format!(
                "{prefix} (a ref cannot also be a directory of refs)"
            )));
        }
    }
    Ok(())
}

/// Points a remote's ref at `target`: created if absent, moved when `target` descends from it,
/// otherwise deleted and created again (both logged), so no ref ever moves backwards in the log.
/// Returns whether anything changed.
pub fn mirror(op: &mut Op<'_>, name: &RefName, target: &NodeId) -> Result<bool> {
    if name.kind() != RefKind::Remote {
        return Err(Error::InvalidInput(format!(
            "{name} is not a remote's ref; only those are mirrored"
        )));
    }
    let Some(current) = get(op.store(), op.txn(), name)? else {
        create(op, name, target)?;
        return Ok(true);
    };
    if current == *target {
        return Ok(false);
    }
    check_target(op.store(), op.txn(), name, target)?;
    if dag::is_ancestor(op.store(), op.txn(), &current, target)? {
        op.log(LogOp::RefUpdated {
            name: name.full().to_owned(),
            from: current,
            to: *target,
        })?;
        write(op, name, target)?;
    } else {
        delete(op, name, true)?;
        create(op, name, target)?;
    }
    Ok(true)
}

/// `ref.set`: moves a branch to a descendant of its tip. `expected` makes it a compare-and-set.
pub fn set(
    op: &mut Op<'_>,
    name: &RefName,
    target: &NodeId,
    expected: Option<&NodeId>,
) -> Result<()> {
    match name.kind() {
        RefKind::Tag => return Err(Error::TagImmutable(name.short().to_owned())),
        RefKind::Remote => {
            return Err(Error::InvalidInput(format!(
                "{name} is kept by sync for a peer; it is not moved by hand"
            )))
        }
        RefKind::Branch => {}
    }
    let current =
        get(op.store(), op.txn(), name)?.ok_or_else(|| Error::RefNotFound(name.to_string()))?;
    if let Some(expected) = expected {
        if *expected != current {
            return Err(Error::RefChanged {
                name: name.to_string(),
                expected: expected.to_hex(),
                found: current.to_hex(),
            });
        }
    }
    if current == *target {
        return Ok(());
    }
    check_target(op.store(), op.txn(), name, target)?;
    if !dag::is_ancestor(op.store(), op.txn(), &current, target)? {
        return Err(Error::NotFastForward {
            name: name.short().to_owned(),
            from: current,
            to: *target,
        });
    }
    op.log(LogOp::RefUpdated {
        name: name.full().to_owned(),
        from: current,
        to: *target,
    })?;
    write(op, name, target)
}

/// `ref.delete`: removes a branch, or a tag when `force_tag` is given.
pub fn delete(op: &mut Op<'_>, name: &RefName, force_tag: bool) -> Result<NodeId> {
    let target =
        get(op.store(), op.txn(), name)?.ok_or_else(|| Error::RefNotFound(name.to_string()))?;
    if name.kind() == RefKind::Tag && !force_tag {
        return Err(Error::TagImmutable(name.short().to_owned()));
    }
    op.log(LogOp::RefDeleted {
        name: name.full().to_owned(),
        target,
        forced: force_tag,
    })?;
    op.delete_ref(name.full())?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_style_names_are_enforced() {
        for good in [
            "main",
            "feature/x",
            "v1.0",
            "release-2024",
            "a_b",
            "ünïcode",
        ] {
            assert!(validate_short_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "/a",
            "a/",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a/b.lock",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "HEAD",
            "@",
            "end.",
            "-x",
            "tab\there",
        ] {
            assert!(
                matches!(validate_short_name(bad), Err(Error::BadRefName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn full_names_round_trip() {
        let b = RefName::parse_full("refs/heads/feature/x").unwrap();
        assert_eq!(b.full(), "heads/feature/x");
        assert_eq!(b.short(), "feature/x");
        assert_eq!(b.kind(), RefKind::Branch);
        assert_eq!(RefName::parse_full("tags/v1").unwrap().kind(), RefKind::Tag);
        assert!(RefName::parse_full("remotes/x").is_err());
        let kept = RefName::parse_full("remotes/origin/tags/v1").unwrap();
        assert_eq!(kept.kind(), RefKind::Remote);
        assert_eq!(kept.remote_parts().unwrap().1.full(), "tags/v1");
        assert!(RefName::parse_full("remotes/origin/remotes/x/heads/y").is_err());
        assert!(RefName::parse_full("remotes/a.lock/heads/y").is_err());
    }
}
