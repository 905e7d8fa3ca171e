//! The watcher daemon: `notify` (inotify) events on a checkout become a dirty-path set; after a
//! short quiet window the set is flushed through [`Session::sync`] into the checkout's SWS.
//!
//! The known gaps of inotify are closed here: every directory gets its own watch (never an
//! ignored one), added *before* the directory is read, so a file created in a brand-new
//! directory is caught either by the watch or by the read; a queue overflow triggers a full
//! rescan, logged; running out of watches is a clear error; and a cookie file written by
//! `jit status` into `.jit-checkout/` is removed only after every event queued before it has been
//! flushed, which is what makes status synchronized.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, EventKind, ModifyKind, RenameMode};
use notify::{Event, RecursiveMode, Watcher as _};

use crate::error::{Result, WatchError};
use crate::marker::{self, COOKIE_PREFIX, META_DIR};
use crate::session::{Dirs, Session};

/// How the watcher batches.
#[derive(Debug, Clone)]
pub struct Options {
    /// A flush happens once no event arrived for this long…
    pub quiet: Duration,
    /// …or this long after the first unflushed event, whichever comes first.
    pub max_delay: Duration,
    /// Test hook: while this file exists the event reader stalls, so the kernel's inotify queue
    /// fills up and overflows for real.
    pub stall_file: Option<PathBuf>,
    /// Set to stop the loop (checked at least every 100 ms).
    pub stop: Arc<AtomicBool>,
    /// Test hook: while this file exists the watcher, holding its lock, waits before it
    /// watches anything — the window in which a cookie raises no event.
    pub hold_before_watching: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            quiet: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
            stall_file: None,
            stop: Arc::new(AtomicBool::new(false)),
            hold_before_watching: None,
        }
    }
}

/// The directories under watch, kept in step with `notify`'s own table.
struct Watches {
    watcher: notify::INotifyWatcher,
    watched: HashSet<PathBuf>,
}

impl Dirs for Watches {
    fn is_watched(&self, abs: &Path) -> bool {
        self.watched.contains(abs)
    }

    fn entering(&mut self, abs: &Path) -> Result<()> {
        if self.watched.contains(abs) {
            return Ok(());
        }
        match self.watcher.watch(abs, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(abs.to_path_buf());
                Ok(())
            }
            Err(e) => match e.kind {
                notify::ErrorKind::MaxFilesWatch => Err(WatchError::WatchLimit {
                    path: abs.to_path_buf(),
                    limit: watch_limit(),
                }),
                // Gone already: the read that follows finds it missing and records that.
                notify::ErrorKind::PathNotFound => Ok(()),
                _ => Err(WatchError::Notify {
                    path: abs.to_path_buf(),
                    message: e.to_string(),
                }),
            },
        }
    }

    fn gone(&mut self, abs: &Path) {
        self.forget(abs);
    }
}

impl Watches {
    /// Drops `abs` and everything below it (notify removed those watches itself).
    fn forget(&mut self, abs: &Path) {
        self.watched.retain(|p| !p.starts_with(abs));
    }
}

/// What the event loop has gathered since the last flush.
#[derive(Default)]
struct Gathered {
    dirty: BTreeSet<String>,
    cookies: Vec<PathBuf>,
    rescan: bool,
}

/// Runs the watcher on the checkout containing `dir` until `options.stop` is set or an error
/// ends it. `ready` is called once the initial scan is recorded and every watch is in place.
pub fn run(dir: &Path, options: &Options, ready: impl FnOnce(&Path)) -> Result<()> {
    let located = marker::require(dir)?;
    let top = located.dir.clone();
    let _watcher_lock =
        marker::try_watcher_lock(&top)?.ok_or_else(|| WatchError::AlreadyWatched(top.clone()))?;
    let mut session = Session::open_located(located)?;
    if session.state().is_none() {
        return Err(WatchError::NotACheckout(top));
    }
    if let Some(hold) = &options.hold_before_watching {
        while hold.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (tx, rx) = mpsc::channel::<notify::Result<Event>>();
    let stall = options.stall_file.clone();
    let handler = move |event: notify::Result<Event>| {
        if let Some(stall) = &stall {
            while stall.exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = tx.send(event);
    };
    let watcher = notify::INotifyWatcher::new(handler, notify::Config::default()).map_err(|e| {
        WatchError::Notify {
            path: top.clone(),
            message: e.to_string(),
        }
    })?;
    let mut watches = Watches {
        watcher,
        watched: HashSet::new(),
    };
    let meta = marker::meta_dir(&top);
    watches
        .watcher
        .watch(&meta, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Notify {
            path: meta.clone(),
            message: e.to_string(),
        })?;
    // Cookies written since this watcher took its lock but before `.jit-checkout/` was watched
    // raised no event: the initial scan, which starts after they were written, answers them.
    // (One written after this listing raises an event and is answered by the loop.)
    let early_cookies = marker::cookies(&top)?;
    {
        let _lock = marker::flush_lock(&top)?;
        session.refresh_if_stale()?;
        let synced = session.sync([""], true, &mut watches)?;
        tracing::info!(dir = %top.display(), ops = synced.ops, "initial scan recorded");
    }
    for cookie in early_cookies {
        match std::fs::remove_file(&cookie) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WatchError::io(&cookie, e)),
        }
    }
    ready(&top);
    let mut gathered = Gathered::default();
    while !options.stop.load(Ordering::Relaxed) {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        take(&top, first, &mut gathered, &mut watches)?;
        let deadline = Instant::now() + options.max_delay;
        while gathered.cookies.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(options.quiet.min(deadline - now)) {
                Ok(event) => take(&top, event, &mut gathered, &mut watches)?,
                Err(_) => break,
            }
        }
        // Everything already queued belongs to this flush, too (and a cookie behind it waits).
        while let Ok(event) = rx.try_recv() {
            take(&top, event, &mut gathered, &mut watches)?;
        }
        flush(&mut session, &mut gathered, &mut watches)?;
    }
    Ok(())
}

