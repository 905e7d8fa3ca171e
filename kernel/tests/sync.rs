//! Sync between replicas (SPEC §5), with real stores on both sides: the puller talks to the
//! peer's serving code through canonical CBOR bytes, as over the wire. Covers delta transfer,
//! the ref rules (fast-forward, deterministic merge, conflicts kept aside, tags never move),
//! verification of what arrives (nothing appended from a lying peer), resumption of an
//! interrupted transfer, and refusal of another universe; and history a peer may offer that
//! must never get in (issue #17 items 4 and 5): a clock far ahead of its parent's (it would
//! wedge the branch) and a tree naming `.git`, `.jit` or `.jit-checkout`.

use std::collections::{BTreeMap, HashMap};

use ciborium::value::Value;
use jit_kernel::cbor;
use jit_kernel::collapse::{self, Outcome};
use jit_kernel::command::{self, Caller, Operation};
use jit_kernel::content;
use jit_kernel::error::{Error, Violation};
use jit_kernel::fsck::fsck;
use jit_kernel::history::{self, CommitInfo};
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::node::{EntryKind, Node, Payload, Tree, TreeEntry, MAX_CLOCK};
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::refs::RefName;
use jit_kernel::repo::InitOptions;
use jit_kernel::rpc::protocol::Response;
use jit_kernel::source::Dag;
use jit_kernel::sws;
use jit_kernel::sync::wire::{self, FetchReply, FetchedNode, Frontier, NegotiateReply};
use jit_kernel::sync::{self, RefAction, Remote};
use jit_kernel::tree;
use jit_kernel::{DeclaredTime, NodeId, Repository};

fn init(dir: &std::path::Path, replica_of: Option<&Repository>) -> Repository {
    Repository::init(
        dir,
        &InitOptions {
            branch: "main".into(),
            name: "t".into(),
            owner: "t".into(),
            created: 0,
            replica_of: replica_of.map(|r| r.universe().unwrap()),
        },
    )
    .unwrap()
}

/// An origin and a replica of it.
fn pair() -> (tempfile::TempDir, Repository, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let a = init(&dir.path().join("a"), None);
    let b = init(&dir.path().join("b"), Some(&a));
    (dir, a, b)
}

/// Changes (or refuses) a reply to `op` on its way back.
type Tamper<'r> = Box<dyn FnMut(Operation, &mut Value) -> Result<(), Error> + 'r>;

/// Changes a reply's bytes on their way (truncates, replaces, inflates them).
type TamperBytes<'r> = Box<dyn FnMut(Operation, &mut Vec<u8>) + 'r>;

/// The peer `repo`, reached through encoded bytes. `tamper` may change a reply on its way, and
/// `tamper_bytes` its encoded bytes, which are read as the plane reads them
/// ([`sync::wire::decode_reply`]).
struct Peer<'r> {
    name: String,
    repo: &'r Repository,
    tamper: Tamper<'r>,
    tamper_bytes: TamperBytes<'r>,
}

impl<'r> Peer<'r> {
    fn new(repo: &'r Repository) -> Self {
        Peer {
            name: "origin".into(),
            repo,
            tamper: Box::new(|_, _| Ok(())),
            tamper_bytes: Box::new(|_, _| {}),
        }
    }
}

impl Remote for Peer<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>, Error> {
        let mut answers = Vec::new();
        for (op, payload) in requests {
            let request = cbor::decode(&cbor::encode(&payload)?)?;
            let response = match command::run(self.repo, &Caller::Replica, op, request) {
                Ok(value) => Response::Ok(value),
                Err(e) => jit_kernel::rpc::protocol::error_response(&e),
            };
            let mut bytes = response.encode()?;
            (self.tamper_bytes)(op, &mut bytes);
            match sync::wire::decode_reply(&self.name, &bytes)? {
                Response::Ok(mut value) => {
                    (self.tamper)(op, &mut value)?;
                    answers.push(value)
                }
                Response::Err(e) => return Err(Error::InvalidInput(e.message)),
            }
        }
        Ok(answers)
    }
}

fn info(message: &str, seconds: i64) -> CommitInfo {
    CommitInfo {
        author: "Agent <a@example.org>".into(),
        message: message.into(),
        time: DeclaredTime {
            seconds,
            tz_minutes: 0,
        },
    }
}

