//! Repacking cold history into deltas: the first half of `jit gc` (the second is
//! [`Store::compact`]).
//!
//! Nodes arrive compressed one by one ([`crate::store::repr`]); what makes history small is
//! storing each old version of a file or directory as a delta against a newer one. The steps:
//!
//! 1. **Order.** Every snapshot in the store, newest first (by clock, then id, so every replica
//!    walks the same order).
//! 2. **Pair.** Walking each snapshot's tree, a node at a path is paired with the node the
//!    walk last saw at that path — the next newer version, as git's `pack-objects` pairs
//!    objects by path and Mercurial's revlog keeps a file's versions together. Subtrees the
//!    walk already saw at that path are skipped, so the walk costs what the history changed,
//!    not its size. A chunked file's chunks pair by position.
//! 3. **Keep hot content whole.** Nodes of a branch head or a live SWS are never made deltas
//!    of older versions: they are what checkouts, the mount and agents read, and they stay one
//!    decompression away (step 6 adds at most a cached base).
//!    Older versions point at newer ones (reverse deltas, as git does), so chains grow into
//!    the past and a chain never exceeds [`MAX_CHAIN`] steps.
//! 4. **Rewrite in batches.** Each batch's deltas are computed in parallel, each checked by
//!    rebuilding the node from it and hashing the result, and kept only if it saves at least a
//!    quarter of what is stored. A batch is one write transaction that changes only stored
//!    representations, never an id, a header or a ref, so `kill -9` at any point leaves a valid
//!    store and a rerun goes on where it stopped.
//!
//! A base is never a node whose own chain leads back to the node (checked before each
//! rewrite), so chains never loop even across runs that saw different histories. When the
//! newer version's chain is already [`MAX_CHAIN`] long, the delta is taken against that
//! chain's full end instead.
//!
//! 5. **Recompress.** Whole nodes were compressed fast as they arrived; they are recompressed
//!    at [`repr::PACK_LEVEL`] (about a tenth smaller on source, as fast to read) and marked so
//!    a later run leaves them.
//! 6. **Neighbours.** What branch heads hold is made a delta against a neighbour a read can
//!    afford: a directory's files against its largest one of the same extension, a large
//!    file's chunks against the chunk before, in short runs ([`neighbours`]). A snapshot
//!    without history (an imported tree) is all hot and gains only here.
//! 7. **Pack densely.** Nodes and headers are keyed by hash, so they were inserted in random
//!    order and their B-tree pages are left part empty; the last step rewrites both tables in
//!    key order ([`Store::rewrite_dense`]), one transaction, so every page is full.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{Blob, EntryKind, NodeType, Payload};
use crate::source::{Dag, Source};
use crate::store::repr::{self, Stored, MAX_CHAIN};
use crate::store::{ReadTxn, Store};

mod neighbours;

/// Default nodes per rewrite transaction.
pub const BATCH_NODES: usize = 2048;
/// Most canonical bytes (nodes and bases) one batch holds in memory.
const BATCH_BYTES: usize = 64 << 20;

/// Told how a repack goes (the CLI draws a bar).
pub trait RepackProgress: Sync {
    /// The number of candidate nodes, once pairing is done.
    fn candidates(&self, _total: u64) {}
    /// Candidates handled so far.
    fn done(&self, _nodes: u64) {}
}

impl RepackProgress for () {}

/// What a repack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepackReport {
    /// Nodes paired with a newer version (candidates for a delta).
    pub candidates: u64,
    /// Nodes rewritten as deltas.
    pub rewritten: u64,
    /// Stored bytes of the rewritten nodes before.
    pub bytes_before: u64,
    /// Their stored bytes after.
    pub bytes_after: u64,
    /// Whole nodes recompressed harder ([`repr::packed`]).
    pub recompressed: u64,
    /// Their stored bytes before.
    pub recompressed_before: u64,
    /// Their stored bytes after.
    pub recompressed_after: u64,
    /// Nodes of branch heads rewritten as deltas against a neighbour (step 6).
    pub neighbours: u64,
    /// Their stored bytes before.
    pub neighbours_before: u64,
    /// Their stored bytes after.
    pub neighbours_after: u64,
}

