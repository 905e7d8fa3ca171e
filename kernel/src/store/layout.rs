//! The store's layout version: recorded in `meta`, raised with every change an older build
//! would misread, and checked before anything reads a store — a store of a later layout is
//! refused, never misread. `crate::upgrade` brings an older one up to [`LAYOUT`].

use std::path::Path;

use heed::types::{Bytes, Str};
use heed::{Database, Env, RoTxn, WithoutTls};

use crate::error::{Error, Result};

/// This build's table layout: 1 kept an SWS's records in tables of their own, 2 moved them into
/// `sws` behind record tags (an agent's clock at `name || 0`), 3 keeps the clock at
/// `name || 1`, 4 counts the references to staged nodes (an older build would patch without
/// counting, and a later drop would take what its trees use), 5 indexes what other universes
/// may see (an older build would publish without showing), 6 packs large stored values into
/// segments (an older build would call them corrupt). Raise it with every change an older
/// build would misread.
pub(crate) const LAYOUT: u64 = 6;

/// The `meta` key of the layout a store was last written in (8 bytes, big-endian). Stores from
/// before it was recorded lack it, and are upgraded as layout 1 or 2.
pub(crate) const LAYOUT_KEY: &str = "layout";

/// The layout recorded in the `meta` table, if any.
pub(crate) fn recorded_layout(
    meta: Database<Str, Bytes>,
    txn: &RoTxn<'_, WithoutTls>,
) -> Result<Option<u64>> {
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
pub(crate) fn check_layout(recorded: Option<u64>, dir: &Path) -> Result<()> {
    match recorded {
        Some(found) if found > LAYOUT => Err(Error::NewerLayout {
            path: dir.to_path_buf(),
            found,
            supported: LAYOUT,
        }),
        _ => Ok(()),
    }
}
