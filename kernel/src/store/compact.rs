//! Giving freed pages back to the file system: the second half of `jit gc`.
//!
//! LMDB never shrinks its file: pages a transaction frees (a node rewritten as a delta, a
//! staged node dropped) go on its free list and later writes reuse them. To make the file
//! itself smaller, every table is copied in key order into a new file (appends fill every
//! page; LMDB's own compacting copy would keep part-empty pages as they are) and the copy
//! replaces the file by an atomic rename.
//!
//! A rename replaces the file under every process that has it mapped, so it is done only when
//! no other process has the store open. Every open store holds a shared `flock` on the store's
//! `open.lock` for as long as it is open; compaction turns its own into an exclusive one
//! without waiting, and skips (saying why) when another process holds the store. While it
//! holds the lock, other processes opening the store wait for it.
//!
//! Crash safety: the copy is written in `compact.tmp/`, synced, moved to `data.mdb.compact`, and
//! only then renamed over `data.mdb` (and the directory synced). A `kill -9` before the rename
//! leaves the old file untouched and a stale copy the next compaction removes; after it, the new
//! file is whole.

use std::fs::File;
use std::path::Path;

use heed::types::{Bytes, DecodeIgnore, Str};
use heed::{Database, Env, EnvOpenOptions, RwTxn, WithoutTls};

use super::segments::{self, Packer};
use crate::error::{Error, Result};
use crate::id::NodeId;

/// The lock file every open store holds shared.
pub(super) const OPEN_LOCK: &str = "open.lock";
const DATA: &str = "data.mdb";
const COPY: &str = "data.mdb.compact";
/// Where the dense copy is written before it becomes `COPY`.
const COPY_DIR: &str = "compact.tmp";

/// Takes the shared lock that says this process has the store in `dir` open, waiting while a
/// compaction holds it exclusively.
pub(super) fn hold_open(dir: &Path) -> Result<File> {
    let path = dir.join(OPEN_LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.lock_shared().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// What compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compacted {
    /// The file was rewritten: its size before and after, in bytes.
    Done {
        /// Bytes the file took before.
        before: u64,
        /// Bytes it takes now.
        after: u64,
    },
    /// Another process has the store open (a daemon, a watcher): the file was left as it is;
    /// its free pages are reused by later writes.
    InUse,
}

fn allocated(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    Ok(meta.blocks() * 512)
}

/// Rewrites the store's file (its environment `env`, in `dir`) without its free pages, if no
/// other process has it open: `open_lock` is this process's shared hold, turned exclusive
/// without waiting. Consumes the environment: the file it mapped is replaced.
pub(super) fn compact_file(env: Env<WithoutTls>, dir: &Path, open_lock: File) -> Result<Compacted> {
    match open_lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(Compacted::InUse),
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(dir.join(OPEN_LOCK), e)),
    }
    let (data, copy) = (dir.join(DATA), dir.join(COPY));
    let before = allocated(&data)?;
    match std::fs::remove_file(&copy) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&copy, e)),
    }
    copy_dense(&env, dir, &copy).map_err(|e| super::health::classify(dir, e))?;
    // Unmap before the rename; the lock outlives the environment.
    if !env
        .prepare_for_closing()
        .wait_timeout(std::time::Duration::from_secs(30))
    {
        return Err(Error::InvalidInput(
            "the store is still in use in this process; it was not compacted".into(),
        ));
    }
    std::fs::rename(&copy, &data).map_err(|e| Error::io(&data, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    let after = allocated(&data)?;
    drop(open_lock);
    Ok(Compacted::Done { before, after })
}

/// Writes every table of `env` into a new store file at `copy`, each in key order with
/// appends (`MDB_APPEND`), so every page is full, in one transaction, then syncs it. Node
/// values too large for a leaf page are packed into segments on the way ([`segments`]). LMDB's
/// own compacting copy keeps pages as they are (a table filled at random, as a clone fills its
/// node table, stays part empty), so a store used to be rewritten densely first and then
/// copied: two full writes where this is one.
fn copy_dense(env: &Env<WithoutTls>, dir: &Path, copy: &Path) -> Result<()> {
    let scratch = dir.join(COPY_DIR);
    match std::fs::remove_dir_all(&scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&scratch, e)),
    }
    std::fs::create_dir(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(env.info().map_size).max_dbs(32);
    // SAFETY: the directory was made just now for this copy; nothing else opens it.
    let target = unsafe { options.open(&scratch) }?;
    {
        let source = env.read_txn()?;
        let main: Database<Str, DecodeIgnore> = env
            .open_database(&source, None)?
            .ok_or_else(|| Error::InvalidInput("the store has no table list".into()))?;
        let mut names = Vec::new();
        for entry in main.iter(&source)? {
            names.push(entry?.0.to_owned());
        }
        let source_segments = env
            .open_database::<Bytes, Bytes>(&source, Some(segments::TABLE))?
            .ok_or_else(|| Error::InvalidInput("the store has no segment table".into()))?;
        let mut txn = target.write_txn()?;
        let packed_segments: Database<Bytes, Bytes> =
            target.create_database(&mut txn, Some(segments::TABLE))?;
        let mut packer = Packer::new(packed_segments, env.stat().page_size as usize);
        for name in &names {
            // The segments are rebuilt from what the node table still points to.
            if name == segments::TABLE {
                continue;
            }
            let Some(table) = env.open_database::<Bytes, Bytes>(&source, Some(name))? else {
                continue;
            };
            let copied: Database<Bytes, Bytes> = target.create_database(&mut txn, Some(name))?;
            let nodes = name == segments::NODE_TABLE;
            for entry in table.iter(&source)? {
                let (key, value) = entry?;
                if !nodes {
                    copied.put_with_flags(&mut txn, heed::PutFlags::APPEND, key, value)?;
                    continue;
                }
                let id = NodeId::from_slice(key).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "the node table holds a key of {} bytes",
                        key.len()
                    ))
                })?;
                let value = segments::unpacked(source_segments, &source, &id, value)?;
                match packer.place(&mut txn, value)? {
                    Some(pointer) => {
                        copied.put_with_flags(&mut txn, heed::PutFlags::APPEND, key, &pointer)?
                    }
                    None => copied.put_with_flags(&mut txn, heed::PutFlags::APPEND, key, value)?,
                }
            }
        }
        packer.finish(&mut txn)?;
        txn.commit()?;
    }
    target.force_sync()?;
    target.prepare_for_closing().wait();
    let written = scratch.join(DATA);
    std::fs::rename(&written, copy).map_err(|e| Error::io(copy, e))?;
    std::fs::remove_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    Ok(())
}

/// Rewrites `tables` in key order within `txn`, so their B-tree pages are full: tables keyed
/// by hash are filled at random and their pages left part empty. The pages the old trees used
/// become free. Holds the tables' entries in memory meanwhile.
pub(super) fn rewrite_dense(txn: &mut RwTxn<'_>, tables: &[Database<Bytes, Bytes>]) -> Result<()> {
    for table in tables {
        let entries = table
            .iter(txn)?
            .map(|entry| entry.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        table.clear(txn)?;
        for (key, value) in entries {
            table.put_with_flags(txn, heed::PutFlags::APPEND, &key, &value)?;
        }
    }
    Ok(())
}
