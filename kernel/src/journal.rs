//! The message plane's write-ahead journal: signed messages that were acknowledged before the
//! LMDB transaction holding their effects committed.
//!
//! An LMDB commit on a small change writes a dozen B-tree pages scattered through the file and
//! flushes them twice; on a virtual disk that is about a millisecond. Appending the messages
//! themselves to this file is one contiguous write and one flush. So the plane applies a batch
//! in a write transaction it keeps open, appends the batch here, acknowledges, and commits the
//! transaction later (when the plane goes idle, after a bound, or when someone needs to read
//! the effects). After a crash, the journaled messages are delivered again: the kernel's record
//! of delivered message ids makes that exactly-once — those whose transaction committed are
//! answered from the record, the others are applied now, in the same order.
//!
//! Layout: a 4 KiB header (magic, generation, checksum), then records, each
//! `magic u32 | body length u32 | generation u64 | BLAKE3(generation || body) | body`, where
//! the body is a sequence of `key length u32 | key | envelope length u32 | envelope`. Every
//! integer is little-endian. [`Journal::reset`] starts a new generation instead of erasing:
//! records of an older generation are never read again. The file is zero-filled ahead of the
//! records, so an append overwrites allocated blocks and its flush carries no metadata.
//!
//! A transaction that holds journaled batches records the journal's [`Mark`] (generation and end)
//! in the store's `meta` table as it commits, so recovery delivers again only the batches after
//! it: a message refused the first time leaves no record of its id, and must not get a second
//! chance because its batch was read back.
//!
//! One process owns the journal at a time (an exclusive lock on the file): the daemon's plane,
//! or a process recovering what a dead daemon left ([`crate::agents::recover_unowned_journal`]).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{Op, ReadTxn, Store};

const HEADER_MAGIC: &[u8; 8] = b"JITJRNL1";
const RECORD_MAGIC: u32 = 0x3143_524a; // "JRC1"
/// Bytes before the first record.
const HEADER_SIZE: u64 = 4096;
/// `magic | length | generation | checksum` in front of each record's body.
const RECORD_HEAD: usize = 4 + 4 + 8 + 32;
/// The file grows (zero-filled) in steps of this many bytes.
const GROW: u64 = 1 << 20;

/// One batch of messages as it was delivered: `(key expression, envelope bytes)` in order.
pub type JournalBatch = Vec<(String, Vec<u8>)>;

/// A position in the journal: every record of `generation` that ends at or before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The journal's generation.
    pub generation: u64,
    /// Offset just past the last record covered.
    pub end: u64,
}

/// Key of the committed [`Mark`] in the store's `meta` table.
const MARK_KEY: &str = "plane.journal";

/// Records in `op` that everything journaled up to `mark` is committed with it.
pub fn record_mark(op: &mut Op<'_>, mark: Mark) -> Result<()> {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&mark.generation.to_le_bytes());
    value[8..].copy_from_slice(&mark.end.to_le_bytes());
    op.put_meta(MARK_KEY, &value)
}

