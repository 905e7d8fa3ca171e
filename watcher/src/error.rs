//! The watcher's error type: what went wrong, in words a user can act on.

use std::path::{Path, PathBuf};

/// Why a checkout, sync or watch failed. Nothing half-done is recorded: index and SWS change
/// together or not at all.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The kernel refused or failed.
    #[error(transparent)]
    Kernel(#[from] jit_kernel::Error),
    /// A file-system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No `.jit-checkout/` here or above.
    #[error("{0} is not inside a checkout (make one with `jit checkout --into DIR`)")]
    NotACheckout(PathBuf),
    /// The target directory holds something else.
    #[error("{0} is not empty and is not a checkout; choose an empty or new directory")]
    NotEmpty(PathBuf),
    /// The target directory overlaps the universe's own directory.
    #[error("{dir} is inside the universe at {repo}; a checkout must be a separate directory")]
    InsideRepository {
        /// The checkout directory.
        dir: PathBuf,
        /// The universe's directory.
        repo: PathBuf,
    },
    /// A checkout would overwrite uncommitted edits.
    #[error(
        "uncommitted changes would be overwritten by the checkout: {}; commit them (jit commit) \
         or undo them first",
        .0.join(", ")
    )]
    LocalChanges(Vec<String>),
    /// A checkout into this directory was killed while rewriting files.
    #[error(
        "a checkout of {rev} into {dir} was interrupted; run `jit checkout {rev}` there to finish it \
         (its half-written files are not edits)"
    )]
    InterruptedCheckout {
        /// The checkout directory.
        dir: PathBuf,
        /// Where the switch was going.
        rev: String,
    },
    /// Another watcher holds this checkout.
    #[error("a watcher is already running for {0}")]
    AlreadyWatched(PathBuf),
    /// inotify ran out of watches.
    #[error(
        "inotify watch limit reached while watching {path} (fs.inotify.max_user_watches = {limit}); \
         raise it, e.g. `sysctl fs.inotify.max_user_watches=1048576`, or ignore large directories \
         in .jitignore"
    )]
    WatchLimit {
        /// The directory that could not be watched.
        path: PathBuf,
        /// The current limit, as the kernel reports it.
        limit: String,
    },
    /// `notify` failed otherwise.
    #[error("cannot watch {path}: {message}")]
    Notify {
        /// The directory.
        path: PathBuf,
        /// What notify said.
        message: String,
    },
    /// A file name that is not UTF-8 (the tree's paths are text).
    #[error("{0}: file names must be UTF-8")]
    BadName(PathBuf),
    /// Anything else about the request.
    #[error("{0}")]
    Invalid(String),
}

impl jit_kernel::Coded for WatchError {
    fn code(&self) -> jit_kernel::Code {
        use jit_kernel::Code;
        match self {
            WatchError::Kernel(e) => e.code(),
            WatchError::Io { .. } => Code::IoError,
            WatchError::NotACheckout(_) => Code::NotACheckout,
            WatchError::NotEmpty(_) => Code::NotEmpty,
            WatchError::InsideRepository { .. } => Code::InsideUniverse,
            WatchError::LocalChanges(_) => Code::LocalChanges,
            WatchError::InterruptedCheckout { .. } => Code::InterruptedCheckout,
            WatchError::AlreadyWatched(_) => Code::AlreadyWatched,
            WatchError::WatchLimit { .. } => Code::WatchLimit,
            WatchError::Notify { .. } => Code::WatchFailed,
            WatchError::BadName(_) => Code::BadName,
            WatchError::Invalid(_) => Code::InvalidInput,
        }
    }
}

impl WatchError {
    /// Wraps an I/O error with its path.
    pub fn io(path: &Path, source: std::io::Error) -> WatchError {
        WatchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The watcher's result type.
pub type Result<T, E = WatchError> = std::result::Result<T, E>;
