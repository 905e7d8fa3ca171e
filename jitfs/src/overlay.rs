//! The overlay: what the mount holds that its SWS does not (yet), kept on disk so that a
//! daemon killed with `kill -9` loses nothing `write(2)` accepted, and what the DAG never
//! carries outlives a restart.
//!
//! Two parts, both in `.jit/fs/`:
//! - **Data files** (`data/<random>`): the content of files written through the mount. The
//!   kernel reads and writes them directly (passthrough), so they always hold every byte a
//!   `write` accepted, whether or not the daemon still runs.
//! - **Records** (`overlay/`, an LMDB environment): one per path of a view that differs from
//!   what the view's SWS tree says, keyed by view, parent path and name (so a directory's
//!   records are contiguous). A record says what the path is now — a file (in a data file, or
//!   a stored blob), a directory (merged with the SWS's, a given tree, or empty), a symlink, a
//!   special file, or a *whiteout* (removed) — with its POSIX attributes, whether the change
//!   still has to be written back (`pending`), and whether it is ignored (then it is never
//!   written back and stays here for good). It is exactly overlayfs's upper layer, in a table.
//!
//! Records are written in the FUSE request that makes the change, before it is answered, in
//! transactions that skip `fsync` (`NO_SYNC`): what a process wrote is in the kernel's page
//! cache the moment the call returns, and that survives the death of the process (not of the
//! machine: `fsync` on a file of the mount is still what makes a change survive a power cut,
//! by writing it back into the store). A new daemon reads the records of each view when it
//! loads the directories they name, and writes back whatever was pending.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inode::Attr;

/// Virtual size of the records' map: the file grows only as records are written.
const MAP_SIZE: usize = 1 << 36;

/// What a path of a view is, as far as the overlay knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A regular file: its content in a data file, else the stored blob, else empty.
    File {
        /// Name of the data file under `data/`.
        data: Option<String>,
        /// The stored blob it shows when it has no data file.
        #[serde(with = "opt_id")]
        blob: Option<[u8; 32]>,
        /// Hard-link group: names with the same group are one inode.
        link: Option<u64>,
    },
    /// A directory.
    Dir {
        /// Where its entries come from before its own records apply.
        base: DirBase,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
    /// A FIFO, socket or device node (never written back).
    Special {
        /// `S_IFIFO`, `S_IFSOCK`, `S_IFCHR` or `S_IFBLK`.
        format: u32,
        /// Device number.
        rdev: u32,
    },
    /// Removed: the SWS's entry at this path is not shown.
    Whiteout,
}

/// Where a directory's entries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirBase {
    /// The SWS's directory at the same path (only its attributes differ, or entries below).
    Lower,
    /// A stored tree (a directory moved here from elsewhere).
    Tree(#[serde(with = "id")] [u8; 32]),
    /// Nothing (a directory made here).
    Empty,
}

/// Attributes as stored: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttr {
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access, modification and change times.
    pub times: [(i64, u32); 3],
}

impl StoredAttr {
    /// From the mount's attributes.
    pub fn of(attr: &Attr) -> StoredAttr {
        StoredAttr {
            perm: attr.perm,
            uid: attr.uid,
            gid: attr.gid,
            times: [attr.atime, attr.mtime, attr.ctime].map(to_pair),
        }
    }

    /// Back to the mount's attributes.
    pub fn attr(&self) -> Attr {
        let [atime, mtime, ctime] = self.times.map(from_pair);
        Attr {
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            atime,
            mtime,
            ctime,
        }
    }
}

fn to_pair(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            (-(d.as_secs() as i64), d.subsec_nanos())
        }
    }
}

fn from_pair((secs, nanos): (i64, u32)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), nanos)
    }
}

/// One path's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What the path is.
    pub entry: Entry,
    /// Its attributes (unused for whiteouts).
    pub attr: StoredAttr,
    /// The SWS does not have this change yet.
    pub pending: bool,
    /// Ignored (`.gitignore`, `.jitignore`, `.git`), itself or below an ignored directory:
    /// kept here, never written back.
    pub ignored: bool,
    /// Its attributes were set explicitly (chmod, chown, utimens): kept even where they look
    /// like the tree's defaults.
    #[serde(default)]
    pub attr_set: bool,
}

