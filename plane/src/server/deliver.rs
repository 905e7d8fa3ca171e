//! Stage two of a write: the deliverer thread applies batches of verified writes in one open
//! transaction (the kernel's command layer runs each), makes them durable in the journal
//! ([`jit_kernel::journal`]) or by committing, and only then answers — the acknowledgement.

use std::sync::mpsc;
use std::time::Instant;

use jit_kernel::agents::{self, Target, Verified};
use jit_kernel::journal::{self, Journal};
use jit_kernel::rpc::protocol::Response;
use jit_kernel::store::Op;
use jit_kernel::Repository;
use tokio::sync::Notify;

use super::options::{take_drop, PlaneOptions, MAX_BATCH};
use super::work::{answer, Accepted, Work};

/// Whether a write must be committed before it is answered rather than journaled: creating an
/// SWS (its id is random, so delivering it again would make another), and committing or
/// discarding one (others must see the branch move, and a commit delivered again could meet a
/// branch that moved meanwhile).
fn commits_at_once(verified: &Verified) -> bool {
    match &verified.target {
        Target::Create => true,
        Target::Tree | Target::Read => false,
        Target::Sws { verb, .. } => verb.ends_the_sws(),
    }
}

/// Acknowledged writes could not be made durable in the store, or a batch could not be made
/// durable in the journal after earlier ones were acknowledged from it: stop the process as a
/// crash would. Nothing else may write before the journal is delivered again, and the next
/// start does that first; going on would let other writers overtake acknowledged patches.
fn fail_stop(what: &str, error: &jit_kernel::Error) -> ! {
    tracing::error!(%error, "{what}; stopping so that the next start recovers the journal");
    eprintln!("jit: {what}: {error}; stopping so that the next start recovers the journal");
    std::process::abort()
}

/// What the deliverer takes from its queue at once ([`gather`]).
struct Gathered {
    /// Writes to deliver, in arrival order.
    batch: Vec<Accepted>,
    /// Settle requests, answered once this batch is committed.
    settles: Vec<mpsc::SyncSender<jit_kernel::Result<()>>>,
    /// Refusals to audit (already answered, so writing them after the batch reorders nothing).
    refused: Vec<(String, Option<String>, Response)>,
}

/// Everything already queued behind `first`, up to [`MAX_BATCH`] writes.
fn gather(work: &mpsc::Receiver<Work>, mut batch: Vec<Accepted>) -> Gathered {
    let mut settles = Vec::new();
    let mut refused = Vec::new();
    while batch.len() < MAX_BATCH {
        match work.try_recv() {
            Ok(Work::Deliver(more)) => batch.extend(more),
            Ok(Work::Settle(done)) => settles.push(done),
            Ok(Work::Audit(more)) => refused.extend(more),
            Err(_) => break,
        }
    }
    Gathered {
        batch,
        settles,
        refused,
    }
}

/// The deliverer thread: applies batches in one open transaction, journals them, answers, and
/// commits when there is a reason to.
pub(super) struct Deliverer<'r> {
    pub(super) repo: &'r Repository,
    pub(super) options: &'r PlaneOptions,
    pub(super) notify: &'r Notify,
    pub(super) journal: Journal,
}

/// The deliverer's open transaction.
struct Open<'s> {
    op: Op<'s>,
    /// When it began.
    since: Instant,
    /// Whether it holds batches already acknowledged from the journal: then it must commit,
    /// or the process stops ([`fail_stop`]).
    journaled: bool,
}

