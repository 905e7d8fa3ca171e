//! One test per DAG invariant (SPEC §1.2) and per ref invariant (RFC-0010): each violation is
//! refused, the store (nodes, refs, non-audit log) is unchanged, and an audit record says why.

use jit_kernel::dag;
use jit_kernel::error::{Error, Violation};
use jit_kernel::fsck::fsck;
use jit_kernel::history::{self, CommitInfo, EmptyCommit};
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::node::*;
use jit_kernel::refs::RefName;
use jit_kernel::store::Store;
use jit_kernel::{NodeId, Repository};

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    /// Two snapshots on main: first, then second (the tip).
    first: NodeId,
    second: NodeId,
}

fn info(message: &str, seconds: i64) -> CommitInfo {
    CommitInfo {
        author: "Test <t@example.org>".into(),
        message: message.into(),
        time: DeclaredTime {
            seconds,
            tz_minutes: 0,
        },
    }
}

/// Stores a one-file tree with `content` and returns its id.
fn store_tree(store: &Store, content: &[u8]) -> NodeId {
    store
        .operation("test", |op| {
            let blob = dag::append(
                op,
                &Node::content(Payload::Blob(Blob::Inline(content.to_vec()))),
            )?;
            dag::append(
                op,
                &Node::content(Payload::Tree(Tree {
                    entries: vec![TreeEntry {
                        name: b"f".to_vec(),
                        kind: EntryKind::File,
                        id: blob,
                    }],
                })),
            )
        })
        .unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = jit_testutils::fixture::init_universe(dir.path());
    let main = RefName::branch("main").unwrap();
    let t1 = store_tree(repo.store(), b"one");
    let first = history::commit_tree(
        repo.store(),
        &main,
        t1,
        &info("one", 1),
        EmptyCommit::Refuse,
    )
    .unwrap();
    let t2 = store_tree(repo.store(), b"two");
    let second = history::commit_tree(
        repo.store(),
        &main,
        t2,
        &info("two", 2),
        EmptyCommit::Refuse,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        repo,
        first,
        second,
    }
}

/// Everything but audit records.
#[derive(Debug, PartialEq)]
struct State {
    nodes: Vec<Vec<u8>>,
    refs: Vec<(String, NodeId)>,
    ops: Vec<LogOp>,
}

fn all_ops(store: &Store) -> Vec<LogOp> {
    let txn = store.read().unwrap();
    store
        .log_entries(&txn)
        .unwrap()
        .map(|e| {
            let (seq, bytes) = e.unwrap();
            verify_record(seq, bytes).unwrap().0.op
        })
        .collect()
}

fn state(store: &Store) -> State {
    let txn = store.read().unwrap();
    let nodes = store
        .node_entries(&txn)
        .unwrap()
        .map(|e| e.unwrap().0.to_vec())
        .collect();
    let refs = store.refs_with_prefix(&txn, "").unwrap();
    let ops = all_ops(store)
        .into_iter()
        .filter(|op| !matches!(op, LogOp::Audit { .. }))
        .collect();
    State { nodes, refs, ops }
}

/// Runs `attempt`, expects it to fail, and checks nothing but one audit record changed.
fn refused(fx: &Fixture, attempt: impl FnOnce(&Repository) -> Result<(), Error>) -> Error {
    let before = state(fx.repo.store());
    let audits_before = all_ops(fx.repo.store()).len() - before.ops.len();
    let error = attempt(&fx.repo).expect_err("the violation must be refused");
    assert_eq!(
        state(fx.repo.store()),
        before,
        "a refused operation changed the store"
    );
    let after = all_ops(fx.repo.store());
    let audits_after = after.len() - before.ops.len();
    assert_eq!(
        audits_after,
        audits_before + 1,
        "exactly one audit record per refusal"
    );
    match after.last() {
        Some(LogOp::Audit { code, .. }) => assert_eq!(code, error.code().as_str()),
        other => panic!("last record should be the audit, found {other:?}"),
    }
    assert!(fsck(fx.repo.store()).unwrap().is_clean());
    error
}

fn append(repo: &Repository, node: &Node) -> Result<(), Error> {
    repo.store()
        .operation("append", |op| dag::append(op, node).map(drop))
}

