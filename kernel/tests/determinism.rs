//! The same inputs give the same node ids in separate repositories: nothing hidden (wall clock,
//! randomness, universe identity, file-system order or timestamps) enters hashed data.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use jit_kernel::history::{self, CommitInfo, EmptyCommit};
use jit_kernel::import::{import_dir, Silent};
use jit_kernel::refs::RefName;
use jit_kernel::repo::InitOptions;
use jit_kernel::{DeclaredTime, NodeId, Repository};

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("src/nested/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("README.md"), "# hello\n").unwrap();
    fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(root.join("src/nested/deeper/data.bin"), vec![7u8; 300_000]).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("big.dat"), big).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("src/main.rs", root.join("link")).unwrap();
}

fn import_into(
    repo_dir: &Path,
    tree: &Path,
    universe_name: &str,
    created: i64,
) -> (NodeId, NodeId) {
    let repo = Repository::init(
        repo_dir,
        &InitOptions {
            branch: "main".into(),
            name: universe_name.into(),
            owner: "o".into(),
            created,
            replica_of: None,
        },
    )
    .unwrap();
    let (tree_id, _) = import_dir(repo.store(), tree, &Silent).unwrap();
    let info = CommitInfo {
        author: "Ada <ada@example.org>".into(),
        message: "import".into(),
        time: DeclaredTime {
            seconds: 1_700_000_000,
            tz_minutes: 60,
        },
    };
    let main = RefName::branch("main").unwrap();
    let snapshot =
        history::commit_tree(repo.store(), &main, tree_id, &info, EmptyCommit::Refuse).unwrap();
    (tree_id, snapshot)
}

#[test]
fn separate_repositories_importing_the_same_tree_agree_on_every_id() {
    let work = tempfile::tempdir().unwrap();
    // Two copies of the tree, written in different orders at different times.
    let a = work.path().join("tree-a");
    let b = work.path().join("tree-b");
    make_tree(&a);
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_tree(&b);
    let first = import_into(&work.path().join("repo-1"), &a, "one", 1);
    let second = import_into(&work.path().join("repo-2"), &b, "two", 999);
    assert_eq!(
        first, second,
        "same tree and declared inputs → same tree and snapshot ids"
    );
}

#[test]
fn a_different_declared_input_gives_a_different_id() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let (tree_id, snapshot) = import_into(&work.path().join("r1"), &tree, "x", 0);
    fs::write(tree.join("README.md"), "# hello!\n").unwrap();
    let (tree_id2, snapshot2) = import_into(&work.path().join("r2"), &tree, "x", 0);
    assert_ne!(tree_id, tree_id2);
    assert_ne!(snapshot, snapshot2);
}
