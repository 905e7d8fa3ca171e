//! `jit checkout --into DIR [REV]`: makes DIR hold REV as plain files, incrementally.
//!
//! The disk is first brought into the checkout's SWS (a [`Session::sync`] of the whole tree,
//! under the flush lock, so a running watcher waits). Then only the paths that differ between
//! the tree the directory holds and the target tree are written or removed — unchanged files
//! keep their inode and mtime — each write's `lstat` goes into the index, and the new state and
//! index are recorded in one kernel operation. Uncommitted local edits survive a switch when the
//! switch does not touch their paths (they are carried into the new SWS); otherwise the checkout
//! refuses before writing anything.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use jit_kernel::checkout::{CheckoutState, IndexEntry, Record, Switching};
use jit_kernel::command::args::{CreateArgs, SwsArgs};
use jit_kernel::command::reply::StatusInfo;
use jit_kernel::command::Operation;
use jit_kernel::import::Progress;
use jit_kernel::node::{EntryKind, TreeEntry};
use jit_kernel::refs::{self, RefName};
use jit_kernel::source::{Dag, Source};
use jit_kernel::sws::{self, SwsId, SwsSource};
use jit_kernel::tree::{self, ChangeKind};
use jit_kernel::{content, revparse, NodeId, Repository};

use crate::disk;
use crate::error::{Result, WatchError};
use crate::marker::{self, Located, Marker};
use crate::session::{Session, Unwatched};

/// How long a checkout waits for a busy watcher to flush before walking the tree itself.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// What a checkout did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedOut {
    /// The checkout directory.
    pub dir: String,
    /// The SWS its edits go to.
    pub sws: String,
    /// Files and symlinks written.
    pub written: usize,
    /// Paths removed.
    pub removed: usize,
    /// Uncommitted local edits kept across the switch.
    pub kept: usize,
}

/// Checks out `rev` (default: the checkout's current revision, or HEAD's branch) into `dir`,
/// using the universe at `repo` when `dir` is not a checkout yet.
pub fn checkout(
    repo: &Path,
    dir: &Path,
    rev: Option<&str>,
    progress: &dyn Progress,
) -> Result<CheckedOut> {
    let started = std::time::Instant::now();
    let located = prepare_dir(repo, dir)?;
    let mut session = Session::open_located(located)?;
    tracing::debug!(elapsed = ?started.elapsed(), "checkout: opened");
    if let Some(switching) = session.state().and_then(|s| s.switching.clone()) {
        // A checkout killed midway: its files are half written, so they are not edits. Finish
        // it first (under the flush lock), then do what was asked.
        let finished = {
            let _lock = marker::flush_lock(session.dir())?;
            session.refresh_if_stale()?;
            tracing::info!(rev = %switching.rev, "finishing an interrupted checkout");
            switch(&mut session, Target::Resume(switching.clone()), progress)?
        };
        return match rev {
            Some(rev) if rev != switching.rev.as_str() => checkout(repo, dir, Some(rev), progress),
            _ => Ok(finished),
        };
    }
    if session.state().is_some() {
        // Every edit so far into the current SWS: through a running watcher (a cookie), else a
        // stat walk. Then the flush lock keeps the watcher still while files are rewritten.
        crate::sync::synchronize(&mut session, SYNC_TIMEOUT)?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "checkout: synchronized");
    let _lock = marker::flush_lock(session.dir())?;
    session.refresh_if_stale()?;
    tracing::debug!(elapsed = ?started.elapsed(), "checkout: locked");
    let rev = match rev {
        Some(rev) => rev.to_owned(),
        None => match session.state() {
            Some(state) => state.rev.clone(),
            None => session.repo()?.head()?.short().to_owned(),
        },
    };
    switch(&mut session, Target::Rev(&rev), progress)
}

/// Where a switch goes.
enum Target<'r> {
    /// A revision as typed.
    Rev(&'r str),
    /// Where an interrupted switch was going.
    Resume(Switching),
}