/// Repacks the store's cold history into deltas, `batch` nodes per transaction.
pub fn repack(store: &Store, batch: usize, progress: &dyn RepackProgress) -> Result<RepackReport> {
    let candidates = {
        let txn = store.read()?;
        let hot = hot_nodes(store, &txn)?;
        pair_by_path(store, &txn, &hot)?
    };
    progress.candidates(candidates.len() as u64);
    let mut report = RepackReport {
        candidates: candidates.len() as u64,
        ..Default::default()
    };
    // This run's rewrites, so a later batch sees the chains an earlier one made.
    let mut rewritten: HashMap<NodeId, (NodeId, u8)> = HashMap::new();
    let (rewrites, done) = rewrite(
        store,
        &candidates,
        Saving::OldVersion,
        batch,
        (0, progress),
        &mut rewritten,
    )?;
    report.rewritten = rewrites.nodes;
    report.bytes_before = rewrites.before;
    report.bytes_after = rewrites.after;
    let done = recompress(store, batch, done, progress, &mut report)?;
    let pairs = {
        let txn = store.read()?;
        neighbours::pairs(store, &txn)?
    };
    progress.candidates(done + pairs.len() as u64);
    let (rewrites, _) = rewrite(
        store,
        &pairs,
        Saving::Neighbour,
        batch,
        (done, progress),
        &mut rewritten,
    )?;
    report.neighbours = rewrites.nodes;
    report.neighbours_before = rewrites.before;
    report.neighbours_after = rewrites.after;
    store.rewrite_dense()?;
    Ok(report)
}

/// How much a delta must save to be kept.
#[derive(Debug, Clone, Copy)]
enum Saving {
    /// An old version: a quarter of what is stored (reading it walks its chain).
    OldVersion,
    /// Hot content against a neighbour ([`neighbours::MIN_SAVING`]): its read costs only the
    /// cached base.
    Neighbour,
}

impl Saving {
    fn keeps(self, delta: usize, stored: usize) -> bool {
        let fraction = match self {
            Saving::OldVersion => 4,
            Saving::Neighbour => neighbours::MIN_SAVING,
        };
        delta <= stored - stored / fraction
    }
}

/// What [`rewrite`] did.
#[derive(Debug, Default)]
struct Rewrites {
    nodes: u64,
    before: u64,
    after: u64,
}

/// Rewrites `candidates` (`(node, base)`) as deltas where they save enough, in batches of
/// `batch` nodes, each one write transaction; `progress` counts on from its first number.
/// Returns what it did and the progress count.
fn rewrite(
    store: &Store,
    candidates: &[(NodeId, NodeId)],
    saving: Saving,
    batch: usize,
    (mut done, progress): (u64, &dyn RepackProgress),
    rewritten: &mut HashMap<NodeId, (NodeId, u8)>,
) -> Result<(Rewrites, u64)> {
    let mut report = Rewrites::default();
    let mut rest = candidates;
    while !rest.is_empty() {
        let (chosen, taken) = {
            let txn = store.read()?;
            let (loaded, taken) = load_batch(store, &txn, rest, batch.max(1), rewritten)?;
            (encode_batch(loaded, saving)?, taken)
        };
        rest = &rest[taken..];
        if !chosen.is_empty() {
            store.unlogged_write(|txn| {
                for choice in &chosen {
                    store.nodes.put(txn, choice.id.as_bytes(), &choice.stored)?;
                }
                Ok(())
            })?;
        }
        for choice in chosen {
            report.nodes += 1;
            report.before += choice.before as u64;
            report.after += choice.stored.len() as u64;
            rewritten.insert(choice.id, (choice.base, choice.depth));
        }
        done += taken as u64;
        progress.done(done);
    }
    Ok((report, done))
}