/// The [`Mark`] the last transaction holding journaled batches committed; `None` if none did.
pub fn committed_mark(store: &Store, txn: &ReadTxn<'_>) -> Result<Option<Mark>> {
    let Some(raw) = store.meta.get(txn, MARK_KEY)? else {
        return Ok(None);
    };
    let word = |at: usize| {
        raw.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    match (raw.len(), word(0), word(8)) {
        (16, Some(generation), Some(end)) => Ok(Some(Mark { generation, end })),
        _ => Err(Error::InvalidInput(format!(
            "the store's {MARK_KEY} record is damaged ({} bytes)",
            raw.len()
        ))),
    }
}

/// The open, locked journal of one universe.
pub struct Journal {
    file: File,
    path: PathBuf,
    generation: u64,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file already allocated and zero-filled.
    capacity: u64,
}

/// Whether taking `lock` on the file at `path` would wait for another holder (the probe's own
/// lock is dropped at once, with the file).
fn lock_would_block(
    path: &Path,
    lock: fn(&File) -> std::result::Result<(), std::fs::TryLockError>,
) -> bool {
    OpenOptions::new()
        .read(true)
        .open(path)
        .is_ok_and(|file| matches!(lock(&file), Err(std::fs::TryLockError::WouldBlock)))
}

impl Journal {
    /// Opens (creating if needed) and locks the journal at `path`. Fails if another process
    /// holds it. Appends go after the records a crash left behind ([`Journal::pending`]).
    pub fn open(path: &Path) -> Result<Journal> {
        let io = |e| Error::io(path, e);
        // Agents' patch content: readable by the owner only, also if an older version made it
        // with the umask's mode.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        crate::filelock::exclusive(&file, path, || {
            format!(
                "the plane journal {} is in use by another process (is a jit daemon running?)",
                path.display()
            )
        })?;
        let mut journal = Journal::unread(file, path)?;
        match journal.read_header()? {
            Some(generation) => {
                journal.generation = generation;
                journal.end = journal.scan()?.1;
            }
            None if journal.capacity == 0 || journal.header_is_blank()? => {
                // New, or a first creation a crash cut short.
                journal.grow(HEADER_SIZE + GROW)?;
                journal.write_header(journal.generation)?;
                journal.file.sync_all().map_err(io)?;
                if let Some(dir) = path.parent() {
                    File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| Error::io(dir, e))?;
                }
            }
            None => {
                return Err(Error::InvalidInput(format!(
                    "{} is not a plane journal (bad header); move it aside to start afresh",
                    path.display()
                )))
            }
        }
        Ok(journal)
    }

    /// Whether the journal at `path` may hold records to recover, read without locking it: for
    /// a process that found it unheld, to skip recovery (and the store's writer lock) when there
    /// is nothing to recover. A blank file holds none; one with a damaged header is reported as
    /// holding some, so that opening it says what is wrong.
    pub fn may_hold_records(path: &Path) -> Result<bool> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut journal = Journal::unread(file, path)?;
        match journal.read_header()? {
            Some(generation) => {
                journal.generation = generation;
                Ok(journal.record_at(HEADER_SIZE)?.is_some())
            }
            None => Ok(journal.capacity != 0 && !journal.header_is_blank()?),
        }
    }

    /// A journal over `file` whose header is not read yet.
    fn unread(file: File, path: &Path) -> Result<Journal> {
        let capacity = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            generation: 1,
            end: HEADER_SIZE,
            capacity,
        })
    }

    /// Whether another process holds the journal at `path` locked (a live daemon's plane, or a
    /// process recovering it). The probe takes a shared lock, so probes never mistake each
    /// other for a holder; an exclusive [`Journal::open`] that meets one retries
    /// ([`Journal::open_patiently`]).
    pub fn is_held(path: &Path) -> bool {
        lock_would_block(path, File::try_lock_shared)
    }

    /// [`Journal::open`], trying again for a moment while the lock is taken: another process's
    /// [`Journal::is_held`] probe holds it for microseconds. A holder that keeps it (a daemon)
    /// still makes this fail, after about 100 ms. Never waits on the lock itself, so it cannot
    /// deadlock with the store's writer lock, which the plane takes while it holds the journal.
    pub fn open_patiently(path: &Path) -> Result<Journal> {
        let mut attempts = 0;
        loop {
            match Journal::open(path) {
                Err(Error::InvalidInput(_))
                    if attempts < 50 && lock_would_block(path, File::try_lock) =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    /// The batches appended since the last reset (by this run or one before it that crashed)
    /// that `committed` does not cover, in order: acknowledged messages whose transaction did
    /// not commit. Deliver them again, then [`Journal::reset`].
    pub fn pending(&self, committed: Option<Mark>) -> Result<Vec<JournalBatch>> {
        let covered = committed
            .filter(|mark| mark.generation == self.generation)
            .map_or(HEADER_SIZE, |mark| mark.end);
        Ok(self
            .scan()?
            .0
            .into_iter()
            .filter(|(_, end)| *end > covered)
            .map(|(batch, _)| batch)
            .collect())
    }

    /// Where the journal stands now: a transaction holding every batch appended so far
    /// records this as it commits ([`record_mark`]).
    pub fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            end: self.end,
        }
    }

    /// Whether nothing was appended since the last reset (and nothing was left pending).
    pub fn is_empty(&self) -> bool {
        self.end == HEADER_SIZE
    }

    /// Appends one batch and flushes it to disk: once this returns, the batch survives a crash.
    pub fn append(&mut self, messages: &[(&str, &[u8])]) -> Result<()> {
        let mut body = Vec::new();
        for (key, bytes) in messages {
            for part in [key.as_bytes(), bytes] {
                let len = u32::try_from(part.len()).map_err(|_| {
                    Error::InvalidInput("a message too large for the journal".into())
                })?;
                body.extend_from_slice(&len.to_le_bytes());
                body.extend_from_slice(part);
            }
        }
        let len = u32::try_from(body.len())
            .map_err(|_| Error::InvalidInput("a batch too large for the journal".into()))?;
        let mut record = Vec::with_capacity(RECORD_HEAD + body.len());
        record.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&self.generation.to_le_bytes());
        record.extend_from_slice(checksum(self.generation, &body).as_bytes());
        record.extend_from_slice(&body);
        let end = self.end + record.len() as u64;
        if end > self.capacity {
            self.grow(end.div_ceil(GROW) * GROW)?;
        }
        let io = |e| Error::io(&self.path, e);
        self.file.write_all_at(&record, self.end).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.end = end;
        Ok(())
    }

    /// Forgets every record: their effects are committed. Starts a new generation; the header
    /// is not flushed here — the next append's flush carries it, and until then a crash only
    /// makes the forgotten records be delivered again, which answers them from the record of
    /// delivered ids.
    pub fn reset(&mut self) -> Result<()> {
        self.write_header(self.generation + 1)?;
        self.generation += 1;
        self.end = HEADER_SIZE;
        Ok(())
    }

    fn write_header(&self, generation: u64) -> Result<()> {
        let mut header = [0u8; 48];
        header[..8].copy_from_slice(HEADER_MAGIC);
        header[8..16].copy_from_slice(&generation.to_le_bytes());
        let sum = blake3::hash(&header[..16]);
        header[16..48].copy_from_slice(sum.as_bytes());
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Whether the header is all zeros: the zero fill was written, the header not yet.
    fn header_is_blank(&self) -> Result<bool> {
        let mut header = [0u8; 48];
        Ok(self.read_at(&mut header, 0)? && header.iter().all(|b| *b == 0))
    }

    /// The generation in the header; `None` if the file has no valid header.
    fn read_header(&self) -> Result<Option<u64>> {
        let mut header = [0u8; 48];
        if !self.read_at(&mut header, 0)? {
            return Ok(None);
        }
        let valid = &header[..8] == HEADER_MAGIC
            && blake3::hash(&header[..16]).as_bytes() == &header[16..48];
        Ok(valid.then(|| u64::from_le_bytes(header[8..16].try_into().unwrap_or_default())))
    }

    /// Reads the records of the current generation, each with the offset just past it, and
    /// where they end; stops at the first that is not one (the zero fill, an older generation,
    /// or a write a crash cut short — never acknowledged).
    #[allow(clippy::type_complexity)]
    fn scan(&self) -> Result<(Vec<(JournalBatch, u64)>, u64)> {
        let mut batches = Vec::new();
        let mut at = HEADER_SIZE;
        while let Some((batch, next)) = self.record_at(at)? {
            batches.push((batch, next));
            at = next;
        }
        Ok((batches, at))
    }

    /// The record at `at` and the offset past it; `None` where there is none. Reads only the
    /// record itself, so an empty journal costs one small read, not the whole zero fill.
    fn record_at(&self, at: u64) -> Result<Option<(JournalBatch, u64)>> {
        let mut head = [0u8; RECORD_HEAD];
        if !self.read_at(&mut head, at)? {
            return Ok(None);
        }
        let word = |from: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&head[from..from + 4]);
            u32::from_le_bytes(bytes)
        };
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&head[8..16]);
        let generation = u64::from_le_bytes(generation);
        if word(0) != RECORD_MAGIC || generation != self.generation {
            return Ok(None);
        }
        let start = at + RECORD_HEAD as u64;
        let len = u64::from(word(4));
        if start + len > self.capacity {
            return Ok(None); // a damaged length: never allocate past the file
        }
        let mut body = vec![0u8; len as usize];
        if !self.read_at(&mut body, start)? || checksum(generation, &body).as_bytes() != &head[16..]
        {
            return Ok(None);
        }
        Ok(parse_body(&body).map(|batch| (batch, start + body.len() as u64)))
    }

    /// Fills `buf` from offset `at`; false if the file ends first.
    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<bool> {
        match self.file.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Extends the zero fill to `capacity` bytes and makes the new size durable.
    fn grow(&mut self, capacity: u64) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        let zeros = vec![0u8; 64 << 10];
        let mut at = self.capacity;
        while at < capacity {
            let n = (capacity - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at).map_err(io)?;
            at += n as u64;
        }
        self.file.sync_all().map_err(io)?;
        self.capacity = capacity;
        Ok(())
    }
}

