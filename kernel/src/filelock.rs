//! Exclusive advisory locks on files (`flock`): how one process claims a universe's daemon role
//! or its plane journal. The lock lasts as long as the file stays open.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Locks `file` (opened from `path`) exclusively without waiting; if another process holds
/// it, fails with the message `busy` gives.
pub fn exclusive(file: &File, path: &Path, busy: impl FnOnce() -> String) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InvalidInput(busy())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}
