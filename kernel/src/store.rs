//! The LMDB store (through `heed`): nodes, refs, the log and metadata in one environment, so one
//! write transaction makes a whole kernel operation (nodes + log records + ref move) atomic and
//! durable before it is acknowledged.
//!
//! Content lives in LMDB too: reads come straight from the memory map without a copy. The mount
//! can materialize large files into real files for FUSE passthrough when it needs them.

mod bases;
mod compact;
mod header;
mod health;
pub(crate) mod layout;
pub mod repr;
mod segments;
pub(crate) mod table;
mod verify;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::log::{self, Checksum, LogOp, LogRecord};
use crate::node::{Node, NodeView};
use crate::observe::{Observer, Observers};

pub use compact::Compacted;
pub use header::NodeHeader;
pub use repr::Stored;
pub use table::{Declared, TableDef};
pub use verify::{verified, verified_all};

/// A read transaction: a consistent snapshot of the whole store.
pub type ReadTxn<'e> = RoTxn<'e, WithoutTls>;

/// Virtual size reserved for the memory map; the file grows only as data is written.
const MAP_SIZE: usize = 1 << 40;

/// Bytes an operation must free for [`Op::commit`] to follow it with a commit of its own (see
/// [`Store::let_freed_pages_be_reused`]).
const REUSE_AFTER_FREEING: u64 = 64 * 1024;

/// The `meta` key the follow-up commit writes (an empty value: any write makes LMDB commit).
const REUSE_KEY: &str = "reuse";

/// Longest reason kept in an audit record; refusals quote user input, which may be huge.
const AUDIT_REASON_MAX: usize = 1024;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A delta's base that could not be read: a corrupt base makes the delta (`id`) corrupt,
/// naming the base; any other failure (I/O, a full disk) is itself.
fn unreadable_base(id: &NodeId, base: &NodeId, error: Error) -> Error {
    match error {
        Error::Corrupt { .. } | Error::CorruptRepresentation { .. } => {
            repr::corrupt(id, format!("its delta base {base} cannot be read: {error}"))
        }
        other => other,
    }
}

/// The open store of one universe.
pub struct Store {
    pub(crate) env: Env<WithoutTls>,
    /// The store's directory (to say which file system is full).
    dir: PathBuf,
    /// NodeId → the node's stored representation ([`repr`]), or a pointer to it in
    /// `segments`: read through [`Store::stored`].
    pub(crate) nodes: Database<Bytes, Bytes>,
    /// Large stored values packed end to end by compaction ([`segments`]).
    segments: Database<Bytes, Bytes>,
    /// Full ref name → 32-byte target id.
    pub(crate) refs: Database<Str, Bytes>,
    /// NodeId → [`NodeHeader`] (type, clock, size): validation never pages in content.
    pub(crate) headers: Database<Bytes, Bytes>,
    /// Sequence number → checksummed log record.
    pub(crate) log: Database<U64<BigEndian>, Bytes>,
    /// Small named values (format version).
    pub(crate) meta: Database<Str, Bytes>,
    /// The modules' tables, by registry slot ([`table`]): each module reads and writes its own
    /// through its private [`TableDef`] ([`Store::table`]).
    tables: Vec<table::Untyped>,
    /// Components told of every commit (the mount's caches).
    observers: Observers,
    /// Trees decoded by edits of this store ([`crate::treecache`]).
    pub(crate) trees: crate::treecache::TreeCache,
    /// The shared lock saying this process has the store open ([`compact`]).
    open_lock: std::fs::File,
    /// Delta bases resolved lately ([`bases`]).
    pub(crate) bases: bases::Bases,
}

/// A registry whose slots are not its positions (or names a table twice) is a bug in this
/// build: refuse it before opening anything.
fn table_slots_hold(tables: &[Declared]) -> Result<()> {
    let mut names = std::collections::BTreeSet::new();
    for (i, declared) in tables.iter().enumerate() {
        if declared.slot != i || !names.insert(declared.name) {
            return Err(Error::InvalidInput(format!(
                "table registry: {:?} declares slot {} at position {i}",
                declared.name, declared.slot
            )));
        }
    }
    Ok(())
}

/// The transaction that creates or opens the store's tables.
enum Tables<'e> {
    Create(RwTxn<'e>),
    Open(ReadTxn<'e>),
}

impl Tables<'_> {
    fn table<K: 'static, V: 'static>(
        &mut self,
        env: &Env<WithoutTls>,
        name: &str,
        dir: &Path,
    ) -> Result<Database<K, V>> {
        match self {
            Tables::Create(wtxn) => Ok(env.create_database(wtxn, Some(name))?),
            Tables::Open(rtxn) => env
                .open_database(rtxn, Some(name))?
                .ok_or_else(|| Error::NotARepository(dir.to_path_buf())),
        }
    }
}

