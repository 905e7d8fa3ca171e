//! The kernel's error type. Every variant has a stable code (for the RPC and `--json` output)
//! and a one-line human message.

use std::path::PathBuf;

use crate::cbor::CborError;
use crate::id::NodeId;
use crate::node::NodeError;
pub use jit_proto::code::{Code, Coded};

/// A broken DAG invariant (SPEC §1.2). Appends that would break one are refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The bytes do not hash to the id they were offered under.
    #[error("node {claimed} does not hash to its id (bytes hash to {actual})")]
    HashMismatch {
        /// The id the node was presented with.
        claimed: NodeId,
        /// What its bytes actually hash to.
        actual: NodeId,
    },
    /// A parent is not in the store.
    #[error("node {node} names parent {parent}, which does not exist")]
    MissingParent {
        /// The child.
        node: NodeId,
        /// The absent parent.
        parent: NodeId,
    },
    /// A referenced node (tree entry, chunk, snapshot tree) is not in the store.
    #[error("node {node} references {target}, which does not exist")]
    MissingReference {
        /// The referring node.
        node: NodeId,
        /// The absent target.
        target: NodeId,
    },
    /// A parent or reference has the wrong node type.
    #[error("node {node}: {target} is a {found}, expected {expected}")]
    WrongType {
        /// The referring node.
        node: NodeId,
        /// The referenced node.
        target: NodeId,
        /// What was found.
        found: &'static str,
        /// What was required.
        expected: &'static str,
    },
    /// The logical clock does not exceed a parent's.
    #[error(
        "node {node} has clock {clock}, not greater than parent {parent}'s clock {parent_clock}"
    )]
    ClockNotIncreasing {
        /// The child.
        node: NodeId,
        /// Its clock.
        clock: u64,
        /// The parent.
        parent: NodeId,
        /// The parent's clock.
        parent_clock: u64,
    },
    /// The logical clock is not one more than the highest parent's: clocks prove their depth, so
    /// no received history can exhaust the clock and wedge a branch.
    #[error("node {node} has clock {clock}; one more than its parents' highest is {expected}")]
    ClockNotNext {
        /// The child.
        node: NodeId,
        /// Its clock.
        clock: u64,
        /// The only clock it may have.
        expected: u64,
    },
    /// A tree names an entry `.git`, `.jit` or `.jit-checkout` (or an alias of one).
    #[error("tree {node} holds the reserved name {name:?} (.git, .jit and .jit-checkout never enter a tree)")]
    ReservedName {
        /// The tree.
        node: NodeId,
        /// The entry's name.
        name: String,
    },
    /// Parents are not strictly ascending.
    #[error("node {node}: parents are not sorted by id and unique")]
    UnsortedParents {
        /// The offending node.
        node: NodeId,
    },
    /// A set of nodes offered together would form a cycle.
    #[error("nodes offered together form a cycle through {node}")]
    Cycle {
        /// A node on the cycle.
        node: NodeId,
    },
    /// The node is malformed on its own.
    #[error("node {node}: {reason}")]
    Malformed {
        /// The offending node.
        node: NodeId,
        /// What is wrong.
        reason: String,
    },
}