/// The inotify watch limit that applies to this process: its user namespace's
/// (`/proc/sys/user/max_inotify_watches`, which is `fs.inotify.max_user_watches` outside
/// containers).
fn watch_limit() -> String {
    [
        "/proc/sys/user/max_inotify_watches",
        "/proc/sys/fs/inotify/max_user_watches",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|| "unknown".into())
}

/// Folds one event into the gathered state. Event kinds only filter out reads and name the
/// paths to look at; what changed is decided at flush from the files themselves.
fn take(
    top: &Path,
    event: notify::Result<Event>,
    gathered: &mut Gathered,
    watches: &mut Watches,
) -> Result<()> {
    let event = match event {
        Ok(event) => event,
        Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
            return Err(WatchError::WatchLimit {
                path: top.to_path_buf(),
                limit: watch_limit(),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "watch error; rescanning");
            gathered.rescan = true;
            return Ok(());
        }
    };
    if event.need_rescan() {
        tracing::warn!(dir = %top.display(), "inotify queue overflowed: events were lost, rescanning the whole checkout");
        gathered.rescan = true;
    }
    match event.kind {
        EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
        | EventKind::Access(AccessKind::Close(notify::event::AccessMode::Read)) => return Ok(()),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
            for path in &event.paths {
                watches.forget(path);
            }
        }
        _ => {}
    }
    for path in event.paths {
        let Ok(rel) = path.strip_prefix(top) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            tracing::warn!(path = %path.display(), "ignoring a file name that is not UTF-8");
            continue;
        };
        if let Some(inside) = rel.strip_prefix(META_DIR) {
            let is_cookie = inside
                .strip_prefix('/')
                .is_some_and(|name| name.starts_with(COOKIE_PREFIX));
            if is_cookie && matches!(event.kind, EventKind::Create(_)) {
                gathered.cookies.push(path.clone());
            }
            continue;
        }
        gathered.dirty.insert(rel.to_owned());
    }
    Ok(())
}

/// Records the gathered paths (or everything, after an overflow), then answers cookies.
fn flush(session: &mut Session, gathered: &mut Gathered, watches: &mut Watches) -> Result<()> {
    if gathered.rescan {
        // Cookies already present are answered by the rescan, which starts after they were
        // written (their own events may have been lost with the overflow).
        gathered.cookies.extend(marker::cookies(session.dir())?);
    }
    if !gathered.dirty.is_empty() || gathered.rescan {
        let _lock = marker::flush_lock(session.dir())?;
        session.refresh_if_stale()?;
        let outcome = if gathered.rescan {
            session.sync([""], true, watches)
        } else {
            session.sync(gathered.dirty.iter(), false, watches)
        };
        match outcome {
            Ok(synced) => {
                tracing::debug!(ops = synced.ops, patches = synced.patches, "flushed");
            }
            Err(WatchError::Kernel(error)) => {
                // Refused (say, the SWS moved under us): start over from the disk as a whole.
                tracing::warn!(%error, "the kernel refused a batch; rescanning");
                session.reload()?;
                session.sync([""], true, watches)?;
            }
            Err(other) => return Err(other),
        }
        gathered.dirty.clear();
        gathered.rescan = false;
    }
    for cookie in gathered.cookies.drain(..) {
        match std::fs::remove_file(&cookie) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WatchError::io(&cookie, e)),
        }
    }
    Ok(())
}
