//! Mounting and unmounting: the FUSE session, the write-back thread, the notifier thread and
//! the store observer, started and stopped together.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use jit_kernel::observe::Observer;
use jit_kernel::Repository;

use crate::error::{Error, Result};
use crate::fs::JitFs;
use crate::{guard, stale, Shared};

/// How long write-back waits after a change for more to batch with it.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// How often the mount looks for changes made by other processes (a `jit` command that wrote
/// the store directly); changes made inside the daemon are seen synchronously.
const POLL: Duration = Duration::from_millis(50);

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Where.
    pub mountpoint: PathBuf,
    /// FUSE request threads.
    pub threads: usize,
    /// Owner of SWS created through the mount and author of its patches.
    pub owner: String,
    /// Let other users in (FUSE `allow_other`); otherwise only the mounting user.
    pub allow_other: bool,
}

impl MountOptions {
    /// The default mountpoint of a universe: `.jit/mnt`.
    pub fn default_mountpoint(repo: &Repository) -> PathBuf {
        repo.jit_dir().join("mnt")
    }
}

/// A live mount; unmounts (after writing back) when dropped.
pub struct Mount {
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    observer: Arc<dyn Observer>,
    writeback: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
    mountpoint: PathBuf,
}

struct MountObserver(Arc<Shared>);

impl Observer for MountObserver {
    fn committed(&self) {
        if !guard::in_mount() {
            self.0.refresh(true);
        }
    }

    fn settle(&self) -> jit_kernel::Result<()> {
        if guard::in_mount() {
            return Ok(());
        }
        self.0.flush_all().map_err(|e| {
            jit_kernel::Error::InvalidInput(format!("the mount could not write back: {e}"))
        })
    }
}

impl Mount {
    /// Mounts `repo` at `options.mountpoint` (creating it, and detaching a dead mount a killed
    /// daemon left there).
    pub fn start(repo: Arc<Repository>, options: &MountOptions) -> Result<Mount> {
        let mountpoint = stale::absolute(&options.mountpoint)?;
        stale::clear(&mountpoint)?;
        std::fs::create_dir_all(&mountpoint)
            .map_err(|e| Error::io(format!("cannot create {}", mountpoint.display()), e))?;
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let shared = Arc::new(Shared::new(repo.clone(), options.owner.clone(), uid, gid)?);
        // Every file written and ignored keeps its data file open while its inode lives.
        raise_open_file_limit();
        // What a daemon that died left in the overlay is written back before anything is
        // served.
        crate::recover::recover(&shared)?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(jit_kernel::mounts::fsname(repo.workdir())),
            MountOption::Subtype("jit".into()),
            MountOption::DefaultPermissions,
            MountOption::Dev,
            MountOption::Suid,
        ];
        // Private unless asked: the mount serves the whole universe's content.
        config.acl = if options.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = options.threads > 1;
        let session = fuser::Session::new(JitFs::new(shared.clone()), &mountpoint, &config)
            .map_err(|e| Error::io(format!("cannot mount at {}", mountpoint.display()), e))?;
        let (tx, rx) = mpsc::channel();
        let notifier = session.notifier();
        let notifier_thread = std::thread::Builder::new()
            .name("jitfs-notify".into())
            .spawn(move || crate::run_notifier(notifier, rx))
            .map_err(|e| Error::io("cannot start the notifier thread", e))?;
        if let Ok(mut slot) = shared.notices.lock() {
            *slot = Some(tx);
        }
        let background = session
            .spawn()
            .map_err(|e| Error::io("cannot start the FUSE session", e))?;
        let writeback = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("jitfs-writeback".into())
                .spawn(move || run_writeback(&shared))
                .map_err(|e| Error::io("cannot start the write-back thread", e))?
        };
        let watcher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("jitfs-watch".into())
                .spawn(move || run_watch(&shared))
                .map_err(|e| Error::io("cannot start the store watcher thread", e))?
        };
        let observer: Arc<dyn Observer> = Arc::new(MountObserver(shared.clone()));
        repo.store().observe(observer.clone());
        tracing::info!(mountpoint = %mountpoint.display(), "mounted");
        Ok(Mount {
            shared,
            session: Some(background),
            observer,
            writeback: Some(writeback),
            watcher: Some(watcher),
            notifier: Some(notifier_thread),
            mountpoint,
        })
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the kernel accepted FUSE passthrough for backing files.
    pub fn passthrough(&self) -> bool {
        self.shared.passthrough()
    }

    /// Writes back pending changes now.
    pub fn settle(&self) -> Result<()> {
        self.shared.flush_all()
    }

    /// Writes back, unmounts and stops the threads.
    pub fn unmount(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let flushed = self.shared.flush_all();
        self.shared.repo.store().unobserve(&self.observer);
        {
            let (lock, cvar) = &self.shared.wake;
            if let Ok(mut wake) = lock.lock() {
                wake.stop = true;
                cvar.notify_all();
            }
        }
        for thread in [self.writeback.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
        let unmounted = unmount(session, &self.mountpoint);
        if let Ok(mut slot) = self.shared.notices.lock() {
            *slot = None;
        }
        if let Some(thread) = self.notifier.take() {
            let _ = thread.join();
        }
        flushed.and(unmounted)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "unmount failed");
        }
    }
}