/// Creates DIR (or checks it) and its marker; refuses a directory inside the universe, a
/// non-empty directory that is not a checkout, and a checkout of another universe.
fn prepare_dir(repo: &Path, dir: &Path) -> Result<Located> {
    let repo = Repository::discover(repo)?;
    let workdir = repo.workdir().to_path_buf();
    drop(repo);
    std::fs::create_dir_all(dir).map_err(|e| WatchError::io(dir, e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| WatchError::io(dir, e))?;
    if dir.starts_with(&workdir) || workdir.starts_with(&dir) {
        return Err(WatchError::InsideRepository { dir, repo: workdir });
    }
    if let Some(found) = marker::find(&dir)? {
        if found.dir != dir {
            return Err(WatchError::Invalid(format!(
                "{} is inside the checkout at {}; check out into its top directory",
                dir.display(),
                found.dir.display()
            )));
        }
        if found.marker.repo != workdir {
            return Err(WatchError::Invalid(format!(
                "{} is a checkout of the universe at {}, not {}",
                dir.display(),
                found.marker.repo.display(),
                workdir.display()
            )));
        }
        return Ok(found);
    }
    let mut entries = std::fs::read_dir(&dir).map_err(|e| WatchError::io(&dir, e))?;
    if entries.next().is_some() {
        return Err(WatchError::NotEmpty(dir));
    }
    let marker = Marker { repo: workdir };
    marker::write(&dir, &marker)?;
    Ok(Located { dir, marker })
}

/// The SWS and state a checkout of `rev` uses: a branch's working SWS, or for any other
/// revision a dedicated SWS anchored on it that commits to HEAD's branch.
fn target(session: &mut Session, rev: &str) -> Result<(CheckoutState, SwsId)> {
    let owner = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let (branch, from) = {
        let repo = session.repo()?;
        let store = repo.store();
        let txn = store.read()?;
        match RefName::branch(rev) {
            Ok(name) if refs::get(store, &txn, &name)?.is_some() => (name, None),
            _ => {
                let head = repo.head()?;
                let snapshot = revparse::resolve_snapshot(store, &txn, &head, rev)?;
                (head, Some(snapshot))
            }
        }
    };
    let reuse = session.state().and_then(|state| {
        (state.rev == rev && state.sws.is_some() && from.is_some())
            .then(|| session.sws().map(str::to_owned))
            .flatten()
    });
    let args = CreateArgs {
        branch: Some(branch.short().to_owned()),
        from: from.map(|id| id.to_hex()),
        owner,
        name: from.map(|_| format!("checkout:{}", session.key())),
    };
    let sws_text = match reuse {
        Some(id) => id,
        None if from.is_some() => {
            let status: StatusInfo = session.kernel().invoke(Operation::CreateSws, &args)?;
            status.id
        }
        None => {
            let status: StatusInfo = session.kernel().invoke(Operation::WorkingSws, &args)?;
            status.id
        }
    };
    let id: SwsId = sws_text.parse()?;
    let state = CheckoutState {
        rev: rev.to_owned(),
        branch: branch.full().to_owned(),
        sws: from.map(|_| sws_text),
        generation: 0,
        tree: None,
        switching: None,
    };
    Ok((state, id))
}

/// A node source that sees the DAG plus two SWS's staged nodes (the old and the new).
struct Both<'a, 't>(SwsSource<'a, 't>, Option<SwsSource<'a, 't>>);

impl Source for Both<'_, '_> {
    fn bytes(&self, id: &NodeId) -> jit_kernel::Result<Option<std::borrow::Cow<'_, [u8]>>> {
        match self.0.bytes(id)? {
            Some(bytes) => Ok(Some(bytes)),
            None => match &self.1 {
                Some(other) => other.bytes(id),
                None => Ok(None),
            },
        }
    }

    fn has(&self, id: &NodeId) -> jit_kernel::Result<bool> {
        Ok(self.0.has(id)? || self.1.as_ref().map(|o| o.has(id)).transpose()? == Some(true))
    }
}

/// One path to write or remove.
enum Step {
    /// Write a file or symlink.
    Write {
        path: String,
        kind: EntryKind,
        blob: NodeId,
    },
    /// Remove whatever is at the path.
    Remove { path: String },
    /// Make an empty directory the target holds.
    Mkdir { path: String },
    /// Remove an empty directory the target no longer holds (one holding untracked files
    /// stays).
    Rmdir { path: String },
}

