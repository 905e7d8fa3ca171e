//! One process's handle on a checkout: the kernel connection, the checkout's state and tree
//! index (read straight from LMDB, written only through the kernel's `checkout.record`), and
//! [`Session::sync`] — the one routine that turns what is on disk into patches. The watcher calls
//! it with the paths its events named, status without a watcher with the whole tree.
//!
//! `sync` decides from file state, never from event kinds: each path is `lstat`ed and compared
//! with the index; a file whose stat differs is read (stably) and hashed, and only different
//! content, kind or mode becomes an operation. So a temp file that came and went leaves nothing,
//! a new inode with the old content is no change, and the checkout's own writes — recorded in
//! the index as they are made — never echo back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jit_kernel::checkout::{self, CheckoutState, IndexEntry, Record, Recorded};
use jit_kernel::command::args::StageArgs;
use jit_kernel::command::Operation;
use jit_kernel::content::EncodedNode;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::rpc::client::Kernel;
use jit_kernel::sws::SwsId;
use jit_kernel::{content, Repository};

use crate::disk::{self, Kind, Stat};
use crate::error::{Result, WatchError};
use crate::ignore::Ignore;
use crate::marker::{self, Located, META_DIR};

/// A file larger than this sends its content ahead of its patch, in pieces of at most
/// [`STAGE_BYTES`] (`shadow.stage`), and the patch names the blob: no file is too large for the
/// RPC frame (64 MiB).
const STAGE_ABOVE: usize = 16 << 20;
/// Most node bytes in one `shadow.stage` request.
const STAGE_BYTES: usize = 16 << 20;
/// A patch is sent once its content passes this many bytes (the RPC frame limit is 64 MiB).
const BATCH_BYTES: usize = 24 << 20;
/// …or once it has this many operations (the kernel re-encodes a directory per operation and
/// keeps every version until the patch is applied: small patches bound that for huge directories).
const BATCH_OPS: usize = 500;

/// How `sync` learns about directories: the watcher adds a watch before a directory is read (so
/// nothing created in it afterwards is missed) and forgets directories that are gone.
pub trait Dirs {
    /// Whether `abs` is already watched (an unwatched directory is read in full).
    fn is_watched(&self, abs: &Path) -> bool;
    /// Called just before the directory `abs` is read.
    fn entering(&mut self, abs: &Path) -> Result<()>;
    /// The directory `abs` is no longer there.
    fn gone(&mut self, abs: &Path);
}

/// No watcher: every directory counts as watched, nothing is added.
pub struct Unwatched;

impl Dirs for Unwatched {
    fn is_watched(&self, _abs: &Path) -> bool {
        true
    }
    fn entering(&mut self, _abs: &Path) -> Result<()> {
        Ok(())
    }
    fn gone(&mut self, _abs: &Path) {}
}

/// What one `sync` recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// Patch operations sent.
    pub ops: usize,
    /// Patches sent.
    pub patches: usize,
}

/// Operations and index changes waiting to be recorded.
#[derive(Default)]
struct Pending {
    ops: Vec<PatchOp>,
    index: BTreeMap<String, Option<IndexEntry>>,
    bytes: usize,
}

/// An open checkout.
pub struct Session {
    located: Located,
    key: String,
    kernel: Kernel,
    own_repo: Option<Repository>,
    state: Option<CheckoutState>,
    sws: Option<String>,
    ignore: Ignore,
    nonce: String,
    seq: u64,
    author: String,
    pending: Pending,
    synced: Synced,
}

impl Session {
    /// Opens the checkout containing `start`.
    pub fn open(start: &Path) -> Result<Session> {
        Session::open_located(marker::require(start)?)
    }

