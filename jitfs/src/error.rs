//! jitfs errors, and how each becomes the errno a FUSE reply carries.

use fuser::Errno;
use jit_kernel::{Code, Coded};

/// Why a mount or a mount operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel (store, SWS, patch) refused or failed.
    #[error(transparent)]
    Kernel(#[from] jit_kernel::Error),
    /// A file system call on the mountpoint or a backing file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A POSIX error to hand straight back to the caller.
    #[error("{0:?}")]
    Errno(Errno),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The errno for a FUSE reply.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Errno(e) => *e,
            Error::Io { source, .. } => source
                .raw_os_error()
                .map(Errno::from_i32)
                .unwrap_or(Errno::EIO),
            Error::Kernel(e) => match e.code() {
                Code::PathNotFound | Code::NodeNotFound | Code::SwsNotFound | Code::RefNotFound => {
                    Errno::ENOENT
                }
                Code::BadPath | Code::InvalidInput | Code::BadRefName => Errno::EINVAL,
                Code::NoSpace => Errno::ENOSPC,
                // io_error, corrupt, store_truncated and whatever else: the read or write failed.
                _ => Errno::EIO,
            },
        }
    }
}

impl Coded for Error {
    fn code(&self) -> Code {
        match self {
            Error::Kernel(e) => e.code(),
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Code::NoSpace
            }
            Error::Io { .. } | Error::Errno(_) => Code::IoError,
        }
    }
}

/// Results of jitfs operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for a POSIX error.
pub fn errno<T>(e: Errno) -> Result<T> {
    Err(Error::Errno(e))
}
