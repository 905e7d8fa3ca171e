//! Write-back: turning a view's local changes into one patch on its SWS. Content of written
//! files is split into nodes, directories that changed are re-encoded as trees, and the
//! difference between the tree the SWS has and the tree the mount shows becomes ordinary patch
//! operations, applied (with the new content nodes staged) in one durable transaction. Hashing
//! and the transaction run without the state lock; edits racing them stay dirty for the next
//! round. Ignored entries ([`crate::ignored`]) are left out of the trees: they stay in the
//! overlay. Once the SWS has a change, the overlay's record of it is dropped (or kept as
//! attributes only), and a written file's data file goes once nothing has it open.

use std::collections::HashMap;
use std::sync::Arc;

use jit_kernel::content::{split_bytes, EncodedNode};
use jit_kernel::node::{EntryKind, Node, Payload, Tree, TreeEntry};
use jit_kernel::patch::Patch;
use jit_kernel::sws::{self, SwsSource};
use jit_kernel::{treepatch, NodeId};

use crate::backing::Backing;
use crate::error::Result;
use crate::ignored::Rules;
use crate::inode::{Ino, Kind, ViewId};
use crate::reconcile::{self, Inval};
use crate::source::Layered;
use crate::state::State;
use crate::views;
use crate::Shared;