fn switch(session: &mut Session, to: Target<'_>, progress: &dyn Progress) -> Result<CheckedOut> {
    let old_sws: Option<SwsId> = session.sws().map(str::parse).transpose()?;
    let (mut state, new_sws) = match to {
        Target::Rev(rev) => target(session, rev)?,
        Target::Resume(switching) => (
            CheckoutState {
                rev: switching.rev,
                branch: switching.branch,
                sws: switching.dedicated.then(|| switching.sws.clone()),
                generation: 0,
                tree: None,
                switching: None,
            },
            switching.sws.parse()?,
        ),
    };
    let (steps, kept) = plan(session, old_sws, new_sws)?;
    // The journal: from here until the result is recorded the directory is neither the old
    // tree nor the new one, and a crash must not let anyone take it for edits.
    if let Some(current) = session.state().cloned() {
        let journal = Record {
            dir: session.key().to_owned(),
            generation: current.generation,
            state: Some(CheckoutState {
                switching: Some(Switching {
                    rev: state.rev.clone(),
                    branch: state.branch.clone(),
                    sws: new_sws.to_string(),
                    dedicated: state.sws.is_some(),
                }),
                ..current
            }),
            ..Record::default()
        };
        session.record(&journal)?;
    }
    tracing::debug!(steps = steps.len(), kept = kept.len(), "checkout: planned");
    let dir = session.dir().to_path_buf();
    let writes = steps
        .iter()
        .filter(|s| matches!(s, Step::Write { .. }))
        .count();
    progress.total(writes as u64, 0);
    let mut record = Record {
        dir: session.key().to_owned(),
        generation: session.state().map(|s| s.generation).unwrap_or(0),
        ..Record::default()
    };
    let mut created = BTreeSet::new();
    let (mut written, mut removed) = (0, 0);
    {
        let repo = session.repo()?;
        let store = repo.store();
        let txn = store.read()?;
        let src = SwsSource::new(store, &txn, new_sws);
        let mut batch: Vec<(String, NodeId, EntryKind, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        for step in &steps {
            match step {
                Step::Remove { path } => {
                    remove_path(&dir.join(path))?;
                    record.remove.push(path.clone());
                    removed += 1;
                }
                Step::Rmdir { path } => {
                    remove_empty_dir(&dir.join(path))?;
                    record.remove.push(path.clone());
                    removed += 1;
                }
                Step::Mkdir { path } => {
                    ensure_parents(&dir, path, &mut created, &mut record)?;
                    make_dir(&dir, path, &mut record)?;
                    created.insert(path.clone());
                }
                Step::Write { path, kind, blob } => {
                    ensure_parents(&dir, path, &mut created, &mut record)?;
                    let data = content::read_blob(&src, blob)?;
                    batch_bytes += data.len();
                    batch.push((path.clone(), *blob, *kind, data));
                    if batch_bytes >= WRITE_BATCH_BYTES {
                        written +=
                            write_batch(&dir, std::mem::take(&mut batch), &mut record, progress)?;
                        batch_bytes = 0;
                    }
                }
            }
        }
        written += write_batch(&dir, batch, &mut record, progress)?;
        prune_dirs(&dir, &steps, &mut record)?;
        stall_for_tests();
        let target_tree = sws::get(store, &txn, new_sws)?.tree;
        state.tree = Some(target_tree);
        // Kept local edits: the index keeps the target's entry with a stat that can never
        // match, or forgets a path the target lacks, so the sync below carries the edit into
        // the new SWS.
        for (path, target) in &kept {
            match target {
                Some(entry) => record.set.push((path.clone(), stale_entry(entry))),
                None => record.remove.push(path.clone()),
            }
        }
        drop(txn);
    }
    record.state = Some(state.clone());
    tracing::debug!(written, removed, "checkout: files written");
    let done = session.record(&record)?;
    tracing::debug!("checkout: recorded");
    state.generation = done.generation;
    session.adopt(state);
    session.reload()?;
    if !kept.is_empty() {
        let paths: Vec<&str> = kept.iter().map(|(p, _)| p.as_str()).collect();
        session.sync(paths, false, &mut Unwatched)?;
    }
    if let Some(old) = old_sws.filter(|old| *old != new_sws) {
        discard_if_dedicated(session, old)?;
    }
    Ok(CheckedOut {
        dir: session.key().to_owned(),
        sws: new_sws.to_string(),
        written,
        removed,
        kept: kept.len(),
    })
}

/// Test hook: with `JIT_CHECKOUT_TEST_STALL=FILE` a checkout stops once its files are written
/// and before it records them, creates FILE and waits to be killed — the crash window the
/// journal covers.
fn stall_for_tests() {
    if let Some(file) = std::env::var_os("JIT_CHECKOUT_TEST_STALL") {
        let _ = std::fs::write(&file, b"");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// A dedicated checkout SWS (of a tag or snapshot) left behind by a switch is discarded; its
/// edits were carried over or the switch refused.
fn discard_if_dedicated(session: &mut Session, old: SwsId) -> Result<()> {
    let name = format!("checkout:{}", session.key());
    let dedicated = {
        let repo = session.repo()?;
        let txn = repo.store().read()?;
        match sws::get(repo.store(), &txn, old) {
            Ok(state) => state.name.as_deref() == Some(name.as_str()),
            Err(_) => false,
        }
    };
    if dedicated {
        let args = SwsArgs {
            sws: old.to_string(),
        };
        let payload = jit_kernel::cbor::to_value(&args).map_err(jit_kernel::Error::from)?;
        session.kernel().call(Operation::Discard, payload)?;
    }
    Ok(())
}

/// Local edits kept across the switch: the path and the target's entry there.
type Kept = Vec<(String, Option<TreeEntry>)>;

/// An index entry for a kept edit's path: the target's blob (none for a directory) with a
/// stat no file has, so the next look at the path compares its content.
fn stale_entry(target: &TreeEntry) -> IndexEntry {
    IndexEntry {
        mode: target.kind.mode(),
        size: u64::MAX,
        mtime_ns: 0,
        ctime_ns: 0,
        ino: 0,
        blob: (target.kind != EntryKind::Directory).then_some(target.id),
    }
}

fn plan(session: &Session, old_sws: Option<SwsId>, new_sws: SwsId) -> Result<(Vec<Step>, Kept)> {
    let repo = session.repo()?;
    let store = repo.store();
    let txn = store.read()?;
    let src = Both(
        SwsSource::new(store, &txn, new_sws),
        old_sws.map(|id| SwsSource::new(store, &txn, id)),
    );
    let new_state = sws::get(store, &txn, new_sws)?;
    let empty = tree::empty_tree_id();
    let old_tree = session.state().and_then(|s| s.tree).unwrap_or(empty);
    // Local edits: what the old SWS changed relative to its base, if the switch leaves it.
    let mut local = BTreeSet::new();
    let mut kept = Kept::new();
    if let Some(old) = old_sws.filter(|old| *old != new_sws) {
        if let Ok(old_state) = sws::get(store, &txn, old) {
            let base_tree = tree::tree_of(&Dag::new(store, &txn), &old_state.base)?;
            let mut conflicts = Vec::new();
            for change in tree::diff(&src, &base_tree, &old_state.tree)? {
                let path = String::from_utf8_lossy(&change.path).into_owned();
                let at_base = tree::lookup(&src, &base_tree, &change.path)?;
                let at_target = tree::lookup(&src, &new_state.tree, &change.path)?;
                if at_base.as_ref().map(|e| (e.kind, e.id))
                    != at_target.as_ref().map(|e| (e.kind, e.id))
                {
                    conflicts.push(path);
                    continue;
                }
                // A kind change lists its path twice (the old leaf, then the new one).
                if local.insert(path.clone()) {
                    kept.push((path, at_target));
                }
            }
            if !conflicts.is_empty() {
                return Err(WatchError::LocalChanges(conflicts));
            }
        }
    }
    let mut steps = Vec::new();
    let mut removes = Vec::new();
    for change in tree::diff(&src, &old_tree, &new_state.tree)? {
        let path = String::from_utf8_lossy(&change.path).into_owned();
        if local.contains(&path) {
            continue;
        }
        // A tree that got a reserved name before such names were refused: never write (or
        // remove) `.git`, `.jit` or `.jit-checkout` on disk.
        if let Some(name) = jit_kernel::reserved::reserved_component(&change.path) {
            tracing::warn!(%path, name = %String::from_utf8_lossy(name), "not checked out: the name is reserved");
            continue;
        }
        if change.is_dir() {
            if let Some(step) = dir_step(&src, &new_state.tree, &change, path)? {
                match step {
                    Step::Mkdir { .. } => steps.push(step),
                    _ => removes.push(step),
                }
            }
            continue;
        }
        match (change.kind, change.new) {
            (ChangeKind::Deleted, _) | (_, None) => removes.push(Step::Remove { path }),
            (_, Some(entry)) => {
                if let Some(old) = &change.old {
                    if old.kind != entry.kind {
                        removes.push(Step::Remove { path: path.clone() });
                    }
                }
                steps.push(Step::Write {
                    path,
                    kind: entry.kind,
                    blob: entry.id,
                })
            }
        }
    }
    removes.extend(steps);
    Ok((removes, kept))
}

/// The step for an empty directory that appeared or went away: make it, or remove it unless
/// the target still has a directory there (one that is not empty).
fn dir_step(
    src: &dyn Source,
    target: &NodeId,
    change: &tree::Change,
    path: String,
) -> Result<Option<Step>> {
    if change.kind == ChangeKind::Added {
        return Ok(Some(Step::Mkdir { path }));
    }
    let there = tree::lookup(src, target, &change.path)?;
    Ok(match there {
        Some(entry) if entry.kind == EntryKind::Directory => None,
        _ => Some(Step::Rmdir { path }),
    })
}

/// Makes the directory `rel` (replacing what else is there) and records it in the index.
fn make_dir(dir: &Path, rel: &str, record: &mut Record) -> Result<()> {
    let abs = dir.join(rel);
    match disk::lstat(&abs)? {
        Some(stat) if stat.kind() == disk::Kind::Directory => {}
        other => {
            if other.is_some() {
                remove_path(&abs)?;
            }
            std::fs::create_dir(&abs).map_err(|e| WatchError::io(&abs, e))?;
        }
    }
    let stat = disk::lstat(&abs)?
        .ok_or_else(|| WatchError::Invalid(format!("{} vanished", abs.display())))?;
    record.set.push((rel.to_owned(), stat.entry(None)));
    Ok(())
}

/// Removes a directory if it is empty; one holding something (untracked, ignored) stays.
fn remove_empty_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTEMPTY | libc::ENOTDIR)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(WatchError::io(path, e)),
    }
}