fn snapshot_on(parents: Vec<NodeId>, clock: u64, tree: NodeId) -> Node {
    Node::with_parents(
        parents,
        clock,
        Payload::Snapshot(Snapshot {
            tree,
            author: "x".into(),
            message: "x".into(),
            time: DeclaredTime::default(),
        }),
    )
}

fn empty_tree() -> NodeId {
    jit_kernel::tree::empty_tree_id()
}

// ---- DAG invariants ----

#[test]
fn missing_parent_is_refused() {
    let fx = fixture();
    let ghost = NodeId([0xee; 32]);
    let e = refused(&fx, |r| {
        append(r, &snapshot_on(vec![ghost], 9, empty_tree()))
    });
    assert!(
        matches!(e, Error::Invariant(Violation::MissingParent { parent, .. }) if parent == ghost)
    );
}

#[test]
fn unsorted_parents_are_refused() {
    let fx = fixture();
    let mut node = snapshot_on(vec![], 9, empty_tree());
    let (lo, hi) = if fx.first < fx.second {
        (fx.first, fx.second)
    } else {
        (fx.second, fx.first)
    };
    node.parents = vec![hi, lo];
    let e = refused(&fx, |r| append(r, &node));
    assert!(matches!(
        e,
        Error::Invariant(Violation::UnsortedParents { .. })
    ));
}

#[test]
fn duplicate_parents_are_refused() {
    let fx = fixture();
    let mut node = snapshot_on(vec![], 9, empty_tree());
    node.parents = vec![fx.second, fx.second];
    let e = refused(&fx, |r| append(r, &node));
    assert!(matches!(
        e,
        Error::Invariant(Violation::UnsortedParents { .. })
    ));
}

#[test]
fn clock_not_increasing_is_refused() {
    let fx = fixture();
    // The tip has clock 2; a child claiming clock 2 is refused.
    let e = refused(&fx, |r| {
        append(r, &snapshot_on(vec![fx.second], 2, empty_tree()))
    });
    assert!(matches!(
        e,
        Error::Invariant(Violation::ClockNotIncreasing {
            clock: 2,
            parent_clock: 2,
            ..
        })
    ));
}

#[test]
fn cycle_among_offered_nodes_is_refused() {
    let fx = fixture();
    // Two nodes that name each other as parents (as a forged sync batch would).
    let (a_id, b_id) = (NodeId([0x11; 32]), NodeId([0x22; 32]));
    let a = snapshot_on(vec![b_id], 5, empty_tree()).encode().unwrap();
    let b = snapshot_on(vec![a_id], 5, empty_tree()).encode().unwrap();
    let e = refused(&fx, |r| {
        r.store().operation("sync.import", |op| {
            dag::append_batch(op, &[(a_id, a), (b_id, b)]).map(drop)
        })
    });
    assert!(matches!(e, Error::Invariant(Violation::Cycle { .. })));
    // A node that names itself.
    let c_id = NodeId([0x33; 32]);
    let c = snapshot_on(vec![c_id], 5, empty_tree()).encode().unwrap();
    let e = refused(&fx, |r| {
        r.store().operation("sync.import", |op| {
            dag::append_batch(op, &[(c_id, c)]).map(drop)
        })
    });
    assert!(matches!(e, Error::Invariant(Violation::Cycle { node }) if node == c_id));
}

#[test]
fn bytes_under_a_wrong_id_are_refused() {
    let fx = fixture();
    let bytes = Node::content(Payload::Blob(Blob::Inline(b"x".to_vec())))
        .encode()
        .unwrap();
    let e = refused(&fx, |r| {
        r.store().operation("append", |op| {
            dag::append_encoded(op, NodeId([1; 32]), &bytes).map(drop)
        })
    });
    assert!(matches!(
        e,
        Error::Invariant(Violation::HashMismatch { .. })
    ));
}

#[test]
fn missing_reference_is_refused() {
    let fx = fixture();
    let ghost = NodeId([0xdd; 32]);
    let tree = Node::content(Payload::Tree(Tree {
        entries: vec![TreeEntry {
            name: b"a".to_vec(),
            kind: EntryKind::File,
            id: ghost,
        }],
    }));
    let e = refused(&fx, |r| append(r, &tree));
    assert!(
        matches!(e, Error::Invariant(Violation::MissingReference { target, .. }) if target == ghost)
    );
}

