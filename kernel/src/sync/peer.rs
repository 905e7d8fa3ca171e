//! The peer a transfer talks to, whatever carries the bytes: the message plane
//! (`jit_plane::sync::ZenohRemote`), the RPC, or an in-process test peer. Sync and federation
//! both ask through it, and report progress through [`SyncProgress`].

use ciborium::value::Value;

use crate::command::Operation;
use crate::error::Result;

/// A peer that answers sync (or federation) requests: over the message plane, the RPC, or in
/// process.
pub trait Remote {
    /// How the user named the peer: recorded in the log and in `remotes/<name>/…`.
    fn name(&self) -> &str;

    /// Sends the requests (op, payload) at once and returns the answers in the same order; an
    /// error answer fails the call.
    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>>;

    /// [`Remote::call`] without waiting: the requests go out now, and [`Pending::wait`] returns
    /// their answers. A transfer sends its next requests before it opens what the last ones
    /// brought, so the peer works while it does. A peer that cannot answer later answers now.
    fn send(&mut self, requests: Vec<(Operation, Value)>) -> Result<Pending> {
        let answers = self.call(requests);
        Ok(Pending::new(move || answers))
    }
}

/// Answers on their way ([`Remote::send`]).
pub struct Pending(Box<dyn FnOnce() -> Result<Vec<Value>>>);

impl Pending {
    /// Answers that `wait` will deliver.
    pub fn new(wait: impl FnOnce() -> Result<Vec<Value>> + 'static) -> Pending {
        Pending(Box::new(wait))
    }

    /// Waits for the answers, in the order the requests were sent.
    pub fn wait(self) -> Result<Vec<Value>> {
        (self.0)()
    }
}

/// Progress of a pull, for a progress bar.
pub trait SyncProgress {
    /// The peer holds this many nodes: a clone brings over at most that many (a bar's total).
    fn peer_holds(&self, _nodes: u64) {}
    /// Negotiation found this many history nodes to bring over.
    fn negotiated(&self, _history: u64) {}
    /// This many more nodes (and bytes) arrived, were verified and were staged.
    fn received(&self, _nodes: u64, _bytes: u64) {}
    /// The atomic append of this many nodes begins.
    fn appending(&self, _nodes: u64) {}
}

/// No progress reporting.
pub struct Quiet;
impl SyncProgress for Quiet {}
