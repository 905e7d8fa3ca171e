//! jitfs: the FUSE projection of a universe (SPEC §2).
//!
//! ```text
//! <mountpoint>/
//!   head/                 the checked-out branch; writable; writes land in its working SWS
//!   sws/<name-or-id>/     one directory per live SWS; writable; `mkdir sws/NAME` creates one
//!   refs/heads/<branch>/  read-only tip of each branch
//!   refs/tags/<tag>/      read-only
//!   nodes/<snapshot-id>/  read-only, any snapshot by id (looked up, not listed)
//! ```
//!
//! The mount keeps an in-memory tree of inodes per view ([`state`]). Reads of unchanged files
//! come straight from the store's chunks; the first write to a file copies it into an
//! anonymous backing file that the kernel then reads and writes directly (FUSE passthrough).
//! Local changes are written back as ordinary patches to the view's SWS ([`writeback`]) a few
//! milliseconds after they stop, on `fsync`, and before any kernel operation that reads or
//! commits an SWS as a whole (the store asks its observers to settle). Changes from elsewhere
//! reach the mount through the store's commit observer and are applied as a diff
//! ([`reconcile`]), invalidating exactly the kernel cache entries that changed.

#![deny(missing_docs)]

pub mod backing;
pub mod error;
pub mod fs;
pub mod guard;
pub mod ignored;
pub mod inode;
pub mod mount;
pub mod overlay;
pub mod persist;
pub mod reconcile;
pub mod recover;
pub mod source;
pub mod stale;
pub mod state;
pub mod views;
pub mod writeback;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use fuser::{INodeNo, Notifier};
use jit_kernel::Repository;

pub use error::{Error, Result};
pub use mount::{Mount, MountOptions};

use inode::ViewId;
use reconcile::Inval;
use state::State;
use views as views_mod;
use views::ViewKind;

/// What the FUSE handlers, the write-back thread and the store observer share.
pub struct Shared {
    /// The universe shown.
    pub repo: Arc<Repository>,
    state: Mutex<State>,
    /// Who owns SWS the mount creates and authors its patches.
    pub owner: String,
    /// Where backing files are created (`.jit/fs`).
    pub backing_dir: PathBuf,
    passthrough: AtomicBool,
    notices: Mutex<Option<mpsc::Sender<Notice>>>,
    wake: (Mutex<Wake>, Condvar),
    /// One lock per view, held for the whole of a write-back of it ([`Shared::flush_lock`]).
    flushes: Mutex<HashMap<ViewId, Arc<Mutex<()>>>>,
}

/// A batch of kernel cache invalidations, optionally acknowledged once sent.
pub struct Notice {
    invals: Vec<Inval>,
    done: Option<mpsc::Sender<()>>,
}

#[derive(Default)]
struct Wake {
    kicked: bool,
    stop: bool,
}

impl Shared {
    /// State for a mount of `repo`, with its overlay (`.jit/fs`).
    pub fn new(repo: Arc<Repository>, owner: String, uid: u32, gid: u32) -> Result<Shared> {
        let fs_dir = repo.jit_dir().join("fs");
        let overlay = Arc::new(overlay::Overlay::open(&fs_dir)?);
        let backing_dir = overlay.data_dir().to_path_buf();
        Ok(Shared {
            repo,
            state: Mutex::new(State::new(uid, gid, overlay)),
            owner,
            backing_dir,
            passthrough: AtomicBool::new(false),
            notices: Mutex::new(None),
            wake: (Mutex::new(Wake::default()), Condvar::new()),
            flushes: Mutex::new(HashMap::new()),
        })
    }