/// Everything a kernel operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes were not canonical CBOR.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// A node could not be decoded or is malformed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// An append would break a DAG invariant.
    #[error("DAG invariant violated: {0}")]
    Invariant(#[from] Violation),
    /// LMDB failed (disk full, map full, I/O).
    #[error("store error: {0}")]
    Store(#[from] heed::Error),
    /// File-system I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored node's bytes no longer hash to its id: the store was damaged on disk. Reads
    /// refuse it rather than hand out altered content; `jit fsck` lists every such node.
    #[error(
        "node {id} is corrupt: its stored bytes hash to {actual}, not to its id (run jit fsck)"
    )]
    Corrupt {
        /// The node, by the id it is stored under.
        id: NodeId,
        /// What its stored bytes hash to.
        actual: NodeId,
    },
    /// A stored node's representation cannot be resolved: a damaged frame, a missing or
    /// damaged delta base, a chain longer than allowed ([`crate::store::repr`]). Reads refuse
    /// it; `jit fsck` lists every such node.
    #[error("node {id} is corrupt: {reason} (run jit fsck)")]
    CorruptRepresentation {
        /// The node, by the id it is stored under.
        id: NodeId,
        /// What is wrong, naming the base where a base is at fault.
        reason: String,
    },
    /// The file system holding the store (or another file the operation writes) is full.
    /// Nothing of the operation was kept.
    #[error("no space left on the device holding {path}: {detail}; free some space and retry")]
    NoSpace {
        /// The store directory or file.
        path: PathBuf,
        /// What failed, as the OS or LMDB said it.
        detail: String,
    },
    /// `data.mdb` is shorter than the pages its own header says it holds: reading those pages
    /// through the memory map would kill the process (SIGBUS), so the store is not opened.
    #[error("the store {path} is truncated: the file is {size} bytes but holds pages up to byte {expected}; restore it from a backup or a replica (jit clone)")]
    StoreTruncated {
        /// The `data.mdb` file.
        path: PathBuf,
        /// Its length.
        size: u64,
        /// The length its last used page needs.
        expected: u64,
    },
    /// A node that should exist does not.
    #[error("node {0} not found")]
    NodeNotFound(NodeId),
    /// A node exists but is not of the type the operation needs.
    #[error("{id} is a {found}, not a {expected}")]
    NotA {
        /// The node.
        id: NodeId,
        /// Its type.
        found: &'static str,
        /// The type required.
        expected: &'static str,
    },
    /// A ref name breaks the naming rules.
    #[error("invalid ref name {name:?}: {reason}")]
    BadRefName {
        /// The offered name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The ref does not exist.
    #[error("no such ref: {0}")]
    RefNotFound(String),
    /// The ref already exists.
    #[error("ref {0} already exists")]
    RefExists(String),
    /// Tags never move, and are deleted only with an explicit override.
    #[error("tag {0} is immutable: tags never move, and deleting one needs --force")]
    TagImmutable(String),
    /// A branch may only move to a descendant of its tip.
    #[error("branch {name} cannot move from {from} to {to}: not a fast-forward (use reset or rebase, which record an inversion rewrite)")]
    NotFastForward {
        /// The branch.
        name: String,
        /// Its tip.
        from: NodeId,
        /// The refused target.
        to: NodeId,
    },
    /// A compare-and-set on a ref lost a race.
    #[error("ref {name} moved concurrently (expected {expected}, found {found})")]
    RefChanged {
        /// The ref.
        name: String,
        /// What the caller expected.
        expected: String,
        /// What it is now.
        found: String,
    },
    /// The checked-out branch cannot be deleted.
    #[error("cannot delete branch {0}: it is checked out")]
    BranchCheckedOut(String),
    /// A revision expression names nothing.
    #[error("unknown revision {0:?}")]
    UnknownRevision(String),
    /// An abbreviated id matches several nodes.
    #[error("ambiguous revision {0:?}: several nodes match")]
    AmbiguousRevision(String),
    /// A path does not exist in a tree.
    #[error("path {path:?} not found in {rev}")]
    PathNotFound {
        /// The path.
        path: String,
        /// The revision searched.
        rev: String,
    },
    /// No `.jit` directory here or above.
    #[error("not a JIT repository (or any parent up to /): {0}")]
    NotARepository(PathBuf),
    /// The store was written by a newer JIT, in a table layout this one does not know: reading
    /// it as today's layout would miss or misread records.
    #[error(
        "the store in {path} has layout {found}, newer than this jit reads ({supported}); use a newer jit"
    )]
    NewerLayout {
        /// The store directory.
        path: PathBuf,
        /// The layout the store records.
        found: u64,
        /// The newest layout this build reads.
        supported: u64,
    },
    /// `init` on an existing repository.
    #[error("a JIT repository already exists at {0}")]
    AlreadyInitialized(PathBuf),
    /// The log on disk is damaged.
    #[error("log record {seq} is corrupt: {reason}")]
    CorruptLog {
        /// The record's sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Configuration could not be read.
    #[error("bad configuration in {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A patch was refused; nothing of it was applied.
    #[error("patch refused: {0}")]
    Patch(#[from] crate::patch::PatchError),
    /// A path is malformed.
    #[error(transparent)]
    Path(#[from] crate::path::PathError),
    /// A tree edit is impossible.
    #[error(transparent)]
    Edit(#[from] crate::treeedit::EditError),
    /// A merge met conflicts; nothing was committed.
    #[error("merge conflict in {}", .0.iter().map(|c| c.path.as_str()).collect::<Vec<_>>().join(", "))]
    MergeConflict(Vec<crate::merge::Conflict>),
    /// An error answered by the kernel over the RPC.
    #[error("{message}")]
    Remote {
        /// The stable code.
        code: String,
        /// The message.
        message: String,
        /// Structured details (conflicts).
        details: Option<ciborium::value::Value>,
    },
    /// A federation exchange refused: another universe's statement failed a check, or this
    /// universe's policy forbids the exchange. The code says which.
    #[error("{message}")]
    Federation {
        /// The stable code (`bad_signature`, `equivocation`, `stale`, `quarantined`, …).
        code: Code,
        /// What happened, and the next command where there is one.
        message: String,
    },
    /// No SWS has this id.
    #[error("no such shadow working set: {0}")]
    SwsNotFound(String),
    /// Input the operation cannot accept (a path outside the tree, an unsupported file type…).
    #[error("{0}")]
    InvalidInput(String),
    /// A network listen that would expose the universe unencrypted beyond this machine.
    #[error("{0}")]
    InsecureListen(String),
    /// A sync peer broke the protocol or sent something that failed verification.
    #[error("sync with {remote} failed: {reason}")]
    Sync {
        /// The peer, as the user named it.
        remote: String,
        /// What went wrong.
        reason: String,
    },
    /// A sync peer holds a different universe (that is federation, not sync).
    #[error("{remote} holds universe {found}, not this universe ({expected}); replicas sync only within one universe")]
    OtherUniverse {
        /// The peer.
        remote: String,
        /// This universe's id.
        expected: String,
        /// The peer's universe id.
        found: String,
    },
}

/// Whether an OS error says the file system (or the user's quota on it) is full.
pub fn is_no_space(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Kernel result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Cbor(_) => Code::BadCbor,
            Error::Node(_) => Code::BadNode,
            Error::Invariant(Violation::ReservedName { .. }) => Code::BadPath,
            Error::Invariant(_) => Code::InvariantViolation,
            Error::Store(_) => Code::StoreError,
            Error::Io { source, .. } if is_no_space(source) => Code::NoSpace,
            Error::Io { .. } => Code::IoError,
            Error::NodeNotFound(_) => Code::NodeNotFound,
            Error::Corrupt { .. } | Error::CorruptRepresentation { .. } => Code::Corrupt,
            Error::NoSpace { .. } => Code::NoSpace,
            Error::StoreTruncated { .. } => Code::StoreTruncated,
            Error::NotA { .. } => Code::WrongNodeType,
            Error::BadRefName { .. } => Code::BadRefName,
            Error::RefNotFound(_) => Code::RefNotFound,
            Error::RefExists(_) => Code::RefExists,
            Error::TagImmutable(_) => Code::TagImmutable,
            Error::NotFastForward { .. } => Code::NotFastForward,
            Error::RefChanged { .. } => Code::RefChanged,
            Error::BranchCheckedOut(_) => Code::BranchCheckedOut,
            Error::UnknownRevision(_) => Code::UnknownRevision,
            Error::AmbiguousRevision(_) => Code::AmbiguousRevision,
            Error::PathNotFound { .. } => Code::PathNotFound,
            Error::NotARepository(_) => Code::NotARepository,
            Error::NewerLayout { .. } => Code::NewerLayout,
            Error::AlreadyInitialized(_) => Code::AlreadyInitialized,
            Error::CorruptLog { .. } => Code::CorruptLog,
            Error::Config { .. } => Code::BadConfig,
            Error::InvalidInput(_) => Code::InvalidInput,
            Error::InsecureListen(_) => Code::InsecureListen,
            Error::Sync { .. } => Code::SyncFailed,
            Error::OtherUniverse { .. } => Code::OtherUniverse,
            Error::Patch(crate::patch::PatchError::TooLarge { .. }) => Code::PatchTooLarge,
            Error::Patch(_) => Code::PatchRejected,
            Error::Path(_) => Code::BadPath,
            Error::Edit(_) => Code::BadEdit,
            Error::SwsNotFound(_) => Code::SwsNotFound,
            Error::MergeConflict(_) => Code::MergeConflict,
            Error::Remote { code, .. } => Code::parse(code).unwrap_or(Code::Error),
            Error::Federation { code, .. } => *code,
        }
    }

    /// Whether this is the kernel refusing input (audited) rather than an environment failure.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Error::Store(_)
                | Error::Io { .. }
                | Error::CorruptLog { .. }
                | Error::NewerLayout { .. }
                | Error::Corrupt { .. }
                | Error::CorruptRepresentation { .. }
                | Error::NoSpace { .. }
                | Error::StoreTruncated { .. }
        )
    }
}

impl Coded for Error {
    fn code(&self) -> Code {
        Error::code(self)
    }
}