/// The overlay of one mount.
pub struct Overlay {
    env: Env<WithoutTls>,
    records: Database<Bytes, Bytes>,
    data_dir: PathBuf,
}

/// A write transaction on the records.
pub struct Batch<'o> {
    overlay: &'o Overlay,
    txn: RwTxn<'o>,
}

/// Key of `name` in directory `parent` (a view path, `""` for the view root) of view `view`:
/// the view, a digest of the parent's path, the name. LMDB keys are at most 511 bytes and
/// paths reach 4,096, so the parent is named by its digest; a directory's records stay
/// contiguous, and the value carries the full path.
pub fn key(view: &str, parent: &[u8], name: &[u8]) -> Vec<u8> {
    [view.as_bytes(), &[0], &dir_digest(parent), &[0], name].concat()
}

/// The first 16 bytes of the BLAKE3 hash of a directory's view path.
fn dir_digest(dir: &[u8]) -> [u8; 16] {
    let hash = blake3::hash(dir);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

/// The key prefix of directory `dir`'s records in view `view`.
fn dir_prefix(view: &str, dir: &[u8]) -> Vec<u8> {
    [view.as_bytes(), &[0], &dir_digest(dir), &[0]].concat()
}

/// Splits a view path into its parent and its name.
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The view a key belongs to.
fn view_of_key(key: &[u8]) -> Option<String> {
    let end = key.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&key[..end]).ok().map(str::to_owned)
}

fn store_error(e: heed::Error) -> Error {
    Error::io("overlay records", std::io::Error::other(e.to_string()))
}

/// What a key holds: the record and the path it is for.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(with = "serde_bytes")]
    path: Vec<u8>,
    record: Record,
}

fn encode(path: &[u8], record: &Record) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let stored = Stored {
        path: path.to_vec(),
        record: record.clone(),
    };
    ciborium::into_writer(&stored, &mut out)
        .map_err(|e| Error::io("overlay record", std::io::Error::other(e.to_string())))?;
    Ok(out)
}

/// The path and record a value holds; None for one this build cannot read (skipped, as a
/// record that says nothing).
fn decode(bytes: &[u8]) -> Option<(Vec<u8>, Record)> {
    let stored: Stored = ciborium::from_reader(bytes).ok()?;
    Some((stored.path, stored.record))
}

