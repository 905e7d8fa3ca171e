//! The per-sender ledger of answered messages (the window) and each sender's clock, kept in
//! this module's `agent_msgs` table and written in the same transaction as each message's
//! effect: what makes a retry get the original answer and a replay get refused. Also the
//! table's upgrade step (clocks that moved in earlier layouts).

use heed::types::Bytes;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Code, Error, Result};
use crate::rpc::protocol::Response;
use crate::store::{Declared, Op, Store, TableDef};
use crate::upgrade::{self, Legacy, UpgradeStep};

use super::registry::Verified;

/// Agent name || 0 || msg_id → digest, answer and place of one of the agent's last delivered
/// messages; agent name || 1 → its clock (last delivered ts, messages delivered).
pub(super) const MESSAGES: TableDef<Bytes, Bytes> = TableDef::new("agent_msgs", 3);
/// The message-window table, for the registry.
pub(crate) const MESSAGES_TABLE: Declared = MESSAGES.declared();

/// How many of a sender's latest delivered messages keep their answers for retries. A retry of
/// an older message is refused as `stale` (its `ts` is at or below the sender's floor,
/// `Clock::floor`), so a client must keep fewer messages than this unanswered; the Rust
/// library keeps at most a quarter.
pub const WINDOW: u64 = 4096;

/// Every this many deliveries of a sender, the answers that fell out of its window are dropped:
/// a sender's window holds at most `WINDOW + TRIM_EVERY` answers (once the records an earlier
/// version kept without limit are gone).
pub(super) const TRIM_EVERY: u64 = 1024;

/// Most answers one trim drops: twice what a trim period adds, so a window inherited from an
/// earlier version shrinks step by step instead of stalling one delivery.
pub(super) const TRIM_MAX: usize = 2 * TRIM_EVERY as usize;

/// A remembered answer to one message.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Delivered {
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    response: Vec<u8>,
    /// The message's place among its sender's deliveries (1, 2, …); 0 in records written before
    /// windows were trimmed, which the first trim drops.
    #[serde(default)]
    n: u64,
    /// The message's `ts`; absent in records written before unanswered messages were taken
    /// late ([`Clock::floor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ts: Option<u64>,
}

/// Key of a delivered message's record in the sender's window: `sender || 0 || msg_id`.
pub(super) fn window_key(sender: &str, msg_id: &str) -> Vec<u8> {
    [sender.as_bytes(), &[0], msg_id.as_bytes()].concat()
}

/// Key of the sender's [`Clock`]: `sender || 1`, right after the sender's window records. A
/// sender whose `msg_id`s grow with its `ts` (the Rust library's do) writes its newest window
/// record next to its clock, so a delivery usually dirties one leaf of the table, not two.
pub(crate) fn clock_key(sender: &str) -> Vec<u8> {
    [sender.as_bytes(), &[1]].concat()
}

/// Where a sender stands: its highest delivered `ts`, how many of its messages were delivered,
/// and below which `ts` a message no longer in its window may have been delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// The highest `ts` delivered.
    pub(crate) ts: u64,
    /// How many messages of the sender were delivered.
    pub(crate) delivered: u64,
    /// The highest `ts` among the answers dropped from the window (or, for a clock an earlier
    /// version stored, its `ts` then): every delivered message above it is still in the
    /// window, so one above it that is not was never delivered — a request lost on the way,
    /// resent — and is taken now. One at or below it is refused as `stale`.
    pub(crate) floor: u64,
}

