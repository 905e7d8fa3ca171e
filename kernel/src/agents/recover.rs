//! Recovering the plane's journal: delivering again, in order, the batches a dead daemon
//! acknowledged but never committed, before anything else writes; damage is set aside,
//! reported and audited, never a reason to drop the intact records.

use crate::error::{Code, Error, Result};
use crate::journal::{self, Journal};
use crate::log::LogOp;
use crate::repo::Repository;
use crate::store::Op;

use super::deliver::*;

/// Delivers journaled messages again inside `op` (after a crash, or after a transaction that
/// held acknowledged messages failed to commit): each is verified and run as it was the first
/// time. Those whose effect is already in the store are answered from the record of delivered
/// ids and change nothing; the others take effect now, in their original order. Returns how
/// many messages were replayed.
pub fn replay_into(repo: &Repository, op: &mut Op<'_>, messages: &[(String, Vec<u8>)]) -> usize {
    let refs: Vec<(&str, &[u8])> = messages
        .iter()
        .map(|(key, bytes)| (key.as_str(), bytes.as_slice()))
        .collect();
    let mut verified = Vec::with_capacity(refs.len());
    for (verdict, (key, _)) in check_all(repo.store(), &refs).into_iter().zip(&refs) {
        match verdict {
            Ok(message) => verified.push(message),
            Err(refused) => {
                let response = refused.response;
                tracing::warn!(key, ?response, "a journaled message no longer verifies")
            }
        }
    }
    deliver_into(repo, op, &verified);
    verified.len()
}

/// Name of the plane journal in a universe's `.jit` directory.
pub const JOURNAL_FILE: &str = "plane.journal";

/// Opens and locks this universe's plane journal for this process, after delivering again,
/// in one committed transaction, the journaled batches no committed transaction covers
/// ([`recover_in`]); returns the journal and how many messages were delivered. The daemon's
/// plane does this as it starts, before anything is served.
///
/// The store's writer lock is taken before the journal's: a process that finds the journal
/// held then knows its holder has recovered it or holds the writer lock, so its own writes
/// come after that recovery ([`recover_unowned_journal`]). The plane then keeps the journal
/// locked and takes the writer lock for each batch; that reversed order is safe only because
/// nothing ever waits for the journal's lock ([`Journal::open_patiently`] retries, briefly).
pub fn open_journal(repo: &Repository) -> Result<(Journal, usize)> {
    let op = repo.store().begin()?;
    let mut journal = Journal::open_patiently(&repo.jit_dir().join(JOURNAL_FILE))?;
    let delivered = recover_in(repo, op, &mut journal)?;
    Ok((journal, delivered))
}

/// Delivers again in `op`, and commits, the batches of `journal` no committed transaction
/// covers, then resets the journal; returns how many messages were delivered. `op` must have
/// begun before anything else could write, and is dropped unused when nothing is pending.
///
/// Records that could not be read (damage, not a write cut short at the end) do not stop the
/// others: what follows them is delivered too. Then a copy of the damaged journal is kept
/// aside, an error is logged and an audit record (action `plane.journal`, code
/// `journal_damaged`) says how many records were lost; `jit fsck` reports the copy.
pub fn recover_in(repo: &Repository, mut op: Op<'_>, journal: &mut Journal) -> Result<usize> {
    let committed = journal::committed_mark(repo.store(), op.txn())?;
    let pending = journal.recovery(committed)?;
    let mut delivered = 0;
    if pending.batches.is_empty() && pending.damaged.is_empty() {
        drop(op);
    } else {
        if !pending.damaged.is_empty() {
            report_damage(&mut op, journal, &pending)?;
        }
        for batch in &pending.batches {
            delivered += replay_into(repo, &mut op, batch);
        }
        journal::record_mark(&mut op, journal.mark())?;
        op.commit()?;
        tracing::info!(
            messages = delivered,
            "delivered again the messages the plane acknowledged before it stopped"
        );
    }
    // Always a new generation, even when nothing was read: whatever a write cut short left
    // past the records (or inside a damaged one) is then of an older generation, never read
    // again, so a later scan cannot resynchronise onto it.
    journal.reset()?;
    Ok(delivered)
}

/// Says loudly that records of acknowledged messages could not be read: keeps the journal
/// aside, logs an error and writes an audit record into `op`.
fn report_damage(op: &mut Op<'_>, journal: &Journal, pending: &journal::Pending) -> Result<()> {
    let records = pending.damaged_records();
    let mut stretches: Vec<String> = pending
        .damaged
        .iter()
        .take(8)
        .map(|d| format!("bytes {}..{}", d.start, d.end))
        .collect();
    if pending.damaged.len() > 8 {
        stretches.push(format!("and {} more stretches", pending.damaged.len() - 8));
    }
    let kept = journal.keep_aside()?;
    tracing::error!(
        records,
        kept = %kept.display(),
        "{records} record(s) of the plane journal could not be read ({}): the acknowledged \
         messages in them are lost; the records after them were delivered",
        stretches.join(", ")
    );
    op.log(LogOp::Audit {
        action: JOURNAL_AUDIT_ACTION.to_owned(),
        code: JOURNAL_DAMAGED.to_owned(),
        reason: format!(
            "{records} record(s) of the plane journal could not be read ({}); the damaged \
             journal is kept at {}",
            stretches.join(", "),
            kept.display()
        ),
    })?;
    Ok(())
}

/// The action of the audit record a damaged journal leaves.
pub const JOURNAL_AUDIT_ACTION: &str = "plane.journal";
/// The code of the audit record a damaged journal leaves.
pub const JOURNAL_DAMAGED: &str = Code::JournalDamaged.as_str();

/// Recovers a journal a dead daemon left behind ([`open_journal`]), unless a live process (the
/// daemon) holds it or it holds nothing. Opening a universe calls this, so a `jit` verb run
/// without the daemon never works on a store that lacks acknowledged patches.
pub fn recover_unowned_journal(repo: &Repository) -> Result<usize> {
    let path = repo.jit_dir().join(JOURNAL_FILE);
    if !path.exists() || Journal::is_held(&path) {
        return Ok(0);
    }
    let result = Journal::may_hold_records(&path).and_then(|pending| {
        if pending {
            open_journal(repo).map(|(_, delivered)| delivered)
        } else {
            Ok(0)
        }
    });
    match result {
        Err(Error::InvalidInput(_)) if Journal::is_held(&path) => Ok(0),
        // A reader without write access to the universe can still read it; the next writer
        // recovers the journal.
        Err(Error::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            tracing::warn!(%source, "cannot open the plane journal to recover it");
            Ok(0)
        }
        other => other,
    }
}