    /// The state lock. A panic in another handler must not wedge the mount, so a poisoned
    /// lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the kernel accepted FUSE passthrough.
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(crate) fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Ordering::Relaxed);
    }

    /// Makes sure file `ino` has a backing file holding its current content, copying it from
    /// the store without holding the state lock (a 1 GiB copy must not stall the mount).
    /// `for_read` counts the copy against the read-copy budget.
    pub fn prepare_backing(&self, ino: inode::Ino, for_read: bool) -> Result<()> {
        for _ in 0..4 {
            let (layout, reads, blob) = {
                let mut state = self.lock();
                match &state.get(ino)?.kind {
                    inode::Kind::File(body) if body.backing.is_some() => return Ok(()),
                    inode::Kind::File(_) => {}
                    _ => return error::errno(fuser::Errno::EISDIR),
                }
                let view = state.view_of(ino)?;
                let reads = state.views[view].reads();
                let layout = state.layout(&self.repo, ino)?;
                let blob = match &state.get(ino)?.kind {
                    inode::Kind::File(body) => body.blob,
                    _ => None,
                };
                (layout, reads, blob)
            };
            let mut backing = match layout {
                Some(layout) => views_mod::with_source(self.repo.store(), reads, |src| {
                    backing::Backing::with_content(&self.backing_dir, src, &layout)
                })?,
                None => backing::Backing::create(&self.backing_dir)?,
            };
            if for_read {
                backing.count_as_read_copy()?;
            }
            let mut state = self.lock();
            if let inode::Kind::File(body) = &mut state.get_mut(ino)?.kind {
                if body.backing.is_some() || body.blob != blob {
                    // Another request got there first, or the content moved on: this copy
                    // has no use (and no record names it).
                    backing.dispose();
                }
                if body.backing.is_some() {
                    return Ok(());
                }
                if body.blob != blob {
                    continue;
                }
                body.size = backing.size()?;
                body.backing = Some(Arc::new(backing));
                drop(state);
                self.align_backing_mtime(ino);
                return Ok(());
            }
        }
        error::errno(fuser::Errno::EAGAIN)
    }

    /// Gives a fresh backing file the inode's mtime, so only real writes move it.
    pub(crate) fn align_backing_mtime(&self, ino: inode::Ino) {
        let state = self.lock();
        if let Ok(node) = state.get(ino) {
            if let inode::Kind::File(inode::FileBody {
                backing: Some(backing),
                ..
            }) = &node.kind
            {
                let times = std::fs::FileTimes::new().set_modified(node.attr.mtime);
                let _ = backing.file.set_times(times);
            }
        }
    }

    /// Wakes the write-back thread.
    pub fn kick(&self) {
        let (lock, cvar) = &self.wake;
        if let Ok(mut wake) = lock.lock() {
            wake.kicked = true;
            // Both the write-back and the watch thread wait on it: wake both, or the write-back
            // may sleep through the kick until its timeout.
            cvar.notify_all();
        }
    }

    /// The lock that makes write-backs of view `view` run one at a time
    /// ([`writeback::flush_view`] holds it throughout). Taken before the state lock, never while
    /// holding it; the map's own lock is a leaf, held only to look the view's lock up.
    pub(crate) fn flush_lock(&self, view: ViewId) -> Arc<Mutex<()>> {
        let mut flushes = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
        flushes.entry(view).or_default().clone()
    }

    /// Writes back one view now.
    pub fn flush_view(&self, view: ViewId) -> Result<()> {
        let invals = writeback::flush_view(self, view)?;
        self.notify(invals, false);
        Ok(())
    }

    /// Writes back every writable view now.
    pub fn flush_all(&self) -> Result<()> {
        let views: Vec<ViewId> = {
            let state = self.lock();
            state
                .live_views()
                .into_iter()
                .filter(|&v| state.views[v].kind.writable() && state.views[v].dirty)
                .collect()
        };
        let mut result = Ok(());
        for view in views {
            if let Err(error) = self.flush_view(view) {
                tracing::warn!(%error, "write-back failed; the changes stay in the mount");
                result = Err(error);
            }
        }
        result
    }

    /// Re-reads what every open view should show and applies the differences; `wait` until
    /// the kernel has been told (never from inside a FUSE request).
    pub fn refresh(&self, wait: bool) {
        let mut invals = Vec::new();
        {
            let repo = &self.repo;
            let mut state = self.lock();
            let txn = match repo.store().read() {
                Ok(txn) => txn,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the store to refresh the mount");
                    return;
                }
            };
            for view in state.refreshable_views() {
                match views_mod::resolve(repo, &txn, &state.views[view].kind) {
                    Ok(Some(target)) => {
                        if let Err(error) =
                            reconcile::reconcile(&mut state, repo, view, &target, &mut invals)
                        {
                            tracing::warn!(%error, "cannot refresh a view");
                        }
                    }
                    Ok(None) => {
                        // The ref or SWS is gone: its directory goes too, and what the
                        // overlay kept for it (data files go at the next start).
                        state.views[view].live = false;
                        if let ViewKind::Sws(_) = &state.views[view].kind {
                            let key = state.views[view].kind.key();
                            if let Err(error) =
                                state.overlay.batch(|b| b.remove_view(&key).map(drop))
                            {
                                tracing::warn!(%error, "cannot drop a discarded view's records");
                            }
                        }
                        let root = state.views[view].root;
                        if let Ok(node) = state.get(root) {
                            invals.push(Inval::Entry(node.parent, node.name.clone()));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot resolve a view"),
                }
            }
        }
        self.notify(invals, wait);
    }

    fn notify(&self, invals: Vec<Inval>, wait: bool) {
        if invals.is_empty() {
            return;
        }
        let sender = self.notices.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else {
            return;
        };
        let (done, acked) = if wait {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if sender.send(Notice { invals, done }).is_ok() {
            if let Some(acked) = acked {
                let _ = acked.recv_timeout(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// Sends invalidations to the kernel, one batch at a time, on its own thread: a FUSE request
/// handler must never block on a notification the kernel may be waiting to serve.
fn run_notifier(notifier: Notifier, notices: mpsc::Receiver<Notice>) {
    for notice in notices {
        for inval in notice.invals {
            let result = match &inval {
                Inval::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                Inval::Entry(parent, name) => notifier.inval_entry(
                    INodeNo(*parent),
                    std::os::unix::ffi::OsStrExt::from_bytes(name.as_slice()),
                ),
            };
            match result {
                Ok(()) => tracing::trace!(?inval, "invalidated"),
                // ENOENT: the kernel had nothing cached for it, which is fine.
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                    tracing::trace!(?inval, "nothing cached to invalidate")
                }
                Err(error) => tracing::debug!(%error, ?inval, "invalidation not delivered"),
            }
        }
        if let Some(done) = notice.done {
            let _ = done.send(());
        }
    }
}
