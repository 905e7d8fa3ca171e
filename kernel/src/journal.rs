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
//! A damaged record (a flipped byte, a bad sector) does not end the journal: the scan looks for
//! the next record head (`magic | … | generation` of this generation, whose checksum holds)
//! and goes on from there, so every intact record is delivered. The stretch it skipped is
//! reported as [`Damaged`] with how many record heads it held; recovery keeps a copy of the
//! damaged journal aside (`plane.journal.damaged-<time>`), logs an error, writes an audit
//! record, and `jit fsck` reports the copy until it is removed. Only what follows the last
//! intact record is taken for a write a crash cut short (never acknowledged), as before.
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

/// A stretch of the journal, between intact records, that holds no readable record: damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged {
    /// Offset where the stretch starts (where a record should have been).
    pub start: u64,
    /// Offset of the next intact record.
    pub end: u64,
    /// How many records the stretch held, as far as their heads tell (at least 1).
    pub records: u64,
}

/// What a scan of the journal read.
#[derive(Debug, Default)]
pub struct Scan {
    /// The intact records of the current generation, in order, each with the offset just past
    /// it.
    pub records: Vec<(JournalBatch, u64)>,
    /// Where the records end: the next one goes there.
    pub end: u64,
    /// Damaged stretches, in order.
    pub damaged: Vec<Damaged>,
}

/// What recovery must deliver again, and what it could not read.
#[derive(Debug, Default)]
pub struct Pending {
    /// Batches no committed transaction covers, in order.
    pub batches: Vec<JournalBatch>,
    /// Damaged stretches that reach past what committed transactions cover: records of
    /// acknowledged messages that are lost.
    pub damaged: Vec<Damaged>,
}

impl Pending {
    /// How many records could not be read.
    pub fn damaged_records(&self) -> u64 {
        self.damaged.iter().map(|d| d.records).sum()
    }
}