/// Commits files to `branch` through an SWS and returns the new tip.
fn commit(repo: &Repository, branch: &str, files: &[(&str, &str)], message: &str) -> NodeId {
    let branch = RefName::branch(branch).unwrap();
    let (id, _) = sws::create(repo.store(), &branch, None, "agent", None).unwrap();
    let ops = files
        .iter()
        .map(|(p, c)| PatchOp::Put {
            path: (*p).into(),
            content: c.as_bytes().to_vec(),
            executable: false,
        })
        .collect();
    let patch = Patch {
        id: message.into(),
        author: "agent".into(),
        ts: 1,
        ops,
    };
    sws::apply_patch(repo.store(), id, &patch).unwrap();
    match collapse::commit(repo.store(), id, &info(message, 1_700_000_000)).unwrap() {
        Outcome::Committed { snapshot, .. } => snapshot,
        other => panic!("expected a clean commit, got {other:?}"),
    }
}

fn tip(repo: &Repository, full: &str) -> Option<NodeId> {
    let txn = repo.store().read().unwrap();
    repo.store().ref_target(&txn, full).unwrap()
}

fn refs(repo: &Repository) -> Vec<(String, NodeId)> {
    let txn = repo.store().read().unwrap();
    repo.store().refs_with_prefix(&txn, "").unwrap()
}

/// Nodes in the DAG (a failed pull may keep verified nodes it received, without headers, for
/// the next attempt; those are not appended).
fn node_count(repo: &Repository) -> u64 {
    let txn = repo.store().read().unwrap();
    repo.store().header_count(&txn).unwrap()
}

fn files(repo: &Repository, rev: &NodeId) -> BTreeMap<String, String> {
    let txn = repo.store().read().unwrap();
    let dag = Dag::new(repo.store(), &txn);
    let root = tree::tree_of(&dag, rev).unwrap();
    let mut out = BTreeMap::new();
    tree::walk(&dag, &root, b"", true, &mut |path, entry| {
        if entry.kind != EntryKind::Directory {
            let data = content::read_blob(&dag, &entry.id)?;
            out.insert(
                String::from_utf8_lossy(path).into_owned(),
                String::from_utf8_lossy(&data).into_owned(),
            );
        }
        Ok(())
    })
    .unwrap();
    out
}

fn assert_clean(repo: &Repository) {
    let report = fsck(repo.store()).unwrap();
    assert!(report.problems.is_empty(), "fsck: {:?}", report.problems);
}

fn action(report: &sync::PullReport, name: &str) -> RefAction {
    report
        .refs
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no change reported for {name}: {:?}", report.refs))
        .action
}

fn pull(into: &Repository, from: &Repository) -> sync::PullReport {
    sync::pull(into, &mut Peer::new(from), &sync::Quiet).unwrap()
}

#[test]
fn a_replica_receives_history_tags_and_then_only_what_changed() {
    let (_dir, a, b) = pair();
    let big: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/m{}/f{i}.txt", i % 10), format!("file {i}\n")))
        .collect();
    let big_refs: Vec<(&str, &str)> = big.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    commit(&a, "main", &big_refs, "import");
    let second = commit(&a, "main", &[("README", "hello\n")], "readme");
    a.create_tag("v1", second).unwrap();
    a.create_branch("dev", second).unwrap();
    commit(&a, "dev", &[("dev.txt", "dev\n")], "dev work");

    let first = pull(&b, &a);
    assert_eq!(refs(&b), refs(&a), "every branch and tag arrives");
    assert_eq!(node_count(&b), node_count(&a));
    assert_eq!(action(&first, "heads/main"), RefAction::FastForwarded);
    assert_eq!(action(&first, "tags/v1"), RefAction::Created);
    assert_eq!(action(&first, "heads/dev"), RefAction::Created);
    assert!(first.fetched_nodes > 200);
    assert_clean(&b);

    let again = pull(&b, &a);
    assert_eq!(
        (again.fetched_nodes, again.new_nodes),
        (0, 0),
        "nothing new, nothing sent"
    );
    assert_eq!(action(&again, "heads/main"), RefAction::UpToDate);

    // One changed file deep in the tree: its blob, the trees on its path, the snapshot.
    let third = commit(&a, "main", &[("src/m3/f3.txt", "changed\n")], "edit");
    let delta = pull(&b, &a);
    assert_eq!(tip(&b, "heads/main"), Some(third));
    assert_eq!(delta.history, 1, "only the new snapshot's history is named");
    assert_eq!(
        delta.fetched_nodes, 5,
        "snapshot, root tree, src/, src/m3/, blob"
    );
    assert_eq!(files(&b, &third), files(&a, &third));
    assert_clean(&b);
}

