//! What one stage of the plane hands the next — accepted writes and other work for the
//! deliverer — and how a write's query is finally answered.

use std::sync::mpsc;

use jit_kernel::agents::Verified;
use jit_kernel::rpc::protocol::Response;
use zenoh::query::Query;
use zenoh::Wait;

/// A write that passed verification and rate limiting, waiting for its transaction.
pub(super) struct Accepted {
    pub(super) query: Query,
    pub(super) key: String,
    pub(super) bytes: Vec<u8>,
    pub(super) verified: Verified,
}

/// Work for the deliverer.
pub(super) enum Work {
    /// Writes to deliver, in arrival order.
    Deliver(Vec<Accepted>),
    /// Refusals the verifier answered, `(key, claimed sender, answer)`: their audit records go into the open
    /// transaction, so a flood of bad messages costs no commit each and the verifier never
    /// waits for one. Like any unacknowledged write, they are lost if the process dies first.
    Audit(Vec<(String, Option<String>, Response)>),
    /// Someone in this process wants to read what was acknowledged: commit, then answer.
    Settle(mpsc::SyncSender<jit_kernel::Result<()>>),
}

/// Sends the kernel's answer as the query's reply (the acknowledgement).
pub(super) fn answer(query: &Query, response: &Response) {
    match response.encode() {
        Ok(body) => {
            if let Err(e) = query.reply(query.key_expr().clone(), body).wait() {
                tracing::warn!(%e, "reply failed");
            }
        }
        Err(e) => tracing::warn!(%e, "cannot encode a reply"),
    }
}