impl Clock {
    /// Reads a stored clock: `ts || delivered || floor` (big-endian), or `ts || delivered`, or
    /// `ts` alone as earlier versions stored it (their floor is their `ts`: which older
    /// messages they delivered is no longer known); `None` for anything else.
    pub(crate) fn decode(raw: &[u8]) -> Option<Clock> {
        let word = |at: usize| {
            raw.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        match raw.len() {
            8 => Some(Clock {
                ts: word(0)?,
                delivered: 0,
                floor: word(0)?,
            }),
            16 => Some(Clock {
                ts: word(0)?,
                delivered: word(8)?,
                floor: word(0)?,
            }),
            24 => Some(Clock {
                ts: word(0)?,
                delivered: word(8)?,
                floor: word(16)?,
            }),
            _ => None,
        }
    }

    /// The stored form.
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..16].copy_from_slice(&self.delivered.to_be_bytes());
        out[16..].copy_from_slice(&self.floor.to_be_bytes());
        out
    }
}

/// Drops up to [`TRIM_MAX`] of the sender's remembered answers with a place at or below
/// `last_dropped`. Records that cannot be read are left alone (and reported). Returns the
/// sender's floor after the trim: the highest `ts` dropped, or `clock_ts` if a dropped record
/// does not say its `ts` (written by an earlier version).
pub(super) fn trim_window(
    op: &mut Op<'_>,
    sender: &str,
    last_dropped: u64,
    floor: u64,
    clock_ts: u64,
) -> Result<u64> {
    let store = op.store();
    let prefix = window_key(sender, "");
    let mut stale = Vec::new();
    let mut floor = floor;
    for entry in store.table(&MESSAGES).prefix_iter(op.txn(), &prefix)? {
        if stale.len() == TRIM_MAX {
            break;
        }
        let (key, raw) = entry?;
        match cbor::from_canonical_bytes::<Delivered>(raw) {
            Ok(record) if record.n <= last_dropped => {
                floor = floor.max(record.ts.unwrap_or(clock_ts));
                stale.push(key.to_vec());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, sender, "an unreadable window record is kept");
            }
        }
    }
    for key in &stale {
        store.table(&MESSAGES).delete(op.wtxn(), key)?;
    }
    Ok(floor)
}

// The agents' part of the store upgrade (registered in `crate::tables`): the clock of an agent
// moved from a table of its own (`agent_clock`, layout 1) to `agent_msgs` at `name || 0`
// (layout 2) and then to `name || 1` (layout 3), right after the agent's window records.

/// The upgrade step that moves every agent's clock to where this layout keeps it.
pub(crate) const MOVE_CLOCKS: UpgradeStep = UpgradeStep {
    name: "agent clocks",
    pending: |env, store, rtxn, _| {
        Ok(upgrade::legacy_pending(env, rtxn, &LEGACY_CLOCKS)?
            || !clocks_to_move(store, rtxn)?.is_empty())
    },
    run: |env, store, wtxn, _| {
        Ok(upgrade::move_legacy(env, wtxn, store, &LEGACY_CLOCKS)? + move_clocks(wtxn, store)?)
    },
};

/// Layout 1's table of agent clocks, keyed by bare agent name.
pub(super) const LEGACY_CLOCKS: [Legacy; 1] = [Legacy {
    name: "agent_clock",
    target: |store| store.table(&MESSAGES),
    key: clock_of_name,
    merge: later_clock,
}];

