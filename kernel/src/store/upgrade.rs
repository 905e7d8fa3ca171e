//! Moves the records of earlier layouts into today's, once, when a store is opened.
//!
//! - Earlier stores kept an SWS's micro-history, applied patch ids and staged nodes in three
//!   tables of their own, and each agent's last `ts` in a fourth; a patch then dirtied seven
//!   B-tree paths. Today the first three live in the `sws` table behind record tags (see
//!   [`crate::sws`]).
//! - An agent's clock (its last `ts`, and now also its count of delivered messages) lives in
//!   `agent_msgs` at `name || 1`, right after the agent's window records (see
//!   [`crate::agents`]). Layout 2 kept it at `name || 0`.
//! - Staged nodes carry counts of what refers to them (layout 4, see [`crate::sws`]): a store
//!   of an earlier layout gets them once, from each SWS's roots and its checkouts' trees.
//!
//! The move is one write transaction: a crash leaves either the old layout or the new one. The
//! emptied tables stay as empty names (LMDB cannot drop a named table's entry without its
//! handle's help) and are never written again. The same transaction records the layout
//! ([`LAYOUT`]) in `meta`, and a store recording a later one is refused, never misread.

use std::path::Path;

use heed::types::{Bytes, Str};
use heed::{Database, Env, RoTxn, RwTxn, WithoutTls};

use super::Store;
use crate::agents::{clock_key, Clock};
use crate::error::{Error, Result};
use crate::sws;

/// This build's table layout: 1 kept an SWS's records in tables of their own, 2 moved them into
/// `sws` behind record tags (an agent's clock at `name || 0`), 3 keeps the clock at
/// `name || 1`, 4 counts the references to staged nodes (an older build would patch without
/// counting, and a later drop would take what its trees use). Raise it with every change an
/// older build would misread.
pub(crate) const LAYOUT: u64 = 4;

/// The first layout whose staged nodes are counted ([`sws::gc`]).
const COUNTED: u64 = 4;

/// The `meta` key of the layout a store was last written in (8 bytes, big-endian). Stores from
/// before it was recorded lack it, and are upgraded as layout 1 or 2.
const LAYOUT_KEY: &str = "layout";

/// The layout recorded in the `meta` table, if any.
fn recorded_layout(meta: Database<Str, Bytes>, txn: &RoTxn<'_, WithoutTls>) -> Result<Option<u64>> {
    match meta.get(txn, LAYOUT_KEY)? {
        None => Ok(None),
        Some(raw) => <[u8; 8]>::try_from(raw)
            .map(|bytes| Some(u64::from_be_bytes(bytes)))
            .map_err(|_| {
                Error::InvalidInput(format!(
                    "the store's layout record is damaged ({} bytes)",
                    raw.len()
                ))
            }),
    }
}

/// Refuses, before anything is written, a store in `dir` recording a layout newer than this
/// build's. Finds `meta` by name: such a store may lack tables this build would create.
pub(super) fn refuse_newer(env: &Env<WithoutTls>, dir: &Path) -> Result<()> {
    let rtxn = env.read_txn()?;
    match env.open_database::<Str, Bytes>(&rtxn, Some("meta"))? {
        Some(meta) => check_layout(recorded_layout(meta, &rtxn)?, dir),
        None => Ok(()),
    }
}

/// Refuses a store recording a layout newer than this build's.
fn check_layout(recorded: Option<u64>, dir: &Path) -> Result<()> {
    match recorded {
        Some(found) if found > LAYOUT => Err(Error::NewerLayout {
            path: dir.to_path_buf(),
            found,
            supported: LAYOUT,
        }),
        _ => Ok(()),
    }
}

/// One table of an earlier layout and where its records go now.
struct Legacy {
    /// The old table's name.
    name: &'static str,
    /// The table its records move to.
    target: fn(&Store) -> Database<Bytes, Bytes>,
    /// The record's key in the new table, from its old key; `None` for a malformed key.
    key: fn(&[u8]) -> Option<Vec<u8>>,
    /// What to store when the new table already holds `present` and the old one `old`; `None`
    /// keeps `present`.
    merge: fn(present: &[u8], old: &[u8]) -> Option<Vec<u8>>,
}

