//! The plane as an observer of the store: a reader elsewhere in this process that settles the
//! store gets the plane's acknowledged, journaled writes committed first, so it sees them.

use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use jit_kernel::observe::Observer;

use super::work::Work;

/// Longest a reader elsewhere in the process waits for the plane to commit what it
/// acknowledged ([`PlaneSettle`]).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The plane as an observer of the store: settling the store (which an operation does before
/// it reads or commits an SWS as a whole) commits the transaction holding the writes the plane
/// acknowledged from its journal, so readers in this process see them.
pub(super) struct PlaneSettle {
    pub(super) work: Mutex<Option<mpsc::Sender<Work>>>,
    pub(super) deliverer: OnceLock<ThreadId>,
    /// Once the deliverer has stopped, whether it stopped cleanly (after its final commit) or
    /// by a panic; and a signal when it stops: a settle that finds the plane closing waits.
    pub(super) stopped: Mutex<Option<bool>>,
    pub(super) stopping: Condvar,
}

impl PlaneSettle {
    /// Waits until the deliverer has stopped, so what it acknowledged is committed; an error
    /// if it takes too long or the deliverer died instead (its acknowledged writes are then
    /// only in the journal, delivered again when the universe is next opened).
    fn wait_stopped(&self) -> jit_kernel::Result<()> {
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (stopped, _) = self
            .stopping
            .wait_timeout_while(stopped, SETTLE_TIMEOUT, |stopped| stopped.is_none())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *stopped {
            Some(true) => Ok(()),
            Some(false) => Err(jit_kernel::Error::InvalidInput(
                "the message plane's deliverer failed; what it acknowledged is in its journal"
                    .into(),
            )),
            None => Err(jit_kernel::Error::InvalidInput(
                "the message plane did not finish its last commit in time".into(),
            )),
        }
    }
}

/// Marks the deliverer stopped when dropped: cleanly when it returns, not if it panics.
pub(super) struct StoppedOnDrop(pub(super) Arc<PlaneSettle>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        *self
            .0
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(!std::thread::panicking());
        self.0.stopping.notify_all();
    }
}

impl Observer for PlaneSettle {
    fn committed(&self) {}

    fn settle(&self) -> jit_kernel::Result<()> {
        // The deliverer settles the store itself before it opens a transaction.
        if self.deliverer.get() == Some(&std::thread::current().id()) {
            return Ok(());
        }
        let work = self.work.lock().ok().and_then(|work| work.clone());
        let Some(work) = work else {
            // The plane is closing: its deliverer commits everything before it stops.
            return self.wait_stopped();
        };
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if work.send(Work::Settle(done_tx)).is_err() {
            return self.wait_stopped();
        }
        match done_rx.recv_timeout(SETTLE_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Disconnected) => self.wait_stopped(),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(jit_kernel::Error::InvalidInput(
                "the message plane did not commit its acknowledged writes in time".into(),
            )),
        }
    }
}
