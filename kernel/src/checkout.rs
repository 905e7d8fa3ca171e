//! On-disk checkouts (SPEC §3): a directory outside the universe holding a snapshot as plain
//! files, tied to the SWS its edits go to, with a tree index (path → size, times, inode, mode,
//! blob) so status and the watcher compare `lstat` results instead of reading files.
//!
//! The kernel keeps, per checkout directory, its [`CheckoutState`] and its index. The watcher and
//! `jit checkout --into` change both through one operation, [`record`]: an optional patch to the
//! checkout's SWS plus index updates, in one transaction — so a crash leaves either both or
//! neither, and a restart compares the disk with an index that matches the SWS. A generation
//! number, bumped whenever a checkout rewrites the directory, lets a writer with a stale view of
//! the index be refused instead of overwriting newer entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::patch::Patch;
use crate::refname::RefName;
use crate::store::{Declared, Op, ReadTxn, Store, TableDef};
use crate::sws::{self, Applied, SwsId};
use heed::types::{Bytes, Str};

/// Checkout directory → its state ([`CheckoutState`]).
const STATES: TableDef<Str, Bytes> = TableDef::new("checkouts", 4);
/// The checkout states table, for the registry.
pub(crate) const STATES_TABLE: Declared = STATES.declared();
/// Checkout directory || 0 || path → tree index entry ([`IndexEntry`]).
const INDEX: TableDef<Bytes, Bytes> = TableDef::new("checkout_index", 5);
/// The checkout index table, for the registry.
pub(crate) const INDEX_TABLE: Declared = INDEX.declared();

/// The trees every checkout holds, by the SWS its edits go to: what the store upgrade to
/// counted staged nodes needs from this module ([`crate::sws::gc::count_legacy`]).
pub(crate) fn pins_by_sws(
    store: &Store,
    txn: &ReadTxn<'_>,
) -> Result<crate::sws::gc::CheckoutPins> {
    let mut pins = crate::sws::gc::CheckoutPins::new();
    for entry in store.table(&STATES).iter(txn)? {
        let (dir, raw) = entry?;
        let state: CheckoutState = cbor::from_canonical_bytes(raw)?;
        if let (Some(tree), Some(id)) = (state.tree, sws_of(store, txn, &state)?) {
            pins.entry(id).or_default().push((dir.to_owned(), tree));
        }
    }
    Ok(pins)
}

/// What the kernel remembers about one checkout directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutState {
    /// The revision the user asked for (a branch, tag or snapshot id), as typed.
    pub rev: String,
    /// The branch whose commits this checkout's edits become (full name).
    pub branch: String,
    /// A dedicated SWS (for a tag or snapshot checkout). `None`: the branch's working SWS.
    pub sws: Option<String>,
    /// Bumped by every record: a writer whose view is older is refused.
    pub generation: u64,
    /// The tree the directory holds once every recorded edit is counted: the checked-out tree,
    /// then the SWS's tree after each recorded patch. A later checkout diffs from it, so the SWS
    /// keeps its staged nodes while others patch it (a pin, see [`crate::sws`]).
    #[serde(default)]
    pub tree: Option<NodeId>,
    /// A switch in progress: recorded before a checkout starts rewriting files and cleared by
    /// the record of its result. While it is set the directory is half old, half new, so nothing
    /// may take the disk for edits; the next `jit checkout` finishes the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switching: Option<Switching>,
}

/// Where an interrupted switch was going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switching {
    /// The revision, as typed.
    pub rev: String,
    /// The branch its edits commit to (full name).
    pub branch: String,
    /// The target SWS.
    pub sws: String,
    /// Whether that SWS is the checkout's own (a tag or snapshot checkout), not the branch's
    /// working SWS.
    pub dedicated: bool,
}

/// One indexed path: what `lstat` said when the file was last written or recorded, and the
/// blob the SWS holds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// The content (file data or symlink target); `None` for a directory.
    pub blob: Option<NodeId>,
}

/// One [`record`] call: index changes, and optionally a patch and a new state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The checkout directory (absolute, canonical).
    pub dir: String,
    /// The generation the caller's view of the index has; refused if it moved on.
    pub generation: u64,
    /// A new state (a checkout of another revision); bumps the generation.
    pub state: Option<CheckoutState>,
    /// Drop the whole index before applying `set` (a fresh checkout).
    #[serde(default)]
    pub reset_index: bool,
    /// Applied to the checkout's SWS in the same transaction.
    pub patch: Option<Patch>,
    /// Entries to write.
    #[serde(default)]
    pub set: Vec<(String, IndexEntry)>,
    /// Paths to drop from the index.
    #[serde(default)]
    pub remove: Vec<String>,
}