fn remove_path(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| WatchError::io(path, e))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| WatchError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WatchError::io(path, e)),
    }
}

/// Creates the missing parent directories of `rel`, recording each in the index.
fn ensure_parents(
    dir: &Path,
    rel: &str,
    created: &mut BTreeSet<String>,
    record: &mut Record,
) -> Result<()> {
    let mut at = 0;
    while let Some(slash) = rel[at..].find('/') {
        let parent = &rel[..at + slash];
        at += slash + 1;
        if created.contains(parent) {
            continue;
        }
        make_dir(dir, parent, record)?;
        created.insert(parent.to_owned());
    }
    Ok(())
}

/// Content read ahead of the parallel writes, at most.
const WRITE_BATCH_BYTES: usize = 64 << 20;
/// Writer threads: file creation waits on the file system more than on the CPU.
const WRITERS: usize = 4;

/// Writes a batch of files on a few threads (LMDB reads stay on this one), recording each
/// file's `lstat` in `record`. Returns how many were written.
fn write_batch(
    dir: &Path,
    batch: Vec<(String, NodeId, EntryKind, Vec<u8>)>,
    record: &mut Record,
    progress: &dyn Progress,
) -> Result<usize> {
    let count = batch.len();
    let per = count.div_ceil(WRITERS).max(1);
    let results: Vec<Result<Vec<(String, IndexEntry)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(path, blob, kind, data)| {
                            let stat = write_path(&dir.join(path), *kind, data)?;
                            progress.advance(1, data.len() as u64);
                            Ok((path.clone(), stat.entry(Some(*blob))))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(WatchError::Invalid("a writer thread panicked".into())))
            })
            .collect()
    });
    for entries in results {
        record.set.extend(entries?);
    }
    Ok(count)
}