#[test]
fn wrong_reference_type_is_refused() {
    let fx = fixture();
    // A snapshot whose "tree" is a snapshot.
    let e = refused(&fx, |r| {
        append(r, &snapshot_on(vec![fx.second], 3, fx.first))
    });
    assert!(matches!(e, Error::Invariant(Violation::WrongType { .. })));
}

#[test]
fn malformed_bytes_are_refused() {
    let fx = fixture();
    let garbage = vec![0xa5, 0x64, b't', b'y'];
    let id = NodeId::of_bytes(&garbage);
    let e = refused(&fx, |r| {
        r.store().operation("append", |op| {
            dag::append_encoded(op, id, &garbage).map(drop)
        })
    });
    assert!(matches!(e, Error::Invariant(Violation::Malformed { .. })));
}

#[test]
fn appending_an_existing_node_changes_nothing() {
    let fx = fixture();
    let before = state(fx.repo.store());
    let node = fx
        .repo
        .store()
        .node(&fx.repo.store().read().unwrap(), &fx.second)
        .unwrap();
    append(&fx.repo, &node).unwrap();
    assert_eq!(
        state(fx.repo.store()),
        before,
        "content addressing makes a re-append a no-op"
    );
}

// ---- Ref invariants ----

#[test]
fn tag_cannot_move() {
    let fx = fixture();
    fx.repo.create_tag("v1", fx.first).unwrap();
    let e = refused(&fx, |r| r.set_branch("tags/v1", fx.second, None));
    assert!(matches!(e, Error::TagImmutable(_)));
    let e = refused(&fx, |r| r.create_tag("v1", fx.second));
    assert!(matches!(e, Error::RefExists(_)));
}

#[test]
fn tag_delete_needs_the_override() {
    let fx = fixture();
    fx.repo.create_tag("v1", fx.first).unwrap();
    let e = refused(&fx, |r| r.delete_tag("v1", false).map(drop));
    assert!(matches!(e, Error::TagImmutable(_)));
    assert_eq!(fx.repo.delete_tag("v1", true).unwrap(), fx.first);
    assert!(matches!(
        all_ops(fx.repo.store()).last(),
        Some(LogOp::RefDeleted { forced: true, .. })
    ));
}

#[test]
fn branch_cannot_move_backwards_or_sideways() {
    let fx = fixture();
    let e = refused(&fx, |r| r.set_branch("main", fx.first, None));
    assert!(matches!(e, Error::NotFastForward { .. }));
    // Sideways: a snapshot on another line of history.
    let side = append_side_snapshot(&fx);
    let e = refused(&fx, |r| r.set_branch("main", side, None));
    assert!(matches!(e, Error::NotFastForward { .. }));
}

fn append_side_snapshot(fx: &Fixture) -> NodeId {
    let node = snapshot_on(vec![fx.first], 2, empty_tree());
    fx.repo
        .store()
        .operation("append", |op| dag::append(op, &node))
        .unwrap()
}

#[test]
fn every_history_node_descends_from_the_root_and_nothing_else_does() {
    let fx = fixture();
    let store = fx.repo.store();
    let (root, _) = Node::root().encode_with_id().unwrap();
    let side = append_side_snapshot(&fx);
    let txn = store.read().unwrap();
    for snapshot in [fx.first, fx.second, side] {
        assert!(dag::is_ancestor(store, &txn, &root, &snapshot).unwrap());
        assert!(!dag::is_ancestor(store, &txn, &snapshot, &root).unwrap());
    }
    // A tree is no one's descendant, the root's included; the root is its own.
    let tree =
        jit_kernel::tree::tree_of(&jit_kernel::source::Dag::new(store, &txn), &fx.first).unwrap();
    assert!(!dag::is_ancestor(store, &txn, &root, &tree).unwrap());
    assert!(dag::is_ancestor(store, &txn, &root, &root).unwrap());
    // And off the root, the walk still answers: the side line is not the tip's ancestor.
    assert!(!dag::is_ancestor(store, &txn, &side, &fx.second).unwrap());
}

