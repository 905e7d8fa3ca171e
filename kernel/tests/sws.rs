//! Shadow Working Sets and collapse: isolation, idempotent patches, refusals that change nothing,
//! the merge table, conflict resolution, determinism and concurrent commits; and what one patch
//! may ask (issue #17 items 3 and 4): N puts into one directory cost memory linear in N, a patch
//! past the operation cap is refused with its own code, and no patch plants `.git`, `.jit` or
//! `.jit-checkout` at any depth.

use std::collections::BTreeMap;

use jit_kernel::collapse::{self, Outcome};
use jit_kernel::content;
use jit_kernel::error::Error;
use jit_kernel::fsck::fsck;
use jit_kernel::history::CommitInfo;
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::merge::ConflictKind;
use jit_kernel::node::EntryKind;
use jit_kernel::patch::{Hunk, Patch, PatchError, PatchOp, MAX_OPS};
use jit_kernel::refs::RefName;
use jit_kernel::source::{Dag, Source};
use jit_kernel::sws::{self, SwsId, SwsSource};
use jit_kernel::tree;
use jit_kernel::{DeclaredTime, NodeId, Repository};

fn new_repo() -> (tempfile::TempDir, Repository) {
    jit_testutils::fixture::new_universe()
}

fn main_branch() -> RefName {
    RefName::branch("main").unwrap()
}

fn info(message: &str) -> CommitInfo {
    CommitInfo {
        author: "Agent <a@example.org>".into(),
        message: message.into(),
        time: DeclaredTime {
            seconds: 1_700_000_000,
            tz_minutes: 0,
        },
    }
}

fn put(path: &str, content: &str) -> PatchOp {
    PatchOp::Put {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        executable: false,
    }
}

fn patch(id: &str, ops: Vec<PatchOp>) -> Patch {
    Patch {
        id: id.into(),
        author: "agent".into(),
        ts: 1,
        ops,
    }
}

fn new_sws(repo: &Repository) -> SwsId {
    sws::create(repo.store(), &main_branch(), None, "agent", None)
        .unwrap()
        .0
}

/// Commits files to main through an SWS and returns the new tip.
fn commit_files(repo: &Repository, files: &[(&str, &str)], message: &str) -> NodeId {
    let id = new_sws(repo);
    let ops = files.iter().map(|(p, c)| put(p, c)).collect();
    sws::apply_patch(repo.store(), id, &patch(message, ops)).unwrap();
    match collapse::commit(repo.store(), id, &info(message)).unwrap() {
        Outcome::Committed { snapshot, .. } => snapshot,
        other => panic!("expected a clean commit, got {other:?}"),
    }
}

/// Every file under a tree: path → content (dirs end with '/').
fn files_of(src: &dyn Source, root: &NodeId) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    tree::walk(src, root, b"", true, &mut |path, entry| {
        let path = String::from_utf8_lossy(path).into_owned();
        if entry.kind == EntryKind::Directory {
            out.insert(format!("{path}/"), String::new());
        } else {
            let data = content::read_blob(src, &entry.id)?;
            out.insert(path, String::from_utf8_lossy(&data).into_owned());
        }
        Ok(())
    })
    .unwrap();
    out
}

fn sws_files(repo: &Repository, id: SwsId) -> BTreeMap<String, String> {
    let txn = repo.store().read().unwrap();
    let state = sws::get(repo.store(), &txn, id).unwrap();
    files_of(&SwsSource::new(repo.store(), &txn, id), &state.tree)
}