impl Store {
    /// Opens (creating if asked) the store in directory `dir`, with the modules' `tables` (the
    /// kernel's registry, `crate::tables`, lists them and then runs the upgrade steps:
    /// `Store::open`).
    pub(crate) fn open_tables(dir: &Path, create: bool, tables: &[Declared]) -> Result<Store> {
        table_slots_hold(tables)?;
        if create {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        } else if !dir.join("data.mdb").exists() {
            return Err(Error::NotARepository(dir.to_path_buf()));
        } else {
            health::refuse_too_short(dir)?;
        }
        let open_lock = compact::hold_open(dir)?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(32).max_readers(256);
        // SAFETY: the store directory belongs to this universe; only JIT processes open it, always
        // through LMDB's own locking, and nothing truncates or rewrites the file behind LMDB.
        let env = unsafe { options.open(dir) }?;
        // Before anything reads through the map: a truncated file would SIGBUS the reader.
        health::refuse_truncated(&env, dir)?;
        layout::refuse_newer(&env, dir)?;
        // Opening an up-to-date store uses a read transaction, so it never waits for a writer
        // (an import in progress). Creating — or upgrading an older store, once — needs a write
        // transaction.
        if create {
            let txn = Tables::Create(env.write_txn()?);
            return Store::with_tables(&env, dir, tables, txn, open_lock);
        }
        let lock = open_lock.try_clone().map_err(|e| Error::io(dir, e))?;
        let txn = Tables::Open(env.read_txn()?);
        let store = match Store::with_tables(&env, dir, tables, txn, lock) {
            Err(Error::NotARepository(_)) => {
                tracing::info!(store = %dir.display(), "adding the tables this version needs");
                let txn = Tables::Create(env.write_txn()?);
                Store::with_tables(&env, dir, tables, txn, open_lock)?
            }
            other => other?,
        };
        Ok(store)
    }

    fn with_tables(
        env: &Env<WithoutTls>,
        dir: &Path,
        declared: &[Declared],
        mut txn: Tables<'_>,
        open_lock: std::fs::File,
    ) -> Result<Store> {
        let tables = declared
            .iter()
            .map(|declared| txn.table(env, declared.name, dir))
            .collect::<Result<Vec<_>>>()?;
        let store = Store {
            nodes: txn.table(env, segments::NODE_TABLE, dir)?,
            segments: txn.table(env, segments::TABLE, dir)?,
            headers: txn.table(env, "headers", dir)?,
            refs: txn.table(env, "refs", dir)?,
            log: txn.table(env, "log", dir)?,
            meta: txn.table(env, "meta", dir)?,
            tables,
            env: env.clone(),
            dir: dir.to_path_buf(),
            observers: Observers::default(),
            trees: Default::default(),
            open_lock,
            bases: Default::default(),
        };
        match txn {
            Tables::Create(wtxn) => wtxn.commit()?,
            Tables::Open(rtxn) => rtxn.commit()?,
        }
        Ok(store)
    }

    /// A module's table, typed by its definition (only the owning module holds the
    /// definition); the slot was checked against the registry when the store opened.
    pub(crate) fn table<K: 'static, V: 'static>(&self, def: &TableDef<K, V>) -> Database<K, V> {
        self.tables[def.slot()].remap_types()
    }