#[test]
fn divergent_replicas_merge_to_the_same_snapshot_on_both_sides() {
    let (dir, a, b) = pair();
    commit(&a, "main", &[("shared.txt", "one\ntwo\nthree\n")], "base");
    pull(&b, &a);
    let ours = commit(&a, "main", &[("a.txt", "from a\n")], "a's work");
    let theirs = commit(&b, "main", &[("b.txt", "from b\n")], "b's work");
    // A third replica holds b's work as it was before any merge.
    let c = init(&dir.path().join("c"), Some(&a));
    pull(&c, &b);

    // a and b each merge the divergence on their own, without seeing the other's merge.
    let at_b = pull(&b, &a);
    let at_a = pull(&a, &c);
    assert_eq!(action(&at_b, "heads/main"), RefAction::Merged);
    assert_eq!(action(&at_a, "heads/main"), RefAction::Merged);
    let merged = tip(&a, "heads/main").unwrap();
    assert_eq!(
        tip(&b, "heads/main"),
        Some(merged),
        "both replicas made the same merge"
    );
    let content = files(&a, &merged);
    assert_eq!(content.get("a.txt").map(String::as_str), Some("from a\n"));
    assert_eq!(content.get("b.txt").map(String::as_str), Some("from b\n"));
    {
        let txn = a.store().read().unwrap();
        for side in [ours, theirs] {
            assert!(jit_kernel::dag::is_ancestor(a.store(), &txn, &side, &merged).unwrap());
        }
    }
    // Converged: another round moves nothing.
    assert_eq!(action(&pull(&b, &a), "heads/main"), RefAction::UpToDate);
    assert_clean(&a);
    assert_clean(&b);
}

#[test]
fn conflicting_divergence_and_tags_are_kept_under_the_peer_name_never_overwritten() {
    let (_dir, a, b) = pair();
    let base = commit(&a, "main", &[("f.txt", "base\n")], "base");
    pull(&b, &a);
    let ours = commit(&b, "main", &[("f.txt", "b's line\n")], "b edits f");
    let theirs = commit(&a, "main", &[("f.txt", "a's line\n")], "a edits f");
    a.create_tag("release", theirs).unwrap();
    b.create_tag("release", base).unwrap();

    let report = pull(&b, &a);
    let main = report.refs.iter().find(|c| c.name == "heads/main").unwrap();
    assert_eq!(main.action, RefAction::Diverged);
    assert_eq!(main.conflicts, vec!["f.txt".to_owned()]);
    assert_eq!(tip(&b, "heads/main"), Some(ours), "the branch did not move");
    assert_eq!(tip(&b, "remotes/origin/heads/main"), Some(theirs));
    assert_eq!(action(&report, "tags/release"), RefAction::TagConflict);
    assert_eq!(tip(&b, "tags/release"), Some(base), "tags never move");
    assert_eq!(tip(&b, "remotes/origin/tags/release"), Some(theirs));
    assert_clean(&b);

    // Once the branch takes the peer's work, the kept ref goes away.
    b.store()
        .operation("test", |op| {
            jit_kernel::refs::delete(op, &RefName::branch("main").unwrap(), false)?;
            jit_kernel::refs::create(op, &RefName::branch("main").unwrap(), &base)
        })
        .unwrap();
    let report = pull(&b, &a);
    assert_eq!(action(&report, "heads/main"), RefAction::FastForwarded);
    assert_eq!(tip(&b, "remotes/origin/heads/main"), None);
    assert_clean(&b);
}

#[test]
fn a_node_corrupted_in_transit_is_refused_and_nothing_is_appended() {
    let (_dir, a, b) = pair();
    commit(
        &a,
        "main",
        &[("x.txt", "payload\n"), ("y/z.txt", "more\n")],
        "c1",
    );
    let (refs_before, nodes_before) = (refs(&b), node_count(&b));
    let mut peer = Peer::new(&a);
    peer.tamper = Box::new(|op, value| {
        if op == Operation::SyncFetch {
            flip_a_byte(value);
        }
        Ok(())
    });
    let error = sync::pull(&b, &mut peer, &sync::Quiet).unwrap_err();
    assert!(
        matches!(error, Error::Invariant(Violation::HashMismatch { .. })),
        "{error}"
    );
    assert_eq!(refs(&b), refs_before);
    assert_eq!(node_count(&b), nodes_before);
    let txn = b.store().read().unwrap();
    let audited = b
        .store()
        .log_entries(&txn)
        .unwrap()
        .map(|entry| {
            let (seq, stored) = entry.unwrap();
            verify_record(seq, stored).unwrap().0.op
        })
        .any(|op| matches!(op, LogOp::Audit { action, .. } if action == "sync.pull"));
    assert!(audited, "the refusal is audited");
    drop(txn);
    assert_clean(&b);
    // An honest peer afterwards: everything arrives.
    pull(&b, &a);
    assert_eq!(refs(&b), refs(&a));
}

