//! Git interop (with `gix`, no shelling out): users arrive with git repositories and can leave
//! with them.
//!
//! - [`import::import_git`] turns a git history into snapshots: every commit becomes a snapshot
//!   with its author, message and time; a merge commit becomes a merge rewrite node (from its first
//!   parent, to its second) with the snapshot on top, exactly as a merging collapse records it.
//! - [`export::export_git`] writes snapshots back as git commits: a snapshot on a merge rewrite
//!   becomes a two-parent commit. Trees map one to one (git cannot hold empty directories, which
//!   are left out), so import then export reproduces the git tree ids — and, where committer and
//!   author were the same, the commit ids.
//!
//! Not carried over: committers distinct from authors (jit records one declared author), octopus
//! merges beyond two parents (the extra parents are dropped, with a warning), submodules (gitlinks
//! are skipped and counted), GPG signatures and non-UTF-8 text in names and messages (converted
//! lossily).

#![deny(missing_docs)]

pub mod export;
pub mod import;

/// What can go wrong talking to git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// gix failed (not a repository, missing object, I/O).
    #[error("git: {0}")]
    Git(String),
    /// The kernel refused or failed.
    #[error(transparent)]
    Kernel(#[from] jit_kernel::Error),
    /// An export would move an existing git branch backwards or sideways.
    #[error("{reference} is at {old}, which {new} does not descend from: exporting would move it backwards or sideways (export another branch with --branch, or move it anyway with --force)")]
    NotForward {
        /// The git reference.
        reference: String,
        /// Where it is.
        old: String,
        /// Where the export would put it.
        new: String,
    },
}

impl jit_kernel::Coded for GitError {
    fn code(&self) -> jit_kernel::Code {
        match self {
            GitError::Git(_) => jit_kernel::Code::GitError,
            GitError::Kernel(e) => e.code(),
            GitError::NotForward { .. } => jit_kernel::Code::NotFastForward,
        }
    }
}

impl GitError {
    fn git(error: impl std::fmt::Display) -> GitError {
        GitError::Git(error.to_string())
    }
}

/// Result type of this crate.
pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// Progress callback: (done, total) commits.
pub type Progress<'a> = &'a dyn Fn(u64, u64);