/// Writes back view `view` if it has local changes; returns cache entries to invalidate (when
/// changes from elsewhere landed meanwhile).
///
/// Write-backs of one view run one at a time: the write-back thread, `fsync`, a settle (RPC,
/// plane) and the unmount may all ask at once, and each waits for the one before to end
/// before it takes its snapshot. Patches replace whole files, so two in flight at once could
/// commit out of order and put a file's older content back over the newer one. The caller
/// must not hold the state lock (the flush lock comes first).
pub fn flush_view(shared: &Shared, view: ViewId) -> Result<Vec<Inval>> {
    let lock = shared.flush_lock(view);
    let _one_at_a_time = match lock.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            announce_queued_for_tests(shared.repo.jit_dir());
            lock.lock().unwrap_or_else(|p| p.into_inner())
        }
    };
    let mut invals = Vec::new();
    for attempt in 0..2 {
        match flush_once(shared, view, &mut invals) {
            Ok(()) => return Ok(invals),
            Err(error) if attempt == 0 => {
                // Most likely the SWS moved under us (an agent's patch): take its changes in
                // and try once more on top of them.
                tracing::debug!(%error, "write-back refused; reconciling and retrying");
                refresh_view(shared, view, &mut invals)?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(invals)
}

/// Re-reads what view `view` should show and applies it.
pub fn refresh_view(shared: &Shared, view: ViewId, invals: &mut Vec<Inval>) -> Result<()> {
    let repo = &shared.repo;
    let mut state = shared.lock();
    let txn = repo.store().read()?;
    let target = views::resolve(repo, &txn, &state.views[view].kind)?;
    drop(txn);
    match target {
        Some(target) => reconcile::reconcile(&mut state, repo, view, &target, invals),
        None => Ok(()),
    }
}

struct Hashed {
    ino: Ino,
    generation: u64,
    blob: NodeId,
    size: u64,
}

fn flush_once(shared: &Shared, view: ViewId, invals: &mut Vec<Inval>) -> Result<()> {
    let repo = &shared.repo;
    // 1. Which backing files need hashing.
    let pending: Vec<(Ino, u64, Arc<Backing>)> = {
        let mut state = shared.lock();
        if !state.views[view].dirty || !state.views[view].live {
            return Ok(());
        }
        state.ensure_sws(repo, &shared.owner, view)?;
        let root = state.views[view].root;
        let mut out = Vec::new();
        let mut rules = Rules::new(&state, repo, root);
        collect_backed(&state, &mut rules, root, &mut out);
        out
    };
    // 2. Hash them without the lock.
    let mut staged: Vec<EncodedNode> = Vec::new();
    let mut hashed = Vec::new();
    for (ino, generation, backing) in pending {
        let (blob, size, nodes) = backing.hash()?;
        staged.extend(nodes);
        hashed.push(Hashed {
            ino,
            generation,
            blob,
            size,
        });
    }
    // 3. Record the hashes and build the trees the mount shows.
    let (sws, known, new_root, extra, outcome) = {
        let mut state = shared.lock();
        for h in &hashed {
            if let Some(node) = state.nodes.get_mut(&h.ino) {
                if let Kind::File(body) = &mut node.kind {
                    if node.generation == h.generation {
                        body.blob = Some(h.blob);
                        body.layout = None;
                    }
                }
            }
        }
        let Some(sws) = state.views[view].sws else {
            return Ok(());
        };
        let root = state.views[view].root;
        let mut build = Build {
            state: &state,
            rules: Rules::new(&state, repo, root),
            extra: HashMap::new(),
            staged: &mut staged,
            dirs: Vec::new(),
            included: Vec::new(),
            ignored: Vec::new(),
        };
        let new_root = build.dir(root)?;
        let outcome = Outcome {
            dirs: build.dirs,
            included: build.included,
            ignored: build.ignored,
        };
        let extra = build.extra;
        state.views[view].writing_back = true;
        (sws, state.views[view].known, new_root, extra, outcome)
    };
    // 4. Diff against the SWS and apply, without the lock.
    pause_for_tests(repo.jit_dir());
    let applied = apply_difference(shared, sws, &known, &new_root, &staged, &extra);
    // 5. What was written back is clean unless it changed meanwhile.
    let mut state = shared.lock();
    state.views[view].writing_back = false;
    applied?;
    mark_clean(&mut state, &hashed, &outcome)?;
    let root = state.views[view].root;
    state.views[view].known = new_root;
    state.views[view].dirty = state.nodes.get(&root).is_some_and(|n| n.dirty);
    state.settle_records(view)?;
    // Whatever landed from elsewhere since the snapshot (refreshes skipped this view
    // meanwhile): show it too.
    let txn = repo.store().read()?;
    let target = views::resolve(repo, &txn, &state.views[view].kind)?;
    drop(txn);
    if let Some(target) = target.filter(|t| t.tree != new_root) {
        reconcile::reconcile(&mut state, repo, view, &target, invals)?;
    }
    Ok(())
}

/// Whether the `JIT_TEST_WRITEBACK_HOLD` test hook is on (see [`pause_for_tests`]).
fn hold_for_tests() -> bool {
    static HOLD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOLD.get_or_init(|| std::env::var_os("JIT_TEST_WRITEBACK_HOLD").is_some())
}

/// With the hold hook on, a write-back that must wait for another of its view announces it
/// (`.jit/writeback-queued`), so a test knows it is queued without sleeping.
fn announce_queued_for_tests(jit_dir: &std::path::Path) {
    if hold_for_tests() {
        let _ = std::fs::write(jit_dir.join("writeback-queued"), b"");
    }
}

/// Test hooks between a write-back's snapshot and its apply, so that a test can race edits
/// and other write-backs against a write-back in flight (the window is otherwise a few
/// milliseconds wide). Unset, they cost one lookup each.
///
/// - `JIT_TEST_WRITEBACK_PAUSE_MS` holds every write-back this long. The pause announces
///   itself by creating `.jit/writeback-paused` (removed when it ends), so the test acts once
///   the snapshot is taken instead of guessing with a sleep.
/// - `JIT_TEST_WRITEBACK_HOLD` (any value) holds one write-back chosen by the test: the first
///   to find `.jit/writeback-hold` claims it by renaming it to `.jit/writeback-held`, and waits
///   until the test removes that (at most a minute); the others go on. A write-back that must
///   wait for a held one announces it with `.jit/writeback-queued`.
fn pause_for_tests(jit_dir: &std::path::Path) {
    use std::time::{Duration, Instant};
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("JIT_TEST_WRITEBACK_PAUSE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(pause) = pause {
        let marker = jit_dir.join("writeback-paused");
        let _ = std::fs::write(&marker, b"");
        std::thread::sleep(*pause);
        let _ = std::fs::remove_file(&marker);
    }
    if hold_for_tests() {
        let held = jit_dir.join("writeback-held");
        if std::fs::rename(jit_dir.join("writeback-hold"), &held).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while held.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Turns the difference between the tree the SWS had (`known`) and the one the mount shows
/// (`new_root`) into a patch and applies it with the new content nodes; does nothing when they
/// are the same.
fn apply_difference(
    shared: &Shared,
    sws: jit_kernel::sws::SwsId,
    known: &NodeId,
    new_root: &NodeId,
    staged: &[EncodedNode],
    extra: &HashMap<NodeId, Vec<u8>>,
) -> Result<()> {
    if new_root == known {
        return Ok(());
    }
    let repo = &shared.repo;
    let ops = {
        let txn = repo.store().read()?;
        let sws_src = SwsSource::new(repo.store(), &txn, sws);
        let staged_map: HashMap<NodeId, Vec<u8>> = staged
            .iter()
            .map(|n| (n.id, n.bytes.clone()))
            .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
            .collect();
        let src = Layered {
            extra: &staged_map,
            bases: vec![&sws_src],
        };
        treepatch::between(&src, known, new_root)?
    };
    if ops.is_empty() {
        return Ok(());
    }
    let patch = Patch {
        id: patch_id(known, new_root),
        author: shared.owner.clone(),
        ts: 0,
        ops,
    };
    crate::guard::as_mount(|| sws::apply_patch_with_nodes(repo.store(), sws, &patch, staged))?;
    Ok(())
}

/// What building the trees found besides them.
struct Outcome {
    /// Directories re-encoded: inode, generation, tree.
    dirs: Vec<(Ino, u64, NodeId)>,
    /// Entries that went into the trees, with their generations.
    included: Vec<(Ino, u64)>,
    /// Ignored entries and everything below them: inode, generation, whether it is the
    /// ignored entry itself (not something below it).
    ignored: Vec<(Ino, u64, bool)>,
}

/// Marks what the write-back stored (or found ignored) clean, unless it changed meanwhile;
/// a stored file's record stops naming its data file, which goes once no handle needs it.
fn mark_clean(state: &mut State, hashed: &[Hashed], outcome: &Outcome) -> Result<()> {
    for &(ino, generation) in &outcome.included {
        if let Some(node) = state.nodes.get_mut(&ino) {
            if node.generation != generation {
                // Changed since the snapshot — perhaps moved: the SWS may have it elsewhere.
                continue;
            }
            node.tracked = true;
            node.ignored = false;
            // Symlinks and special files have nothing to hash: stored as they are.
            if matches!(node.kind, Kind::Symlink { .. } | Kind::Special { .. }) {
                node.dirty = false;
            }
        }
    }
    for &(ino, generation, top) in &outcome.ignored {
        if let Some(node) = state.nodes.get_mut(&ino) {
            if node.generation == generation {
                node.dirty = false;
                node.ignored |= top;
            }
        }
        if top {
            state.persist(ino)?;
        }
    }
    let ignored: std::collections::HashSet<Ino> =
        outcome.ignored.iter().map(|(ino, _, _)| *ino).collect();
    for h in hashed {
        if ignored.contains(&h.ino) {
            continue;
        }
        let stored = match state.nodes.get_mut(&h.ino) {
            Some(node) if node.generation == h.generation => match &mut node.kind {
                Kind::File(body) if body.writers == 0 => {
                    node.dirty = false;
                    body.size = h.size;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if stored {
            // A closed file's data file goes once the record stops naming it (the record is
            // written first; the file is removed when the last handle drops, below).
            let released = match state.nodes.get_mut(&h.ino) {
                Some(node) if node.opens == 0 => match &mut node.kind {
                    Kind::File(body) => body.backing.take(),
                    _ => None,
                },
                _ => None,
            };
            state.persist(h.ino)?;
            if let Some(backing) = released {
                backing.dispose();
            }
        }
    }
    for &(ino, generation, tree) in &outcome.dirs {
        if let Some(node) = state.nodes.get(&ino) {
            if node.generation == generation && !has_dirty_child(state, ino) {
                if let Some(node) = state.nodes.get_mut(&ino) {
                    node.dirty = false;
                    if let Kind::Dir { tree: slot, .. } = &mut node.kind {
                        *slot = Some(tree);
                    }
                }
            }
        }
    }
    Ok(())
}

fn has_dirty_child(state: &State, dir: Ino) -> bool {
    match state.nodes.get(&dir).map(|n| &n.kind) {
        Some(Kind::Dir {
            children: Some(children),
            ..
        }) => children
            .values()
            .any(|c| state.nodes.get(c).is_some_and(|n| n.dirty)),
        _ => false,
    }
}

/// A patch id unique to this write-back (the SWS answers a repeated id as a duplicate).
fn patch_id(known: &NodeId, new_root: &NodeId) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "mount-{}-{}-{nanos}-{n}",
        &known.to_hex()[..12],
        &new_root.to_hex()[..12]
    )
}

/// The dirty files below `dir` that have backing files to hash (ignored ones are never
/// stored, so never hashed). Below an entry that was ignored and no longer is (renamed out of
/// `build/`, or its pattern removed) every file is hashed, dirty or not: none was stored yet.
fn collect_backed(
    state: &State,
    rules: &mut Rules<'_>,
    dir: Ino,
    out: &mut Vec<(Ino, u64, Arc<Backing>)>,
) {
    collect_below(state, rules, dir, false, out);
}

fn collect_below(
    state: &State,
    rules: &mut Rules<'_>,
    ino: Ino,
    rescued: bool,
    out: &mut Vec<(Ino, u64, Arc<Backing>)>,
) {
    let Some(node) = state.nodes.get(&ino) else {
        return;
    };
    let rescued = rescued || node.ignored;
    if !node.dirty && !rescued {
        return;
    }
    match &node.kind {
        Kind::Dir {
            children: Some(children),
            ..
        } => {
            for (name, child) in children {
                let Some(c) = state.nodes.get(child) else {
                    continue;
                };
                if (c.dirty || c.ignored || rescued)
                    && !c.tracked
                    && rules.ignored(ino, name, c.is_dir())
                {
                    continue;
                }
                collect_below(state, rules, *child, rescued, out);
            }
        }
        Kind::File(body) => {
            if let Some(backing) = &body.backing {
                out.push((ino, node.generation, backing.clone()));
            }
        }
        _ => {}
    }
}

struct Build<'a> {
    state: &'a State,
    rules: Rules<'a>,
    extra: HashMap<NodeId, Vec<u8>>,
    staged: &'a mut Vec<EncodedNode>,
    dirs: Vec<(Ino, u64, NodeId)>,
    included: Vec<(Ino, u64)>,
    ignored: Vec<(Ino, u64, bool)>,
}

impl Build<'_> {
    /// Lists `ino` and everything loaded below it as ignored.
    fn ignore(&mut self, ino: Ino, top: bool) {
        let Some(node) = self.state.nodes.get(&ino) else {
            return;
        };
        self.ignored.push((ino, node.generation, top));
        if let Kind::Dir {
            children: Some(children),
            ..
        } = &node.kind
        {
            for child in children.values() {
                self.ignore(*child, false);
            }
        }
    }

    fn content(&mut self, data: &[u8]) -> Result<NodeId> {
        let (id, nodes) = split_bytes(data)?;
        self.staged.extend(nodes);
        Ok(id)
    }

    fn dir(&mut self, ino: Ino) -> Result<NodeId> {
        let node = self.state.get(ino)?;
        let children = match &node.kind {
            Kind::Dir {
                tree: Some(tree), ..
            } if !node.dirty => return Ok(*tree),
            Kind::Dir {
                children: Some(children),
                ..
            } => children.clone(),
            Kind::Dir {
                tree: Some(tree), ..
            } => return Ok(*tree),
            // A directory recorded as new and never loaded has no entries yet.
            Kind::Dir { .. } => Default::default(),
            _ => return Err(crate::error::Error::Errno(fuser::Errno::ENOTDIR)),
        };
        let mut entries = Vec::with_capacity(children.len());
        for (name, child) in children {
            let Some(c) = self.state.nodes.get(&child) else {
                continue;
            };
            if !c.tracked && self.rules.ignored(ino, &name, c.is_dir()) {
                self.ignore(child, true);
                continue;
            }
            self.included.push((child, c.generation));
            let entry = match &c.kind {
                Kind::Dir { .. } => Some((EntryKind::Directory, self.dir(child)?)),
                Kind::File(body) => {
                    // A file created and not yet hashed is empty so far.
                    let blob = match body.blob {
                        Some(blob) => blob,
                        None => self.content(b"")?,
                    };
                    let kind = if c.attr.perm & 0o100 != 0 {
                        EntryKind::Executable
                    } else {
                        EntryKind::File
                    };
                    Some((kind, blob))
                }
                Kind::Symlink { target } => {
                    let target = target.clone();
                    Some((EntryKind::Symlink, self.content(&target)?))
                }
                Kind::Special { .. } | Kind::Synthetic(_) => None,
            };
            if let Some((kind, id)) = entry {
                entries.push(TreeEntry { name, kind, id });
            }
        }
        let tree = EncodedNode::new(Node::content(Payload::Tree(Tree { entries })))?;
        self.extra.insert(tree.id, tree.bytes);
        self.dirs.push((ino, node.generation, tree.id));
        Ok(tree.id)
    }
}