/// A server sends compressed frames as it stores them, without rebuilding them first: a frame
/// damaged in its store (here one that still decompresses, to other bytes) reaches the asker,
/// which rebuilds and hashes it, refuses the pull naming that node, and appends nothing.
#[test]
fn a_frame_damaged_in_the_servers_store_is_refused_by_the_asker_naming_the_node() {
    let (_dir, a, b) = pair();
    let content = "a line long enough to be stored compressed\n".repeat(40);
    commit(&a, "main", &[("big.txt", content.as_str())], "c1");
    let (refs_before, nodes_before) = (refs(&b), node_count(&b));
    let damaged = std::rc::Rc::new(std::cell::RefCell::new(None));
    let mut peer = Peer::new(&a);
    let seen = damaged.clone();
    peer.tamper = Box::new(move |op, value| {
        if op == Operation::SyncFetch && seen.borrow().is_none() {
            *seen.borrow_mut() = replace_first_frame(value);
        }
        Ok(())
    });
    let error = sync::pull(&b, &mut peer, &sync::Quiet).unwrap_err();
    let damaged = damaged
        .borrow()
        .expect("the reply carried a compressed frame");
    assert!(
        matches!(error, Error::Invariant(Violation::HashMismatch { claimed, .. }) if claimed == damaged),
        "{error}"
    );
    assert_eq!(refs(&b), refs_before);
    assert_eq!(node_count(&b), nodes_before);
    assert_clean(&b);
}

/// Replaces the first zstd frame in a fetch reply (tag `0x01` or `0x03`) with a well-formed
/// frame of other bytes; returns that node's id.
fn replace_first_frame(reply: &mut Value) -> Option<NodeId> {
    let Value::Map(fields) = reply else {
        return None;
    };
    let nodes = fields.iter_mut().find_map(|(key, value)| match value {
        Value::Array(nodes) if key.as_text() == Some("nodes") => Some(nodes),
        _ => None,
    })?;
    for node in nodes {
        let Value::Map(node) = node else { continue };
        let id = node.iter().find_map(|(k, v)| match v {
            Value::Bytes(id) if k.as_text() == Some("id") => NodeId::from_slice(id),
            _ => None,
        });
        for (k, v) in node.iter_mut() {
            if let (Some("bytes"), Value::Bytes(bytes)) = (k.as_text(), v) {
                if matches!(bytes.first(), Some(0x01 | 0x03)) {
                    let other = zstd::bulk::compress(b"\xa1\x61x\x61y", 1).unwrap();
                    *bytes = [&bytes[..1], &other[..]].concat();
                    return id;
                }
            }
        }
    }
    None
}

#[test]
fn hostile_sync_replies_are_refused_with_codes_and_nothing_is_half_written() {
    let (_dir, a, b) = pair();
    commit(
        &a,
        "main",
        &[("x.txt", "payload\n"), ("y/z.txt", "more\n"), ("w", "w\n")],
        "c1",
    );
    let (refs_before, nodes_before) = (refs(&b), node_count(&b));
    let code_of = |tamper_bytes: TamperBytes, tamper: Tamper| -> String {
        let mut peer = Peer::new(&a);
        peer.tamper_bytes = tamper_bytes;
        peer.tamper = tamper;
        let error = sync::pull(&b, &mut peer, &sync::Quiet).unwrap_err();
        assert_eq!(refs(&b), refs_before, "{error}");
        assert_eq!(node_count(&b), nodes_before, "{error}");
        error.code().as_str().to_owned()
    };
    let on = |target: Operation, f: fn(&mut Vec<u8>)| -> TamperBytes {
        Box::new(move |op, bytes| {
            if op == target {
                f(bytes)
            }
        })
    };
    let none = || -> Tamper { Box::new(|_, _| Ok(())) };
    // Truncated, garbage, oversized and item-bomb replies, to each op.
    for op in [
        Operation::SyncFrontier,
        Operation::SyncNegotiate,
        Operation::SyncFetch,
    ] {
        let truncated = code_of(on(op, |b| b.truncate(b.len() / 2)), none());
        assert_eq!(truncated, "bad_cbor", "truncated {op}");
        let garbage = code_of(on(op, |b| *b = vec![0xff; 64]), none());
        assert_eq!(garbage, "bad_cbor", "garbage {op}");
        let oversized = code_of(
            on(op, |b| b.resize(sync::wire::MAX_REPLY_FRAME + 1, 0)),
            none(),
        );
        assert_eq!(oversized, "sync_failed", "oversized {op}");
        let bomb = code_of(
            on(op, |b| {
                let items = (sync::wire::MAX_REPLY_ITEMS + 1) as u32;
                *b = vec![0x9a];
                b.extend_from_slice(&items.to_be_bytes());
                b.resize(5 + items as usize, 0);
            }),
            none(),
        );
        assert_eq!(bomb, "sync_failed", "item bomb {op}");
    }
    // A fetch reply naming a node not asked for, and one swapping two nodes' ids.
    let unasked = code_of(
        Box::new(|_, _| {}),
        Box::new(|op, value| {
            if op == Operation::SyncFetch {
                set_first_node_id(value, &NodeId([7; 32]));
            }
            Ok(())
        }),
    );
    assert_eq!(unasked, "sync_failed");
    let swapped = code_of(
        Box::new(|_, _| {}),
        Box::new(|op, value| {
            if op == Operation::SyncFetch {
                swap_first_two_ids(value);
            }
            Ok(())
        }),
    );
    assert_eq!(swapped, "invariant_violation");
    assert_clean(&b);
    // An honest peer afterwards: everything arrives.
    pull(&b, &a);
    assert_eq!(refs(&b), refs(&a));
    assert_clean(&b);
}