/// Step 5: whole nodes still in the fast compression they were written with are recompressed
/// at [`repr::PACK_LEVEL`] (decompression costs the same), in batches like the deltas.
/// Returns the progress count after it.
fn recompress(
    store: &Store,
    batch: usize,
    done: u64,
    progress: &dyn RepackProgress,
    report: &mut RepackReport,
) -> Result<u64> {
    let ids: Vec<NodeId> = {
        let txn = store.read()?;
        let mut ids = Vec::new();
        for entry in store.node_entries(&txn)? {
            let (key, value) = entry?;
            let Some(id) = NodeId::from_slice(key) else {
                continue;
            };
            if repr::is_unpacked_zstd(store.unpacked(&txn, &id, value)?) {
                ids.push(id);
            }
        }
        ids
    };
    progress.candidates(done + ids.len() as u64);
    // Recompressing is cheap per node; batches are larger than the deltas'.
    let per_batch = batch.max(1).saturating_mul(4);
    for (n, chunk) in ids.chunks(per_batch).enumerate() {
        let loaded = {
            let txn = store.read()?;
            let mut loaded = Vec::with_capacity(chunk.len());
            for id in chunk {
                let Some(stored) = store.stored(&txn, id)? else {
                    continue;
                };
                if !repr::is_unpacked_zstd(stored) {
                    continue;
                }
                let bytes = store
                    .node_bytes(&txn, id)?
                    .ok_or(Error::NodeNotFound(*id))?;
                loaded.push((*id, stored.to_vec(), bytes.into_owned()));
            }
            loaded
        };
        let packed = loaded
            .par_iter()
            .map(|(id, stored, bytes)| Ok((*id, stored.len(), repr::packed(stored, bytes)?)))
            .collect::<Result<Vec<_>>>()?;
        store.unlogged_write(|txn| {
            for (id, _, packed) in &packed {
                store.nodes.put(txn, id.as_bytes(), packed)?;
            }
            Ok(())
        })?;
        for (_, before, packed) in &packed {
            report.recompressed += 1;
            report.recompressed_before += *before as u64;
            report.recompressed_after += packed.len() as u64;
        }
        progress.done(done + ((n + 1) * per_batch).min(ids.len()) as u64);
    }
    Ok(done + ids.len() as u64)
}

/// Every node reachable from a branch head's tree or a live SWS's trees.
fn hot_nodes(store: &Store, txn: &ReadTxn<'_>) -> Result<HashSet<NodeId>> {
    let dag = Dag::new(store, txn);
    let mut hot = HashSet::new();
    for (_, target) in store.refs_with_prefix(txn, crate::refname::HEADS)? {
        if store.require_header(txn, &target)?.node_type == NodeType::Snapshot {
            reach(&dag, crate::tree::tree_of(&dag, &target)?, &mut hot)?;
        }
    }
    for (id, state) in crate::sws::list(store, txn)? {
        // The working tree's unchanged parts are DAG nodes; its staged parts are not ours.
        let src = crate::sws::SwsSource::new(store, txn, id);
        reach(&src, crate::tree::tree_of(&src, &state.base)?, &mut hot)?;
        reach(&src, state.tree, &mut hot)?;
    }
    Ok(hot)
}