#[test]
fn reset_moves_back_through_an_inversion_rewrite() {
    let fx = fixture();
    let main = RefName::branch("main").unwrap();
    let new_tip = history::reset(fx.repo.store(), &main, fx.first, &info("reset", 3)).unwrap();
    let txn = fx.repo.store().read().unwrap();
    let store = fx.repo.store();
    // The branch moved forward: the old tip is an ancestor of the new one.
    assert!(dag::is_ancestor(store, &txn, &fx.second, &new_tip).unwrap());
    let node = store.node(&txn, &new_tip).unwrap();
    let Payload::Snapshot(snapshot) = &node.payload else {
        panic!("tip is a snapshot")
    };
    assert_eq!(
        snapshot.tree,
        jit_kernel::tree::tree_of(&jit_kernel::source::Dag::new(store, &txn), &fx.first).unwrap()
    );
    let Payload::Rewrite(rewrite) = store.node(&txn, &node.parents[0]).unwrap().payload else {
        panic!("the new tip's parent is the rewrite node")
    };
    assert_eq!(
        (rewrite.kind, rewrite.from, rewrite.to),
        (RewriteKind::Reset, fx.second, fx.first)
    );
    // Mainline history reads new_tip → second → first; nothing was lost.
    assert_eq!(
        dag::mainline_parent(store, &txn, &new_tip).unwrap(),
        Some(fx.second)
    );
    assert!(fsck(store).unwrap().is_clean());
}

#[test]
fn ref_to_a_missing_node_is_refused() {
    let fx = fixture();
    let ghost = NodeId([0xcc; 32]);
    let e = refused(&fx, |r| r.create_branch("x", ghost));
    assert!(matches!(e, Error::NodeNotFound(id) if id == ghost));
    let e = refused(&fx, |r| r.set_branch("main", ghost, None));
    assert!(matches!(e, Error::NodeNotFound(_)));
}

#[test]
fn ref_to_content_is_refused() {
    let fx = fixture();
    let e = refused(&fx, |r| r.create_branch("x", empty_tree()));
    assert!(matches!(e, Error::NotA { .. }));
}

#[test]
fn bad_ref_names_are_refused() {
    let fx = fixture();
    for name in ["a..b", "x.lock", "has space", "", "-x", "a~1"] {
        let e = refused(&fx, |r| r.create_branch(name, fx.first));
        assert!(matches!(e, Error::BadRefName { .. }), "{name:?}");
        let e = refused(&fx, |r| r.create_tag(name, fx.first));
        assert!(matches!(e, Error::BadRefName { .. }), "{name:?}");
    }
}

#[test]
fn branch_update_is_compare_and_set() {
    let fx = fixture();
    let main = RefName::branch("main").unwrap();
    let t3 = store_tree(fx.repo.store(), b"three");
    let next = fx
        .repo
        .store()
        .operation("append", |op| {
            dag::append(op, &snapshot_on(vec![fx.second], 3, t3))
        })
        .unwrap();
    let e = refused(&fx, |r| r.set_branch("main", next, Some(fx.first)));
    assert!(matches!(e, Error::RefChanged { .. }));
    fx.repo.set_branch("main", next, Some(fx.second)).unwrap();
    let txn = fx.repo.store().read().unwrap();
    assert_eq!(
        jit_kernel::refs::get(fx.repo.store(), &txn, &main).unwrap(),
        Some(next)
    );
}

#[test]
fn every_ref_change_is_logged_and_head_is_not() {
    let fx = fixture();
    let before = all_ops(fx.repo.store()).len();
    fx.repo.create_branch("dev", fx.first).unwrap();
    fx.repo.set_branch("dev", fx.second, None).unwrap();
    fx.repo.set_head(&RefName::branch("dev").unwrap()).unwrap();
    fx.repo.set_head(&RefName::branch("main").unwrap()).unwrap();
    fx.repo.delete_branch("dev").unwrap();
    let ops = all_ops(fx.repo.store());
    let new: Vec<_> = ops[before..].to_vec();
    assert_eq!(
        new,
        vec![
            LogOp::RefCreated {
                name: "heads/dev".into(),
                target: fx.first
            },
            LogOp::RefUpdated {
                name: "heads/dev".into(),
                from: fx.first,
                to: fx.second
            },
            LogOp::RefDeleted {
                name: "heads/dev".into(),
                target: fx.second,
                forced: false
            },
        ],
        "exactly the ref changes, in order; HEAD moves leave no record"
    );
}

