//! Quarantine: what happens to a universe that misbehaves — signs a head with a key that is not
//! its own, shows two histories (a second head for an epoch, a log that no longer extends the
//! one verified, a published name that now names another snapshot under the same epoch), or
//! sends a manifest or closure that fails verification. One transaction records why, with the
//! head held and the statement offered as evidence, drops whatever its import had staged, and
//! leaves an audit record; from then on nothing is imported from it until
//! `jit federation release`.
//!
//! A rollback (an older head than the one held), a replayed identity, an oversized statement
//! or an unreachable peer is refused without quarantine: none proves the publisher lied, and
//! the last verified state stays what the next exchange resumes from.

use uuid::Uuid;

use super::known::{self, Quarantine};
use super::{foreign, refusal};
use crate::error::{Code, Error, Result};
use crate::store::Store;

/// The audit action of a quarantine.
const QUARANTINED: &str = "federation.quarantine";

fn describe_head(bytes: Option<&[u8]>) -> String {
    match bytes.map(jit_proto::head::SignedHead::decode) {
        Some(Ok(signed)) => format!(
            "epoch {} size {} root {} (signed head {})",
            signed.head.epoch,
            signed.head.size,
            hex::encode(signed.head.root),
            hex::encode(bytes.unwrap_or_default())
        ),
        Some(Err(_)) => format!("{} bytes", bytes.map_or(0, <[u8]>::len)),
        None => "nothing".into(),
    }
}

/// The error a quarantined universe is refused with.
pub fn refusal_for(universe: Uuid, quarantine: &Quarantine) -> Error {
    refusal(
        Code::Quarantined,
        format!(
            "universe {universe} is quarantined ({}): {}; held {}, offered {}. Nothing more is imported from it until `jit federation release {universe}`",
            quarantine.code,
            quarantine.reason,
            describe_head(quarantine.held.as_ref().map(|b| b.as_slice())),
            describe_head(quarantine.offered.as_ref().map(|b| b.as_slice())),
        ),
    )
}

/// Refuses a quarantined universe.
pub fn check(store: &Store, universe: Uuid) -> Result<()> {
    let txn = store.read()?;
    match known::get(store, &txn, universe)?.and_then(|k| k.quarantine) {
        Some(quarantine) => Err(refusal_for(universe, &quarantine)),
        None => Ok(()),
    }
}

/// Quarantines `universe` for `fault`, with the head held and what it offered; returns the
/// error to report. Nothing of the failed exchange stays staged.
pub fn impose(
    store: &Store,
    universe: Uuid,
    fault: &Error,
    offered: Option<Vec<u8>>,
) -> Result<Error> {
    impose_with(store, universe, fault, offered, None)
}

/// [`impose`], keeping `proof` (an equivocation proof the fault made, to gossip) as well.
pub(crate) fn impose_with(
    store: &Store,
    universe: Uuid,
    fault: &Error,
    offered: Option<Vec<u8>>,
    proof: Option<Vec<u8>>,
) -> Result<Error> {
    let quarantine = store.operation(QUARANTINED, |op| {
        let mut known = known::get(op.store(), op.txn(), universe)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {universe} was never met")))?;
        let quarantine = Quarantine {
            code: fault.code().as_str().to_owned(),
            reason: fault.to_string(),
            held: known.head.clone(),
            offered: offered.map(serde_bytes::ByteBuf::from),
            at: super::session::now_signed(),
        };
        known.quarantine = Some(quarantine.clone());
        if let Some(proof) = &proof {
            known.proof = Some(serde_bytes::ByteBuf::from(proof.clone()));
        }
        known::put(op, universe, &known)?;
        foreign::clear_staged(op, universe)?;
        Ok(quarantine)
    })?;
    let error = refusal_for(universe, &quarantine);
    store.audit(QUARANTINED, &error)?;
    Ok(error)
}

/// `jit federation release UNIVERSE`: lifts the quarantine. With `forget`, the head and log
/// held are dropped too, so the next import trusts the universe's current history afresh
/// (what was imported stays).
pub fn release(store: &Store, universe: Uuid, forget: bool) -> Result<()> {
    let lifted = store.operation("federation.release", |op| {
        let mut known = known::get(op.store(), op.txn(), universe)?
            .ok_or_else(|| Error::InvalidInput(format!("universe {universe} was never met")))?;
        let lifted = known.quarantine.take();
        if forget {
            known.head = None;
            known.entries.clear();
        }
        known::put(op, universe, &known)?;
        Ok(lifted)
    })?;
    // The audit trail says who was let back in, and what for.
    if let Some(lifted) = lifted {
        let record = Error::Federation {
            code: Code::Quarantined,
            message: format!(
                "the quarantine of universe {universe} was released ({}: {})",
                lifted.code, lifted.reason
            ),
        };
        store.audit("federation.release", &record)?;
    }
    Ok(())
}
