//! The typed command: one variant per operation with its decoded arguments, and what follows
//! from the variant alone — the operation it is, whether it settles the mount first, the
//! permission it needs, and whether it can run inside a caller's open operation.

use jit_proto::Operation;

use super::args::{CheckoutArgs, CreateArgs, DirArgs, MoveArgs, ReadArgs, RefArgs, RevArgs};
use super::caller::Permission;
use crate::checkout;
use crate::federation::wire as federation;
use crate::history::Declared;
use crate::patch::Patch;
use crate::sws::SwsId;
use crate::sync::wire::{FetchRequest, NegotiateRequest};

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
    /// `shadow.ls` (on the plane: `jit/sws/<id>/list`).
    ListSwsDir {
        /// The SWS.
        sws: SwsId,
        /// The directory.
        args: super::args::SwsListArgs,
    },
    /// `shadow.read` (on the plane: `jit/sws/<id>/read`).
    ReadSws {
        /// The SWS.
        sws: SwsId,
        /// The path, offset and length.
        args: super::args::SwsReadArgs,
    },
    /// `shadow.delegate`.
    DelegateSws {
        /// The SWS.
        sws: SwsId,
        /// The agent.
        agent: String,
    },
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
    /// `mh.ls` (on the plane: `jit/kernel/tree`).
    ListTree(super::args::TreeArgs),
    /// `mh.read` (on the plane: `jit/kernel/read`).
    ReadAt(super::args::RevReadArgs),
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
    /// `federation.hello` (on the plane: `jit/federation/hello`).
    FederationHello(federation::HelloRequest),
    /// `federation.head`.
    FederationHead(federation::HeadRequest),
    /// `federation.depend`.
    FederationDepend(federation::DependRequest),
    /// `federation.fetch`.
    FederationFetch(federation::FetchRequest),
    /// `federation.cosign`.
    FederationCosign(federation::CosignRequest),
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
            Command::DelegateSws { .. } => Operation::DelegateSws,
            Command::ReadSws { .. } => Operation::ReadSws,
            Command::ListSwsDir { .. } => Operation::ListSwsDir,
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
            Command::ListTree(_) => Operation::ListTree,
            Command::ReadAt(_) => Operation::ReadAt,
            Command::RecordCheckout(_) => Operation::RecordCheckout,
            Command::GetCheckout(_) => Operation::GetCheckout,
            Command::ForgetCheckout(_) => Operation::ForgetCheckout,
            Command::SyncFrontier => Operation::SyncFrontier,
            Command::SyncNegotiate(_) => Operation::SyncNegotiate,
            Command::SyncFetch(_) => Operation::SyncFetch,
            Command::FederationHello(_) => Operation::FederationHello,
            Command::FederationHead(_) => Operation::FederationHead,
            Command::FederationDepend(_) => Operation::FederationDepend,
            Command::FederationFetch(_) => Operation::FederationFetch,
            Command::FederationCosign(_) => Operation::FederationCosign,
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
            | Command::ReadSws { .. }
            | Command::ListSwsDir { .. }
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
            | Command::DelegateSws { .. }
            | Command::GetNode(_)
            | Command::GetParents(_)
            | Command::Lineage(_)
            | Command::GetRef(_)
            | Command::ListRefs
            | Command::ListTree(_)
            | Command::ReadAt(_)
            | Command::SetRef(_)
            | Command::CreateBranch(_)
            | Command::CreateTag(_)
            | Command::DeleteRef(_)
            | Command::RecordCheckout(_)
            | Command::GetCheckout(_)
            | Command::ForgetCheckout(_)
            | Command::SyncFrontier
            | Command::SyncNegotiate(_)
            | Command::SyncFetch(_)
            | Command::FederationHello(_)
            | Command::FederationHead(_)
            | Command::FederationDepend(_)
            | Command::FederationFetch(_)
            | Command::FederationCosign(_) => false,
        }
    }

    /// What the caller must be allowed to do for this command to run.
    pub fn permission(&self) -> Permission<'_> {
        match self {
            Command::SyncFrontier | Command::SyncNegotiate(_) | Command::SyncFetch(_) => {
                Permission::Replicate
            }
            Command::FederationHello(_)
            | Command::FederationHead(_)
            | Command::FederationDepend(_)
            | Command::FederationFetch(_)
            | Command::FederationCosign(_) => Permission::Federate,
            Command::CreateSws(args) => Permission::CreateSws { owner: &args.owner },
            Command::ApplyPatch { sws, .. }
            | Command::SwsStatus(sws)
            | Command::SwsDiff(sws)
            | Command::SwsHistory(sws)
            | Command::ReadSws { sws, .. }
            | Command::ListSwsDir { sws, .. }
            | Command::Discard(sws)
            | Command::Validate(sws) => Permission::UseSws(*sws),
            Command::Commit { sws, .. } => Permission::CommitSws(*sws),
            Command::ListTree(_) | Command::ReadAt(_) => Permission::ReadHistory,
            _ => Permission::Local,
        }
    }

    /// Whether the command can run inside a caller's open operation (`At::Within`): the ones
    /// the plane serves, whose effects commit with the plane's record of the message.
    pub fn runs_within(&self) -> bool {
        matches!(
            self,
            Command::CreateSws(_)
                | Command::ApplyPatch { .. }
                | Command::SwsStatus(_)
                | Command::SwsDiff(_)
                | Command::SwsHistory(_)
                | Command::ReadSws { .. }
                | Command::ListSwsDir { .. }
                | Command::ListTree(_)
                | Command::ReadAt(_)
                | Command::Discard(_)
                | Command::Commit { .. }
                | Command::Validate(_)
        )
    }
}
