//! Agents on the message plane (RFC-0008, RFC-0017, RFC-0020): identities, signed envelopes, and
//! delivery with exactly-once effect.
//!
//! - An agent is a name with an ed25519 public key and permissions, registered in the store
//!   (`jit agent new`). Its secret key stays with the agent.
//! - Every message is a canonical CBOR envelope `{sender, ts, msg_id, payload, sig}`; `sig` signs
//!   the canonical CBOR of `{key, msg_id, payload, sender, ts}`, where `key` is the message's key
//!   expression (without namespace), binding it to its topic.
//! - Delivery verifies, authorizes (an SWS is written, committed, discarded and read only by its
//!   owner or a delegate; creating an SWS and committing to a branch are permissions), rejects
//!   replays (a reused `msg_id` with other content, or a message older than what is remembered),
//!   and runs the write in one transaction together with the record of its `msg_id` and answer —
//!   so a retried message is answered with the original result and never applied twice. Answers
//!   are kept for each sender's last [`WINDOW`] messages; a message not remembered is applied if
//!   its `ts` is above the highest `ts` dropped from the window (it was never delivered: a
//!   request lost on the way and resent), and refused as `stale` otherwise.
//!   Every refusal is an error answer plus an audit record, with no partial effect.
//!
//! One file per part: [`registry`] (who may sign), [`enrol`] (keys made elsewhere asking to
//! join), [`window`] (the ledger of answered messages
//! and each sender's clock), [`deliver`] (checks, audits, and running a message's command),
//! [`recover`] (the journal a dead daemon left).

mod deliver;
pub mod enrol;
mod recover;
mod registry;
#[cfg(test)]
mod tests;
mod window;

pub use deliver::{audit, audit_into, check_all, deliver_into, verify, verify_all, Refused};
pub(crate) use enrol::REQUESTS_TABLE;
pub use jit_proto::envelope::{Envelope, MAX_MESSAGE, MAX_MSG_ID};
pub use jit_proto::keyexpr::{SwsVerb, Target};
pub use recover::{
    open_journal, recover_in, recover_unowned_journal, replay_into, JOURNAL_AUDIT_ACTION,
    JOURNAL_DAMAGED, JOURNAL_FILE,
};
pub(crate) use registry::AGENTS_TABLE;
pub use registry::{get, list, register, revoke, validate_name, AgentRecord, Verified, CREATE_SWS};
pub use window::WINDOW;
#[cfg(test)]
pub(crate) use window::{clock_key, previous_clock_key, Clock};
pub(crate) use window::{MESSAGES_TABLE, MOVE_CLOCKS};