/// Adds `root` and everything below it to `seen` (trees, blobs, a chunked blob's chunks).
fn reach(src: &dyn Source, root: NodeId, seen: &mut HashSet<NodeId>) -> Result<()> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(header) = src.header(&id)? else {
            continue;
        };
        match header.node_type {
            NodeType::Tree => {
                stack.extend(crate::tree::load(src, &id)?.entries.iter().map(|e| e.id));
            }
            NodeType::Blob => {
                if let Payload::Blob(Blob::Chunked { chunks, .. }) = src.node(&id)?.payload {
                    stack.extend(chunks.iter().map(|c| c.id));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every snapshot, newest first, walked for `(node, newer version at the same path)` pairs.
fn pair_by_path(
    store: &Store,
    txn: &ReadTxn<'_>,
    hot: &HashSet<NodeId>,
) -> Result<Vec<(NodeId, NodeId)>> {
    let mut snapshots = Vec::new();
    for entry in store.header_entries(txn)? {
        let (key, raw) = entry?;
        let (Some(id), Some(header)) = (
            NodeId::from_slice(key),
            crate::store::NodeHeader::from_bytes(raw),
        ) else {
            continue;
        };
        if header.node_type == NodeType::Snapshot {
            snapshots.push((std::cmp::Reverse(header.clock), id));
        }
    }
    snapshots.sort_unstable();
    let dag = Dag::new(store, txn);
    let mut pairing = Pairing {
        src: &dag,
        hot,
        last: HashMap::new(),
        paired: HashSet::new(),
        out: Vec::new(),
    };
    for (_, snapshot) in snapshots {
        let tree = crate::tree::tree_of(&dag, &snapshot)?;
        pairing.visit(Vec::new(), tree, NodeType::Tree)?;
    }
    Ok(pairing.out)
}

struct Pairing<'a> {
    src: &'a dyn Source,
    hot: &'a HashSet<NodeId>,
    /// The node the walk last saw at each path (the next newer version).
    last: HashMap<Vec<u8>, NodeId>,
    /// Nodes already given a base (the newest pairing wins).
    paired: HashSet<NodeId>,
    out: Vec<(NodeId, NodeId)>,
}

impl Pairing<'_> {
    fn visit(&mut self, path: Vec<u8>, id: NodeId, kind: NodeType) -> Result<()> {
        let newer = self.last.insert(path.clone(), id);
        if newer == Some(id) {
            return Ok(());
        }
        if let Some(newer) = newer {
            let same_kind = self.src.header(&newer)?.map(|h| h.node_type) == Some(kind);
            if same_kind {
                self.pair(id, newer);
                if kind == NodeType::Blob {
                    self.pair_chunks(id, newer)?;
                }
            }
        }
        if kind == NodeType::Tree {
            for entry in crate::tree::load(self.src, &id)?.entries {
                let mut child = path.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&entry.name);
                let kind = match entry.kind {
                    EntryKind::Directory => NodeType::Tree,
                    _ => NodeType::Blob,
                };
                self.visit(child, entry.id, kind)?;
            }
        }
        Ok(())
    }

    fn pair(&mut self, id: NodeId, newer: NodeId) {
        if id != newer && !self.hot.contains(&id) && self.paired.insert(id) {
            self.out.push((id, newer));
        }
    }

    /// A chunked file's chunks, paired with the newer version's chunk at the same position.
    fn pair_chunks(&mut self, id: NodeId, newer: NodeId) -> Result<()> {
        let chunks = |id: &NodeId| -> Result<Vec<NodeId>> {
            Ok(match self.src.node(id)?.payload {
                Payload::Blob(Blob::Chunked { chunks, .. }) => {
                    chunks.into_iter().map(|c| c.id).collect()
                }
                _ => Vec::new(),
            })
        };
        let (old, new) = (chunks(&id)?, chunks(&newer)?);
        for (old, new) in old.into_iter().zip(new) {
            self.pair(old, new);
        }
        Ok(())
    }
}

/// A candidate with what its delta needs, read from the store.
struct Loaded {
    id: NodeId,
    base: NodeId,
    base_depth: u8,
    stored_len: usize,
    bytes: Vec<u8>,
    base_bytes: Vec<u8>,
}

/// A rewrite decided.
struct Choice {
    id: NodeId,
    base: NodeId,
    depth: u8,
    before: usize,
    stored: Vec<u8>,
}