/// Raises the soft limit on open files to the hard one (ignored build output keeps one data
/// file open per file; the default soft limit of 1,024 is soon reached).
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
    }
}

/// Unmounts; when files are still open (a `dd` still writing), detaches the mount lazily
/// instead of failing: it leaves the namespace at once, the open files keep working until they
/// close (their data files, and the overlay's records of them, are what the next daemon reads),
/// and the daemon does not wait for them.
fn unmount(session: BackgroundSession, mountpoint: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => {
            // The session thread sees the device go and ends.
            return session
                .join()
                .map_err(|e| Error::io("the FUSE session ended badly", e));
        }
        Err(nix::errno::Errno::EBUSY) => {
            tracing::warn!(
                mountpoint = %mountpoint.display(),
                "files are still open in the mount: detaching it lazily"
            );
            umount2(mountpoint, MntFlags::MNT_DETACH).map_err(|e| {
                Error::io(format!("cannot detach {}", mountpoint.display()), e.into())
            })?;
            // The session thread serves the open files until they close; it ends with the
            // process.
            drop(session);
            return Ok(());
        }
        // Not root: fusermount does it (below).
        Err(_) => {}
    }
    session
        .umount_and_join()
        .map_err(|e| Error::io(format!("cannot unmount {}", mountpoint.display()), e))
}

fn run_writeback(shared: &Shared) {
    let (lock, cvar) = &shared.wake;
    loop {
        {
            let Ok(mut wake) = lock.lock() else { return };
            while !wake.kicked && !wake.stop {
                wake = match cvar.wait_timeout(wake, Duration::from_secs(1)) {
                    Ok((w, _)) => w,
                    Err(_) => return,
                };
            }
            if wake.stop {
                return;
            }
            wake.kicked = false;
        }
        std::thread::sleep(DEBOUNCE);
        if let Err(error) = shared.flush_all() {
            tracing::warn!(%error, "write-back failed; retrying on the next change");
        }
    }
}

/// What identifies the store's state as seen from outside: the log's last sequence number and
/// the checked-out branch.
fn store_mark(shared: &Shared) -> Option<(u64, String)> {
    let store = shared.repo.store();
    let txn = store.read().ok()?;
    let tail = store.log_tail(&txn).ok()?;
    let head = shared.repo.head().ok()?.full().to_owned();
    Some((tail, head))
}

fn run_watch(shared: &Shared) {
    let (lock, cvar) = &shared.wake;
    let mut seen = store_mark(shared);
    loop {
        {
            let Ok(wake) = lock.lock() else { return };
            if wake.stop {
                return;
            }
            match cvar.wait_timeout(wake, POLL) {
                Ok((wake, _)) if wake.stop => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let now = store_mark(shared);
        if now != seen {
            shared.refresh(false);
            seen = now;
        }
    }
}