#[test]
fn the_checked_out_branch_cannot_be_deleted() {
    let fx = fixture();
    let e = refused(&fx, |r| r.delete_branch("main").map(drop));
    assert!(matches!(e, Error::BranchCheckedOut(_)));
}

#[test]
fn commit_writes_the_ref_last_in_one_transaction() {
    let fx = fixture();
    let ops = all_ops(fx.repo.store());
    // The second commit: its snapshot's creation record directly precedes the ref move.
    let at = ops
        .iter()
        .position(|op| matches!(op, LogOp::RefUpdated { to, .. } if *to == fx.second))
        .unwrap();
    assert!(
        matches!(&ops[at - 1], LogOp::NodeCreated { id, .. } if *id == fx.second)
            || matches!(&ops[at - 1], LogOp::NodesCreated { ids } if ids.last() == Some(&fx.second))
    );
}

// ---- Hardening found in review ----

#[test]
fn a_ref_cannot_also_be_a_directory_of_refs() {
    let fx = fixture();
    fx.repo.create_branch("feature", fx.first).unwrap();
    let e = refused(&fx, |r| r.create_branch("feature/x", fx.first));
    assert!(matches!(e, Error::RefExists(_)));
    fx.repo.create_branch("topic/one", fx.first).unwrap();
    let e = refused(&fx, |r| r.create_branch("topic", fx.first));
    assert!(matches!(e, Error::RefExists(_)));
    // Names that merely share a prefix are fine.
    fx.repo.create_branch("featured", fx.first).unwrap();
    fx.repo.create_branch("myheads/x", fx.first).unwrap();
}

#[test]
fn a_snapshot_has_exactly_one_parent() {
    let fx = fixture();
    let two = snapshot_on(vec![fx.first, fx.second], 9, empty_tree());
    let e = refused(&fx, |r| append(r, &two));
    assert!(
        matches!(e, Error::Invariant(Violation::Malformed { .. })),
        "{e}"
    );
}

#[test]
fn a_rewrite_base_must_exist() {
    let fx = fixture();
    let side = append_side_snapshot(&fx);
    let rewrite = Node::with_parents(
        vec![fx.second, side],
        3,
        Payload::Rewrite(Rewrite {
            kind: RewriteKind::Merge,
            from: fx.second,
            to: side,
            base: Some(NodeId([0x77; 32])),
        }),
    );
    let e = refused(&fx, |r| append(r, &rewrite));
    assert!(
        matches!(e, Error::Invariant(Violation::MissingReference { .. })),
        "{e}"
    );
}

#[test]
fn a_clock_is_one_more_than_the_highest_parents() {
    // The tip has clock 2: 3 is the only clock a child may have (issue #17 item 5).
    let fx = fixture();
    let e = refused(&fx, |r| {
        append(r, &snapshot_on(vec![fx.second], 4, empty_tree()))
    });
    assert!(
        matches!(
            e,
            Error::Invariant(Violation::ClockNotNext {
                clock: 4,
                expected: 3,
                ..
            })
        ),
        "{e}"
    );
}

#[test]
fn clocks_are_bounded() {
    let fx = fixture();
    let e = refused(&fx, |r| {
        append(
            r,
            &snapshot_on(vec![fx.second], MAX_CLOCK + 1, empty_tree()),
        )
    });
    assert!(
        matches!(e, Error::Invariant(Violation::Malformed { .. })),
        "{e}"
    );
}

#[test]
fn an_operation_with_a_refused_step_cannot_be_committed() {
    let fx = fixture();
    let before = state(fx.repo.store());
    let mut op = fx.repo.store().begin().unwrap();
    let good = Node::content(Payload::Blob(Blob::Inline(b"fine".to_vec())));
    dag::append(&mut op, &good).unwrap();
    let ghost = NodeId([0xee; 32]);
    assert!(dag::append(&mut op, &snapshot_on(vec![ghost], 9, empty_tree())).is_err());
    assert!(
        op.commit().is_err(),
        "a poisoned operation refuses to commit"
    );
    assert_eq!(
        state(fx.repo.store()),
        before,
        "not even the good step landed"
    );
}