impl Overlay {
    /// Opens (creating) the overlay of the universe whose `.jit/fs` is `fs_dir`.
    pub fn open(fs_dir: &Path) -> Result<Overlay> {
        let dir = fs_dir.join("overlay");
        let data_dir = fs_dir.join("data");
        for d in [&dir, &data_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("cannot create {}", d.display()), e))?;
        }
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(2);
        // SAFETY: the directory belongs to this mount's universe and only the daemon that
        // holds the universe's mount opens it for writing. NO_SYNC: see the module doc —
        // records must survive the process, not the machine.
        let env = unsafe {
            options.flags(EnvFlags::NO_SYNC);
            options.open(&dir)
        }
        .map_err(store_error)?;
        let mut txn = env.write_txn().map_err(store_error)?;
        let records = env
            .create_database(&mut txn, Some("records"))
            .map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        Ok(Overlay {
            env,
            records,
            data_dir,
        })
    }

    /// Where data files live.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The path of data file `name`.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// Runs `body` in one write transaction, committed (without `fsync`) when it succeeds.
    pub fn batch<T>(&self, body: impl FnOnce(&mut Batch<'_>) -> Result<T>) -> Result<T> {
        let txn = self.env.write_txn().map_err(store_error)?;
        let mut batch = Batch { overlay: self, txn };
        let out = body(&mut batch)?;
        batch.txn.commit().map_err(store_error)?;
        Ok(out)
    }

    /// The records of the entries of directory `dir` of view `view`, by name.
    pub fn children(&self, view: &str, dir: &[u8]) -> Result<Vec<(Vec<u8>, Record)>> {
        let txn = self.env.read_txn().map_err(store_error)?;
        let prefix = dir_prefix(view, dir);
        let mut out = Vec::new();
        for item in self
            .records
            .prefix_iter(&txn, &prefix)
            .map_err(store_error)?
        {
            let (key, value) = item.map_err(store_error)?;
            if let Some((_, record)) = decode(value) {
                out.push((key[prefix.len()..].to_vec(), record));
            }
        }
        Ok(out)
    }

    /// Every record of view `view`, by path (parents before their entries).
    pub fn all(&self, view: &str) -> Result<Vec<(Vec<u8>, Record)>> {
        let txn = self.env.read_txn().map_err(store_error)?;
        let prefix = [view.as_bytes(), &[0]].concat();
        let mut out = Vec::new();
        for item in self
            .records
            .prefix_iter(&txn, &prefix)
            .map_err(store_error)?
        {
            let (_, value) = item.map_err(store_error)?;
            if let Some(found) = decode(value) {
                out.push(found);
            }
        }
        out.sort_by(|a, b| depth_then_path(&a.0, &b.0));
        Ok(out)
    }

    /// The views that have records.
    pub fn views(&self) -> Result<Vec<String>> {
        let txn = self.env.read_txn().map_err(store_error)?;
        let mut out: Vec<String> = Vec::new();
        for item in self.records.iter(&txn).map_err(store_error)? {
            let (key, _) = item.map_err(store_error)?;
            if let Some(view) = view_of_key(key) {
                if out.last() != Some(&view) {
                    out.push(view);
                }
            }
        }
        Ok(out)
    }

    /// Data files no record names (left by a crash between creating one and recording it, or
    /// by an unlinked file open when the daemon died): removed.
    pub fn sweep_data(&self) -> Result<usize> {
        let txn = self.env.read_txn().map_err(store_error)?;
        let mut named = std::collections::HashSet::new();
        for item in self.records.iter(&txn).map_err(store_error)? {
            let (_, value) = item.map_err(store_error)?;
            if let Some((
                _,
                Record {
                    entry:
                        Entry::File {
                            data: Some(name), ..
                        },
                    ..
                },
            )) = decode(value)
            {
                named.insert(name);
            }
        }
        drop(txn);
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.data_dir)
            .map_err(|e| Error::io("cannot list the overlay's data files", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Orders paths by depth, then bytes: a directory's record comes before its entries'.
fn depth_then_path(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let depth = |p: &[u8]| p.iter().filter(|&&c| c == b'/').count();
    depth(a).cmp(&depth(b)).then_with(|| a.cmp(b))
}

impl Batch<'_> {
    /// The record of `path` in `view`.
    pub fn get(&self, view: &str, path: &[u8]) -> Result<Option<Record>> {
        let (parent, name) = split(path);
        Ok(self
            .overlay
            .records
            .get(&self.txn, &key(view, parent, name))
            .map_err(store_error)?
            .and_then(decode)
            .map(|(_, record)| record))
    }

    /// Sets the record of `path` in `view`.
    pub fn put(&mut self, view: &str, path: &[u8], record: &Record) -> Result<()> {
        let (parent, name) = split(path);
        let bytes = encode(path, record)?;
        self.overlay
            .records
            .put(&mut self.txn, &key(view, parent, name), &bytes)
            .map_err(store_error)
    }

    /// Drops the record of `path` in `view`, if any.
    pub fn remove(&mut self, view: &str, path: &[u8]) -> Result<()> {
        let (parent, name) = split(path);
        self.overlay
            .records
            .delete(&mut self.txn, &key(view, parent, name))
            .map_err(store_error)?;
        Ok(())
    }

    /// Every record below directory `dir` (not `dir`'s own), as (path, record). Keys name
    /// parents by digest, so this reads all of the view's records: callers ask only for
    /// directories.
    pub fn below(&self, view: &str, dir: &[u8]) -> Result<Vec<(Vec<u8>, Record)>> {
        let prefix = [view.as_bytes(), &[0]].concat();
        let mut out = Vec::new();
        for item in self
            .overlay
            .records
            .prefix_iter(&self.txn, &prefix)
            .map_err(store_error)?
        {
            let (_, value) = item.map_err(store_error)?;
            if let Some((path, record)) = decode(value) {
                let inside = dir.is_empty()
                    || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/');
                if inside {
                    out.push((path, record));
                }
            }
        }
        Ok(out)
    }

    /// Drops every record below directory `dir` of `view`; returns them.
    pub fn remove_below(&mut self, view: &str, dir: &[u8]) -> Result<Vec<(Vec<u8>, Record)>> {
        let below = self.below(view, dir)?;
        for (path, _) in &below {
            self.remove(view, path)?;
        }
        Ok(below)
    }

    /// Moves every record below `from` to the same place below `to` (a directory renamed).
    pub fn move_below(&mut self, view: &str, from: &[u8], to: &[u8]) -> Result<()> {
        for (path, record) in self.remove_below(view, from)? {
            let moved = [to, &path[from.len()..]].concat();
            self.put(view, &moved, &record)?;
        }
        Ok(())
    }

    /// Drops every record of `view`.
    pub fn remove_view(&mut self, view: &str) -> Result<Vec<(Vec<u8>, Record)>> {
        self.remove_below(view, b"")
    }
}

mod id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(serde::de::Error::custom)
    }
}

