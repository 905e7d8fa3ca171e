//! Revision expressions, git-style:
//!
//! - `HEAD` or `@`: the checked-out branch's tip;
//! - a branch or tag name (`main`, `v1`), or a full ref name (`heads/main`, `refs/tags/v1`);
//!   branches win over tags of the same name;
//! - a node id in hex, full or abbreviated (at least 4 characters, unique);
//! - suffixes: `~N` walks N steps back along the mainline, `^` (= `^1`) is the mainline parent,
//!   `^2` the other side of a rewrite (what was reset to, merged or rebased onto).

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{NodeType, Payload};
use crate::refs::{self, RefName};
use crate::store::{ReadTxn, Store};

/// Resolves `spec` to a node id.
pub fn resolve(store: &Store, txn: &ReadTxn<'_>, head: &RefName, spec: &str) -> Result<NodeId> {
    let unknown = || Error::UnknownRevision(spec.to_owned());
    let split = spec.find(['~', '^']).unwrap_or(spec.len());
    let (base, mut suffix) = spec.split_at(split);
    let mut id = resolve_base(store, txn, head, base, spec)?;
    while !suffix.is_empty() {
        let op = suffix.as_bytes()[0];
        let digits_end = suffix[1..]
            .find(|c: char| !c.is_ascii_digit())
            .map(|i| i + 1)
            .unwrap_or(suffix.len());
        let n: u64 = if digits_end == 1 {
            1
        } else {
            suffix[1..digits_end].parse().map_err(|_| unknown())?
        };
        suffix = &suffix[digits_end..];
        id = match (op, n) {
            (b'~', steps) => {
                let mut current = id;
                for _ in 0..steps {
                    current = dag::mainline_parent(store, txn, &current)?.ok_or_else(unknown)?;
                }
                current
            }
            (b'^', 0) => id,
            (b'^', 1) => dag::mainline_parent(store, txn, &id)?.ok_or_else(unknown)?,
            (b'^', 2) => other_side(store, txn, &id)?.ok_or_else(unknown)?,
            _ => return Err(unknown()),
        };
    }
    Ok(id)
}

/// For a snapshot made by a rewrite: the rewrite's `to` side.
fn other_side(store: &Store, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Option<NodeId>> {
    let view = store.view(txn, id)?;
    for parent in view.parents {
        if let Payload::Rewrite(rewrite) = store.node(txn, &parent)?.payload {
            return Ok(Some(rewrite.to));
        }
    }
    Ok(None)
}

fn resolve_base(
    store: &Store,
    txn: &ReadTxn<'_>,
    head: &RefName,
    base: &str,
    spec: &str,
) -> Result<NodeId> {
    let unknown = || Error::UnknownRevision(spec.to_owned());
    if base == "HEAD" || base == "@" || base.is_empty() {
        return refs::get(store, txn, head)?.ok_or_else(unknown);
    }
    if let Ok(full) = RefName::parse_full(base) {
        if let Some(id) = refs::get(store, txn, &full)? {
            return Ok(id);
        }
    }
    for name in [RefName::branch(base), RefName::tag(base)]
        .into_iter()
        .flatten()
    {
        if let Some(id) = refs::get(store, txn, &name)? {
            return Ok(id);
        }
    }
    if base.len() >= 4 && base.len() <= 64 && base.bytes().all(|b| b.is_ascii_hexdigit()) {
        let lower = base.to_ascii_lowercase();
        let even = &lower[..lower.len() / 2 * 2];
        let prefix = hex::decode(even).map_err(|_| unknown())?;
        let matches: Vec<NodeId> = store
            .ids_with_prefix(txn, &prefix, 4096)?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&lower))
            .collect();
        return match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(unknown()),
            _ => Err(Error::AmbiguousRevision(spec.to_owned())),
        };
    }
    Err(unknown())
}

/// Resolves `spec` and requires a snapshot (or the root, for an empty branch).
pub fn resolve_snapshot(
    store: &Store,
    txn: &ReadTxn<'_>,
    head: &RefName,
    spec: &str,
) -> Result<NodeId> {
    let id = resolve(store, txn, head, spec)?;
    match store.require_header(txn, &id)?.node_type {
        NodeType::Snapshot | NodeType::Root => Ok(id),
        other => Err(Error::NotA {
            id,
            found: other.as_str(),
            expected: "snapshot",
        }),
    }
}