/// Two clocks of one agent: a clock never goes back, so the later `ts` stays, with the count of
/// deliveries the current layout keeps.
pub(super) fn later_clock(present: &[u8], old: &[u8]) -> Option<Vec<u8>> {
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
pub(super) fn clock_of_name(old: &[u8]) -> Option<Vec<u8>> {
    let name = std::str::from_utf8(old).ok()?;
    Some(clock_key(name))
}

/// Key of an agent's clock in the layout before this one: `name || 0`.
pub(crate) fn previous_clock_key(name: &str) -> Vec<u8> {
    [name.as_bytes(), &[0]].concat()
}

/// Registered agents whose clock is still at its previous key.
pub(super) fn clocks_to_move(
    store: &Store,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in super::registry::names(store, txn)? {
        if store
            .table(&MESSAGES)
            .get(txn, &previous_clock_key(&name))?
            .is_some()
        {
            names.push(name);
        }
    }
    Ok(names)
}

pub(super) fn move_clocks(wtxn: &mut heed::RwTxn<'_>, store: &Store) -> Result<u64> {
    let names = clocks_to_move(store, wtxn)?;
    for name in &names {
        let previous = previous_clock_key(name);
        let Some(old) = store
            .table(&MESSAGES)
            .get(wtxn, &previous)?
            .map(<[u8]>::to_vec)
        else {
            continue;
        };
        upgrade::put_merged(
            wtxn,
            store.table(&MESSAGES),
            &clock_key(name),
            &old,
            later_clock,
        )?;
        store.table(&MESSAGES).delete(wtxn, &previous)?;
    }
    Ok(names.len() as u64)
}

pub(super) fn plane_error(code: Code, message: String) -> Error {
    Error::Remote {
        code: code.as_str().to_owned(),
        message,
        details: None,
    }
}

pub(super) fn deliver_in(
    op: &mut Op<'_>,
    verified: &Verified,
    run: impl FnOnce(&mut Op<'_>) -> Result<Response>,
) -> Result<Response> {
    let envelope = &verified.envelope;
    let store = op.store();
    let slot = window_key(&envelope.sender, &envelope.msg_id);
    if let Some(raw) = store.table(&MESSAGES).get(op.txn(), &slot)? {
        let delivered: Delivered = cbor::from_canonical_bytes(raw)?;
        if delivered.digest == verified.digest {
            // A retry: the original answer, no second effect.
            return Ok(Response::decode(&delivered.response)?);
        }
        return Err(plane_error(
            Code::Replayed,
            format!(
                "msg_id {:?} was already used for other content",
                envelope.msg_id
            ),
        ));
    }
    let clock_slot = clock_key(&envelope.sender);
    let clock = match store.table(&MESSAGES).get(op.txn(), &clock_slot)? {
        None => None,
        Some(raw) => Some(Clock::decode(raw).ok_or_else(|| {
            Error::InvalidInput(format!(
                "the stored clock of {:?} is damaged ({} bytes)",
                envelope.sender,
                raw.len()
            ))
        })?),
    };
    // Not in the window: never delivered, unless its ts is at or below the floor (delivered
    // answers older than the window are dropped; past it only the ts tells).
    if let Some(last) = clock.filter(|clock| envelope.ts <= clock.floor) {
        return Err(plane_error(
            Code::Stale,
            format!(
                "ts {} is not after the sender's last remembered ({}); a message this old is no \
                 longer told from a replay",
                envelope.ts, last.floor
            ),
        ));
    }
    let response = run(op)?;
    let n = clock.map_or(0, |clock| clock.delivered) + 1;
    let record = Delivered {
        digest: verified.digest.to_vec(),
        response: response.encode()?,
        n,
        ts: Some(envelope.ts),
    };
    let bytes = cbor::to_canonical_bytes(&record)?;
    store.table(&MESSAGES).put(op.wtxn(), &slot, &bytes)?;
    let mut clock = Clock {
        ts: clock.map_or(envelope.ts, |clock| clock.ts.max(envelope.ts)),
        delivered: n,
        floor: clock.map_or(0, |clock| clock.floor),
    };
    store
        .table(&MESSAGES)
        .put(op.wtxn(), &clock_slot, &clock.encode())?;
    if n % TRIM_EVERY == 0 && n > WINDOW {
        // In a savepoint of its own: a trim that fails (a store too full for the deletions)
        // leaves the window (and the floor) as it was and the message goes on.
        let sender = envelope.sender.as_str();
        let trimmed = op.savepoint(|child| {
            let floor = trim_window(child, sender, n - WINDOW, clock.floor, clock.ts)?;
            if floor != clock.floor {
                clock.floor = floor;
                child
                    .store()
                    .table(&MESSAGES)
                    .put(child.wtxn(), &clock_slot, &clock.encode())?;
            }
            Ok(())
        });
        if let Err(error) = trimmed {
            tracing::warn!(%error, sender, "could not trim the message window");
        }
    }
    Ok(response)
}