/// Reads the next batch of candidates (at most `batch` nodes or [`BATCH_BYTES`]); returns
/// them and how many candidates it took (some are skipped: already deltas, or chains that
/// would loop or grow too long).
fn load_batch(
    store: &Store,
    txn: &ReadTxn<'_>,
    candidates: &[(NodeId, NodeId)],
    batch: usize,
    rewritten: &HashMap<NodeId, (NodeId, u8)>,
) -> Result<(Vec<Loaded>, usize)> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut taken = 0usize;
    // Nodes this batch will make deltas, with their base and depth: a later candidate in the
    // batch whose chain runs through one sees the chain it will have.
    let mut chosen: HashMap<NodeId, (NodeId, u8)> = HashMap::new();
    for &(id, base) in candidates {
        if out.len() >= batch || bytes >= BATCH_BYTES {
            break;
        }
        taken += 1;
        let Some(stored) = store.stored(txn, &id)? else {
            continue;
        };
        let stored_len = stored.len();
        if Stored::parse(&id, stored)?.base().is_some() {
            continue; // already a delta (an earlier run): leave it
        }
        let lookup = |at: &NodeId| -> Result<Option<(NodeId, u8)>> {
            if let Some(found) = chosen.get(at).or_else(|| rewritten.get(at)) {
                return Ok(Some(*found));
            }
            match store.stored(txn, at)? {
                Some(stored) => {
                    let parsed = Stored::parse(at, stored)?;
                    Ok(parsed.base().map(|b| (b, parsed.depth())))
                }
                None => Err(Error::NodeNotFound(*at)),
            }
        };
        // The base's depth, its chain's full end, and that the chain never comes back to
        // this node.
        let mut base_depth = 0u8;
        let mut at = base;
        let mut root = None;
        for step in 0..=MAX_CHAIN {
            if at == id {
                break;
            }
            match lookup(&at)? {
                Some((next, depth)) => {
                    if step == 0 {
                        base_depth = depth;
                    }
                    at = next;
                }
                None => {
                    root = Some(at);
                    break;
                }
            }
        }
        let Some(root) = root else {
            continue; // the chain loops back here (or is damaged): keep the node whole
        };
        // A full chain: take its full end as the base instead (one step, a larger delta), as
        // git's window search prefers a shallower base.
        let (base, base_depth) = match base_depth >= MAX_CHAIN {
            true => (root, 0),
            false => (base, base_depth),
        };
        let (Some(node_bytes), Some(base_bytes)) =
            (store.node_bytes(txn, &id)?, store.node_bytes(txn, &base)?)
        else {
            continue;
        };
        bytes += node_bytes.len() + base_bytes.len();
        chosen.insert(id, (base, base_depth + 1));
        out.push(Loaded {
            id,
            base,
            base_depth,
            stored_len,
            bytes: node_bytes.into_owned(),
            base_bytes: base_bytes.into_owned(),
        });
    }
    Ok((out, taken))
}