impl<'r> Deliverer<'r> {
    pub(super) fn run(mut self, work: mpsc::Receiver<Work>) {
        let mut open: Option<Open<'r>> = None;
        loop {
            let next = match &open {
                None => work
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(open) => work.recv_timeout(
                    (self.options.idle)
                        .min(self.options.max_open.saturating_sub(open.since.elapsed())),
                ),
            };
            match next {
                Ok(Work::Audit(refused)) => {
                    open = self.audit(open, &refused);
                }
                Ok(Work::Deliver(first)) => {
                    let Gathered {
                        batch,
                        settles,
                        refused,
                    } = gather(&work, first);
                    let (left_open, committed) = self.deliver(open, batch, !settles.is_empty());
                    open = left_open;
                    if !refused.is_empty() {
                        open = self.audit(open, &refused);
                    }
                    for done in settles {
                        let _ = done.send(match &committed {
                            Ok(()) => Ok(()),
                            Err(error) => Err(jit_kernel::Error::InvalidInput(format!(
                                "the message plane could not commit: {error}"
                            ))),
                        });
                    }
                }
                Ok(Work::Settle(done)) => {
                    let result = self.commit(open.take());
                    let _ = done.send(result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.commit(open.take());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(gate) = &self.options.final_commit_gate {
                        gate.wait(); // reached
                        gate.wait(); // proceed
                    }
                    if self.options.crash_on_close {
                        drop(open.take());
                    } else {
                        let _ = self.commit(open.take());
                    }
                    break;
                }
            }
        }
    }

    /// Writes the audit records of refusals into the open transaction (opening one if
    /// needed); they commit with it. Returns the transaction left open.
    fn audit(
        &mut self,
        open: Option<Open<'r>>,
        refused: &[(String, Option<String>, Response)],
    ) -> Option<Open<'r>> {
        let mut open = match self.open_or_begin(open) {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(%error, "cannot audit refused messages");
                return None;
            }
        };
        agents::audit_into(
            &mut open.op,
            refused
                .iter()
                .map(|(key, sender, response)| (key.as_str(), sender.as_deref(), response)),
        );
        Some(open)
    }

    /// Applies `batch` in the open transaction (opening one if needed), makes it durable — in
    /// the journal, or by committing when `settle` asks for it or the batch needs it — and
    /// answers. Returns the transaction left open and, when it committed, how that went.
    fn deliver(
        &mut self,
        mut open: Option<Open<'r>>,
        batch: Vec<Accepted>,
        settle: bool,
    ) -> (Option<Open<'r>>, jit_kernel::Result<()>) {
        let at_once = batch.iter().any(|a| commits_at_once(&a.verified));
        if at_once && open.is_some() {
            // A create, commit or discard runs on a freshly settled store, as it would alone.
            if let Err(error) = self.commit(open.take()) {
                self.refuse_all(&batch, &error);
                return (None, Err(error));
            }
        }
        let mut open = match self.open_or_begin(open) {
            Ok(open) => open,
            Err(error) => {
                tracing::error!(%error, "cannot start a transaction for the plane's writes");
                self.refuse_all(&batch, &error);
                return (None, Err(error));
            }
        };
        let responses =
            agents::deliver_into(self.repo, &mut open.op, batch.iter().map(|a| &a.verified));
        if open.op.is_poisoned() {
            // The transaction can no longer commit, so no answer of this batch may be sent.
            let error = jit_kernel::Error::InvalidInput(
                "the plane's transaction failed while delivering a batch".into(),
            );
            if open.journaled {
                fail_stop("cannot keep the plane's acknowledged writes", &error);
            }
            drop(open);
            self.refuse_all(&batch, &error);
            return (None, Err(error));
        }
        let (left_open, committed) =
            if at_once || settle || open.since.elapsed() >= self.options.max_open {
                match self.commit(Some(open)) {
                    Ok(()) => (None, Ok(())),
                    Err(error) => {
                        // Nothing of this transaction was acknowledged (else the commit
                        // would have stopped the process): the batch is refused whole.
                        self.refuse_all(&batch, &error);
                        return (None, Err(error));
                    }
                }
            } else {
                let messages: Vec<(&str, &[u8])> = batch
                    .iter()
                    .map(|a| (a.key.as_str(), a.bytes.as_slice()))
                    .collect();
                match self.journal.append(&messages) {
                    Ok(()) => open.journaled = true,
                    Err(error) if open.journaled => {
                        fail_stop("cannot append to the plane journal", &error)
                    }
                    Err(error) => {
                        // Nothing was acknowledged yet; what the append may have left on disk
                        // lies past the journal's end and is never read back.
                        drop(open);
                        tracing::error!(%error, "cannot append to the plane journal");
                        self.refuse_all(&batch, &error);
                        return (None, Err(error));
                    }
                }
                (Some(open), Ok(()))
            };
        for (accepted, response) in batch.iter().zip(responses) {
            if matches!(response, Response::Ok(_)) && take_drop(&self.options.drop_replies) {
                continue; // fault injection: the effect is durable, the reply is lost
            }
            answer(&accepted.query, &response);
        }
        (left_open, committed)
    }

    /// The open transaction, or a new one.
    fn open_or_begin(&mut self, open: Option<Open<'r>>) -> jit_kernel::Result<Open<'r>> {
        match open {
            Some(open) => Ok(open),
            None => self.begin(),
        }
    }

    /// Opens the transaction for the next batches, after the mount's buffered writes landed
    /// (they go before the agents' writes).
    fn begin(&mut self) -> jit_kernel::Result<Open<'r>> {
        let store = self.repo.store();
        if let Err(error) = store.settle() {
            tracing::warn!(%error, "could not settle the mount's buffered writes");
        }
        Ok(Open {
            op: store.begin()?,
            since: Instant::now(),
            journaled: false,
        })
    }

    /// Commits the open transaction, if any, with the journal mark it covers, and resets the
    /// journal. A failure with acknowledged writes at stake stops the process.
    fn commit(&mut self, open: Option<Open<'r>>) -> jit_kernel::Result<()> {
        let Some(mut open) = open else {
            return Ok(());
        };
        if open.journaled {
            if let Err(error) = journal::record_mark(&mut open.op, self.journal.mark()) {
                fail_stop("cannot record the plane journal's mark", &error);
            }
        }
        if let Err(error) = open.op.commit() {
            if open.journaled {
                fail_stop("cannot commit the plane's acknowledged writes", &error);
            }
            return Err(error);
        }
        if open.journaled {
            if let Err(error) = self.journal.reset() {
                fail_stop("cannot reset the plane journal", &error);
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Answers every write of `batch` with `error`: none of it took effect.
    fn refuse_all(&self, batch: &[Accepted], error: &jit_kernel::Error) {
        let response = jit_kernel::rpc::protocol::error_response(error);
        for accepted in batch {
            answer(&accepted.query, &response);
        }
    }
}
