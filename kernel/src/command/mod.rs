//! The one command layer: every operation the RPC and the plane serve is a [`Command`], and one
//! [`execute`] runs it. The RPC server and the plane only decode into a command and encode its
//! answer, so the two cannot drift apart (the plane's `status` is the RPC's `shadow.status`).
//!
//! A command goes through three steps, one file each:
//!
//! 1. **Decode** (`decode.rs`): an RPC request's operation and payload
//!    ([`Command::decode`]), a plane message's key and payload ([`Command::from_plane`]) or a
//!    sync query's ([`Command::decode`] of a `sync.*` operation) become a typed command. This is
//!    the only place an operation is told by its name, and it matches [`Operation`] — the table
//!    of names lives in `jit-proto`; a test fails if any other file matches a name as text.
//! 2. **Authorize** (`caller.rs`): the command says what it needs ([`Command::permission`]) and
//!    the [`Caller`] — a local user, a replica, or a registered agent — either has it or gets a
//!    coded refusal. The permission follows from the command's type, never from its name.
//! 3. **Execute** (`execute.rs`): commands that read or write working state first land what the
//!    mount has buffered ([`Command::settles`]), then run in their own transaction or inside the
//!    caller's open operation ([`At`]: the plane's group commit). Answers are CBOR values built
//!    from the types in [`reply`] and [`args`].

pub mod args;
pub mod caller;
mod decode;
mod execute;
pub mod reply;
mod typed;

use ciborium::value::Value;

pub use caller::{Caller, Permission};
pub use execute::{execute, At};
pub use jit_proto::Operation;
pub use typed::Command;

use crate::error::Result;
use crate::repo::Repository;

/// Decodes `payload` for `operation`, checks `caller` may run it, and runs it in its own
/// transaction: what the RPC does with each request, and sync with each query.
pub fn run(
    repo: &Repository,
    caller: &Caller<'_>,
    operation: Operation,
    payload: Value,
) -> Result<Value> {
    execute(repo, At::Own, caller, Command::decode(operation, payload)?)
}
