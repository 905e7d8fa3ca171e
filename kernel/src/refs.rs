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

pub use crate::refname::{
    validate_remote_name, validate_short_name, RefKind, RefName, HEADS, REMOTES, TAGS,
};

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