fn tip_files(repo: &Repository) -> BTreeMap<String, String> {
    let txn = repo.store().read().unwrap();
    let dag = Dag::new(repo.store(), &txn);
    let tip = jit_kernel::refs::get(repo.store(), &txn, &main_branch())
        .unwrap()
        .unwrap();
    files_of(&dag, &tree::tree_of(&dag, &tip).unwrap())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node_count(repo: &Repository) -> u64 {
    repo.store()
        .node_count(&repo.store().read().unwrap())
        .unwrap()
}

#[test]
fn two_sws_never_see_each_others_edits_and_discard_leaves_the_dag_alone() {
    let (_d, repo) = new_repo();
    commit_files(&repo, &[("shared.txt", "base\n")], "base");
    let (a, b) = (new_sws(&repo), new_sws(&repo));
    assert_ne!(a, b);
    assert_eq!(a.to_string().len(), 32, "128-bit ids");
    sws::apply_patch(
        repo.store(),
        a,
        &patch(
            "pa",
            vec![put("a.txt", "from a\n"), put("shared.txt", "a's\n")],
        ),
    )
    .unwrap();
    sws::apply_patch(
        repo.store(),
        b,
        &patch("pb", vec![put("b.txt", "from b\n")]),
    )
    .unwrap();
    assert_eq!(
        sws_files(&repo, a),
        map(&[("a.txt", "from a\n"), ("shared.txt", "a's\n")])
    );
    assert_eq!(
        sws_files(&repo, b),
        map(&[("b.txt", "from b\n"), ("shared.txt", "base\n")])
    );
    assert_eq!(
        tip_files(&repo),
        map(&[("shared.txt", "base\n")]),
        "nothing reaches the DAG before commit"
    );

    let nodes = node_count(&repo);
    sws::discard(repo.store(), a).unwrap();
    assert_eq!(node_count(&repo), nodes, "discard leaves the DAG untouched");
    let txn = repo.store().read().unwrap();
    assert!(matches!(
        sws::get(repo.store(), &txn, a),
        Err(Error::SwsNotFound(_))
    ));
    drop(txn);
    assert_eq!(
        sws_files(&repo, b),
        map(&[("b.txt", "from b\n"), ("shared.txt", "base\n")])
    );
    assert!(fsck(repo.store()).unwrap().is_clean());
}

#[test]
fn every_sws_is_listed_past_its_records_and_discard_removes_all_of_them() {
    let (_d, repo) = new_repo();
    commit_files(&repo, &[("base.txt", "base\n")], "base");
    let listed = |repo: &Repository| -> Vec<SwsId> {
        let txn = repo.store().read().unwrap();
        let mut ids: Vec<SwsId> = sws::list(repo.store(), &txn)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    };
    let before = listed(&repo);
    // Each SWS gets records of every kind behind its state: history, patch ids, staged nodes.
    let mut made: Vec<SwsId> = (0..5).map(|_| new_sws(&repo)).collect();
    for (n, id) in made.iter().enumerate() {
        for p in 0..3 {
            let content = format!("sws {n} patch {p}\n");
            let ops = vec![put(&format!("dir{p}/f{n}.txt"), &content)];
            sws::apply_patch(repo.store(), *id, &patch(&format!("p{p}"), ops)).unwrap();
        }
    }
    let mut expected: Vec<SwsId> = before.iter().chain(&made).copied().collect();
    expected.sort();
    assert_eq!(listed(&repo), expected);

    let gone = made.remove(2);
    let staged_tree = {
        let txn = repo.store().read().unwrap();
        sws::get(repo.store(), &txn, gone).unwrap().tree
    };
    sws::discard(repo.store(), gone).unwrap();
    let mut expected: Vec<SwsId> = before.iter().chain(&made).copied().collect();
    expected.sort();
    assert_eq!(listed(&repo), expected);
    let txn = repo.store().read().unwrap();
    assert!(sws::history(repo.store(), &txn, gone).unwrap().is_empty());
    assert_eq!(
        SwsSource::new(repo.store(), &txn, gone)
            .bytes(&staged_tree)
            .unwrap(),
        None,
        "its staged nodes went with it"
    );
    for id in &made {
        assert_eq!(sws::history(repo.store(), &txn, *id).unwrap().len(), 3);
    }
}

#[test]
fn sws_state_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let repo = jit_testutils::fixture::init_universe(dir.path());
        let id = new_sws(&repo);
        sws::apply_patch(repo.store(), id, &patch("p", vec![put("x", "1\n")])).unwrap();
        id
    };
    let repo = Repository::open(dir.path()).unwrap();
    assert_eq!(sws_files(&repo, id), map(&[("x", "1\n")]));
    let history = sws::history(repo.store(), &repo.store().read().unwrap(), id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].patch_id, "p");
}

#[test]
fn the_same_patch_id_applies_once() {
    let (_d, repo) = new_repo();
    let id = new_sws(&repo);
    let p = patch("once", vec![put("counter", "1\n")]);
    let first = sws::apply_patch(repo.store(), id, &p).unwrap();
    let again = sws::apply_patch(repo.store(), id, &p).unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!((first.seq, first.tree), (again.seq, again.tree));
    let txn = repo.store().read().unwrap();
    assert_eq!(sws::get(repo.store(), &txn, id).unwrap().patches, 1);
    assert_eq!(sws::history(repo.store(), &txn, id).unwrap().len(), 1);
}

#[test]
fn refused_patches_change_nothing() {
    let (_d, repo) = new_repo();
    commit_files(&repo, &[("f.txt", "one\ntwo\n")], "base");
    let id = new_sws(&repo);
    sws::apply_patch(
        repo.store(),
        id,
        &patch(
            "mk",
            vec![PatchOp::Mkdir { path: "dir".into() }, put("dir/x", "x")],
        ),
    )
    .unwrap();
    let before = sws::get(repo.store(), &repo.store().read().unwrap(), id).unwrap();
    let wrong_base = NodeId([9; 32]);
    let cases: Vec<(Vec<PatchOp>, &str)> = vec![
        (
            vec![PatchOp::Edit {
                path: "f.txt".into(),
                base: wrong_base,
                hunks: vec![],
            }],
            "patch_rejected",
        ),
        (vec![put("../escape", "x")], "bad_path"),
        (vec![put("/etc/passwd", "x")], "bad_path"),
        (vec![put(".jit/store", "x")], "bad_path"),
        (
            vec![PatchOp::Delete {
                path: "missing".into(),
            }],
            "patch_rejected",
        ),
        (
            vec![PatchOp::Rmdir { path: "dir".into() }],
            "patch_rejected",
        ),
        (vec![put("f.txt/x", "x")], "bad_edit"),
        (vec![PatchOp::Mkdir { path: "a/b".into() }], "bad_edit"),
        (vec![put("dir", "x")], "patch_rejected"),
        (
            vec![PatchOp::Rename {
                from: "dir".into(),
                to: "dir/sub".into(),
            }],
            "patch_rejected",
        ),
        // The first op is fine, the second fails: the whole patch is refused.
        (
            vec![
                put("ok.txt", "fine"),
                PatchOp::Delete {
                    path: "missing".into(),
                },
            ],
            "patch_rejected",
        ),
        (vec![], "patch_rejected"),
    ];
    for (i, (ops, code)) in cases.into_iter().enumerate() {
        let error =
            sws::apply_patch(repo.store(), id, &patch(&format!("bad{i}"), ops)).unwrap_err();
        assert_eq!(error.code(), code, "case {i}: {error}");
        let after = sws::get(repo.store(), &repo.store().read().unwrap(), id).unwrap();
        assert_eq!(after, before, "case {i} changed the SWS");
    }
    // A wrong base names both blobs.
    let txn = repo.store().read().unwrap();
    let src = SwsSource::new(repo.store(), &txn, id);
    let real = tree::lookup(&src, &before.tree, b"f.txt")
        .unwrap()
        .unwrap()
        .id;
    drop(txn);
    let error = sws::apply_patch(
        repo.store(),
        id,
        &patch(
            "edit-bad",
            vec![PatchOp::Edit {
                path: "f.txt".into(),
                base: wrong_base,
                hunks: vec![],
            }],
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::Patch(PatchError::BaseMismatch { found, .. }) if *found == real.to_hex())
    );
    // The right base applies.
    sws::apply_patch(
        repo.store(),
        id,
        &patch(
            "edit-good",
            vec![PatchOp::Edit {
                path: "f.txt".into(),
                base: real,
                hunks: vec![Hunk {
                    start: 1,
                    remove: 1,
                    insert: vec!["TWO\n".into(), "three\n".into()],
                }],
            }],
        ),
    )
    .unwrap();
    assert_eq!(sws_files(&repo, id)["f.txt"], "one\nTWO\nthree\n");
}

