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

use ciborium::value::Value;

pub use caller::{Caller, Permission};
pub use execute::{execute, At};
pub use jit_proto::Operation;

use crate::checkout;
use crate::error::Result;
use crate::history::Declared;
use crate::patch::Patch;
use crate::repo::Repository;
use crate::sws::SwsId;
use crate::sync::wire::{FetchRequest, NegotiateRequest};
use args::{CheckoutArgs, CreateArgs, DirArgs, MoveArgs, ReadArgs, RefArgs, RevArgs};

/// An operation with its decoded arguments.
#[derive(Debug, Clone)]
pub enum Command {
    /// `jit.info`.
    Info,
    /// `shadow.create` (on the plane: `jit/kernel/create`, owned by the sender).
    CreateSws(CreateArgs),
    /// `shadow.working`.
    WorkingSws(CreateArgs),
    /// `shadow.apply_patch` (on the plane: `jit/sws/<id>/patch`).
    ApplyPatch {
        /// The SWS.
        sws: SwsId,
        /// The patch.
        patch: Patch,
    },
    /// `shadow.stage`.
    Stage {
        /// The SWS.
        sws: SwsId,
        /// Canonical CBOR of each content node.
        nodes: Vec<Vec<u8>>,
    },
    /// `shadow.status` (on the plane: `jit/sws/<id>/status`).
    SwsStatus(SwsId),
    /// `shadow.diff`.
    SwsDiff(SwsId),
    /// `shadow.list`.
    ListSws,
    /// `shadow.history`.
    SwsHistory(SwsId),
    /// `shadow.discard` (on the plane: `jit/sws/<id>/discard`).
    Discard(SwsId),
    /// `collapse.commit` (on the plane: `jit/sws/<id>/commit`).
    Commit {
        /// The SWS.
        sws: SwsId,
        /// Author, message and time.
        declared: Declared,
    },
    /// `collapse.validate` (on the plane: `jit/sws/<id>/analyze`).
    Validate(SwsId),
    /// `history.reset`.
    Reset(MoveArgs),
    /// `history.rebase`.
    Rebase(MoveArgs),
    /// `dag.get_node`.
    GetNode(RevArgs),
    /// `dag.get_parents`.
    GetParents(RevArgs),
    /// `dag.lineage`.
    Lineage(RevArgs),
    /// `ref.get`.
    GetRef(RefArgs),
    /// `ref.list`.
    ListRefs,
    /// `ref.set`.
    SetRef(RefArgs),
    /// `ref.create_branch`.
    CreateBranch(RefArgs),
    /// `ref.create_tag`.
    CreateTag(RefArgs),
    /// `ref.delete`.
    DeleteRef(RefArgs),
    /// `mh.status`.
    HeadStatus,
    /// `mh.checkout`.
    CheckoutBranch(CheckoutArgs),
    /// `mh.read_file`.
    ReadFile(ReadArgs),
    /// `checkout.record`.
    RecordCheckout(Box<checkout::Record>),
    /// `checkout.get`.
    GetCheckout(DirArgs),
    /// `checkout.forget`.
    ForgetCheckout(DirArgs),
    /// `sync.frontier` (on the plane: `jit/sync/frontier`).
    SyncFrontier,
    /// `sync.negotiate`.
    SyncNegotiate(NegotiateRequest),
    /// `sync.fetch`.
    SyncFetch(FetchRequest),
}