/// Writes one changed file or symlink and returns its `lstat` (unchanged paths are never
/// written, so they keep inode and mtime).
fn write_path(path: &Path, kind: EntryKind, data: &[u8]) -> Result<disk::Stat> {
    match kind {
        EntryKind::Symlink => {
            remove_path(path)?;
            let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(data);
            std::os::unix::fs::symlink(target, path).map_err(|e| WatchError::io(path, e))?;
        }
        EntryKind::File | EntryKind::Executable => return write_file(path, kind, data),
        EntryKind::Directory => {
            std::fs::create_dir_all(path).map_err(|e| WatchError::io(path, e))?;
        }
    }
    disk::lstat(path)?.ok_or_else(|| WatchError::Invalid(format!("{} vanished", path.display())))
}

/// Rewrites a regular file in place: no new inode (ext4 scans for recently freed inodes on every
/// create), no truncation to zero (on close ext4 would then flush the file synchronously, its
/// `auto_da_alloc` guard for truncate-and-rewrite saves, which dominated a switch) — the new
/// content overwrites the old and only a longer tail is cut. Whatever is at the path and is not
/// a regular file (a symlink, a directory, a FIFO) is replaced; opening never follows a symlink
/// nor blocks on a FIFO. The mode is set on the open file.
fn write_file(path: &Path, kind: EntryKind, data: &[u8]) -> Result<disk::Stat> {
    let io = |e| WatchError::io(path, e);
    let mode = if kind == EntryKind::Executable {
        0o777
    } else {
        0o666
    };
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let regular = |file: std::fs::File| -> Result<Option<(std::fs::File, std::fs::Metadata)>> {
        let meta = file.metadata().map_err(io)?;
        Ok(meta.is_file().then_some((file, meta)))
    };
    let existing = match open() {
        Ok(file) => regular(file)?,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::EISDIR | libc::ENXIO)
            ) =>
        {
            None
        }
        Err(e) => return Err(io(e)),
    };
    let (mut file, old) = match existing {
        Some(found) => found,
        None => {
            remove_path(path)?;
            regular(open().map_err(io)?)?.ok_or_else(|| {
                WatchError::Invalid(format!("{} is not a regular file", path.display()))
            })?
        }
    };
    file.write_all(data).map_err(io)?;
    if old.len() > data.len() as u64 {
        file.set_len(data.len() as u64).map_err(io)?;
    }
    let mut meta = file.metadata().map_err(io)?;
    let executable = meta.permissions().mode() & 0o111 != 0;
    if executable != (kind == EntryKind::Executable) {
        let perms = meta.permissions().mode();
        let want = if executable {
            perms & !0o111
        } else {
            perms | ((perms & 0o444) >> 2)
        };
        file.set_permissions(std::fs::Permissions::from_mode(want))
            .map_err(io)?;
        meta = file.metadata().map_err(io)?;
    }
    Ok(disk::Stat::of(&meta))
}

/// Removes directories emptied by the removals (unless the target holds them, written or
/// made above), recording them.
fn prune_dirs(dir: &Path, steps: &[Step], record: &mut Record) -> Result<()> {
    let mut candidates = BTreeSet::new();
    for step in steps {
        if let Step::Remove { path } | Step::Rmdir { path } = step {
            let mut p = path.as_str();
            while let Some(slash) = p.rfind('/') {
                p = &p[..slash];
                candidates.insert(p.to_owned());
            }
        }
    }
    let mut ordered: Vec<String> = candidates.into_iter().collect();
    ordered.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in ordered {
        let abs = dir.join(&rel);
        let empty = std::fs::read_dir(&abs)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        let below = format!("{rel}/");
        let written_below = record
            .set
            .iter()
            .any(|(p, _)| *p == rel || p.starts_with(&below));
        if empty && !written_below {
            std::fs::remove_dir(&abs).map_err(|e| WatchError::io(&abs, e))?;
            record.remove.push(rel);
        }
    }
    Ok(())
}