/// Runs one merge case: `base` files committed, then `ours` committed by another SWS while the
/// SWS under test applies `theirs`; returns the outcome and the SWS id.
fn merge_case(
    base: &[(&str, &str)],
    ours: Vec<PatchOp>,
    theirs: Vec<PatchOp>,
) -> (Repository, tempfile::TempDir, SwsId, Outcome) {
    let (dir, repo) = new_repo();
    if !base.is_empty() {
        commit_files(&repo, base, "base");
    }
    let theirs_sws = new_sws(&repo);
    let ours_sws = new_sws(&repo);
    sws::apply_patch(repo.store(), ours_sws, &patch("ours", ours)).unwrap();
    assert!(matches!(
        collapse::commit(repo.store(), ours_sws, &info("ours")).unwrap(),
        Outcome::Committed { .. }
    ));
    sws::apply_patch(repo.store(), theirs_sws, &patch("theirs", theirs)).unwrap();
    let outcome = collapse::commit(repo.store(), theirs_sws, &info("theirs")).unwrap();
    assert!(fsck(repo.store()).unwrap().is_clean());
    (repo, dir, theirs_sws, outcome)
}

fn assert_clean(outcome: &Outcome) {
    assert!(
        matches!(
            outcome,
            Outcome::Committed {
                rewrite: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
}

fn conflict_kinds(outcome: &Outcome) -> Vec<(String, ConflictKind)> {
    match outcome {
        Outcome::Conflicted { conflicts } => {
            conflicts.iter().map(|c| (c.path.clone(), c.kind)).collect()
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn merge_different_files() {
    let (repo, _d, _, outcome) = merge_case(
        &[("a", "a\n")],
        vec![put("o", "ours\n")],
        vec![put("t", "theirs\n")],
    );
    assert_clean(&outcome);
    assert_eq!(
        tip_files(&repo),
        map(&[("a", "a\n"), ("o", "ours\n"), ("t", "theirs\n")])
    );
}

#[test]
fn merge_same_file_different_lines() {
    let base = "1\n2\n3\n4\n5\n6\n";
    let (repo, _d, _, outcome) = merge_case(
        &[("f", base)],
        vec![put("f", "ONE\n2\n3\n4\n5\n6\n")],
        vec![put("f", "1\n2\n3\n4\n5\nSIX\n")],
    );
    assert_clean(&outcome);
    assert_eq!(tip_files(&repo)["f"], "ONE\n2\n3\n4\n5\nSIX\n");
}

#[test]
fn merge_same_lines_conflicts_with_git_markers() {
    let (repo, _d, id, outcome) = merge_case(
        &[("f", "keep\nline\nend\n")],
        vec![put("f", "keep\nours\nend\n")],
        vec![put("f", "keep\ntheirs\nend\n")],
    );
    assert_eq!(
        conflict_kinds(&outcome),
        vec![("f".into(), ConflictKind::Text)]
    );
    assert_eq!(
        sws_files(&repo, id)["f"],
        "keep\n<<<<<<< ours\nours\n=======\ntheirs\n>>>>>>> theirs\nend\n",
        "byte-exact git-style markers"
    );
    assert_eq!(
        tip_files(&repo)["f"],
        "keep\nours\nend\n",
        "a failed commit changes nothing on the branch"
    );
    let txn = repo.store().read().unwrap();
    assert_eq!(sws::get(repo.store(), &txn, id).unwrap().conflicts.len(), 1);
    drop(txn);

    // Resolving is an ordinary edit followed by another commit.
    sws::apply_patch(
        repo.store(),
        id,
        &patch("resolve", vec![put("f", "keep\nboth\nend\n")]),
    )
    .unwrap();
    let outcome = collapse::commit(repo.store(), id, &info("resolved")).unwrap();
    assert!(
        matches!(outcome, Outcome::Committed { rewrite: None, .. }),
        "{outcome:?}"
    );
    assert_eq!(tip_files(&repo)["f"], "keep\nboth\nend\n");
}

#[test]
fn merge_add_add() {
    let (repo, _d, id, outcome) = merge_case(
        &[("a", "a")],
        vec![put("new", "ours\n")],
        vec![put("new", "theirs\n")],
    );
    assert_eq!(
        conflict_kinds(&outcome),
        vec![("new".into(), ConflictKind::AddAdd)]
    );
    assert_eq!(
        sws_files(&repo, id)["new"],
        "<<<<<<< ours\nours\n=======\ntheirs\n>>>>>>> theirs\n"
    );
    // Identical additions agree.
    let (repo, _d, _, outcome) = merge_case(
        &[("a", "a")],
        vec![put("new", "same\n"), put("o", "1")],
        vec![put("new", "same\n")],
    );
    assert_clean(&outcome);
    assert_eq!(tip_files(&repo)["new"], "same\n");
}

#[test]
fn merge_modify_delete() {
    let (repo, _d, id, outcome) = merge_case(
        &[("f", "v1\n")],
        vec![PatchOp::Delete { path: "f".into() }],
        vec![put("f", "v2\n")],
    );
    assert_eq!(
        conflict_kinds(&outcome),
        vec![("f".into(), ConflictKind::ModifyDelete)]
    );
    assert_eq!(
        sws_files(&repo, id)["f"],
        "v2\n",
        "the modified version stays for the user to decide"
    );
    let (_repo, _d, _, outcome) = merge_case(
        &[("f", "v1\n")],
        vec![put("f", "v2\n")],
        vec![PatchOp::Delete { path: "f".into() }],
    );
    assert_eq!(
        conflict_kinds(&outcome),
        vec![("f".into(), ConflictKind::ModifyDelete)]
    );
    // Both deleting agree.
    let (repo, _d, _, outcome) = merge_case(
        &[("f", "v1\n"), ("g", "g")],
        vec![PatchOp::Delete { path: "f".into() }, put("o", "1")],
        vec![PatchOp::Delete { path: "f".into() }],
    );
    assert_clean(&outcome);
    assert!(!tip_files(&repo).contains_key("f"));
}

#[test]
fn merge_file_against_directory() {
    let (repo, _d, id, outcome) = merge_case(
        &[("a", "a")],
        vec![
            PatchOp::Mkdir { path: "x".into() },
            put("x/inner", "in dir\n"),
        ],
        vec![put("x", "a file\n")],
    );
    assert_eq!(
        conflict_kinds(&outcome),
        vec![("x".into(), ConflictKind::TypeChange)]
    );
    let files = sws_files(&repo, id);
    assert_eq!(files["x/inner"], "in dir\n", "the branch's directory stays");
    assert_eq!(
        files["x~sws"], "a file\n",
        "the SWS's file is kept beside it"
    );
}

#[test]
fn merge_rename_against_edit() {
    let base = "fn main() {\n    one();\n}\n";
    let edited = "fn main() {\n    two();\n}\n";
    let (repo, _d, _, outcome) = merge_case(
        &[("old.rs", base)],
        vec![put("old.rs", edited)],
        vec![PatchOp::Rename {
            from: "old.rs".into(),
            to: "new.rs".into(),
        }],
    );
    assert_clean(&outcome);
    assert_eq!(
        tip_files(&repo),
        map(&[("new.rs", edited)]),
        "the edit follows the rename"
    );
    // And the other way round: the branch renamed, the SWS edited.
    let (repo, _d, _, outcome) = merge_case(
        &[("old.rs", base)],
        vec![PatchOp::Rename {
            from: "old.rs".into(),
            to: "new.rs".into(),
        }],
        vec![put("old.rs", edited)],
    );
    assert_clean(&outcome);
    assert_eq!(tip_files(&repo), map(&[("new.rs", edited)]));
}

#[test]
fn merge_in_nested_directories_and_modes() {
    let (repo, _d, _, outcome) = merge_case(
        &[("d/e/f", "1\n2\n3\n"), ("d/x", "x")],
        vec![
            put("d/e/f", "1\n2\n3\n4\n"),
            PatchOp::Chmod {
                path: "d/x".into(),
                executable: true,
            },
        ],
        vec![
            put("d/e/g", "new\n"),
            PatchOp::Symlink {
                path: "d/link".into(),
                target: "e/f".into(),
            },
        ],
    );
    assert_clean(&outcome);
    let files = tip_files(&repo);
    assert_eq!(files["d/e/f"], "1\n2\n3\n4\n");
    assert_eq!(files["d/e/g"], "new\n");
    assert_eq!(files["d/link"], "e/f");
    let txn = repo.store().read().unwrap();
    let dag = Dag::new(repo.store(), &txn);
    let tip = jit_kernel::refs::get(repo.store(), &txn, &main_branch())
        .unwrap()
        .unwrap();
    let root = tree::tree_of(&dag, &tip).unwrap();
    assert_eq!(
        tree::lookup(&dag, &root, b"d/x").unwrap().unwrap().kind,
        EntryKind::Executable
    );
}

fn scripted_history(repo: &Repository) -> (NodeId, Option<NodeId>) {
    commit_files(
        repo,
        &[("src/lib.rs", "pub fn a() {}\n"), ("README", "hi\n")],
        "base",
    );
    let mine = new_sws(repo);
    let other = new_sws(repo);
    sws::apply_patch(
        repo.store(),
        other,
        &patch("o", vec![put("README", "hello\n")]),
    )
    .unwrap();
    collapse::commit(repo.store(), other, &info("other")).unwrap();
    sws::apply_patch(
        repo.store(),
        mine,
        &patch(
            "m",
            vec![put("src/lib.rs", "pub fn a() {}\npub fn b() {}\n")],
        ),
    )
    .unwrap();
    match collapse::commit(repo.store(), mine, &info("mine")).unwrap() {
        Outcome::Committed { snapshot, rewrite } => (snapshot, rewrite),
        other => panic!("{other:?}"),
    }
}

#[test]
fn independent_repositories_produce_identical_snapshot_and_rewrite_ids() {
    let (_a, repo_a) = new_repo();
    let (_b, repo_b) = new_repo();
    let a = scripted_history(&repo_a);
    let b = scripted_history(&repo_b);
    assert!(a.1.is_some(), "the second commit merged");
    assert_eq!(a, b);
}

#[test]
fn sixteen_agents_commit_at_once() {
    let (_d, repo) = new_repo();
    commit_files(&repo, &[("shared.txt", "line\n")], "base");
    let agents: Vec<SwsId> = (0..16).map(|_| new_sws(&repo)).collect();
    for (i, id) in agents.iter().enumerate() {
        let mut ops = vec![put(&format!("agent{i:02}.txt"), &format!("work of {i}\n"))];
        if i % 4 == 0 {
            // Four agents also rewrite the same line: at most one of them can win.
            ops.push(put("shared.txt", &format!("agent {i} was here\n")));
        }
        sws::apply_patch(repo.store(), *id, &patch(&format!("p{i}"), ops)).unwrap();
    }
    let barrier = std::sync::Barrier::new(agents.len());
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (repo, barrier) = (&repo, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    (
                        i,
                        collapse::commit(repo.store(), *id, &info(&format!("agent {i}"))).unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let files = tip_files(&repo);
    let mut shared_writers_committed = 0;
    for (i, outcome) in &outcomes {
        match outcome {
            Outcome::Committed { .. } => {
                assert_eq!(
                    files[&format!("agent{i:02}.txt")],
                    format!("work of {i}\n"),
                    "agent {i}'s edit is in the tip"
                );
                if i % 4 == 0 {
                    shared_writers_committed += 1;
                    assert_eq!(files["shared.txt"], format!("agent {i} was here\n"));
                }
            }
            Outcome::Conflicted { conflicts } => {
                assert_eq!(i % 4, 0, "only agents touching shared.txt may conflict");
                assert_eq!(conflicts.len(), 1);
                assert_eq!(conflicts[0].path, "shared.txt");
                assert!(
                    !files.contains_key(&format!("agent{i:02}.txt")),
                    "a failed commit adds nothing"
                );
            }
        }
    }
    assert_eq!(
        shared_writers_committed, 1,
        "exactly one of the conflicting writers wins"
    );
    let committed = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Committed { .. }))
        .count();
    assert_eq!(committed, 13);
    assert_eq!(files.len(), 1 + 13, "nothing lost or duplicated");
    // The mainline holds exactly one snapshot per successful commit (plus the base).
    let txn = repo.store().read().unwrap();
    let mut tip = jit_kernel::refs::get(repo.store(), &txn, &main_branch()).unwrap();
    let mut length = 0;
    while let Some(id) = tip {
        length += 1;
        tip = jit_kernel::dag::mainline_parent(repo.store(), &txn, &id).unwrap();
    }
    assert_eq!(length, 1 + 13);
    drop(txn);
    assert!(
        fsck(repo.store()).unwrap().is_clean(),
        "the log replays to the same state"
    );
}

#[test]
fn committing_an_unchanged_sws_is_refused_and_validate_predicts_conflicts() {
    let (_d, repo) = new_repo();
    commit_files(&repo, &[("f", "a\n")], "base");
    let idle = new_sws(&repo);
    assert!(collapse::commit(repo.store(), idle, &info("x"))
        .unwrap_err()
        .to_string()
        .contains("nothing to commit"));
    let mine = new_sws(&repo);
    sws::apply_patch(repo.store(), mine, &patch("m", vec![put("f", "mine\n")])).unwrap();
    assert!(collapse::validate(repo.store(), mine).unwrap().is_empty());
    commit_files(&repo, &[("f", "theirs\n")], "other");
    let predicted = collapse::validate(repo.store(), mine).unwrap();
    assert_eq!(predicted.len(), 1);
    assert_eq!(predicted[0].kind, ConflictKind::Text);
}

/// The base and the files of SWS `id`.
fn base_and_files(repo: &Repository, id: SwsId) -> (NodeId, BTreeMap<String, String>) {
    let base = sws::get(repo.store(), &repo.store().read().unwrap(), id)
        .unwrap()
        .base;
    (base, sws_files(repo, id))
}

#[test]
fn a_clean_working_sws_follows_its_branch_wherever_it_moves() {
    let (_d, repo) = new_repo();
    let first = commit_files(&repo, &[("f", "one\n")], "one");
    let second = commit_files(&repo, &[("f", "two\n")], "two");
    let working = sws::working(repo.store(), &main_branch(), "me").unwrap();
    // Written and reverted: patches, but no net change.
    sws::apply_patch(repo.store(), working, &patch("w1", vec![put("f", "tmp\n")])).unwrap();
    sws::apply_patch(repo.store(), working, &patch("w2", vec![put("f", "two\n")])).unwrap();
    let named = new_sws(&repo);
    let named_base = base_and_files(&repo, named).0;

    let reset =
        jit_kernel::history::reset(repo.store(), &main_branch(), first, &info("reset")).unwrap();
    assert_eq!(
        base_and_files(&repo, working),
        (reset, map(&[("f", "one\n")])),
        "a reset re-anchors the clean working SWS on the new tip"
    );
    assert_eq!(
        base_and_files(&repo, named).0,
        named_base,
        "an SWS that is not the branch's working SWS keeps the base it was given"
    );

    let other = commit_files(&repo, &[("g", "other\n")], "from another SWS");
    assert_eq!(
        base_and_files(&repo, working),
        (other, map(&[("f", "one\n"), ("g", "other\n")])),
        "a commit of another SWS re-anchors it too"
    );
    let txn = repo.store().read().unwrap();
    assert_eq!(
        sws::working_id(repo.store(), &txn, &main_branch()).unwrap(),
        Some(working),
        "it stays the branch's working SWS"
    );
    let reanchored: Vec<(NodeId, NodeId)> = repo
        .store()
        .log_entries(&txn)
        .unwrap()
        .filter_map(|entry| {
            let (seq, bytes) = entry.unwrap();
            match verify_record(seq, bytes).unwrap().0.op {
                LogOp::SwsReanchored { sws, from, to } if sws == working.to_string() => {
                    Some((from, to))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        reanchored,
        vec![(second, reset), (reset, other)],
        "each re-anchoring is logged"
    );
    drop(txn);
    assert!(fsck(repo.store()).unwrap().is_clean());
}

#[test]
fn a_working_sws_with_work_keeps_its_base_and_merges_its_work_at_commit() {
    let (_d, repo) = new_repo();
    let first = commit_files(&repo, &[("f", "one\n"), ("g", "same\n")], "one");
    let second = commit_files(&repo, &[("f", "two\n")], "two");
    let working = sws::working(repo.store(), &main_branch(), "me").unwrap();
    sws::apply_patch(repo.store(), working, &patch("w", vec![put("h", "mine\n")])).unwrap();
    let before = base_and_files(&repo, working);
    assert_eq!(before.0, second);

    jit_kernel::history::reset(repo.store(), &main_branch(), first, &info("reset")).unwrap();
    assert_eq!(
        base_and_files(&repo, working),
        before,
        "work in progress is not re-anchored"
    );
    commit_files(&repo, &[("g", "moved\n")], "from another SWS");
    assert_eq!(base_and_files(&repo, working), before);

    assert_clean(&collapse::commit(repo.store(), working, &info("mine")).unwrap());
    assert_eq!(
        tip_files(&repo),
        map(&[("f", "one\n"), ("g", "moved\n"), ("h", "mine\n")]),
        "the commit merges the work onto the reset and the other commit"
    );
}

// ---- Superseded staged content is dropped (issue #16 item 5) ----

/// `len` random bytes: incompressible, and sharing no chunk with any other call's.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut out);
    out
}

/// Commits SWS `id` onto main, which must succeed, and checks the store.
fn commit_clean(repo: &Repository, id: SwsId, message: &str) {
    let outcome = collapse::commit(repo.store(), id, &info(message)).unwrap();
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    assert!(fsck(repo.store()).unwrap().is_clean());
}

const MIB: u64 = 1 << 20;

/// Size of the store's LMDB file.
fn store_file_size(repo: &Repository) -> u64 {
    std::fs::metadata(repo.jit_dir().join("store").join("data.mdb"))
        .unwrap()
        .len()
}

/// Writes `data` to `path` in SWS `id` the way the mount's write-back does: the content's nodes
/// staged with the patch that names its blob.
fn write_back(repo: &Repository, id: SwsId, patch_id: &str, path: &str, data: &[u8]) -> NodeId {
    let (blob, nodes) = content::split_bytes(data).unwrap();
    let op = PatchOp::PutBlob {
        path: path.into(),
        blob,
        executable: false,
    };
    sws::apply_patch_with_nodes(repo.store(), id, &patch(patch_id, vec![op]), &nodes).unwrap();
    blob
}

/// The content of `path` in SWS `id`'s working tree, read through the SWS.
fn sws_file(repo: &Repository, id: SwsId, path: &str) -> Vec<u8> {
    let txn = repo.store().read().unwrap();
    let state = sws::get(repo.store(), &txn, id).unwrap();
    let src = SwsSource::new(repo.store(), &txn, id);
    let entry = tree::lookup(&src, &state.tree, path.as_bytes())
        .unwrap()
        .unwrap_or_else(|| panic!("{path} is missing"));
    content::read_blob(&src, &entry.id).unwrap()
}

fn staged_size(repo: &Repository, id: SwsId) -> sws::StagedSize {
    let txn = repo.store().read().unwrap();
    sws::staged_size(repo.store(), &txn, id).unwrap()
}

#[test]
fn a_hundred_rewrites_of_a_large_file_keep_one_version_staged_and_the_store_small() {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    write_back(&repo, id, "v0", "big.bin", &random_bytes(MIB as usize));
    let first = store_file_size(&repo);
    let one_version = staged_size(&repo, id);
    let mut last = Vec::new();
    for round in 1..100u64 {
        last = random_bytes(MIB as usize);
        write_back(&repo, id, &format!("v{round}"), "big.bin", &last);
        let staged = staged_size(&repo, id);
        assert!(
            staged.bytes <= MIB + 64 * 1024,
            "round {round}: {} bytes staged, more than one version",
            staged.bytes
        );
        assert!(
            staged.nodes <= one_version.nodes * 2,
            "round {round}: {} nodes staged (one version had {})",
            staged.nodes,
            one_version.nodes
        );
    }
    let grown = store_file_size(&repo) - first;
    eprintln!("data.mdb after the first version: {first} bytes; after 99 rewrites: +{grown} bytes");
    assert!(
        grown <= 2 * MIB,
        "the store grew by {grown} bytes over 99 rewrites of a 1 MiB file"
    );

    // The SWS reads the latest content, keeps every micro-history record, and commits it.
    assert_eq!(sws_file(&repo, id, "big.bin"), last);
    let txn = repo.store().read().unwrap();
    let history = sws::history(repo.store(), &txn, id).unwrap();
    assert_eq!(history.len(), 100, "the micro-history keeps its records");
    assert_eq!(history[99].patch_id, "v99");
    drop(txn);
    commit_clean(&repo, id, "big");
    let txn = repo.store().read().unwrap();
    let dag = Dag::new(repo.store(), &txn);
    let tip = jit_kernel::refs::get(repo.store(), &txn, &main_branch())
        .unwrap()
        .unwrap();
    let entry = tree::lookup(&dag, &tree::tree_of(&dag, &tip).unwrap(), b"big.bin")
        .unwrap()
        .unwrap();
    assert_eq!(content::read_blob(&dag, &entry.id).unwrap(), last);
}

#[test]
fn content_staged_ahead_survives_patches_until_one_names_it() {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    // a.bin is live; b's content shares all but its last chunk with it.
    let a = random_bytes(MIB as usize);
    write_back(&repo, id, "a", "a.bin", &a);
    let mut b = a.clone();
    b.extend_from_slice(&random_bytes(100_000));
    let (b_blob, b_nodes) = content::split_bytes(&b).unwrap();
    let encoded: Vec<Vec<u8>> = b_nodes.iter().map(|n| n.bytes.clone()).collect();
    sws::stage_content(repo.store(), id, &encoded).unwrap();
    // Unrelated patches meanwhile: a.bin is rewritten, then deleted.
    write_back(&repo, id, "a2", "a.bin", &random_bytes(MIB as usize));
    sws::apply_patch(
        repo.store(),
        id,
        &patch(
            "rm-a",
            vec![PatchOp::Delete {
                path: "a.bin".into(),
            }],
        ),
    )
    .unwrap();
    // The patch that names the staged blob finds all of it.
    let name_b = PatchOp::PutBlob {
        path: "b.bin".into(),
        blob: b_blob,
        executable: false,
    };
    sws::apply_patch(repo.store(), id, &patch("b", vec![name_b])).unwrap();
    assert_eq!(sws_file(&repo, id, "b.bin"), b);

    // Once named, it is ordinary content: superseded, it goes.
    let c = random_bytes(1000);
    write_back(&repo, id, "c", "b.bin", &c);
    assert!(
        staged_size(&repo, id).bytes < 64 * 1024,
        "{:?} still staged after b.bin was replaced by 1000 bytes",
        staged_size(&repo, id)
    );
    assert_eq!(sws_file(&repo, id, "b.bin"), c);
    commit_clean(&repo, id, "b");
}

#[test]
fn content_referenced_twice_stays_until_no_path_refers_to_it() {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    let data = random_bytes(300_000);
    // The same content in two files, and the same directory twice (one tree node).
    write_back(&repo, id, "a", "one/a.bin", &data);
    write_back(&repo, id, "b", "two/b.bin", &data);
    write_back(&repo, id, "c", "one/copy/x.bin", &data);
    write_back(&repo, id, "d", "two/copy/x.bin", &data);
    for (n, path) in ["one/a.bin", "one/copy/x.bin"].iter().enumerate() {
        let op = PatchOp::Delete {
            path: (*path).into(),
        };
        sws::apply_patch(repo.store(), id, &patch(&format!("rm{n}"), vec![op])).unwrap();
    }
    assert_eq!(sws_file(&repo, id, "two/b.bin"), data);
    assert_eq!(sws_file(&repo, id, "two/copy/x.bin"), data);
    // A rename moves the last reference; nothing is lost on the way.
    let op = PatchOp::Rename {
        from: "two".into(),
        to: "three".into(),
    };
    sws::apply_patch(repo.store(), id, &patch("mv", vec![op])).unwrap();
    assert_eq!(sws_file(&repo, id, "three/copy/x.bin"), data);
    let op = PatchOp::Delete {
        path: "three/b.bin".into(),
    };
    sws::apply_patch(repo.store(), id, &patch("rm-b", vec![op])).unwrap();
    assert_eq!(sws_file(&repo, id, "three/copy/x.bin"), data);
    let op = PatchOp::Delete {
        path: "three/copy/x.bin".into(),
    };
    sws::apply_patch(repo.store(), id, &patch("rm-x", vec![op])).unwrap();
    assert!(
        staged_size(&repo, id).bytes < 4096,
        "only small trees are left: {:?}",
        staged_size(&repo, id)
    );
    commit_clean(&repo, id, "dirs");
}

#[test]
fn a_conflicted_sws_keeps_its_own_versions_through_later_patches() {
    let big = String::from_utf8(
        random_bytes(200_000)
            .iter()
            .map(|b| b'a' + b % 26)
            .collect(),
    )
    .unwrap();
    let (repo, _d, id, outcome) = merge_case(
        &[("f", "base\n")],
        vec![put("f", "ours\n")],
        vec![put("f", &big)],
    );
    let Outcome::Conflicted { conflicts } = outcome else {
        panic!("expected a conflict, got {outcome:?}");
    };
    let theirs = conflicts[0].theirs.expect("the SWS's version");
    // Later patches rewrite the conflicted file; the conflict's versions stay readable.
    sws::apply_patch(repo.store(), id, &patch("fix1", vec![put("f", "fixed\n")])).unwrap();
    sws::apply_patch(repo.store(), id, &patch("fix2", vec![put("g", "more\n")])).unwrap();
    let txn = repo.store().read().unwrap();
    let src = SwsSource::new(repo.store(), &txn, id);
    assert_eq!(content::read_blob(&src, &theirs).unwrap(), big.as_bytes());
    drop(txn);
    commit_clean(&repo, id, "resolved");
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Applies one patch of `n` puts into one directory and commits it; returns how far peak RSS
/// rose above the RSS before (bytes). The peak is reset first (`clear_refs` 5).
fn peak_growth_of_puts(n: usize) -> u64 {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    let ops = (0..n)
        .map(|i| {
            put(
                &format!("dir/file{i:07}.txt"),
                &format!("content of file {i}\n"),
            )
        })
        .collect();
    let patch = patch(&format!("puts-{n}"), ops);
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = status_kib("VmRSS:");
    sws::apply_patch(repo.store(), id, &patch).unwrap();
    match collapse::commit(repo.store(), id, &info("many")).unwrap() {
        Outcome::Committed { .. } => {}
        other => panic!("expected a clean commit, got {other:?}"),
    }
    status_kib("VmHWM:").saturating_sub(before) * 1024
}

#[test]
fn one_patch_of_n_puts_into_one_directory_costs_linear_memory() {
    // Warm up (allocator arenas, LMDB maps) so the first measurement is not inflated.
    peak_growth_of_puts(100);
    let base = 1_000usize;
    let per_base = peak_growth_of_puts(base);
    // Linear: N/base times the base's growth, doubled for allocator rounding, plus 32 MiB of
    // slack for LMDB pages and vector doubling. Quadratic growth (re-encoding the directory
    // once per put) passes 4,000 puts at several hundred MiB and fails here before the larger
    // sizes are tried.
    for n in [4_000usize, 10_000] {
        let growth = peak_growth_of_puts(n);
        let bound = per_base * (n / base) as u64 * 2 + (32 << 20);
        assert!(
            growth <= bound,
            "{n} puts into one directory raised peak RSS by {} MiB; linear from {base} puts \
             ({} MiB) allows {} MiB",
            growth >> 20,
            per_base >> 20,
            bound >> 20
        );
    }
}

#[test]
fn a_patch_past_the_operation_cap_is_refused_with_its_own_code() {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    let ops = vec![PatchOp::Delete { path: "a".into() }; MAX_OPS + 1];
    let err = sws::apply_patch(repo.store(), id, &patch("huge", ops)).unwrap_err();
    assert_eq!(err.code(), "patch_too_large", "{err}");
    // The decoder stops at the cap too.
    let mut encoded = jit_kernel::cbor::to_canonical_bytes(&patch(
        "huge",
        vec![PatchOp::Delete { path: "a".into() }; MAX_OPS + 1],
    ))
    .unwrap();
    let decoded: Result<Patch, _> = jit_kernel::cbor::from_canonical_bytes(&encoded);
    assert!(decoded.is_err(), "a patch past the cap decodes");
    encoded.clear();
}

#[test]
fn patches_can_plant_git_and_jit_checkout() {
    let (_dir, repo) = new_repo();
    let id = new_sws(&repo);
    sws::apply_patch(
        repo.store(),
        id,
        &patch("first", vec![put("sub/a.txt", "a\n")]),
    )
    .unwrap();
    let before = sws::get(repo.store(), &repo.store().read().unwrap(), id)
        .unwrap()
        .tree;
    for planted in [
        ".git/config",
        "sub/.GIT/config",
        "sub/deeper/.git",
        ".jit-checkout/checkout.json",
        "x/.jit/store",
        "GIT~1/config",
        ".git./config",
        ".gi\u{200c}t/config",
    ] {
        // Every way in: a put, a put among good ones, a rename target, a mkdir, a symlink.
        for ops in [
            vec![put(planted, "[core]\n\tfsmonitor = touch pwned\n")],
            vec![put("good.txt", "good\n"), put(planted, "x")],
            vec![PatchOp::Rename {
                from: "sub/a.txt".into(),
                to: planted.into(),
            }],
            vec![PatchOp::Mkdir {
                path: planted.into(),
            }],
            vec![PatchOp::Symlink {
                path: planted.into(),
                target: "/etc".into(),
            }],
        ] {
            let err = sws::apply_patch(repo.store(), id, &patch(planted, ops.clone()))
                .expect_err(&format!("{ops:?} was applied"));
            assert_eq!(err.code(), "bad_path", "{ops:?}: {err}");
            let after = sws::get(repo.store(), &repo.store().read().unwrap(), id)
                .unwrap()
                .tree;
            assert_eq!(after, before, "{ops:?}: nothing applied");
        }
    }
    // `.gitignore`, `.github` and `.jitignore` are ordinary names.
    sws::apply_patch(
        repo.store(),
        id,
        &patch(
            "ordinary",
            vec![
                put(".gitignore", "target/\n"),
                put(".github/workflows/ci.yml", "on: push\n"),
                put("sub/.jitignore", "*.o\n"),
            ],
        ),
    )
    .unwrap();
}

/// `Source::has` answers from indexes: a staged tree is held by its SWS's source (not by the
/// DAG, nor by another SWS), a committed one by both, an unknown id by neither; and it agrees
/// with reading the bytes.
#[test]
fn sources_say_which_nodes_they_hold_without_reading_them() {
    let (_d, repo) = new_repo();
    let id = new_sws(&repo);
    let other = new_sws(&repo);
    sws::apply_patch(repo.store(), id, &patch("p", vec![put("dir/a.txt", "a\n")])).unwrap();
    let txn = repo.store().read().unwrap();
    let state = sws::get(repo.store(), &txn, id).unwrap();
    let staged_tree = state.tree;
    let src = SwsSource::new(repo.store(), &txn, id);
    let dag = Dag::new(repo.store(), &txn);
    let elsewhere = SwsSource::new(repo.store(), &txn, other);
    assert!(src.has(&staged_tree).unwrap());
    assert!(!dag.has(&staged_tree).unwrap());
    assert!(!elsewhere.has(&staged_tree).unwrap());
    let base_root = tree::tree_of(&dag, &state.base).unwrap();
    assert!(dag.has(&state.base).unwrap() && src.has(&base_root).unwrap());
    let unknown = NodeId::of_bytes(b"no such node");
    assert!(!src.has(&unknown).unwrap() && !dag.has(&unknown).unwrap());
    for node in [staged_tree, state.base, unknown] {
        assert_eq!(src.has(&node).unwrap(), src.bytes(&node).unwrap().is_some());
    }
}