impl Command {
    /// The operation this command is.
    pub fn operation(&self) -> Operation {
        match self {
            Command::Info => Operation::Info,
            Command::CreateSws(_) => Operation::CreateSws,
            Command::WorkingSws(_) => Operation::WorkingSws,
            Command::ApplyPatch { .. } => Operation::ApplyPatch,
            Command::Stage { .. } => Operation::Stage,
            Command::SwsStatus(_) => Operation::SwsStatus,
            Command::SwsDiff(_) => Operation::SwsDiff,
            Command::ListSws => Operation::ListSws,
            Command::SwsHistory(_) => Operation::SwsHistory,
            Command::Discard(_) => Operation::Discard,
            Command::Commit { .. } => Operation::Commit,
            Command::Validate(_) => Operation::Validate,
            Command::Reset(_) => Operation::Reset,
            Command::Rebase(_) => Operation::Rebase,
            Command::GetNode(_) => Operation::GetNode,
            Command::GetParents(_) => Operation::GetParents,
            Command::Lineage(_) => Operation::Lineage,
            Command::GetRef(_) => Operation::GetRef,
            Command::ListRefs => Operation::ListRefs,
            Command::SetRef(_) => Operation::SetRef,
            Command::CreateBranch(_) => Operation::CreateBranch,
            Command::CreateTag(_) => Operation::CreateTag,
            Command::DeleteRef(_) => Operation::DeleteRef,
            Command::HeadStatus => Operation::HeadStatus,
            Command::CheckoutBranch(_) => Operation::CheckoutBranch,
            Command::ReadFile(_) => Operation::ReadFile,
            Command::RecordCheckout(_) => Operation::RecordCheckout,
            Command::GetCheckout(_) => Operation::GetCheckout,
            Command::ForgetCheckout(_) => Operation::ForgetCheckout,
            Command::SyncFrontier => Operation::SyncFrontier,
            Command::SyncNegotiate(_) => Operation::SyncNegotiate,
            Command::SyncFetch(_) => Operation::SyncFetch,
        }
    }

    /// Whether the command reads or writes working state (SWS, HEAD's working tree, a branch a
    /// checkout leaves), so that writes the mount has buffered must land before it runs: a
    /// `status` right after a `write(2)` sees the write.
    pub fn settles(&self) -> bool {
        match self {
            Command::CreateSws(_)
            | Command::WorkingSws(_)
            | Command::ApplyPatch { .. }
            | Command::Stage { .. }
            | Command::SwsStatus(_)
            | Command::SwsDiff(_)
            | Command::ListSws
            | Command::SwsHistory(_)
            | Command::Discard(_)
            | Command::Commit { .. }
            | Command::Validate(_)
            | Command::Reset(_)
            | Command::Rebase(_)
            | Command::HeadStatus
            | Command::CheckoutBranch(_)
            | Command::ReadFile(_) => true,
            Command::Info
            | Command::GetNode(_)
            | Command::GetParents(_)
            | Command::Lineage(_)
            | Command::GetRef(_)
            | Command::ListRefs
            | Command::SetRef(_)
            | Command::CreateBranch(_)
            | Command::CreateTag(_)
            | Command::DeleteRef(_)
            | Command::RecordCheckout(_)
            | Command::GetCheckout(_)
            | Command::ForgetCheckout(_)
            | Command::SyncFrontier
            | Command::SyncNegotiate(_)
            | Command::SyncFetch(_) => false,
        }
    }

    /// What the caller must be allowed to do for this command to run.
    pub fn permission(&self) -> Permission<'_> {
        match self {
            Command::SyncFrontier | Command::SyncNegotiate(_) | Command::SyncFetch(_) => {
                Permission::Replicate
            }
            Command::CreateSws(args) => Permission::CreateSws { owner: &args.owner },
            Command::ApplyPatch { sws, .. }
            | Command::SwsStatus(sws)
            | Command::Discard(sws)
            | Command::Validate(sws) => Permission::UseSws(*sws),
            Command::Commit { sws, .. } => Permission::CommitSws(*sws),
            _ => Permission::Local,
        }
    }

    /// Whether the command can run inside a caller's open operation ([`At::Within`]): the ones
    /// the plane serves, whose effects commit with the plane's record of the message.
    pub fn runs_within(&self) -> bool {
        matches!(
            self,
            Command::CreateSws(_)
                | Command::ApplyPatch { .. }
                | Command::SwsStatus(_)
                | Command::Discard(_)
                | Command::Commit { .. }
                | Command::Validate(_)
        )
    }
}

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