/// The fetch reply's node list.
fn fetched_nodes(reply: &mut Value) -> Option<&mut Vec<Value>> {
    let Value::Map(fields) = reply else {
        return None;
    };
    fields.iter_mut().find_map(|(key, value)| match value {
        Value::Array(nodes) if key.as_text() == Some("nodes") => Some(nodes),
        _ => None,
    })
}

fn id_field(node: &mut Value) -> Option<&mut Value> {
    let Value::Map(fields) = node else {
        return None;
    };
    fields
        .iter_mut()
        .find_map(|(k, v)| (k.as_text() == Some("id")).then_some(v))
}

fn set_first_node_id(reply: &mut Value, id: &NodeId) {
    if let Some(slot) = fetched_nodes(reply)
        .and_then(|nodes| nodes.first_mut())
        .and_then(id_field)
    {
        *slot = Value::Bytes(id.as_bytes().to_vec());
    }
}

fn swap_first_two_ids(reply: &mut Value) {
    let Some(nodes) = fetched_nodes(reply) else {
        return;
    };
    if nodes.len() < 2 {
        return;
    }
    let first = id_field(&mut nodes[0]).cloned();
    let second = id_field(&mut nodes[1]).cloned();
    if let (Some(first), Some(second)) = (first, second) {
        *id_field(&mut nodes[0]).unwrap() = second;
        *id_field(&mut nodes[1]).unwrap() = first;
    }
}