mod opt_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(&serde_bytes::Bytes::new(id)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let bytes: Option<serde_bytes::ByteBuf> = Deserialize::deserialize(d)?;
        bytes
            .map(|b| <[u8; 32]>::try_from(b.as_slice()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(entry: Entry, pending: bool) -> Record {
        Record {
            entry,
            attr: StoredAttr {
                perm: 0o600,
                uid: 1,
                gid: 2,
                times: [(1, 2), (3, 4), (-5, 6)],
            },
            pending,
            ignored: false,
            attr_set: false,
        }
    }

    #[test]
    fn records_round_trip_and_move_with_their_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let overlay = Overlay::open(dir.path()).expect("open");
        let file = record(
            Entry::File {
                data: Some("abc".into()),
                blob: Some([7; 32]),
                link: Some(3),
            },
            true,
        );
        overlay
            .batch(|b| {
                b.put(
                    "head",
                    b"a",
                    &record(
                        Entry::Dir {
                            base: DirBase::Tree([1; 32]),
                        },
                        true,
                    ),
                )?;
                b.put("head", b"a/x", &file)?;
                b.put("head", b"a/b/y", &record(Entry::Whiteout, true))?;
                b.put(
                    "head",
                    b"ab",
                    &record(
                        Entry::Symlink {
                            target: b"t".to_vec(),
                        },
                        false,
                    ),
                )?;
                b.put("sws/1", b"a/x", &file)
            })
            .expect("put");
        assert_eq!(overlay.children("head", b"a").expect("children").len(), 1);
        assert_eq!(overlay.all("head").expect("all")[0].0, b"a".to_vec());
        overlay
            .batch(|b| b.move_below("head", b"a", b"c/d"))
            .expect("move");
        let paths: Vec<Vec<u8>> = overlay
            .all("head")
            .expect("all")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            vec![
                b"a".to_vec(),
                b"ab".to_vec(),
                b"c/d/x".to_vec(),
                b"c/d/b/y".to_vec()
            ]
        );
        assert_eq!(
            overlay.children("head", b"c/d").expect("children"),
            vec![(b"x".to_vec(), file.clone())]
        );
        assert_eq!(overlay.views().expect("views"), vec!["head", "sws/1"]);
        std::fs::write(overlay.data_path("abc"), b"kept").expect("data");
        std::fs::write(overlay.data_path("stray"), b"gone").expect("data");
        assert_eq!(overlay.sweep_data().expect("sweep"), 1);
        assert!(overlay.data_path("abc").exists());
    }
}