/// An old SWS record key (`id || rest`) with a record tag after the id; `None` when the key is
/// too short to hold an id.
fn tagged(tag: u8, old: &[u8]) -> Option<Vec<u8>> {
    (old.len() > 16).then(|| [&old[..16], &[tag], &old[16..]].concat())
}

/// A record the new layout already holds was written by this version meanwhile: it wins.
fn keep_present(_present: &[u8], _old: &[u8]) -> Option<Vec<u8>> {
    None
}

/// Two clocks of one agent: a clock never goes back, so the later `ts` stays, with the count of
/// deliveries the current layout keeps.
fn later_clock(present: &[u8], old: &[u8]) -> Option<Vec<u8>> {
    let old = Clock::decode(old)?;
    match Clock::decode(present) {
        Some(present) if present.ts >= old.ts => None,
        present => Some(
            Clock {
                ts: old.ts,
                delivered: present.map_or(0, |p| p.delivered),
                floor: old.ts.max(present.map_or(0, |p| p.floor)),
            }
            .encode()
            .to_vec(),
        ),
    }
}

/// The key of an agent's clock from the bare agent name the `agent_clock` table used.
fn clock_of_name(old: &[u8]) -> Option<Vec<u8>> {
    let name = std::str::from_utf8(old).ok()?;
    Some(clock_key(name))
}

const LEGACY: [Legacy; 4] = [
    Legacy {
        name: "staged",
        target: |store| store.sws,
        key: |old| tagged(sws::STAGED_TAG, old),
        merge: keep_present,
    },
    Legacy {
        name: "sws_history",
        target: |store| store.sws,
        key: |old| tagged(sws::HISTORY_TAG, old),
        merge: keep_present,
    },
    Legacy {
        name: "sws_patches",
        target: |store| store.sws,
        key: |old| tagged(sws::PATCH_TAG, old),
        merge: keep_present,
    },
    Legacy {
        name: "agent_clock",
        target: |store| store.agent_msgs,
        key: clock_of_name,
        merge: later_clock,
    },
];

/// Key of an agent's clock in the layout before this one: `name || 0`.
fn previous_clock_key(name: &str) -> Vec<u8> {
    [name.as_bytes(), &[0]].concat()
}