/// Flips the last byte of the first node in a fetch reply.
fn flip_a_byte(reply: &mut Value) {
    let Value::Map(fields) = reply else { return };
    for (key, value) in fields.iter_mut() {
        if key.as_text() == Some("nodes") {
            if let Value::Array(nodes) = value {
                if let Some(Value::Map(node)) = nodes.first_mut() {
                    for (k, v) in node.iter_mut() {
                        if k.as_text() == Some("bytes") {
                            if let Value::Bytes(bytes) = v {
                                if let Some(last) = bytes.last_mut() {
                                    *last ^= 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn an_interrupted_transfer_resumes_without_fetching_again() {
    let (_dir, a, b) = pair();
    let many: Vec<(String, String)> = (0..3000)
        .map(|i| (format!("d{}/f{i}", i % 7), format!("content of file {i}\n")))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    commit(&a, "main", &many_refs, "many files");

    let mut fetches = 0;
    let mut peer = Peer::new(&a);
    peer.tamper = Box::new(|op, _| {
        if op == Operation::SyncFetch {
            fetches += 1;
            if fetches > 3 {
                return Err(Error::InvalidInput("connection lost".into()));
            }
        }
        Ok(())
    });
    assert!(sync::pull(&b, &mut peer, &sync::Quiet).is_err());
    drop(peer);
    let root = jit_kernel::node::Node::root().encode_with_id().unwrap().0;
    assert_eq!(
        tip(&b, "heads/main"),
        Some(root),
        "nothing moved: main is still at the root"
    );
    let staged = {
        let txn = b.store().read().unwrap();
        sync::staging::count(b.store(), &txn).unwrap()
    };
    assert!(staged > 0, "verified nodes were kept");

    let resumed = pull(&b, &a);
    assert_eq!(resumed.resumed_nodes, staged);
    assert_eq!(
        resumed.resumed_nodes + resumed.fetched_nodes,
        resumed.new_nodes,
        "every node came over once"
    );
    assert_eq!(refs(&b), refs(&a));
    let txn = b.store().read().unwrap();
    assert_eq!(sync::staging::count(b.store(), &txn).unwrap(), 0);
    drop(txn);
    assert_clean(&b);
}

#[test]
fn another_universe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = init(&dir.path().join("a"), None);
    let stranger = init(&dir.path().join("s"), None);
    commit(&a, "main", &[("x", "y")], "c");
    let error = sync::pull(&stranger, &mut Peer::new(&a), &sync::Quiet).unwrap_err();
    assert!(matches!(error, Error::OtherUniverse { .. }), "{error}");
    let root = jit_kernel::node::Node::root().encode_with_id().unwrap().0;
    assert_eq!(
        tip(&stranger, "heads/main"),
        Some(root),
        "nothing was taken"
    );
}

fn main_tip(repo: &Repository) -> NodeId {
    let txn = repo.store().read().unwrap();
    repo.store()
        .ref_target(&txn, "heads/main")
        .unwrap()
        .unwrap()
}

/// The origin `repo`, with forged nodes and a forged `heads/main` added to what it serves.
struct LyingPeer<'r> {
    repo: &'r Repository,
    /// The forged tip and the real node it claims as parent.
    tip: NodeId,
    parent: NodeId,
    /// Forged nodes by id.
    forged: HashMap<NodeId, Vec<u8>>,
}

impl LyingPeer<'_> {
    fn answer(&self, op: Operation, payload: Value) -> Result<Value, Error> {
        match op {
            Operation::SyncFrontier => {
                let mut frontier: Frontier = wire::from_value(
                    command::run(self.repo, &Caller::Replica, op, payload)?,
                    "frontier",
                )?;
                frontier.refs.insert("heads/main".into(), self.tip);
                wire::to_value(&frontier)
            }
            Operation::SyncNegotiate => {
                let mut request: wire::NegotiateRequest = wire::from_value(payload, "neg")?;
                let wanted = request.wants.contains(&self.tip);
                request.wants.retain(|w| *w != self.tip);
                if wanted {
                    request.wants.push(self.parent);
                }
                let mut reply: NegotiateReply = wire::from_value(
                    command::run(self.repo, &Caller::Replica, op, wire::to_value(&request)?)?,
                    "negotiation",
                )?;
                if wanted {
                    reply.history.push(self.tip);
                }
                wire::to_value(&reply)
            }
            Operation::SyncFetch => {
                let request: wire::FetchRequest = wire::from_value(payload, "fetch")?;
                let (forged, real): (Vec<NodeId>, Vec<NodeId>) = request
                    .ids
                    .iter()
                    .partition(|id| self.forged.contains_key(*id));
                let mut reply = FetchReply {
                    nodes: Vec::new(),
                    missing: Vec::new(),
                };
                if !real.is_empty() {
                    let asked = wire::FetchRequest {
                        ids: real,
                        max_bytes: request.max_bytes,
                        stored: request.stored,
                        whole: request.whole,
                    };
                    reply = wire::from_value(
                        command::run(self.repo, &Caller::Replica, op, wire::to_value(&asked)?)?,
                        "fetch reply",
                    )?;
                }
                for id in forged {
                    reply.nodes.push(FetchedNode {
                        id,
                        bytes: self.forged[&id].clone(),
                    });
                }
                wire::to_value(&reply)
            }
            other => command::run(self.repo, &Caller::Replica, other, payload),
        }
    }
}

impl Remote for LyingPeer<'_> {
    fn name(&self) -> &str {
        "origin"
    }

    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>, Error> {
        let mut answers = Vec::new();
        for (op, payload) in requests {
            let request = cbor::decode(&cbor::encode(&payload)?)?;
            let response = match self.answer(op, request) {
                Ok(value) => Response::Ok(value),
                Err(e) => jit_kernel::rpc::protocol::error_response(&e),
            };
            match Response::decode(&response.encode()?)? {
                Response::Ok(value) => answers.push(value),
                Response::Err(e) => return Err(Error::InvalidInput(e.message)),
            }
        }
        Ok(answers)
    }
}

/// An origin with one commit and a replica that already pulled it.
fn origin_and_replica() -> (tempfile::TempDir, Repository, Repository) {
    let (dir, a, b) = pair();
    commit(&a, "main", &[("README", "hello\n")], "first");
    sync::pull(&b, &mut LyingPeer::honest(&a), &sync::Quiet).unwrap();
    assert_eq!(main_tip(&b), main_tip(&a));
    (dir, a, b)
}

impl<'r> LyingPeer<'r> {
    /// A peer that adds nothing (its forged tip is its real tip).
    fn honest(repo: &'r Repository) -> LyingPeer<'r> {
        let tip = main_tip(repo);
        LyingPeer {
            repo,
            tip,
            parent: tip,
            forged: HashMap::new(),
        }
    }
}

fn tree_id_of(repo: &Repository, snapshot: &NodeId) -> NodeId {
    let txn = repo.store().read().unwrap();
    tree::tree_of(&Dag::new(repo.store(), &txn), snapshot).unwrap()
}

#[test]
fn a_sync_peer_cannot_wedge_a_branch_with_clock_2_pow_62() {
    let (_dir, a, b) = origin_and_replica();
    let parent = main_tip(&a);
    let forged = history::snapshot_node(
        parent,
        MAX_CLOCK,
        tree_id_of(&a, &parent),
        &info("far", 1_700_000_000),
    );
    let (tip, bytes) = forged.encode_with_id().unwrap();
    let mut peer = LyingPeer {
        repo: &a,
        tip,
        parent,
        forged: HashMap::from([(tip, bytes)]),
    };

    let refused = sync::pull(&b, &mut peer, &sync::Quiet);
    match refused {
        Err(e @ Error::Invariant(_)) => {
            let message = e.to_string();
            assert!(message.contains(&tip.to_string()), "{message}");
            assert!(message.contains("one more than its parents'"), "{message}");
        }
        other => {
            panic!("a snapshot with clock 2^62 on a shallow parent was not refused: {other:?}")
        }
    }
    assert_eq!(main_tip(&b), parent, "main did not move");
    let txn = b.store().read().unwrap();
    assert!(
        b.store().header(&txn, &tip).unwrap().is_none(),
        "nothing appended"
    );
    drop(txn);

    // Local work goes on: a commit, and a reset back to it.
    let next = commit(&b, "main", &[("local.txt", "mine\n")], "local work");
    history::reset(
        b.store(),
        &RefName::branch("main").unwrap(),
        parent,
        &info("back", 1_700_000_000),
    )
    .expect("reset after refusal");
    assert_ne!(main_tip(&b), next);
}

fn forged_tree(entries: Vec<TreeEntry>) -> (NodeId, Vec<u8>) {
    Node::content(Payload::Tree(Tree { entries }))
        .encode_with_id()
        .unwrap()
}

#[test]
fn patches_can_plant_git_and_jit_checkout_not_through_a_sync_peer() {
    for planted in [
        ".git",
        ".GIT",
        "git~1",
        ".git. ",
        ".jit",
        ".jit-checkout",
        ".g\u{200c}it",
    ] {
        let (_dir, a, b) = origin_and_replica();
        let parent = main_tip(&a);
        let (blob, blob_bytes) = Node::content(Payload::Blob(jit_kernel::node::Blob::Inline(
            b"[core]\n\tfsmonitor = touch /tmp/pwned\n".to_vec(),
        )))
        .encode_with_id()
        .unwrap();
        let (inner, inner_bytes) = forged_tree(vec![TreeEntry {
            name: b"config".to_vec(),
            kind: EntryKind::File,
            id: blob,
        }]);
        let (sub, sub_bytes) = forged_tree(vec![TreeEntry {
            name: planted.as_bytes().to_vec(),
            kind: EntryKind::Directory,
            id: inner,
        }]);
        let (root, root_bytes) = forged_tree(vec![TreeEntry {
            name: b"sub".to_vec(),
            kind: EntryKind::Directory,
            id: sub,
        }]);
        let forged = history::snapshot_node(parent, 2, root, &info("plant", 1_700_000_000));
        let (tip, bytes) = forged.encode_with_id().unwrap();
        let mut peer = LyingPeer {
            repo: &a,
            tip,
            parent,
            forged: HashMap::from([
                (tip, bytes),
                (root, root_bytes),
                (sub, sub_bytes),
                (inner, inner_bytes),
                (blob, blob_bytes),
            ]),
        };
        let refused = sync::pull(&b, &mut peer, &sync::Quiet);
        match &refused {
            Err(e) if e.code() == "bad_path" => {
                assert!(e.to_string().contains(&format!("{planted:?}")), "{e}");
            }
            other => panic!("a tree planting sub/{planted:?} was not refused: {other:?}"),
        }
        assert_eq!(main_tip(&b), parent, "{planted:?}: main did not move");
        let txn = b.store().read().unwrap();
        for id in [tip, sub, root] {
            assert!(
                b.store().header(&txn, &id).unwrap().is_none(),
                "{planted:?}: nothing appended"
            );
        }
    }
}

/// What a pull reported through its progress.
#[derive(Default)]
struct Recorded {
    expected: std::cell::Cell<Option<u64>>,
    received: std::cell::Cell<u64>,
}

impl sync::SyncProgress for Recorded {
    fn peer_holds(&self, nodes: u64) {
        self.expected.set(Some(nodes));
    }
    fn received(&self, nodes: u64, _bytes: u64) {
        self.received.set(self.received.get() + nodes);
    }
}

/// Issue #22 (progress with totals on clone): a pull learns the peer's node count before the
/// transfer — a clone's bar total — and a clone into a fresh replica receives no more than that.
#[test]
fn a_clone_learns_its_total_up_front() {
    let (_dir, a, b) = pair();
    let files: Vec<(String, String)> = (0..50)
        .map(|i| (format!("d{}/f{i}.txt", i % 5), format!("file {i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    commit(&a, "main", &files, "import");
    let clone = Recorded::default();
    sync::pull(&b, &mut Peer::new(&a), &clone).unwrap();
    let total = clone
        .expected
        .get()
        .expect("the peer said how many nodes it holds");
    assert_eq!(total, node_count(&a));
    assert!(
        clone.received.get() > 50,
        "the files, trees and snapshot arrived"
    );
    assert!(
        clone.received.get() <= total,
        "no more than the total: {} of {total}",
        clone.received.get()
    );
}

/// Every node's id and stored representation (how a store keeps it), in id order.
fn stored_nodes(repo: &Repository) -> Vec<(NodeId, Vec<u8>)> {
    let txn = repo.store().read().unwrap();
    let ids: Vec<NodeId> = repo
        .store()
        .header_entries(&txn)
        .unwrap()
        .map(|e| NodeId::from_slice(e.unwrap().0).unwrap())
        .collect();
    ids.into_iter()
        .map(|id| {
            (
                id,
                repo.store().stored(&txn, &id).unwrap().unwrap().to_vec(),
            )
        })
        .collect()
}

#[test]
fn a_replica_of_a_repacked_compacted_store_is_identical_node_for_node() {
    let (dir, a, b) = pair();
    let mut text: Vec<String> = (0..300).map(|i| format!("line {i}\n")).collect();
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for n in 0..25usize {
        text[(n * 41) % 300] = format!("edited in version {n}\n");
        let body = text.concat();
        let nested = format!("{body}// nested copy\n");
        let mut large = big.clone();
        large[n * 1000] ^= 0xff;
        let large = String::from_utf8_lossy(&large).into_owned();
        // The same content at two depths: a delta may arrive before its base.
        commit(
            &a,
            "main",
            &[
                ("src/lib.rs", body.as_str()),
                ("src/a/b/c.rs", nested.as_str()),
                ("copy.rs", body.as_str()),
                ("data/large.bin", large.as_str()),
            ],
            &format!("v{n}"),
        );
    }
    let report = jit_kernel::repack::repack(a.store(), 16, &()).unwrap();
    assert!(report.rewritten >= 60, "{report:?}");
    a.store().rewrite_dense().unwrap();
    let compacted = a.into_store().compact().unwrap();
    assert!(
        matches!(compacted, jit_kernel::store::Compacted::Done { before, after } if after < before),
        "{compacted:?}"
    );
    let a = Repository::open(&dir.path().join("a")).unwrap();
    assert_clean(&a);

    let pulled = pull(&b, &a);
    assert_clean(&b);
    assert_eq!(refs(&b), refs(&a));
    let (ours, theirs) = (stored_nodes(&b), stored_nodes(&a));
    assert_eq!(
        ours.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        theirs.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "the same nodes by id"
    );
    let txn = b.store().read().unwrap();
    let canonical: u64 = ours
        .iter()
        .map(|(id, _)| b.store().node_bytes(&txn, id).unwrap().unwrap().len() as u64)
        .sum();
    drop(txn);
    assert_eq!(ours, theirs, "each node kept as its source keeps it");
    assert!(
        pulled.fetched_bytes * 4 < canonical,
        "the wire carried {} bytes for {canonical} canonical bytes",
        pulled.fetched_bytes
    );
}