/// Computes each candidate's delta on all cores, checks it rebuilds the node, and keeps those
/// that save what `saving` asks.
fn encode_batch(loaded: Vec<Loaded>, saving: Saving) -> Result<Vec<Choice>> {
    let chosen: Vec<Option<Choice>> = loaded
        .into_par_iter()
        .map(|c| -> Result<Option<Choice>> {
            let Some(stored) = repr::delta(
                &c.base,
                c.base_depth,
                &c.base_bytes,
                &c.bytes,
                repr::PACK_LEVEL,
            )?
            else {
                return Ok(None);
            };
            if !saving.keeps(stored.len(), c.stored_len) {
                return Ok(None);
            }
            let Stored::Delta { frame, .. } = Stored::parse(&c.id, &stored)? else {
                return Ok(None);
            };
            let rebuilt = repr::inflate(&c.id, frame, Some(&c.base_bytes))?;
            crate::store::verified(&c.id, &rebuilt)?;
            Ok(Some(Choice {
                id: c.id,
                base: c.base,
                depth: c.base_depth + 1,
                before: c.stored_len,
                stored,
            }))
        })
        .collect::<Result<_>>()?;
    Ok(chosen.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collapse::{self, Outcome};
    use crate::history::CommitInfo;
    use crate::node::DeclaredTime;
    use crate::patch::{Patch, PatchOp};
    use crate::refs::RefName;
    use crate::repo::{InitOptions, Repository};

    fn repo(dir: &std::path::Path) -> Repository {
        let options = InitOptions {
            branch: "main".into(),
            name: "t".into(),
            owner: "t".into(),
            created: 0,
            replica_of: None,
        };
        Repository::init(dir, &options).expect("init")
    }

    fn commit(repo: &Repository, files: &[(String, Vec<u8>)], n: i64) -> NodeId {
        let branch = RefName::branch("main").expect("name");
        let (id, _) = crate::sws::create(repo.store(), &branch, None, "agent", None).expect("sws");
        let ops = files
            .iter()
            .map(|(path, content)| PatchOp::Put {
                path: path.as_str().into(),
                content: content.clone(),
                executable: false,
            })
            .collect();
        let patch = Patch {
            id: format!("p{n}"),
            author: "agent".into(),
            ts: 1,
            ops,
        };
        crate::sws::apply_patch(repo.store(), id, &patch).expect("patch");
        let info = CommitInfo {
            author: "Agent <a@example.org>".into(),
            message: format!("commit {n}"),
            time: DeclaredTime {
                seconds: 1_700_000_000 + n,
                tz_minutes: 0,
            },
        };
        match collapse::commit(repo.store(), id, &info).expect("commit") {
            Outcome::Committed { snapshot, .. } => snapshot,
            other => panic!("expected a clean commit, got {other:?}"),
        }
    }

    /// A history of `versions` commits, each editing one line of a source file and a nested
    /// one; returns the repository.
    fn history(dir: &std::path::Path, versions: i64) -> Repository {
        let repo = repo(dir);
        let mut text: Vec<String> = (0..400)
            .map(|i| format!("line {i} of a source file\n"))
            .collect();
        for n in 0..versions {
            text[(n as usize * 37) % 400] = format!("line edited in version {n}\n");
            let body = text.concat().into_bytes();
            // Content the head reads at one path that old commits had at another path, which
            // later changed: only being hot keeps it from becoming a delta of that change.
            let moved = "content that moves between paths\n".repeat(30).into_bytes();
            let mut files = vec![
                ("src/lib.rs".to_owned(), body.clone()),
                (
                    "src/deep/mod.rs".to_owned(),
                    [&body[..], b"// nested\n"].concat(),
                ),
            ];
            if n < versions / 2 {
                files.push(("old/place.rs".to_owned(), moved.clone()));
            } else if n + 1 < versions {
                files.push((
                    "old/place.rs".to_owned(),
                    [&moved[..], b"// changed\n"].concat(),
                ));
            } else {
                files.push(("src/copy.rs".to_owned(), moved.clone()));
            }
            commit(&repo, &files, n);
        }
        repo
    }

    /// Some node stored as a delta, and its base.
    fn a_delta(store: &Store) -> (NodeId, NodeId) {
        let txn = store.read().expect("txn");
        for entry in store.node_entries(&txn).expect("entries") {
            let (key, stored) = entry.expect("entry");
            let id = NodeId::from_slice(key).expect("id");
            if let Ok(Stored::Delta { base, .. }) = Stored::parse(&id, stored) {
                return (id, base);
            }
        }
        panic!("no delta was made");
    }

    fn tamper(store: &Store, id: &NodeId, change: impl FnOnce(&mut Vec<u8>)) {
        store
            .unlogged_write(|txn| {
                let mut stored = store
                    .nodes
                    .get(txn, id.as_bytes())?
                    .expect("stored")
                    .to_vec();
                change(&mut stored);
                store.nodes.put(txn, id.as_bytes(), &stored)?;
                Ok(())
            })
            .expect("tamper");
    }

    fn read_error(store: &Store, id: &NodeId) -> Error {
        // Bases read before the damage may still be in memory, verified; read from disk.
        store.bases.clear();
        let txn = store.read().expect("txn");
        match store.node_bytes(&txn, id) {
            Ok(bytes) => panic!(
                "a damaged node was served: {:?} bytes",
                bytes.map(|b| b.len())
            ),
            Err(error) => error,
        }
    }

    /// Every node of the DAG and its canonical bytes.
    fn every_node(store: &Store) -> Vec<(NodeId, Vec<u8>)> {
        let txn = store.read().expect("txn");
        let ids: Vec<NodeId> = store
            .header_entries(&txn)
            .expect("headers")
            .map(|e| NodeId::from_slice(e.expect("entry").0).expect("id"))
            .collect();
        ids.into_iter()
            .map(|id| {
                let bytes = store.node_bytes(&txn, &id).expect("read").expect("there");
                (id, bytes.into_owned())
            })
            .collect()
    }

    #[test]
    fn old_versions_become_deltas_hot_ones_stay_whole_and_everything_reads_back() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = history(&dir.path().join("u"), 30);
        let store = repo.store();
        let before = every_node(store);
        // No working set holds anything: only the branch head makes content hot.
        let live = crate::sws::list(store, &store.read().expect("txn")).expect("list");
        for (id, _) in live {
            crate::sws::discard(store, id).expect("discard");
        }
        let report = repack(store, 7, &()).expect("repack");
        assert!(report.rewritten >= 50, "{report:?}");
        assert!(report.bytes_after * 5 < report.bytes_before, "{report:?}");
        let txn = store.read().expect("txn");
        // What the branch head reads: its tree and every file and directory under it, found
        // here by walking it (not by the repack's own notion of hot).
        let dag = Dag::new(store, &txn);
        let head = repo.resolve("main").expect("main");
        let root = crate::tree::tree_of(&dag, &head).expect("tree");
        let mut hot = HashSet::from([root]);
        crate::tree::walk(&dag, &root, b"", true, &mut |_, entry| {
            hot.insert(entry.id);
            Ok(())
        })
        .expect("walk");
        assert!(hot.len() >= 4);
        for (id, bytes) in &before {
            let stored = store.stored(&txn, id).expect("stored").expect("there");
            // Hot content is never a delta of an old version: at most of a hot neighbour.
            if let Some(base) = Stored::parse(id, stored).expect("parse").base() {
                if hot.contains(id) {
                    assert!(hot.contains(&base), "{id} is hot, its base {base} is not");
                }
            }
            let depth = Stored::parse(id, stored).expect("parse").depth();
            assert!(depth <= MAX_CHAIN);
            assert_eq!(
                &*store.node_bytes(&txn, id).expect("read").expect("there"),
                &bytes[..]
            );
        }
        drop(txn);
        // A second run finds nothing more to do and changes nothing.
        let again = repack(store, 7, &()).expect("repack");
        assert_eq!(again.rewritten, 0, "{again:?}");
        assert!(crate::fsck::fsck(store).expect("fsck").is_clean());
    }

    #[test]
    fn a_heads_files_and_chunks_become_deltas_of_neighbours_and_read_back_one_by_one_and_in_batches(
    ) {
        let dir = tempfile::tempdir().expect("dir");
        let repo = repo(&dir.path().join("u"));
        let store = repo.store();
        // A directory of drivers sharing a header and idioms, and a large generated header
        // whose chunks repeat one another.
        let license = "// SPDX-License-Identifier: GPL-2.0\n// Copyright the authors\n\n";
        let mut files: Vec<(String, Vec<u8>)> = (0..12)
            .map(|n| {
                let body: String = (0..40 + n * 7)
                    .map(|l| format!("static int driver{n}_probe_{l}(struct device *dev) {{ return {l}; }}\n"))
                    .collect();
                (format!("drivers/d{n}.c"), format!("{license}{body}").into_bytes())
            })
            .collect();
        // Like a GPU's register header: the same fields in block after block, at other offsets.
        let fields: Vec<String> = (0..300)
            .map(|f| format!("CP_{}_{f}_CNTL", ["RB", "ME", "PFP", "MEC", "HQD"][f % 5]))
            .collect();
        let generated: String = (0..64u64)
            .flat_map(|block| {
                fields.iter().enumerate().map(move |(f, field)| {
                    format!(
                        "#define mmBLOCK{block}_{field}\t0x{:05x}\n",
                        block * 0x1000 + f as u64 * 4
                    )
                })
            })
            .collect();
        files.push(("include/regs.h".into(), generated.into_bytes()));
        commit(&repo, &files, 0);
        for (id, _) in crate::sws::list(store, &store.read().expect("txn")).expect("list") {
            crate::sws::discard(store, id).expect("discard");
        }
        let (ids, before): (Vec<NodeId>, Vec<Vec<u8>>) = every_node(store).into_iter().unzip();
        let report = repack(store, 5, &()).expect("repack");
        assert!(report.neighbours >= 15, "{report:?}");
        assert!(
            report.neighbours_after < report.neighbours_before,
            "{report:?}"
        );
        store.bases.clear();
        let txn = store.read().expect("txn");
        let (mut deltas, mut chunk_deltas, mut deepest) = (0, 0, 0);
        for id in &ids {
            let stored = Stored::parse(id, store.stored(&txn, id).expect("read").expect("there"))
                .expect("parse");
            if let Some(base) = stored.base() {
                deltas += 1;
                let header = store.require_header(&txn, id).expect("header");
                chunk_deltas += usize::from(header.node_type == NodeType::Chunk);
                deepest = deepest.max(stored.depth());
                // The chain really ends within a run: a hub, or a run's first chunk, is whole.
                let (mut at, mut steps) = (base, 1);
                while let Some(next) =
                    Stored::parse(&at, store.stored(&txn, &at).expect("read").expect("there"))
                        .expect("parse")
                        .base()
                {
                    (at, steps) = (next, steps + 1);
                    assert!(
                        steps < neighbours::CHUNK_RUN,
                        "{id} is {steps}+ deltas deep"
                    );
                }
            }
        }
        assert!(
            deltas >= 15 && chunk_deltas >= 4,
            "{deltas} deltas, {chunk_deltas} of chunks"
        );
        assert!(
            deepest < neighbours::CHUNK_RUN as u8,
            "a chain {deepest} deep"
        );
        // One by one, and in batches (the chunks of a file, in layers on all cores).
        for (id, bytes) in ids.iter().zip(&before) {
            assert_eq!(
                &*store.node_bytes(&txn, id).expect("read").expect("there"),
                &bytes[..]
            );
        }
        store.bases.clear();
        let many = store.node_bytes_many(&txn, &ids).expect("read many");
        for ((id, bytes), read) in ids.iter().zip(&before).zip(many) {
            assert_eq!(read.as_deref(), Some(&bytes[..]), "{id} in a batch");
        }
        drop(txn);
        let again = repack(store, 5, &()).expect("repack");
        assert_eq!((again.rewritten, again.neighbours), (0, 0), "{again:?}");
        assert!(crate::fsck::fsck(store).expect("fsck").is_clean());
    }

    #[test]
    fn a_damaged_delta_or_base_is_named_and_never_served() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = history(&dir.path().join("u"), 12);
        let store = repo.store();
        repack(store, 64, &()).expect("repack");
        let (node, base) = a_delta(store);

        // A flipped byte inside the delta's frame.
        let original = store
            .stored(&store.read().expect("txn"), &node)
            .expect("r")
            .expect("s")
            .to_vec();
        tamper(store, &node, |s| {
            let at = s.len() - 3;
            s[at] ^= 0x40;
        });
        let error = read_error(store, &node);
        assert_eq!(error.code().as_str(), "corrupt");
        assert!(error.to_string().contains(&node.to_hex()), "{error}");
        let report = crate::fsck::fsck(store).expect("fsck");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.location.contains(&node.to_hex())),
            "fsck names it: {:?}",
            report.problems
        );
        tamper(store, &node, |s| *s = original.clone());

        // A damaged base: the delta names its base as what cannot be read.
        let base_original = store
            .stored(&store.read().expect("txn"), &base)
            .expect("r")
            .expect("s")
            .to_vec();
        tamper(store, &base, |s| {
            let at = s.len() / 2;
            s[at] ^= 0x01;
        });
        let error = read_error(store, &node);
        assert_eq!(error.code().as_str(), "corrupt");
        let text = error.to_string();
        assert!(
            text.contains(&node.to_hex()) && text.contains(&base.to_hex()),
            "{text}"
        );

        // A missing base.
        store
            .unlogged_write(|txn| {
                store.nodes.delete(txn, base.as_bytes())?;
                Ok(())
            })
            .expect("delete");
        let text = read_error(store, &node).to_string();
        assert!(
            text.contains("not stored") && text.contains(&base.to_hex()),
            "{text}"
        );
        tamper_back(store, &base, &base_original);

        // A forged loop (the base made a delta of the node) ends in an error, not a hang.
        let txn = store.read().expect("txn");
        let node_bytes = store
            .node_bytes(&txn, &node)
            .expect("read")
            .expect("there")
            .into_owned();
        let base_bytes = store
            .node_bytes(&txn, &base)
            .expect("read")
            .expect("there")
            .into_owned();
        drop(txn);
        let looped = repr::delta(&node, 1, &node_bytes, &base_bytes, 3)
            .expect("delta")
            .expect("made");
        tamper(store, &base, |s| *s = looped);
        assert_eq!(read_error(store, &node).code().as_str(), "corrupt");
    }

    fn tamper_back(store: &Store, id: &NodeId, stored: &[u8]) {
        store
            .unlogged_write(|txn| {
                store.nodes.put(txn, id.as_bytes(), stored)?;
                Ok(())
            })
            .expect("restore");
    }
}