/// Registered agents whose clock is still at its previous key.
fn clocks_to_move(store: &Store, txn: &RoTxn<'_, WithoutTls>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in store.agents.iter(txn)? {
        let (name, _) = entry?;
        if store
            .agent_msgs
            .get(txn, &previous_clock_key(name))?
            .is_some()
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Moves every record of an earlier layout into today's tables and records today's layout;
/// returns how many records moved. Refuses a store (in `dir`) of a later layout. Cheap when the
/// store is up to date: one read transaction, no writer lock.
pub(super) fn run(env: &Env<WithoutTls>, store: &Store, dir: &Path) -> Result<u64> {
    {
        let rtxn = env.read_txn()?;
        let recorded = recorded_layout(store.meta, &rtxn)?;
        check_layout(recorded, dir)?;
        let mut pending = !clocks_to_move(store, &rtxn)?.is_empty();
        for legacy in &LEGACY {
            if let Some(table) = env.open_database::<Bytes, Bytes>(&rtxn, Some(legacy.name))? {
                pending |= !table.is_empty(&rtxn)?;
            }
        }
        if !pending && recorded == Some(LAYOUT) {
            return Ok(0);
        }
    }
    // Another process may have moved them meanwhile; under the writer lock, look again.
    let mut wtxn = env.write_txn()?;
    check_layout(recorded_layout(store.meta, &wtxn)?, dir)?;
    let mut moved = 0;
    for legacy in &LEGACY {
        moved += move_table(env, &mut wtxn, store, legacy)?;
    }
    moved += move_clocks(&mut wtxn, store)?;
    if recorded_layout(store.meta, &wtxn)?.is_none_or(|layout| layout < COUNTED) {
        let counted = sws::gc::count_legacy(store, &mut wtxn)?;
        if counted > 0 {
            tracing::info!(sws = counted, "counted the staged nodes of every SWS");
        }
    }
    store
        .meta
        .put(&mut wtxn, LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
    wtxn.commit()?;
    if moved == 0 {
        return Ok(0);
    }
    tracing::info!(
        records = moved,
        "moved records into this version's table layout"
    );
    Ok(moved)
}

/// Puts `old` at `key` of `target`, merged with what is already there.
fn put_merged(
    wtxn: &mut RwTxn<'_>,
    target: Database<Bytes, Bytes>,
    key: &[u8],
    old: &[u8],
    merge: fn(&[u8], &[u8]) -> Option<Vec<u8>>,
) -> Result<()> {
    let keep = match target.get(wtxn, key)? {
        None => Some(old.to_vec()),
        Some(present) => merge(present, old),
    };
    if let Some(keep) = keep {
        target.put(wtxn, key, &keep)?;
    }
    Ok(())
}

fn move_clocks(wtxn: &mut RwTxn<'_>, store: &Store) -> Result<u64> {
    let names = clocks_to_move(store, wtxn)?;
    for name in &names {
        let previous = previous_clock_key(name);
        let Some(old) = store.agent_msgs.get(wtxn, &previous)?.map(<[u8]>::to_vec) else {
            continue;
        };
        put_merged(wtxn, store.agent_msgs, &clock_key(name), &old, later_clock)?;
        store.agent_msgs.delete(wtxn, &previous)?;
    }
    Ok(names.len() as u64)
}

fn move_table(
    env: &Env<WithoutTls>,
    wtxn: &mut RwTxn<'_>,
    store: &Store,
    legacy: &Legacy,
) -> Result<u64> {
    let Some(table) = env.open_database::<Bytes, Bytes>(wtxn, Some(legacy.name))? else {
        return Ok(0);
    };
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = table
        .iter(wtxn)?
        .map(|entry| entry.map(|(key, value)| ((legacy.key)(key), value.to_vec())))
        .collect::<std::result::Result<_, _>>()?;
    let target = (legacy.target)(store);
    let mut moved = 0;
    for (key, value) in &records {
        let Some(key) = key else {
            tracing::warn!(
                table = legacy.name,
                "dropping a record whose key names no SWS or agent"
            );
            continue;
        };
        put_merged(wtxn, target, key, value, legacy.merge)?;
        moved += 1;
    }
    table.clear(wtxn)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::source::Source;
    use crate::sws::{SwsId, SwsSource, SwsState};

    /// Writes records the way the previous version did, straight into its tables.
    fn write_legacy(store: &Store, id: SwsId, node: &NodeId) {
        let env = &store.env;
        let mut wtxn = env.write_txn().unwrap();
        let table = |wtxn: &mut RwTxn<'_>, name: &str| {
            env.create_database::<Bytes, Bytes>(wtxn, Some(name))
                .unwrap()
        };
        let staged = table(&mut wtxn, "staged");
        staged
            .put(
                &mut wtxn,
                &[&id.0[..], node.as_bytes()].concat(),
                b"node bytes",
            )
            .unwrap();
        let history = table(&mut wtxn, "sws_history");
        history
            .put(
                &mut wtxn,
                &[&id.0[..], &1u64.to_be_bytes()].concat(),
                b"record",
            )
            .unwrap();
        let patches = table(&mut wtxn, "sws_patches");
        patches
            .put(
                &mut wtxn,
                &[&id.0[..], b"patch-1"].concat(),
                &1u64.to_be_bytes(),
            )
            .unwrap();
        let clock = table(&mut wtxn, "agent_clock");
        clock
            .put(&mut wtxn, b"agent7", &42u64.to_be_bytes())
            .unwrap();
        clock
            .put(&mut wtxn, b"agent8", &9u64.to_be_bytes())
            .unwrap();
        // A damaged key, too short to hold an SWS id: dropped, not moved.
        staged.put(&mut wtxn, b"short", b"junk").unwrap();
        wtxn.commit().unwrap();
    }

    #[test]
    fn legacy_records_move_once_into_the_tagged_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let id = SwsId([7; 16]);
        let node = NodeId::of_bytes(b"node bytes");
        let state = SwsState {
            owner: "agent7".into(),
            name: None,
            branch: "refs/heads/main".into(),
            base: node,
            tree: node,
            patches: 1,
            conflicts: Vec::new(),
            delegates: Vec::new(),
        };
        {
            let mut wtxn = store.env.write_txn().unwrap();
            let bytes = crate::cbor::to_canonical_bytes(&state).unwrap();
            store.sws.put(&mut wtxn, &id.0, &bytes).unwrap();
            // A damaged short key before the SWS: list() skips it and still finds the SWS.
            store.sws.put(&mut wtxn, b"\x01bad", b"junk").unwrap();
            // agent7 already has a later clock in the previous layout (at `name || 0`): it
            // must not go back. agent9 has one in each of the last two layouts.
            for name in ["agent7", "agent9"] {
                store.agents.put(&mut wtxn, name, b"record").unwrap();
            }
            store
                .agent_msgs
                .put(&mut wtxn, b"agent7\0", &50u64.to_be_bytes())
                .unwrap();
            store
                .agent_msgs
                .put(&mut wtxn, b"agent9\0", &6u64.to_be_bytes())
                .unwrap();
            let current = Clock {
                ts: 5,
                delivered: 7,
                floor: 5,
            };
            store
                .agent_msgs
                .put(&mut wtxn, b"agent9\x01", &current.encode())
                .unwrap();
            wtxn.commit().unwrap();
        }
        write_legacy(&store, id, &node);
        drop(store);

        // Opening moves them; nothing is left to move afterwards.
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(
            run(&store.env, &store, dir.path()).unwrap(),
            0,
            "a second open moves nothing"
        );
        {
            let txn = store.read().unwrap();
            for legacy in &LEGACY {
                let table = store
                    .env
                    .open_database::<Bytes, Bytes>(&txn, Some(legacy.name))
                    .unwrap()
                    .unwrap();
                assert!(table.is_empty(&txn).unwrap(), "{} was emptied", legacy.name);
            }
        }

        let txn = store.read().unwrap();
        let source = SwsSource::new(&store, &txn, id);
        assert_eq!(source.bytes(&node).unwrap(), Some(&b"node bytes"[..]));
        assert_eq!(
            store.sws.get(&txn, &id.history_key(1)).unwrap(),
            Some(&b"record"[..])
        );
        assert_eq!(
            store.sws.get(&txn, &id.patch_key("patch-1")).unwrap(),
            Some(&1u64.to_be_bytes()[..])
        );
        let clock = |name: &str| {
            store
                .agent_msgs
                .get(&txn, &clock_key(name))
                .unwrap()
                .and_then(Clock::decode)
        };
        assert_eq!(
            clock("agent7"),
            Some(Clock {
                ts: 50,
                delivered: 0,
                floor: 50,
            }),
            "a clock never goes back"
        );
        assert_eq!(
            clock("agent8"),
            Some(Clock {
                ts: 9,
                delivered: 0,
                floor: 9,
            })
        );
        assert_eq!(
            clock("agent9"),
            Some(Clock {
                ts: 6,
                delivered: 7,
                floor: 6,
            }),
            "the later ts, with the current layout's count"
        );
        for name in ["agent7", "agent9"] {
            assert_eq!(
                store
                    .agent_msgs
                    .get(&txn, &previous_clock_key(name))
                    .unwrap(),
                None,
                "{name}'s clock left its previous key"
            );
        }
        let listed = sws::list(&store, &txn).unwrap();
        assert_eq!(
            listed,
            vec![(id, state)],
            "records are not taken for SWS states"
        );
    }

    #[test]
    fn a_store_records_its_layout_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let layout = |store: &Store| recorded_layout(store.meta, &store.read().unwrap()).unwrap();
        assert_eq!(
            layout(&store),
            Some(LAYOUT),
            "a new store records its layout"
        );
        {
            let mut wtxn = store.env.write_txn().unwrap();
            store.meta.delete(&mut wtxn, LAYOUT_KEY).unwrap();
            wtxn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(
            layout(&store),
            Some(LAYOUT),
            "a store from before the record gets it when opened"
        );
        {
            let mut wtxn = store.env.write_txn().unwrap();
            store
                .meta
                .put(&mut wtxn, LAYOUT_KEY, &(LAYOUT + 1).to_be_bytes())
                .unwrap();
            wtxn.commit().unwrap();
        }
        drop(store);
        match Store::open(dir.path(), false) {
            Err(Error::NewerLayout {
                found, supported, ..
            }) => assert_eq!((found, supported), (LAYOUT + 1, LAYOUT)),
            Err(other) => panic!("a newer layout gave {other}"),
            Ok(_) => panic!("a store of a newer layout was opened"),
        }
        assert!(
            matches!(
                Store::open(dir.path(), true),
                Err(Error::NewerLayout { .. })
            ),
            "creating tables in it is refused too"
        );
    }
}
