//! Synchronized status (SPEC §3): before answering, make the checkout's SWS include every edit
//! made so far. With a watcher running, a cookie file is written into `.jit-checkout/` and its
//! disappearance awaited: the watcher removes it only after flushing every event queued before
//! it. Without a watcher, the whole tree is compared with the index (a stat walk) and the
//! differences are recorded.

use std::time::{Duration, Instant};

use crate::error::{Result, WatchError};
use crate::marker::{self, COOKIE_PREFIX};
use crate::session::{Session, Unwatched};

/// How the SWS was brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronized {
    /// The running watcher flushed everything up to our cookie.
    Watcher,
    /// No watcher: a stat walk recorded the differences.
    StatWalk,
}

/// Brings the SWS of `session`'s checkout up to date with the disk.
pub fn synchronize(session: &mut Session, timeout: Duration) -> Result<Synchronized> {
    let dir = session.dir().to_path_buf();
    if marker::watcher_running(&dir)? {
        let name = format!(
            "{COOKIE_PREFIX}{}-{}",
            std::process::id(),
            jit_kernel::sws::SwsId::random()
        );
        let cookie = marker::meta_dir(&dir).join(name);
        std::fs::write(&cookie, b"").map_err(|e| WatchError::io(&cookie, e))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            if !cookie.exists() {
                session.reload()?;
                return Ok(Synchronized::Watcher);
            }
            if Instant::now() >= deadline || !marker::watcher_running(&dir)? {
                let _ = std::fs::remove_file(&cookie);
                tracing::warn!(dir = %dir.display(), "the watcher did not answer; comparing the tree instead");
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }
    let _lock = marker::flush_lock(&dir)?;
    session.refresh_if_stale()?;
    session.sync([""], true, &mut Unwatched)?;
    Ok(Synchronized::StatWalk)
}