fn checksum(generation: u64, body: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// `key length | key | envelope length | envelope`, repeated; `None` if malformed.
fn parse_body(mut body: &[u8]) -> Option<JournalBatch> {
    let mut take = || -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
        let part = body.get(4..4usize.checked_add(len)?)?.to_vec();
        body = &body[4 + len..];
        Some(part)
    };
    let mut batch = Vec::new();
    while let Some(key) = take() {
        let bytes = take()?;
        batch.push((String::from_utf8(key).ok()?, bytes));
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(items: &[(&str, &str)]) -> JournalBatch {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn append(journal: &mut Journal, items: &JournalBatch) {
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        journal.append(&refs).expect("append");
    }

    #[test]
    fn appended_batches_come_back_after_a_reopen_until_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let first = batch(&[("jit/sws/a/patch", "one"), ("jit/sws/b/patch", "two")]);
        let second = batch(&[("jit/kernel/create", "three")]);
        {
            let mut journal = Journal::open(&path).expect("open");
            assert!(journal.is_empty() && journal.pending(None).expect("scan").is_empty());
            append(&mut journal, &first);
            append(&mut journal, &second);
            assert!(
                Journal::open(&path).is_err(),
                "a second owner is refused while the first holds the lock"
            );
        }
        let mut journal = Journal::open(&path).expect("reopen");
        assert_eq!(
            journal.pending(None).expect("scan"),
            [first.clone(), second]
        );
        journal.reset().expect("reset");
        let third = batch(&[("jit/sws/c/patch", "four")]);
        append(&mut journal, &third);
        drop(journal);
        let journal = Journal::open(&path).expect("reopen");
        assert_eq!(
            journal.pending(None).expect("scan"),
            [third],
            "records of the generation before the reset are never read again"
        );
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let kept = batch(&[("k", "kept")]);
        {
            let mut journal = Journal::open(&path).expect("open");
            append(&mut journal, &kept);
            append(&mut journal, &batch(&[("k", "damaged")]));
        }
        // Flip a byte of the second record's body, as a torn write would leave it.
        let bytes = std::fs::read(&path).expect("read");
        let at = bytes
            .windows(7)
            .position(|w| w == b"damaged")
            .expect("the second record");
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(b"X", at as u64).expect("damage");
        drop(file);
        let mut journal = Journal::open(&path).expect("reopen");
        assert_eq!(
            journal.pending(None).expect("scan"),
            std::slice::from_ref(&kept)
        );
        // Appending continues after the last good record.
        let next = batch(&[("k", "next")]);
        append(&mut journal, &next);
        drop(journal);
        assert_eq!(
            Journal::open(&path)
                .expect("reopen")
                .pending(None)
                .expect("scan"),
            [kept, next]
        );
    }

    #[test]
    fn a_mark_covers_the_batches_before_it_and_a_blank_header_starts_afresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let first = batch(&[("k", "first")]);
        let second = batch(&[("k", "second")]);
        let mut journal = Journal::open(&path).expect("open");
        append(&mut journal, &first);
        let mark = journal.mark();
        append(&mut journal, &second);
        assert_eq!(
            journal.pending(Some(mark)).expect("scan"),
            std::slice::from_ref(&second),
            "only what the mark does not cover"
        );
        let older = Mark {
            generation: mark.generation - 1,
            end: u64::MAX,
        };
        assert_eq!(
            journal.pending(Some(older)).expect("scan"),
            [first, second],
            "a mark of another generation covers nothing of this one"
        );
        drop(journal);
        // A first creation cut short after the zero fill: the header is still blank.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0u8; 48], 0).expect("blank the header");
        drop(file);
        let journal = Journal::open(&path).expect("a blank header starts afresh");
        assert!(journal.is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        std::fs::write(&path, b"something else entirely").expect("write");
        assert!(Journal::open(&path).is_err());
        assert!(
            Journal::may_hold_records(&path).expect("peek"),
            "a damaged journal is opened, so that the error is shown"
        );
    }

    #[test]
    fn probes_do_not_take_each_other_for_a_holder_and_opening_waits_out_a_probe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        drop(Journal::open(&path).expect("create"));
        // Another process's probe in progress: a shared lock on its own open file.
        let probe = File::open(&path).expect("open");
        probe.try_lock_shared().expect("shared lock");
        assert!(!Journal::is_held(&path), "a probe is not a holder");
        assert!(
            Journal::open(&path).is_err(),
            "the probe blocks an exclusive lock"
        );
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(probe);
        });
        let journal = Journal::open_patiently(&path).expect("opened once the probe is gone");
        released.join().expect("probe thread");
        assert!(Journal::is_held(&path), "a holder is seen");
        assert!(
            Journal::open_patiently(&path).is_err(),
            "a holder that keeps the lock still makes opening fail"
        );
        drop(journal);
    }

    #[test]
    fn a_peek_without_the_lock_sees_whether_there_is_anything_to_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        std::fs::write(&path, b"").expect("an empty file");
        assert!(!Journal::may_hold_records(&path).expect("peek"));
        let mut journal = Journal::open(&path).expect("open");
        assert!(
            !Journal::may_hold_records(&path).expect("peek"),
            "a new journal"
        );
        append(&mut journal, &batch(&[("k", "one")]));
        assert!(Journal::may_hold_records(&path).expect("peek"), "a record");
        journal.reset().expect("reset");
        assert!(
            !Journal::may_hold_records(&path).expect("peek"),
            "after a reset"
        );
    }

    #[test]
    fn batches_larger_than_the_zero_fill_grow_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let big = "x".repeat(3 << 20);
        let items = batch(&[("big", big.as_str())]);
        {
            let mut journal = Journal::open(&path).expect("open");
            append(&mut journal, &items);
        }
        assert_eq!(
            Journal::open(&path)
                .expect("reopen")
                .pending(None)
                .expect("scan"),
            [items]
        );
    }
}
