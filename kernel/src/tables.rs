//! The registry of the store's module tables and upgrade steps: the one list [`Store::open`]
//! opens a store with, and the steps it runs on an older one. Each table and each step is declared by the module that owns it (`sws`,
//! `agents`, `checkout`, `sync::staging`, `federation::publish`, `federation::peers`); this module only lists them, so the store itself
//! names no module above it. A table's slot is its position here; the store refuses a registry
//! where they differ.

use std::path::Path;

use crate::error::Result;
use crate::store::{Declared, Store};
use crate::upgrade::{self, UpgradeStep};
use crate::{agents, checkout, federation, sws, sync};

/// Every module table, in slot order.
const TABLES: [Declared; 15] = [
    sws::RECORDS_TABLE,
    sws::WORKING_TABLE,
    agents::AGENTS_TABLE,
    agents::MESSAGES_TABLE,
    checkout::STATES_TABLE,
    checkout::INDEX_TABLE,
    sync::staging::STAGED_TABLE,
    federation::publish::LOG_TABLE,
    federation::peers::PEERS_TABLE,
    federation::visible::VISIBLE_TABLE,
    federation::foreign::NODES_TABLE,
    federation::foreign::PENDING_TABLE,
    federation::known::KNOWN_TABLE,
    federation::visible::SUMMARIES_TABLE,
    agents::REQUESTS_TABLE,
];

/// Counting the staged nodes of a store from before layout 4: the SWS records are `sws`'s, the
/// trees checkouts hold are `checkout`'s.
const COUNT_STAGED: UpgradeStep = UpgradeStep {
    name: "counted staged nodes",
    pending: |_, _, _, recorded| Ok(recorded.is_none_or(|layout| layout < sws::gc::COUNTED)),
    run: |_, store, wtxn, recorded| {
        if recorded.is_some_and(|layout| layout >= sws::gc::COUNTED) {
            return Ok(0);
        }
        let pins = checkout::pins_by_sws(store, wtxn)?;
        sws::gc::count_legacy(store, wtxn, pins)
    },
};

/// Every upgrade step, in the order they run.
pub(crate) const STEPS: [UpgradeStep; 4] = [
    sws::TAG_RECORDS,
    agents::MOVE_CLOCKS,
    COUNT_STAGED,
    federation::publish::SHOW_PUBLISHED,
];

impl Store {
    /// Opens (creating if asked) the store in directory `dir`, bringing an older layout up to
    /// this build's.
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        let store = Store::open_tables(dir, create, &TABLES)?;
        // Records the layout of a new store; moves an older one's records once.
        upgrade::run(&store, dir, &STEPS)?;
        Ok(store)
    }
}