#[cfg(test)]
impl Record {
    /// The record that makes `dir` a checkout of `main` (on its working SWS), for tests.
    pub(crate) fn new_checkout_of_main(dir: &str) -> Record {
        let state = CheckoutState {
            rev: "main".into(),
            branch: "heads/main".into(),
            sws: None,
            generation: 0,
            tree: None,
            switching: None,
        };
        Record {
            dir: dir.into(),
            generation: 0,
            state: Some(state),
            ..Record::default()
        }
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The checkout's generation now.
    pub generation: u64,
    /// The SWS the checkout's edits go to.
    pub sws: String,
    /// What the patch did, if there was one.
    pub applied: Option<Applied>,
}

fn index_key(dir: &str, path: &str) -> Vec<u8> {
    [dir.as_bytes(), &[0], path.as_bytes()].concat()
}

fn index_prefix(dir: &str) -> Vec<u8> {
    [dir.as_bytes(), &[0]].concat()
}

/// The state of the checkout at `dir`, if there is one.
pub fn get(store: &Store, txn: &ReadTxn<'_>, dir: &str) -> Result<Option<CheckoutState>> {
    match store.table(&STATES).get(txn, dir)? {
        Some(raw) => Ok(Some(cbor::from_canonical_bytes(raw)?)),
        None => Ok(None),
    }
}

/// The whole index of the checkout at `dir`, by path.
pub fn index(store: &Store, txn: &ReadTxn<'_>, dir: &str) -> Result<BTreeMap<String, IndexEntry>> {
    Ok(entries_below(store, txn, dir, "")?.into_iter().collect())
}

/// The index entry of `path` in the checkout at `dir`. The watcher asks per path instead of
/// holding the whole index, so a checkout that rewrote the index costs it nothing to follow.
pub fn entry(
    store: &Store,
    txn: &ReadTxn<'_>,
    dir: &str,
    path: &str,
) -> Result<Option<IndexEntry>> {
    match store.table(&INDEX).get(txn, &index_key(dir, path))? {
        Some(raw) => Ok(Some(cbor::from_canonical_bytes(raw)?)),
        None => Ok(None),
    }
}

/// The index entries whose paths start with `prefix` (`""`: all; `"a/"`: everything below
/// `a`), in path order.
pub fn entries_below(
    store: &Store,
    txn: &ReadTxn<'_>,
    dir: &str,
    prefix: &str,
) -> Result<Vec<(String, IndexEntry)>> {
    let start = index_key(dir, prefix);
    let skip = index_prefix(dir).len();
    let mut out = Vec::new();
    for entry in store.table(&INDEX).prefix_iter(txn, &start)? {
        let (key, raw) = entry?;
        let path = String::from_utf8_lossy(&key[skip..]).into_owned();
        out.push((path, cbor::from_canonical_bytes(raw)?));
    }
    Ok(out)
}

/// The SWS the checkout's edits go to now: its dedicated SWS while that lives, else the working
/// SWS of its branch (created on first use — after a commit, the fresh one).
pub fn sws_of(store: &Store, txn: &ReadTxn<'_>, state: &CheckoutState) -> Result<Option<SwsId>> {
    if let Some(text) = &state.sws {
        let id: SwsId = text.parse()?;
        if sws::exists(store, txn, id)? {
            return Ok(Some(id));
        }
    }
    let branch = RefName::parse_full(&state.branch)?;
    sws::working_id(store, txn, &branch)
}

fn resolve_sws(op: &mut Op<'_>, state: &CheckoutState, owner: &str) -> Result<SwsId> {
    if let Some(id) = sws_of(op.store(), op.txn(), state)? {
        return Ok(id);
    }
    sws::working_in(op, &RefName::parse_full(&state.branch)?, owner)
}

/// Applies one [`Record`] as one kernel operation. `owner` owns a working SWS this creates.
pub fn record(store: &Store, record: &Record, owner: &str) -> Result<Recorded> {
    if record.dir.is_empty() || record.dir.contains('\0') {
        return Err(Error::InvalidInput(
            "a checkout directory must be a non-empty path".into(),
        ));
    }
    store.operation("checkout.record", |op| {
        let current = get(op.store(), op.txn(), &record.dir)?;
        let pinned_in = match &current {
            Some(state) => sws_of(op.store(), op.txn(), state)?,
            None => None,
        };
        let now = current.as_ref().map(|s| s.generation).unwrap_or(0);
        if now != record.generation {
            return Err(Error::InvalidInput(format!(
                "the checkout at {} changed while this was prepared (generation {now}, not {}); \
                 try again",
                record.dir, record.generation
            )));
        }
        let mut state = match (&record.state, current) {
            (Some(new), _) => CheckoutState {
                generation: now + 1,
                ..new.clone()
            },
            (None, Some(state)) => CheckoutState {
                generation: now + 1,
                ..state
            },
            (None, None) => {
                return Err(Error::InvalidInput(format!(
                    "{} is not a checkout (jit checkout --into makes one)",
                    record.dir
                )))
            }
        };
        let id = resolve_sws(op, &state, owner)?;
        let applied = match &record.patch {
            Some(patch) => Some(sws::apply_in(op, id, patch)?),
            None => None,
        };
        if let Some(applied) = &applied {
            state.tree = Some(applied.tree);
        }
        if let Some(previous) = pinned_in.filter(|previous| *previous != id) {
            sws::pin_checkout(op, previous, &record.dir, None)?;
        }
        sws::pin_checkout(op, id, &record.dir, state.tree)?;
        let bytes = cbor::to_canonical_bytes(&state)?;
        let store = op.store();
        store.table(&STATES).put(op.wtxn(), &record.dir, &bytes)?;
        if record.reset_index {
            drop_index(op, &record.dir)?;
        }
        for path in &record.remove {
            store
                .table(&INDEX)
                .delete(op.wtxn(), &index_key(&record.dir, path))?;
        }
        for (path, entry) in &record.set {
            let bytes = cbor::to_canonical_bytes(entry)?;
            store
                .table(&INDEX)
                .put(op.wtxn(), &index_key(&record.dir, path), &bytes)?;
        }
        Ok(Recorded {
            generation: state.generation,
            sws: id.to_string(),
            applied,
        })
    })
}

/// Deletes every index entry of the checkout at `dir`.
fn drop_index(op: &mut Op<'_>, dir: &str) -> Result<()> {
    let prefix = index_prefix(dir);
    let store = op.store();
    let keys: Vec<Vec<u8>> = store
        .table(&INDEX)
        .prefix_iter(op.txn(), &prefix)?
        .map(|entry| entry.map(|(key, _)| key.to_vec()))
        .collect::<Result<_, _>>()?;
    for key in keys {
        store.table(&INDEX).delete(op.wtxn(), &key)?;
    }
    Ok(())
}

/// Forgets the checkout at `dir` (its state, index and pin). The files stay where they are.
pub fn forget(store: &Store, dir: &str) -> Result<()> {
    store.operation("checkout.forget", |op| {
        if let Some(state) = get(op.store(), op.txn(), dir)? {
            if let Some(id) = sws_of(op.store(), op.txn(), &state)? {
                sws::pin_checkout(op, id, dir, None)?;
            }
        }
        drop_index(op, dir)?;
        let store = op.store();
        store.table(&STATES).delete(op.wtxn(), dir)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::PatchOp;
    use crate::repo::Repository;

    fn entry(size: u64) -> IndexEntry {
        IndexEntry {
            mode: 0o100644,
            size,
            mtime_ns: 1,
            ctime_ns: 2,
            ino: 3,
            blob: None,
        }
    }

    #[test]
    fn record_applies_patch_and_index_together_and_refuses_stale_generations() {
        let (_dir, repo) = Repository::scratch();
        let store = repo.store();
        let first = Record {
            set: vec![("a".into(), entry(1))],
            ..Record::new_checkout_of_main("/co")
        };
        let done = record(store, &first, "me").unwrap();
        assert_eq!(done.generation, 1);
        let stale = Record {
            dir: "/co".into(),
            generation: 0,
            set: vec![("b".into(), entry(2))],
            ..Record::default()
        };
        assert!(record(store, &stale, "me").is_err());
        let edit = Record {
            dir: "/co".into(),
            generation: 1,
            patch: Some(Patch {
                id: "p1".into(),
                author: "me".into(),
                ts: 1,
                ops: vec![PatchOp::Put {
                    path: "a".into(),
                    content: b"x".to_vec(),
                    executable: false,
                }],
            }),
            set: vec![("a".into(), entry(9))],
            remove: vec![],
            ..Record::default()
        };
        let done = record(store, &edit, "me").unwrap();
        assert_eq!(done.applied.map(|a| a.seq), Some(1));
        let txn = store.read().unwrap();
        let index = index(store, &txn, "/co").unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index["a"].size, 9);
        // A refused patch leaves the index as it was.
        drop(txn);
        let bad = Record {
            dir: "/co".into(),
            generation: 2,
            patch: Some(Patch {
                id: "p2".into(),
                author: "me".into(),
                ts: 2,
                ops: vec![PatchOp::Delete {
                    path: "missing".into(),
                }],
            }),
            set: vec![("a".into(), entry(100))],
            ..Record::default()
        };
        assert!(record(store, &bad, "me").is_err());
        let txn = store.read().unwrap();
        assert_eq!(super::index(store, &txn, "/co").unwrap()["a"].size, 9);
    }
}