    /// Opens a located checkout (its state may not exist yet: a checkout being made).
    pub fn open_located(located: Located) -> Result<Session> {
        let kernel = Kernel::connect(&located.marker.repo)?;
        let own_repo = match kernel.local_repo() {
            Some(_) => None,
            None => Some(Repository::open(&located.marker.repo)?),
        };
        let key = located.key()?;
        let ignore = Ignore::load(&located.dir);
        let mut session = Session {
            located,
            key,
            kernel,
            own_repo,
            state: None,
            sws: None,
            ignore,
            nonce: SwsId::random().to_string(),
            seq: 0,
            author: format!(
                "watcher:{}",
                std::env::var("USER").unwrap_or_else(|_| "user".into())
            ),
            pending: Pending::default(),
            synced: Synced::default(),
        };
        session.reload()?;
        Ok(session)
    }

    /// The checkout's top directory.
    pub fn dir(&self) -> &Path {
        &self.located.dir
    }

    /// The checkout's key in the kernel.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The kernel connection.
    pub fn kernel(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// The repository, for direct reads.
    pub fn repo(&self) -> Result<&Repository> {
        self.kernel
            .local_repo()
            .or(self.own_repo.as_ref())
            .ok_or_else(|| WatchError::Invalid("no repository to read from".into()))
    }

    /// The checkout's state (`None` before the first checkout into it completed).
    pub fn state(&self) -> Option<&CheckoutState> {
        self.state.as_ref()
    }

    /// The SWS the checkout's edits go to, if it exists yet.
    pub fn sws(&self) -> Option<&str> {
        self.sws.as_deref()
    }

    /// The ignore rules.
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Re-reads the state from the store. The index is never held: it is read from the store
    /// path by path (with what this session has not recorded yet laid over it), so following a
    /// checkout that rewrote thousands of entries costs nothing here.
    pub fn reload(&mut self) -> Result<()> {
        let repo = self.repo()?;
        let store = repo.store();
        let txn = store.read()?;
        let state = checkout::get(store, &txn, &self.key)?;
        let sws = match &state {
            Some(state) => checkout::sws_of(store, &txn, state)?.map(|id| id.to_string()),
            None => None,
        };
        drop(txn);
        self.state = state;
        self.sws = sws;
        // A checkout may have brought other ignore files.
        self.ignore = Ignore::load(&self.located.dir);
        Ok(())
    }

    /// The index entry of `rel`: this session's unrecorded change, else the store's.
    fn entry(&self, rel: &str) -> Result<Option<IndexEntry>> {
        if let Some(pending) = self.pending.index.get(rel) {
            return Ok(*pending);
        }
        let repo = self.repo()?;
        let txn = repo.store().read()?;
        Ok(checkout::entry(repo.store(), &txn, &self.key, rel)?)
    }

    fn indexed(&self, rel: &str) -> Result<bool> {
        Ok(self.entry(rel)?.is_some())
    }

    /// Index entries whose paths start with `prefix`, in path order, unrecorded changes
    /// included.
    fn below(&self, prefix: &str) -> Result<Vec<(String, IndexEntry)>> {
        let mut merged: BTreeMap<String, IndexEntry> = {
            let repo = self.repo()?;
            let txn = repo.store().read()?;
            checkout::entries_below(repo.store(), &txn, &self.key, prefix)?
                .into_iter()
                .collect()
        };
        let pending = self
            .pending
            .index
            .range(prefix.to_owned()..)
            .take_while(|(path, _)| path.starts_with(prefix));
        for (path, entry) in pending {
            match entry {
                Some(entry) => merged.insert(path.clone(), *entry),
                None => merged.remove(path),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Reloads if another process (a checkout) moved the generation on.
    pub fn refresh_if_stale(&mut self) -> Result<()> {
        let repo = self.repo()?;
        let store = repo.store();
        let txn = store.read()?;
        let generation = checkout::get(store, &txn, &self.key)?.map(|s| s.generation);
        drop(txn);
        if generation != self.state.as_ref().map(|s| s.generation) {
            tracing::debug!(dir = %self.located.dir.display(), "checkout changed elsewhere; reloading");
            self.reload()?;
        }
        Ok(())
    }

    fn generation(&self) -> u64 {
        self.state.as_ref().map(|s| s.generation).unwrap_or(0)
    }

    /// Records the disk state of `paths` (relative, `/`-separated; `""` is the whole tree) into
    /// the checkout's SWS. `full` reads every directory met, watched or not.
    pub fn sync<I, S>(&mut self, paths: I, full: bool, dirs: &mut dyn Dirs) -> Result<Synced>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let Some(state) = &self.state else {
            return Err(WatchError::NotACheckout(self.located.dir.clone()));
        };
        if let Some(switching) = &state.switching {
            return Err(WatchError::InterruptedCheckout {
                dir: self.located.dir.clone(),
                rev: switching.rev.clone(),
            });
        }
        self.synced = Synced::default();
        let sorted: BTreeSet<String> = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
        if full {
            self.ignore = Ignore::load(&self.located.dir);
        }
        for rel in sorted.iter().filter(|rel| Ignore::is_ignore_file(rel)) {
            self.ignore.forget(rel);
        }
        let result = (|| {
            for rel in &sorted {
                if !rel.is_empty() && self.ignored_within(rel)? {
                    continue;
                }
                self.visit(rel, full, dirs)?;
            }
            self.send()
        })();
        if result.is_err() {
            // The kernel kept nothing of a refused batch; neither do we.
            self.pending = Pending::default();
            self.reload()?;
        }
        result.map(|()| self.synced.clone())
    }

    fn ignored_within(&self, rel: &str) -> Result<bool> {
        if self.indexed(rel)? {
            return Ok(false);
        }
        let is_dir = std::fs::symlink_metadata(self.abs(rel))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        Ok(self.ignore.ignored_within(rel, is_dir))
    }

    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.located.dir.clone()
        } else {
            self.located.dir.join(rel)
        }
    }

    fn visit(&mut self, rel: &str, full: bool, dirs: &mut dyn Dirs) -> Result<()> {
        let abs = self.abs(rel);
        let stat = disk::lstat(&abs)?;
        match stat.map(|s| (s, s.kind())) {
            None | Some((_, Kind::Other)) => self.remove_subtree(rel, dirs),
            Some((stat, Kind::Directory)) => self.visit_dir(rel, &abs, stat, full, dirs),
            Some((stat, _)) => self.visit_file(rel, &abs, stat, dirs),
        }
    }

    fn visit_dir(
        &mut self,
        rel: &str,
        abs: &Path,
        stat: Stat,
        full: bool,
        dirs: &mut dyn Dirs,
    ) -> Result<()> {
        let mut read = full || !dirs.is_watched(abs);
        if !rel.is_empty() {
            match self.entry(rel)? {
                Some(old) if old.blob.is_none() => {
                    if old.ino != stat.ino {
                        // Another directory under the same name: compare everything in it.
                        read = true;
                    }
                }
                Some(_) => {
                    self.push(PatchOp::Delete { path: rel.into() }, 0);
                    self.push(PatchOp::Mkdir { path: rel.into() }, 0);
                    read = true;
                }
                None => {
                    self.push(PatchOp::Mkdir { path: rel.into() }, 0);
                    read = true;
                }
            }
            self.set(rel, Some(stat.entry(None)));
        }
        if !read {
            return Ok(());
        }
        dirs.entering(abs)?;
        let mut present = BTreeSet::new();
        let entries = match std::fs::read_dir(abs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.remove_subtree(rel, dirs)
            }
            Err(e) => return Err(WatchError::io(abs, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| WatchError::io(abs, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!(path = %entry.path().display(), "skipping a file name that is not UTF-8");
                continue;
            };
            let child = join(rel, name);
            if rel.is_empty() && name == META_DIR {
                continue;
            }
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if self.ignore.ignored(&child, is_dir) && !self.indexed(&child)? {
                continue;
            }
            present.insert(child.clone());
            self.visit(&child, full, dirs)?;
        }
        let indexed: Vec<String> = self
            .children(rel)?
            .into_iter()
            .filter(|child| !present.contains(child))
            .collect();
        for child in indexed {
            self.remove_subtree(&child, dirs)?;
        }
        Ok(())
    }

    /// Indexed paths directly below `rel`.
    fn children(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        Ok(self
            .below(&prefix)?
            .into_iter()
            .filter(|(path, _)| !path[prefix.len()..].contains('/'))
            .map(|(path, _)| path)
            .collect())
    }

    fn visit_file(&mut self, rel: &str, abs: &Path, stat: Stat, dirs: &mut dyn Dirs) -> Result<()> {
        let old = self.entry(rel)?;
        if let Some(old) = &old {
            if old.blob.is_none() {
                self.remove_subtree(rel, dirs)?;
            } else if stat.matches(old) {
                return Ok(());
            }
        }
        let Some((stat, data)) = disk::read_stable(abs, stat)? else {
            return self.remove_subtree(rel, dirs);
        };
        let (blob, nodes) = content::split_bytes(&data)?;
        let kind = stat.kind();
        let old = old.filter(|old| old.blob.is_some());
        let size = data.len();
        match (old, kind) {
            (Some(old), _) if old.blob == Some(blob) && disk::kind_of_mode(old.mode) == kind => {}
            (Some(old), Kind::File { executable })
                if old.blob == Some(blob)
                    && matches!(disk::kind_of_mode(old.mode), Kind::File { .. }) =>
            {
                self.push(
                    PatchOp::Chmod {
                        path: rel.into(),
                        executable,
                    },
                    0,
                );
            }
            (old, Kind::Symlink) => {
                if old.is_some() {
                    self.push(PatchOp::Delete { path: rel.into() }, 0);
                }
                let target =
                    String::from_utf8(data).map_err(|_| WatchError::BadName(abs.to_path_buf()))?;
                self.index_parents(rel)?;
                self.push(
                    PatchOp::Symlink {
                        path: rel.into(),
                        target,
                    },
                    size,
                );
            }
            (_, Kind::File { executable }) if size > STAGE_ABOVE => {
                self.index_parents(rel)?;
                self.stage(nodes)?;
                self.push(
                    PatchOp::PutBlob {
                        path: rel.into(),
                        blob,
                        executable,
                    },
                    0,
                );
            }
            (_, Kind::File { executable }) => {
                self.index_parents(rel)?;
                self.push(
                    PatchOp::Put {
                        path: rel.into(),
                        content: data,
                        executable,
                    },
                    size,
                );
            }
            (_, Kind::Directory | Kind::Other) => return Ok(()),
        }
        self.set(rel, Some(stat.entry(Some(blob))));
        self.maybe_send()
    }

    /// A put creates missing parent directories in the SWS; the index must know them too, or a
    /// later look at a parent would ask the SWS to create it a second time.
    fn index_parents(&mut self, rel: &str) -> Result<()> {
        let mut at = 0;
        while let Some(slash) = rel[at..].find('/') {
            let parent = rel[..at + slash].to_owned();
            at += slash + 1;
            if self.indexed(&parent)? {
                continue;
            }
            if let Some(stat) = disk::lstat(&self.abs(&parent))? {
                self.set(&parent, Some(stat.entry(None)));
            }
        }
        Ok(())
    }

    /// Everything indexed at or below `rel` is gone from disk: delete files, remove
    /// directories deepest first.
    fn remove_subtree(&mut self, rel: &str, dirs: &mut dyn Dirs) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let mut below = self.below(&format!("{rel}/"))?;
        if let Some(entry) = self.entry(rel)? {
            below.insert(0, (rel.to_owned(), entry));
        }
        // Files first (any order), then directories from the deepest.
        for (path, _) in below.iter().filter(|(_, e)| e.blob.is_some()) {
            self.push(PatchOp::Delete { path: path.clone() }, 0);
            self.set(path, None);
        }
        let mut dirs_below: Vec<&String> = below
            .iter()
            .filter(|(_, e)| e.blob.is_none())
            .map(|(p, _)| p)
            .collect();
        dirs_below.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for path in dirs_below {
            self.push(PatchOp::Rmdir { path: path.clone() }, 0);
            self.set(path, None);
            dirs.gone(&self.abs(path));
        }
        self.maybe_send()
    }

    /// Sends a large file's content nodes to the checkout's SWS ahead of its patch.
    fn stage(&mut self, nodes: Vec<EncodedNode>) -> Result<()> {
        let sws = match &self.sws {
            Some(sws) => sws.clone(),
            None => {
                // The branch's working SWS is made on first use: an empty record makes it.
                let record = Record {
                    dir: self.key.clone(),
                    generation: self.generation(),
                    ..Record::default()
                };
                self.record(&record)?.sws
            }
        };
        let mut batch: Vec<serde_bytes::ByteBuf> = Vec::new();
        let mut bytes = 0;
        let mut nodes = nodes.into_iter().peekable();
        while let Some(node) = nodes.next() {
            bytes += node.bytes.len();
            batch.push(serde_bytes::ByteBuf::from(node.bytes));
            if bytes >= STAGE_BYTES || nodes.peek().is_none() {
                let args = StageArgs {
                    sws: sws.clone(),
                    nodes: std::mem::take(&mut batch),
                };
                let _: ciborium::value::Value = self.kernel.invoke(Operation::Stage, &args)?;
                bytes = 0;
            }
        }
        Ok(())
    }

    fn push(&mut self, op: PatchOp, bytes: usize) {
        self.pending.ops.push(op);
        self.pending.bytes += bytes;
    }

    fn set(&mut self, rel: &str, entry: Option<IndexEntry>) {
        self.pending.index.insert(rel.to_owned(), entry);
    }

    fn maybe_send(&mut self) -> Result<()> {
        if self.pending.bytes >= BATCH_BYTES || self.pending.ops.len() >= BATCH_OPS {
            self.send()?;
        }
        Ok(())
    }

    /// Records what is pending: one patch plus the index changes, in one kernel operation.
    fn send(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.ops.is_empty() && pending.index.is_empty() {
            return Ok(());
        }
        let patch = if pending.ops.is_empty() {
            None
        } else {
            self.seq += 1;
            Some(Patch {
                id: format!("watch-{}-{}", self.nonce, self.seq),
                author: self.author.clone(),
                ts: self.seq,
                ops: pending.ops,
            })
        };
        let ops = patch.as_ref().map(|p| p.ops.len()).unwrap_or(0);
        let mut record = Record {
            dir: self.key.clone(),
            generation: self.generation(),
            patch,
            ..Record::default()
        };
        for (path, entry) in pending.index {
            match entry {
                Some(entry) => record.set.push((path, entry)),
                None => record.remove.push(path),
            }
        }
        let done = self.record(&record)?;
        if let (Some(state), Some(applied)) = (self.state.as_mut(), &done.applied) {
            state.tree = Some(applied.tree);
        }
        self.synced.ops += ops;
        self.synced.patches += usize::from(ops > 0);
        Ok(())
    }

    /// Sends one record to the kernel and adopts the SWS it names.
    pub fn record(&mut self, record: &Record) -> Result<Recorded> {
        let done: Recorded = self.kernel.invoke(Operation::RecordCheckout, record)?;
        self.sws = Some(done.sws.clone());
        if let Some(state) = self.state.as_mut() {
            state.generation = done.generation;
        }
        Ok(done)
    }

    /// Sets the in-memory state after a checkout recorded a new one.
    pub(crate) fn adopt(&mut self, state: CheckoutState) {
        self.state = Some(state);
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}
