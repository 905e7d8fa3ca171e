//! Moves the records of earlier layouts into today's, once, when a store is opened.
//!
//! The steps belong to the modules whose tables they change and come in through the registry
//! (`crate::tables`): the SWS records that moved into the `sws` table behind record tags
//! ([`crate::sws`]), the agents' clocks that moved within `agent_msgs` ([`crate::agents`]), the
//! counts of staged nodes (layout 4, [`crate::sws`]). This file only orders them: it reads the
//! recorded layout, refuses a newer one, runs every pending step in one write transaction and
//! records this build's layout ([`LAYOUT`]) in the same transaction, so a crash leaves either
//! the old layout or the new. Emptied tables stay as empty names (LMDB cannot drop a named
//! table's entry without its handle's help) and are never written again.

use std::path::Path;

use heed::types::Bytes;
use heed::{Database, Env, RoTxn, RwTxn, WithoutTls};

use crate::error::Result;
use crate::store::layout::{check_layout, recorded_layout, LAYOUT, LAYOUT_KEY};
use crate::store::Store;

/// [`UpgradeStep::pending`]: the environment, the store, a read transaction, the recorded layout.
pub type PendingFn =
    fn(&Env<WithoutTls>, &Store, &RoTxn<'_, WithoutTls>, Option<u64>) -> Result<bool>;

/// [`UpgradeStep::run`]: the environment, the store, the upgrade's write transaction, the
/// recorded layout.
pub type RunFn = fn(&Env<WithoutTls>, &Store, &mut RwTxn<'_>, Option<u64>) -> Result<u64>;

/// One module's part of bringing an older store up to this build's layout. Every step runs in
/// the one write transaction of the upgrade, so a crash leaves the old layout or the new.
pub struct UpgradeStep {
    /// What it does, for the log.
    pub name: &'static str,
    /// Whether the store still needs it (a cheap read; `recorded` is the layout the store
    /// recorded, none for a store from before layouts were recorded).
    pub pending: PendingFn,
    /// Does it; returns how many records it moved or counted.
    pub run: RunFn,
}

/// One table of an earlier layout and where its records go now.
pub(crate) struct Legacy {
    /// The old table's name.
    pub(crate) name: &'static str,
    /// The table its records move to.
    pub(crate) target: fn(&Store) -> Database<Bytes, Bytes>,
    /// The record's key in the new table, from its old key; `None` for a malformed key.
    pub(crate) key: fn(&[u8]) -> Option<Vec<u8>>,
    /// What to store when the new table already holds `present` and the old one `old`; `None`
    /// keeps `present`.
    pub(crate) merge: fn(present: &[u8], old: &[u8]) -> Option<Vec<u8>>,
}

/// An old SWS record key (`id || rest`) with a record tag after the id; `None` when the key is
/// too short to hold an id.
pub(crate) fn tagged(tag: u8, old: &[u8]) -> Option<Vec<u8>> {
    (old.len() > 16).then(|| [&old[..16], &[tag], &old[16..]].concat())
}

/// A record the new layout already holds was written by this version meanwhile: it wins.
pub(crate) fn keep_present(_present: &[u8], _old: &[u8]) -> Option<Vec<u8>> {
    None
}

/// Brings the store up to this build's layout with `steps` and records the layout; returns how
/// many records moved. Refuses a store (in `dir`) of a later layout. Cheap when the store is up
/// to date: one read transaction, no writer lock.
pub(crate) fn run(store: &Store, dir: &Path, steps: &[UpgradeStep]) -> Result<u64> {
    let env = &store.env;
    {
        let rtxn = env.read_txn()?;
        let recorded = recorded_layout(store.meta, &rtxn)?;
        check_layout(recorded, dir)?;
        let mut pending = false;
        for step in steps {
            pending |= (step.pending)(env, store, &rtxn, recorded)?;
        }
        if !pending && recorded == Some(LAYOUT) {
            return Ok(0);
        }
    }
    // Another process may have upgraded it meanwhile; under the writer lock, look again.
    let mut wtxn = env.write_txn()?;
    let recorded = recorded_layout(store.meta, &wtxn)?;
    check_layout(recorded, dir)?;
    let mut moved = 0;
    for step in steps {
        let done = (step.run)(env, store, &mut wtxn, recorded)?;
        if done > 0 {
            tracing::info!(
                step = step.name,
                records = done,
                "upgraded the store's layout"
            );
        }
        moved += done;
    }
    store
        .meta
        .put(&mut wtxn, LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
    wtxn.commit()?;
    Ok(moved)
}

/// Whether any of the `legacy` tables still holds records.
pub(crate) fn legacy_pending(
    env: &Env<WithoutTls>,
    rtxn: &RoTxn<'_, WithoutTls>,
    legacy: &[Legacy],
) -> Result<bool> {
    for table in legacy {
        if let Some(table) = env.open_database::<Bytes, Bytes>(rtxn, Some(table.name))? {
            if !table.is_empty(rtxn)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Moves every record of the `legacy` tables to where it goes now; returns how many moved.
pub(crate) fn move_legacy(
    env: &Env<WithoutTls>,
    wtxn: &mut RwTxn<'_>,
    store: &Store,
    legacy: &[Legacy],
) -> Result<u64> {
    let mut moved = 0;
    for table in legacy {
        moved += move_table(env, wtxn, store, table)?;
    }
    Ok(moved)
}

/// Puts `old` at `key` of `target`, merged with what is already there.
pub(crate) fn put_merged(
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
    use crate::agents::{clock_key, previous_clock_key, Clock};
    use crate::error::Error;
    use crate::id::NodeId;
    use crate::source::Source;
    use crate::sws::{self, SwsId, SwsSource, SwsState};

    /// A module's table by name, untyped: the test writes and reads layouts by hand.
    fn raw(store: &Store, name: &str) -> Database<Bytes, Bytes> {
        let txn = store.env.read_txn().unwrap();
        let table = store
            .env
            .open_database::<Bytes, Bytes>(&txn, Some(name))
            .unwrap()
            .unwrap();
        txn.commit().unwrap();
        table
    }

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
            raw(&store, "sws").put(&mut wtxn, &id.0, &bytes).unwrap();
            // A damaged short key before the SWS: list() skips it and still finds the SWS.
            raw(&store, "sws")
                .put(&mut wtxn, b"\x01bad", b"junk")
                .unwrap();
            // agent7 already has a later clock in the previous layout (at `name || 0`): it
            // must not go back. agent9 has one in each of the last two layouts.
            for name in ["agent7", "agent9"] {
                raw(&store, "agents")
                    .put(&mut wtxn, name.as_bytes(), b"record")
                    .unwrap();
            }
            raw(&store, "agent_msgs")
                .put(&mut wtxn, b"agent7\0", &50u64.to_be_bytes())
                .unwrap();
            raw(&store, "agent_msgs")
                .put(&mut wtxn, b"agent9\0", &6u64.to_be_bytes())
                .unwrap();
            let current = Clock {
                ts: 5,
                delivered: 7,
                floor: 5,
            };
            raw(&store, "agent_msgs")
                .put(&mut wtxn, b"agent9\x01", &current.encode())
                .unwrap();
            wtxn.commit().unwrap();
        }
        write_legacy(&store, id, &node);
        drop(store);

        // Opening moves them; nothing is left to move afterwards.
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(
            run(&store, dir.path(), &crate::tables::STEPS).unwrap(),
            0,
            "a second open moves nothing"
        );
        {
            let txn = store.read().unwrap();
            for legacy in ["staged", "sws_history", "sws_patches", "agent_clock"] {
                let table = store
                    .env
                    .open_database::<Bytes, Bytes>(&txn, Some(legacy))
                    .unwrap()
                    .unwrap();
                assert!(table.is_empty(&txn).unwrap(), "{legacy} was emptied");
            }
        }

        let txn = store.read().unwrap();
        let source = SwsSource::new(&store, &txn, id);
        assert_eq!(
            source.bytes(&node).unwrap().as_deref(),
            Some(&b"node bytes"[..])
        );
        assert_eq!(
            raw(&store, "sws").get(&txn, &id.history_key(1)).unwrap(),
            Some(&b"record"[..])
        );
        assert_eq!(
            raw(&store, "sws")
                .get(&txn, &id.patch_key("patch-1"))
                .unwrap(),
            Some(&1u64.to_be_bytes()[..])
        );
        let clock = |name: &str| {
            raw(&store, "agent_msgs")
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
                raw(&store, "agent_msgs")
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