/// Prefix of the names of damaged journals kept aside, in the same directory.
pub const DAMAGED_PREFIX: &str = "plane.journal.damaged-";

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
                journal.end = journal.scan()?.end;
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
                // A damaged first record must not hide the intact ones after it.
                Ok(
                    journal.record_at(HEADER_SIZE)?.is_some()
                        || !journal.scan()?.records.is_empty(),
                )
            }
            None => Ok(journal.capacity != 0 && !journal.header_is_blank()?),
        }
    }

    /// Whether the journal at `path` exists with a damaged header (neither valid nor blank),
    /// read without locking it: read-only verbs and `jit fsck` then run without recovering it,
    /// and fsck reports it.
    pub fn header_is_damaged(path: &Path) -> Result<bool> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
        };
        let journal = Journal::unread(file, path)?;
        Ok(journal.capacity != 0
            && journal.read_header()?.is_none()
            && !journal.header_is_blank()?)
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

    /// [`Journal::open`], trying again while the lock is taken for a moment: another process's
    /// [`Journal::is_held`] probe holds it for microseconds, and a `jit` verb that recovered a
    /// dead daemon's journal ([`crate::agents::recover_unowned_journal`]) holds it until its
    /// reset is flushed. A holder that keeps it (a daemon) still makes this fail, after about
    /// two seconds. A holder that lets go between a failed open and the probe is no reason to
    /// give up: the open is tried again at once. Never waits on the lock itself, so it cannot
    /// deadlock with the store's writer lock, which the plane takes while it holds the journal.
    pub fn open_patiently(path: &Path) -> Result<Journal> {
        const WAITS: u32 = 1000;
        const RETRIES_WHEN_FREE: u32 = 3;
        let (mut waits, mut retries) = (0, 0);
        loop {
            match Journal::open(path) {
                Err(Error::InvalidInput(_)) if waits < WAITS && retries < RETRIES_WHEN_FREE => {
                    if lock_would_block(path, File::try_lock) {
                        waits += 1;
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    } else {
                        // Let go since the open failed (or the failure was not the lock).
                        retries += 1;
                    }
                }
                other => return other,
            }
        }
    }

    /// The batches appended since the last reset (by this run or one before it that crashed)
    /// that `committed` does not cover, in order: acknowledged messages whose transaction did
    /// not commit. Deliver them again, then [`Journal::reset`].
    pub fn pending(&self, committed: Option<Mark>) -> Result<Vec<JournalBatch>> {
        Ok(self.recovery(committed)?.batches)
    }

    /// [`Journal::pending`], with the damaged stretches that reach past what `committed`
    /// covers: records of acknowledged messages that could not be read.
    pub fn recovery(&self, committed: Option<Mark>) -> Result<Pending> {
        let covered = committed
            .filter(|mark| mark.generation == self.generation)
            .map_or(HEADER_SIZE, |mark| mark.end);
        let scan = self.scan()?;
        for damaged in scan.damaged.iter().filter(|d| d.end <= covered) {
            tracing::warn!(
                start = damaged.start,
                end = damaged.end,
                "the plane journal has a damaged stretch whose messages are committed; nothing is lost"
            );
        }
        Ok(Pending {
            batches: scan
                .records
                .into_iter()
                .filter(|(_, end)| *end > covered)
                .map(|(batch, _)| batch)
                .collect(),
            damaged: scan
                .damaged
                .into_iter()
                .filter(|d| d.end > covered)
                .collect(),
        })
    }

    /// Copies the journal as it is to `plane.journal.damaged-<unix seconds>` beside it (mode
    /// 0600, flushed), for inspection; returns the copy's path.
    pub fn keep_aside(&self) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut bytes = vec![0u8; usize::try_from(self.capacity).unwrap_or(0)];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| Error::io(&self.path, e))?;
        for attempt in 0u32.. {
            let name = match attempt {
                0 => format!("{DAMAGED_PREFIX}{seconds}"),
                n => format!("{DAMAGED_PREFIX}{seconds}.{n}"),
            };
            let path = dir.join(name);
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 1000 => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
            return Ok(path);
        }
        Err(Error::InvalidInput(
            "no free name to keep the damaged plane journal aside".into(),
        ))
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
    /// where they end. Where a record cannot be read, looks for the next intact one and goes
    /// on from there (the stretch skipped is [`Damaged`]); the records end where none follows
    /// (the zero fill, an older generation, or a write a crash cut short — never
    /// acknowledged).
    fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        let mut at = HEADER_SIZE;
        loop {
            if let Some((batch, next)) = self.record_at(at)? {
                scan.records.push((batch, next));
                at = next;
                continue;
            }
            let Some(next) = self.next_record_after(at)? else {
                break;
            };
            let records = self.heads_in(at, next)?.max(1);
            tracing::warn!(
                start = at,
                end = next,
                records,
                journal = %self.path.display(),
                "the plane journal has a damaged stretch; reading on past it"
            );
            scan.damaged.push(Damaged {
                start: at,
                end: next,
                records,
            });
            at = next;
        }
        scan.end = at;
        Ok(scan)
    }

    /// The bytes every record head of the current generation starts with.
    fn head_pattern(&self) -> [u8; 16] {
        let mut pattern = [0u8; 16];
        pattern[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        pattern[8..].copy_from_slice(&self.generation.to_le_bytes());
        pattern
    }

    /// Offsets in `[from, to)` where a record head of the current generation may start
    /// (magic and generation match; the length is not looked at), read in chunks.
    fn candidates(
        &self,
        from: u64,
        to: u64,
        mut found: impl FnMut(u64) -> Result<bool>,
    ) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        let pattern = self.head_pattern();
        let head = pattern.len() as u64;
        let to = to.min(self.capacity);
        let mut at = from;
        let mut buf = Vec::new();
        while at + head <= to {
            let len = (CHUNK + head - 1).min(to - at);
            buf.resize(len as usize, 0);
            if !self.read_at(&mut buf, at)? {
                return Ok(());
            }
            for (i, window) in buf.windows(pattern.len()).enumerate() {
                if window[..4] == pattern[..4]
                    && window[8..] == pattern[8..]
                    && !found(at + i as u64)?
                {
                    return Ok(());
                }
            }
            at += len + 1 - head;
        }
        Ok(())
    }

    /// The offset of the first intact record after `at`; `None` if there is none.
    fn next_record_after(&self, at: u64) -> Result<Option<u64>> {
        let mut next = None;
        self.candidates(at + 1, self.capacity, |candidate| {
            if self.record_at(candidate)?.is_some() {
                next = Some(candidate);
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(next)
    }

    /// How many record heads of the current generation start in `[from, to)`.
    fn heads_in(&self, from: u64, to: u64) -> Result<u64> {
        let mut heads = 0;
        self.candidates(from, to, |_| {
            heads += 1;
            Ok(true)
        })?;
        Ok(heads)
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

/// Reads the journal (or a copy kept aside) at `path` without locking it: its generation and
/// what a scan finds. For inspection (`jit fsck`, tests); recovery opens it with
/// [`Journal::open`].
pub fn inspect(path: &Path) -> Result<(u64, Scan)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut journal = Journal::unread(file, path)?;
    match journal.read_header()? {
        Some(generation) => {
            journal.generation = generation;
            Ok((generation, journal.scan()?))
        }
        None => Err(Error::InvalidInput(format!(
            "{} has no readable journal header",
            path.display()
        ))),
    }
}

/// Damaged journals kept aside in `dir` (normally `.jit`), each with how many records in it
/// could not be read; read without locking, for `jit fsck`.
pub fn damaged_copies(dir: &Path) -> Result<Vec<(PathBuf, Result<u64>)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut copies = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(DAMAGED_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let damaged = inspect(&path).map(|(_, scan)| scan.damaged.iter().map(|d| d.records).sum());
        copies.push((path, damaged));
    }
    copies.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(copies)
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
    fn a_damaged_record_is_skipped_and_the_intact_ones_after_it_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let batches: Vec<JournalBatch> = ["first", "second", "third", "fourth"]
            .iter()
            .map(|word| batch(&[("k", word)]))
            .collect();
        {
            let mut journal = Journal::open(&path).expect("open");
            for items in &batches {
                append(&mut journal, items);
            }
        }
        let damage = |needle: &[u8]| {
            let bytes = std::fs::read(&path).expect("read");
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("the record");
            let file = OpenOptions::new().write(true).open(&path).expect("open");
            file.write_all_at(b"X", at as u64).expect("damage");
        };
        // A byte of the first record's body, and the magic of the third record's head.
        damage(b"first");
        let (_, scan) = inspect(&path).expect("inspect");
        let third_at = scan.records[0].1; // the second record is the first intact one
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0], third_at).expect("damage the magic");
        drop(file);

        let (_, scan) = inspect(&path).expect("inspect");
        assert_eq!(
            scan.damaged.iter().map(|d| d.records).collect::<Vec<_>>(),
            [1, 1],
            "two damaged stretches of one record each: {:?}",
            scan.damaged
        );
        let mut journal = Journal::open(&path).expect("reopen");
        let pending = journal.recovery(None).expect("scan");
        assert_eq!(
            pending.batches,
            [batches[1].clone(), batches[3].clone()],
            "every intact record, past the damage"
        );
        assert_eq!(pending.damaged_records(), 2);
        // A mark that covers the first damaged stretch leaves only the second to report.
        let mark = Mark {
            generation: journal.mark().generation,
            end: scan.records[0].1,
        };
        assert_eq!(
            journal
                .recovery(Some(mark))
                .expect("scan")
                .damaged_records(),
            1
        );
        // Appends go after the last intact record; the copy kept aside says what was lost.
        let kept = journal.keep_aside().expect("keep aside");
        let fifth = batch(&[("k", "fifth")]);
        append(&mut journal, &fifth);
        drop(journal);
        assert_eq!(
            Journal::open(&path)
                .expect("reopen")
                .pending(None)
                .expect("scan"),
            [batches[1].clone(), batches[3].clone(), fifth]
        );
        let copies = damaged_copies(dir.path()).expect("copies");
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].0, kept);
        assert_eq!(copies[0].1.as_ref().ok(), Some(&2));
        assert!(Journal::may_hold_records(&path).expect("peek"));
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

    /// A `jit` verb that recovers a dead daemon's journal holds it while it flushes the reset;
    /// a daemon starting meanwhile must wait that out, not fail to start ("in use by another
    /// process", seen after a `kill -9` with `jit wait` polling). 300 ms was past the old
    /// 100 ms of patience.
    #[test]
    fn opening_waits_out_a_holder_that_lets_go_after_300_ms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plane.journal");
        let holder = Journal::open(&path).expect("create");
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(holder);
        });
        let journal = Journal::open_patiently(&path).expect("opened once the holder let go");
        released.join().expect("holder thread");
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