    /// Registers a component to be told of every commit and asked to settle its buffered writes
    /// (see [`crate::observe`]).
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        self.observers.add(observer);
    }

    /// Unregisters an observer added with [`Store::observe`].
    pub fn unobserve(&self, observer: &Arc<dyn Observer>) {
        self.observers.remove(observer);
    }

    /// Shrinks the map so the store can grow by only `pages` more pages: a full store, for
    /// tests of what a write that does not fit leaves behind.
    #[cfg(test)]
    pub(crate) fn limit_growth(&self, pages: usize) -> Result<()> {
        let page = self.env.stat().page_size as usize;
        let used = (self.env.info().last_page_number + 1) * page;
        // SAFETY: tests call this while no transaction of this process is open.
        unsafe { self.env.resize(used + pages * page) }?;
        Ok(())
    }

    /// Asks every observer to push buffered writes into the store. Called before an operation
    /// that reads or commits an SWS as a whole; must not be called inside a transaction.
    pub fn settle(&self) -> Result<()> {
        self.observers.settle()
    }

    /// Tells observers that state they mirror changed outside a transaction (HEAD moved).
    pub fn announce(&self) {
        self.observers.committed();
    }

    /// Starts a read transaction.
    pub fn read(&self) -> Result<ReadTxn<'_>> {
        Ok(self.env.read_txn()?)
    }

    /// Runs `body` in a write transaction of its own, without a log record: for caches outside
    /// the DAG (bytes a sync has received and verified but not appended yet).
    pub(crate) fn unlogged_write<T>(
        &self,
        body: impl FnOnce(&mut RwTxn<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut txn = self.env.write_txn()?;
        let value = body(&mut txn).map_err(|e| self.no_space(e))?;
        txn.commit().map_err(|e| self.no_space(e.into()))?;
        Ok(value)
    }

    /// Rewrites the store's file without its free pages, if no other process has it open
    /// ([`compact`]). Consumes the store: the file it mapped is replaced.
    pub fn compact(self) -> Result<Compacted> {
        let Store {
            env,
            dir,
            open_lock,
            ..
        } = self;
        compact::compact_file(env, &dir, open_lock)
    }

    /// Rewrites the node and header tables in key order, in one transaction, so their pages are
    /// full ([`compact::rewrite_dense`]); the pages they used become free.
    pub fn rewrite_dense(&self) -> Result<()> {
        self.unlogged_write(|txn| compact::rewrite_dense(txn, &[self.nodes, self.headers]))
    }

    /// Commits a write of its own right after an operation that freed many pages. LMDB hands
    /// the pages a transaction freed to writers only from the second transaction after it; with
    /// this commit in between, the very next operation (the next write-back of the file whose
    /// old version was just dropped) reuses them, and a file rewritten again and again keeps
    /// two versions' worth of pages in the store instead of three.
    fn let_freed_pages_be_reused(&self) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        self.meta.put(&mut txn, REUSE_KEY, &[])?;
        txn.commit()?;
        Ok(())
    }

    /// Starts one kernel operation: a write transaction plus a log appender.
    pub fn begin(&self) -> Result<Op<'_>> {
        let txn = self.env.write_txn()?;
        let (next_seq, prev) = match self.log.last(&txn)? {
            Some((seq, stored)) => {
                let (_, checksum) = log::verify_record(seq, stored)?;
                (seq + 1, checksum)
            }
            None => (1, [0; 32]),
        };
        Ok(Op {
            store: self,
            txn,
            next_seq,
            prev,
            poisoned: false,
            writes: 0,
            freed: 0,
            by: None,
            created: Vec::new(),
        })
    }

    /// `error` as [`Error::NoSpace`] if a full disk caused it ([`health::classify`]).
    pub(crate) fn no_space(&self, error: Error) -> Error {
        health::classify(&self.dir, error)
    }

    /// Canonical bytes of a node, once they are verified to hash to `id` ([`Error::Corrupt`]
    /// if they do not): every read of node content goes through here. A node kept raw is
    /// borrowed from the map; one kept compressed or as a delta is rebuilt ([`repr`]), its
    /// bases checked the same way on the way.
    pub fn node_bytes<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        id: &NodeId,
    ) -> Result<Option<Cow<'t, [u8]>>> {
        match self.stored(txn, id)? {
            Some(stored) => self.resolve(txn, id, stored, 0).map(Some),
            None => Ok(None),
        }
    }

    /// The canonical bytes of node `id` from its stored value, `hops` deltas into a chain.
    fn resolve<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        id: &NodeId,
        stored: &'t [u8],
        hops: u8,
    ) -> Result<Cow<'t, [u8]>> {
        let bytes = match Stored::parse(id, stored)? {
            Stored::Raw(raw) => return Ok(Cow::Borrowed(verified(id, raw)?)),
            Stored::Zstd(frame) => repr::inflate(id, frame, None)?,
            Stored::Delta { base, frame, .. } => {
                if hops >= repr::MAX_CHAIN {
                    return Err(repr::corrupt(
                        id,
                        format!("its delta chain is longer than {}", repr::MAX_CHAIN),
                    ));
                }
                let base_bytes = match self.bases.get(&base) {
                    Some(bytes) => bytes,
                    None => {
                        let Some(base_stored) = self.stored(txn, &base)? else {
                            return Err(repr::corrupt(
                                id,
                                format!("its delta base {base} is not stored"),
                            ));
                        };
                        let bytes: std::sync::Arc<[u8]> = self
                            .resolve(txn, &base, base_stored, hops + 1)
                            .map_err(|e| unreadable_base(id, &base, e))?
                            .into();
                        self.bases.insert(base, bytes.clone());
                        bytes
                    }
                };
                repr::inflate(id, frame, Some(&base_bytes))?
            }
        };
        verified(id, &bytes)?;
        Ok(Cow::Owned(bytes))
    }

    /// [`Store::node_bytes`] for many nodes at once, rebuilt and verified in parallel; in
    /// the order asked, `None` for a node not stored.
    pub fn node_bytes_many<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        ids: &[NodeId],
    ) -> Result<Vec<Option<Cow<'t, [u8]>>>> {
        use rayon::prelude::*;
        let found = ids
            .iter()
            .map(|id| Ok((*id, self.stored(txn, id)?)))
            .collect::<Result<Vec<_>>>()?;
        // Full representations are rebuilt and hashed on all cores (a cold batch of a large
        // file's chunks then faults in and checks in parallel); then the deltas, in layers.
        let mut out: Vec<Option<Cow<'t, [u8]>>> = found
            .par_iter()
            .map(|(id, stored)| match stored {
                Some(stored) => match Stored::parse(id, stored)? {
                    Stored::Delta { .. } => Ok(None),
                    Stored::Raw(raw) => Ok(Some(Cow::Borrowed(verified(id, raw)?))),
                    Stored::Zstd(frame) => {
                        let bytes = repr::inflate(id, frame, None)?;
                        verified(id, &bytes)?;
                        Ok(Some(Cow::Owned(bytes)))
                    }
                },
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        self.resolve_deltas_in_layers(txn, &found, &mut out)?;
        Ok(out)
    }

    /// The deltas among `found` (those `out` lacks), rebuilt in layers on all cores: a layer
    /// is every delta whose base is at hand (rebuilt already in this batch, or a base resolved
    /// before), so a chunked file's run of chunks, each a delta of the one before, costs one
    /// parallel pass per step. A base outside the batch is resolved first (the transaction
    /// cannot cross threads); a delta whose base never comes to hand (a loop) is resolved
    /// alone, which refuses it.
    fn resolve_deltas_in_layers<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        found: &[(NodeId, Option<&'t [u8]>)],
        out: &mut [Option<Cow<'t, [u8]>>],
    ) -> Result<()> {
        use rayon::prelude::*;
        enum Base {
            InBatch(usize),
            Resolved(Arc<[u8]>),
        }
        let mut pending: Vec<(usize, NodeId, &'t [u8])> = Vec::new();
        let mut at: crate::id::IdMap<usize> = Default::default();
        for (i, (id, stored)) in found.iter().enumerate() {
            at.insert(*id, i);
            if let (Some(stored), None) = (stored, &out[i]) {
                if let Stored::Delta { base, frame, .. } = Stored::parse(id, stored)? {
                    pending.push((i, base, frame));
                }
            }
        }
        while !pending.is_empty() {
            let mut ready = Vec::new();
            let mut waiting = Vec::new();
            for (i, base, frame) in pending {
                match at.get(&base) {
                    Some(&j) if out[j].is_some() => ready.push((i, Base::InBatch(j), frame)),
                    Some(&j) if found[j].1.is_some() => waiting.push((i, base, frame)),
                    _ => {
                        let id = found[i].0;
                        let bytes = self
                            .base_bytes(txn, &base)
                            .map_err(|e| unreadable_base(&id, &base, e))?
                            .ok_or_else(|| {
                                repr::corrupt(&id, format!("its delta base {base} is not stored"))
                            })?;
                        ready.push((i, Base::Resolved(bytes), frame));
                    }
                }
            }
            if ready.is_empty() {
                // Every one waits on another of the batch: a loop. Resolving one alone
                // walks its chain and refuses it.
                let (i, ..) = waiting[0];
                let (id, stored) = found[i];
                let stored = stored.ok_or(Error::NodeNotFound(id))?;
                out[i] = Some(self.resolve(txn, &id, stored, 0)?);
                pending = waiting.into_iter().skip(1).collect();
                continue;
            }
            let rebuilt = ready
                .par_iter()
                .map(|(i, base, frame)| {
                    let id = &found[*i].0;
                    let base: &[u8] = match base {
                        Base::InBatch(j) => out[*j].as_deref().unwrap_or_default(),
                        Base::Resolved(bytes) => bytes,
                    };
                    let bytes = repr::inflate(id, frame, Some(base))?;
                    verified(id, &bytes)?;
                    Ok((*i, bytes))
                })
                .collect::<Result<Vec<_>>>()?;
            for (i, bytes) in rebuilt {
                out[i] = Some(Cow::Owned(bytes));
            }
            pending = waiting;
        }
        Ok(())
    }

    /// The canonical bytes of node `id` read as a delta's base: from the bases resolved lately
    /// ([`bases`]) when there, else read and verified ([`Store::node_bytes`]) and kept there,
    /// since a base (a directory's hub, the newer version a sync's deltas name) serves again.
    pub fn base_bytes(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Option<Arc<[u8]>>> {
        if let Some(bytes) = self.bases.get(id) {
            return Ok(Some(bytes));
        }
        let Some(bytes) = self.node_bytes(txn, id)? else {
            return Ok(None);
        };
        let bytes: Arc<[u8]> = bytes.into();
        self.bases.insert(*id, bytes.clone());
        Ok(Some(bytes))
    }

    /// The stored value of node `id`, as kept (its representation, not decoded; taken from
    /// its segment when compaction packed it there): what sync sends and `jit gc` rewrites.
    pub fn stored<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<Option<&'t [u8]>> {
        match self.nodes.get(txn, id.as_bytes())? {
            Some(value) => segments::unpacked(self.segments, txn, id, value).map(Some),
            None => Ok(None),
        }
    }

    /// The stored value an entry of [`Store::node_entries`] stands for ([`Store::stored`]).
    pub fn unpacked<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        id: &NodeId,
        value: &'t [u8],
    ) -> Result<&'t [u8]> {
        segments::unpacked(self.segments, txn, id, value)
    }

    /// Whether the store holds bytes under `id`, without reading or verifying them (fsck
    /// counts what is stored, damaged or not).
    pub(crate) fn holds_bytes(&self, txn: &ReadTxn<'_>, key: &[u8]) -> Result<bool> {
        Ok(self.nodes.get(txn, key)?.is_some())
    }

    /// Whether every header's id sorts before `id` (the table is empty, or ends before it).
    pub(crate) fn headers_end_before(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool> {
        Ok(match self.headers.last(txn)? {
            Some((last, _)) => last < id.as_bytes().as_slice(),
            None => true,
        })
    }

    /// Whether a node exists.
    pub fn has_node(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<bool> {
        Ok(self.headers.get(txn, id.as_bytes())?.is_some())
    }

    /// A node's header (type, clock, size), if the node exists.
    pub fn header(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Option<NodeHeader>> {
        match self.headers.get(txn, id.as_bytes())? {
            Some(raw) => NodeHeader::from_bytes(raw).map(Some).ok_or_else(|| {
                Error::InvalidInput(format!("header index entry of {id} is malformed"))
            }),
            None => Ok(None),
        }
    }

    /// A node's header, or [`Error::NodeNotFound`].
    pub fn require_header(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<NodeHeader> {
        self.header(txn, id)?.ok_or(Error::NodeNotFound(*id))
    }

    /// Iterates the header index: `(key bytes, value bytes)`.
    pub fn header_entries<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
    ) -> Result<impl Iterator<Item = Result<(&'t [u8], &'t [u8])>> + 't> {
        Ok(self.headers.iter(txn)?.map(|r| r.map_err(Error::from)))
    }

    /// Loads and decodes a node.
    pub fn node(&self, txn: &ReadTxn<'_>, id: &NodeId) -> Result<Node> {
        let bytes = self.node_bytes(txn, id)?.ok_or(Error::NodeNotFound(*id))?;
        Ok(Node::decode(&bytes)?)
    }

    /// A zero-copy header view of a node.
    pub fn view<'t>(&self, txn: &'t ReadTxn<'_>, id: &NodeId) -> Result<NodeView<'t>> {
        match self.node_bytes(txn, id)?.ok_or(Error::NodeNotFound(*id))? {
            Cow::Borrowed(bytes) => Ok(NodeView::peek(bytes)?),
            Cow::Owned(bytes) => Ok(NodeView::peek(&bytes)?.into_owned()),
        }
    }

    /// The target of a ref, by full name.
    pub fn ref_target(&self, txn: &ReadTxn<'_>, full_name: &str) -> Result<Option<NodeId>> {
        match self.refs.get(txn, full_name)? {
            Some(raw) => NodeId::from_slice(raw).map(Some).ok_or_else(|| {
                Error::InvalidInput(format!("ref {full_name} holds a malformed target"))
            }),
            None => Ok(None),
        }
    }

    /// All refs whose full name starts with `prefix`, sorted by name.
    pub fn refs_with_prefix(
        &self,
        txn: &ReadTxn<'_>,
        prefix: &str,
    ) -> Result<Vec<(String, NodeId)>> {
        let mut out = Vec::new();
        let mut push = |name: &str, raw: &[u8]| -> Result<()> {
            let id = NodeId::from_slice(raw).ok_or_else(|| {
                Error::InvalidInput(format!("ref {name} holds a malformed target"))
            })?;
            out.push((name.to_owned(), id));
            Ok(())
        };
        // LMDB refuses zero-length keys, so "every ref" is a plain iteration.
        if prefix.is_empty() {
            for entry in self.refs.iter(txn)? {
                let (name, raw) = entry?;
                push(name, raw)?;
            }
        } else {
            for entry in self.refs.prefix_iter(txn, prefix)? {
                let (name, raw) = entry?;
                push(name, raw)?;
            }
        }
        Ok(out)
    }

    /// Node ids starting with the given bytes (for abbreviated ids), at most `limit`.
    pub fn ids_with_prefix(
        &self,
        txn: &ReadTxn<'_>,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<NodeId>> {
        let mut out = Vec::new();
        for entry in self.nodes.prefix_iter(txn, prefix)? {
            let (key, _) = entry?;
            if let Some(id) = NodeId::from_slice(key) {
                out.push(id);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Iterates stored log records in order: `(seq, stored bytes)`.
    pub fn log_entries<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
    ) -> Result<impl Iterator<Item = Result<(u64, &'t [u8])>> + 't> {
        Ok(self.log.iter(txn)?.map(|r| r.map_err(Error::from)))
    }

    /// Log records from sequence `from` on, in order.
    pub fn log_entries_from<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, &'t [u8])>> + 't> {
        Ok(self
            .log
            .range(txn, &(from..))?
            .map(|r| r.map_err(Error::from)))
    }

    /// The last log record's sequence number (0 for an empty log).
    pub fn log_tail(&self, txn: &ReadTxn<'_>) -> Result<u64> {
        Ok(self.log.last(txn)?.map(|(seq, _)| seq).unwrap_or(0))
    }

    /// Iterates the log with raw keys (fsck reads even a damaged key).
    pub fn log_entries_raw<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
    ) -> Result<impl Iterator<Item = Result<(&'t [u8], &'t [u8])>> + 't> {
        let raw = self.log.remap_key_type::<Bytes>();
        Ok(raw.iter(txn)?.map(|r| r.map_err(Error::from)))
    }

    /// Iterates the refs with raw keys (fsck reads even a damaged key).
    pub fn ref_entries_raw<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
    ) -> Result<impl Iterator<Item = Result<(&'t [u8], &'t [u8])>> + 't> {
        let raw = self.refs.remap_key_type::<Bytes>();
        Ok(raw.iter(txn)?.map(|r| r.map_err(Error::from)))
    }

    /// Iterates every stored node: `(key bytes, value bytes)`, the value as the node table
    /// keeps it (a pointer for one packed in a segment: [`Store::unpacked`]).
    pub fn node_entries<'t>(
        &self,
        txn: &'t ReadTxn<'_>,
    ) -> Result<impl Iterator<Item = Result<(&'t [u8], &'t [u8])>> + 't> {
        Ok(self.nodes.iter(txn)?.map(|r| r.map_err(Error::from)))
    }

    /// Number of stored nodes (received ones not appended yet included).
    pub fn node_count(&self, txn: &ReadTxn<'_>) -> Result<u64> {
        Ok(self.nodes.len(txn)?)
    }

    /// Number of nodes in the DAG (those with a header).
    pub fn header_count(&self, txn: &ReadTxn<'_>) -> Result<u64> {
        Ok(self.headers.len(txn)?)
    }

    /// Keeps nodes a sync received and verified, `(id, stored representation)`, in the node
    /// table without a header (so not in the DAG yet), in one write transaction: the append
    /// that ends the pull then writes only their headers ([`crate::sync::staging`]).
    pub(crate) fn keep_received(&self, nodes: &[(NodeId, Cow<'_, [u8]>)]) -> Result<()> {
        // In id order (neighbours in the table), each written unless already there.
        let mut order: Vec<&(NodeId, Cow<'_, [u8]>)> = nodes.iter().collect();
        order.sort_unstable_by_key(|(id, _)| *id);
        self.unlogged_write(|txn| {
            for (id, stored) in order {
                match self.nodes.put_with_flags(
                    txn,
                    heed::PutFlags::NO_OVERWRITE,
                    id.as_bytes(),
                    stored,
                ) {
                    Ok(()) | Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => {}
                    Err(other) => return Err(other.into()),
                }
            }
            Ok(())
        })
    }

    /// Writes a refusal to the log in its own transaction: a rejected operation leaves no trace
    /// but this audit record.
    pub fn audit(&self, action: &str, error: &Error) -> Result<()> {
        self.audit_by(action, None, error)
    }

    /// [`Store::audit`], naming who asked (the record's `by`), when known.
    pub fn audit_by(&self, action: &str, by: Option<&str>, error: &Error) -> Result<()> {
        let mut op = self.begin()?;
        op.by = by.map(str::to_owned);
        op.audit(action, error)?;
        op.commit()
    }

    /// Runs `body` as one kernel operation: committed if it succeeds; if it refuses, nothing of
    /// it is kept and an audit record says why.
    pub fn operation<T>(
        &self,
        action: &str,
        body: impl FnOnce(&mut Op<'_>) -> Result<T>,
    ) -> Result<T> {
        self.operation_by(action, None, body)
    }

    /// [`Store::operation`] on behalf of `by`: every record it appends, and the audit record of
    /// its refusal, name `by` ([`Op::acting_as`]).
    pub fn operation_by<T>(
        &self,
        action: &str,
        by: Option<&str>,
        body: impl FnOnce(&mut Op<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut op = self.begin()?;
        op.by = by.map(str::to_owned);
        match body(&mut op) {
            Ok(value) => {
                op.commit()?;
                Ok(value)
            }
            Err(error) => {
                drop(op);
                let error = self.no_space(error);
                if error.is_refusal() {
                    if let Err(audit_error) = self.audit_by(action, by, &error) {
                        tracing::warn!(%audit_error, "could not write audit record");
                    }
                }
                Err(error)
            }
        }
    }
}

/// One kernel operation in progress: a write transaction and the log tail. Dropping it without
/// [`Op::commit`] discards everything it wrote.
pub struct Op<'s> {
    store: &'s Store,
    txn: RwTxn<'s>,
    next_seq: u64,
    prev: Checksum,
    poisoned: bool,
    /// How many times the write transaction was handed out for a write (see [`Op::writes`]).
    writes: u64,
    /// Bytes of stored values this operation deleted (see [`Op::note_freed`]).
    freed: u64,
    /// Who the records this operation appends are for ([`Op::acting_as`]).
    by: Option<String>,
    /// Nodes created since the last record, logged together ([`Op::created`]).
    created: Vec<(NodeId, crate::node::NodeType)>,
}

impl<'s> Op<'s> {
    /// The store this operation writes.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Read access to the operation's own view (sees its uncommitted writes).
    pub fn txn(&self) -> &ReadTxn<'s> {
        &self.txn
    }

    /// The write transaction, for modules that own tables of their own (SWS state). Every
    /// write goes through here, so [`Op::writes`] counts it.
    pub(crate) fn wtxn(&mut self) -> &mut RwTxn<'s> {
        self.writes += 1;
        &mut self.txn
    }

    /// How many writes this operation has attempted so far, those of its committed savepoints
    /// included. A step that fails with this count unchanged left the transaction as it found
    /// it, so the operation can go on without a savepoint around every step
    /// ([`crate::agents::deliver_into`]).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Notes that this operation deleted `bytes` of stored values (superseded staged nodes), so
    /// its commit lets LMDB reuse their pages at once when they add up
    /// ([`Store::let_freed_pages_be_reused`]).
    pub(crate) fn note_freed(&mut self, bytes: u64) {
        self.freed = self.freed.saturating_add(bytes);
    }

    /// Runs `body` with every record it appends naming `by` as its sender (the log record's
    /// `by` field): the plane runs each agent's message this way, so events name the agent.
    pub fn acting_as<T>(&mut self, by: &str, body: impl FnOnce(&mut Op<'s>) -> T) -> T {
        let outer = self.by.replace(by.to_owned());
        let result = body(self);
        self.by = outer;
        result
    }

    /// Notes that node `id` was appended: creations in a row become one log record
    /// ([`LogOp::NodeCreated`] for one, [`LogOp::NodesCreated`] for several), written before
    /// the next record and at the latest when the operation commits.
    pub(crate) fn created(&mut self, id: NodeId, node_type: crate::node::NodeType) -> Result<()> {
        self.created.push((id, node_type));
        if self.created.len() >= log::NODES_PER_RECORD {
            self.log_created()?;
        }
        Ok(())
    }

    /// Writes the record of the creations noted since the last record.
    fn log_created(&mut self) -> Result<()> {
        let op = match std::mem::take(&mut self.created).as_slice() {
            [] => return Ok(()),
            [(id, node_type)] => LogOp::NodeCreated {
                id: *id,
                node_type: node_type.as_str().to_owned(),
            },
            many => LogOp::NodesCreated {
                ids: many.iter().map(|(id, _)| *id).collect(),
            },
        };
        self.append(op).map(drop)
    }

    /// Appends a log record (naming the sender [`Op::acting_as`] set, if any).
    pub fn log(&mut self, op: LogOp) -> Result<u64> {
        self.log_created()?;
        self.append(op)
    }

    fn append(&mut self, op: LogOp) -> Result<u64> {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let record = LogRecord {
            seq: self.next_seq,
            prev: self.prev,
            at_ms,
            by: self.by.clone(),
            op,
        };
        let (checksum, stored) = record.to_stored()?;
        let store = self.store;
        store.log.put(self.wtxn(), &record.seq, &stored)?;
        self.prev = checksum;
        self.next_seq += 1;
        Ok(record.seq)
    }

    /// Appends the audit record of a refusal (see [`Store::audit`]) to this operation: for a
    /// refusal inside an operation that goes on, such as one message of a batch.
    pub fn audit(&mut self, action: &str, error: &Error) -> Result<u64> {
        self.log(LogOp::Audit {
            action: action.to_owned(),
            code: error.code().as_str().to_owned(),
            reason: truncate(error.to_string(), AUDIT_REASON_MAX),
        })
    }

    /// Inserts node bytes and header if absent; returns whether they were new. Callers
    /// validate first. The bytes are stored compressed where that pays ([`repr::for_writing`]).
    pub(crate) fn put_node(
        &mut self,
        id: &NodeId,
        bytes: &[u8],
        header: NodeHeader,
    ) -> Result<bool> {
        self.insert(id, header, || repr::for_writing(bytes))
    }

    /// [`Op::put_node`] with the stored representation already made (bulk writers compress
    /// many nodes in parallel first). `stored` must be a representation of the node's bytes.
    pub(crate) fn put_stored(
        &mut self,
        id: &NodeId,
        stored: &[u8],
        header: NodeHeader,
    ) -> Result<bool> {
        self.insert(id, header, || Ok(Cow::Borrowed(stored)))
    }

    /// Writes the header of a node whose bytes a sync kept ([`crate::sync::staging`]): it
    /// joins the DAG. Returns false, writing nothing, if the node has a header already (one
    /// lookup does both); refused if its bytes are not stored. `at_end`: the id sorts after
    /// every header (written in id order into a table [`Store::headers_end_before`] it), so
    /// it is appended without a search.
    pub(crate) fn put_header_of_kept(
        &mut self,
        id: &NodeId,
        header: NodeHeader,
        at_end: bool,
    ) -> Result<bool> {
        if self.store.nodes.get(&self.txn, id.as_bytes())?.is_none() {
            return Err(Error::NodeNotFound(*id));
        }
        let store = self.store;
        let flags = match at_end {
            true => heed::PutFlags::APPEND,
            false => heed::PutFlags::NO_OVERWRITE,
        };
        match store
            .headers
            .put_with_flags(self.wtxn(), flags, id.as_bytes(), &header.to_bytes())
        {
            Ok(()) => Ok(true),
            Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => Ok(false),
            Err(e) => Err(store.no_space(e.into())),
        }
    }

    /// Inserts a node absent from the DAG: its bytes (made by `stored`, only if they are not
    /// stored already — a sync keeps what it received before the append, so each byte is
    /// written once) and its header. Returns whether it was new.
    fn insert<'b>(
        &mut self,
        id: &NodeId,
        header: NodeHeader,
        stored: impl FnOnce() -> Result<Cow<'b, [u8]>>,
    ) -> Result<bool> {
        if self.store.has_node(&self.txn, id)? {
            return Ok(false);
        }
        let store = self.store;
        if store.nodes.get(&self.txn, id.as_bytes())?.is_none() {
            let stored = stored()?;
            store
                .nodes
                .put(self.wtxn(), id.as_bytes(), &stored)
                .map_err(|e| store.no_space(e.into()))?;
        }
        self.put_header(id, header)?;
        Ok(true)
    }

    fn put_header(&mut self, id: &NodeId, header: NodeHeader) -> Result<()> {
        let store = self.store;
        store
            .headers
            .put(self.wtxn(), id.as_bytes(), &header.to_bytes())
            .map_err(|e| store.no_space(e.into()))?;
        Ok(())
    }

    /// Writes a ref target (callers enforce ref invariants and log the change).
    pub(crate) fn put_ref(&mut self, full_name: &str, target: &NodeId) -> Result<()> {
        let store = self.store;
        store.refs.put(self.wtxn(), full_name, target.as_bytes())?;
        Ok(())
    }

    /// Removes a ref (callers enforce ref invariants and log the change).
    pub(crate) fn delete_ref(&mut self, full_name: &str) -> Result<()> {
        let store = self.store;
        store.refs.delete(self.wtxn(), full_name)?;
        Ok(())
    }

    /// Writes a metadata value.
    pub(crate) fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let store = self.store;
        store.meta.put(self.wtxn(), key, value)?;
        Ok(())
    }

    /// Runs `body` in a nested transaction (an LMDB savepoint): if it succeeds its writes and
    /// log records become part of this operation; if it fails they vanish and this operation
    /// goes on. This is how many independent requests share one durable commit.
    pub fn savepoint<T>(&mut self, body: impl FnOnce(&mut Op<'_>) -> Result<T>) -> Result<T> {
        let nested = self.store.env.nested_write_txn(&mut self.txn)?;
        let mut child = Op {
            store: self.store,
            txn: nested,
            next_seq: self.next_seq,
            prev: self.prev,
            poisoned: false,
            writes: 0,
            freed: 0,
            by: self.by.clone(),
            created: Vec::new(),
        };
        let result = body(&mut child).and_then(|value| {
            child.log_created()?;
            Ok(value)
        });
        match result {
            Ok(value) if !child.poisoned => {
                let (next_seq, prev, writes, freed) =
                    (child.next_seq, child.prev, child.writes, child.freed);
                if let Err(error) = child.txn.commit() {
                    // LMDB may have merged part of the nested transaction before failing, and
                    // then marks this one as failed: it must never be committed.
                    self.poisoned = true;
                    return Err(error.into());
                }
                self.next_seq = next_seq;
                self.prev = prev;
                self.writes += writes;
                self.freed = self.freed.saturating_add(freed);
                Ok(value)
            }
            Ok(_) => Err(Error::InvalidInput(
                "a step of the nested operation was refused".into(),
            )),
            Err(error) => Err(error),
        }
    }

    /// Whether a step failed in a way that forbids committing this operation ([`Op::commit`]
    /// refuses it): a refused append, or a savepoint whose commit failed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the operation as failed if `result` is an error: a refused append may have left
    /// part of its work in the transaction, so it must never be committed.
    pub fn poison_on<T>(&mut self, result: &Result<T>) {
        if result.is_err() {
            self.poisoned = true;
        }
    }

    /// Makes the operation durable (LMDB commit with fsync). Refused if a step was refused. An
    /// operation that freed much is followed by a small commit so its pages can be reused at
    /// once ([`Store::let_freed_pages_be_reused`]); that one failing costs only space.
    pub fn commit(mut self) -> Result<()> {
        if !self.poisoned {
            let logged = self.log_created();
            self.poison_on(&logged);
        }
        if self.poisoned {
            return Err(Error::InvalidInput(
                "refusing to commit an operation in which a step was refused".into(),
            ));
        }
        let (store, freed) = (self.store, self.freed);
        self.txn.commit().map_err(|e| store.no_space(e.into()))?;
        store.observers.committed();
        if freed >= REUSE_AFTER_FREEING {
            if let Err(error) = store.let_freed_pages_be_reused() {
                tracing::warn!(%error, "could not commit so that freed pages are reused");
            }
        }
        Ok(())
    }
}
